"""The local Slack, under the name tests, benches and the demo import it by.

The fake itself is the package ``sandbox.slack`` (one module per section: transport, state,
Web API methods, views, files, response URLs, Socket Mode, the test API); this module
re-exports its public names and the sandbox workspace's ids and tokens.
"""

from __future__ import annotations

from bot.slack.methods import TIER_PER_MINUTE
from sandbox.slack import (
    MAX_MESSAGE_BLOCKS,
    MAX_TEXT_CHARS,
    MAX_VIEW_BLOCKS,
    MAX_VIEW_STACK,
    RESPONSE_URL_MAX_USES,
    RESPONSE_URL_METHOD,
    RESPONSE_URL_TTL_SECONDS,
    TRIGGER_TTL_SECONDS,
    UPLOAD_METHOD,
    Call,
    SlackFake,
)
from sandbox.workspace import (
    DEFAULT_APP_ID,
    DEFAULT_APP_TOKEN,
    DEFAULT_BOT_ID,
    DEFAULT_BOT_NAME,
    DEFAULT_BOT_USER_ID,
    DEFAULT_TEAM_DOMAIN,
    DEFAULT_TEAM_ID,
    DEFAULT_TEAM_NAME,
    DEFAULT_TOKEN,
)

__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_APP_TOKEN",
    "DEFAULT_BOT_ID",
    "DEFAULT_BOT_NAME",
    "DEFAULT_BOT_USER_ID",
    "DEFAULT_TEAM_DOMAIN",
    "DEFAULT_TEAM_ID",
    "DEFAULT_TEAM_NAME",
    "DEFAULT_TOKEN",
    "MAX_MESSAGE_BLOCKS",
    "MAX_TEXT_CHARS",
    "MAX_VIEW_BLOCKS",
    "MAX_VIEW_STACK",
    "RESPONSE_URL_MAX_USES",
    "RESPONSE_URL_METHOD",
    "RESPONSE_URL_TTL_SECONDS",
    "TIER_PER_MINUTE",
    "TRIGGER_TTL_SECONDS",
    "UPLOAD_METHOD",
    "Call",
    "SlackFake",
]
