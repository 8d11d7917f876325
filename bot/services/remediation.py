"""Carrying out remediations safely: plan -> approve -> execute -> (undo), crash-safe.

Every status change is a compare-and-set UPDATE, so a double click, a retried request or a
second worker cannot run a remediation twice; a partial unique index keeps one remediation
per finding in flight. The intent (`executing`) is committed before the AWS call and the
action's before-state as soon as it is read; `reconcile()` finishes or fails whatever a
crash left in `executing` or `undoing`, by looking at live AWS, never by running it again.
Every step writes its audit event in the same transaction as the state change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from bot import audit
from bot.audit import AuditAction as A
from bot.config import Settings
from bot.db import queries
from bot.db.engine import session_scope
from bot.db.models import Finding, Remediation
from bot.lifecycle import Event, InvalidTransition, next_state
from bot.services.common import Clock, ServiceError, utcnow
from checks.catalog import BY_ID as CHECKS
from checks.remediate import registry
from checks.remediate.base import Action, RemediationError, Target

log = logging.getLogger(__name__)

PLANNED, APPROVED, EXECUTING, SUCCEEDED, FAILED = "planned", "approved", "executing", "succeeded", "failed"
UNDOING, UNDONE, REJECTED = "undoing", "undone", "rejected"
# Steward deletes a user only after it quarantined the user itself and the wait has passed
# (a deleted user cannot be restored with its credentials). Deleting an inactive key needs a
# security approver instead: irreversible actions always do.
NEEDS_EARLIER = {"delete-user": "quarantine-user"}
# A remediation still `executing` after this long is taken to be interrupted by a crash.
STUCK_AFTER = timedelta(minutes=10)


class RemediationRefused(ServiceError):
    """The request is not allowed (wrong person, wrong state, precondition); nothing changed."""


class RestoreRoleOff(RemediationRefused):
    """An undo that gives access back, with Steward's restore role off: nothing changed.
    `by_hand` says what an admin does instead; `before` is the recorded before-state."""

    def __init__(self, message: str, *, by_hand: str, before: dict):
        super().__init__(message)
        self.by_hand = by_hand
        self.before = before


class RemediationService:
    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        is_approver: Callable[[str], bool] = lambda _actor: False,
        aws_session_factory: Callable[[], object] | None = None,
        clock: Clock = utcnow,
    ):
        self.settings = settings
        self.engine = engine
        self.is_approver = is_approver
        self.clock = clock
        self._aws_session_factory = aws_session_factory

    # -- requests ----------------------------------------------------------------------

    def request(self, finding_ref: str | int, action_id: str, *, actor: str, dry_run: bool = False) -> Remediation:
        """Plan `action_id` for a finding against live AWS and record it as `planned`."""
        with session_scope(self.engine) as session:
            finding = self._finding(session, finding_ref)
            action = self._offered_action(finding, action_id)
            self._check_waiting_period(session, finding, action)
        target = Target.from_finding(finding.check_id, finding.resource, finding.details)
        plan = action.plan(self._aws(finding.account_id), target)
        now = self.clock()
        with session_scope(self.engine) as session:
            if not plan.possible:
                self._refuse(actor, finding, f"{action_id}: {plan.reason}", now)
                raise RemediationRefused(plan.summary)
            row = Remediation(
                finding_id=finding.id,
                fingerprint=finding.fingerprint,
                action=action.id,
                account_id=finding.account_id,
                resource=finding.resource,
                target=asdict(target),
                status=PLANNED,
                dry_run=dry_run or self.settings.dry_run,
                plan_summary=plan.summary,
                irreversible_warning=plan.irreversible_warning,
                requested_by=actor,
                requested_at=now,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                raise RemediationRefused(self._in_flight_message(finding.id)) from None
            self._audit(session, actor, A.REMEDIATION_PLANNED, row, now, summary=plan.summary,
                        already_done=plan.already_done)
            return row

    def approve(self, remediation_id: int, *, approver: str, operator: bool = False) -> Remediation:
        """Approve a planned remediation (two-person rule unless the owner may act alone).

        `operator`: the `steward` CLI run by someone with direct access to Steward's
        database and AWS role; recorded as such, and not subject to the Slack approver list.
        """
        now = self.clock()
        with session_scope(self.engine) as session:
            row = self._get(session, remediation_id)
            action = registry.action(row.action)
            if not operator:
                alone = action.owner_may_apply_alone and approver == row.requested_by
                if not alone and not self.is_approver(approver):
                    self._refuse(approver, row, f"approve {row.action}: not a security approver", now)
                    raise RemediationRefused(f"{action.title} needs a security approver.")
                if not alone and approver == row.requested_by:
                    self._refuse(approver, row, f"approve {row.action}: own request", now)
                    raise RemediationRefused(
                        f"{action.title} needs a second person: a security approver other than the requester."
                    )
            self._move(session, row, PLANNED, APPROVED, approver, now, approved_by=approver, approved_at=now)
            if not row.dry_run:
                self._finding_event(session, row.finding_id, Event.APPROVE, now, strict=False)
            self._audit(session, approver, A.REMEDIATION_APPROVED, row, now, operator=operator)
            return row

    def reject(self, remediation_id: int, *, approver: str, reason: str = "") -> Remediation:
        now = self.clock()
        with session_scope(self.engine) as session:
            row = self._get(session, remediation_id)
            if not self.is_approver(approver) and approver != row.requested_by:
                self._refuse(approver, row, f"reject {row.action}: not allowed", now)
                raise RemediationRefused("Only a security approver or the requester can reject this.")
            self._move(session, row, PLANNED, REJECTED, approver, now, finished_at=now, error=reason or None)
            self._audit(session, approver, A.APPROVAL_REJECTED, row, now, reason=reason)
            return row

    # -- execution ---------------------------------------------------------------------

    def execute(self, remediation_id: int, *, actor: str) -> Remediation:
        """Carry out an approved remediation exactly once; returns it succeeded or failed."""
        now = self.clock()
        with session_scope(self.engine) as session:  # the intent, committed before AWS
            row = self._get(session, remediation_id)
            self._move(session, row, APPROVED, EXECUTING, actor, now, started_at=now)
            if not row.dry_run:
                self._finding_event(session, row.finding_id, Event.START, now)
            self._audit(session, actor, A.REMEDIATION_STARTED, row, now, dry_run=row.dry_run)
        action, target = registry.action(row.action), Target(**row.target)
        try:
            if row.dry_run:
                plan = action.plan(self._aws(row.account_id), target)
                return self._finish(row.id, actor, SUCCEEDED, after={"dry_run": True, "would": plan.summary})
            applied = action.apply(
                self._aws(row.account_id), target, on_before=lambda before: self._save_before(row.id, before)
            )
        except (RemediationError, ServiceError) as exc:
            return self._finish(row.id, actor, FAILED, error=str(exc))
        except Exception as exc:  # a bug: record it as a failure, never as success
            log.exception("remediation %s crashed", row.id)
            return self._finish(row.id, actor, FAILED, error=f"internal error: {type(exc).__name__}: {exc}")
        return self._finish(
            row.id, actor, SUCCEEDED, before=applied.before, after=applied.after,
            request_ids=list(applied.request_ids), already_done=applied.already_done,
        )

    def undo(self, remediation_id: int, *, actor: str) -> Remediation:
        now = self.clock()
        with session_scope(self.engine) as session:
            row = self._get(session, remediation_id)
            action = registry.action(row.action)
            if not action.reversible or row.dry_run or row.before is None:
                why = "was a dry run" if row.dry_run else "cannot be undone"
                self._refuse(actor, row, f"undo {row.action}: {why}", now)
                raise RemediationRefused(f"{action.title} {why}.")
            self._require_restore_role(actor, row, action, now)
            self._move(session, row, SUCCEEDED, UNDOING, actor, now, started_at=now)
        try:
            applied = action.undo(self._undo_session(row, action), Target(**row.target), row.before)
        except (RemediationError, ServiceError) as exc:
            with session_scope(self.engine) as session:
                row = self._get(session, remediation_id)
                self._move(session, row, UNDOING, SUCCEEDED, actor, self.clock(), error=f"undo failed: {exc}")
                self._audit(session, actor, A.REMEDIATION_UNDO_FAILED, row, self.clock(), error=str(exc))
            raise RemediationRefused(f"Undo failed: {exc}") from exc
        now = self.clock()
        with session_scope(self.engine) as session:
            row = self._get(session, remediation_id)
            self._move(session, row, UNDOING, UNDONE, actor, now, undone_by=actor, undone_at=now)
            self._finding_event(session, row.finding_id, Event.UNDO, now, strict=False)
            self._audit(session, actor, A.REMEDIATION_UNDONE, row, now, summary=applied.summary,
                        after=applied.after, aws_request_ids=list(applied.request_ids))
            return row

    def reconcile(self, *, actor: str = "system", older_than: timedelta = STUCK_AFTER) -> list[Remediation]:
        """Finish or fail what a crash left in `executing` or `undoing`, from live AWS state.

        Only rows that started more than `older_than` ago: an action takes seconds, so a
        younger one may still be running in another process and must be left alone.
        """
        cutoff = self.clock() - older_than
        with session_scope(self.engine) as session:
            stuck = list(session.scalars(select(Remediation).where(
                Remediation.status.in_([EXECUTING, UNDOING]),
                func.coalesce(Remediation.started_at, Remediation.requested_at) <= cutoff,
            )))
        done = []
        for row in stuck:
            action, target = registry.action(row.action), Target(**row.target)
            try:
                plan = action.plan(self._aws(row.account_id), target)
            except (RemediationError, ServiceError) as exc:
                log.warning("cannot reconcile remediation %s yet: %s", row.id, exc)
                continue
            try:
                done.append(self._reconcile_one(row, plan, actor))
            except RemediationRefused:
                log.info("remediation %s was reconciled by another process", row.id)
        return done

    def _reconcile_one(self, row: Remediation, plan, actor: str) -> Remediation:
        now = self.clock()
        if row.status == EXECUTING:
            if row.dry_run:
                return self._finish(row.id, actor, SUCCEEDED, after={"dry_run": True, "would": plan.summary},
                                    reconciled=True)
            if plan.already_done:
                return self._finish(row.id, actor, SUCCEEDED, after={"reconciled": plan.summary},
                                    reconciled=True)
            return self._finish(
                row.id, actor, FAILED, reconciled=True,
                error="interrupted before the change took effect; not retried automatically",
            )
        with session_scope(self.engine) as session:  # UNDOING: did the undo land?
            current = self._get(session, row.id)
            if plan.possible and not plan.already_done:
                self._move(session, current, UNDOING, UNDONE, actor, now, undone_by=current.undone_by or actor,
                           undone_at=now)
                self._finding_event(session, current.finding_id, Event.UNDO, now, strict=False)
            else:
                self._move(session, current, UNDOING, SUCCEEDED, actor, now, error="undo interrupted; not undone")
            self._audit(session, actor, A.REMEDIATION_RECONCILED, current, now, status=current.status)
            return current

    # -- the restore role: an undo that gives access back -------------------------------
    # The default role can only reduce access; re-attaching a policy, putting one back or
    # adding to a group runs under the restore role (STEWARD_RESTORE_ROLE_NAME), and only
    # for an undo. With it off, the undo is refused before anything changes, with what an
    # admin needs to restore by hand.

    def _require_restore_role(self, actor: str, row: Remediation, action: Action, now: datetime) -> None:
        if not action.undo_needs_restore or self.settings.restore_role_name:
            return
        reason = f"Steward's restore role is not enabled in account {row.account_id}"
        self._refuse(actor, row, f"undo {row.action}: {reason}", now)
        by_hand = action.restore_by_hand(Target(**row.target), row.before)
        raise RestoreRoleOff(_by_hand_message(reason, by_hand, row.before), by_hand=by_hand,
                             before=row.before)

    def _undo_session(self, row: Remediation, action: Action):
        if not action.undo_needs_restore:
            return self._aws(row.account_id)
        from checks import accounts
        from checks.collect import CollectError

        name = str(self.settings.restore_role_name)
        try:
            target = accounts.restore_target(row.account_id, name, row.target.get("partition", "aws"))
            return self._assumed(row.account_id, target)
        except ServiceError as exc:
            reason = (f"Steward's restore role {name} could not be used in account {row.account_id} "
                      f"(is EnableRestore on there?): {exc}")
            by_hand = action.restore_by_hand(Target(**row.target), row.before)
            raise ServiceError(_by_hand_message(reason, by_hand, row.before)) from None
        except CollectError as exc:  # a role name IAM would refuse
            raise ServiceError(str(exc)) from None

    # -- helpers -----------------------------------------------------------------------

    def _finish(self, remediation_id: int, actor: str, status: str, *, reconciled: bool = False,
                before=None, after=None, request_ids=(), error=None, already_done=False) -> Remediation:
        now = self.clock()
        with session_scope(self.engine) as session:
            row = self._get(session, remediation_id)
            changes = {"finished_at": now, "after": after, "error": error, "request_ids": list(request_ids)}
            if before is not None:
                changes["before"] = before
            self._move(session, row, EXECUTING, status, actor, now, **changes)
            if not row.dry_run:
                event = Event.SUCCEED if status == SUCCEEDED else Event.FAIL
                self._finding_event(session, row.finding_id, event, now, strict=False)
            action = A.REMEDIATION_SUCCEEDED if status == SUCCEEDED else A.REMEDIATION_FAILED
            self._audit(session, actor, action, row, now, before=row.before, after=after, error=error,
                        aws_request_ids=list(request_ids), dry_run=row.dry_run, reconciled=reconciled,
                        already_done=already_done)
            return row

    def _save_before(self, remediation_id: int, before: dict) -> None:
        # Committed before the first AWS write: after a crash, undo still knows what to restore.
        with session_scope(self.engine) as session:
            session.execute(
                update(Remediation)
                .where(Remediation.id == remediation_id, Remediation.status == EXECUTING)
                .values(before=before)
            )

    def _move(self, session, row: Remediation, expected: str, new: str, actor: str, now: datetime, **values) -> None:
        """Compare-and-set the status; losing the race is a refusal, not a second run."""
        moved = session.execute(
            update(Remediation)
            .where(Remediation.id == row.id, Remediation.status == expected)
            .values(status=new, **values)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:
            session.rollback()
            current = session.get(Remediation, row.id)
            session.refresh(current)
            self._refuse(actor, current, f"{current.action} is {current.status}, not {expected}", now)
            raise RemediationRefused(self._handled_message(current))
        session.refresh(row)

    def _finding_event(self, session, finding_id: int, event: Event, now: datetime, *, strict: bool = True) -> None:
        finding = session.get(Finding, finding_id)
        try:
            new_state = next_state(finding.state, event)
        except InvalidTransition as exc:
            if strict:
                raise RemediationRefused(f"The finding is {finding.state}; it cannot be remediated now.") from exc
            return  # e.g. resolved by a scan meanwhile: the remediation record says what happened
        if new_state != finding.state:
            finding.state, finding.state_changed_at = new_state, now

    def _check_waiting_period(self, session, finding: Finding, action: Action) -> None:
        earlier = NEEDS_EARLIER.get(action.id)
        wait = self.settings.delete_after_days
        if earlier is None or wait == 0:
            return
        since = queries.last_remediation_done(session=session, resource=finding.resource, action=earlier)
        if since is None or self.clock() - since < timedelta(days=wait):
            done = f"since {since:%Y-%m-%d}" if since else "not yet"
            raise RemediationRefused(
                f"{action.title} needs Steward to have done '{earlier}' at least {wait} days before ({done})."
            )

    def _offered_action(self, finding: Finding, action_id: str) -> Action:
        offered = CHECKS[finding.check_id].remediations
        if action_id not in offered:
            choices = ", ".join(offered) or "none"
            raise RemediationRefused(f"'{action_id}' is not offered for {finding.check_id} (offered: {choices}).")
        return registry.action(action_id)

    def _finding(self, session, ref: str | int) -> Finding:
        finding = queries.finding_by_ref(session=session, ref=ref)
        if finding is None:
            raise ServiceError(f"no finding {ref!r} (give its id or fingerprint)")
        return finding

    def _get(self, session, remediation_id: int) -> Remediation:
        row = session.get(Remediation, remediation_id)
        if row is None:
            raise ServiceError(f"no remediation #{remediation_id}")
        return row

    def _aws(self, account_id: str):
        from checks import accounts

        with session_scope(self.engine) as session:
            role_arn = queries.account_role(session=session, account_id=account_id)
        return self._assumed(account_id, accounts.Target(account_id=account_id, role_arn=role_arn,
                                                         label=account_id))

    def _assumed(self, account_id: str, target):
        """A session for `target` (a `checks.accounts.Target`), checked to be in `account_id`."""
        from checks import accounts
        from checks.collect import CollectError, aws_client

        base = self._aws_session_factory() if self._aws_session_factory else _default_session()
        try:
            aws = accounts.session_for(target, base, external_id=self.settings.external_id)
            actual = aws_client(aws, "sts", self.settings.aws_max_attempts).get_caller_identity()["Account"]
        except CollectError as exc:
            raise ServiceError(str(exc)) from None
        if actual != account_id:
            # Never write to the wrong account because the credentials changed.
            raise ServiceError(f"the AWS credentials belong to account {actual}, not {account_id}")
        return aws

    def _refuse(self, actor: str, subject, reason: str, now: datetime) -> None:
        """Audit a refused attempt in a transaction of its own: the refusal is kept even
        though the caller's transaction is rolled back (call it before any write of it)."""
        with session_scope(self.engine) as session:
            audit.record(session, actor=actor, action=A.REFUSED, subject_fingerprint=subject.fingerprint,
                         resource=subject.resource, account=subject.account_id, at=now,
                         payload={"reason": reason})

    def _audit(self, session, actor: str, action: A, row: Remediation, now: datetime, **payload) -> None:
        audit.record(session, actor=actor, action=action, subject_fingerprint=row.fingerprint,
                     resource=row.resource, account=row.account_id, at=now,
                     payload={"remediation_id": row.id, "action": row.action,
                              "target": {k: v for k, v in row.target.items() if v}, **payload})

    def _handled_message(self, row: Remediation) -> str:
        who = row.undone_by or row.approved_by or row.requested_by
        when = row.finished_at or row.approved_at or row.requested_at
        return f"Already handled: {row.action} is {row.status} ({who}, {when:%Y-%m-%d %H:%M} UTC)."

    def _in_flight_message(self, finding_id: int) -> str:
        with session_scope(self.engine) as session:
            row = queries.remediation_in_flight(session=session, finding_id=finding_id)
        if row is None:
            return "Another remediation of this finding is in progress."
        return f"Remediation #{row.id} ({row.action}, {row.status}) is already in progress for this finding."


def _by_hand_message(reason: str, by_hand: str, before: dict | None) -> str:
    """The refusal an admin acts on: why, what to run (fenced, for Slack), the before-state."""
    words, newline, command = by_hand.rpartition("\n")
    steps = f"{words}\n```\n{command}\n```" if newline else by_hand
    state = json.dumps(before, indent=2, sort_keys=True)
    return (f"{reason}; the before-state is below so an admin can restore by hand. Nothing was "
            f"changed.\n{steps}\nBefore-state (JSON):\n```\n{state}\n```")


def _default_session():
    import boto3

    return boto3.Session()
