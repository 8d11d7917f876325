"""`steward worker`: the scheduler process (registered in bot/cli/main.py).

Checks its settings first and stops with one line naming what is missing; then builds the
runtime (schema check, crash reconciliation), stands by for the leader lock and, once
leader, runs the jobs of bot/run/scheduler.py until SIGTERM (exit 0).

With PostgreSQL every worker, leader or standby, also takes per-account scan jobs from
the queue (bot/services/scan_jobs.py): add workers on any host to scan more accounts at
once. Only the leader schedules (and so enqueues) scans.
"""

from __future__ import annotations

import typer

from bot.cli.common import fail, log_what_it_does, settings_or_exit
from bot.config import SettingsError

# Posting is the worker's job: DMs and reminders, the digest, audit-chain alerts.
REQUIRED = ("slack_bot_token", "security_channel")


def worker():
    """The scheduler: scans, routing, expiry, weekly digest, audit checks (one leader at a time)."""
    from bot.run.runtime import build_runtime
    from bot.run.scheduler import run_worker

    settings = settings_or_exit()
    try:
        settings.require(*REQUIRED)
    except SettingsError as exc:
        raise fail(f"{exc} (the worker posts DMs, the weekly digest and audit alerts to Slack)") from None
    log_what_it_does()
    jobs = []

    def runtime_with_jobs():
        runtime = build_runtime(settings)
        if runtime.engine.dialect.name == "postgresql":
            jobs.append(_start_job_worker(settings, runtime))
        return runtime

    try:
        code = run_worker(settings, runtime_factory=lambda: _with_metrics(runtime_with_jobs()))
    except (SettingsError, RuntimeError, OSError) as exc:
        raise fail(str(exc)) from None
    finally:
        for job_worker in jobs:  # running scan jobs finish and record first
            job_worker.stop()
    raise typer.Exit(code)


def _with_metrics(runtime):
    """Serve `GET /metrics` on STEWARD_WORKER_METRICS_PORT (standbys too: a scraper sees them)."""
    settings = runtime.settings
    if settings.worker_metrics_port:
        if not settings.metrics_token:
            raise SettingsError("STEWARD_WORKER_METRICS_PORT needs STEWARD_METRICS_TOKEN (scrapers send it)")
        from bot.run.metrics import serve_in_background

        serve_in_background(runtime.engine, port=settings.worker_metrics_port, token=settings.metrics_token)
    return runtime


def _start_job_worker(settings, runtime):
    from bot.run.leader import holder_id
    from bot.services import scan_jobs

    scan_jobs.install_service(runtime.steward.scans)
    return scan_jobs.WorkerThread(settings.effective_database_url, queues=None,
                                  concurrency=settings.scan_concurrency, name=holder_id()).start()
