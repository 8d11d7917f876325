"""`steward digest [--print|--post]` (registered in bot/cli/main.py).

`--print` (the default) writes the digest as text on stdout and needs no Slack settings;
`--post` posts it to STEWARD_SECURITY_CHANNEL now, once per ISO week (a second run says it
is already there). Exit codes: 0 done, 1 Slack refused, 2 bad usage or settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from bot.cli.common import cli_actor, engine_for, err, fail, settings_or_exit
from bot.config import SettingsError


def digest(
    post: bool = typer.Option(
        False, "--post/--print", help="Post to the security channel now, or print as text (default)."
    ),
    chart: Path | None = typer.Option(
        None, "--chart", help="Also write the 8-week chart to this PNG file.", dir_okay=False
    ),
):
    """Build the weekly digest; print it, or post it to the security channel."""
    from bot.services.digest import DigestService

    settings = settings_or_exit()
    if post:
        try:
            settings.require("slack_bot_token", "security_channel")
        except SettingsError as exc:
            raise fail(f"{exc} (needed by --post)") from None
    engine = engine_for(settings)
    service = DigestService(settings, engine)
    try:
        if post:
            _post(settings, service)
            return
        from bot.slack.blocks.digest import digest_text

        built = service.build()
        sys.stdout.write(digest_text(built))
        if chart is not None:
            from bot.slack.charts import history_chart_png

            chart.write_bytes(history_chart_png(built.history))
            err.print(f"chart written to {chart}")
    finally:
        engine.dispose()


def _post(settings, service) -> None:
    from slack_sdk.errors import SlackApiError

    from bot.slack.client import make_web_client

    try:
        result = service.post(make_web_client(settings), actor=cli_actor())
    except SlackApiError as exc:
        from bot.cli.errors import describe

        message, code = describe(exc)  # a refused token is a settings error (2), not a run-time one
        raise fail(f"the digest was not posted: {message}", code=code) from None
    if result.posted:
        chart = f", chart {result.file_id}" if result.file_id else ", no chart (see the log)"
        typer.echo(f"digest {result.week} posted to {result.channel} (ts {result.ts}{chart})")
    else:
        typer.echo(f"digest {result.week} not posted again: {result.note}")
