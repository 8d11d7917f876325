"""Owner campaigns: route findings to people, take their decisions, remind, escalate.

Sending is crash-safe: findings are marked with a batch id (committed) before their DM is
posted, the DM carries that id in its message metadata, and the ts is stored after. A
cycle that finds a batch without a ts looks for the message in the DM's history before
sending again, so an interrupted campaign resumes without duplicates.

Every click goes through `click()`: the Slack user id from the signed payload must be the
finding's owner or a security approver; anything else is refused privately and audited.
Decided findings are shown, not re-decided: a stale click says who handled it and when.

Approvals, undo and settling interrupted work: bot/services/approvals.py.
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

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine, update

from bot.config import Settings
from bot.core.decisions import (
    AUTO_ACTOR,
    ROTATE_DEADLINE_DAYS,
    SECURITY_ONLY,
    Choice,
    UndoRule,
    auto_action,
    removal_action,
    undo_rule,
)
from bot.core.lifecycle import Event, InvalidTransition, next_state
from bot.db import audit, queries
from bot.db.audit import AuditAction as A
from bot.db.engine import session_scope, write_scope
from bot.db.models import Finding, OwnerOverride, Remediation
from bot.run.metrics import DMS_SENT
from bot.services.approvals import ApprovalFlow, Refusal
from bot.services.common import Clock, ServiceError, utcnow
from bot.services.remediation import RemediationRefused, RemediationService
from bot.slack.blocks import dm
from bot.slack.blocks.approvals import who as mention
from bot.slack.blocks.common import escape
from checks.remediate import registry

log = logging.getLogger(__name__)

#: The Keep… reason: the modal's max_length and the column's (Finding.decision_reason).
KEEP_REASON_MAX = 1000

METADATA_EVENT = "steward_notification"
ACTIONABLE = frozenset({"open", "notified", "reopened", "failed"})
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


class Campaigns(ApprovalFlow):
    def __init__(self, settings: Settings, *, engine: Engine, client: WebClient, directory,
                 remediations: RemediationService, clock: Clock = utcnow, pacer: Pacer | None = None):
        self.settings = settings
        self.engine = engine
        self.client = client
        self.directory = directory
        self.remediations = remediations
        self.clock = clock
        self.pacer = pacer or Pacer()
        self._blocked: dict[str, str] = {}  # "*" or a channel -> why Slack refuses it, this cycle

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
        by_owner: dict[str, list[Finding]] = defaultdict(list)
        triage: list[Finding] = []
        try:
            self.directory.prime(f.owner for f in pending if f.resource not in overrides)
        except SlackApiError as exc:  # fall back to one lookup per owner
            log.warning("users.list failed (%s); looking owners up one by one", exc.response.get("error"))
        for finding in pending:
            owner = None if finding.check_id in SECURITY_ONLY else self._slack_owner(finding, overrides)
            (by_owner[owner] if owner else triage).append(finding)
        for owner in sorted(by_owner):
            findings = by_owner[owner]
            for part, chunk in enumerate(_chunks(findings, dm.FINDINGS_PER_MESSAGE), start=1):
                self._send(owner, owner, chunk, now, report, part=(part, -(-len(findings) // dm.FINDINGS_PER_MESSAGE)))
        if triage:
            if self.settings.security_channel:
                for chunk in _chunks(triage, dm.FINDINGS_PER_MESSAGE):
                    self._send(self.settings.security_channel, None, chunk, now, report)
            else:
                report.unrouted += len(triage)
                log.warning("%d findings have no owner and STEWARD_SECURITY_CHANNEL is not set", len(triage))
        self._remind(now, report)
        self._escalate(now, report)
        self._auto_remediate(now, report)
        return report

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
                if finding.state == "notified":
                    finding.state = "open"
                action = A.SNOOZE_EXPIRED if kind == "snooze" else A.EXCEPTION_EXPIRED
                audit.record(session, actor="system", action=action, subject_fingerprint=finding.fingerprint,
                             resource=finding.resource, account=finding.account_id, at=now,
                             payload={"decision": kind})
        return len(ending)

    # =====================================================================================
    # Clicks

    def click(self, user: str, choice: Choice, token: str, *, action: str | None = None,
              days: int | None = None) -> str:
        """Carry out an owner's (or approver's) button click. Returns a short confirmation;
        raises Refusal (audited) when the click may not change anything."""
        now = self.clock()
        finding = self._authorized_finding(user, token, f"{choice}{':' + action if action else ''}", now)
        if choice is Choice.REMEDIATE:
            return self._remediate(user, finding, action, now)
        if choice is Choice.REQUEST_REMOVAL:
            return self._remediate(user, finding, removal_action(finding.details or {}), now)
        if choice is Choice.SNOOZE:
            if days not in (7, 30):
                raise Refusal("Snooze for 7 or 30 days.")
            return self._decide(user, finding, "snooze", Event.SNOOZE, now, until=now + timedelta(days=days),
                                audit_action=A.DECISION_SNOOZE)
        if choice is Choice.ROTATE:
            return self._decide(user, finding, "rotate", None, now,
                                until=now + timedelta(days=ROTATE_DEADLINE_DAYS), audit_action=A.DECISION_REMEDIATE)
        if choice is Choice.ACK:
            return self._decide(user, finding, "ack", None, now, audit_action=A.DECISION_KEEP)
        if choice is Choice.NOT_MINE:
            return self._not_mine(user, finding, now)
        if choice is Choice.ROTATE_FOR_ME:
            return self._rotate_for_me(user, finding)
        raise Refusal("That choice needs a form: use the Keep… button.")

    def _rotate_for_me(self, user: str, finding: Finding) -> str:
        """Create the new key and hand it over in Secrets Manager (never in Slack)."""
        from bot.services.rotation import RotationRefused, RotationService

        service = RotationService(self.settings, engine=self.engine, client=self.client, clock=self.clock,
                                  aws_session_factory=self.remediations._aws_session_factory,
                                  remediations=self.remediations)
        try:
            _row, message = service.start(finding.id, actor=user)
        except RotationRefused as exc:
            raise Refusal(str(exc)) from None
        return f":arrows_counterclockwise: {message}"

    def authorized_finding(self, user: str, token: str, attempted: str) -> Finding:
        """The finding behind a button, if `user` may look at and decide about it (else Refusal, audited)."""
        return self._authorized_finding(user, token, attempted, self.clock())

    def check_can_decide(self, user: str, token: str) -> None:
        """Raise Refusal (audited) unless `user` may decide about this finding now."""
        self._authorized_finding(user, token, "keep", self.clock())

    def keep(self, user: str, token: str, *, reason: str, until: datetime) -> str:
        """The Keep… modal: an exception with a reason, ending on `until` (validated)."""
        now = self.clock()
        finding = self._authorized_finding(user, token, "keep", now)
        return self._decide(user, finding, "exception", Event.EXCEPT, now, until=until, reason=reason,
                            audit_action=A.EXCEPTION_GRANTED)

    def validate_keep(self, reason: str, until_text: str | None) -> tuple[dict[str, str], datetime | None]:
        """Errors by modal block id, or the end of the exception (end of that day, UTC)."""
        errors: dict[str, str] = {}
        if len((reason or "").strip()) < 5:
            errors["reason"] = "Say in a few words why this is needed."
        elif len(reason.strip()) > KEEP_REASON_MAX:  # the modal says so too; a forged submission may not
            errors["reason"] = f"Keep the reason under {KEEP_REASON_MAX:,} characters (this one has {len(reason.strip()):,})."
        until = None
        try:
            day = datetime.strptime(until_text or "", "%Y-%m-%d").date()
        except ValueError:
            errors["until"] = "Pick an end date."
        else:
            today = self.clock().date()
            limit = self.settings.exception_max_days
            if day <= today:
                errors["until"] = "The end date must be in the future."
            elif (day - today).days > limit:
                errors["until"] = f"An exception lasts at most {limit} days (until {today + timedelta(days=limit)})."
            else:
                until = datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=self.clock().tzinfo)
        return errors, until

    def assign(self, approver: str, token: str, owner: str) -> str:
        """Security triage: give a finding an owner (stored as an override) and route it now."""
        now = self.clock()
        with session_scope(self.engine) as session:
            finding = queries.finding_by_token(session=session, token=token)
        if finding is None:
            raise self._unknown(approver, "assign owner", "This finding no longer exists.")
        if not self.directory.is_approver(approver):
            self._refuse(approver, finding, "assign owner: not a security approver", now)
            raise Refusal("Only security approvers can assign owners.")
        with write_scope(self.engine) as session:
            override = session.get(OwnerOverride, finding.resource)
            previous = override.slack_user_id if override else None
            if override is None:
                session.add(OwnerOverride(resource=finding.resource, slack_user_id=owner, assigned_by=approver,
                                          assigned_at=now))
            else:
                override.slack_user_id, override.assigned_by, override.assigned_at = owner, approver, now
            row = session.get(Finding, finding.id)
            old_channel, old_ts = row.notify_channel, row.notify_ts
            row.notify_channel = row.notify_ts = row.notify_batch = row.notified_to = None
            row.decision = row.decided_by = row.decided_at = None
            if row.state == "notified":
                row.state = "open"
            audit.record(session, actor=approver, action=A.OWNER_ASSIGNED, subject_fingerprint=row.fingerprint,
                         resource=row.resource, account=row.account_id, at=now,
                         payload={"owner": owner, "previous_owner": previous})
        if old_channel and old_ts:
            self.refresh_message(old_channel, old_ts)
        self.run_cycle(now)  # routes it to the new owner right away
        return f"Assigned to <@{owner}>; they have a DM about it now."

    # -- helpers --------------------------------------------------------------------------

    def _authorized_finding(self, user: str, token: str, attempted: str, now: datetime) -> Finding:
        with session_scope(self.engine) as session:
            finding = queries.finding_by_token(session=session, token=token)
            in_flight = queries.remediation_in_flight(session=session, finding_id=finding.id) if finding else None
        if finding is None:
            raise self._unknown(user, attempted, "This finding no longer exists.")
        if in_flight is not None and self.remediations.stale(in_flight):  # its process is gone: settle it now
            self.settle_interrupted(only=[in_flight.id])
            with session_scope(self.engine) as session:
                finding = session.get(Finding, finding.id)
                in_flight = queries.remediation_in_flight(session=session, finding_id=finding.id)
        if not (self._is_owner(user, finding) or self.directory.is_approver(user)):
            self._refuse(user, finding, f"{attempted}: not the owner or a security approver", now)
            raise Refusal("Only the owner of this IAM identity or a security approver can decide about it.")
        if in_flight is not None:
            self._refuse(user, finding, f"{attempted}: remediation #{in_flight.id} is {in_flight.status}", now)
            raise Refusal(f"Already in hand: {in_flight.action} is {in_flight.status} "
                          f"(requested by <@{in_flight.requested_by}> {dm.when(in_flight.requested_at)}).")
        if finding.state not in ACTIONABLE or finding.decision:
            who = finding.decided_by or "a scan"
            self._refuse(user, finding, f"{attempted}: finding is {finding.state}", now)
            raise Refusal(f"Already handled: {finding.decision or finding.state} by "
                          f"{mention(who)} {dm.when(finding.decided_at or finding.state_changed_at)}.")
        return finding

    def _is_owner(self, user: str, finding: Finding) -> bool:
        if finding.notified_to == user:
            return True
        with session_scope(self.engine) as session:
            override = session.get(OwnerOverride, finding.resource)
        if override is not None:
            return override.slack_user_id == user
        return bool(finding.owner) and finding.owner in self.directory.owner_values(user)

    def _remediate(self, user: str, finding: Finding, action_id: str | None, now: datetime) -> str:
        if not action_id:
            raise Refusal("There is no single policy to remove here; ask the security team.")
        try:
            rem = self.remediations.request(finding.id, action_id, actor=user)
        except RemediationRefused as exc:
            raise Refusal(str(exc)) from None
        except ServiceError as exc:
            raise Refusal(f"Steward could not plan this: {exc}") from None
        with session_scope(self.engine) as session:
            audit.record(session, actor=user, action=A.DECISION_REMEDIATE, subject_fingerprint=finding.fingerprint,
                         resource=finding.resource, account=finding.account_id, at=now,
                         payload={"action": action_id, "remediation_id": rem.id})
        action = registry.action(action_id)
        try:
            if action.owner_may_apply_alone:
                rem = self._carry_out(rem, user)
                return self._outcome_line(rem)
            self._post_approval(rem, finding)
        except RemediationRefused as exc:
            raise Refusal(str(exc)) from None
        finally:
            self._refresh_finding(self._finding(finding.id))
        return "Sent to the security team for approval; you'll get a message here when someone decides."

    def _decide(self, user: str, finding: Finding, decision: str, event: Event | None, now: datetime, *,
                until: datetime | None = None, reason: str | None = None, audit_action: A) -> str:
        with session_scope(self.engine) as session:
            moved = session.execute(  # compare-and-set: a second click finds it decided
                update(Finding)
                .where(Finding.id == finding.id, Finding.decision.is_(None), Finding.state == finding.state)
                .values(decision=decision, decision_until=until, decision_reason=reason, decided_by=user,
                        decided_at=now,
                        state=next_state(finding.state, event) if event else finding.state,
                        state_changed_at=now)
            )
            if moved.rowcount != 1:
                session.rollback()
                raise Refusal("Someone decided about this a moment ago.")
            audit.record(session, actor=user, action=audit_action, subject_fingerprint=finding.fingerprint,
                         resource=finding.resource, account=finding.account_id, at=now,
                         payload={"decision": decision, "until": until, "reason": reason})
        self._refresh_finding(self._finding(finding.id))
        day = f"{until:%Y-%m-%d}" if until else ""
        return {"snooze": f"Snoozed until {day}.", "exception": f"Kept until {day}.",
                "rotate": f"Noted: rotate it by {day}; the scans will check.", "ack": "Acknowledged.",
                "not_mine": "Noted."}[decision]

    def _not_mine(self, user: str, finding: Finding, now: datetime) -> str:
        if not self.settings.security_channel:
            raise Refusal("No security channel is configured to take this over.")
        self._decide(user, finding, "not_mine", None, now, audit_action=A.DECISION_NOT_MINE)
        with write_scope(self.engine) as session:
            row = session.get(Finding, finding.id)
            row.decision = None  # back to triage: an approver assigns the right owner
            row.notify_channel = row.notify_ts = row.notify_batch = row.notified_to = None
            row.state = "open"
            override = session.get(OwnerOverride, finding.resource)
            if override is not None and override.slack_user_id == user:
                session.delete(override)
        self._send(self.settings.security_channel, None, [self._finding(finding.id)], now, CycleReport())
        return "Sent to the security team to find the right owner."

    def _finding(self, finding_id: int) -> Finding:
        with session_scope(self.engine) as session:
            return session.get(Finding, finding_id)

    def _refresh_finding(self, finding: Finding) -> None:
        if finding.notify_channel and finding.notify_ts:
            self.refresh_message(finding.notify_channel, finding.notify_ts)

    def refresh_message(self, channel: str, ts: str) -> None:
        """Rebuild one DM or triage message from the database and replace it in place."""
        with session_scope(self.engine) as session:
            findings = queries.findings_in_message(session=session, channel=channel, ts=ts)
        if not findings:
            return
        owner = findings[0].notified_to
        blocks, text = self._render(findings, owner)
        try:
            self.client.chat_update(channel=channel, ts=ts, blocks=blocks, text=text)
        except SlackApiError as exc:
            log.warning("could not update message %s/%s: %s", channel, ts, exc.response.get("error"))

    def _render(self, findings: list[Finding], owner: str | None, part=(1, 1)):
        outcomes = self.outcomes(findings)
        if owner:
            blocks = dm.owner_dm(findings, outcomes, dry_run=self.settings.dry_run, part=part,
                                 deadlines=self.auto_deadlines(findings))
            return blocks, dm.dm_fallback_text(findings)
        reason = ("Nobody could be matched to these (owner tags, email user names). Assign an owner, or act on "
                  "account-level findings here.")
        return dm.triage_message(findings, outcomes, reason=reason), f"IAM Steward triage: {len(findings)} finding(s)"

    def outcomes(self, findings: Iterable[Finding]) -> dict[str, dm.Outcome]:
        findings = list(findings)
        with session_scope(self.engine) as session:
            latest = queries.latest_remediations(session=session, finding_ids=[f.id for f in findings])
        result = {}
        for finding in findings:
            outcome = outcome_of(finding, latest.get(finding.id))
            if outcome is not None:
                result[finding.token] = outcome
        return result

    def _outcome_line(self, rem: Remediation) -> str:
        return outcome_of(None, rem).text

    def _unknown(self, actor: str, attempted: str, message: str) -> Refusal:
        """A click whose token matches nothing (forged, mistyped, of another kind, or of a
        deleted row): audited like every refusal; the token itself is not stored."""
        with session_scope(self.engine) as session:
            audit.record(session, actor=actor, action=A.REFUSED, at=self.clock(),
                         payload={"attempted": attempted[:200], "reason": "unknown token"})
        return Refusal(message)

    def _refuse(self, actor: str, finding: Finding, reason: str, now: datetime) -> None:
        with session_scope(self.engine) as session:
            audit.record(session, actor=actor, action=A.REFUSED, subject_fingerprint=finding.fingerprint,
                         resource=finding.resource, account=finding.account_id, at=now, payload={"reason": reason})


def outcome_of(finding: Finding | None, rem: Remediation | None) -> dm.Outcome | None:
    """What to show instead of buttons: a remediation's state, or the owner's decision (pure)."""
    if rem is not None and rem.status not in ("rejected", "undone", "failed", "cancelled"):
        title = registry.action(rem.action).title
        dry = " (dry run: nothing changed in AWS)" if rem.dry_run else ""
        if rem.status == "planned":
            return dm.Outcome(f":hourglass: {mention(rem.requested_by)} asked to *{title}*; waiting for a security "
                              "approver.", pending=True)
        if rem.status == "undo_requested":
            return dm.Outcome(f":hourglass: *{title}* done; {mention(rem.undo_requested_by)} asked to undo it "
                              "(it gives access back): waiting for a security approver.", pending=True)
        if rem.status in ("approved", "executing", "undoing"):
            return dm.Outcome(f":hourglass: {title}: in progress…", pending=True)
        action = registry.action(rem.action)
        undo, label = None, "Undo"
        if action.reversible and not rem.dry_run:
            undo = rem.token
            owner = finding.notified_to if finding is not None else None
            if undo_rule(action, requested_by=rem.requested_by, undoer=owner or "",
                         undoer_is_owner=bool(owner)) is not UndoRule.ONE_CLICK:
                label = "Ask to undo"
        text = (f":white_check_mark: *{title}* done by {mention(rem.approved_by or rem.requested_by)} "
                f"{dm.when(rem.finished_at)}{dry}.")
        if rem.error and rem.error.startswith("undo"):  # the last undo attempt, and why it did not happen
            text += f" ({dm.escape(rem.error)})"
        return dm.Outcome(text, undo_token=undo, undo_label=label)
    if finding is None:
        assert rem is not None
        word = {"rejected": ":no_entry: Rejected", "undone": ":leftwards_arrow_with_hook: Undone",
                "failed": ":x: Failed", "cancelled": ":warning: Not carried out"}[rem.status]
        who = rem.undone_by or rem.approved_by or rem.requested_by
        why = f": {dm.escape(rem.error)}" if rem.error else ""
        return dm.Outcome(f"{word}: {registry.action(rem.action).title.lower()} ({mention(who)}){why}.")
    if finding.state == "resolved":
        return dm.Outcome(f":white_check_mark: Resolved: the scan of {dm.when(finding.resolved_at)} no longer sees it.")
    if finding.decision:
        until = f" until {finding.decision_until:%Y-%m-%d}" if finding.decision_until else ""
        who = mention(finding.decided_by)
        text = {
            "snooze": f":zzz: Snoozed{until} by {who}.",
            "exception": f":pushpin: Kept{until} by {who}: “{escape(finding.decision_reason or '')}”",
            "rotate": f":repeat: {who} will rotate it{until.replace(' until', ' by')}; the scans will check.",
            "ack": f":eyes: Acknowledged by {who} {dm.when(finding.decided_at)}.",
            "not_mine": f":leftwards_arrow_with_hook: {who} says this is not theirs; sent to security triage.",
        }.get(finding.decision, f"{finding.decision} by {who}")
        return dm.Outcome(text)
    if rem is not None and rem.status == "failed":
        return None  # the buttons come back; the failure is in the audit log and the reply
    return None


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _group_by_message(findings: Iterable[Finding]) -> dict[tuple[str, str], list[Finding]]:
    groups: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for finding in findings:
        if finding.notify_channel and finding.notify_ts:
            groups[(finding.notify_channel, finding.notify_ts)].append(finding)
    return groups

