"""Campaign decisions: an owner's (or approver's) clicks, the Keep… modal, Not mine and
security triage's owner assignment (a mixin of `bot.services.campaigns.Campaigns`).

Every click goes through `_authorized_finding()`: the Slack user id from the signed payload
must be the finding's owner or a security approver; anything else is refused privately and
audited. Decided findings are shown, not re-decided: a stale click says who handled it and when.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from sqlalchemy import update

from bot.core.decisions import (
    ROTATE_DEADLINE_DAYS,
    SECURITY_ONLY,
    SNOOZE_DAYS,
    Choice,
    action_name,
    removal_action,
)
from bot.core.lifecycle import ACTIONABLE_STATES, Event, InvalidTransition, next_state
from bot.core.report import plural, short_resource
from bot.db import audit, queries
from bot.db.audit import AuditAction as A
from bot.db.engine import session_scope, write_scope
from bot.db.models import Finding, OwnerOverride
from bot.services.approvals import Refusal
from bot.services.campaign_routing import CycleReport
from bot.services.common import ServiceError
from bot.services.remediation import RemediationRefused
from bot.slack.blocks import dm
from bot.slack.blocks.approvals import who as mention
from checks.remediate import registry

#: The Keep… reason: the modal's max_length and the column's (Finding.decision_reason).
KEEP_REASON_MAX = 1000


class CampaignDecisions:
    """Needs from its host: settings, engine, directory, remediations, clock, and `run_cycle`,
    `_send`, `_finding`, `_refresh_finding`, `refresh_message`, `_carry_out`, `_post_approval`,
    `settle_interrupted`, `_outcome_line`."""

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
            if days not in SNOOZE_DAYS:
                raise Refusal(f"Snooze for {' or '.join(map(str, SNOOZE_DAYS))} days.")
            return self._decide(user, finding, "snooze", Event.SNOOZE, now, until=now + timedelta(days=days),
                                audit_action=A.DECISION_SNOOZE)
        if choice is Choice.ROTATE:
            return self._decide(user, finding, "rotate", None, now,
                                until=now + timedelta(days=ROTATE_DEADLINE_DAYS), audit_action=A.DECISION_ROTATE_PROMISE)
        if choice is Choice.ACK:
            return self._decide(user, finding, "ack", None, now, audit_action=A.DECISION_ACKNOWLEDGE)
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

    def check_can_decide(self, user: str, token: str) -> Finding:
        """The finding, or Refusal (audited) unless `user` may decide about it now."""
        return self._authorized_finding(user, token, "keep", self.clock())

    def card_channel(self, token: str) -> str | None:
        """The channel of the message whose card lists this finding (a DM or triage)."""
        with session_scope(self.engine) as session:
            finding = queries.finding_by_token(session=session, token=token)
        return finding.notify_channel if finding is not None else None

    def account_names(self, account_ids) -> dict[str, str]:
        with session_scope(self.engine) as session:
            return queries.account_names(session=session, account_ids=account_ids)

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
            # The override covers the identity: every open finding of it goes to the new owner.
            rows = {f.id: f for f in queries.open_findings_of_identity(
                session=session, resource=finding.resource, states=ACTIONABLE_STATES) if f.check_id not in SECURITY_ONLY}
            rows[finding.id] = session.get(Finding, finding.id)
            old_messages = set()
            for row in rows.values():
                if row.notify_channel and row.notify_ts:
                    old_messages.add((row.notify_channel, row.notify_ts))
                row.notify_channel = row.notify_ts = row.notify_batch = row.notified_to = None
                row.decision = row.decided_by = row.decided_at = None
                with contextlib.suppress(InvalidTransition):  # remediating, remediated: stays
                    row.state = next_state(row.state, Event.REROUTE)
            audit.record(session, actor=approver, action=A.OWNER_ASSIGNED, subject_fingerprint=finding.fingerprint,
                         resource=finding.resource, account=finding.account_id, at=now,
                         payload={"owner": owner, "previous_owner": previous,
                                  "fingerprints": sorted(r.fingerprint for r in rows.values())})
        closed = (f":arrow_right_hook: Assigned to <@{owner}> by {mention(approver)} {dm.when(now)}: "
                  f"{short_resource(finding.resource)} ({plural(len(rows), 'finding')}).")
        for channel, ts in sorted(old_messages):
            self.refresh_message(channel, ts, closed=closed)
        self.run_cycle(now)  # routes them to the new owner right away
        count = plural(len(rows), "finding")
        said = f"Assigned {short_resource(finding.resource)} ({count}) to <@{owner}>"
        if self._finding(finding.id).notified_to == owner:
            return f"{said}; they have a DM about it now."
        why = (f"STEWARD_MODE is {self.settings.mode}" if self.settings.mode != "owners"
               else "they are not among STEWARD_PILOT_OWNERS")
        return f"{said}. They are not DMed ({why}): it stays here in triage, and `/iam whoami` shows it as theirs."

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
            raise Refusal(f"Already in hand: the request to {action_name(in_flight.action)} is "
                          f"{in_flight.status.replace('_', ' ')} "
                          f"(requested by <@{in_flight.requested_by}> {dm.when(in_flight.requested_at)}).")
        if finding.state not in ACTIONABLE_STATES or finding.decision:
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

    def request_remediation(self, user: str, finding: Finding, action_id: str, now: datetime, **details):
        """Plan `action_id` on the finding for `user` and audit the decision (`details` join
        the audit payload); a refusal is the person's one line."""
        try:
            rem = self.remediations.request(finding.id, action_id, actor=user)
        except RemediationRefused as exc:
            raise Refusal(str(exc)) from None
        except ServiceError as exc:
            raise Refusal(f"Steward could not plan this: {exc}") from None
        with session_scope(self.engine) as session:
            audit.record(session, actor=user, action=A.DECISION_REMEDIATE, subject_fingerprint=finding.fingerprint,
                         resource=finding.resource, account=finding.account_id, at=now,
                         payload={"action": action_id, "remediation_id": rem.id, **details})
        return rem

    def _remediate(self, user: str, finding: Finding, action_id: str | None, now: datetime) -> str:
        if not action_id:
            raise Refusal("There is no single policy to remove here; ask the security team.")
        rem = self.request_remediation(user, finding, action_id, now)
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
        """Not mine, for the whole identity: every finding of it this person was asked about
        goes back to security triage, which shows who disowned it."""
        if not self.settings.security_channel:
            raise Refusal("No security channel is configured to take this over.")
        self._decide(user, finding, "not_mine", None, now, audit_action=A.DECISION_NOT_MINE)
        with write_scope(self.engine) as session:
            rows = [f for f in queries.open_findings_of_identity(session=session, resource=finding.resource,
                                                                 states=ACTIONABLE_STATES)
                    if f.id != finding.id and f.notified_to == user]
            rows.insert(0, session.get(Finding, finding.id))
            for row in rows:
                row.decision = None  # back to triage: an approver assigns the right owner
                row.notify_channel = row.notify_ts = row.notify_batch = row.notified_to = None
                row.state = next_state(row.state, Event.REROUTE)
                row.state_changed_at = now
                if row.id != finding.id:
                    audit.record(session, actor=user, action=A.DECISION_NOT_MINE, subject_fingerprint=row.fingerprint,
                                 resource=row.resource, account=row.account_id, at=now,
                                 payload={"decision": "not_mine", "with": finding.fingerprint})
            override = session.get(OwnerOverride, finding.resource)
            if override is not None and override.slack_user_id == user:
                session.delete(override)
            ids = [row.id for row in rows]
        if finding.notify_channel and finding.notify_ts:
            self.refresh_message(finding.notify_channel, finding.notify_ts, emptied=(
                f":leftwards_arrow_with_hook: You said {short_resource(finding.resource)} is not yours: "
                "sent to security triage."))
        self._send(self.settings.security_channel, None, [self._finding(i) for i in ids], now, CycleReport())
        return (f"Sent {short_resource(finding.resource)} ({plural(len(ids), 'finding')}) to the security team "
                "to find the right owner; they see it came from you.")

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
