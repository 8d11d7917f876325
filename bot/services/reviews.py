"""Access reviews: periodic certification campaigns run in Slack, with evidence an auditor
accepts (SOC 2 CC6.2/CC6.3, ISO 27001 A.5.18).

1. **Start** freezes the population in one transaction: every user and/or role of the
   accounts in scope, from each account's latest successful scan (the `principal_inventory`
   rows that scan wrote), becomes an item with its entitlements as they were. The item count
   must equal the scans' own inventory count for the scope, else nothing is started; the
   campaign records the scan of each account.
2. **Routing**: each item goes to its owner (an owner override wins over tags), or to the
   owner's manager when the principal is the owner's own (nobody certifies their own
   access: STEWARD_REVIEW_MANAGERS, else the "Manager" field of the owner's Slack profile),
   else to the security channel. One message per reviewer
   and campaign, paged, crash-safe like the owner DMs (marked before posting, found again in
   the DM's history after a crash).
3. **Decisions**: Still needed; Remove access… (the chosen entitlements become
   `access-review-revocation` findings carried out by the remediation engine: the same
   approval rules, undo and audit); Not mine (to the security channel); Delegate… (with a
   reason). "All still needed" only certifies items whose details the reviewer opened. Each
   decision records how long it took (from the details being opened, else the message).
4. **Cycle** (hourly with the worker): reminders, escalations, retries of unsent messages,
   the progress message in the security channel (updated in place), and the close at the due
   date: undecided items become `overdue`, never certified.
5. **Export**: one row per item and entitlement with the evidence and the audit sequence
   numbers, plus the audit chain head at export time.

Every step is audited (bot/db/audit.py) in the transaction that makes it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine, func, insert, update
from sqlmodel import select

from bot.config import Settings
from bot.core.decisions import REVIEW_REMOVAL_ACTIONS
from bot.core.lifecycle import Event, State, next_state
from bot.db import audit
from bot.db.audit import AuditAction as A
from bot.db.engine import session_scope, write_scope
from bot.db.models import (
    AuditEvent,
    Finding,
    OwnerOverride,
    PrincipalInventory,
    Remediation,
    ReviewCampaign,
    ReviewItem,
    ReviewMessage,
    Scan,
)
from bot.services.common import Clock, ServiceError, utcnow
from bot.slack.blocks import reviews as rb
from bot.slack.blocks.reviews import SECURITY
from checks.catalog import ACCESS_REVIEW_REVOCATION
from checks.model import fingerprint
from checks.ownership import EMAIL, SLACK_USER_ID, normalise
from checks.remediate import registry

log = logging.getLogger(__name__)

SCOPES = {"users": ("user",), "roles": ("role",), "all": ("user", "role")}
METADATA_EVENT = "steward_review"
PROGRESS_MIN_SECONDS = 10  # the progress message is updated at most this often by clicks
REASON_MIN = 5


class ReviewRefusal(ServiceError):
    """A click or command that changes nothing; shown privately to the person."""


# --- pure parts ---------------------------------------------------------------------------


def owns_itself(kind: str, name: str, owner: str | None) -> bool:
    """Is this principal its owner's own access? An IAM user named after its owner
    (`priya.shah` owned by priya.shah@acme.example, or by that address as its name)."""
    if kind != "user" or not owner:
        return False
    name, owner = name.lower(), owner.lower()
    return owner == name or (bool(EMAIL.match(owner)) and owner.split("@", 1)[0] == name)


def entitlements_of(row: Any) -> list[dict[str, Any]]:
    """The entitlements of one inventory row, each with an id, a label for a person, and
    whether Steward can remove it (and how: bot.core.decisions.REVIEW_REMOVAL_ACTIONS)."""
    ent = row.entitlements or {}
    service_linked = bool(ent.get("service_linked"))
    out: list[dict[str, Any]] = []

    def add(kind: str, ident: str, name: str, label: str, removable: bool, **details: Any) -> None:
        out.append({"id": f"{kind}:{ident}", "kind": kind, "name": name, "label": label,
                    "removable": removable and not service_linked, "details": details})

    for group in ent.get("groups", []):
        add("group", group, group, f"member of group {group}", True, group_name=group)
    for policy in ent.get("attached_policies", []):
        add("policy", policy["arn"], policy["name"], f"managed policy {policy['name']}", True,
            policy_arn=policy["arn"], policy_name=policy["name"])
    for name in ent.get("inline_policies", []):
        add("inline", name, name, f"inline policy {name}", True, policy_name=name)
    for key in ent.get("keys", []):
        key_id = key.get("access_key_id")
        state = "active" if key.get("active") else "inactive"
        used = (key.get("last_used") or "never")[:10]
        label = f"access key {key_id or 'in slot ' + str(key.get('slot'))} ({state}, last used {used})"
        add("key", key_id or f"slot{key.get('slot')}", key_id or f"slot {key.get('slot')}", label,
            bool(key_id and key.get("active")), access_key_id=key_id, active=bool(key.get("active")),
            created=key.get("created"), last_used=key.get("last_used"))
    if ent.get("console"):
        add("console", "password", "console password",
            f"console password ({'with' if ent.get('mfa') else 'without'} MFA)", True)
    for principal in ent.get("trusted_by", []):
        add("trust", principal, principal, f"assumable by {principal}", False)
    if ent.get("permissions_boundary"):
        add("boundary", ent["permissions_boundary"], ent["permissions_boundary"].rsplit("/", 1)[-1],
            f"permissions boundary {ent['permissions_boundary'].rsplit('/', 1)[-1]}", False)
    return out


def effective_summary(findings: Iterable[Any]) -> dict[str, Any]:
    """What the scan's analysis says the principal can really do, from its open findings:
    the privilege-escalation verdict (checks/effective.py) and administrator access."""
    checks, summary = [], None
    for f in findings:
        checks.append(f.check_id)
        details = f.details or {}
        if f.check_id == "privilege-escalation-policy":
            status = details.get("status", "")
            summary = f"{'Can' if status == 'exploitable' else 'Could (latent)'} escalate privileges: " + (
                details.get("explanation") or ", ".join(details.get("escalation_methods", [])[:5]))
        elif f.check_id == "admin-policy" and summary is None:
            summary = "Has administrator access (a policy allowing * on *)."
    return {"findings": sorted(set(checks)), **({"summary": summary} if summary else {})}


def neutralise(value: Any) -> str:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ (or a tab or
    carriage return before one) gets a leading apostrophe (OWASP's advice)."""
    text = "" if value is None else str(value)
    if text and (text[0] in "=+-@\t\r" or text.lstrip()[:1] in ("=", "+", "-", "@")):
        return "'" + text
    return text


def _iso(value: datetime | None) -> str | None:
    return audit.format_time(value) if value else None


# --- the service --------------------------------------------------------------------------


@dataclass
class StartResult:
    campaign: ReviewCampaign
    freeze_seconds: float
    reviewers: int = 0
    sent: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass
