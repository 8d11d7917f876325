"""The `steward` command (docs/architecture.md §2). Thin: parse, call a service, render.

Exit codes: 0 done (findings are not an error), 1 a scan, check or other run-time step
failed, 2 bad usage or settings. Errors are one line on stderr (`error: …`, see
bot/cli/errors.py), a traceback only with `--debug`; progress goes to stderr so stdout stays
clean JSON.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

import typer
from rich.table import Table

from bot.cli.audit import audit_app
from bot.cli.common import (
    cli_actor,
    engine_for,
    err,
    fail,
    out,
    require_aws_credentials,
    settings_or_exit,
)
from bot.cli.demo import demo
from bot.cli.digest import digest
from bot.cli.doctor import doctor
from bot.cli.events import events
from bot.cli.export import export
from bot.cli.notify import notify
from bot.cli.remediate import findings, reconcile, remediate, undo
from bot.cli.review import review_app
from bot.cli.serve import serve, socket
from bot.cli.usage import usage_app
from bot.cli.worker import worker
from bot.core.report import plural

app = typer.Typer(
    name="steward",
    help="IAM Steward: AWS IAM hygiene, routed to the people who own it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.command("serve")(serve)
app.command("socket")(socket)
app.command("demo")(demo)
app.command("worker")(worker)
app.command("events")(events)
app.command("digest")(digest)
app.command("export")(export)
app.command("doctor")(doctor)
app.add_typer(audit_app, name="audit")
app.add_typer(review_app, name="review")
app.add_typer(usage_app, name="usage")
for command in (notify, findings, remediate, undo, reconcile):
    app.command()(command)

SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    ocsf = "ocsf"  # a JSON array of OCSF Detection Findings (what Prowler and Security Lake read)


_debug = False


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug output."),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an unexpected error."),
):
    global _debug
    _debug = debug
    logging.basicConfig(
        level=logging.DEBUG if verbose or debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from bot.core.logsafe import install

    install()


@app.command()
def scan(
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="table, json or ocsf."),
    account: list[str] = typer.Option([], "--account", "-a", help="Only this account id (repeatable)."),
    no_save: bool = typer.Option(False, "--no-save", help="Do not write the scan to the database."),
    cancel: str | None = typer.Option(None, "--cancel", metavar="RUN",
                                      help="Cancel what is left of scan run RUN (its id), then exit."),
):
    """Collect and evaluate every configured account; save the findings.

    With PostgreSQL each account is a job that any `steward worker` can take; this command
    works its own run's jobs too, so it finishes with no worker running. Ctrl+C cancels the
    accounts not scanned yet."""
    from bot.services.common import ServiceError
    from bot.services.scans import ScanService

    settings = settings_or_exit()
    if cancel is not None:
        _cancel_run(settings, cancel.strip())
        return
    for account_id in account:
        if not (account_id.isdigit() and len(account_id) == 12):
            raise fail(f"--account takes a 12-digit AWS account id, not {account_id!r}")
    require_aws_credentials()
    engine = None if no_save else engine_for(settings, create=True)
    service = ScanService(settings, engine=engine)
    try:
        run = service.start(only_accounts=account, save=not no_save, actor=cli_actor())
    except ServiceError as exc:
        raise fail(f"scan failed: {exc}", code=1) from None
    if engine is not None:
        err.print(f"[dim]scan run {run.run_id}: {plural(run.size, 'account')}"
                  f"{' (cancel with: steward scan --cancel ' + run.run_id + ')' if run.queued else ''}[/]",
                  highlight=False, soft_wrap=True)
    try:
        with _progress_display(run.size) as progress:
            report = service.wait(run, progress=progress)
    except KeyboardInterrupt:
        cancelled = service.cancel(run.run_id, actor=cli_actor())
        err.print(f"[yellow]scan run {run.run_id} cancelled[/]: {plural(cancelled, 'account')} not scanned; "
                  "accounts already recorded stay recorded.", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except ServiceError as exc:
        raise fail(f"scan failed: {exc}", code=1) from None

    if format is OutputFormat.json:
        rows = [
            _finding_row(result, outcome)
            for outcome in report.outcomes
            for result in outcome.findings
        ]
        sys.stdout.write(json.dumps(rows, indent=2, sort_keys=True, default=str) + "\n")
    elif format is OutputFormat.ocsf:
        sys.stdout.write(json.dumps(_ocsf_rows(report), indent=2, sort_keys=True) + "\n")
    else:
        _print_table(report)
    for outcome in report.failed:
        err.print(f"[bold red]scan {outcome.status}[/] for {outcome.label}: {outcome.error}", soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)


def _cancel_run(settings, run_id: str) -> None:
    from bot.services.scans import ScanService

    service = ScanService(settings, engine=engine_for(settings))
    rows = service.run_of(run_id)
    if not rows:
        raise fail(f"no scan run {run_id!r} (the id is printed when a scan starts)")
    cancelled = service.cancel(run_id, actor=cli_actor())
    done = sum(1 for r in rows if r.status in ("succeeded", "failed"))
    err.print(f"scan run {run_id}: {plural(cancelled, 'account')} cancelled, {done} already finished "
              f"(of {len(rows)}).", highlight=False)


@contextmanager
def _progress_display(total: int):
    """A progress bar of accounts done/failed on a terminal; plain lines otherwise."""
    if not err.is_terminal:
        yield _progress
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    failed = 0
    with Progress(TextColumn("Scanning accounts"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[failed]}"), TimeElapsedColumn(), console=err, transient=False) as bar:
        task = bar.add_task("scan", total=total, failed="")

        def update(label: str, event: str) -> None:
            nonlocal failed
            if event in ("succeeded", "failed", "cancelled"):
                failed += event != "succeeded"
                bar.update(task, advance=1, failed=f"[red]{failed} failed[/]" if failed else "")
            if event in ("failed", "cancelled", "retrying"):
                bar.console.print(f"{_MARKS[event]} {label}: scan {event}", highlight=False)

        yield update


def _finding_row(result, outcome):
    from bot.core.report import finding_json

    return finding_json(result, outcome.owners.get(result.fingerprint))


def _ocsf_rows(report) -> list[dict]:
    """Every finding of the scan as an OCSF Detection Finding, seen at the scan's time."""
    from importlib.metadata import version

    from checks.formats import Seen
    from checks.formats.ocsf import detection_finding

    return [
        detection_finding(
            _finding_row(result, outcome),
            Seen(outcome.finished_at, outcome.finished_at),
            now=outcome.finished_at,
            version=version("iam-steward"),
            account_name=outcome.label if outcome.label != outcome.account_id else None,
        )
        for outcome in report.outcomes
        for result in outcome.findings
    ]


