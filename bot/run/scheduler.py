"""The scheduler process (`steward worker`): APScheduler jobs calling the services.

Jobs (stable ids; the job store keeps them across restarts):

| id             | when                                                      | does |
|----------------|-----------------------------------------------------------|------|
| `scan`         | every STEWARD_SCAN_INTERVAL_HOURS, or STEWARD_SCAN_CRON   | scan every account, then one routing cycle |
| `route`        | hourly (at half past)                                     | DMs, triage, reminders, escalations |
| `expire`       | daily 07:45                                               | exceptions and snoozes that ran out |
| `digest`       | STEWARD_DIGEST_CRON (default Monday 09:00)                | the weekly digest (idempotent per week) |
| `audit-verify` | daily 06:15                                               | recompute the audit chain; alert the security channel if broken |
| `reconcile`    | every minute                                              | settle remediations whose process is gone; update their messages |
| `review-cycle` | hourly (at a quarter to)                                  | access reviews: unsent messages, reminders, escalations, progress, close at the due date |
| `review-start` | STEWARD_REVIEW_CRON (off unless set)                      | start an access review of every account's users and roles |

Cron times are in STEWARD_TIMEZONE. Intervals are aligned to a fixed midnight UTC, so a
restart does not push the next scan back by a whole interval.

The jobs are module-level functions referenced by text (`bot.run.scheduler:run_scan`): the
SQLAlchemy job store pickles references, not objects. They find the process's one Runtime
through `current_runtime()`, built once by the worker (or installed by a test).

Every job runs under the campaign lock (bot/run/leader.py `exclusive`), which `steward notify`
takes too: two routing cycles never run at once, so nobody gets the same DM twice.

Only the leader (bot/run/leader.py) starts a scheduler. On SIGTERM or SIGINT the worker stops
taking jobs, waits for the running ones (`shutdown(wait=True)`), releases the lock and
exits 0; a standby then takes over within its poll interval.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.config import Settings
from bot.core.cron import cron_trigger

log = logging.getLogger(__name__)

JOB_TABLE = "apscheduler_jobs"  # created by migration 0006 (bot.db.models.SchedulerJob)
# Interval triggers count from here (a Monday, midnight UTC), not from process start.
INTERVAL_ANCHOR = datetime(2000, 1, 3, tzinfo=UTC)
ROUTE_OFFSET = timedelta(minutes=30)
REVIEW_OFFSET = timedelta(minutes=45)
DIGEST_MIN_GRACE = 24 * 3600  # a late digest beats none; posting is idempotent per week
EXECUTOR_THREADS = 4
LOCK_CHECK_SECONDS = 5.0

@dataclass(frozen=True)
class JobSpec:
    id: str
    func: str  # textual reference, resolved by APScheduler
    trigger: BaseTrigger
    misfire_grace_time: int
    name: str


def job_specs(settings: Settings) -> list[JobSpec]:
    """The worker's jobs and their triggers, from the settings alone (pure)."""
    zone = ZoneInfo(settings.timezone)
    grace = settings.misfire_grace_seconds
    if settings.scan_cron:
        scan = cron_trigger(settings.scan_cron, zone)
    else:
        seconds = max(1, round(settings.scan_interval_hours * 3600))
        scan = IntervalTrigger(seconds=seconds, start_date=INTERVAL_ANCHOR, timezone=UTC)
    return [
        JobSpec("scan", "bot.run.scheduler:run_scan", scan, grace, "Scan every account, then route"),
        JobSpec("route", "bot.run.scheduler:run_route",
                IntervalTrigger(hours=1, start_date=INTERVAL_ANCHOR + ROUTE_OFFSET, timezone=UTC),
                grace, "Routing cycle: DMs, reminders, escalations"),
        JobSpec("expire", "bot.run.scheduler:run_expire", CronTrigger(hour=7, minute=45, timezone=zone),
                grace, "Expire exceptions and snoozes"),
        JobSpec("digest", "bot.run.scheduler:run_digest", cron_trigger(settings.digest_cron, zone),
                max(grace, DIGEST_MIN_GRACE), "Weekly digest"),
        JobSpec("audit-verify", "bot.run.scheduler:run_audit_verify", CronTrigger(hour=6, minute=15, timezone=zone),
                grace, "Verify the audit chain"),
        JobSpec("usage", "bot.run.scheduler:run_usage", cron_trigger(settings.usage_cron, zone),
                grace, "Collect what principals really used (IAM last-accessed data)"),
        JobSpec("rotations", "bot.run.scheduler:run_rotations",
                IntervalTrigger(hours=1, start_date=INTERVAL_ANCHOR + ROUTE_OFFSET, timezone=UTC),
                grace, "Watch guided key rotations: new key in use, old key quiet"),
        JobSpec("reconcile", "bot.run.scheduler:run_reconcile",
                IntervalTrigger(minutes=1, start_date=INTERVAL_ANCHOR, timezone=UTC),
                grace, "Settle remediations whose process is gone"),
        JobSpec("review-cycle", "bot.run.scheduler:run_review_cycle",
                IntervalTrigger(hours=1, start_date=INTERVAL_ANCHOR + REVIEW_OFFSET, timezone=UTC),
                grace, "Access reviews: reminders, escalations, progress, close"),
        *([JobSpec("review-start", "bot.run.scheduler:run_review_start", cron_trigger(settings.review_cron, zone),
                   max(grace, DIGEST_MIN_GRACE), "Start an access review")] if settings.review_cron else []),
    ]