class CycleResult:
    sent: int = 0
    reminders: int = 0
    escalations: int = 0
    closed: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class ReviewService:
    def __init__(self, settings: Settings, *, engine: Engine, client, directory, campaigns,
                 clock: Clock = utcnow, pacer=None):
        self.settings = settings
        self.engine = engine
        self.client = client
        self.directory = directory
        self.campaigns = campaigns  # bot.services.campaigns.Campaigns: remediation and approvals
        self.clock = clock
        self._manager_field: str | None = None  # the Slack profile's "Manager" field id ("" if none)
        # False: no Slack at all (`steward review status|export`)
        self.pacer = pacer if pacer is not None else campaigns.pacer

    # =====================================================================================
    # Start: freeze, route, send

    def start(self, *, actor: str, accounts: Iterable[str] = (), due: date | None = None, scope: str = "all",
              name: str | None = None, send: bool = True) -> StartResult:
        if scope not in SCOPES:
            raise ReviewRefusal(f"scope must be users, roles or all (not {scope!r})")
        now = self.clock()
        due_at = (datetime.combine(due, datetime.max.time(), tzinfo=UTC).replace(microsecond=0) if due
                  else now + timedelta(days=self.settings.review_due_days))
        if due_at <= now:
            raise ReviewRefusal(f"the due date {due_at:%Y-%m-%d} is not in the future")
        began = time.perf_counter()
        campaign = self.freeze(actor=actor, accounts=accounts, due_at=due_at, scope=scope, name=name, now=now)
        result = StartResult(campaign=campaign, freeze_seconds=time.perf_counter() - began)
        result.reviewers = self.route(campaign.id)
        if send:
            cycle = CycleResult()
            self.send_all(campaign.id, cycle)
            result.sent, result.failures = cycle.sent, cycle.failures
            self.update_progress(campaign.id, force=True)
        return result

    def freeze(self, *, actor: str, accounts: Iterable[str], due_at: datetime, scope: str,
               name: str | None, now: datetime) -> ReviewCampaign:
        """The population, in one transaction: a campaign and one item per principal."""
        wanted = sorted(set(accounts))
        kinds = SCOPES[scope]
        with write_scope(self.engine) as session:
            latest = self._latest_scans(session, wanted)
            if not latest:
                raise ReviewRefusal("no successful scan to review from: run `steward scan` first"
                                    + (f" (asked for {', '.join(wanted)})" if wanted else ""))
            missing = [a for a in wanted if a not in latest]
            if missing:
                raise ReviewRefusal(f"no successful scan of account {', '.join(missing)}: scan it first")
            scans: dict[str, Any] = {}
            rows: list[PrincipalInventory] = []
            expected_total = 0
            for account_id, scan in sorted(latest.items()):
                inventory = (scan.counts or {}).get("inventory") or {}
                expected = sum(int(inventory.get(f"{k}s", 0)) for k in kinds)
                found = list(session.exec(select(PrincipalInventory).where(
                    PrincipalInventory.account_id == account_id, PrincipalInventory.kind.in_(kinds))
                    .order_by(PrincipalInventory.kind, PrincipalInventory.name)))
                stale = [r for r in found if r.scan_id != scan.id]
                if stale or len(found) != expected:
                    raise ReviewRefusal(
                        f"the inventory of account {account_id} does not match its latest scan #{scan.id} "
                        f"({len(found) - len(stale)} principals kept, {expected} counted): run `steward scan` again")
                scans[account_id] = {"scan_id": scan.id, "run_id": scan.run_id, "finished_at": _iso(scan.finished_at),
                                     "inventory": {f"{k}s": int(inventory.get(f"{k}s", 0)) for k in kinds}}
                rows += found
                expected_total += expected
            findings: dict[str, list[Finding]] = defaultdict(list)
            for f in session.exec(select(Finding).where(Finding.account_id.in_(list(latest)),
                                                        Finding.state != "resolved",
                                                        Finding.check_id != ACCESS_REVIEW_REVOCATION.id)):
                findings[f.resource].append(f)
            campaign = ReviewCampaign(
                name=name or f"{now:%Y-%m-%d} {scope}", scope=scope, accounts=sorted(latest), scans=scans,
                population=len(rows), inventory_count=expected_total, started_by=actor, started_at=now,
                due_at=due_at)
            session.add(campaign)
            session.flush()
            items = [{
                "campaign_id": campaign.id, "token": _token(), "account_id": r.account_id, "kind": r.kind,
                "name": r.name, "arn": r.arn, "owner": r.owner,
                "snapshot": {"scan_id": r.scan_id, "created": r.created, "last_used": r.last_used,
                             "console": bool((r.entitlements or {}).get("console")),
                             "mfa": bool((r.entitlements or {}).get("mfa")),
                             "service_linked": bool((r.entitlements or {}).get("service_linked")),
                             "entitlements": entitlements_of(r),
                             "effective": effective_summary(findings.get(r.arn, ()))},
                "removed": [], "remediation_ids": [], "removal_errors": {}, "audit_sequences": [],
            } for r in rows]
            if items:
                session.execute(insert(ReviewItem), items)
            count = session.exec(select(func.count()).select_from(ReviewItem)
                                 .where(ReviewItem.campaign_id == campaign.id)).one()
            if count != expected_total:  # never a campaign that silently misses someone
                raise ServiceError(f"froze {count} items for an inventory of {expected_total}")
            audit.record(session, actor=actor, action=A.REVIEW_STARTED, at=now,
                         payload={"campaign": campaign.id, "name": campaign.name, "scope": scope,
                                  "accounts": campaign.accounts, "scans": scans, "population": count,
                                  "inventory_count": expected_total, "due": due_at})
            session.refresh(campaign)
            return campaign

    def _latest_scans(self, session, accounts: list[str]) -> dict[str, Scan]:
        query = select(Scan).where(Scan.status == "succeeded")
        if accounts:
            query = query.where(Scan.account_id.in_(accounts))
        latest: dict[str, Scan] = {}
        for scan in session.exec(query.order_by(Scan.finished_at, Scan.id)):
            latest[scan.account_id] = scan  # the newest wins
        return latest

    def route(self, campaign_id: int) -> int:
        """Give every unrouted item its reviewer; one audit event per reviewer. Returns the
        number of reviewers."""
        with session_scope(self.engine) as session:
            items = list(session.exec(select(ReviewItem).where(ReviewItem.campaign_id == campaign_id,
                                                               ReviewItem.reviewer.is_(None))))
            arns = [i.arn for i in items]
            overrides: dict[str, str] = {}
            for start in range(0, len(arns), 500):
                for o in session.exec(select(OwnerOverride).where(OwnerOverride.resource.in_(arns[start:start + 500]))):
                    overrides[o.resource] = o.slack_user_id
        try:
            self.directory.prime(i.owner for i in items if i.arn not in overrides)
        except SlackApiError as exc:
            log.warning("users.list failed (%s); looking reviewers up one by one", exc.response.get("error"))
        managers = self.settings.review_manager_map()
        decided: dict[tuple[str, str], list[int]] = defaultdict(list)
        for item in items:
            reviewer, why = self._reviewer_for(item, overrides.get(item.arn), managers)
            decided[(reviewer, why)].append(item.id)
        now = self.clock()
        if not decided:
            return 0
        with write_scope(self.engine) as session:  # one event for the whole routing: it is one step
            event = audit.record(session, actor="system", action=A.REVIEW_ROUTED, at=now, payload={
                "campaign": campaign_id,
                "routes": [{"reviewer": r, "routed_by": why, "items": ids} for (r, why), ids in sorted(decided.items())]})
            for (reviewer, why), ids in sorted(decided.items()):
                for start in range(0, len(ids), 500):
                    session.execute(update(ReviewItem).where(ReviewItem.id.in_(ids[start:start + 500]))
                                    .values(reviewer=reviewer, routed_by=why))
            every = [i for ids in decided.values() for i in ids]
            for start in range(0, len(every), 500):
                self._add_sequence(session, every[start:start + 500], event.sequence)
        return len({r for r, _ in decided})

    def _reviewer_for(self, item: ReviewItem, override: str | None, managers: dict[str, str]) -> tuple[str, str]:
        if override:
            owner_user = override
        elif not item.owner:
            return SECURITY, "security:no-owner"
        else:
            try:
                owner_user = self.directory.user_for(item.owner)
            except SlackApiError as exc:
                log.warning("cannot look up owner %s: %s", item.owner, exc.response.get("error"))
                owner_user = None
            if owner_user is None:
                return SECURITY, "security:owner-not-in-slack"
        if owns_itself(item.kind, item.name, item.owner) and not override:
            manager = self.manager_of(item.owner, owner_user, managers)
            if manager and manager != owner_user:
                return manager, "manager"
            return SECURITY, "security:self-owned"
        return owner_user, "owner"

    def manager_of(self, owner: str | None, owner_user: str | None, managers: dict[str, str]) -> str | None:
        """The owner's manager: STEWARD_REVIEW_MANAGERS by email or Slack id, else the
        "Manager" field of the owner's Slack profile (a custom field of type user)."""
        for key in (owner, owner_user):
            if key and normalise(key) in managers:
                return managers[normalise(key)]
        return self._profile_manager(owner_user) if owner_user else None

    MANAGER_LABELS = ("manager", "reports to", "line manager")

    def _profile_manager(self, user: str) -> str | None:
        try:
            if self._manager_field is None:  # the workspace's field definitions, once per process
                fields = self.client.team_profile_get().get("profile", {}).get("fields", [])
                self._manager_field = next((f["id"] for f in fields if (f.get("label") or "").strip().lower()
                                            in self.MANAGER_LABELS), "")
            if not self._manager_field:
                return None
            profile = self.client.users_profile_get(user=user).get("profile", {})
        except SlackApiError as exc:
            log.warning("cannot read Slack profiles for managers (%s): using STEWARD_REVIEW_MANAGERS only",
                        exc.response.get("error"))
            self._manager_field = ""
            return None
        value = str(((profile.get("fields") or {}).get(self._manager_field) or {}).get("value") or "").strip()
        return value if SLACK_USER_ID.match(value) else None

    # --- sending -------------------------------------------------------------------------

    def send_all(self, campaign_id: int, result: CycleResult) -> None:
        """One message per reviewer with undecided items and no message yet (or one whose
        post was interrupted: found again in the DM's history rather than sent twice)."""
        with session_scope(self.engine) as session:
            campaign = session.get(ReviewCampaign, campaign_id)
            reviewers = sorted(set(session.exec(select(ReviewItem.reviewer).where(
                ReviewItem.campaign_id == campaign_id, ReviewItem.reviewer.is_not(None)))))
            have = {m.reviewer: m for m in session.exec(select(ReviewMessage)
                                                        .where(ReviewMessage.campaign_id == campaign_id))}
        if campaign is None or campaign.status != "open":
            return
        todo = [r for r in reviewers if not (have.get(r) and have[r].ts)]
        if SECURITY in todo and not self.settings.security_channel:
            result.failures.append("items for the security team, but STEWARD_SECURITY_CHANNEL is not set")
            todo.remove(SECURITY)
        if not todo:
            return
        now = self.clock()
        resumed: set[str] = set()
        with write_scope(self.engine) as session:  # marked before posting, in one transaction
            for reviewer in todo:
                message = have.get(reviewer)
                if message is None:
                    session.add(ReviewMessage(campaign_id=campaign_id, reviewer=reviewer, attempted_at=now))
                    continue
                if message.attempted_at is not None:
                    resumed.add(reviewer)  # a post may have gone out before a crash: look first
                session.execute(update(ReviewMessage).where(ReviewMessage.id == message.id).values(attempted_at=now))
        with session_scope(self.engine) as session:
            marked = {m.reviewer: m for m in session.exec(select(ReviewMessage).where(
                ReviewMessage.campaign_id == campaign_id, ReviewMessage.reviewer.in_(todo)))}
        for reviewer in todo:
            self._send(campaign, reviewer, marked[reviewer], result, resume=reviewer in resumed)

    def _send(self, campaign: ReviewCampaign, reviewer: str, message: ReviewMessage, result: CycleResult, *,
              resume: bool) -> None:
        now = self.clock()
        channel = self.settings.security_channel if reviewer == SECURITY else reviewer
        if resume and self._resume(message, channel):
            return
        blocks, text = self._render(campaign, message)
        try:
            self.pacer.wait(channel)
            response = self.client.chat_postMessage(
                channel=channel, blocks=blocks, text=text, unfurl_links=False,
                metadata={"event_type": METADATA_EVENT, "event_payload": {"message": message.token}})
        except SlackApiError as exc:
            error = str(exc.response.get("error") or exc)
            result.failures.append(f"{reviewer}: {error}")
            with session_scope(self.engine) as session:
                session.execute(update(ReviewMessage).where(ReviewMessage.id == message.id).values(attempted_at=None))
                audit.record(session, actor="system", action=A.REVIEW_SEND_FAILED, at=now,
                             payload={"campaign": campaign.id, "reviewer": reviewer, "error": error})
            return
        self._mark_sent(message, response["channel"], response["ts"], now)
        result.sent += 1

    def _resume(self, message: ReviewMessage, channel: str) -> bool:
        try:
            dm = self.client.conversations_open(users=channel)["channel"]["id"] if channel[0] in "UW" else channel
            history = self.client.conversations_history(channel=dm, limit=50, include_all_metadata=True)
        except SlackApiError as exc:
            log.warning("cannot read %s to resume a review message: %s", channel, exc.response.get("error"))
            return True  # unknown whether it went out: hold rather than send twice; retried next cycle
        for found in history.get("messages", []):
            payload = (found.get("metadata") or {}).get("event_payload") or {}
            if payload.get("message") == message.token:
                self._mark_sent(message, dm, found["ts"], self.clock())
                return True
        return False

    def _mark_sent(self, message: ReviewMessage, channel: str, ts: str, now: datetime) -> None:
        with write_scope(self.engine) as session:
            row = session.get(ReviewMessage, message.id)
            row.channel, row.ts, row.sent_at = channel, ts, now
            ids = list(session.exec(select(ReviewItem.id).where(ReviewItem.campaign_id == row.campaign_id,
                                                                 ReviewItem.reviewer == row.reviewer)))
            event = audit.record(session, actor="system", action=A.REVIEW_SENT, at=now,
                                 payload={"campaign": row.campaign_id, "reviewer": row.reviewer, "channel": channel,
                                          "ts": ts, "items": ids})
            self._add_sequence(session, ids, event.sequence)

    def _render(self, campaign: ReviewCampaign, message: ReviewMessage) -> tuple[list, str]:
        view = self._page(campaign.id, message)
        blocks = [b.to_dict() for b in rb.review_message(campaign, view)]
        return blocks, rb.review_fallback(campaign, view)

    def _page(self, campaign_id: int, message: ReviewMessage, page: int | None = None) -> rb.MessagePage:
        with session_scope(self.engine) as session:
            items = list(session.exec(select(ReviewItem).where(ReviewItem.campaign_id == campaign_id,
                                                               ReviewItem.reviewer == message.reviewer)
                                      .order_by(ReviewItem.account_id, ReviewItem.kind, ReviewItem.name)))
            rem_ids = [r for i in items for r in i.remediation_ids]
            rems = {r.id: r for r in session.exec(select(Remediation).where(Remediation.id.in_(rem_ids)))} \
                if rem_ids else {}
        pages = max(1, -(-len(items) // rb.ITEMS_PER_PAGE))
        page = min(max(0, message.page if page is None else page), pages - 1)
        shown = items[page * rb.ITEMS_PER_PAGE:(page + 1) * rb.ITEMS_PER_PAGE]
        outcomes = {i.token: self._removal_outcome(i, rems) for i in shown if i.decision == "remove"}
        # Undo through the remediation engine's own button (its rules: bot.core.decisions.undo_rule)
        undo = {i.token: [(f"Undo {rems[r].action}", rems[r].token) for r in i.remediation_ids
                          if r in rems and rems[r].status == "succeeded" and not rems[r].dry_run
                          and registry.action(rems[r].action).reversible]
                for i in shown if i.decision == "remove"}
        return rb.MessagePage(
            token=message.token, reviewer=message.reviewer, items=shown, page=page, pages=pages, total=len(items),
            undecided=sum(1 for i in items if not i.decision),
            details_seen=sum(1 for i in shown if not i.decision and i.details_seen_at),
            outcomes={k: v for k, v in outcomes.items() if v}, undo={k: v for k, v in undo.items() if v})

    @staticmethod
    def _removal_outcome(item: ReviewItem, rems: dict[int, Remediation]) -> str:
        lines = []
        for rid in item.remediation_ids:
            rem = rems.get(rid)
            if rem is not None:
                lines.append(f"{rem.action} #{rem.id}: {rem.status.replace('_', ' ')}")
        lines += [f"{ent}: not asked ({why})" for ent, why in (item.removal_errors or {}).items()]
        return " · ".join(lines)

    def refresh(self, campaign_id: int, reviewer: str | None) -> None:
        """Rebuild one reviewer's message in place (after a click, a delegation, the close)."""
        if not reviewer:
            return
        with session_scope(self.engine) as session:
            campaign = session.get(ReviewCampaign, campaign_id)
            message = session.exec(select(ReviewMessage).where(ReviewMessage.campaign_id == campaign_id,
                                                               ReviewMessage.reviewer == reviewer)).first()
        if message is None or not message.ts:
            return
        blocks, text = self._render(campaign, message)
        try:
            self.client.chat_update(channel=message.channel, ts=message.ts, blocks=blocks, text=text)
        except SlackApiError as exc:
            log.warning("could not update review message %s: %s", message.ts, exc.response.get("error"))

    # =====================================================================================
    # Clicks (the Slack user id always comes from the signed payload)

    def _item(self, token: str, user: str, attempted: str) -> tuple[ReviewItem, ReviewCampaign]:
        with session_scope(self.engine) as session:
            item = session.exec(select(ReviewItem).where(ReviewItem.token == token)).first()
            campaign = session.get(ReviewCampaign, item.campaign_id) if item else None
        if item is None:
            self._audit_refusal(user, attempted, "unknown token")
            raise ReviewRefusal("This review item no longer exists.")
        return item, campaign

    def _authorized(self, user: str, token: str, attempted: str, *, undecided: bool = True):
        item, campaign = self._item(token, user, attempted)
        if campaign.status != "open":
            self._audit_refusal(user, attempted, f"campaign {campaign.id} is closed", item)
            raise ReviewRefusal(f"This review closed on {campaign.closed_at:%Y-%m-%d}; nothing changed.")
        allowed = item.reviewer == user or (item.reviewer == SECURITY and self.directory.is_approver(user))
        if not allowed:
            self._audit_refusal(user, attempted, "not the reviewer", item)
            raise ReviewRefusal("Only this item's reviewer can decide about it"
                                + (" (the security team's approvers)." if item.reviewer == SECURITY else "."))
        if self._is_own_access(user, item):
            self._audit_refusal(user, attempted, "own access", item)
            raise ReviewRefusal("Nobody certifies their own access: delegate it to your manager or the security team.")
        if undecided and item.decision:
            self._audit_refusal(user, attempted, f"already decided: {item.decision}", item)
            raise ReviewRefusal(f"Already decided: {item.decision.replace('_', ' ')} by {rb.who(item.decided_by)} "
                                f"{item.decided_at:%Y-%m-%d %H:%M} UTC.")
        return item, campaign

    def _is_own_access(self, user: str, item: ReviewItem) -> bool:
        if not owns_itself(item.kind, item.name, item.owner):
            return False
        try:
            return item.owner in self.directory.owner_values(user)
        except SlackApiError:
            return False

    def still_needed(self, user: str, token: str, *, reason: str | None = None) -> str:
        item, campaign = self._authorized(user, token, "review still_needed")
        self._decide(user, [item], "still_needed", reason=reason)
        self.refresh(campaign.id, item.reviewer)
        self.update_progress(campaign.id)
        return f"Recorded: {rb.principal_label(item)} is still needed."

    def open_details(self, user: str, message_token: str, page: int):
        """The details modal of one page; marks its undecided items as seen (bulk allowed)."""
        message, campaign = self._message(user, message_token, "review details")
        view = self._page(campaign.id, message, page)
        now = self.clock()
        fresh = [i.id for i in view.items if not i.decision and i.details_seen_at is None]
        with write_scope(self.engine) as session:
            row = session.get(ReviewMessage, message.id)
            row.details_opened_at = row.details_opened_at or now
            row.page = view.page
            if fresh:
                session.execute(update(ReviewItem).where(ReviewItem.id.in_(fresh)).values(details_seen_at=now))
            event = audit.record(session, actor=user, action=A.REVIEW_DETAILS_OPENED, at=now,
                                 payload={"campaign": campaign.id, "page": view.page,
                                          "items": [i.id for i in view.items]})
            self._add_sequence(session, [i.id for i in view.items], event.sequence)
        self.refresh(campaign.id, message.reviewer)
        return rb.details_modal(campaign, view.items)

    def all_still_needed(self, user: str, message_token: str, page: int) -> str:
        message, campaign = self._message(user, message_token, "review all_still_needed")
        view = self._page(campaign.id, message, page)
        seen = [i for i in view.items if not i.decision and i.details_seen_at is not None
                and not self._is_own_access(user, i)]
        if not seen:
            self._audit_refusal(user, "review all_still_needed", "details not opened")
            raise ReviewRefusal("Open the details first: “all still needed” only covers identities whose details "
                                "you have seen.")
        self._decide(user, seen, "still_needed", bulk=True)
        self.refresh(campaign.id, message.reviewer)
        self.update_progress(campaign.id)
        return f"Recorded: {len(seen)} identities still needed."

    def turn_page(self, user: str, message_token: str, page: int) -> None:
        message, campaign = self._message(user, message_token, "review page")
        with session_scope(self.engine) as session:
            session.execute(update(ReviewMessage).where(ReviewMessage.id == message.id).values(page=max(0, page)))
        self.refresh(campaign.id, message.reviewer)

    def _message(self, user: str, token: str, attempted: str) -> tuple[ReviewMessage, ReviewCampaign]:
        with session_scope(self.engine) as session:
            message = session.exec(select(ReviewMessage).where(ReviewMessage.token == token)).first()
            campaign = session.get(ReviewCampaign, message.campaign_id) if message else None
        if message is None:
            self._audit_refusal(user, attempted, "unknown token")
            raise ReviewRefusal("This review message no longer exists.")
        if not (message.reviewer == user or (message.reviewer == SECURITY and self.directory.is_approver(user))):
            self._audit_refusal(user, attempted, "not the reviewer")
            raise ReviewRefusal("Only this message's reviewer can use it.")
        if campaign.status != "open":
            raise ReviewRefusal(f"This review closed on {campaign.closed_at:%Y-%m-%d}.")
        return message, campaign

    def check_can_decide(self, user: str, token: str) -> ReviewItem:
        """Before a modal opens: refuse (audited) who could not decide anyway."""
        item, _ = self._authorized(user, token, "review modal")
        return item

    def remove(self, user: str, token: str, entitlement_ids: Iterable[str], *, reason: str = "") -> str:
        """Remove access…: the chosen entitlements go to the remediation engine, one
        `access-review-revocation` finding each (same approval rules, undo and audit)."""
        item, campaign = self._authorized(user, token, "review remove")
        chosen = list(dict.fromkeys(entitlement_ids))
        removable = {e["id"]: e for e in (item.snapshot or {}).get("entitlements", []) if e.get("removable")}
        wrong = [e for e in chosen if e not in removable]
        if not chosen or wrong:
            raise ReviewRefusal("Choose at least one entitlement Steward can remove." if not chosen
                                else f"Steward cannot remove {', '.join(wrong)}.")
        self._decide(user, [item], "remove", reason=reason or None, removed=chosen)
        lines, rem_ids, errors = [], [], {}
        for ent_id in chosen:
            ent = removable[ent_id]
            finding = self._revocation_finding(item, ent, user)
            try:
                line = self.campaigns._remediate(user, finding, REVIEW_REMOVAL_ACTIONS[ent["kind"]], self.clock())
            except ServiceError as exc:  # the campaigns' Refusal: planning refused, Slack down
                errors[ent_id] = str(exc)[:500]
                lines.append(f"{ent['label']}: not done — {exc}")
                continue
            with session_scope(self.engine) as session:
                rem = session.exec(select(Remediation).where(Remediation.finding_id == finding.id)
                                   .order_by(Remediation.id.desc())).first()
            if rem is not None:
                rem_ids.append(rem.id)
            lines.append(f"{ent['label']}: {line}")
        with write_scope(self.engine) as session:
            row = session.get(ReviewItem, item.id)
            row.remediation_ids = [*row.remediation_ids, *rem_ids]
            row.removal_errors = {**(row.removal_errors or {}), **errors}
        self.refresh(campaign.id, item.reviewer)
        self.update_progress(campaign.id)
        return "\n".join(lines)

    def _revocation_finding(self, item: ReviewItem, ent: dict, user: str) -> Finding:
        now = self.clock()
        fp = fingerprint(item.account_id, ACCESS_REVIEW_REVOCATION.id, item.arn, f"review:{item.id}:{ent['id']}")
        details = {k: v for k, v in (ent.get("details") or {}).items() if v not in (None, "")}
        details.update(review_campaign=item.campaign_id, review_item=item.id, entitlement=ent["id"],
                       explanation=f"Access review #{item.campaign_id}: its reviewer asked to remove {ent['label']}.")
        with write_scope(self.engine) as session:
            existing = session.exec(select(Finding).where(Finding.fingerprint == fp)).first()
            if existing is not None:
                return existing
            finding = Finding(
                fingerprint=fp, account_id=item.account_id, check_id=ACCESS_REVIEW_REVOCATION.id, resource=item.arn,
                sub_key=f"review:{item.id}:{ent['id']}"[:512], severity=ACCESS_REVIEW_REVOCATION.severity.value,
                title=ACCESS_REVIEW_REVOCATION.title, owner=item.owner, details=details,
                state=next_state(State.OPEN, Event.NOTIFY),  # told: the reviewer asked for it
                first_seen=now, last_seen=now, state_changed_at=now,
                notified_to=user if user[:1] in "UW" else None, notified_at=now,
                decision="revoke", decided_by=user, decided_at=now)
            session.add(finding)
            session.flush()
            session.refresh(finding)
            return finding

    def not_mine(self, user: str, token: str) -> str:
        item, _campaign = self._authorized(user, token, "review not_mine")
        if item.reviewer == SECURITY:
            raise ReviewRefusal("The security team is the last stop: delegate it to the person who should decide.")
        if not self.settings.security_channel:
            raise ReviewRefusal("No security channel is configured to take this over; delegate it instead.")
        self._reassign(user, item, SECURITY, "security:not-mine", A.REVIEW_NOT_MINE, reason=None)
        return "Sent to the security team to find the right reviewer."

    def delegate(self, user: str, token: str, to: str, reason: str) -> str:
        item, _campaign = self._authorized(user, token, "review delegate")
        reason = (reason or "").strip()
        if len(reason) < REASON_MIN:
            raise ReviewRefusal("Say why in a few words: the reason is kept as evidence.")
        if not SLACK_USER_ID.match(to or ""):
            raise ReviewRefusal("Choose a person to delegate to.")
        if to == user or to == item.reviewer:
            raise ReviewRefusal("That person already reviews it.")
        if self._is_own_access(to, item):
            self._audit_refusal(user, "review delegate", "delegate owns the access", item)
            raise ReviewRefusal("This is their own access, and nobody certifies their own access.")
        self._reassign(user, item, to, "delegated", A.REVIEW_DELEGATED, reason=reason[:1000])
        return f"Delegated to {rb.who(to)}; they'll find it in their review message."

    def _reassign(self, user: str, item: ReviewItem, to: str, why: str, action: A, *, reason: str | None) -> None:
        now = self.clock()
        old = item.reviewer
        with write_scope(self.engine) as session:
            moved = session.execute(update(ReviewItem).where(
                ReviewItem.id == item.id, ReviewItem.reviewer == old, ReviewItem.decision.is_(None)).values(
                reviewer=to, routed_by=why, delegated_from=user, delegation_reason=reason, details_seen_at=None))
            if moved.rowcount != 1:
                session.rollback()
                raise ReviewRefusal("Someone decided about this a moment ago.")
            event = audit.record(session, actor=user, action=action, resource=item.arn, account=item.account_id,
                                 at=now, payload={"campaign": item.campaign_id, "item": item.id, "from": old,
                                                  "to": to, "reason": reason})
            self._add_sequence(session, [item.id], event.sequence)
        self.refresh(item.campaign_id, old)
        result = CycleResult()
        self.send_all(item.campaign_id, result)  # the new reviewer's first message, if they had none
        self.refresh(item.campaign_id, to)

    def _decide(self, user: str, items: list[ReviewItem], decision: str, *, reason: str | None = None,
                removed: list[str] | None = None, bulk: bool = False) -> None:
        now = self.clock()
        with write_scope(self.engine) as session:
            sent = {m.reviewer: m for m in session.exec(select(ReviewMessage).where(
                ReviewMessage.campaign_id == items[0].campaign_id))}
            for item in items:
                message = sent.get(item.reviewer)
                since = item.details_seen_at or (message.sent_at if message else None)
                seconds = round((now - since).total_seconds(), 3) if since else None
                moved = session.execute(update(ReviewItem).where(
                    ReviewItem.id == item.id, ReviewItem.decision.is_(None), ReviewItem.reviewer == item.reviewer)
                    .values(decision=decision, decision_reason=reason, decided_by=user, decided_at=now,
                            decision_seconds=seconds, removed=removed or []))
                if moved.rowcount != 1:
                    session.rollback()
                    raise ReviewRefusal("Someone decided about this a moment ago.")
                event = audit.record(
                    session, actor=user, action=A.REVIEW_DECIDED, resource=item.arn, account=item.account_id, at=now,
                    payload={"campaign": item.campaign_id, "item": item.id, "decision": decision, "reason": reason,
                             "removed": removed or [], "reviewer": item.reviewer, "bulk": bulk,
                             "details_seen_at": item.details_seen_at, "decision_seconds": seconds})
                self._add_sequence(session, [item.id], event.sequence)

    @staticmethod
    def _add_sequence(session, item_ids: list[int], sequence: int) -> None:
        """Append an audit sequence to items' evidence: one UPDATE per distinct list (fresh
        items share theirs), not one per item."""
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for start in range(0, len(item_ids), 500):
            rows = session.execute(select(ReviewItem.id, ReviewItem.audit_sequences)
                                   .where(ReviewItem.id.in_(item_ids[start:start + 500])))
            for item_id, sequences in rows:
                groups[tuple(sequences or ())].append(item_id)
        for sequences, ids in groups.items():
            for start in range(0, len(ids), 500):
                session.execute(update(ReviewItem).where(ReviewItem.id.in_(ids[start:start + 500]))
                                .values(audit_sequences=[*sequences, sequence]))

    def _audit_refusal(self, user: str, attempted: str, reason: str, item: ReviewItem | None = None) -> None:
        with session_scope(self.engine) as session:
            audit.record(session, actor=user, action=A.REFUSED, at=self.clock(),
                         resource=item.arn if item else None, account=item.account_id if item else None,
                         payload={"attempted": attempted, "reason": reason,
                                  **({"campaign": item.campaign_id, "item": item.id} if item else {})})

    # =====================================================================================
    # Progress, reminders, escalation, close

    def progress(self, campaign_id: int) -> rb.Progress:
        now = self.clock()
        with session_scope(self.engine) as session:
            campaign = session.get(ReviewCampaign, campaign_id)
            rows = list(session.exec(select(ReviewItem.reviewer, ReviewItem.decision)
                                     .where(ReviewItem.campaign_id == campaign_id)))
            messages = {m.reviewer: m for m in session.exec(select(ReviewMessage)
                                                            .where(ReviewMessage.campaign_id == campaign_id))}
        decisions = Counter(d for _, d in rows)
        undecided = Counter(r for r, d in rows if not d)
        late = []
        for reviewer, n in sorted(undecided.items(), key=lambda kv: (-kv[1], kv[0] or "")):
            message = messages.get(reviewer)
            if message is not None and (message.escalated_at or (campaign.due_at and now >= campaign.due_at)):
                late.append((reviewer, n))
        overdue_reviewers = Counter(r for r, d in rows if d == "overdue")
        late += sorted(overdue_reviewers.items(), key=lambda kv: (-kv[1], kv[0] or ""))
        reviewers = {r for r, _ in rows if r}
        return rb.Progress(
            population=len(rows), decided=sum(1 for _, d in rows if d in ("still_needed", "remove")),
            still_needed=decisions["still_needed"], removed=decisions["remove"], overdue=decisions["overdue"],
            reviewers=len(reviewers), late_reviewers=late,
            unsent=sum(1 for r in reviewers if undecided.get(r) and not (messages.get(r) and messages[r].ts)))

    def update_progress(self, campaign_id: int, *, force: bool = False) -> None:
        """Post the progress message once, then edit it in place (at most every few seconds
        from clicks; always from the cycle and the close)."""
        channel = self.settings.security_channel
        if not channel:
            return
        now = self.clock()
        with session_scope(self.engine) as session:
            campaign = session.get(ReviewCampaign, campaign_id)
        if campaign is None:
            return
        recent = campaign.progress_updated_at and (now - campaign.progress_updated_at).total_seconds() < PROGRESS_MIN_SECONDS
        if campaign.progress_ts and recent and not force:
            return
        blocks = [b.to_dict() for b in rb.progress_message(campaign, self.progress(campaign_id), now=now)]
        text = f"Access review {campaign.name}: progress"
        try:
            if campaign.progress_ts:
                self.client.chat_update(channel=campaign.progress_channel, ts=campaign.progress_ts, blocks=blocks,
                                        text=text)
                values = {"progress_updated_at": now}
            else:
                response = self.client.chat_postMessage(channel=channel, blocks=blocks, text=text, unfurl_links=False)
                values = {"progress_channel": response["channel"], "progress_ts": response["ts"],
                          "progress_updated_at": now}
        except SlackApiError as exc:
            log.warning("could not post the review progress: %s", exc.response.get("error"))
            return
        with session_scope(self.engine) as session:
            session.execute(update(ReviewCampaign).where(ReviewCampaign.id == campaign_id).values(**values))

    def run_cycle(self, now: datetime | None = None) -> CycleResult:
        """Every open campaign: close it at its due date; otherwise send what is unsent,
        remind, escalate, and bring the progress message up to date."""
        now = now or self.clock()
        result = CycleResult()
        with session_scope(self.engine) as session:
            open_ids = list(session.exec(select(ReviewCampaign.id).where(ReviewCampaign.status == "open")
                                         .order_by(ReviewCampaign.id)))
        for campaign_id in open_ids:
            with session_scope(self.engine) as session:
                campaign = session.get(ReviewCampaign, campaign_id)
            if now >= campaign.due_at:
                self.close(campaign_id, actor="system", now=now)
                result.closed.append(campaign_id)
                continue
            self.route(campaign_id)
            self.send_all(campaign_id, result)
            self._remind_and_escalate(campaign, now, result)
            self.refresh_removals(campaign_id)
            self.update_progress(campaign_id, force=True)
        self.settle_revocations(now)
        return result

    def refresh_removals(self, campaign_id: int) -> None:
        """Messages listing removals still in the remediation engine's hands: shown as they
        stand now (approved, carried out, rejected, undone)."""
        with session_scope(self.engine) as session:
            rows = session.exec(select(ReviewItem.reviewer, ReviewItem.remediation_ids).where(
                ReviewItem.campaign_id == campaign_id, ReviewItem.decision == "remove"))
            reviewers = sorted({r for r, ids in rows if ids})
        for reviewer in reviewers:
            self.refresh(campaign_id, reviewer)

    def settle_revocations(self, now: datetime | None = None) -> int:
        """A revocation finding whose request ended without a change (rejected, cancelled,
        failed) is closed as resolved, audited: it stays in the evidence, not among open
        findings. Those carried out are `remediated` already."""
        now = now or self.clock()
        with write_scope(self.engine) as session:
            findings = list(session.exec(select(Finding).where(
                Finding.check_id == ACCESS_REVIEW_REVOCATION.id, Finding.state.in_(["notified", "approved", "failed"]))))
            closed = 0
            for finding in findings:
                rem = session.exec(select(Remediation).where(Remediation.finding_id == finding.id)
                                   .order_by(Remediation.id.desc())).first()
                if rem is None or rem.status not in ("rejected", "cancelled", "failed"):
                    continue
                finding.state = next_state(finding.state, Event.NOT_SEEN)  # resolved: nothing to remove any more
                finding.state_changed_at, finding.resolved_at = now, now
                audit.record(session, actor="system", action=A.FINDING_RESOLVED, subject_fingerprint=finding.fingerprint,
                             resource=finding.resource, account=finding.account_id, at=now,
                             payload={"reason": f"revocation {rem.status}", "remediation_id": rem.id,
                                      "review_item": (finding.details or {}).get("review_item")})
                closed += 1
        return closed

    def _remind_and_escalate(self, campaign: ReviewCampaign, now: datetime, result: CycleResult) -> None:
        with session_scope(self.engine) as session:
            messages = list(session.exec(select(ReviewMessage).where(ReviewMessage.campaign_id == campaign.id,
                                                                     ReviewMessage.sent_at.is_not(None))))
            undecided = Counter(session.exec(select(ReviewItem.reviewer).where(
                ReviewItem.campaign_id == campaign.id, ReviewItem.decision.is_(None))))
        remind = timedelta(days=self.settings.remind_after_days)
        escalate = timedelta(days=self.settings.escalate_after_days)
        for message in messages:
            waiting = undecided.get(message.reviewer, 0)
            if not waiting:
                continue
            if message.reminded_at is None and now - message.sent_at >= remind:
                try:
                    self.pacer.wait(message.channel)
                    self.client.chat_postMessage(channel=message.channel, thread_ts=message.ts,
                                                 text=rb.reminder_text(campaign, waiting))
                except SlackApiError as exc:
                    result.failures.append(f"reminder {message.reviewer}: {exc.response.get('error')}")
                else:
                    self._stamp(message, "reminded_at", A.REVIEW_REMINDED, now, undecided=waiting)
                    result.reminders += 1
            channel = self.settings.security_channel
            if (message.escalated_at is None and now - message.sent_at >= escalate and channel
                    and message.reviewer != SECURITY):
                try:
                    self.pacer.wait(channel)
                    self.client.chat_postMessage(
                        channel=channel, text=f"Access review: {message.reviewer} has {waiting} items waiting",
                        blocks=[b.to_dict() for b in rb.escalation_blocks(
                            campaign, message.reviewer, waiting, self.settings.escalate_after_days)])
                except SlackApiError as exc:
                    result.failures.append(f"escalation {message.reviewer}: {exc.response.get('error')}")
                else:
                    self._stamp(message, "escalated_at", A.REVIEW_ESCALATED, now, undecided=waiting)
                    result.escalations += 1

    def _stamp(self, message: ReviewMessage, column: str, action: A, now: datetime, **payload) -> None:
        with session_scope(self.engine) as session:
            session.execute(update(ReviewMessage).where(ReviewMessage.id == message.id).values({column: now}))
            audit.record(session, actor="system", action=action, at=now,
                         payload={"campaign": message.campaign_id, "reviewer": message.reviewer, **payload})

    def close(self, campaign_id: int, *, actor: str, now: datetime | None = None) -> ReviewCampaign:
        """Close a campaign: every undecided item becomes `overdue` (never certified)."""
        now = now or self.clock()
        with write_scope(self.engine) as session:
            moved = session.execute(update(ReviewCampaign).where(
                ReviewCampaign.id == campaign_id, ReviewCampaign.status == "open").values(status="closed", closed_at=now))
            if moved.rowcount != 1:
                session.rollback()
                known = session.get(ReviewCampaign, campaign_id)
                raise ReviewRefusal(f"campaign {campaign_id} is {known.status}" if known else
                                    f"no campaign {campaign_id} (`steward review status` lists them)")
            overdue = list(session.exec(select(ReviewItem.id).where(ReviewItem.campaign_id == campaign_id,
                                                                     ReviewItem.decision.is_(None))))
            for start in range(0, len(overdue), 500):
                session.execute(update(ReviewItem).where(ReviewItem.id.in_(overdue[start:start + 500]))
                                .values(decision="overdue", decided_by="system", decided_at=now))
            counts = Counter(session.exec(select(ReviewItem.decision).where(ReviewItem.campaign_id == campaign_id)))
            event = audit.record(session, actor=actor, action=A.REVIEW_CLOSED, at=now,
                                 payload={"campaign": campaign_id, "overdue": overdue,
                                          "counts": dict(sorted(counts.items()))})
            for start in range(0, len(overdue), 500):
                self._add_sequence(session, overdue[start:start + 500], event.sequence)
            campaign = session.get(ReviewCampaign, campaign_id)
            reviewers = sorted({r for r in session.exec(select(ReviewMessage.reviewer).where(
                ReviewMessage.campaign_id == campaign_id))})
        for reviewer in reviewers:
            self.refresh(campaign_id, reviewer)
        self.update_progress(campaign_id, force=True)
        return campaign

    def start_text(self, actor: str, *, accounts: Iterable[str] = (), due: date | None = None,
                   scope: str = "all") -> str:
        """`/iam review start`: start, and say in a few lines how it went (for the reply)."""
        try:
            result = self.start(actor=actor, accounts=accounts, due=due, scope=scope)
        except ReviewRefusal as exc:
            return f":no_entry: The access review was not started: {exc}"
        c = result.campaign
        text = (f":white_check_mark: Access review *{rb.escape(c.name)}* (#{c.id}) started: {c.population} identities "
                f"frozen from {len(c.scans)} account scan(s), {result.reviewers} reviewers, {result.sent} messages "
                f"sent, due {c.due_at:%Y-%m-%d}. Progress is in the security channel.")
        if result.failures:
            text += f"\n:warning: Not sent yet (retried every hour): {rb.escape('; '.join(result.failures[:5]))}"
        return text

    # =====================================================================================
    # Status and evidence

    def campaign(self, ref: str | int | None = None) -> ReviewCampaign:
        with session_scope(self.engine) as session:
            if ref is None:
                found = session.exec(select(ReviewCampaign).order_by(ReviewCampaign.id.desc())).first()
            else:
                found = session.get(ReviewCampaign, int(ref)) if str(ref).isdigit() else None
        if found is None:
            raise ReviewRefusal("no access review yet" if ref is None else f"no access review campaign {ref!r}")
        return found

    def status_text(self, user: str) -> str:
        with session_scope(self.engine) as session:
            campaigns = list(session.exec(select(ReviewCampaign).order_by(ReviewCampaign.id.desc()).limit(3)))
            mine = Counter(session.exec(select(ReviewItem.campaign_id).where(
                ReviewItem.reviewer == user, ReviewItem.decision.is_(None))))
        if not campaigns:
            return "No access review has been started yet."
        approver = self.directory.is_approver(user)
        lines = []
        for c in campaigns:
            head = f"*{rb.escape(c.name)}* (#{c.id}, {c.status}, due {c.due_at:%Y-%m-%d})"
            if approver:
                p = self.progress(c.id)
                lines.append(f"{head}: {p.percent}% decided ({p.decided}/{p.population}), {p.still_needed} still "
                             f"needed, {p.removed} removals, {p.overdue} overdue, {len(p.late_reviewers)} late reviewers")
            elif mine.get(c.id):
                lines.append(f"{head}: {mine[c.id]} identities wait for your review (see your DM from Steward)")
        return "\n".join(lines) or "Nothing waits for your review."

    def export(self, campaign_ref: str | int, *, actor: str) -> tuple[dict, list[dict], dict]:
        """(header, rows, summary): one row per item and entitlement (an item without any
        has one row). The chain head at export time is in the header and on every row."""
        campaign = self.campaign(campaign_ref)
        with session_scope(self.engine) as session:
            items = list(session.exec(select(ReviewItem).where(ReviewItem.campaign_id == campaign.id)
                                      .order_by(ReviewItem.account_id, ReviewItem.kind, ReviewItem.name)))
            rem_ids = [r for i in items for r in i.remediation_ids]
            rems: dict[int, Remediation] = {}
            for start in range(0, len(rem_ids), 500):
                for r in session.exec(select(Remediation).where(Remediation.id.in_(rem_ids[start:start + 500]))):
                    rems[r.id] = r
            fps = list({r.fingerprint for r in rems.values()})
            rem_events: dict[str, list[int]] = defaultdict(list)
            for start in range(0, len(fps), 500):
                for seq, fp in session.exec(select(AuditEvent.sequence, AuditEvent.subject_fingerprint).where(
                        AuditEvent.subject_fingerprint.in_(fps[start:start + 500])).order_by(AuditEvent.sequence)):
                    rem_events[fp].append(seq)
            started = session.exec(select(AuditEvent.sequence).where(
                AuditEvent.action == A.REVIEW_STARTED.value).order_by(AuditEvent.sequence)).all()
        # The export is audited, and its event is the chain head the file names (read and
        # written in one transaction, after the reads above have ended).
        with write_scope(self.engine) as write:
            exported = audit.record(write, actor=actor, action=A.REVIEW_EXPORTED, at=self.clock(),
                                    payload={"campaign": campaign.id, "items": len(items)})
            head = audit.chain_head(write)
        started_seq = next((s for s in started if self._event_campaign(s) == campaign.id), None)
        header = {"campaign": campaign.id, "name": campaign.name, "scope": campaign.scope,
                  "accounts": campaign.accounts, "scans": campaign.scans, "population": campaign.population,
                  "inventory_count": campaign.inventory_count, "status": campaign.status,
                  "started_by": campaign.started_by, "started_at": _iso(campaign.started_at),
                  "due_at": _iso(campaign.due_at), "closed_at": _iso(campaign.closed_at),
                  "started_sequence": started_seq, "export_sequence": exported.sequence,
                  "chain_head_sequence": head.last_sequence, "chain_head_hash": head.last_hash,
                  "chain_key_id": head.key_id}
        rows: list[dict] = []
        for item in items:
            ents = (item.snapshot or {}).get("entitlements") or [{"id": "", "kind": "", "label": "(no entitlements)"}]
            by_ent = {}
            for rid in item.remediation_ids:
                rem = rems.get(rid)
                if rem is not None:
                    ent = self._entitlement_of(rem, item)
                    if ent:
                        by_ent[ent] = rem
            for ent in ents:
                rem = by_ent.get(ent["id"])
                rows.append({
                    "campaign": campaign.id, "item_id": item.id, "account": item.account_id, "principal_kind": item.kind,
                    "principal": item.name, "arn": item.arn, "owner": item.owner or "",
                    "entitlement_kind": ent["kind"], "entitlement": ent["label"], "entitlement_id": ent["id"],
                    "reviewer": item.reviewer or "", "routed_by": item.routed_by or "",
                    "delegated_from": item.delegated_from or "", "delegation_reason": item.delegation_reason or "",
                    "decision": item.decision or "undecided", "decision_reason": item.decision_reason or "",
                    "decided_by": item.decided_by or "", "decided_at": _iso(item.decided_at) or "",
                    "details_seen_at": _iso(item.details_seen_at) or "",
                    "decision_seconds": "" if item.decision_seconds is None else item.decision_seconds,
                    "revocation_requested": ent["id"] in (item.removed or []),
                    "remediation_id": rem.id if rem else "", "remediation_action": rem.action if rem else "",
                    "remediation_status": rem.status if rem else (item.removal_errors or {}).get(ent["id"], ""),
                    "remediation_approved_by": (rem.approved_by or "") if rem else "",
                    "remediation_finished_at": (_iso(rem.finished_at) or "") if rem else "",
                    "audit_sequences": ";".join(str(s) for s in sorted(
                        {*item.audit_sequences, *(rem_events.get(rem.fingerprint, []) if rem else [])})),
                    "scan_id": (item.snapshot or {}).get("scan_id", ""),
                    "chain_head_sequence": head.last_sequence, "chain_head_hash": head.last_hash,
                })
        return header, rows, self._summary(campaign, items)

    def _event_campaign(self, sequence: int) -> int | None:
        with session_scope(self.engine) as session:
            event = session.get(AuditEvent, sequence)
        return (event.payload or {}).get("campaign") if event else None

    @staticmethod
    def _entitlement_of(rem: Remediation, item: ReviewItem) -> str | None:
        prefix = f"review:{item.id}:"  # the revocation finding's sub-key names the entitlement
        for ent in item.removed or []:
            if rem.fingerprint == fingerprint(item.account_id, ACCESS_REVIEW_REVOCATION.id, item.arn, prefix + ent):
                return ent
        return None

    @staticmethod
    def _summary(campaign: ReviewCampaign, items: list[ReviewItem]) -> dict:
        by_reviewer: dict[str, Counter] = defaultdict(Counter)
        for item in items:
            by_reviewer[item.reviewer or "unrouted"][item.decision or "undecided"] += 1
        decisions = Counter(i.decision or "undecided" for i in items)
        return {
            "population": len(items), "decided": decisions["still_needed"] + decisions["remove"],
            "still_needed": decisions["still_needed"], "revoked": decisions["remove"],
            "overdue": decisions["overdue"], "undecided": decisions["undecided"],
            "by_reviewer": {r: dict(sorted(c.items())) for r, c in sorted(by_reviewer.items())},
        }


def _token() -> str:
    import secrets

    return secrets.token_urlsafe(12)


# --- export formats -------------------------------------------------------------------

CSV_COLUMNS = (
    "campaign", "item_id", "account", "principal_kind", "principal", "arn", "owner", "entitlement_kind", "entitlement",
    "entitlement_id", "reviewer", "routed_by", "delegated_from", "delegation_reason", "decision", "decision_reason",
    "decided_by", "decided_at", "details_seen_at", "decision_seconds", "revocation_requested", "remediation_id",
    "remediation_action", "remediation_status", "remediation_approved_by", "remediation_finished_at",
    "audit_sequences", "scan_id", "chain_head_sequence", "chain_head_hash",
)


def to_csv(rows: Iterable[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([neutralise(row.get(c)) for c in CSV_COLUMNS])
    return buffer.getvalue()


def summary_csv(header: dict, summary: dict) -> str:
    """The summary sheet: the campaign's facts, its totals, and the decisions by reviewer."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["field", "value"])
    for key in ("campaign", "name", "scope", "status", "started_by", "started_at", "due_at", "closed_at",
                "population", "inventory_count", "started_sequence", "export_sequence", "chain_head_sequence",
                "chain_head_hash", "chain_key_id"):
        writer.writerow([key, neutralise(header.get(key))])
    writer.writerow(["accounts", neutralise(" ".join(header.get("accounts") or []))])
    writer.writerow(["scans", neutralise(json.dumps(header.get("scans"), sort_keys=True))])
    for key in ("population", "decided", "still_needed", "revoked", "overdue", "undecided"):
        writer.writerow([f"total_{key}", summary[key]])
    writer.writerow([])
    writer.writerow(["reviewer", "still_needed", "remove", "overdue", "undecided", "total"])
    for reviewer, counts in summary["by_reviewer"].items():
        writer.writerow([neutralise(reviewer), counts.get("still_needed", 0), counts.get("remove", 0),
                         counts.get("overdue", 0), counts.get("undecided", 0), sum(counts.values())])
    return buffer.getvalue()


def to_jsonl(header: dict, rows: Iterable[dict], summary: dict) -> Iterator[str]:
    yield json.dumps({"record": "campaign", **header}, sort_keys=True, default=str)
    for row in rows:
        yield json.dumps({"record": "item", **row}, sort_keys=True, default=str)
    yield json.dumps({"record": "summary", **summary}, sort_keys=True, default=str)

