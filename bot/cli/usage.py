"""`steward usage collect`: what every principal really used (IAM last-accessed data)."""

from __future__ import annotations

import typer

from bot.cli.common import (
    cli_actor,
    engine_for,
    err,
    fail,
    out,
    require_aws_credentials,
    settings_or_exit,
)

usage_app = typer.Typer(help="Least privilege from real usage (IAM last-accessed data).",
                        no_args_is_help=True)


@usage_app.command("collect")
def collect(
    account: list[str] = typer.Option([], "--account", "-a", help="Only this account id (repeatable)."),
):
    """Collect and store what every user and role holding a policy really used.

    One last-accessed job per principal, polled until answered; the `unused-permissions`
    check reads the answers at the next scan."""
    from bot.services.common import ServiceError
    from bot.services.usage import UsageService

    settings = settings_or_exit()
    for account_id in account:
        if not (account_id.isdigit() and len(account_id) == 12):
            raise fail(f"--account takes a 12-digit AWS account id, not {account_id!r}")
    require_aws_credentials()  # exit 2, and no database created for nothing
    service = UsageService(settings, engine=engine_for(settings, create=True))
    try:
        results = service.collect(only_accounts=account, actor=cli_actor())
    except ServiceError as exc:
        raise fail(f"usage collection failed: {exc}", code=1) from None
    bad = 0
    for result in results:
        name = result.account_id if result.label in ("", result.account_id) else f"{result.account_id} ({result.label})"
        if result.error:
            bad += 1
            err.print(f"[red]✗[/] {name}: {result.error}", soft_wrap=True, highlight=False)
            continue
        failed = f", {len(result.failed)} failed" if result.failed else ""
        out.print(f"[green]✓[/] {name}: usage of {result.principals} principals{failed} "
                  f"({result.api_calls} AWS calls, {result.seconds:.1f} s)", soft_wrap=True, highlight=False)
        for arn, reason in sorted(result.failed.items()):
            err.print(f"  {arn}: {reason}", soft_wrap=True, highlight=False)
    if bad:
        raise fail(f"{bad} account(s) not collected", code=1)
