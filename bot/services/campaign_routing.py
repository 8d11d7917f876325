"""Campaign routing: findings to owners' DMs or security triage, reminders, escalations,
auto-remediation at the announced deadline, and decisions that ran out (a mixin of
`bot.services.campaigns.Campaigns`).

Sending is crash-safe: findings are marked with a batch id (committed) before their DM is
posted, the DM carries that id in its message metadata, and the ts is stored after. A
cycle that finds a batch without a ts looks for the message in the DM's history before
sending again, so an interrupted campaign resumes without duplicates.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError
from sqlalchemy import update

from bot.core.decisions import AUTO_ACTOR, SECURITY_ONLY, auto_action
from bot.core.lifecycle import Event, InvalidTransition, next_state
from bot.db import audit, queries
from bot.db.audit import AuditAction as A
from bot.db.engine import session_scope, write_scope
from bot.db.models import Finding
from bot.run.metrics import DMS_SENT
from bot.services.common import ServiceError
from bot.slack.blocks import dm
from checks.remediate import registry

log = logging.getLogger(__name__)


METADATA_EVENT = "steward_notification"
#: Slack errors that are the app's setup, not one message: every further post (anywhere, or
#: to that channel) would fail the same way, so a cycle stops trying after the first, logs
#: it once and leaves the findings pending for the next cycle.
APP_ERRORS = frozenset({"missing_scope", "account_inactive", "invalid_auth", "token_revoked", "not_authed"})
CHANNEL_ERRORS = frozenset({"not_in_channel", "is_archived", "channel_not_found"})


class _HistoryUnreadable(Exception):
    """A DM's history cannot be read, so whether an interrupted send went out is unknown."""


def _describe(exc: SlackApiError) -> str:
    """Slack's error code, with the scope it needs when that is the problem."""
    error = str(exc.response.get("error") or exc)
    return f"{error} (needs {exc.response['needed']})" if exc.response.get("needed") else error


@dataclass
class CycleReport:
    dms: int = 0
    notified: int = 0
    triaged: int = 0
    resumed: int = 0
    reminders: int = 0
    escalations: int = 0
    auto_remediated: int = 0
    failures: list[str] = field(default_factory=list)
    unrouted: int = 0  # no owner and no security channel to send them to
    held: int = 0  # STEWARD_MODE=observe: findings that would have been routed
    outside_pilot: int = 0  # owners not in STEWARD_PILOT_OWNERS: their findings went to triage


class Pacer:
    """Slack allows about one message per second per channel: wait when we go faster."""

    def __init__(self, interval: float = 1.0, sleep=time.sleep, clock=time.monotonic):
        self.interval, self.sleep, self.clock = interval, sleep, clock
        self._last: dict[str, float] = {}

    def wait(self, channel: str) -> None:
        last = self._last.get(channel)
        if last is not None:
            delay = self.interval - (self.clock() - last)
            if delay > 0:
                self.sleep(delay)
        self._last[channel] = self.clock()


