"""`steward events` (registered in bot/cli/main.py): the activity intake process.

Checks its settings first (STEWARD_ACTIVITY_QUEUE_URL, SLACK_BOT_TOKEN, STEWARD_SECURITY_CHANNEL)
and stops with one line naming what is missing; then takes CloudTrail events from the queue
until SIGTERM (exit 0). It needs no scheduler: the answers' deadlines are swept by the loop.
"""

from __future__ import annotations

import logging
import re
import signal

import typer

from bot.cli.common import fail, settings_or_exit
from bot.config import SettingsError

REQUIRED = ("activity_queue_url", "slack_bot_token", "security_channel")
QUEUE_URL = re.compile(r"^https?://[^/\s]+/\d{12}/[\w-]{1,80}$")


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
    if not QUEUE_URL.match(url):
        raise fail(f"STEWARD_ACTIVITY_QUEUE_URL is not an SQS queue URL: {url!r} "
                   "(https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)")
    root = logging.getLogger()
    if root.getEffectiveLevel() > logging.INFO:  # a long-running process logs what it does
        root.setLevel(logging.INFO)
    import boto3

    from bot.run.events import Intake
    from bot.run.runtime import build_runtime

    try:
        runtime = build_runtime(settings, settle=False)
    except (SettingsError, RuntimeError, OSError) as exc:
        raise fail(str(exc)) from None
    region = _region(url)
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


def _region(url: str) -> str | None:
    match = re.match(r"^https?://sqs\.([a-z0-9-]+)\.amazonaws\.com", url)
    return match.group(1) if match else None
