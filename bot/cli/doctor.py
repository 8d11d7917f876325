"""`steward doctor` (registered in bot/cli/main.py): check a deployment end to end.

Prints a checklist — ✓ passed, ✗ failed with the fix, · for information — and exits 0 only
when everything a running bot needs holds (1 otherwise, 2 for unreadable settings). Run it
as the last step of an install, and after every change to the Slack app, the AWS roles or
the activity queue. It changes nothing anywhere (bot/services/doctor.py says how).
"""

from __future__ import annotations

import typer
from rich.markup import escape

from bot.cli.common import out, settings_or_exit

MARKS = {True: "[green]✓[/]", False: "[bold red]✗[/]", None: "[dim]·[/]"}


def doctor():
    """Check Slack, AWS (usage data, restore and rotation roles), the activity queue, the database and the scheduler; print what to fix."""
    from bot.services import doctor as service
    from bot.slack.manifest import needed_scopes

    settings = settings_or_exit()
    checks = service.run(settings, needed_scopes=needed_scopes())
    section = None
    for check in checks:
        if check.section != section:
            section = check.section
            out.print(f"[bold]{section}[/]")
        out.print(f"  {MARKS[check.ok]} {escape(check.name)}: {escape(check.detail)}", soft_wrap=True)
        if check.ok is False and check.fix:
            out.print(f"      fix: {escape(check.fix)}", soft_wrap=True)
    failed = sum(1 for c in checks if c.ok is False)
    if failed:
        out.print(f"[bold red]{failed} of {len(checks)} checks failed[/]: Steward is not ready.")
        raise typer.Exit(1)
    out.print(f"[green]All {sum(1 for c in checks if c.ok)} checks passed[/]: Steward is ready.")