_MARKS = {"started": "[dim]…[/]", "succeeded": "[green]✓[/]", "failed": "[red]✗[/]",
          "cancelled": "[yellow]✗[/]", "retrying": "[yellow]↻[/]"}


def _progress(label: str, event: str) -> None:
    err.print(f"{_MARKS.get(event, '')} {label}: scan {event}", highlight=False)


def _print_table(report) -> None:
    from bot.core.report import short_resource, summary
    from checks.catalog import severity_of

    for outcome in report.outcomes:
        if outcome.failed:
            out.print(f"\n[bold]{_heading(outcome)}[/]  [bold red]SCAN FAILED[/] — {outcome.error}")
            out.print("  Findings for this account are unknown; nothing was resolved.")
            continue
        inv = outcome.inventory
        out.print(
            f"\n[bold]{_heading(outcome)}[/]  {len(outcome.findings)} findings · "
            f"{inv.get('users', 0)} users, {inv.get('roles', 0)} roles, {inv.get('groups', 0)} groups · "
            f"{outcome.api_calls} API calls · {outcome.seconds:.1f}s"
        )
        for note in outcome.notes:  # what the scan could not see, e.g. "SCPs not visible: ..."
            out.print(f"  [yellow]{note}[/]")
        if not outcome.findings:
            out.print("  [green]No findings.[/]")
            continue
        table = Table(show_lines=False, pad_edge=False, expand=False)
        table.add_column("Severity")
        table.add_column("Check", overflow="fold")
        table.add_column("Resource", overflow="fold")
        table.add_column("Details", overflow="fold")
        table.add_column("Owner", overflow="fold")
        findings = sorted(
            outcome.findings,
            key=lambda r: (severity_of(r.check, r.details).rank, r.check, r.resource, r.sub_key),
        )
        for r in findings:
            sev = severity_of(r.check, r.details).value
            table.add_row(
                f"[{SEVERITY_STYLE[sev]}]{sev}[/]",
                r.check,
                short_resource(r.resource),
                summary(r.check, r.details),
                outcome.owners.get(r.fingerprint) or "[dim]—[/]",
            )
        out.print(table)


def _heading(outcome) -> str:
    if outcome.label and outcome.label != outcome.account_id:
        return f"{outcome.account_id} ({outcome.label})"
    return outcome.account_id


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")):
    """Apply database migrations (Alembic) up to REVISION."""
    from bot.db.migrate import upgrade

    settings = settings_or_exit()
    upgrade(settings.effective_database_url, revision)
    err.print(f"database at revision {revision}")


@db_app.command("revision")
def db_revision(
    message: str | None = typer.Option(None, "--message", "-m", help="What the migration does (the file name's slug)."),
    check: bool = typer.Option(False, "--check", help="Only say whether the models and migrations differ "
                               "(exit 1 when they do); write nothing."),
    directory: Path | None = typer.Option(None, "--directory", hidden=True, file_okay=False,
                                          help="Write here instead of migrations/versions (tests)."),
):
    """Write the next migration: the models compared with a database at head.

    Alembic autogenerate. Review it before committing: autogenerate misses renames and
    triggers."""
    from alembic.util import AutogenerateDiffsDetected, CommandError

    from bot.db import migrate

    if not check and not (message or "").strip():
        raise fail('say what the migration does: steward db revision -m "add the foo table"')
    settings = settings_or_exit()
    try:
        if check:
            migrate.check(settings.effective_database_url)
            err.print("models and migrations agree")
            return
        path = migrate.revision(settings.effective_database_url, str(message), directory=directory)
    except AutogenerateDiffsDetected as exc:
        raise fail(f"models and migrations differ: {' '.join(str(exc).split())}", code=1) from None
    except CommandError as exc:  # e.g. the database is not at head: `steward db upgrade` first
        raise fail(f"{exc}; run `steward db upgrade` first" if "not up to date" in str(exc) else str(exc)) from None
    err.print(f"wrote {path}", highlight=False)


def main() -> None:
    """Run the command; anything that escapes it becomes one line and exit 1 or 2."""
    try:
        app()
    except Exception as exc:
        if _debug:
            raise
        from bot.cli.errors import describe

        message, code = describe(exc)
        fail(message, code=code)
        sys.exit(code)