class CampaignRouting:
    """Needs from its host: settings, engine, client, directory, remediations, clock, pacer,
    `_blocked`, and `_render`, `refresh_message`, `_refresh_finding`, `_finding`, `_carry_out`."""

    # =====================================================================================
    # Routing

    def run_cycle(self, now: datetime | None = None) -> CycleReport:
        """One routing cycle: new findings to owners or triage; reminders; escalations."""
        now = now or self.clock()
        report = CycleReport()
        self._blocked = {}
        with session_scope(self.engine) as session:
            pending = queries.findings_to_route(session=session)
            overrides = queries.overrides_for(session=session, resources=[f.resource for f in pending])
        mode = self.settings.mode
        if mode == "observe":  # scan and digest only: nothing goes to anyone
            report.held = len(pending)
            return report
        by_owner: dict[str, list[Finding]] = defaultdict(list)
        triage: list[Finding] = []
        if mode == "owners":
            try:
                self.directory.prime(f.owner for f in pending if f.resource not in overrides)
            except SlackApiError as exc:  # fall back to one lookup per owner
                log.warning("users.list failed (%s); looking owners up one by one", exc.response.get("error"))
        for finding in pending:
            owner = None
            if mode == "owners" and finding.check_id not in SECURITY_ONLY:
                owner = self._slack_owner(finding, overrides)
                if owner and not self._in_pilot(owner, finding):
                    owner = None  # STEWARD_PILOT_OWNERS: not (yet) DMed, triaged instead
                    report.outside_pilot += 1
            (by_owner[owner] if owner else triage).append(finding)
        for owner in sorted(by_owner):
            messages = dm.pack_cards(dm.identity_cards(by_owner[owner]))  # whole cards, worst first
            for part, cards in enumerate(messages, start=1):
                self._send(owner, owner, [f for card in cards for f in card], now, report,
                           part=(part, len(messages)))
        if triage:
            if self.settings.security_channel:
                for cards in dm.pack_cards(dm.identity_cards(triage)):
                    self._send(self.settings.security_channel, None, [f for card in cards for f in card], now, report)
            else:
                report.unrouted += len(triage)
                log.warning("%d findings have no owner and STEWARD_SECURITY_CHANNEL is not set", len(triage))
        self._remind(now, report)
        self._escalate(now, report)
        if mode == "owners":  # announced in owners' DMs only
            self._auto_remediate(now, report)
        return report

    def _in_pilot(self, user: str, finding: Finding) -> bool:
        """STEWARD_PILOT_OWNERS unset: everyone; else the listed Slack ids and emails."""
        pilots = set(self.settings.pilot_owners)
        if not pilots or user in pilots or (finding.owner or "").lower() in pilots:
            return True
        try:
            return any(value.lower() in pilots for value in self.directory.owner_values(user))
        except SlackApiError:
            return False

    def _slack_owner(self, finding: Finding, overrides: dict[str, str]) -> str | None:
        if finding.resource in overrides:
            return overrides[finding.resource]
        try:
            return self.directory.user_for(finding.owner)
        except SlackApiError as exc:
            log.warning("cannot look up owner %s: %s", finding.owner, exc.response.get("error"))
            return None

    def _send(self, channel: str, owner: str | None, findings: list[Finding], now: datetime,
              report: CycleReport, part: tuple[int, int] = (1, 1)) -> None:
        if self._is_blocked(channel):
            return  # already refused this cycle: said once, tried again next cycle
        try:
            resumed = self._resume(channel, owner, findings, now)
        except _HistoryUnreadable as exc:  # did the DM go out? Unknown: hold rather than send it twice
            held = [f for f in findings if f.notify_batch]
            report.failures.append(f"{channel}: holding {len(held)} finding(s), history unreadable: {exc}")
            self._audit_failure(channel, f"history unreadable: {exc}", held, now)
            findings = [f for f in findings if not f.notify_batch]
            resumed = set()
            if not findings:
                return
        if resumed:
            report.resumed += len(resumed)
            findings = [f for f in findings if f.id not in resumed]
            if not findings:
                return
        batch = str(uuid.uuid4())
        with session_scope(self.engine) as session:  # marked before sending: see the module doc
            session.execute(update(Finding).where(Finding.id.in_([f.id for f in findings]))
                            .values(notify_batch=batch))
        blocks, text = self._render(findings, owner, part=part)
        try:
            self.pacer.wait(channel)
            response = self.client.chat_postMessage(
                channel=channel, blocks=blocks, text=text, unfurl_links=False,
                metadata={"event_type": METADATA_EVENT, "event_payload": {"batch": batch}},
            )
        except SlackApiError as exc:
            error = self._refused(channel, exc)
            report.failures.append(f"{channel}: {error}")
            with session_scope(self.engine) as session:
                session.execute(update(Finding).where(Finding.notify_batch == batch).values(notify_batch=None))
            self._audit_failure(channel, error, findings, now)
            return
        self._mark_sent(findings, batch, response["channel"], response["ts"], owner, now)
        DMS_SENT.inc()
        report.dms += 1 if owner else 0
        report.notified += len(findings) if owner else 0
        report.triaged += 0 if owner else len(findings)

    def _mark_sent(self, findings, batch: str, channel: str, ts: str, owner: str | None, now: datetime) -> None:
        with write_scope(self.engine) as session:
            for finding in findings:
                row = session.get(Finding, finding.id)
                if row.notify_batch != batch:
                    continue
                row.notify_channel, row.notify_ts, row.notified_to, row.notified_at = channel, ts, owner, now
                row.reminded_at = row.escalated_at = None
                row.state, row.state_changed_at = next_state(row.state, Event.NOTIFY), now
            audit.record(session, actor="system", action=A.FINDING_NOTIFIED, at=now,
                         payload={"channel": channel, "ts": ts, "to": owner or "security-triage",
                                  "fingerprints": [f.fingerprint for f in findings]})

    def _is_blocked(self, channel: str) -> bool:
        return "*" in self._blocked or channel in self._blocked

    def _refused(self, channel: str, exc: SlackApiError) -> str:
        """Slack's reason for refusing a post; a setup error is logged once and stops further
        posts (everywhere, or to that channel) for the rest of the cycle."""
        error = _describe(exc)
        code = exc.response.get("error")
        key = "*" if code in APP_ERRORS else channel if code in CHANNEL_ERRORS else None
        if key is not None and key not in self._blocked:
            self._blocked[key] = error
            where = "anywhere" if key == "*" else f"to {channel}"
            log.error("Slack refused a post to %s: %s; not posting %s until the next cycle "
                      "(run `steward doctor`)", channel, error, where)
        return error

    def _audit_failure(self, channel: str, error: str, findings: list[Finding], now: datetime) -> None:
        with session_scope(self.engine) as session:
            audit.record(session, actor="system", action=A.FINDING_NOTIFY_FAILED, at=now,
                         payload={"channel": channel, "error": error,
                                  "fingerprints": [f.fingerprint for f in findings]})

    def _resume(self, channel: str, owner: str | None, findings: list[Finding], now: datetime) -> set[int]:
        """Findings whose message was posted but not recorded (a crash): adopt that message.
        Raises _HistoryUnreadable when the history cannot be read."""
        batches = {f.notify_batch for f in findings if f.notify_batch}
        if not batches:
            return set()
        try:
            dm_channel = channel
            if owner:  # a DM is addressed by the user id; its history by the IM channel's id
                dm_channel = self.client.conversations_open(users=owner)["channel"]["id"]
            history = self.client.conversations_history(channel=dm_channel, limit=50, include_all_metadata=True)
        except SlackApiError as exc:
            log.error("cannot read %s to resume a campaign, holding its findings: %s (run `steward doctor`)",
                      channel, _describe(exc))
            raise _HistoryUnreadable(_describe(exc)) from None
        found: set[int] = set()
        for message in history.get("messages", []):
            batch = ((message.get("metadata") or {}).get("event_payload") or {}).get("batch")
            if batch in batches:
                mine = [f for f in findings if f.notify_batch == batch]
                self._mark_sent(mine, batch, dm_channel, message["ts"], owner, now)
                found.update(f.id for f in mine)
        return found

    def refresh_resolved(self, fingerprints: Iterable[str]) -> int:
        """After a scan: replace the buttons of findings it resolved with "Resolved" in place,
        so nobody is asked about what is already gone. Returns the messages updated."""
        with session_scope(self.engine) as session:
            findings = queries.findings_by_fingerprints(session=session, fingerprints=fingerprints)
        messages = _group_by_message(findings)
        for channel, ts in messages:
            self.refresh_message(channel, ts)
        return len(messages)

    def _remind(self, now: datetime, report: CycleReport) -> None:
        days = self.settings.remind_after_days
        with session_scope(self.engine) as session:
            waiting = queries.waiting_findings(session=session, notified_before=now - timedelta(days=days),
                                               field="reminded_at")
        for (channel, ts), findings in _group_by_message(waiting).items():
            if self._is_blocked(channel):
                continue
            try:
                self.pacer.wait(channel)
                self.client.chat_postMessage(channel=channel, thread_ts=ts, text=dm.reminder_text(len(findings), days))
            except SlackApiError as exc:
                report.failures.append(f"reminder {channel}: {self._refused(channel, exc)}")
                continue
            self._stamp(findings, "reminded_at", A.FINDING_REMINDED, now, channel=channel, ts=ts)
            report.reminders += 1

    def _escalate(self, now: datetime, report: CycleReport) -> None:
        days = self.settings.escalate_after_days
        channel = self.settings.security_channel
        if not channel:
            return
        with session_scope(self.engine) as session:
            waiting = queries.waiting_findings(session=session, notified_before=now - timedelta(days=days),
                                               field="escalated_at")
        by_owner: dict[str, list[Finding]] = defaultdict(list)
        for finding in waiting:
            by_owner[finding.notified_to].append(finding)
        for owner, findings in sorted(by_owner.items()):
            if self._is_blocked(channel):
                break
            try:
                self.pacer.wait(channel)
                self.client.chat_postMessage(channel=channel, blocks=dm.escalation_message(owner, findings, days),
                                             text=f"Escalation: <@{owner}> has {len(findings)} findings waiting")
            except SlackApiError as exc:
                report.failures.append(f"escalation {owner}: {self._refused(channel, exc)}")
                continue
            self._stamp(findings, "escalated_at", A.FINDING_ESCALATED, now, owner=owner)
            report.escalations += 1

    def _stamp(self, findings: list[Finding], column: str, action: A, now: datetime, **payload) -> None:
        """Record that a reminder or escalation about `findings` went out (and audit it)."""
        with session_scope(self.engine) as session:
            session.execute(update(Finding).where(Finding.id.in_([f.id for f in findings])).values({column: now}))
            audit.record(session, actor="system", action=action, at=now,
                         payload={**payload, "fingerprints": [f.fingerprint for f in findings]})

    # -- optional auto-remediation (STEWARD_AUTO_REMEDIATE) ---------------------------------

    def auto_deadlines(self, findings: Iterable[Finding]) -> dict[str, tuple[datetime, str]]:
        """Per finding token: when Steward will act itself, and what it will do (for the DM)."""
        if not self.settings.auto_remediate:
            return {}
        days = timedelta(days=self.settings.escalate_after_days)
        deadlines = {}
        for finding in findings:
            action = auto_action(finding.check_id) if finding.check_id in self.settings.auto_remediate else None
            if action:
                deadlines[finding.token] = ((finding.notified_at or self.clock()) + days, registry.action(action).title)
        return deadlines

    def _auto_remediate(self, now: datetime, report: CycleReport) -> None:
        """Take the announced reversible action on findings nobody decided about in time."""
        if not self.settings.auto_remediate:
            return
        cutoff = now - timedelta(days=self.settings.escalate_after_days)
        with session_scope(self.engine) as session:
            due = [f for f in queries.waiting_findings(session=session, notified_before=cutoff)
                   if f.check_id in self.settings.auto_remediate]
        for finding in due:
            action = auto_action(finding.check_id)
            try:
                rem = self._carry_out(self.remediations.request(finding.id, action, actor=AUTO_ACTOR), AUTO_ACTOR)
            except ServiceError as exc:
                report.failures.append(f"auto {action} on {finding.resource}: {exc}")
                continue
            if rem.status == "succeeded":
                report.auto_remediated += 1
            self._refresh_finding(self._finding(finding.id))

    def expire_decisions(self, now: datetime | None = None) -> int:
        """Snoozes, exceptions and rotation promises that ran out: ask the owner again."""
        now = now or self.clock()
        with write_scope(self.engine) as session:
            ending = queries.decisions_ending(session=session, now=now)
            for finding in ending:
                kind = finding.decision
                with contextlib.suppress(InvalidTransition):  # a rotation promise stays notified
                    finding.state = next_state(finding.state, Event.WAKE)
                finding.decision = finding.decision_reason = finding.decision_until = None
                finding.notify_channel = finding.notify_ts = finding.notify_batch = None
                finding.state_changed_at = now
                with contextlib.suppress(InvalidTransition):  # a rotation promise was notified
                    finding.state = next_state(finding.state, Event.REROUTE)
                action = A.SNOOZE_EXPIRED if kind == "snooze" else A.EXCEPTION_EXPIRED
                audit.record(session, actor="system", action=action, subject_fingerprint=finding.fingerprint,
                             resource=finding.resource, account=finding.account_id, at=now,
                             payload={"decision": kind})
        return len(ending)


def _group_by_message(findings: Iterable[Finding]) -> dict[tuple[str, str], list[Finding]]:
    groups: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for finding in findings:
        if finding.notify_channel and finding.notify_ts:
            groups[(finding.notify_channel, finding.notify_ts)].append(finding)
    return groups
