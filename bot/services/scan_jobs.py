"""Per-account scan jobs on procrastinate (PostgreSQL): enqueue, work, cancel.

With PostgreSQL a scan run is one job per account (its `Scan` row, created `queued` by
`ScanService.start`). Any number of `steward worker` processes, on any number of hosts,
take jobs from every queue; `steward scan` also works the jobs of its own run (its run's
queue `scan-<run id without dashes>`), so a scan finishes even with no worker running. PostgreSQL is the
queue: no broker to run.

* Idempotent: the job is keyed by run and account (procrastinate `queueing_lock`), and the
  service claims the row and writes results only while it is not final; a job delivered
  twice scans at most twice and records once.
* Retries: a throttled or transient failure (`CollectError.retryable`) raises `RetryLater`
  and the job runs again after a backoff, up to `MAX_ATTEMPTS`; the last attempt records
  the account as failed.
* A worker that dies mid-job stops sending heartbeats: `retry_stalled_jobs` (periodic,
  every minute, run by whichever worker defers it first) puts its jobs back in the queue.
  A job that runs too long is failed by the waiting side (`ScanService.wait`).
* Cancellation marks the run's open rows `cancelled` (jobs that start later skip them,
  running ones do not record) and cancels or aborts the queued procrastinate jobs.

The task runs synchronously in a thread of the worker's event loop; it finds the process's
`ScanService` through `install_service`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from typing import Any

import procrastinate
from procrastinate import jobs as procrastinate_jobs
from procrastinate.retry import BaseRetryStrategy, RetryDecision
from sqlalchemy.engine import make_url

from bot.services.scan_retry import MAX_ATTEMPTS, RetryLater, backoff_seconds

log = logging.getLogger(__name__)

TASK_NAME = "steward.scan_account"
QUEUE_PREFIX = "scan-"
STALLED_AFTER_SECONDS = 60  # no heartbeat for this long: the worker is gone

blueprint = procrastinate.Blueprint()
_service: Any = None
_service_lock = threading.Lock()


def queue_of(run_id: str) -> str:
    # Without the dashes: procrastinate notifies on channel `procrastinate_queue_v1#<queue>`
    # and PostgreSQL channel names stop at 63 characters.
    return f"{QUEUE_PREFIX}{run_id.replace('-', '')}"


def conninfo(database_url: str) -> str:
    """libpq connection string from Steward's SQLAlchemy URL (postgresql+psycopg://...)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def make_app(database_url: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo(database_url)))
    app.add_tasks_from(blueprint, namespace="")
    return app


def install_service(service: Any) -> None:
    """The ScanService the jobs of this process use (its engine, settings, AWS session)."""
    global _service
    with _service_lock:
        _service = service


def _current_service() -> Any:
    with _service_lock:
        if _service is None:
            raise RuntimeError("no scan service installed in this process (bot.services.scan_jobs.install_service)")
        return _service


class _Backoff(BaseRetryStrategy):
    """Retry exactly what the service asked to retry, after an exponential backoff."""

    def get_retry_decision(self, *, exception: BaseException, job: procrastinate_jobs.Job) -> RetryDecision | None:
        if not isinstance(exception, RetryLater):
            return None
        return RetryDecision(retry_in={"seconds": backoff_seconds(job.attempts)})


@blueprint.task(name=TASK_NAME, pass_context=True, retry=_Backoff())
def scan_account(context: procrastinate.JobContext, *, run_id: str, scan_id: int, account_id: str | None,
                 role_arn: str | None, label: str, actor: str) -> str:
    from checks.accounts import Target

    target = Target(account_id, role_arn, label)
    attempt = context.job.attempts + 1
    outcome = _current_service().execute_account(
        run_id, scan_id, target, actor=actor, final_attempt=attempt >= MAX_ATTEMPTS)
    return outcome.status if outcome else "skipped (already recorded or cancelled)"


@blueprint.periodic(cron="* * * * *")
@blueprint.task(name="steward.retry_stalled_jobs", queueing_lock="steward.retry_stalled_jobs", pass_context=True)
async def retry_stalled_jobs(context: procrastinate.JobContext, timestamp: int) -> None:
    """Jobs of workers that stopped sending heartbeats (killed, host gone) go back to the queue."""
    manager = context.app.job_manager
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_SECONDS):
        log.warning("job %s (%s) stalled on a vanished worker: queued again", job.id, job.task_name)
        await manager.retry_job(job)


def enqueue(database_url: str, run_id: str, jobs: Iterable[tuple[int, Any]], actor: str) -> int:
    """One job per (scan row id, target) on the run's queue; returns how many."""
    batch = [
        procrastinate_jobs.Job(
            queue=queue_of(run_id),
            lock=None,
            queueing_lock=f"{run_id}:{target.account_id or 'current'}",
            task_name=TASK_NAME,
            task_kwargs={"run_id": run_id, "scan_id": scan_id, "account_id": target.account_id,
                         "role_arn": target.role_arn, "label": target.label, "actor": actor},
        )
        for scan_id, target in jobs
    ]
    if not batch:
        return 0
    app = make_app(database_url)
    with app.open():
        app.job_manager.batch_defer_jobs(batch)
    return len(batch)


def cancel_jobs(database_url: str, run_id: str) -> int:
    """Cancel the run's queued jobs and ask running ones to abort; returns how many."""
    app = make_app(database_url)
    count = 0
    with app.open():
        for job in app.job_manager.list_jobs(queue=queue_of(run_id)):
            if job.status in ("todo", "doing") and job.id is not None:
                count += bool(app.job_manager.cancel_job_by_id(job.id, abort=True))
    return count


class WorkerThread:
    """A procrastinate worker on its own event loop in a thread (`steward worker` runs one
    next to the scheduler; `steward scan` runs one on its run's queue)."""

    def __init__(self, database_url: str, *, queues: list[str] | None, concurrency: int, name: str):
        self._app = make_app(database_url)
        self._options = {"queues": queues, "concurrency": max(1, concurrency), "name": name,
                         "install_signal_handlers": False, "wait": True,
                         "listen_notify": True, "fetch_job_polling_interval": 2.0,
                         "abort_job_polling_interval": 2.0}
        self._worker: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"jobs-{name}", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> WorkerThread:
        self._thread.start()
        self._ready.wait(30)
        return self

    def _main(self) -> None:
        from procrastinate.worker import Worker

        async def run() -> None:
            async with self._app.open_async():
                self._worker = Worker(self._app, **self._options)
                self._loop = asyncio.get_running_loop()
                self._ready.set()
                await self._worker.run()

        try:
            asyncio.run(run())
        except BaseException as exc:  # the waiter sees `alive` go false and says why
            self.error = exc
            log.exception("job worker %s stopped with an error", self._options["name"])
        finally:
            self._ready.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 60.0) -> None:
        if self._worker is not None and self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._worker.stop)
        self._thread.join(timeout)
