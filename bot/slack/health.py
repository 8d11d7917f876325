"""The Slack half of `steward doctor`, also behind `GET /healthz`'s ``slack`` field.

Each check is a `Check`: passed, failed with the fix in words a person can act on, or
information only. Only reads: auth.test (its ``x-oauth-scopes`` header lists the granted
scopes), conversations.info, users.info, usergroups.users.list, apps.connections.open.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.config import Settings

log = logging.getLogger(__name__)

SLACK = "Slack"
REINSTALL = "paste deploy/slack/manifest.yml (or manifest-socket-mode.yml) into the app's manifest and reinstall it"
INVITE = "in the channel type `/invite @IAM Steward`"
#: How a check's name starts -> the part named in GET /healthz.
PARTS = (("bot token", "token"), ("granted scopes", "scopes"), ("security channel", "security channel"),
         ("security approvers", "approvers"), ("how Slack", "delivery"))


@dataclass(frozen=True)
class Check:
    section: str
    name: str
    ok: bool | None  # None: information only, never fails the run
    detail: str
    fix: str = ""
    part: str = ""  # a short name for GET /healthz (never ids or names of people)


def _slack_error(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or exc)


TOKEN_FIXES = {
    "invalid_auth": "SLACK_BOT_TOKEN is not a valid token: copy the Bot User OAuth Token (xoxb-…) "
                    "from the app's OAuth & Permissions page",
    "not_authed": "set SLACK_BOT_TOKEN",
    "account_inactive": "the app was uninstalled or its bot deactivated: reinstall the app and put "
                        "the new Bot User OAuth Token in SLACK_BOT_TOKEN",
    "token_revoked": "the token was revoked: reinstall the app and update SLACK_BOT_TOKEN",
}


class SlackChecks:
    """The Slack lines. `needed_scopes` is what the code calls for (bot.slack.manifest)."""

    def __init__(self, settings: Settings, client: WebClient, needed_scopes: list[str]) -> None:
        self.settings = settings
        self.client = client
        self.needed = needed_scopes
        self.granted: set[str] | None = None

    def run(self, *, delivery: bool = True) -> list[Check]:
        checks = [self._token()]
        if checks[0].ok:
            checks += [self._scopes(), self._channel(), self._approvers()]
        if delivery:
            checks.append(self._delivery())
        return [replace(c, part=next((p for start, p in PARTS if c.name.startswith(start)), c.name))
                for c in checks]

    def _token(self) -> Check:
        name = "bot token valid (auth.test)"
        if not self.settings.slack_bot_token:
            return Check(SLACK, name, False, "SLACK_BOT_TOKEN is not set", TOKEN_FIXES["not_authed"])
        try:
            answer = self.client.auth_test()
        except SlackApiError as exc:
            error = _slack_error(exc)
            return Check(SLACK, name, False, f"Slack answered {error}",
                         TOKEN_FIXES.get(error, "check SLACK_BOT_TOKEN and SLACK_API_URL"))
        except OSError as exc:
            return Check(SLACK, name, False, f"cannot reach Slack ({type(exc).__name__})",
                         "check SLACK_API_URL and the network path to slack.com")
        header = answer.headers.get("x-oauth-scopes") or answer.headers.get("X-OAuth-Scopes")
        self.granted = {s.strip() for s in str(header or "").split(",") if s.strip()}
        return Check(SLACK, name, True, f"@{answer.get('user')} in {answer.get('team')}")

    def _scopes(self) -> Check:
        name = "granted scopes cover what the code calls"
        missing = sorted(set(self.needed) - (self.granted or set()))
        if missing:
            return Check(SLACK, name, False, f"missing {', '.join(missing)}",
                         f"add them: {REINSTALL}")
        return Check(SLACK, name, True, f"{len(self.needed)} scopes")

    def _channel(self) -> Check:
        channel = self.settings.security_channel
        name = f"security channel {channel or ''}".strip()
        if not channel:
            return Check(SLACK, "security channel", False, "STEWARD_SECURITY_CHANNEL is not set",
                         "set it to the channel id (channel details → bottom: C…)")
        try:
            info = self.client.conversations_info(channel=channel)["channel"]
        except SlackApiError as exc:
            error = _slack_error(exc)
            if error == "channel_not_found":
                return Check(SLACK, name, False, "no such channel visible to the bot",
                             "use the channel id (C…/G…), not its name; for a private channel "
                             f"{INVITE} first")
            if error == "missing_scope":
                return Check(SLACK, name, False, "cannot check: missing scope "
                             f"{exc.response.get('needed')}", f"add it: {REINSTALL}")
            return Check(SLACK, name, False, f"Slack answered {error}", "check STEWARD_SECURITY_CHANNEL")
        label = f"#{info.get('name', channel)}"
        if info.get("is_archived"):
            return Check(SLACK, name, False, f"{label} is archived",
                         "unarchive it, or create a new channel and set STEWARD_SECURITY_CHANNEL")
        if not info.get("is_member"):
            return Check(SLACK, name, False, f"the bot is not a member of {label}", INVITE)
        return Check(SLACK, name, True, f"{label}, bot is a member")

    def _approvers(self) -> Check:
        name = "security approvers resolve to active people"
        ids = list(self.settings.security_approvers)
        group = self.settings.security_usergroup
        problems: list[str] = []
        if group:
            try:
                members = self.client.usergroups_users_list(usergroup=group)["users"]
                ids += [m for m in members if m not in ids]
                if not members:
                    problems.append(f"usergroup {group} has no members")
            except SlackApiError as exc:
                problems.append(f"usergroup {group}: {_slack_error(exc)}")
        if not ids and not problems:
            return Check(SLACK, name, False, "no approver configured",
                         "set STEWARD_SECURITY_APPROVERS (user ids, U…) or STEWARD_SECURITY_USERGROUP (S…)")
        active = 0
        for user_id in ids:
            try:
                user = self.client.users_info(user=user_id)["user"]
            except SlackApiError as exc:
                problems.append(f"{user_id}: {_slack_error(exc)}")
                continue
            if user.get("deleted"):
                problems.append(f"{user_id} ({user.get('name')}) is deactivated")
            elif user.get("is_bot"):
                problems.append(f"{user_id} ({user.get('name')}) is a bot")
            else:
                active += 1
        if problems:
            return Check(SLACK, name, False, "; ".join(problems),
                         "remove or replace them in STEWARD_SECURITY_APPROVERS / the usergroup "
                         "(profile → ⋮ → Copy member ID)")
        return Check(SLACK, name, True, f"{active} active")

    def _delivery(self) -> Check:
        name = "how Slack reaches Steward"
        if self.settings.slack_app_token:
            try:
                WebClient(base_url=self.settings.slack_api_url).apps_connections_open(
                    app_token=self.settings.slack_app_token)
            except SlackApiError as exc:
                return Check(SLACK, name, False, f"SLACK_APP_TOKEN refused: {_slack_error(exc)}",
                             "create an app-level token with connections:write (Basic Information "
                             "→ App-Level Tokens) and enable Socket Mode")
            return Check(SLACK, name, True, "Socket Mode: app-level token accepted")
        if self.settings.slack_signing_secret:
            return Check(SLACK, name, True, "HTTP: SLACK_SIGNING_SECRET is set")
        return Check(SLACK, name, False, "neither SLACK_SIGNING_SECRET nor SLACK_APP_TOKEN is set",
                     "HTTP (steward serve): set SLACK_SIGNING_SECRET from Basic Information; "
                     "Socket Mode (steward socket): set SLACK_APP_TOKEN")


class SlackHealth:
    """``GET /healthz``'s ``slack`` field: ``ok``, or ``degraded: <parts> …`` naming what
    `SlackChecks` finds broken. Refreshed in a background thread at most every ``ttl``
    seconds, so a health probe never waits on Slack; each change is logged once, in full."""

    def __init__(self, run_checks: Callable[[], list[Check]], *, ttl: float = 300.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[list[Check]], None] | None = None) -> None:
        self._run_checks = run_checks
        self._on_change = on_change  # told the failed checks (none: whole again) on each change
        self._ttl, self._clock = ttl, clock
        self._lock = threading.Lock()
        self._status = "unknown: first check running"
        self._checked_at: float | None = None
        self._refreshing = False

    def __call__(self) -> str:
        with self._lock:
            due = self._checked_at is None or self._clock() - self._checked_at >= self._ttl
            if due and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self.refresh, name="slack-health", daemon=True).start()
            return self._status

    def refresh(self) -> str:
        try:
            failed = [c for c in self._run_checks() if c.ok is False]
        except Exception as exc:  # a health check must never take the web process down
            failed = [Check(SLACK, "check", False, type(exc).__name__, part="check failed")]
        parts = ", ".join(dict.fromkeys(c.part or c.name for c in failed))
        status = f"degraded: {parts} (run `steward doctor`)" if failed else "ok"
        with self._lock:
            previous = self._status
            changed = status != previous
            self._status, self._checked_at, self._refreshing = status, self._clock(), False
        if changed and failed:
            log.warning("Slack setup degraded: %s", "; ".join(f"{c.name}: {c.detail}" for c in failed))
        elif changed:
            log.info("Slack setup OK")
        if changed and self._on_change is not None and (failed or previous.startswith("degraded")):
            try:
                self._on_change(failed)
            except Exception as exc:  # the audit row is best effort here; the log line stands
                log.warning("could not record the Slack setup change: %s", type(exc).__name__)
        return status
