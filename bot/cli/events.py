"""`steward events` (registered in bot/cli/main.py): the activity intake process.

Checks its settings first (STEWARD_ACTIVITY_QUEUE_URL, SLACK_BOT_TOKEN, STEWARD_SECURITY_CHANNEL)
and AWS credentials, and stops with one line naming what is missing, before any database is
created; then takes CloudTrail events from the queue until SIGTERM (exit 0). It needs no
scheduler: the answers' deadlines are swept by the loop.
"""

from __future__ import annotations

import signal

import typer

from bot.cli.common import fail, log_what_it_does, require_aws_credentials, settings_or_exit
from bot.config import SettingsError
from bot.core.queue_url import queue_region, queue_url_problem

REQUIRED = ("activity_queue_url", "slack_bot_token", "security_channel")


def events(
    once: bool = typer.Option(False, "--once", help="One poll (and one sweep), then exit: for checks and cron."),
    wait: int = typer.Option(20, "--wait", min=0, max=20, help="Long-poll seconds per receive (SQS allows 20)."),
):
    """Risky IAM changes as they happen: CloudTrail events from SQS, "Did you do this?" DMs."""
    settings = settings_or_exit()
    try:
        settings.require(*REQUIRED)
    except SettingsError as exc:
        raise fail(f"{exc} (steward events reads the queue and posts to Slack)") from None
    url = str(settings.activity_queue_url)
    problem = queue_url_problem(url)
    if problem:
        raise fail(problem)
    require_aws_credentials()  # before the database is created or migrated
    log_what_it_does()
    import boto3

    from bot.run.events import Intake
    from bot.run.runtime import build_runtime

    try:
        runtime = build_runtime(settings, settle=False)
    except (SettingsError, RuntimeError, OSError) as exc:
        raise fail(str(exc)) from None
    region = queue_region(url)
    sqs = boto3.Session().client("sqs", **({"region_name": region} if region else {}))
    intake = Intake(runtime.steward.activity, sqs, url, wait_seconds=wait)
    if once:
        intake.sweep_if_due()
        report = intake.poll_once()
        typer.echo(f"{report.received} received, {report.risky} risky, {report.duplicates} duplicate, "
                   f"{report.unreadable} unreadable, {report.failed} failed")
        raise typer.Exit(1 if report.failed else 0)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: intake.stop.set())
    raise typer.Exit(intake.run())

