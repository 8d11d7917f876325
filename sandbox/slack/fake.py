"""`SlackFake`: the local Slack, put together from its sections (one module each):

* `transport`: the HTTP server, tokens and scopes, faults and rate budgets, the call record;
* `state`: the in-memory workspace and the rules every method shares;
* `web_api`: `auth.test`, `users.*`, `usergroups.users.list`, `conversations.*`, `chat.*`;
* `views`: `views.*`; `files`: the external upload flow; `response_url`: response URLs;
* `socket_mode`: `apps.connections.open` and the WebSocket;
* `testing`: the test API (set-up and inspection, called directly).

The table of Web API methods it answers is in `SlackFake.__init__`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sandbox.slack.files import Files
from sandbox.slack.response_url import ResponseUrls
from sandbox.slack.socket_mode import SocketConnection, SocketMode
from sandbox.slack.state import Workspace
from sandbox.slack.testing import Controls
from sandbox.slack.transport import Server, Transport
from sandbox.slack.views import Views
from sandbox.slack.web_api import WebApi
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


def manifest_scopes(manifest: Mapping[str, Any] | None) -> list[str]:
    """The bot scopes an app manifest requests (the project's own manifest by default)."""
    if manifest is None:
        # The code's own manifest (bot.slack.manifest never imports the sandbox: no cycle).
        from bot.slack.manifest import build

        manifest = build("http")
    return list(((manifest.get("oauth_config") or {}).get("scopes") or {}).get("bot") or [])


class SlackFake(Controls, SocketMode, ResponseUrls, Files, Views, WebApi, Workspace, Transport):
    """An in-memory Slack workspace served over HTTP.

    Args:
        token: the bot token the fake accepts (more with :meth:`add_token`).
        team_id, team_domain, team_name: the workspace identity (``auth.test``, permalinks).
        bot_user_id, bot_id, app_id, bot_name: the app's bot user.
        host, port: where to listen; port ``0`` picks a free port.
        clock: monotonic seconds used for rate budgets and response_url / trigger expiry;
            inject a fake clock to test those without sleeping.
        strict_triggers: when true, ``views.open``/``views.push`` only accept trigger ids
            issued by :meth:`trigger_id` and not older than 3 s (Slack's lifetime); by
            default any non-empty trigger id is accepted.
        app_token: the app-level token accepted by ``apps.connections.open`` (Socket Mode).
        manifest: the app manifest installed (a parsed ``manifest.yml``): its bot scopes are
            the token's, and every call is checked against them as Slack does. By default the
            project's own manifest, generated from the code (``bot.slack.manifest``).
        scopes: the granted bot scopes instead of the manifest's (a narrower install).
        rate_limits: when true every method is limited to its tier (``bot.slack.methods``),
            as Slack does; off by default so tests are not paced by real minutes.

    The server starts with :meth:`start` (or ``with SlackFake() as fake``) and the
    workspace holds only the bot user until you add users, channels and usergroups.
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        team_id: str = DEFAULT_TEAM_ID,
        team_domain: str = DEFAULT_TEAM_DOMAIN,
        team_name: str = DEFAULT_TEAM_NAME,
        bot_user_id: str = DEFAULT_BOT_USER_ID,
        bot_id: str = DEFAULT_BOT_ID,
        app_id: str = DEFAULT_APP_ID,
        bot_name: str = DEFAULT_BOT_NAME,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        strict_triggers: bool = False,
        app_token: str = DEFAULT_APP_TOKEN,
        manifest: Mapping[str, Any] | None = None,
        scopes: Iterable[str] | None = None,
        rate_limits: bool = False,
    ) -> None:
        self.token = token
        self.scopes = frozenset(scopes if scopes is not None else manifest_scopes(manifest))
        self.rate_limits = rate_limits
        self.app_token = app_token
        self.team_id = team_id
        self.team_domain = team_domain
        self.team_name = team_name
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.bot_name = bot_name
        self.strict_triggers = strict_triggers
        self._host = host
        self._port = port
        self._clock = clock
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._version = 0  # bumped on every change, for wait_for
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._sockets: list[SocketConnection] = []  # live Socket Mode connections, newest last
        self._ids = itertools.count(1)
        self._last_ts = 0
        self._methods: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "users.info": self._users_info,
            "users.profile.get": self._users_profile_get,
            "team.profile.get": self._team_profile_get,
            "users.lookupByEmail": self._users_lookup_by_email,
            "users.list": self._users_list,
            "conversations.open": self._conversations_open,
            "conversations.history": self._conversations_history,
            "conversations.info": self._conversations_info,
            "conversations.replies": self._conversations_replies,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.delete": self._chat_delete,
            "chat.getPermalink": self._chat_get_permalink,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.push": self._views_push,
            "views.publish": self._views_publish,
            "usergroups.users.list": self._usergroups_users_list,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "files.upload": self._files_upload_retired,
            "apps.connections.open": self._apps_connections_open,
        }
        self._init_workspace()
        self._init_activity()
