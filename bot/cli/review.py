"""`steward review …`: access-review campaigns (registered in bot/cli/main.py).

* `start [--account ID …] [--due DATE] [--scope users|roles|all] [--name TEXT]` freezes the
  population from the latest scans and sends each reviewer their message (needs Slack).
* `cycle`: reminders, escalations, unsent messages, progress, and the close of campaigns
  that are due (the worker runs it hourly).
* `close CAMPAIGN`: close now; undecided items become overdue.
* `status [CAMPAIGN]`: the progress, in the terminal.
* `export CAMPAIGN --format csv|jsonl [--output FILE]`: the evidence. CSV: the rows in FILE
  and the summary sheet in FILE's `-summary.csv` sibling (on stdout: the rows only, the
  summary on stderr); JSONL: a campaign line, one line per row, a summary line.

Exit codes: 0 done, 1 Slack refused something, 2 bad usage or settings.
"""

from __future__ import annotations

import sys
from datetime import date
from enum import StrEnum
from pathlib import Path

import typer

from bot.cli.common import cli_actor, engine_for, err, fail, out, settings_or_exit

review_app = typer.Typer(help="Access reviews: certification campaigns in Slack, with evidence.",
                         no_args_is_help=True)


class Scope(StrEnum):
    users = "users"
    roles = "roles"
    all = "all"


class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


def _runtime(settings):
    from bot.config import SettingsError
    from bot.run.runtime import build_runtime

    try:
        settings.require("slack_bot_token")
    except SettingsError as exc:
        raise fail(str(exc)) from None
    engine_for(settings).dispose()  # an existing, migrated database: reviews never create one
    try:
        return build_runtime(settings)
    except (SettingsError, RuntimeError) as exc:
        raise fail(str(exc)) from None


def _due(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise fail(f"--due: {text!r} is not a date (YYYY-MM-DD)") from None


@review_app.command("start")
def start(
    account: list[str] = typer.Option([], "--account", help="Only this account (repeatable); default: every "
                                                            "account with a successful scan."),
    due: str | None = typer.Option(None, "--due", help="Due date (YYYY-MM-DD); default STEWARD_REVIEW_DUE_DAYS ahead."),
    scope: Scope = typer.Option(Scope.all, "--scope", help="Review users, roles, or both."),
    name: str | None = typer.Option(None, "--name", help="The campaign's name (default: date and scope)."),
):
    """Freeze the population from the latest scans and send every reviewer their message."""
    from bot.services.reviews import ReviewRefusal

    for a in account:
        if not (a.isdigit() and len(a) == 12):
            raise fail(f"--account: {a!r} is not a 12-digit account id")
    settings = settings_or_exit()
    runtime = _runtime(settings)
    try:
        result = runtime.steward.reviews.start(actor=cli_actor(), accounts=account, due=_due(due),
                                               scope=scope.value, name=name)
    except ReviewRefusal as exc:
        raise fail(f"{exc}; nothing was started") from None
    c = result.campaign
    scans = ", ".join(f"{a}#{s['scan_id']}" for a, s in sorted(c.scans.items()))
    out.print(f"campaign {c.id} ({c.name}): {c.population} identities frozen in {result.freeze_seconds:.2f}s "
              f"(inventory {c.inventory_count}; scans {scans}); "
              f"{result.reviewers} reviewers, {result.sent} messages sent; due {c.due_at:%Y-%m-%d}")
    for failure in result.failures:
        err.print(f"[red]not sent:[/] {failure} (retried by `steward review cycle`)")
    if result.failures:
        raise typer.Exit(1)


@review_app.command("cycle")
def cycle():
    """Reminders, escalations, unsent messages, progress; close the campaigns that are due."""
    settings = settings_or_exit()
    runtime = _runtime(settings)
    result = runtime.steward.reviews.run_cycle()
    out.print(f"{result.sent} message(s) sent, {result.reminders} reminder(s), {result.escalations} escalation(s), "
              f"closed: {', '.join(map(str, result.closed)) or 'none'}")
    for failure in result.failures:
        err.print(f"[red]failed:[/] {failure}")
    if result.failures:
        raise typer.Exit(1)


@review_app.command("close")
def close(campaign: int = typer.Argument(..., help="The campaign id.")):
    """Close a campaign now: every undecided item is reported overdue (never certified)."""
    from bot.services.reviews import ReviewRefusal

    settings = settings_or_exit()
    runtime = _runtime(settings)
    try:
        closed = runtime.steward.reviews.close(campaign, actor=cli_actor())
    except ReviewRefusal as exc:
        raise fail(str(exc)) from None
    out.print(f"campaign {closed.id} closed")


@review_app.command("status")
def status(campaign: int | None = typer.Argument(None, help="The campaign id (default: the latest).")):
    """How a campaign is going: decided, still needed, removals, overdue, late reviewers."""
    from bot.services.reviews import ReviewRefusal, ReviewService

    settings = settings_or_exit()
    engine = engine_for(settings)
    try:
        service = ReviewService(settings, engine=engine, client=None, directory=None, campaigns=None, pacer=False)
        try:
            c = service.campaign(campaign)
        except ReviewRefusal as exc:
            raise fail(str(exc)) from None
        p = service.progress(c.id)
        out.print(f"campaign {c.id} ({c.name}), {c.status}, due {c.due_at:%Y-%m-%d}: {p.percent}% decided "
                  f"({p.decided}/{p.population}); {p.still_needed} still needed, {p.removed} removals, "
                  f"{p.overdue} overdue; {p.reviewers} reviewers, {len(p.late_reviewers)} late")
    finally:
        engine.dispose()


@review_app.command("export")
def export(
    campaign: int = typer.Argument(..., help="The campaign id."),
    fmt: ExportFormat = typer.Option(..., "--format", help="csv (rows + a summary sheet) or jsonl."),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default: stdout).",
                                       dir_okay=False),
):
    """The campaign's evidence: one row per identity and entitlement.

    With the audit sequence numbers and the audit chain head at export time."""
    from bot.services import reviews

    settings = settings_or_exit()
    engine = engine_for(settings)
    try:
        service = reviews.ReviewService(settings, engine=engine, client=None, directory=None, campaigns=None,
                                        pacer=False)
        try:
            header, rows, summary = service.export(campaign, actor=cli_actor())
        except reviews.ReviewRefusal as exc:
            raise fail(str(exc)) from None
    finally:
        engine.dispose()
    if fmt is ExportFormat.jsonl:
        text = "".join(line + "\n" for line in reviews.to_jsonl(header, rows, summary))
        _write(output, text)
    else:
        _write(output, reviews.to_csv(rows))
        sheet = reviews.summary_csv(header, summary)
        if output is None:
            err.print(sheet, end="")
        else:
            sibling = output.with_name(f"{output.stem}-summary.csv")
            _write(sibling, sheet)
            err.print(f"summary sheet written to {sibling}")
    err.print(f"{len(rows)} row(s) for {summary['population']} identities; audit chain head "
              f"#{header['chain_head_sequence']} {header['chain_head_hash']}")


def _write(path: Path | None, text: str) -> None:
    if path is None:
        sys.stdout.write(text)
        return
    try:
        path.write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror or exc}", code=1) from None
