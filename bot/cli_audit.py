"""`steward audit verify` / `steward audit export` (DESIGN.md §2, §4 "Audit").

Exit codes as for the rest of `steward`: 0 done, 1 the chain is broken, 2 bad usage or
settings. Results go to stdout (or --output), messages to stderr.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from bot.cli_common import engine_for, err, settings_or_exit

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


def _open_engine():
    return engine_for(settings_or_exit())


@audit_app.command("verify")
def verify_command(
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, hidden=True)] = 5000,
):
    """Recompute the hash chain; exit 1 naming the first bad event if it was tampered with."""
    from bot.audit import verify

    engine = _open_engine()
    try:
        result = verify(engine, batch_size=batch_size)
    finally:
        engine.dispose()
    if result.ok:
        typer.echo(f"audit chain OK: {result.checked} events")
        return
    where = "" if result.first_bad_sequence is None else f" at event {result.first_bad_sequence}"
    err.print(
        f"[bold red]audit chain BROKEN{where}:[/] {result.reason} "
        f"({result.checked} events verified before it)",
        soft_wrap=True,
        markup=True,
        highlight=False,
    )
    raise typer.Exit(1)


class ExportFormat(StrEnum):  # bot.audit.ExportFormat, without importing the database layer
    csv = "csv"
    jsonl = "jsonl"


def parse_since(value: str) -> datetime:
    """YYYY-MM-DD (midnight UTC) or an ISO-8601 datetime (no zone means UTC)."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD) or an ISO-8601 datetime "
            "(e.g. 2026-01-31T09:30:00Z)",
            param_hint="'--since'",
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@audit_app.command("export")
def export_command(
    format: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="csv or jsonl.")
    ] = ExportFormat.jsonl,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only events at or after this date (YYYY-MM-DD, UTC) or ISO-8601 datetime.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            dir_okay=False,
            help="Write to this file (replaced atomically) instead of stdout.",
        ),
    ] = None,
):
    """Export audit events, oldest first, with their hashes."""
    from sqlmodel import Session

    from bot.audit import export

    since_at = parse_since(since) if since is not None else None
    if output is not None and not output.resolve().parent.is_dir():
        raise typer.BadParameter(f"directory {output.parent} does not exist", param_hint="'--output'")
    engine = _open_engine()
    try:
        with Session(engine) as session:
            if output is None:
                count = export(session, format.value, stream=sys.stdout, since=since_at)
                sys.stdout.flush()
            else:
                count = _export_to_file(session, format, since_at, output)
    finally:
        engine.dispose()
    target = "stdout" if output is None else str(output)
    err.print(f"exported {count} audit events to {target}", highlight=False)


def _export_to_file(session, format: ExportFormat, since: datetime | None, output: Path) -> int:
    from bot.audit import export

    directory = output.resolve().parent
    fd, temporary = tempfile.mkstemp(prefix=f".{output.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            count = export(session, format.value, stream=stream, since=since)
        os.replace(temporary, output)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return count
