"""The use cases behind slash commands and buttons, for one serving process."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from cachetools import LRUCache
from sqlalchemy import Engine

from bot.config import Settings
from bot.core.lifecycle import OPEN_STATES, State
from bot.db import queries
from bot.db.engine import session_scope
from bot.db.models import Finding
from bot.services.campaigns import Campaigns
from bot.services.common import Clock, ServiceError, utcnow
from bot.services.remediation import RemediationService
from bot.services.reviews import ReviewService
from bot.services.scans import ScanService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyView:
    """One access key of the caller's (for `/iam keys`), with its open findings."""

    account_id: str
    user: str
    arn: str
    slot: int
    key_id: str | None  # None until a scan resolved it
    active: bool
    age_days: int | None
    last_used: str | None
    last_used_service: str | None
    last_used_region: str | None
    findings: list


@dataclass
class WhoAmIView:
    identities: list
    findings: list
    last_scan: datetime | None


class Steward:
    """The use cases behind slash commands and buttons; one per serving process."""

    def __init__(self, settings: Settings, *, engine: Engine, directory, client=None,
                 scans: ScanService | None = None, clock: Clock = utcnow):
        self.settings = settings
        self.engine = engine
        self.directory = directory  # bot.slack.owners.OwnerDirectory
        self.scans = scans or ScanService(settings, engine=engine, clock=clock)
        self.remediations = RemediationService(
            settings, engine=engine, is_approver=self.is_approver, clock=clock
        )
        self.campaigns = Campaigns(
            settings, engine=engine, client=client if client is not None else directory.client,
            directory=directory, remediations=self.remediations, clock=clock,
        )
        self.reviews = ReviewService(settings, engine=engine, client=self.campaigns.client, directory=directory,
                                     campaigns=self.campaigns, clock=clock)
        from bot.services.activity import ActivityService

        self.activity = ActivityService(settings, engine=engine, client=self.campaigns.client, directory=directory,
                                        campaigns=self.campaigns, clock=clock)
        self.clock = clock
        self._background = None
        self._whoami_cache = LRUCache(maxsize=2048)

    def in_background(self, fn, *args) -> None:
        """Run slow work (a scan asked for in Slack) after the ack, two at a time at most."""
        if self._background is None:
            from concurrent.futures import ThreadPoolExecutor

            self._background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="steward-bg")
        future = self._background.submit(fn, *args)
        future.add_done_callback(lambda f: f.exception() and log.error("background work failed",
                                                                       exc_info=f.exception()))

    def is_approver(self, user_id: str) -> bool:
        return self.directory.is_approver(user_id)

    def whoami_reply(self, user_id: str) -> tuple[str, list[dict]]:
        """`/iam whoami` as (fallback text, blocks), cached per person and audit-log head.

        Everything whoami shows changes only through audited events (scans, decisions,
        remediations, assignments), so the audit chain's head sequence is a version number:
        a cached reply is served only while no event has been written since.
        """
        from bot.db import audit
        from bot.slack.blocks.whoami import whoami_blocks

        with session_scope(self.engine) as session:
            head = audit.chain_head(session)
        key = (user_id, head.last_sequence if head else None)
        cached = self._whoami_cache.get(key)
        if cached is None:
            view = self.whoami(user_id)
            ids = {i.account_id for i in view.identities} | {f.account_id for f in view.findings}
            blocks = whoami_blocks(view.identities, view.findings, last_scan=view.last_scan,
                                   owner_tags=self.settings.owner_tags, accounts=self.account_names(ids))
            cached = ("Your IAM identities and open findings", [b.to_dict() for b in blocks])
            self._whoami_cache[key] = cached
        return cached

    def whoami(self, user_id: str) -> WhoAmIView:
        values = self.directory.owner_values(user_id)
        with session_scope(self.engine) as session:
            return WhoAmIView(
                identities=queries.identities_owned_by(session=session, owner_values=values),
                findings=queries.findings_owned_by(session=session, owner_values=values, states=OPEN_STATES),
                last_scan=queries.last_successful_scan_at(session=session),
            )

    def keys_of(self, user_id: str) -> list[KeyView]:
        """The caller's access keys across accounts (from the last scan's inventory), each
        with the open findings on it (a key finding names its slot or, once resolved, its id)."""
        view = self.whoami(user_id)
        now = self.clock()
        keys = []
        for identity in view.identities:
            for key in (identity.facts or {}).get("keys") or []:
                slot, key_id = key.get("slot"), key.get("access_key_id")
                created = datetime.fromisoformat(key["created"]) if key.get("created") else None
                keys.append(KeyView(
                    account_id=identity.account_id, user=identity.name, arn=identity.arn, slot=slot,
                    key_id=key_id, active=bool(key.get("active")),
                    age_days=(now - created).days if created else None,
                    last_used=key.get("last_used"), last_used_service=key.get("last_used_service"),
                    last_used_region=key.get("last_used_region"),
                    findings=[f for f in view.findings if f.resource == identity.arn and (
                        f.sub_key in (f"slot:{slot}", key_id or "-") or (f.details or {}).get("key_slot") == slot)],
                ))
        return keys

    def findings_of(self, user_id: str) -> list[Finding]:
        values = self.directory.owner_values(user_id)
        with session_scope(self.engine) as session:
            return queries.findings_owned_by(session=session, owner_values=values, states=OPEN_STATES)

    def account_names(self, account_ids) -> dict[str, str]:
        """Account id -> its alias or Organizations name, for the accounts that have one."""
        with session_scope(self.engine) as session:
            return queries.account_names(session=session, account_ids=account_ids)

    def search_findings(self, query) -> tuple[list[Finding], str]:
        """Open findings of another person, an account or a check (security approvers only)."""
        with session_scope(self.engine) as session:
            if query.user:
                values = self.directory.owner_values(query.user)
                found = queries.findings_owned_by(session=session, owner_values=values, states=OPEN_STATES)
                return found, f"Open findings of <@{query.user}>"
            found = queries.findings_in_states(
                session=session, states=OPEN_STATES, account_id=query.account, check_id=query.check
            )
            what = f"account {query.account}" if query.account else f"check {query.check}"
            return found, f"Open findings for {what}"

    def record_refusal(self, actor: str, attempted: str, reason: str) -> None:
        from bot.db import audit
        log.info("refused a request by %s: %s", actor, reason)  # not what they typed: it stays in Slack and the audit log
        with session_scope(self.engine) as session:
            audit.record(
                session,
                actor=actor,
                action=audit.AuditAction.REFUSED,
                payload={"attempted": attempted[:200], "reason": reason},
                at=self.clock(),
            )

    def scan_now(self, actor: str, account: str | None) -> str:
        """Run a scan for a security approver and say in two lines how it went."""
        try:
            report = self.scans.run(only_accounts=[account] if account else [], actor=actor)
        except ServiceError as exc:
            return f":x: The scan could not start: {exc}"
        self.campaigns.refresh_resolved(report.resolved)
        lines = []
        for o in report.outcomes:
            if o.failed:
                lines.append(f":x: `{o.account_id}` ({o.label}) scan failed: {o.error}")
            else:
                c = o.changes
                lines.append(
                    f":white_check_mark: `{o.account_id}`: {len(o.findings)} findings "
                    f"({c.get('new', 0)} new, {c.get('resolved', 0)} resolved, {c.get('reopened', 0)} reopened)"
                )
        return "\n".join(lines) or "No accounts are configured."

    def home_view(self, user_id: str):
        from bot.db import audit
        from bot.slack.blocks.home import home_view, is_decision

        values = self.directory.owner_values(user_id)
        with session_scope(self.engine) as session:
            findings = queries.findings_owned_by(session=session, owner_values=values, states=OPEN_STATES)
            kept = queries.findings_owned_by(session=session, owner_values=values, states=[State.EXCEPTED])
            recent = [e for e in audit.events_about(session, user_id, limit=50)
                      if e.actor == user_id and is_decision(e)]
        return home_view(findings, kept, recent, accounts=self.account_names({f.account_id for f in findings}))

    def audit_events(self, needle: str, limit: int = 20) -> list:
        """Recent events about an ARN, access key id, fingerprint, Slack user or account, or
        about an IAM user given by name (every account's user of that name)."""
        from bot.db import audit
        with session_scope(self.engine) as session:
            needles = [needle]
            if not needle.startswith("arn:"):
                needles += [i.arn for i in queries.identities_named(session=session, name=needle)]
            events = {e.sequence: e for n in needles for e in audit.events_about(session, n, limit=limit)}
        return sorted(events.values(), key=lambda e: e.sequence, reverse=True)[:limit]

    def digest_preview(self):
        """This week's digest, built but not posted (for `/iam digest`)."""
        from bot.services.digest import DigestService

        return DigestService(self.settings, self.engine, clock=self.clock, directory=self.directory).build()
