"""Every Slack listener, registered in one visible place."""

from __future__ import annotations

from slack_bolt import App

from bot.listeners import actions, commands


def register(app: App, steward) -> None:
    commands.register(app, steward)
    actions.register(app, steward)
    app.error(_log_error)


def _log_error(error, body, logger) -> None:
    # Never echo the body: it can carry tokens and people's data.
    logger.exception("listener failed for a %s request", body.get("type") or body.get("command"), exc_info=error)
