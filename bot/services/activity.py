"""Activity: risky IAM changes from CloudTrail, asked about and escalated (issue #16).

`ingest` takes parsed CloudTrail events (`checks.activity.events`) in any order and any
number of times: each event id is inserted into `activity_seen` in the transaction that
handles it, so a second delivery changes nothing. Events no rule cares about cost that one
insert. A risky one (`checks.activity.rules`) becomes an `activity_event` row (audited as
`activity.detected`) and then:

* route ASK with a person to ask: a DM "Did you do this?" (`activity.asked`). "Yes, it was
  me" needs a reason (`activity.confirmed`); "No, this wasn't me" (`activity.denied`) or no
  answer within STEWARD_ACTIVITY_ANSWER_MINUTES (`activity.unanswered`, found by `sweep`)
  escalates;
* root, an actor Steward cannot map to a person, a DM that cannot be delivered, or a
  security-route rule: straight to the security channel (`activity.escalated`).

The escalation offers one-click containment: each option is a remediation action of
`checks/remediate` run through `RemediationService` like any cleanup (its approval rules,
leases, undo and audit). The engine acts on findings, so each option is recorded as a
finding of check `activity:<rule>` created *resolved* (`resolved_at` = its first sighting):
it never routes, reminds, counts as open, or is resolved again by a scan; it is only the
handle the remediation hangs on. Only security approvers may contain; actions that need
an approver (detach a policy, remove a password, restore a role's previous trust policy)
post the usual approval request, and undoing a containment gives access back, so it needs
a second approver. Restoring a trust policy writes one (`iam:UpdateAssumeRolePolicy`,
which could grant anyone the role), so it runs under the restore role only and is refused,
with the by-hand command, while that role is off; the previous document comes from the
latest scan's principal inventory (`_previous_trust_policy`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from bot.config import Settings
from bot.core.lifecycle import State
from bot.db import audit, queries
from bot.db.audit import AuditAction as A
from bot.db.engine import session_scope, write_scope
from bot.db.models import (
    Account,
    ActivityEvent,
    ActivitySeen,
    Finding,
    IamIdentity,
    OwnerOverride,
    PrincipalInventory,
)
from bot.services.approvals import Refusal
from bot.services.common import Clock, ServiceError, utcnow
from bot.services.remediation import RemediationRefused
from bot.slack.blocks import activity as blocks
from checks.activity import rules as risk_rules
from checks.activity.events import Actor, CloudTrailEvent
from checks.model import fingerprint
from checks.ownership import EMAIL, SLACK_USER_ID
from checks.remediate import registry

log = logging.getLogger(__name__)

ASKING, CONFIRMED, DENIED, UNANSWERED, ESCALATED = "asking", "confirmed", "denied", "unanswered", "escalated"
CLAIM_TIMEOUT = timedelta(minutes=1)
PREFIX = "activity:"


@dataclass
class IngestReport:
    received: int = 0
    duplicates: int = 0
    quiet: int = 0
    asked: int = 0
    escalated: int = 0
    rows: list[int] = field(default_factory=list)


class ActivityService:
    def __init__(self, settings: Settings, *, engine: Engine, client, directory, campaigns,
                 clock: Clock = utcnow, policy_reader: Callable[[str, str], Mapping | None] | None = None):
        self.settings = settings
        self.engine = engine
        self.client = client
        self.directory = directory
        self.campaigns = campaigns
        self.remediations = campaigns.remediations
        self.clock = clock
        self._policy_reader = policy_reader
        campaigns.on_activity_change = self.refresh_for_finding

    # =====================================================================================
    # Intake

    def ingest(self, events: Sequence[CloudTrailEvent]) -> IngestReport:
        """Handle a batch: quiet events in one transaction, each risky one in its own."""
        report = IngestReport(received=len(events))
        now = self.clock()
        unique: dict[str, CloudTrailEvent] = {}
        for event in events:
            if event.event_id in unique:
                report.duplicates += 1
            else:
                unique[event.event_id] = event
        internal = None
        quiet: list[CloudTrailEvent] = []
        risky: list[tuple[CloudTrailEvent, list[risk_rules.Verdict]]] = []
        for event in unique.values():
            if internal is None and _may_need_context(event):
                internal = self._internal_accounts()
            verdicts = risk_rules.evaluate(event, self._context(event, internal))
            (risky.append((event, verdicts)) if verdicts else quiet.append(event))
        if quiet:
            dupes = self._mark_seen(quiet, now)
            report.duplicates += dupes
            report.quiet += len(quiet) - dupes
        for event, verdicts in risky:
            row_id = self._record(event, verdicts, now)
            if row_id is None:
                report.duplicates += 1
                continue
            report.rows.append(row_id)
            if self._deliver(row_id) == ASKING:
                report.asked += 1
            else:
                report.escalated += 1
        return report

    def _mark_seen(self, events: list[CloudTrailEvent], now: datetime) -> int:
        """Insert the quiet events' ids in one statement (INSERT … ON CONFLICT DO NOTHING
        RETURNING, on both databases); the ids it did not insert were seen before: duplicates."""
        table = ActivitySeen.__table__
        rows = [{"event_id": e.event_id, "account_id": e.account_id, "seen_at": now, "risky": False} for e in events]
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        statement = insert(table).on_conflict_do_nothing(index_elements=["event_id"]).returning(table.c.event_id)
        with self.engine.begin() as conn:
            inserted = conn.execute(statement, rows).scalars().all()  # one multi-row INSERT (insertmanyvalues)
        return len(rows) - len(inserted)

    def _record(self, event: CloudTrailEvent, verdicts: list[risk_rules.Verdict], now: datetime) -> int | None:
        verdict = sorted(verdicts, key=lambda v: v.severity.rank)[0]
        person = self._person(event.actor) if verdict.route is risk_rules.Route.ASK else None
        state = ASKING if person else ESCALATED
        row = ActivityEvent(
            event_id=event.event_id, account_id=event.account_id, rule_id=verdict.rule.id,
            severity=verdict.severity.value, summary=verdict.risk.summary[:1000], target=verdict.risk.target[:2048],
            facts=event.facts(), actor_arn=event.actor.arn[:2048], actor_kind=event.actor.kind,
            containment=[{"action": c.action, "resource": c.resource, "label": c.label, "details": dict(c.details)}
                         for c in verdict.risk.containment],
            person=person, state=state, event_time=event.time, received_at=now,
            answer_due=now + timedelta(minutes=self.settings.activity_answer_minutes) if person else None,
            claimed_at=now,
        )
        try:
            with write_scope(self.engine) as session:
                session.add(ActivitySeen(event_id=event.event_id, account_id=event.account_id, seen_at=now, risky=True))
                session.add(row)
                session.flush()
                audit.record(session, actor="system", action=A.ACTIVITY_DETECTED, resource=row.target,
                             account=row.account_id, at=now,
                             payload={"event_id": event.event_id, "rule": row.rule_id, "severity": row.severity,
                                      "summary": row.summary, "facts": row.facts, "actor_arn": row.actor_arn,
                                      "route": verdict.route.value, "person": person,
                                      "also": [v.rule.id for v in verdicts if v is not verdict]})
                if state == ESCALATED:  # straight to security: said here, once, whatever the post does
                    audit.record(session, actor="system", action=A.ACTIVITY_ESCALATED, resource=row.target,
                                 account=row.account_id, at=now,
                                 payload={"event_id": event.event_id, "why": self._why_security(row)})
                return row.id
        except IntegrityError:
            return None

    def record_unreadable(self, *, message_id: str, body: str, error: str) -> None:
        """A body that is not a CloudTrail record: audited (its digest and first characters)
        before the message is deleted, so nothing vanishes unrecorded."""
        with session_scope(self.engine) as session:
            audit.record(session, actor="system", action=A.ACTIVITY_UNREADABLE, at=self.clock(), payload={
                "message_id": message_id[:200], "error": error[:500], "size": len(body),
                "sha256": hashlib.sha256(body.encode("utf-8", "replace")).hexdigest(),
                "excerpt": body[:300]})

    # =====================================================================================
    # Who did it

    def _person(self, actor: Actor) -> str | None:
        """The Slack user behind `actor`, or None (then security is asked)."""
        try:
            owners: list[str] = []
            if actor.kind == "user" and actor.arn:
                with session_scope(self.engine) as session:
                    override = session.get(OwnerOverride, actor.arn)
                    if override is not None:
                        return override.slack_user_id
                    identity = session.scalars(select(IamIdentity).where(IamIdentity.arn == actor.arn)).first()
                if identity is not None and identity.owner:
                    owners.append(identity.owner)
                if actor.user_name and EMAIL.match(actor.user_name):
                    owners.append(actor.user_name)
            elif actor.kind in ("role-session", "identity-center"):
                owners.extend(actor.person_hints())
            for owner in owners:
                if SLACK_USER_ID.match(owner) or EMAIL.match(owner):
                    user = self.directory.user_for(owner)
                    if user:
                        return user
        except SlackApiError as exc:
            log.warning("could not look the actor up in Slack (%s): asking security", exc.response.get("error"))
        return None

    def _internal_accounts(self) -> frozenset[str]:
        with session_scope(self.engine) as session:
            return frozenset(session.scalars(select(Account.id)))

    def _context(self, event: CloudTrailEvent, internal: frozenset[str] | None) -> risk_rules.RuleContext:
        return risk_rules.RuleContext(
            internal_accounts=internal or frozenset(),
            policy_document=lambda arn: self._policy_document(event.account_id, arn),
            previous_trust_policy=lambda arn: self._previous_trust_policy(event.account_id, arn),
        )

    def _previous_trust_policy(self, account_id: str, role_arn: str) -> Mapping | None:
        """The role's trust policy as the account's latest scan saw it (the principal
        inventory), by role name: the event names the role, not its path. None: unknown."""
        name = role_arn.rsplit("/", 1)[-1]
        with session_scope(self.engine) as session:
            row = session.scalars(select(PrincipalInventory).where(
                PrincipalInventory.account_id == account_id, PrincipalInventory.kind == "role",
                PrincipalInventory.name == name)).first()
        trust = (row.entitlements or {}).get("trust_policy") if row is not None else None
        return trust if isinstance(trust, Mapping) else None

    def _policy_document(self, account_id: str, arn: str) -> Mapping | None:
        """A customer managed policy's default document, read from AWS (None if unreadable)."""
        try:
            if self._policy_reader is not None:
                return self._policy_reader(account_id, arn)
            from checks.collect import aws_client, fetch_policy_documents

            iam = aws_client(self.remediations._aws(account_id), "iam", self.settings.aws_max_attempts)
            (policy,) = fetch_policy_documents(iam, [arn])
            return policy.document
        except Exception as exc:  # not judged rather than not taken
            log.warning("could not read %s to judge an attach: %s", arn, exc)
            return None

    # =====================================================================================
    # Delivering: the DM, or the security channel

    def _deliver(self, row_id: int) -> str:
        row = self._get(row_id)
        if row.state == ASKING and row.dm_ts is None:
            try:
                response = self.client.chat_postMessage(
                    channel=row.person, blocks=blocks.ask_dm(row, minutes=self.settings.activity_answer_minutes),
                    text=f"Did you do this? {blocks.fallback_text(row)}", unfurl_links=False)
            except SlackApiError as exc:
                error = exc.response.get("error", "?")
                log.warning("could not DM %s about %s (%s): asking security", row.person, row.event_id, error)
                return self._escalate(row, ASKING, ESCALATED, A.ACTIVITY_ESCALATED, why=f"The DM to "
                                      f"{blocks.mention(row.person)} could not be delivered ({error}).")
            with write_scope(self.engine) as session:
                session.execute(update(ActivityEvent).where(ActivityEvent.id == row.id).values(
                    dm_channel=response["channel"], dm_ts=response["ts"], claimed_at=None))
                audit.record(session, actor="system", action=A.ACTIVITY_ASKED, resource=row.target,
                             account=row.account_id, at=self.clock(),
                             payload={"event_id": row.event_id, "person": row.person, "channel": response["channel"],
                                      "ts": response["ts"]})
            return ASKING
        if row.state == ESCALATED and row.security_ts is None:
            self._post_security(row, why=self._why_security(row))
        return row.state

    def _why_security(self, row: ActivityEvent) -> str:
        if row.actor_kind == "root":
            return "Root's activity always comes here."
        rule = risk_rules.BY_ID.get(row.rule_id)
        if rule is not None and rule.route is risk_rules.Route.SECURITY:
            return "This kind of change always comes here."
        return "Steward could not tell which person made it (no owner for this identity)."

    def _escalate(self, row: ActivityEvent, expected: str, new: str, action: A, *, actor: str = "system",
                  why: str = "", **values) -> str:
        """Compare-and-set the state, audit it, then post to the security channel."""
        now = self.clock()
        with write_scope(self.engine) as session:
            moved = session.execute(update(ActivityEvent).where(
                ActivityEvent.id == row.id, ActivityEvent.state == expected).values(
                state=new, escalated_at=now, claimed_at=now, **values))
            if moved.rowcount != 1:
                raise Refusal(self._handled(self._get(row.id)))
            audit.record(session, actor=actor, action=action, resource=row.target, account=row.account_id, at=now,
                         payload={"event_id": row.event_id, "person": row.person, **{k: v for k, v in values.items()
                                                                                   if k in ("reason",)}})
        row = self._get(row.id)
        self._post_security(row, why=why)
        self._update_dm(row)
        return new

    def _post_security(self, row: ActivityEvent, *, why: str = "") -> None:
        channel = self.settings.security_channel
        if not channel:
            log.error("risky change %s not posted: STEWARD_SECURITY_CHANNEL is not set", row.event_id)
            return
        try:
            response = self.client.chat_postMessage(
                channel=channel, blocks=self._security_blocks(row, why=why), text=blocks.fallback_text(row),
                unfurl_links=False)
        except SlackApiError as exc:  # the sweep tries again once the claim is old
            log.warning("could not post risky change %s to security: %s", row.event_id, exc.response.get("error"))
            return
        with write_scope(self.engine) as session:  # the escalation itself was audited already
            session.execute(update(ActivityEvent).where(ActivityEvent.id == row.id).values(
                security_channel=response["channel"], security_ts=response["ts"], claimed_at=None))

    def _security_blocks(self, row: ActivityEvent, *, why: str = ""):
        return blocks.security_message(row, blocks.option_views(row.containment, self._outcomes(row)),
                                       minutes=self.settings.activity_answer_minutes, why=why or self._why_security(row))

    def refresh_security(self, row: ActivityEvent) -> None:
        if not (row.security_channel and row.security_ts):
            return
        try:
            self.client.chat_update(channel=row.security_channel, ts=row.security_ts,
                                    blocks=self._security_blocks(row), text=blocks.fallback_text(row))
        except SlackApiError as exc:
            log.warning("could not update risky change %s: %s", row.event_id, exc.response.get("error"))

    def _update_dm(self, row: ActivityEvent) -> None:
        if not (row.dm_channel and row.dm_ts):
            return
        try:
            self.client.chat_update(channel=row.dm_channel, ts=row.dm_ts, blocks=blocks.answered_dm(row),
                                    text=f"Did you do this? {blocks.fallback_text(row)}")
        except SlackApiError as exc:
            log.warning("could not update the DM about %s: %s", row.event_id, exc.response.get("error"))

    def refresh_for_finding(self, finding: Finding) -> None:
        """A containment's remediation changed (approved, undone…): rebuild the escalation."""
        token = (finding.details or {}).get("activity_token")
        with session_scope(self.engine) as session:
            row = session.scalars(select(ActivityEvent).where(ActivityEvent.token == token)).first() if token else None
        if row is not None:
            self.refresh_security(row)

    # =====================================================================================
    # The sweep: answers that did not come, messages a crash left unsent

    def sweep(self, now: datetime | None = None) -> int:
        """Escalate unanswered questions; deliver what a crash left undelivered; forget old
        event ids. Returns how many rows it acted on."""
        now = now or self.clock()
        done = 0
        with session_scope(self.engine) as session:
            due = list(session.scalars(select(ActivityEvent).where(
                ActivityEvent.state == ASKING, ActivityEvent.answer_due <= now)))
            stuck = list(session.scalars(select(ActivityEvent).where(
                ActivityEvent.claimed_at <= now - CLAIM_TIMEOUT,
                ((ActivityEvent.state == ASKING) & ActivityEvent.dm_ts.is_(None))
                | ((ActivityEvent.state != ASKING) & (ActivityEvent.state != CONFIRMED)
                   & ActivityEvent.security_ts.is_(None)))))
            session.execute(delete(ActivitySeen).where(
                ActivitySeen.seen_at < now - timedelta(days=self.settings.activity_seen_days)))
        for row in due:
            try:
                self._escalate(row, ASKING, UNANSWERED, A.ACTIVITY_UNANSWERED)
                done += 1
            except Refusal:
                pass  # answered meanwhile
        for row in stuck:
            if row.id in {r.id for r in due}:
                continue
            with write_scope(self.engine) as session:  # claim it: one process re-sends
                moved = session.execute(update(ActivityEvent).where(
                    ActivityEvent.id == row.id, ActivityEvent.claimed_at == row.claimed_at).values(claimed_at=now))
            if moved.rowcount == 1:
                fresh = self._get(row.id)
                if fresh.state == ASKING:
                    self._deliver(row.id)
                else:
                    self._post_security(fresh, why=self._why_security(fresh))
                done += 1
        return done

    # =====================================================================================
    # Answers

    def check_can_answer(self, user: str, token: str) -> ActivityEvent:
        row = self._by_token(token, user, "answer")
        if user != row.person:
            self._refuse(user, row, "answer: not the person asked")
            raise Refusal("Only the person this was sent to can answer it.")
        if row.state != ASKING:
            raise Refusal(self._handled(row))
        return row

    def confirm(self, user: str, token: str, *, reason: str) -> str:
        row = self.check_can_answer(user, token)
        reason, error = blocks.validate_reason(reason)
        if error:
            raise Refusal(error)
        now = self.clock()
        with write_scope(self.engine) as session:
            moved = session.execute(update(ActivityEvent).where(
                ActivityEvent.id == row.id, ActivityEvent.state == ASKING).values(
                state=CONFIRMED, answered_by=user, answered_at=now, reason=reason))
            if moved.rowcount != 1:
                raise Refusal(self._handled(self._get(row.id)))
            audit.record(session, actor=user, action=A.ACTIVITY_CONFIRMED, resource=row.target,
                         account=row.account_id, at=now, payload={"event_id": row.event_id, "reason": reason})
        self._update_dm(self._get(row.id))
        return "Thanks — recorded with your reason."

    def deny(self, user: str, token: str) -> str:
        row = self.check_can_answer(user, token)
        self._escalate(row, ASKING, DENIED, A.ACTIVITY_DENIED, actor=user, answered_by=user,
                       answered_at=self.clock())
        return "Thanks for telling us. The security team has it now and can contain it."

    def acknowledge(self, user: str, token: str) -> str:
        row = self._by_token(token, user, "acknowledge")
        self._require_approver(user, row, "acknowledge")
        now = self.clock()
        with write_scope(self.engine) as session:
            moved = session.execute(update(ActivityEvent).where(
                ActivityEvent.id == row.id, ActivityEvent.acknowledged_by.is_(None)).values(acknowledged_by=user))
            if moved.rowcount != 1:
                raise Refusal(f"Already acknowledged by {blocks.mention(self._get(row.id).acknowledged_by)}.")
            audit.record(session, actor=user, action=A.ACTIVITY_ACKNOWLEDGED, resource=row.target,
                         account=row.account_id, at=now, payload={"event_id": row.event_id})
        self.refresh_security(self._get(row.id))
        return "Acknowledged."

    # =====================================================================================
    # Containment, through the remediation engine

    def contain(self, user: str, token: str, index: int) -> str:
        row = self._by_token(token, user, "contain")
        self._require_approver(user, row, "contain")
        if not 0 <= index < len(row.containment):
            raise Refusal("That containment is not offered for this event.")
        option = row.containment[index]
        covered = self._containment_state(row)[1].get(index)
        if covered:  # e.g. a click on a button Slack still showed: say so, touch nothing
            raise Refusal(f"Already done: {covered}. Nothing to do.")
        finding = self._containment_finding(row, option)
        rem = self.campaigns.request_remediation(user, finding, option["action"], self.clock(),
                                                 event_id=row.event_id, containment=True)
        try:
            if registry.action(option["action"]).owner_may_apply_alone:
                rem = self.campaigns._carry_out(rem, user)
                text = (f"{rem.plan_summary} Nothing changed in AWS." if _found_done(rem)
                        else self.campaigns._outcome_line(rem))
            else:
                self.campaigns._post_approval(rem, finding)
                text = ("This needs a second security approver: the approval request is in the channel. "
                        "You'll get a message when someone decides.")
        except RemediationRefused as exc:
            raise Refusal(str(exc)) from None
        finally:
            self.refresh_security(self._get(row.id))
        return text

    def _containment_finding(self, row: ActivityEvent, option: Mapping[str, Any]) -> Finding:
        """The handle a containment's remediation hangs on (created once, resolved from birth)."""
        check = risk_rules.check_id(row.rule_id)
        sub_key = f"{row.event_id}:{option['action']}"[:512]
        fp = fingerprint(row.account_id, check, option["resource"], sub_key)
        rule = risk_rules.BY_ID.get(row.rule_id)
        details = {**(option.get("details") or {}), "explanation": row.summary, "event_id": row.event_id,
                   "activity_token": row.token, "rationale": rule.rationale if rule else ""}
        with write_scope(self.engine) as session:
            existing = session.scalars(select(Finding).where(Finding.fingerprint == fp)).first()
            if existing is not None:
                return existing
            finding = Finding(fingerprint=fp, account_id=row.account_id, check_id=check, resource=option["resource"],
                              sub_key=sub_key, severity=row.severity, title=(rule.title if rule else row.rule_id)[:200],
                              owner=None, state=State.RESOLVED, details=details, first_seen=row.received_at,
                              last_seen=row.received_at, resolved_at=row.received_at,
                              state_changed_at=row.received_at)
            session.add(finding)
            session.flush()
            return finding

    def _outcomes(self, row: ActivityEvent) -> dict[int, blocks.ContainmentView]:
        return self._containment_state(row)[0]

    def _containment_state(self, row: ActivityEvent) -> tuple[dict[int, blocks.ContainmentView], dict[int, str]]:
        """What became of each containment option (by index), and the options another
        containment in force already did (by index: why)."""
        from bot.services.campaign_messages import outcome_of

        fps = {}
        for i, option in enumerate(row.containment):
            sub_key = f"{row.event_id}:{option['action']}"[:512]
            fps[fingerprint(row.account_id, risk_rules.check_id(row.rule_id), option["resource"], sub_key)] = i
        with session_scope(self.engine) as session:
            findings = queries.findings_by_fingerprints(session=session, fingerprints=list(fps))
            latest = queries.latest_remediations(session=session, finding_ids=[f.id for f in findings])
        out = {}
        done: dict[int, Any] = {}  # the options whose containment is in force, and its remediation
        for finding in findings:
            rem = latest.get(finding.id)
            if rem is None:
                continue
            i = fps[finding.fingerprint]
            label = str(row.containment[i].get("label") or row.containment[i]["action"])
            if rem.status in ("rejected", "failed", "cancelled"):
                # The button comes back beside what happened, so someone may try again.
                continue
            if rem.status == "undone":  # history now: the line says who undid it, the button is back
                out[i] = blocks.ContainmentView(label=label, outcome=f"{label}: {_undone_line(rem)}", again=True)
                continue
            if _found_done(rem):  # nothing was changed, so there is nothing to undo
                out[i] = blocks.ContainmentView(label=label, outcome=(
                    f"{label}: :white_check_mark: {blocks.escape(rem.plan_summary or '')} "
                    f"(checked by {blocks.mention(rem.approved_by or rem.requested_by)}; nothing changed)"))
                continue
            outcome = outcome_of(None, rem)
            out[i] = blocks.ContainmentView(label=label, outcome=f"{label}: {outcome.text}",
                                            undo_token=outcome.undo_token, undo_label=outcome.undo_label,
                                            pending=outcome.pending)
            if rem.status in ("succeeded", "undo_requested", "undoing") and not rem.dry_run:
                done[i] = rem  # in force (an undo asked for or under way has not given it back yet)
        covered = {i: why for i, why in self._covered(row, done).items() if i not in out or out[i].again}
        for i, why in covered.items():
            label = str(row.containment[i].get("label") or row.containment[i]["action"])
            out[i] = blocks.ContainmentView(label=label, outcome=f"{label}: :white_check_mark: already done: {why}.")
        return out, covered

    @staticmethod
    def _covered(row: ActivityEvent, done: Mapping[int, Any]) -> dict[int, str]:
        """Options another containment in force already did: a user's quarantine deactivated
        every active key of that user, so "deactivate this key of theirs" has nothing left to do
        (until the quarantine is undone). {option index: the line saying so}."""
        quarantined = {str((row.containment[i].get("details") or {}).get("user_name") or ""): rem
                       for i, rem in done.items() if row.containment[i]["action"] == "quarantine-user"}
        out = {}
        for i, option in enumerate(row.containment):
            user = str((option.get("details") or {}).get("user_name") or "")
            if option["action"] == "deactivate-access-key" and user in quarantined and i not in done:
                rem = quarantined[user]
                out[i] = (f"the quarantine of {blocks.escape(user)} "
                          f"({blocks.mention(rem.approved_by or rem.requested_by)}) deactivated this key")
        return out

    # =====================================================================================
    # Helpers

    def _require_approver(self, user: str, row: ActivityEvent, attempted: str) -> None:
        if not self.directory.is_approver(user):
            self._refuse(user, row, f"{attempted}: not a security approver")
            raise Refusal("Only a security approver can do this.")

    def _handled(self, row: ActivityEvent) -> str:
        who = blocks.mention(row.answered_by) if row.answered_by else "nobody"
        return {
            CONFIRMED: f"Already answered: confirmed by {who}.",
            DENIED: f"Already answered: {who} said it wasn't them; the security team has it.",
            UNANSWERED: "The time to answer ran out; the security team has it now.",
            ESCALATED: "This went to the security team.",
        }.get(row.state, f"This is {row.state}.")

    def _get(self, row_id: int) -> ActivityEvent:
        with session_scope(self.engine) as session:
            row = session.get(ActivityEvent, row_id)
        if row is None:
            raise ServiceError(f"no activity event #{row_id}")
        return row

    def _by_token(self, token: str, user: str, attempted: str) -> ActivityEvent:
        with session_scope(self.engine) as session:
            row = session.scalars(select(ActivityEvent).where(ActivityEvent.token == token)).first()
        if row is None:
            raise self.campaigns._unknown(user, f"activity {attempted}", "This event no longer exists.")
        return row

    def _refuse(self, user: str, row: ActivityEvent, reason: str) -> None:
        with session_scope(self.engine) as session:
            audit.record(session, actor=user, action=A.REFUSED, resource=row.target, account=row.account_id,
                         at=self.clock(), payload={"reason": reason, "event_id": row.event_id})

    # =====================================================================================
    # The digest's line

    def week_counts(self, start: datetime, end: datetime) -> dict[str, int]:
        with session_scope(self.engine) as session:
            rows = session.execute(select(ActivityEvent.state, func.count()).where(
                ActivityEvent.received_at >= start, ActivityEvent.received_at < end).group_by(ActivityEvent.state))
            return dict(rows.all())


def _found_done(rem) -> bool:
    """A containment that found its work already done in AWS (e.g. the key was inactive): it
    succeeded without changing anything."""
    return rem.status == "succeeded" and not rem.dry_run and (rem.plan_summary or "").startswith("Already done")


def _undone_line(rem) -> str:
    """An undone containment: who asked for the undo and who approved it (a second approver
    when the undo gave access back), and when."""
    from bot.slack.blocks.dm import when

    asked, approved = rem.undone_by, rem.undo_decided_by
    who = (f"asked by {blocks.mention(asked)}, approved by {blocks.mention(approved)}"
           if approved and approved != asked else f"by {blocks.mention(asked or approved)}")
    return f":leftwards_arrow_with_hook: Undone, {who} ({when(rem.undone_at)})."


def _may_need_context(event: CloudTrailEvent) -> bool:
    return event.name == "UpdateAssumeRolePolicy"

