"""`steward findings`, `steward remediate`, `steward undo`, `steward reconcile` (operators).

The CLI runs with direct access to Steward's database and AWS role, so an operator
approves their own request; it is recorded as an operator approval in the audit log.
Slack users go through the two-person rule instead.
"""

from __future__ import annotations

import typer
from rich.table import Table

from bot.cli.common import cli_actor, engine_for, err, fail, out, settings_or_exit
from bot.core.lifecycle import ACTIONABLE_STATES
from bot.core.report import plural

_ACTIONABLE = sorted(str(s) for s in ACTIONABLE_STATES)  # the default filter: findings an owner can act on


def findings(
    state: list[str] = typer.Option(_ACTIONABLE, "--state", help="Repeatable."),
    check: str | None = typer.Option(None, "--check"),
    account: str | None = typer.Option(None, "--account"),
    limit: int = typer.Option(100, "--limit", min=1),
):
    """List stored findings with the ids `steward remediate` takes."""
    from bot.core.report import short_resource, summary
    from bot.db import queries
    from bot.db.engine import session_scope

    engine = engine_for(settings_or_exit())
    with session_scope(engine) as session:
        rows = queries.findings_in_states(session=session, states=state, account_id=account, check_id=check)
    table = Table(pad_edge=False)
    for column in ("Id", "Severity", "Check", "Account", "Resource", "Details", "State", "Remediations"):
        table.add_column(column, overflow="fold")
    from checks.catalog import BY_ID

    for f in rows[:limit]:
        table.add_row(str(f.id), f.severity, f.check_id, f.account_id, short_resource(f.resource),
                      summary(f.check_id, f.details or {}), f.state, ", ".join(BY_ID[f.check_id].remediations if f.check_id in BY_ID else ()))
    out.print(table)
    if len(rows) > limit:
        err.print(f"{len(rows) - limit} more not shown (--limit)")


def remediate(
    finding: str = typer.Argument(..., help="Finding id or fingerprint (prefix)."),
    action: str = typer.Argument(..., help="Remediation id, e.g. deactivate-access-key."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Plan and record; change nothing in AWS."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
):
    """Plan, approve (as operator) and carry out one remediation."""
    from bot.services.common import ServiceError
    from bot.services.remediation import RemediationService

    settings = settings_or_exit()
    engine = engine_for(settings)
    _require(engine, finding=finding)
    service = RemediationService(settings, engine=engine)
    actor = cli_actor()
    try:
        row = service.request(finding, action, actor=actor, dry_run=dry_run)
        prefix = "[yellow]DRY RUN[/] " if row.dry_run else ""
        out.print(f"{prefix}#{row.id}: {row.plan_summary}")
        if row.irreversible_warning:
            out.print(f"[bold red]{row.irreversible_warning}[/]")
        if not yes and not typer.confirm("Carry it out?", default=False):
            service.reject(row.id, approver=actor, reason="cancelled at the CLI prompt")
            raise fail("cancelled; nothing changed", code=1)
        service.approve(row.id, approver=actor, operator=True)
        row = service.execute(row.id, actor=actor)
    except ServiceError as exc:
        raise fail(str(exc), code=1) from None
    _report(row)


def undo(remediation: int = typer.Argument(..., help="Remediation id.")):
    """Undo a succeeded, reversible remediation (as operator); its Slack messages are updated."""
    from bot.services.common import ServiceError
    from bot.services.remediation import RemediationService

    settings = settings_or_exit()
    engine = engine_for(settings)
    try:
        _require(engine, remediation=remediation)
    finally:
        engine.dispose()
    campaigns = _slack_campaigns(settings)
    service = campaigns.remediations if campaigns else RemediationService(settings, engine=engine_for(settings))
    try:
        row = service.undo(remediation, actor=cli_actor(), operator=True)
    except ServiceError as exc:
        raise fail(str(exc), code=1) from None
    finally:
        if campaigns is not None:
            campaigns.refresh_remediation(remediation)
    out.print(f"#{row.id} {row.action}: undone")


def reconcile():
    """Settle now the remediations whose process is gone (a crash, a kill).

    Each ends finished or failed from live AWS state, never run twice; with Slack configured
    their messages are updated."""
    from bot.services.remediation import RemediationService

    settings = settings_or_exit()
    campaigns = _slack_campaigns(settings)
    if campaigns is not None:
        rows = campaigns.settle_interrupted(actor=cli_actor())
    else:
        rows = RemediationService(settings, engine=engine_for(settings)).reconcile(actor=cli_actor())
    for row in rows:
        out.print(f"#{row.id} {row.action}: {row.status}" + (f" — {row.error}" if row.error else ""))
    err.print(f"reconciled {plural(len(rows), 'remediation')}")
    if rows and campaigns is None:
        err.print("Slack messages were not updated: SLACK_BOT_TOKEN is not set")


def _require(engine, *, finding: str | None = None, remediation: int | None = None) -> None:
    """An id that names nothing is the operator's mistake (exit 2), said before anything runs."""
    from bot.db import queries
    from bot.db.engine import session_scope
    from bot.db.models import Remediation

    with session_scope(engine) as session:
        if finding is not None and queries.finding_by_ref(session=session, ref=finding) is None:
            raise fail(f"no finding {finding!r} (give its id or fingerprint; `steward findings` lists them)")
        if remediation is not None and session.get(Remediation, remediation) is None:
            raise fail(f"no remediation #{remediation}")


def _slack_campaigns(settings):
    """The campaign service when Slack is configured (to update messages), else None."""
    if not settings.slack_bot_token:
        return None
    engine_for(settings).dispose()  # these commands only read: never create the database
    from bot.run.runtime import build_runtime

    try:
        return build_runtime(settings, settle=False).steward.campaigns
    except RuntimeError as exc:
        raise fail(str(exc)) from None


def _report(row) -> None:
    if row.status == "succeeded":
        note = " (dry run: nothing changed in AWS)" if row.dry_run else ""
        ids = f" · AWS request ids: {', '.join(row.request_ids)}" if row.request_ids else ""
        out.print(f"[green]#{row.id} {row.action}: succeeded{note}[/]{ids}")
        return
    out.print(f"[red]#{row.id} {row.action}: {row.status}[/] — {row.error}")
    raise typer.Exit(1)
