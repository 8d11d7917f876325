"""Carrying out remediations safely: plan -> approve -> execute -> (undo), crash-safe.

Every decision is one compare-and-set UPDATE (or, for a new request, one INSERT guarded by
the partial unique index "one remediation per finding in flight"), committed before any
AWS call, so a double click, a retried request or a second worker cannot run anything
twice. Transactions that check and then write take SQLite's write lock first
(`write_scope`), so twenty simultaneous clicks queue instead of failing half-way.

Leases: a row in a working state (being planned, approved and about to run, executing,
undoing, or waiting for its approval request to be posted) names the process carrying the
step out (`lease_owner`) and until when (`lease_expires_at`); a `LeaseKeeper` thread renews
it while the process lives. `reconcile()` settles at once every row whose holder is gone
(its lease ran out, or its process is dead on this host) from live AWS state, never by
running it again: start-up, the worker, `steward reconcile` and any click that meets such a
row call it. A row waiting for a person (a posted approval request) holds no lease.
Every step writes its audit event in the same transaction as the state change.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from bot.config import Settings
from bot.core.decisions import UndoRule, action_name, undo_rule
from bot.core.lifecycle import Event, InvalidTransition, State, next_state
from bot.db import audit, queries
from bot.db.audit import AuditAction as A
from bot.db.engine import session_scope, write_scope
from bot.db.models import Finding, Remediation
from bot.run.leader import holder_gone, process_holder
from bot.services.common import Clock, ServiceError, utcnow
from bot.slack.blocks.approvals import who as who_
from checks.catalog import BY_ID as CHECKS
from checks.remediate import registry
from checks.remediate.base import Action, RemediationError, Target

log = logging.getLogger(__name__)

PLANNED, APPROVED, EXECUTING, SUCCEEDED, FAILED = "planned", "approved", "executing", "succeeded", "failed"
UNDO_REQUESTED, UNDOING, UNDONE, REJECTED, CANCELLED = "undo_requested", "undoing", "undone", "rejected", "cancelled"
# States a lease may hold; the last three always have one (a process is carrying them out).
WORKING = (PLANNED, APPROVED, EXECUTING, UNDO_REQUESTED, UNDOING)
ALWAYS_LEASED = (APPROVED, EXECUTING, UNDOING)
# A live holder renews its leases every third of this; a dead one's run out after it.
LEASE = timedelta(seconds=30)
# No step takes this long (AWS retries included): a lease a bug forgot to hand back stops
# being renewed then, and the row is settled like a dead process's.
MAX_HOLD = timedelta(minutes=15)


class RemediationRefused(ServiceError):
    """The request is not allowed (wrong person, wrong state, precondition); nothing changed."""


class RestoreRoleOff(RemediationRefused):
    """An undo that gives access back, with Steward's restore role off: nothing changed.
    `by_hand` says what an admin does instead; `before` is the recorded before-state."""

    def __init__(self, message: str, *, by_hand: str, before: dict):
        super().__init__(message)
        self.by_hand = by_hand
        self.before = before


def _wall_clock() -> datetime:
    # Leases are about real time, whatever clock the service runs its business rules on.
    return datetime.now(UTC)


class LeaseKeeper:
    """Renews this process's leases on the rows it is working on, from a daemon thread
    (for at most MAX_HOLD per row)."""

    def __init__(self, engine: Engine, holder: str, lease: timedelta = LEASE):
        self.engine, self.holder, self.lease = engine, holder, lease
        self._ids: dict[int, datetime] = {}  # row id -> since when
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def values(self) -> dict:
        return {"lease_owner": self.holder, "lease_expires_at": _wall_clock() + self.lease}

    def hold(self, remediation_id: int) -> None:
        with self._guard:
            self._ids.setdefault(remediation_id, _wall_clock())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="steward-lease", daemon=True)
                self._thread.start()

    def drop(self, remediation_id: int) -> None:
        with self._guard:
            self._ids.pop(remediation_id, None)

    def holds(self, remediation_id: int) -> bool:
        with self._guard:
            return remediation_id in self._ids

    def _run(self) -> None:
        while True:
            threading.Event().wait(self.lease.total_seconds() / 3)
            with self._guard:
                for stale in [i for i, since in self._ids.items() if _wall_clock() - since > MAX_HOLD]:
                    log.error("remediation #%s held for over %s: no longer renewing its lease", stale, MAX_HOLD)
                    del self._ids[stale]
                ids = sorted(self._ids)
            if not ids:
                continue
            try:
                with session_scope(self.engine) as session:
                    session.execute(update(Remediation)
                                    .where(Remediation.id.in_(ids), Remediation.lease_owner == self.holder)
                                    .values(lease_expires_at=_wall_clock() + self.lease))
            except Exception as exc:  # the next beat tries again; an expired lease is settled
                log.warning("could not renew remediation leases %s: %s", ids, exc)


class RemediationService:
    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        is_approver: Callable[[str], bool] = lambda _actor: False,
        aws_session_factory: Callable[[], object] | None = None,
        clock: Clock = utcnow,
        holder: str | None = None,
    ):
        self.settings = settings
        self.engine = engine
        self.is_approver = is_approver
        self.clock = clock
        self._aws_session_factory = aws_session_factory
        self.keeper = LeaseKeeper(engine, holder or process_holder())

    @property
    def holder(self) -> str:
        return self.keeper.holder

    # -- requests ----------------------------------------------------------------------

    def request(self, finding_ref: str | int, action_id: str, *, actor: str, dry_run: bool = False) -> Remediation:
        """Plan `action_id` for a finding against live AWS and record it as `planned`.

        The row is committed (leased to this process) before the AWS read: of twenty
        simultaneous clicks exactly one gets it, the others are refused without touching
        AWS. It stays leased until the caller approves it or posts its approval request
        (`approval_posted`), or cancels it; if this process dies first, reconcile cancels it.
        """
        with session_scope(self.engine) as session:
            finding = self._finding(session, finding_ref)
            action = self._offered_action(finding, action_id)
            self._check_already_done(session, finding, action)
            self._check_waiting_period(session, finding, action)
        target = Target.from_finding(finding.check_id, finding.resource, finding.details)
        now = self.clock()
        if action.apply_needs_restore:
            self._require_restore_role_to_apply(actor, finding, action, target, now)
        if action.id == "rightsize-policy":
            # A policy other owners' principals hold too changes only once each has said yes.
            from bot.services.rightsize import require_consents

            waiting = require_consents(self.engine, finding, actor=actor, now=now, is_approver=self.is_approver)
            if waiting:
                raise RemediationRefused(waiting)
        row = Remediation(
            finding_id=finding.id, fingerprint=finding.fingerprint, action=action.id,
            account_id=finding.account_id, resource=finding.resource, target=asdict(target),
            status=PLANNED, dry_run=dry_run or self.settings.dry_run, plan_summary=f"{action.title} (planning)",
            requested_by=actor, requested_at=now, **self.keeper.values(),
        )
        with write_scope(self.engine) as session:
            # Checked again under the write lock (the finding's row lock on PostgreSQL): a
            # click that read the finding just before another click's run finished must not
            # plan a second run of an action that has just succeeded.
            locked = session.scalar(select(Finding).where(Finding.id == finding.id).with_for_update())
            self._check_already_done(session, locked, action)
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                raise RemediationRefused(self._in_flight_message(finding.id)) from None
        self.keeper.hold(row.id)
        try:
            plan = action.plan(self._apply_session(finding.account_id, action, target), target)
        except Exception as exc:
            self.cancel(row.id, actor=actor, reason=f"could not plan: {exc}")
            if isinstance(exc, ServiceError):
                raise
            raise ServiceError(str(exc)) from exc
        if not plan.possible:
            self._refuse(actor, finding, f"{action_id}: {plan.reason}", now)
            self.cancel(row.id, actor=actor, reason=plan.reason or plan.summary)
            raise RemediationRefused(plan.summary)
        with write_scope(self.engine) as session:
            self._move(session, row, PLANNED, PLANNED, actor, now, plan_summary=plan.summary[:2000],
                       irreversible_warning=plan.irreversible_warning, **self.keeper.values())
            self._audit(session, actor, A.REMEDIATION_PLANNED, row, now, summary=plan.summary,
                        already_done=plan.already_done)
        return row

    def approval_posted(self, remediation_id: int, *, channel: str, ts: str, undo: bool = False) -> None:
        """The approval request is in the security channel: the row now waits for a person."""
        status = UNDO_REQUESTED if undo else PLANNED
        with write_scope(self.engine) as session:
            values = {"approval_channel": channel, ("undo_approval_ts" if undo else "approval_ts"): ts}
            session.execute(update(Remediation).where(Remediation.id == remediation_id).values(**values))
            session.execute(update(Remediation).where(
                Remediation.id == remediation_id, Remediation.status == status,
                Remediation.lease_owner == self.holder).values(lease_owner=None, lease_expires_at=None))
        self.keeper.drop(remediation_id)

    def cancel(self, remediation_id: int, *, actor: str, reason: str) -> Remediation:
        """Drop a planned remediation nobody was asked about (planning failed, the approval
        request could not be posted): nothing changed, and the finding is free again."""
        now = self.clock()
        with write_scope(self.engine) as session:
            row = self._get(session, remediation_id)
            self._move(session, row, PLANNED, CANCELLED, actor, now, finished_at=now, error=reason[:4000])
            self._audit(session, actor, A.REMEDIATION_CANCELLED, row, now, reason=reason)
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
        with write_scope(self.engine) as session:
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
        with write_scope(self.engine) as session:
            self._move(session, row, PLANNED, REJECTED, approver, now, finished_at=now, approved_by=approver,
                       error=reason[:4000] or None)
            self._audit(session, approver, A.APPROVAL_REJECTED, row, now, reason=reason)
            return row

    # -- execution ---------------------------------------------------------------------

    def execute(self, remediation_id: int, *, actor: str) -> Remediation:
        """Carry out an approved remediation exactly once; returns it succeeded or failed."""
        now = self.clock()
        with write_scope(self.engine) as session:  # the intent, committed before AWS
            row = self._get(session, remediation_id)
            self._move(session, row, APPROVED, EXECUTING, actor, now, started_at=now)
            if not row.dry_run:
                self._finding_event(session, row.finding_id, Event.START, now, strict=False)
            self._audit(session, actor, A.REMEDIATION_STARTED, row, now, dry_run=row.dry_run)
        action, target = registry.action(row.action), Target(**row.target)
        try:
            if row.dry_run:
                plan = action.plan(self._apply_session(row.account_id, action, target), target)
                return self._finish(row.id, actor, SUCCEEDED, after={"dry_run": True, "would": plan.summary})
            applied = action.apply(
                self._apply_session(row.account_id, action, target), target,
                on_before=lambda before: self._save_before(row.id, before)
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

    # -- undo ----------------------------------------------------------------------------

    def undo_rule(self, row: Remediation, undoer: str, *, undoer_is_owner: bool) -> UndoRule:
        return undo_rule(registry.action(row.action), requested_by=row.requested_by, undoer=undoer,
                         undoer_is_owner=undoer_is_owner)

    def undo(self, remediation_id: int, *, actor: str, undoer_is_owner: bool = False,
             operator: bool = False) -> Remediation:
        """Undo at once: an owner's own access-reducing action, or an operator at the CLI.
        Anything else gives access back without a second person and is refused: use
        `request_undo`."""
        now = self.clock()
        row = self._undoable(remediation_id, actor, now)
        if not operator and self.undo_rule(row, actor, undoer_is_owner=undoer_is_owner) is not UndoRule.ONE_CLICK:
            self._refuse(actor, row, f"undo {row.action}: needs a second person", now)
            raise RemediationRefused(f"Undoing {registry.action(row.action).title.lower()} gives access back: "
                                     "it needs a security approver other than you.")
        with write_scope(self.engine) as session:
            self._move(session, row, SUCCEEDED, UNDOING, actor, now, undo_requested_by=actor, undo_requested_at=now,
                       undo_decided_by=None, error=None)
            self._audit(session, actor, A.REMEDIATION_UNDO_REQUESTED, row, now, needs_approval=False,
                        operator=operator)
        return self._run_undo(row.id, actor)

    def request_undo(self, remediation_id: int, *, actor: str) -> Remediation:
        """Ask for an undo that needs a second person; leased until its request is posted."""
        now = self.clock()
        row = self._undoable(remediation_id, actor, now)
        with write_scope(self.engine) as session:
            self._move(session, row, SUCCEEDED, UNDO_REQUESTED, actor, now, undo_requested_by=actor,
                       undo_requested_at=now, undo_decided_by=None, undo_approval_ts=None, error=None)
            self._audit(session, actor, A.REMEDIATION_UNDO_REQUESTED, row, now, needs_approval=True)
            return row

    def withdraw_undo_request(self, remediation_id: int, *, actor: str, reason: str) -> Remediation:
        """The undo request could not be posted: back to succeeded, nothing changed."""
        now = self.clock()
        with write_scope(self.engine) as session:
            row = self._get(session, remediation_id)
            self._move(session, row, UNDO_REQUESTED, SUCCEEDED, actor, now, error=f"undo not requested: {reason}"[:4000])
            self._audit(session, actor, A.REMEDIATION_CANCELLED, row, now, reason=reason, undo=True)
            return row

    def approve_undo(self, remediation_id: int, *, approver: str) -> Remediation:
        now = self.clock()
        with session_scope(self.engine) as session:
            row = self._get(session, remediation_id)
        if not self.is_approver(approver):
            self._refuse(approver, row, f"approve undo of {row.action}: not a security approver", now)
            raise RemediationRefused("Undoing this needs a security approver.")
        if approver == row.undo_requested_by:
            self._refuse(approver, row, f"approve undo of {row.action}: own request", now)
            raise RemediationRefused("An undo needs a second person: a security approver other than the one asking.")
        with write_scope(self.engine) as session:
            self._move(session, row, UNDO_REQUESTED, UNDOING, approver, now, undo_decided_by=approver)
            self._audit(session, approver, A.APPROVAL_GRANTED, row, now, undo=True,
                        requester=row.undo_requested_by)
        return self._run_undo(row.id, approver)

    def reject_undo(self, remediation_id: int, *, approver: str, reason: str = "") -> Remediation:
        now = self.clock()
        with session_scope(self.engine) as session:
            row = self._get(session, remediation_id)
        if not self.is_approver(approver) and approver != row.undo_requested_by:
            self._refuse(approver, row, f"reject undo of {row.action}: not allowed", now)
            raise RemediationRefused("Only a security approver or the person who asked can reject this undo.")
        with write_scope(self.engine) as session:
            self._move(session, row, UNDO_REQUESTED, SUCCEEDED, approver, now, undo_decided_by=approver,
                       error=f"undo rejected: {reason}"[:4000])
            self._audit(session, approver, A.APPROVAL_REJECTED, row, now, undo=True, reason=reason,
                        requester=row.undo_requested_by)
            return row

    def _undoable(self, remediation_id: int, actor: str, now: datetime) -> Remediation:
        with session_scope(self.engine) as session:
            row = self._get(session, remediation_id)
        action = registry.action(row.action)
        if not action.reversible or row.dry_run or row.before is None:
            why = "was a dry run" if row.dry_run else "cannot be undone"
            self._refuse(actor, row, f"undo {row.action}: {why}", now)
            raise RemediationRefused(f"{action.title} {why}.")
        # Said before anyone is asked to approve an undo that Steward could not carry out.
        self._require_restore_role(actor, row, action, now)
        return row

    def _run_undo(self, remediation_id: int, actor: str) -> Remediation:
        """The AWS part of an undo whose intent (`undoing`, leased here) is committed."""
        with session_scope(self.engine) as session:
            row = self._get(session, remediation_id)
        action = registry.action(row.action)
        try:
            applied = action.undo(self._undo_session(row, action), Target(**row.target), row.before)
        except Exception as exc:
            if not isinstance(exc, RemediationError | ServiceError):
                log.exception("undo of remediation %s crashed", row.id)
            now = self.clock()
            with write_scope(self.engine) as session:
                self._move(session, row, UNDOING, SUCCEEDED, actor, now, error=f"undo failed: {exc}"[:4000])
                self._audit(session, actor, A.REMEDIATION_UNDO_FAILED, row, now, error=str(exc))
            raise RemediationRefused(f"Undo failed: {exc}") from exc
        now = self.clock()
        with write_scope(self.engine) as session:
            self._move(session, row, UNDOING, UNDONE, actor, now, undone_by=row.undo_requested_by or actor,
                       undone_at=now)
            self._finding_event(session, row.finding_id, Event.UNDO, now, strict=False)
            self._audit(session, actor, A.REMEDIATION_UNDONE, row, now, summary=applied.summary,
                        after=applied.after, aws_request_ids=list(applied.request_ids),
                        requester=row.undo_requested_by, approver=row.undo_decided_by)
            return row

    # -- settling what a dead process left ----------------------------------------------------

    def stale(self, row: Remediation, now: datetime | None = None) -> bool:
        """Is `row` in a working state that no live process is carrying out?"""
        if row.status not in WORKING:
            return False
        if row.lease_owner is None:
            return row.status in ALWAYS_LEASED  # planned/undo_requested without one wait for a person
        if row.lease_owner == self.holder and self.keeper.holds(row.id):
            return False
        expires = row.lease_expires_at
        return expires is None or expires <= (now or _wall_clock()) or holder_gone(row.lease_owner)

    def reconcile(self, *, actor: str = "system", only: Iterable[int] | None = None) -> list[Remediation]:
        """Settle every remediation whose lease holder is gone, from live AWS state.

        Planned or undo-requested rows nobody was asked about are dropped; approved ones
        failed (nothing ran); executing and undoing ones finished or failed by what AWS
        shows. The takeover is a compare-and-set on the lease, so two processes never settle
        one row twice. Returns the settled rows.
        """
        query = select(Remediation).where(Remediation.status.in_(WORKING))
        if only is not None:
            query = query.where(Remediation.id.in_(list(only)))
        with session_scope(self.engine) as session:
            rows = [r for r in session.scalars(query) if self.stale(r)]
        done = []
        for row in rows:
            if not self._take_over(row):
                continue
            self.keeper.hold(row.id)
            try:
                done.append(self._settle(row, actor))
            except RemediationRefused:
                log.info("remediation %s was settled by another process", row.id)
            except Exception as exc:  # AWS unreachable, a bug: never stop start-up; retry later
                log.warning("cannot settle remediation %s yet: %s", row.id, exc,
                            exc_info=not isinstance(exc, RemediationError | ServiceError))
                self._let_go(row.id)
            finally:
                self.keeper.drop(row.id)
        return done

    def _take_over(self, row: Remediation) -> bool:
        with write_scope(self.engine) as session:
            moved = session.execute(
                update(Remediation)
                .where(Remediation.id == row.id, Remediation.status == row.status,
                       Remediation.lease_owner.is_not_distinct_from(row.lease_owner),
                       Remediation.lease_expires_at.is_not_distinct_from(row.lease_expires_at))
                .values(**self.keeper.values())
                .execution_options(synchronize_session=False)
            )
        if moved.rowcount == 1:
            log.warning("settling remediation #%s (%s, %s) left by %s", row.id, row.action, row.status,
                        row.lease_owner or "a process from before leases")
        return moved.rowcount == 1

    def _let_go(self, remediation_id: int) -> None:
        """AWS could not be read: expire our lease so the next reconcile (anywhere) retries."""
        with session_scope(self.engine) as session:
            session.execute(update(Remediation).where(Remediation.id == remediation_id,
                                                      Remediation.lease_owner == self.holder)
                            .values(lease_expires_at=_wall_clock()))

    def _settle(self, row: Remediation, actor: str) -> Remediation:
        now = self.clock()
        if row.status == PLANNED:
            return self.cancel(row.id, actor=actor, reason="interrupted before the security team was asked; "
                                                          "nothing changed")
        if row.status == UNDO_REQUESTED:
            return self.withdraw_undo_request(row.id, actor=actor,
                                              reason="interrupted before the security team was asked")
        if row.status == APPROVED:
            with write_scope(self.engine) as session:
                self._move(session, row, APPROVED, FAILED, actor, now, finished_at=now,
                           error="interrupted before it started; nothing changed in AWS")
                if not row.dry_run:
                    self._finding_event(session, row.finding_id, Event.FAIL, now, strict=False)
                self._audit(session, actor, A.REMEDIATION_RECONCILED, row, now, status=FAILED)
                return row
        action, target = registry.action(row.action), Target(**row.target)
        plan = action.plan(self._apply_session(row.account_id, action, target), target)
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
        with write_scope(self.engine) as session:  # UNDOING: did the undo land?
            current = self._get(session, row.id)
            if plan.possible and not plan.already_done:
                self._move(session, current, UNDOING, UNDONE, actor, now,
                           undone_by=current.undo_requested_by or actor, undone_at=now)
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

    def _require_restore_role_to_apply(self, actor: str, finding: Finding, action: Action, target: Target,
                                       now: datetime) -> None:
        """An action whose apply needs a permission that could grant (right-sizing writes a
        policy version) runs only under the restore role; with it off, an admin does it."""
        if self.settings.restore_role_name:
            return
        reason = f"Steward's restore role is not enabled in account {finding.account_id}"
        self._refuse(actor, finding, f"{action.id}: {reason}", now)
        by_hand = action.apply_by_hand(target)
        before = action.apply_before_by_hand(target)
        words, newline, command = by_hand.rpartition("\n")
        steps = f"{words}\n```\n{command}\n```" if newline else by_hand
        kept = (f"\nBefore-state (JSON), to put back if it must be undone:\n```\n"
                f"{json.dumps(before, indent=2, sort_keys=True)}\n```") if before else ""
        raise RestoreRoleOff(f"{reason} ({action.apply_restore_why}); nothing was changed. An admin "
                             f"can apply it by hand:\n{steps}{kept}", by_hand=by_hand, before=before)

    def _apply_session(self, account_id: str, action: Action, target: Target):
        """The default role, or the restore role for an action that declares it needs it."""
        if not action.apply_needs_restore:
            return self._aws(account_id)
        from checks import accounts
        from checks.collect import CollectError

        name = str(self.settings.restore_role_name)
        try:
            role = accounts.restore_target(account_id, name, target.partition)
            return self._assumed(account_id, role)
        except ServiceError as exc:
            raise ServiceError(f"Steward's restore role {name} could not be used in account {account_id} "
                               f"(is EnableRestore on there?): {exc}") from None
        except CollectError as exc:
            raise ServiceError(str(exc)) from None

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
        with write_scope(self.engine) as session:
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
                .where(Remediation.id == remediation_id, Remediation.status == EXECUTING,
                       Remediation.lease_owner == self.holder)
                .values(before=before)
            )

    def _move(self, session, row: Remediation, expected: str, new: str, actor: str, now: datetime, **values) -> None:
        """Compare-and-set the status; losing the race is a refusal, not a second run.

        Leaving a state this process carries out (approved, executing, undoing) also needs
        its lease: a process that stalled while another settled its row changes nothing.
        Entering a working state leases the row to this process; leaving them drops it.
        """
        where = [Remediation.id == row.id, Remediation.status == expected]
        if expected in ALWAYS_LEASED:
            where.append(Remediation.lease_owner == self.holder)
        if new in ALWAYS_LEASED or new == UNDO_REQUESTED:
            values = {**self.keeper.values(), **values}
        elif new != expected:
            values = {"lease_owner": None, "lease_expires_at": None, **values}
        moved = session.execute(
            update(Remediation).where(*where).values(status=new, **values)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:
            session.rollback()
            current = session.get(Remediation, row.id)
            session.refresh(current)
            self._refuse(actor, current, f"{current.action} is {current.status}, not {expected}", now)
            raise RemediationRefused(self.handled_message(current))
        if "lease_owner" in values:
            (self.keeper.hold if values["lease_owner"] else self.keeper.drop)(row.id)
        fresh = session.get(Remediation, row.id)
        session.refresh(fresh)
        if fresh is not row:  # `row` was read in an earlier transaction: show it the new state
            for column in Remediation.__table__.columns:
                set_committed_value(row, column.key, getattr(fresh, column.key))

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
        earlier = action.needs_earlier  # e.g. delete-user only after quarantine-user
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
        if finding.check_id.startswith("activity:"):  # a risky change's containment (bot.services.activity)
            from checks.activity.rules import CONTAINMENT_ACTIONS as offered
        else:
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
        from checks.aws_calls import CollectError, caller_account

        base = self._aws_session_factory() if self._aws_session_factory else _default_session()
        try:
            aws = accounts.session_for(target, base, external_id=self.settings.external_id)
            # Never write to the wrong account because the credentials changed.
            caller_account(aws, self.settings.aws_max_attempts, expected=account_id)
        except CollectError as exc:
            raise ServiceError(str(exc)) from None
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

    def handled_message(self, row: Remediation) -> str:
        if row.status in WORKING:
            return (f"Already in hand: the request to {action_name(row.action)} is {row.status.replace('_', ' ')} "
                    f"(asked by {who_(row.undo_requested_by or row.requested_by)}).")
        who = row.undone_by or row.undo_decided_by or row.approved_by or row.requested_by
        when = row.undone_at or row.finished_at or row.approved_at or row.requested_at
        return (f"Already handled: the request to {action_name(row.action)} is {row.status.replace('_', ' ')} "
                f"({who_(who)}, {when:%Y-%m-%d %H:%M} UTC).")

    def _check_already_done(self, session, finding: Finding, action: Action) -> None:
        """A click that arrives after the same action succeeded (and the finding has not come
        back since) is told so; it never starts a second remediation."""
        if finding.state != State.REMEDIATED:
            return
        done = session.scalar(select(Remediation.id).where(
            Remediation.finding_id == finding.id, Remediation.action == action.id,
            Remediation.status == SUCCEEDED).limit(1))
        if done is not None:
            raise RemediationRefused(f"Already done: {action.title} (remediation #{done}).")

    def _in_flight_message(self, finding_id: int) -> str:
        with session_scope(self.engine) as session:
            row = queries.remediation_in_flight(session=session, finding_id=finding_id)
        if row is None:
            return "Another remediation of this finding is in progress."
        return (f"Remediation #{row.id} ({action_name(row.action)}, {row.status.replace('_', ' ')}) is already in "
                "progress for this finding.")


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
