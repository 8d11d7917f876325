"""`steward export --to securityhub`: stored findings into AWS Security Hub (ASFF)."""

from __future__ import annotations

from enum import StrEnum

import typer

from bot.cli.common import cli_actor, engine_for, err, fail, out, settings_or_exit


class Destination(StrEnum):
    securityhub = "securityhub"


def export(
    to: Destination = typer.Option(..., "--to", help="Where to send the findings: securityhub."),
    account: list[str] = typer.Option([], "--account", "-a", help="Only this account id (repeatable)."),
    region: str = typer.Option(None, "--region", help="Security Hub's region (default: AWS_REGION)."),
):
    """Send every account's open findings to Security Hub and archive those resolved since."""
    from bot.services.common import ServiceError
    from bot.services.exports import SecurityHubExport

    settings = settings_or_exit()
    for account_id in account:
        if not (account_id.isdigit() and len(account_id) == 12):
            raise fail(f"--account takes a 12-digit AWS account id, not {account_id!r}")
    service = SecurityHubExport(settings, engine=engine_for(settings))
    try:
        report = service.run(region=region, only_accounts=account, actor=cli_actor())
    except ServiceError as exc:
        raise fail(f"export failed: {exc}", code=1) from None
    for result in report.accounts:
        name = result.account_id if result.label in ("", result.account_id) else f"{result.account_id} ({result.label})"
        if result.error:
            err.print(f"[red]✗[/] {name}: {result.error}", soft_wrap=True, highlight=False)
            continue
        line = f"{name}: {_count(result.active, 'open finding')} sent, {_count(result.archived, 'resolved finding')} archived"
        out.print(f"[green]✓[/] {line} in Security Hub ({report.region})", soft_wrap=True, highlight=False)
        for refused in result.refused:
            err.print(f"  refused {refused.get('Id')}: {refused.get('ErrorCode')} {refused.get('ErrorMessage', '')}",
                      soft_wrap=True, highlight=False)
    if report.failed:
        raise fail(f"{_count(len(report.failed), 'account')} not fully exported", code=1)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
