"""`steward serve` and `steward socket` (registered in bot/cli/main.py).

Both check their settings first and stop with one line naming what is missing
(``error: missing setting: SLACK_SIGNING_SECRET``) before anything starts.
"""

from __future__ import annotations

import typer

from bot.cli.common import fail, settings_or_exit
from bot.run.serve import DEFAULT_HOST, DEFAULT_PORT


def serve(
    port: int = typer.Option(
        DEFAULT_PORT, "--port", "-p", envvar="PORT", min=1, max=65535, help="TCP port ($PORT)."
    ),
    host: str = typer.Option(
        DEFAULT_HOST,
        "--host",
        envvar="STEWARD_HOST",
        help="Address to bind ($STEWARD_HOST); 127.0.0.1 for local runs.",
    ),
    workers: int | None = typer.Option(
        None, "--workers", "-w", min=1, help="Worker processes (default $WEB_CONCURRENCY or 2)."
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="Threads per worker (default $STEWARD_WEB_THREADS or 8)."
    ),
    access_log: bool = typer.Option(
        True, "--access-log/--no-access-log", help="Log each request (no bodies)."
    ),
):
    """HTTP mode: Slack's requests on POST /slack/events, health on GET /healthz."""
    from bot.run.serve import StartupError
    from bot.run.serve import serve as run_server

    settings = settings_or_exit()
    try:
        run_server(
            settings, port, host=host, workers=workers, threads=threads, access_log=access_log
        )
    except StartupError as exc:
        raise fail(str(exc)) from None


def socket():
    """Socket Mode: connect out to Slack with SLACK_APP_TOKEN (no public URL needed)."""
    from bot.run.serve import StartupError
    from bot.run.socket import run_socket_mode

    settings = settings_or_exit()
    try:
        run_socket_mode(settings)
    except StartupError as exc:
        raise fail(str(exc)) from None
