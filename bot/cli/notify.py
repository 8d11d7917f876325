"""`steward notify`: one routing cycle (DMs, triage, reminders, escalations)."""

from __future__ import annotations

from bot.cli.common import engine_for, err, fail, out, settings_or_exit
from bot.core.report import plural

NOTIFY_WAIT_SECONDS = 600.0


def notify():
    """Route open findings to their owners; send the reminders and escalations that are due."""
    from bot.config import SettingsError
    from bot.run.runtime import build_runtime

    settings = settings_or_exit()
    try:
        settings.require("slack_bot_token")
    except SettingsError as exc:
        raise fail(str(exc)) from None
    engine_for(settings).dispose()  # an existing, migrated database: notify never creates one
    try:
        runtime = build_runtime(settings)
    except (SettingsError, RuntimeError) as exc:
        raise fail(str(exc)) from None
    from bot.run.leader import LockBusy, exclusive

    campaigns = runtime.steward.campaigns
    # One routing cycle at a time, with the worker's jobs too: a second `steward notify`
    # waits for the first and then finds nothing left to send.
    try:
        with exclusive(settings.effective_database_url, wait=NOTIFY_WAIT_SECONDS,
                       on_wait=lambda holder: err.print(
                           f"waiting for another routing cycle to finish ({holder or 'another process'})…")):
            expired = campaigns.expire_decisions()
            report = campaigns.run_cycle()
    except LockBusy as exc:
        raise fail(f"{exc}; nothing was sent", code=1) from None
    if settings.mode == "observe":
        out.print(f"STEWARD_MODE=observe: nothing sent ({plural(report.held, 'finding')} waiting to be routed); "
                  f"{plural(expired, 'snooze or exception', 'snoozes or exceptions')} ended")
        return
    out.print(
        f"{plural(report.dms, 'DM')} to owners covering {plural(report.notified, 'finding')}; {report.triaged:,} to "
        f"security triage; {report.resumed:,} resumed after an interruption; {plural(report.reminders, 'reminder')}; "
        f"{plural(report.escalations, 'escalation')}; "
        f"{plural(expired, 'snooze or exception', 'snoozes or exceptions')} ended"
    )
    if settings.mode == "triage":
        out.print("STEWARD_MODE=triage: everything went to the security channel, no owner was DMed")
    if report.outside_pilot:
        out.print(f"STEWARD_PILOT_OWNERS: {plural(report.outside_pilot, 'finding')} of owners outside the pilot "
                  "went to security triage")
    if report.unrouted:
        err.print(f"{plural(report.unrouted, 'finding')} {'has' if report.unrouted == 1 else 'have'} no owner and "
                  "STEWARD_SECURITY_CHANNEL is not set")
    for failure in report.failures:
        err.print(f"[red]failed:[/] {failure}")
    if report.failures:
        raise fail(f"{plural(len(report.failures), 'message')} could not be sent", code=1)
