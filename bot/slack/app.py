"""The Slack app: `create_app(settings, steward)` -> slack_bolt.App.

Built only by the processes that serve Slack (`serve`, `socket`), never at import time:
constructing a Bolt App calls `auth.test`.
"""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_sdk import WebClient

from bot.config import Settings
from bot.slack.client import make_web_client
from bot.slack.listeners import register

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    steward,
    *,
    client: WebClient | None = None,
    socket_mode: bool = False,
) -> App:
    settings.require("slack_bot_token", *(() if socket_mode else ("slack_signing_secret",)))
    client = client or make_web_client(settings)
    app = App(
        client=client,
        # Socket Mode envelopes are not signed: the WebSocket itself is authenticated.
        signing_secret=settings.slack_signing_secret or "unused-in-socket-mode",
        request_verification_enabled=not socket_mode,
        # Acks return as soon as their function does (no polling); slow work is in lazy
        # listeners, which Bolt runs on its thread pool after the ack.
        process_before_response=True,
        logger=logging.getLogger("slack_bolt"),
    )
    team_id, app_id = expected_workspace(settings, client)
    register(app, steward, team_id=team_id, app_id=app_id)
    return app


def expected_workspace(settings: Settings, client: WebClient) -> tuple[str | None, str | None]:
    """The workspace and app whose requests Steward accepts: STEWARD_SLACK_TEAM_ID and
    STEWARD_SLACK_APP_ID, else what ``auth.test`` says about the bot token (the team
    always; the app id when Slack includes it)."""
    team_id, app_id = settings.slack_team_id, settings.slack_app_id
    if not team_id or not app_id:
        identity = client.auth_test()
        team_id = team_id or identity.get("team_id")
        app_id = app_id or identity.get("app_id")
    if not app_id:
        log.info("STEWARD_SLACK_APP_ID is not set: requests are checked by workspace only")
    return team_id, app_id
