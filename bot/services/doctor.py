"""`steward doctor`: does this deployment have everything a running bot needs?

Each check is one line of a checklist: passed, failed (with the fix, in words a person can
act on) or informational. Nothing is written anywhere: the AWS part is a dry collection
(the scan's read calls, results thrown away), the database is only read, the scheduler
lock is taken for an instant and given back when no worker holds it.

Order matters for the reader: Slack first (the token gates every other Slack line), then
AWS per account, the database, the scheduler.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import boto3
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.slack_client import make_web_client
from checks.accounts import Target, discover_targets, session_for
from checks.collect import CollectError, collect_account

log = logging.getLogger(__name__)

SLACK, AWS, DATABASE, SCHEDULER = "Slack", "AWS", "Database", "Scheduler"
REINSTALL = "paste deploy/slack/manifest.yml (or manifest-socket-mode.yml) into the app's manifest and reinstall it"
INVITE = "in the channel type `/invite @IAM Steward`"
#: Inline policies of the member role (deploy/cloudformation/member-account-role.yaml) other
#: than the read-only scan policy: present when the stack was deployed with remediation on.
SCAN_POLICY_NAME = "iam-steward-scan"
POLICY_PREFIX = "iam-steward-"


@dataclass(frozen=True)
class Check:
    section: str
    name: str
    ok: bool | None  # None: information only, never fails the run
    detail: str
    fix: str = ""


def passed(checks: list[Check]) -> bool:
    return all(c.ok is not False for c in checks)


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


class SlackDoctor:
    """The Slack lines. `needed_scopes` is what the code calls for (bot.manifest)."""

    def __init__(self, settings: Settings, client: WebClient, needed_scopes: list[str]) -> None:
        self.settings = settings
        self.client = client
        self.needed = needed_scopes
        self.granted: set[str] | None = None

    def run(self) -> list[Check]:
        checks = [self._token()]
        if checks[0].ok:
            checks += [self._scopes(), self._channel(), self._approvers()]
        checks.append(self._delivery())
        return checks

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


def _role_name(target: Target) -> str | None:
    return target.role_arn.rsplit("/", 1)[-1] if target.role_arn else None


def aws_checks(settings: Settings, base_session: boto3.Session) -> list[Check]:
    """Per configured account: the role can be assumed, the scan's reads are allowed, and
    whether remediation is enabled there."""
    try:
        targets = discover_targets(base_session, account_roles=settings.account_roles,
                                   org_role_name=settings.org_role_name,
                                   max_attempts=min(settings.aws_max_attempts, 3))
    except CollectError as exc:
        return [Check(AWS, "accounts to scan", False, str(exc),
                      "check STEWARD_ACCOUNT_ROLES / STEWARD_ORG_ROLE_NAME and the credentials Steward runs with")]
    checks: list[Check] = []
    for target in targets:
        checks += _account_checks(settings, base_session, target)
    return checks


def _account_checks(settings: Settings, base_session: boto3.Session, target: Target) -> list[Check]:
    label = target.label
    try:
        session = session_for(target, base_session, external_id=settings.external_id,
                              max_attempts=min(settings.aws_max_attempts, 3))
    except CollectError as exc:
        return [Check(AWS, f"{label}: role assumable", False, str(exc),
                      "the member stack's ExternalId must equal STEWARD_EXTERNAL_ID, and its "
                      "StewardRoleArn/StewardAccountId must name the role Steward runs as")]
    checks = []
    if target.role_arn:
        checks.append(Check(AWS, f"{label}: role assumable", True, "with the ExternalId"
                            if settings.external_id else "without an ExternalId"))
    try:
        snapshot = collect_account(session, expected_account=target.account_id,
                                   max_attempts=min(settings.aws_max_attempts, 3))
    except CollectError as exc:
        checks.append(Check(AWS, f"{label}: scan reads allowed", False, str(exc),
                            "deploy/update the member stack (deploy/cloudformation/member-account-role.yaml); "
                            "its scan policy is exactly the reads a scan makes"))
        return checks
    checks.append(Check(AWS, f"{label}: scan reads allowed", True,
                        f"{len(snapshot.users)} users, {len(snapshot.roles)} roles read, nothing saved"))
    role_name = _role_name(target)
    role = next((r for r in snapshot.roles if r.name == role_name), None)
    if role is not None:
        extra = sorted(p.name for p in role.inline_policies
                       if p.name.startswith(POLICY_PREFIX) and p.name != SCAN_POLICY_NAME)
        detail = (f"enabled ({', '.join(extra)})" if extra else
                  "scan only: clean-ups will be refused (deploy the stack with EnableRemediation=true to allow them)")
        checks.append(Check(AWS, f"{label}: remediation", None, detail))
    return checks


def database_checks(settings: Settings) -> list[Check]:
    from bot.db.engine import make_engine
    from bot.db.migrate import current_revision, head_revision

    url = settings.effective_database_url
    name = "reachable and migrated"
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:" \
            and not Path(parsed.database).exists():
        return [Check(DATABASE, name, False, f"no database at {parsed.database}", "run `steward db upgrade`")]
    engine = make_engine(url)
    try:
        current = current_revision(engine)
    except Exception as exc:  # any driver error: reported as a line, never a traceback
        return [Check(DATABASE, name, False, f"cannot connect ({type(exc).__name__})",
                      "check STEWARD_DATABASE_URL and that the database server is up")]
    finally:
        engine.dispose()
    head = head_revision()
    if current != head:
        return [Check(DATABASE, name, False, f"schema at {current or 'none'}, this version needs {head}",
                      "run `steward db upgrade` (the Procfile's release phase)")]
    return [Check(DATABASE, name, True, f"schema at {head}")]


def scheduler_checks(settings: Settings) -> list[Check]:
    from bot.leader import leader_lock

    name = "a worker leads the scheduler"
    try:
        lock = leader_lock(settings.effective_database_url, holder="steward-doctor")
        free = lock.try_acquire()
    except Exception as exc:
        return [Check(SCHEDULER, name, False, f"cannot check the leader lock ({type(exc).__name__})",
                      "check STEWARD_DATABASE_URL")]
    if free:
        lock.release()
        return [Check(SCHEDULER, name, False, "no `steward worker` holds the scheduler lock",
                      "start `steward worker` (the Procfile's worker process); scans, reminders and the digest need it")]
    holder = getattr(lock, "current_holder", lambda: None)()
    return [Check(SCHEDULER, name, True, f"held by {holder}" if holder else "lock held")]


def aws_session() -> boto3.Session:
    """The credentials Steward runs with (the standard chain: its platform's role)."""
    return boto3.Session()


def run(settings: Settings, *, needed_scopes: list[str], client: WebClient | None = None) -> list[Check]:
    """Every check, in checklist order."""
    slack = SlackDoctor(settings, client or make_web_client(settings, timeout=10), needed_scopes)
    checks = slack.run()
    checks += aws_checks(settings, aws_session())
    database = database_checks(settings)
    checks += database
    if database[0].ok:
        checks += scheduler_checks(settings)
    return checks
