"""Every Slack listener, registered in one visible place."""

from __future__ import annotations

from slack_bolt import App

from bot.slack.listeners import actions, activity, commands, errors, guard, reviews


def register(app: App, steward, *, team_id: str | None = None, app_id: str | None = None) -> None:
    """Listeners behind the guard (wrong workspace or app, replays) and one error handler
    that answers the person whenever a listener fails (bot/slack/listeners/errors.py)."""
    app.middleware(guard.build(steward, team_id=team_id, app_id=app_id))
    commands.register(app, steward)
    actions.register(app, steward)
    reviews.register(app, steward)
    activity.register(app, steward)
    app.error(errors.error_handler(steward.engine))
