"""The Slack app: `create_app(settings, steward)` -> slack_bolt.App.

Built only by the processes that serve Slack (`serve`, `socket`), never at import time:
constructing a Bolt App calls `auth.test`.
"""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_sdk import WebClient

from bot.config import Settings
from bot.listeners import register
from bot.slack_client import make_web_client

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    steward,
    *,
    client: WebClient | None = None,
    socket_mode: bool = False,
) -> App:
    settings.require("slack_bot_token", *(() if socket_mode else ("slack_signing_secret",)))
    app = App(
        client=client or make_web_client(settings),
        # Socket Mode envelopes are not signed: the WebSocket itself is authenticated.
        signing_secret=settings.slack_signing_secret or "unused-in-socket-mode",
        request_verification_enabled=not socket_mode,
        # Acks return as soon as their function does (no polling); slow work is in lazy
        # listeners, which Bolt runs on its thread pool after the ack.
        process_before_response=True,
        logger=logging.getLogger("slack_bolt"),
    )
    register(app, steward)
    return app