def build_scheduler(settings: Settings, engine, *, threads: int = EXECUTOR_THREADS) -> BackgroundScheduler:
    """A scheduler over Steward's database (job store table from migration 0006)."""
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename=JOB_TABLE)},
        executors={"default": ThreadPoolExecutor(threads)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": settings.misfire_grace_seconds},
        timezone=ZoneInfo(settings.timezone),
    )
    scheduler.add_listener(_log_job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    return scheduler


def sync_jobs(scheduler: BackgroundScheduler, specs: Iterable[JobSpec]) -> dict[str, str]:
    """Make the job store hold exactly `specs`; say per id: added, kept, replaced or removed.

    A job whose function and trigger are unchanged is kept with its stored next run time,
    so a run that fell due while no worker was up still happens (within the misfire grace)
    instead of being rescheduled from now. Call between `start(paused=True)` and `resume()`.
    """
    outcome: dict[str, str] = {}
    wanted = {spec.id: spec for spec in specs}
    for spec in wanted.values():
        existing = scheduler.get_job(spec.id)
        options = {"misfire_grace_time": spec.misfire_grace_time, "coalesce": True, "max_instances": 1,
                   "name": spec.name}
        if existing is not None and existing.func_ref == spec.func and repr(existing.trigger) == repr(spec.trigger):
            scheduler.modify_job(spec.id, **options)
            outcome[spec.id] = "kept"
            continue
        scheduler.add_job(spec.func, trigger=spec.trigger, id=spec.id, replace_existing=True, **options)
        outcome[spec.id] = "replaced" if existing is not None else "added"
    for job in scheduler.get_jobs():
        if job.id not in wanted:
            scheduler.remove_job(job.id)
            outcome[job.id] = "removed"
    return outcome


def _log_job_event(event: JobExecutionEvent) -> None:
    if event.code == EVENT_JOB_MISSED:
        log.warning("job %s missed its %s run (worker down longer than the misfire grace)",
                    event.job_id, event.scheduled_run_time)
    # Errors: APScheduler's executor already logs the traceback.


# --- the process's runtime -----------------------------------------------------------------

_runtime: Any = None
_runtime_factory: Callable[[], Any] | None = None
_runtime_lock = threading.Lock()


def install_runtime(runtime: Any = None, *, factory: Callable[[], Any] | None = None) -> None:
    """Give the jobs their Runtime (or a factory building it on first use)."""
    global _runtime, _runtime_factory
    with _runtime_lock:
        _runtime, _runtime_factory = runtime, factory


def current_runtime() -> Any:
    """The worker's one Runtime (settings, engine, client, steward)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            if _runtime_factory is None:
                from bot.config import load_settings
                from bot.run.runtime import build_runtime

                _runtime = build_runtime(load_settings())
            else:
                _runtime = _runtime_factory()
        return _runtime


# --- jobs (referenced by text from the job store: keep their names) -------------------------


def exclusive_job(runtime: Any):
    """The campaign lock, shared with `steward notify` (re-entrant: a scan's routing cycle)."""
    from bot.run.leader import exclusive

    return exclusive(runtime.settings.effective_database_url,
                     on_wait=lambda holder: log.info("job waiting for the campaign lock (held by %s)",
                                                     holder or "another process"))


def run_scan() -> None:
    """Scan every configured account, then run a routing cycle for what it found (the
    messages under the campaign lock; the scan itself writes no message).

    On PostgreSQL the scheduler only enqueues the accounts' jobs and waits for the run to
    end: every `steward worker` (this one included, see bot/cli/worker.py) takes them."""
    runtime = current_runtime()
    began = time.monotonic()
    report = runtime.steward.scans.run(actor="system", work=False)
    failed = [o.account_id for o in report.failed]
    log.info("scheduled scan %s: %d accounts, %d failed%s (%.1fs)", report.run_id, len(report.outcomes),
             len(failed), f": {', '.join(failed)}" if failed else "", time.monotonic() - began)
    with exclusive_job(runtime):
        runtime.steward.campaigns.refresh_resolved(report.resolved)
        run_route()


def run_route() -> None:
    """One routing cycle: new findings to owners, reminders and escalations that are due."""
    runtime = current_runtime()
    with exclusive_job(runtime):
        report = runtime.steward.campaigns.run_cycle()
    log.info("routing cycle: %s", report)


def run_expire() -> None:
    """Exceptions and snoozes whose time ran out go back to their owners."""
    runtime = current_runtime()
    with exclusive_job(runtime):
        expired = runtime.steward.campaigns.expire_decisions()
    log.info("expired decisions: %s", expired)


def run_usage() -> None:
    """Refresh every account's last-accessed data (read by the `unused-permissions` check)."""
    from bot.services.usage import UsageService

    runtime = current_runtime()
    results = UsageService(runtime.settings, engine=runtime.engine).collect(actor="system")
    for result in results:
        log.info("usage of %s: %s", result.account_id,
                 result.error or f"{result.principals} principals, {len(result.failed)} failed, "
                                 f"{result.api_calls} calls in {result.seconds:.1f}s")


def run_rotations() -> None:
    """Advance every guided key rotation: pick-up, first use of the new key, quiet old key."""
    from bot.services.rotation import RotationService

    runtime = current_runtime()
    with exclusive_job(runtime):
        report = RotationService(runtime.settings, engine=runtime.engine, client=runtime.client).tick()
    log.info("rotations: %s", report)


def run_reconcile() -> None:
    """Remediations whose process is gone: settle them from AWS state, update their messages."""
    settled = current_runtime().steward.campaigns.settle_interrupted()
    if settled:
        log.warning("reconciled %d interrupted remediation(s): %s", len(settled),
                    ", ".join(f"#{r.id} {r.status}" for r in settled))


def run_digest() -> None:
    """Post this week's digest to the security channel, unless it is already there."""
    from bot.services.digest import DigestService

    runtime = current_runtime()
    with exclusive_job(runtime):
        result = DigestService(runtime.settings, runtime.engine).post(runtime.client, actor="system")
    log.info("digest %s: %s", result.week, f"posted ({result.ts})" if result.posted else f"not posted: {result.note}")


def run_review_cycle() -> None:
    """Access reviews: unsent messages, reminders, escalations, progress; close those due."""
    runtime = current_runtime()
    with exclusive_job(runtime):
        result = runtime.steward.reviews.run_cycle()
    log.info("review cycle: %s", result)


def run_review_start() -> None:
    """A scheduled access review (STEWARD_REVIEW_CRON) of every account's users and roles."""
    from bot.services.reviews import ReviewRefusal

    runtime = current_runtime()
    with exclusive_job(runtime):
        try:
            result = runtime.steward.reviews.start(actor="system:schedule", scope="all")
        except ReviewRefusal as exc:
            log.error("the scheduled access review did not start: %s", exc)
            return
    log.info("scheduled access review #%s: %d identities, %d reviewers, %d messages",
             result.campaign.id, result.campaign.population, result.reviewers, result.sent)


def run_audit_verify() -> None:
    """Recompute the audit chain; a broken chain is logged and alerted in the security channel."""
    from bot.db.audit import verify

    runtime = current_runtime()
    result = verify(runtime.engine)
    if result.ok:
        log.info("audit chain OK: %d events", result.checked)
        return
    where = f" at event {result.first_bad_sequence}" if result.first_bad_sequence else ""
    if result.unverifiable:  # e.g. this worker lacks the key of a keyed segment: not proof of tampering
        message = (f":warning: *The audit log could not be verified{where}:* {result.reason}. Give the worker "
                   "STEWARD_AUDIT_KEY (every key the chain used) and run `steward audit verify`.")
        log.error("audit chain NOT VERIFIED%s: %s", where, result.reason)
    else:
        message = (f":rotating_light: *The audit log's hash chain is broken{where}:* {result.reason} "
                   f"({result.checked} events verified before it). Run `steward audit verify` and "
                   "compare with an exported copy: someone may have edited or deleted audit rows.")
        log.error("audit chain BROKEN%s: %s", where, result.reason)
    channel = runtime.settings.security_channel
    if not channel:
        log.error("no STEWARD_SECURITY_CHANNEL to alert")
        return
    runtime.client.chat_postMessage(channel=channel, text=message)


# --- the worker ----------------------------------------------------------------------------


def run_worker(
    settings: Settings,
    *,
    runtime_factory: Callable[[], Any],
    lock=None,
    stop: threading.Event | None = None,
    handle_signals: bool = True,
    lock_check_seconds: float = LOCK_CHECK_SECONDS,
) -> int:
    """Stand by until leader, then schedule until stopped. Returns the exit code.

    0 after SIGTERM/SIGINT (or `stop`), 1 if the leader lock was lost (the supervisor
    restarts the process, which stands by again). The runtime is built first, so bad
    settings, a stale schema and crash reconciliation happen at start-up, not at takeover.
    """
    from bot.run.leader import leader_lock

    stop = stop or threading.Event()
    if handle_signals:
        _install_signal_handlers(stop)
    runtime = runtime_factory()
    install_runtime(runtime)
    lock = lock or leader_lock(settings.effective_database_url)
    log.info("worker %s standing by for the scheduler lock", lock.holder)
    while not _try_acquire(lock):
        if stop.wait(settings.leader_poll_seconds):
            log.info("worker %s stopped while standing by", lock.holder)
            return 0
    log.info("worker %s is the scheduler leader", lock.holder)
    scheduler = build_scheduler(settings, runtime.engine)
    code = 0
    try:
        scheduler.start(paused=True)
        changes = sync_jobs(scheduler, job_specs(settings))
        scheduler.resume()
        for job in scheduler.get_jobs():
            log.info("job %s (%s): %s, next run %s", job.id, changes.get(job.id, "kept"), job.trigger,
                     job.next_run_time)
        next_check = time.monotonic() + lock_check_seconds
        while not stop.wait(min(1.0, lock_check_seconds)):
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + lock_check_seconds
                if not lock.still_held():
                    log.error("worker %s lost the scheduler lock: stopping", lock.holder)
                    code = 1
                    break
    finally:
        if scheduler.running:
            log.info("worker %s shutting down the scheduler (waiting for running jobs)", lock.holder)
            # Pause first: a stopping (not paused) scheduler may still pick a due job and
            # fail to submit it to the closed executor, which skips that run for good.
            scheduler.pause()
            scheduler.shutdown(wait=code == 0)
        lock.release()
        log.info("worker %s released the scheduler lock", lock.holder)
    return code


def _try_acquire(lock) -> bool:
    from sqlalchemy.exc import DBAPIError

    try:
        return lock.try_acquire()
    except (DBAPIError, OSError) as exc:  # the database is unreachable for now: keep standing by
        log.warning("worker %s cannot reach the database for the scheduler lock: %s", lock.holder, exc)
        return False


def _install_signal_handlers(stop: threading.Event) -> None:
    def handler(signum, _frame):
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
