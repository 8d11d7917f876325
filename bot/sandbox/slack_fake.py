"""A local fake of the Slack Web API, for tests and for ``steward demo``.

``SlackFake`` is a real HTTP server on ``127.0.0.1`` (ephemeral port) that answers the
Slack Web API methods IAM Steward uses, keeps an in-memory workspace, and records every
call so that tests can assert on what the bot did::

    with SlackFake() as fake:
        alice = fake.add_user(name="alice", email="alice@example.com")
        client = WebClient(base_url=fake.base_url, token=fake.token)
        client.chat_postMessage(channel=alice, text="hello")
        assert fake.dm(alice)[0]["text"] == "hello"

What it imitates (see the method docstrings for details):

* Web API answers: HTTP 200 with ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``
  using Slack's error names; JSON, form and multipart bodies; the token from an
  ``Authorization: Bearer`` header, or from a ``token`` parameter for form/query bodies
  (Slack ignores a token inside a JSON body, so does the fake).
* Message ids (``ts``) in Slack's ``"1732800000.000100"`` format, unique and increasing;
  threads (``thread_ts``, ``reply_count``, ``reply_broadcast``); ``block_id`` filled in on
  blocks that have none, as Slack does.
* Limits: 50 blocks per message (``invalid_blocks``), 100 blocks per view, text longer
  than 40,000 characters truncated (Slack's documented behaviour), 3 modals per stack.
* ``response_url`` hooks (:meth:`SlackFake.response_url`) with Slack's rules: ephemeral by
  default, ``replace_original`` / ``delete_original``, 5 uses within 30 minutes.
* Rate limiting: one-off 429s (:meth:`SlackFake.rate_limit`) and a per-method budget per
  minute (:meth:`SlackFake.set_rate`), both answering ``429`` with ``Retry-After``.
* Error injection (:meth:`SlackFake.fail`).

* Socket Mode: ``apps.connections.open`` (app-level ``xapp-`` token only) returns a
  ``ws://127.0.0.1:<port>/link/?ticket=...`` URL served by the same server; a client that
  connects gets Slack's ``hello``, answers pings, and receives the envelopes a test pushes
  (:meth:`SlackFake.push_slash_command`, :meth:`SlackFake.push_interactive`,
  :meth:`SlackFake.push_event`); its acks are recorded with their payloads
  (:meth:`SlackFake.socket_acks`, :meth:`SlackFake.wait_for_ack`).

Extra HTTP routes: ``POST /upload/v1/<file_id>`` (the ``files.getUploadURLExternal``
upload URL), ``POST /hooks/response/<id>`` (response URLs), ``GET /link/`` (the Socket
Mode WebSocket), ``GET /_fake/state`` (:meth:`SlackFake.snapshot` as JSON, for a demo page).

All public methods are thread-safe: the server threads and the test thread share one
re-entrant lock, and :meth:`SlackFake.wait_for` waits on a condition notified on every
change.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import email.parser
import email.policy
import hashlib
import itertools
import json
import math
import secrets
import socket
import socketserver
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.sandbox import block_limits
from bot.slack_methods import METHODS, TIER_PER_MINUTE

__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_APP_TOKEN",
    "DEFAULT_BOT_ID",
    "DEFAULT_BOT_USER_ID",
    "DEFAULT_TEAM_DOMAIN",
    "DEFAULT_TEAM_ID",
    "DEFAULT_TOKEN",
    "MAX_MESSAGE_BLOCKS",
    "MAX_TEXT_CHARS",
    "MAX_VIEW_BLOCKS",
    "MAX_VIEW_STACK",
    "RESPONSE_URL_MAX_USES",
    "RESPONSE_URL_TTL_SECONDS",
    "TIER_PER_MINUTE",
    "Call",
    "SlackFake",
]

DEFAULT_TOKEN = "xoxb-steward-sandbox-token"
DEFAULT_TEAM_ID = "T0STEWARD1"
DEFAULT_TEAM_DOMAIN = "steward-sandbox"
DEFAULT_TEAM_NAME = "IAM Steward Sandbox"
DEFAULT_BOT_USER_ID = "U0STEWARD1"
DEFAULT_BOT_ID = "B0STEWARD1"
DEFAULT_APP_ID = "A0STEWARD1"
#: The app-level token (``connections:write``) the fake accepts for ``apps.connections.open``.
DEFAULT_APP_TOKEN = "xapp-1-A0STEWARD1-1-steward-sandbox"
DEFAULT_BOT_NAME = "steward"

#: Slack truncates ``text`` longer than this (chat.postMessage "Truncating content").
MAX_TEXT_CHARS = 40_000
#: Block Kit: at most 50 blocks in a message, 100 in a modal or Home tab (more in block_limits).
MAX_MESSAGE_BLOCKS = block_limits.MAX_BLOCKS["message"]
MAX_VIEW_BLOCKS = block_limits.MAX_BLOCKS["modal"]
#: views.push: "After a modal is opened, you can push up to two additional views" (3 total).
MAX_VIEW_STACK = 3
#: response_url: usable up to 5 times within 30 minutes.
RESPONSE_URL_MAX_USES = 5
RESPONSE_URL_TTL_SECONDS = 30 * 60
#: trigger_id lifetime (only enforced with ``strict_triggers=True``).
TRIGGER_TTL_SECONDS = 3.0
#: Web API methods that take an app-level token (and refuse a bot or user token).
APP_TOKEN_METHODS = frozenset(name for name, facts in METHODS.items() if facts.app_token)
_WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

RESPONSE_URL_METHOD = "response_url"
"""Pseudo method name under which response_url posts are recorded (and can be faulted)."""
UPLOAD_METHOD = "files.upload_url"
"""Pseudo method name under which posts to a files.getUploadURLExternal URL are recorded."""

_T = TypeVar("_T")
_FILE_INTERNAL_KEYS = frozenset({"content", "uploaded", "completed"})


class _SlackError(Exception):
    """Raised inside an API handler to answer ``{"ok": false, "error": ...}``."""

    def __init__(self, error: str, *, messages: Iterable[str] = (), **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = dict(extra)
        msgs = list(messages)
        if msgs:
            self.extra["response_metadata"] = {"messages": msgs}


@dataclass(frozen=True)
class Call:
    """One recorded request to the fake.

    ``method`` is the Web API method (``"chat.postMessage"``), or ``"response_url"`` for a
    post to a response URL, or ``"files.upload_url"`` for an upload to a
    ``files.getUploadURLExternal`` URL. ``params`` are the parsed parameters without the
    token (JSON-valued form fields such as ``blocks`` stay as sent). ``response`` is the
    parsed JSON answer (or the plain-text answer of a response URL / upload URL).
    """

    method: str
    params: dict[str, Any]
    time: float
    status: int
    response: Any
    token: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when Slack would have considered the call successful."""
        if isinstance(self.response, dict):
            return self.status == 200 and bool(self.response.get("ok"))
        return self.status == 200


@dataclass
class _Fault:
    status: int
    error: str
    remaining: int | None
    retry_after: int | None = None


@dataclass
class _Budget:
    per_minute: int
    window: float
    per_channel: bool
    hits: dict[str, deque[float]] = field(default_factory=dict)


@dataclass
class _Hook:
    id: str
    channel: str
    user: str
    original_ts: str | None
    replace_by_default: bool
    created: float
    uses: int = 0


@dataclass
class _Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def _now_ts_micros() -> int:
    return time.time_ns() // 1_000


def _format_ts(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _ts_key(ts: str) -> tuple[int, int]:
    sec, _, frac = ts.partition(".")
    return int(sec), int(frac.ljust(6, "0")[:6] or 0)


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _encode_cursor(prefix: str, value: str | int) -> str:
    return base64.b64encode(f"{prefix}:{value}".encode()).decode()


def _decode_cursor(prefix: str, cursor: str) -> str:
    try:
        raw = base64.b64decode(cursor.encode(), validate=True).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise _SlackError("invalid_cursor") from exc
    head, sep, value = raw.partition(":")
    if not sep or head != prefix:
        raise _SlackError("invalid_cursor")
    return value


def _manifest_scopes(manifest: Mapping[str, Any] | None) -> list[str]:
    """The bot scopes an app manifest requests (the project's own manifest by default)."""
    if manifest is None:
        # The code's own manifest (bot.manifest never imports the sandbox: no cycle).
        from bot.manifest import build

        manifest = build("http")
    return list(((manifest.get("oauth_config") or {}).get("scopes") or {}).get("bot") or [])


def _missing(*names: str) -> _SlackError:
    return _SlackError(
        "invalid_arguments",
        messages=[f"[ERROR] missing required field: {n}" for n in names],
    )


class SlackFake:
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
            project's own manifest, generated from the code (``bot.manifest``).
        scopes: the granted bot scopes instead of the manifest's (a narrower install).
        rate_limits: when true every method is limited to its tier (``bot.slack_methods``),
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
        self.scopes = frozenset(scopes if scopes is not None else _manifest_scopes(manifest))
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
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sockets: list[_SocketConnection] = []  # live Socket Mode connections, newest last
        self._ids = itertools.count(1)
        self._last_ts = 0
        self._methods: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "users.info": self._users_info,
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

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SlackFake:
        """Start serving in a daemon thread; returns ``self``. Idempotent."""
        with self._lock:
            if self._server is not None:
                return self
            server = _Server((self._host, self._port), _Handler)
            server.fake = self
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"slack-fake:{server.server_address[1]}",
                daemon=True,
            )
            self._thread.start()
            return self

    def stop(self) -> None:
        """Stop the server and close its socket. Idempotent; the state is kept."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        for connection in self._live_sockets():
            connection.abort()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> SlackFake:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SlackFake is not started")
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>/`` (with the trailing slash)."""
        return f"http://{self._host}:{self.port}/"

    @property
    def base_url(self) -> str:
        """The Web API base URL, ending with ``/api/``: ``WebClient(base_url=...)``
        joins it with the method name (``urljoin``), so the trailing slash matters."""
        return f"{self.root_url}api/"

    # ------------------------------------------------------------------ workspace setup

    def _init_workspace(self) -> None:
        self._tokens: dict[str, str] = {self.token: self.bot_user_id}
        self._granted: frozenset[str] = frozenset()  # the scopes of the call being answered
        self._token_scopes: dict[str, frozenset[str]] = {}  # tokens granted other scopes
        self._revoked: set[str] = set()  # tokens of an uninstalled app
        self._app_tokens: set[str] = {self.app_token}
        self._users: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, dict[str, Any]] = {}
        self._ims: dict[str, str] = {}  # user id -> IM channel id
        self._usergroups: dict[str, dict[str, Any]] = {}
        self._add_user_locked(
            self.bot_user_id,
            name=self.bot_name,
            real_name=self.bot_name,
            email=None,
            is_bot=True,
            tz="UTC",
            deleted=False,
            is_admin=False,
        )

    def _init_activity(self) -> None:
        self._calls: list[Call] = []
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._ephemerals: list[dict[str, Any]] = []
        self._views: dict[str, dict[str, Any]] = {}
        self._view_owner: dict[str, str | None] = {}
        self._modal_stacks: dict[str | None, list[str]] = {}
        self._homes: dict[str, str] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self._hooks: dict[str, _Hook] = {}
        self._triggers: dict[str, tuple[str, float]] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._budgets: dict[str, _Budget] = {}
        self._tickets: dict[str, float] = {}  # unused Socket Mode tickets -> issued at
        self._envelopes: list[dict[str, Any]] = []  # pushed, in order
        self._acks: list[dict[str, Any]] = []  # received, in order
        self._socket_messages: list[Any] = []  # other text frames from clients

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}0{next(self._ids):08X}"

    def add_app_token(self, token: str) -> None:
        """Accept another app-level token for ``apps.connections.open``."""
        with self._lock:
            self._app_tokens.add(token)

    def add_token(self, token: str, user_id: str, scopes: Iterable[str] | None = None) -> None:
        """Accept another token, acting as ``user_id`` (for example a user token), granted
        ``scopes`` (default: the app's)."""
        with self._lock:
            if user_id not in self._users:
                raise KeyError(f"unknown user {user_id}")
            self._tokens[token] = user_id
            if scopes is not None:
                self._token_scopes[token] = frozenset(scopes)

    def set_scopes(self, scopes: Iterable[str], token: str | None = None) -> None:
        """Grant ``token`` (default: the bot token) exactly ``scopes``, as a reinstall would."""
        with self._lock:
            if token is None:
                self.scopes = frozenset(scopes)
            else:
                self._token_scopes[token] = frozenset(scopes)

    def granted_scopes(self, token: str | None = None) -> frozenset[str]:
        with self._lock:
            return self._token_scopes.get(token or self.token, self.scopes)

    def revoke_token(self, token: str | None = None) -> None:
        """Revoke a token (the app was uninstalled): its calls answer ``account_inactive``."""
        with self._lock:
            self._revoked.add(token or self.token)

    def add_user(
        self,
        user_id: str | None = None,
        *,
        name: str,
        real_name: str | None = None,
        email: str | None = None,
        is_bot: bool = False,
        tz: str = "Europe/London",
        deleted: bool = False,
        is_admin: bool = False,
    ) -> str:
        """Add (or replace) a user; returns its id (``U...``, generated if not given)."""
        with self._changed:
            uid = user_id or self._new_id("U")
            self._add_user_locked(
                uid,
                name=name,
                real_name=real_name if real_name is not None else name,
                email=email,
                is_bot=is_bot,
                tz=tz,
                deleted=deleted,
                is_admin=is_admin,
            )
            self._notify()
            return uid

    def _add_user_locked(
        self,
        uid: str,
        *,
        name: str,
        real_name: str,
        email: str | None,
        is_bot: bool,
        tz: str,
        deleted: bool,
        is_admin: bool,
    ) -> None:
        try:
            offset = datetime.now(ZoneInfo(tz)).utcoffset()
            tz_offset = int(offset.total_seconds()) if offset is not None else 0
            tz_label = datetime.now(ZoneInfo(tz)).tzname() or tz
        except (ZoneInfoNotFoundError, ValueError):
            tz_offset, tz_label = 0, tz
        profile: dict[str, Any] = {
            "real_name": real_name,
            "real_name_normalized": real_name,
            "display_name": name,
            "display_name_normalized": name,
            "team": self.team_id,
        }
        if email:
            profile["email"] = email
        if is_bot and uid == self.bot_user_id:
            profile["bot_id"] = self.bot_id
            profile["api_app_id"] = self.app_id
        self._users[uid] = {
            "id": uid,
            "team_id": self.team_id,
            "name": name,
            "deleted": deleted,
            "real_name": real_name,
            "tz": tz,
            "tz_label": tz_label,
            "tz_offset": tz_offset,
            "is_admin": is_admin,
            "is_owner": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": int(time.time()),
            "profile": profile,
        }

    def set_user_deleted(self, user_id: str, deleted: bool = True) -> None:
        """Deactivate (or reactivate) a user, as an admin would."""
        with self._changed:
            self._user(user_id)["deleted"] = deleted
            self._notify()

    def add_channel(
        self,
        name: str,
        *,
        channel_id: str | None = None,
        members: Iterable[str] | None = None,
        is_private: bool = False,
        bot_member: bool = True,
        is_archived: bool = False,
    ) -> str:
        """Add a channel named ``name`` (without ``#``); returns its id (``C...``, or
        ``G...`` when private).

        ``members=None`` means every user is a member. The bot is a member unless
        ``bot_member=False`` (then posting there answers ``not_in_channel``). An archived
        channel answers ``is_archived`` to posts.
        """
        with self._changed:
            cid = channel_id or self._new_id("G" if is_private else "C")
            self._channels[cid] = {
                "id": cid,
                "name": name.lstrip("#"),
                "is_channel": not is_private,
                "is_group": is_private,
                "is_im": False,
                "is_mpim": False,
                "is_private": is_private,
                "is_archived": is_archived,
                "created": int(time.time()),
                "members": self._channel_members(members, bot_member),
            }
            self._messages.setdefault(cid, [])
            self._notify()
            return cid

    def _channel_members(self, members: Iterable[str] | None, bot_member: bool) -> set[str] | None:
        if members is None and bot_member:
            return None  # everyone, including users added later
        found = set(self._users if members is None else members)
        if bot_member:
            found.add(self.bot_user_id)
        else:
            found.discard(self.bot_user_id)
        return found

    def archive_channel(self, channel: str, archived: bool = True) -> None:
        """Archive (or unarchive) a channel, as a member of the workspace would."""
        with self._changed:
            self._channels[self._known_channel(channel)]["is_archived"] = archived
            self._notify()

    def set_bot_member(self, channel: str, member: bool = True) -> None:
        """Invite the bot to a channel (``/invite @app``) or remove it."""
        with self._changed:
            ch = self._channels[self._known_channel(channel)]
            if ch["members"] is None:
                ch["members"] = set(self._users)
            (ch["members"].add if member else ch["members"].discard)(self.bot_user_id)
            self._notify()

    def add_usergroup(
        self,
        handle: str,
        members: Iterable[str] = (),
        *,
        usergroup_id: str | None = None,
        name: str | None = None,
        disabled: bool = False,
    ) -> str:
        """Add a usergroup (``@handle``); returns its id (``S...``)."""
        with self._changed:
            sid = usergroup_id or self._new_id("S")
            self._usergroups[sid] = {
                "id": sid,
                "team_id": self.team_id,
                "handle": handle.lstrip("@"),
                "name": name or handle.lstrip("@"),
                "is_usergroup": True,
                "date_delete": int(time.time()) if disabled else 0,
                "users": list(dict.fromkeys(members)),
            }
            self._notify()
            return sid

    def set_usergroup_members(self, usergroup_id: str, members: Iterable[str]) -> None:
        with self._changed:
            self._usergroups[usergroup_id]["users"] = list(dict.fromkeys(members))
            self._notify()

    def open_im(self, user_id: str) -> str:
        """The id of the bot's IM channel with ``user_id`` (created if needed)."""
        with self._changed:
            self._user(user_id)
            cid = self._open_im_locked(user_id)
            self._notify()
            return cid

    def _open_im_locked(self, user_id: str) -> str:
        cid = self._ims.get(user_id)
        if cid is None:
            cid = self._new_id("D")
            self._ims[user_id] = cid
            self._channels[cid] = {
                "id": cid,
                "is_channel": False,
                "is_group": False,
                "is_im": True,
                "is_mpim": False,
                "is_private": True,
                "user": user_id,
                "created": int(time.time()),
                "members": {user_id, self.bot_user_id},
            }
            self._messages.setdefault(cid, [])
        return cid

    def trigger_id(self, user_id: str) -> str:
        """Issue a trigger id for ``user_id``, as Slack puts in an interaction payload.

        ``views.open``/``views.push`` with it attribute the modal to that user.
        """
        with self._lock:
            self._user(user_id)
            trigger = f"{next(self._ids)}.{int(time.time())}.{secrets.token_hex(16)}"
            self._triggers[trigger] = (user_id, self._clock())
            return trigger

    def response_url(
        self,
        channel: str,
        user: str,
        message_ts: str | None = None,
        *,
        replace_original_by_default: bool | None = None,
    ) -> str:
        """A response URL on the fake for an interaction by ``user`` in ``channel``.

        Without ``message_ts`` it behaves like a slash command's URL: posts are new
        messages (ephemeral unless ``response_type`` is ``in_channel``) and
        ``replace_original`` replaces the previous post made through the URL.
        With ``message_ts`` (a channel message or an ephemeral message) it behaves like an
        interactive message's URL: that message is the original, and a post without
        ``replace_original`` replaces it unless ``replace_original`` is false (Slack's
        behaviour for ``block_actions``; override with ``replace_original_by_default``).
        """
        with self._lock:
            channel_id = self._known_channel(channel)
            hook = _Hook(
                id=secrets.token_urlsafe(18),
                channel=channel_id,
                user=user,
                original_ts=message_ts,
                replace_by_default=(
                    message_ts is not None
                    if replace_original_by_default is None
                    else replace_original_by_default
                ),
                created=self._clock(),
            )
            self._hooks[hook.id] = hook
        return f"{self.root_url}hooks/response/{hook.id}"

    def post_as_user(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str:
        """Put a message from a human user in a channel (not recorded as a call)."""
        with self._changed:
            cid = self._known_channel(channel)
            self._user(user)
            msg = self._store_message(
                cid, user, text=text, blocks=blocks, attachments=None, thread_ts=thread_ts
            )
            self._notify()
            return str(msg["ts"])

    # ------------------------------------------------------------------ Socket Mode

    def socket_url(self) -> str:
        """Issue a single-use Socket Mode URL, as ``apps.connections.open`` does."""
        with self._lock:
            ticket = secrets.token_urlsafe(18)
            self._tickets[ticket] = self._clock()
            return f"ws://{self._host}:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    def socket_connections(self) -> int:
        """How many Socket Mode clients are connected now."""
        return len(self._live_sockets())

    def wait_for_socket(self, timeout: float = 5.0, *, count: int = 1) -> int:
        """Wait until at least ``count`` Socket Mode clients are connected."""
        return self.wait_for(
            lambda: self.socket_connections() >= count and self.socket_connections(), timeout
        )

    def push_envelope(
        self,
        type: str,
        payload: dict[str, Any],
        *,
        envelope_id: str | None = None,
        accepts_response_payload: bool | None = None,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
    ) -> str:
        """Send one envelope to the newest connected client; returns its ``envelope_id``.

        ``type`` is ``slash_commands``, ``interactive`` or ``events_api``. Like Slack,
        ``events_api`` envelopes carry ``retry_attempt``/``retry_reason`` and do not accept
        a response payload; the others do. Raises ``RuntimeError`` when no client is
        connected.
        """
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id or str(uuid.uuid4()),
            "payload": payload,
            "type": type,
            "accepts_response_payload": (
                type != "events_api"
                if accepts_response_payload is None
                else accepts_response_payload
            ),
        }
        if type == "events_api":
            envelope["retry_attempt"] = retry_attempt or 0
            envelope["retry_reason"] = retry_reason or ""
        live = self._live_sockets()
        if not live:
            raise RuntimeError("no Socket Mode client is connected")
        with self._changed:
            self._envelopes.append(copy.deepcopy(envelope))
            self._notify()
        live[-1].send_json(envelope)
        return str(envelope["envelope_id"])

    def push_slash_command(
        self,
        text: str = "",
        *,
        user_id: str,
        command: str = "/iam",
        channel_id: str | None = None,
    ) -> str:
        """Push a ``slash_commands`` envelope as if ``user_id`` typed ``command text``.

        The channel defaults to the user's DM with the bot; the payload's
        ``response_url`` is a hook on this fake (see :meth:`response_url`). Returns the
        ``envelope_id``.
        """
        from bot.sandbox.signing import slash_command_body

        with self._lock:
            self._user(user_id)
            channel = channel_id or self._open_im_locked(user_id)
        hook = self.response_url(channel, user_id)
        body = slash_command_body(
            command,
            text=text,
            user_id=user_id,
            user_name=self._users[user_id]["name"],
            team_id=self.team_id,
            team_domain=self.team_domain,
            channel_id=channel,
            response_url=hook,
            trigger_id=self.trigger_id(user_id),
            api_app_id=self.app_id,
        )
        payload = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        return self.push_envelope("slash_commands", payload)

    def push_interactive(self, payload: dict[str, Any] | bytes) -> str:
        """Push an ``interactive`` envelope: a payload dict, or a form body built by
        ``bot.sandbox.signing.block_actions_body`` / ``view_submission_body``."""
        if isinstance(payload, bytes):
            payload = json.loads(parse_qs(payload.decode("utf-8"))["payload"][0])
        return self.push_envelope("interactive", dict(payload))

    def push_event(self, event: dict[str, Any] | bytes, **kwargs: Any) -> str:
        """Push an ``events_api`` envelope for an event (``{"type": "app_home_opened",
        ...}``) wrapped like ``bot.sandbox.signing.event_callback_body``, or for such a
        body as bytes. ``kwargs`` go to :meth:`push_envelope`."""
        from bot.sandbox.signing import event_callback_body

        body = (
            event
            if isinstance(event, bytes)
            else event_callback_body(event, team_id=self.team_id, api_app_id=self.app_id)
        )
        return self.push_envelope("events_api", json.loads(body), **kwargs)

    def envelopes(self) -> list[dict[str, Any]]:
        """Envelopes pushed so far, oldest first."""
        with self._lock:
            return copy.deepcopy(self._envelopes)

    def socket_acks(self, envelope_id: str | None = None) -> list[dict[str, Any]]:
        """Acks received, oldest first: ``{"envelope_id", "payload" (if any), "time"}``."""
        with self._lock:
            return copy.deepcopy(
                [a for a in self._acks if envelope_id is None or a["envelope_id"] == envelope_id]
            )

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the ack of ``envelope_id`` and return it."""
        return self.wait_for(lambda: (self.socket_acks(envelope_id) or [None])[0], timeout)

    def socket_messages(self) -> list[Any]:
        """Text frames from clients that were not acks (parsed JSON when possible)."""
        with self._lock:
            return copy.deepcopy(self._socket_messages)

    def disconnect_sockets(self, reason: str = "refresh_requested") -> int:
        """Tell every client to reconnect (Slack's ``disconnect`` message), then close
        their sockets; returns how many there were. Clients call
        ``apps.connections.open`` again for a new URL."""
        live = self._live_sockets()
        for connection in live:
            connection.send_json(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
            )
            connection.close()
        return len(live)

    def _live_sockets(self) -> list[_SocketConnection]:
        with self._lock:
            self._sockets = [c for c in self._sockets if c.open]
            return list(self._sockets)

    def _take_ticket(self, ticket: str) -> bool:
        with self._lock:
            return self._tickets.pop(ticket, None) is not None

    def _socket_opened(self, connection: _SocketConnection) -> None:
        with self._changed:
            self._sockets.append(connection)
            self._notify()
        connection.send_json(
            {
                "type": "hello",
                "num_connections": len(self._live_sockets()),
                "debug_info": {
                    "host": "applink-fake",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
        )

    def _socket_closed(self, connection: _SocketConnection) -> None:
        with self._changed:
            if connection in self._sockets:
                self._sockets.remove(connection)
            self._notify()

    def _socket_text(self, text: str) -> None:
        try:
            message: Any = json.loads(text)
        except ValueError:
            message = text
        with self._changed:
            if isinstance(message, dict) and "envelope_id" in message:
                ack = {"envelope_id": message["envelope_id"], "time": time.time()}
                if "payload" in message:
                    ack["payload"] = message["payload"]
                self._acks.append(ack)
            else:
                self._socket_messages.append(message)
            self._notify()

    # ------------------------------------------------------------------ fault injection

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with HTTP 429 + ``Retry-After``."""
        self._add_fault(
            method,
            _Fault(status=429, error="ratelimited", remaining=times, retry_after=retry_after),
        )

    def fail(
        self, method: str, error: str = "internal_error", status: int = 200, times: int | None = 1
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (``None``: all, until
        :meth:`clear_faults`) with ``{"ok": false, "error": error}`` and HTTP ``status``.

        ``method`` may also be ``"response_url"`` or ``"files.upload_url"``.
        """
        self._add_fault(method, _Fault(status=status, error=error, remaining=times))

    def _add_fault(self, method: str, fault: _Fault) -> None:
        if fault.remaining is not None and fault.remaining < 1:
            return
        with self._lock:
            self._faults.setdefault(method, deque()).append(fault)

    def clear_faults(self, method: str | None = None) -> None:
        with self._lock:
            if method is None:
                self._faults.clear()
            else:
                self._faults.pop(method, None)

    def set_rate(
        self,
        method: str,
        per_minute: int | None = None,
        *,
        tier: int | None = None,
        per_channel: bool = False,
        window: float = 60.0,
    ) -> None:
        """Simulate a rate budget for ``method``: at most ``per_minute`` calls in any
        sliding ``window`` seconds; calls over it answer 429 with ``Retry-After`` set to
        the seconds until a slot frees. ``tier=1..4`` uses Slack's tier minimum
        (1, 20, 50, 100 per minute). ``per_channel=True`` keeps one budget per
        ``channel`` parameter (``chat.postMessage`` is limited per channel, about one
        message per second: ``set_rate("chat.postMessage", 60, per_channel=True)``).
        ``per_minute=None`` and ``tier=None`` remove the budget. Rejected calls do not
        use the budget.
        """
        if tier is not None:
            per_minute = TIER_PER_MINUTE[tier]
        with self._lock:
            if per_minute is None:
                self._budgets.pop(method, None)
            else:
                if per_minute < 1:
                    raise ValueError("per_minute must be >= 1")
                self._budgets[method] = _Budget(per_minute, window, per_channel)

    # ------------------------------------------------------------------ queries

    def calls(self, method: str | None = None) -> list[Call]:
        """Recorded calls in order, optionally of one method."""
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def last_call(self, method: str | None = None) -> Call | None:
        found = self.calls(method)
        return found[-1] if found else None

    def messages(self, channel: str, *, replies: bool = True) -> list[dict[str, Any]]:
        """Messages of a channel (id, name, ``#name``, or a user id for the bot's IM with
        that user), oldest first.

        With ``replies=False`` only what ``conversations.history`` shows (top-level
        messages, thread parents and broadcast replies).
        """
        with self._lock:
            cid = self._resolve_channel(channel, open_im=False, missing_ok=True)
            if cid is None:
                return []
            msgs = self._messages.get(cid, [])
            if not replies:
                msgs = [m for m in msgs if self._is_history_visible(m)]
            return copy.deepcopy(msgs)

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The parent and the replies of a thread, oldest first."""
        with self._lock:
            cid = self._resolve_channel(channel, open_im=False, missing_ok=True)
            if cid is None:
                return []
            return copy.deepcopy(
                [
                    m
                    for m in self._messages.get(cid, [])
                    if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts
                ]
            )

    def dm(self, user_id: str) -> list[dict[str, Any]]:
        """Messages of the bot's IM with ``user_id`` (empty if never opened)."""
        with self._lock:
            cid = self._ims.get(user_id)
            return copy.deepcopy(self._messages.get(cid, [])) if cid else []

    def im_channel(self, user_id: str) -> str | None:
        """The IM channel id with ``user_id`` if one was opened."""
        with self._lock:
            return self._ims.get(user_id)

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self._lock:
            cid = self._resolve_channel(channel, open_im=False, missing_ok=True)
            found = self._find_message(cid, ts) if cid else None
            return copy.deepcopy(found)

    def ephemerals(self, user: str, channel: str | None = None) -> list[dict[str, Any]]:
        """Ephemeral messages shown to ``user`` (each has ``channel``, ``user``, ``ts``)."""
        with self._lock:
            cid = (
                self._resolve_channel(channel, open_im=False, missing_ok=True)
                if channel is not None
                else None
            )
            return copy.deepcopy(
                [
                    e
                    for e in self._ephemerals
                    if e["user"] == user and (channel is None or e["channel"] == cid)
                ]
            )

    def home(self, user_id: str) -> dict[str, Any] | None:
        """The Home tab view last published for ``user_id``."""
        with self._lock:
            vid = self._homes.get(user_id)
            return copy.deepcopy(self._views[vid]) if vid else None

    def modals(self, user_id: str | None) -> list[dict[str, Any]]:
        """The modal stack open for ``user_id``, bottom first (``None``: modals opened
        with a trigger id the fake did not issue)."""
        with self._lock:
            return copy.deepcopy([self._views[v] for v in self._modal_stacks.get(user_id, [])])

    def view(self, view_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._views.get(view_id)
            return copy.deepcopy(found)

    def files(self) -> list[dict[str, Any]]:
        """Uploaded files, each with its ``content`` bytes."""
        with self._lock:
            return [copy.deepcopy(f) for f in self._files.values()]

    def users(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._users.values()))

    def wait_for(
        self, predicate: Callable[[], _T], timeout: float = 5.0, *, interval: float = 0.01
    ) -> _T:
        """Wait until ``predicate()`` returns something truthy and return it.

        The predicate is called now and again after changes to the fake, at most once per
        ``interval`` seconds, outside the fake's lock (so it may use the query helpers or
        even call the fake over HTTP). Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = self._version
            started = time.monotonic()
            result = predicate()
            if result:
                return result
            with self._changed:
                while self._version == seen:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(f"condition not met within {timeout} s")
                    self._changed.wait(remaining)
            pause = started + interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    def reset(self, *, workspace: bool = False) -> None:
        """Forget recorded calls, messages, ephemerals, views, files, response URLs,
        faults and rate budgets. With ``workspace=True`` also users (except the bot),
        channels, IMs, usergroups and extra tokens."""
        with self._changed:
            if workspace:
                self._init_workspace()
            self._init_activity()
            for cid in self._channels:
                self._messages[cid] = []
            self._notify()

    def snapshot(self) -> dict[str, Any]:
        """A JSON-serialisable picture of the workspace and its activity."""
        with self._lock:
            channels = []
            for ch in self._channels.values():
                entry = {k: v for k, v in ch.items() if k != "members"}
                if ch["members"] is not None:
                    entry["members"] = sorted(ch["members"])
                entry["messages"] = copy.deepcopy(self._messages.get(ch["id"], []))
                channels.append(entry)
            return {
                "team": {"id": self.team_id, "domain": self.team_domain, "name": self.team_name},
                "bot": {"user_id": self.bot_user_id, "bot_id": self.bot_id, "app_id": self.app_id},
                "users": copy.deepcopy(list(self._users.values())),
                "usergroups": copy.deepcopy(list(self._usergroups.values())),
                "channels": channels,
                "ephemerals": copy.deepcopy(self._ephemerals),
                "homes": {u: copy.deepcopy(self._views[v]) for u, v in self._homes.items()},
                "modals": {
                    (u or ""): [copy.deepcopy(self._views[v]) for v in stack]
                    for u, stack in self._modal_stacks.items()
                },
                "files": [
                    {k: v for k, v in f.items() if k != "content"} for f in self._files.values()
                ],
                "calls": [
                    {"method": c.method, "time": c.time, "status": c.status, "ok": c.ok}
                    for c in self._calls
                ],
                "socket_mode": {
                    "connections": sum(1 for c in self._sockets if c.open),
                    "envelopes": copy.deepcopy(self._envelopes),
                    "acks": copy.deepcopy(self._acks),
                },
            }

    # ------------------------------------------------------------------ request entry points

    def _notify(self) -> None:
        """Wake up wait_for(); call with the lock held."""
        self._version += 1
        self._changed.notify_all()

    def _record(
        self,
        method: str,
        params: dict[str, Any],
        reply: _Reply,
        token: str | None,
        headers: dict[str, str],
    ) -> None:
        self._calls.append(
            Call(
                method=method,
                params=copy.deepcopy(params),
                time=time.time(),
                status=reply.status,
                response=copy.deepcopy(reply.body),
                token=token,
                headers=dict(headers),
            )
        )
        self._notify()

    def _take_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.popleft()
        return fault

    @staticmethod
    def _fault_reply(fault: _Fault) -> _Reply:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        return _Reply(fault.status, {"ok": False, "error": fault.error}, headers)

    def _check_budget(self, method: str, params: dict[str, Any]) -> _Reply | None:
        budget = self._budgets.get(method)
        if budget is None and self.rate_limits and method in METHODS:
            facts = METHODS[method]
            budget = self._budgets[method] = _Budget(facts.limit_per_minute, 60.0, facts.per_channel)
        if budget is None:
            return None
        key = str(params.get("channel", "")) if budget.per_channel else ""
        hits = budget.hits.setdefault(key, deque())
        now = self._clock()
        while hits and hits[0] <= now - budget.window:
            hits.popleft()
        if len(hits) >= budget.per_minute:
            retry_after = max(1, math.ceil(hits[0] + budget.window - now))
            return _Reply(
                429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}
            )
        hits.append(now)
        return None

    def handle_api(
        self,
        method: str,
        params: dict[str, Any],
        token: str | None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Answer one Web API call without HTTP: ``(status, body, headers)``.

        The HTTP server calls this; it is public so a demo can drive the fake in-process.
        """
        with self._changed:
            reply = self._dispatch(method, params, token)
            self._record(method, params, reply, token, headers or {})
            return reply.status, reply.body, reply.headers

    def _dispatch(self, method: str, params: dict[str, Any], token: str | None) -> _Reply:
        handler = self._methods.get(method)
        if handler is None:
            return _Reply(404, {"ok": False, "error": "unknown_method", "req_method": method})
        if not token:
            return _Reply(200, {"ok": False, "error": "not_authed"})
        actor = self._tokens.get(token)
        is_app_token = token in self._app_tokens
        if actor is None and not is_app_token:
            return _Reply(200, {"ok": False, "error": "invalid_auth"})
        if (method in APP_TOKEN_METHODS) != is_app_token:
            # Slack: app-level tokens only work with apps.connections.*, and those need one.
            return _Reply(200, {"ok": False, "error": "not_allowed_token_type"})
        if token in self._revoked:
            # Slack: a bot token of an uninstalled app (or a deactivated bot) is inactive.
            return _Reply(200, {"ok": False, "error": "account_inactive"})
        actor = actor or self.app_id
        granted = self._token_scopes.get(token, self.scopes)
        headers = {} if is_app_token else {"x-oauth-scopes": ",".join(sorted(granted))}
        reply = self._authorised_dispatch(method, handler, params, token, actor, granted, is_app_token)
        reply.headers = {**headers, **reply.headers}
        return reply

    def _authorised_dispatch(
        self,
        method: str,
        handler: Callable[[dict[str, Any], str], dict[str, Any]],
        params: dict[str, Any],
        token: str,
        actor: str,
        granted: frozenset[str],
        is_app_token: bool,
    ) -> _Reply:
        fault = self._take_fault(method)
        if fault is not None:
            return self._fault_reply(fault)
        if not is_app_token:
            refusal = self._scope_refusal(method, params, granted)
            if refusal is not None:
                return refusal
        limited = self._check_budget(method, params)
        if limited is not None:
            return limited
        self._granted = granted  # for handlers whose rules depend on scopes (chat:write.public)
        try:
            body = handler(params, actor)
        except _SlackError as exc:
            return _Reply(200, {"ok": False, "error": exc.error, **exc.extra})
        return _Reply(200, {"ok": True, **body})

    def _conversation_kind(self, method: str, params: dict[str, Any]) -> str | None:
        """The kind of conversation a call acts on (for per-kind scopes), if known."""
        if method == "conversations.open" and not params.get("channel"):
            users = params.get("users")
            count = len(users) if isinstance(users, list) else len(
                [u for u in str(users or "").split(",") if u.strip()])
            return "im" if count <= 1 else "mpim"
        cid = self._resolve_channel(str(params.get("channel") or ""), open_im=False, missing_ok=True)
        if cid is None:
            return None
        ch = self._channels[cid]
        if ch["is_im"]:
            return "im"
        if ch["is_mpim"]:
            return "mpim"
        return "private" if ch["is_private"] else "public"

    def _scope_refusal(self, method: str, params: dict[str, Any], granted: frozenset[str]) -> _Reply | None:
        facts = METHODS.get(method)
        if facts is None:
            return None
        needed = facts.needed(self._conversation_kind(method, params) if facts.by_kind else None)
        if not needed or granted.intersection(needed):
            return None
        return _Reply(200, {
            "ok": False,
            "error": "missing_scope",
            "needed": ",".join(needed),
            "provided": ",".join(sorted(granted)),
        }, {"x-accepted-oauth-scopes": ",".join(needed)})

    def handle_response_url(self, hook_id: str, raw: bytes) -> tuple[int, str]:
        """Answer a POST to a response URL: ``(status, text)`` like Slack (``ok``)."""
        with self._changed:
            try:
                payload = json.loads(raw.decode("utf-8") or "null")
            except (UnicodeDecodeError, ValueError):
                payload = None
            params = payload if isinstance(payload, dict) else {"_raw": raw.decode("latin-1")}
            fault = self._take_fault(RESPONSE_URL_METHOD)
            if fault is not None:
                reply = _Reply(fault.status, fault.error, {})
                if fault.retry_after is not None:
                    reply.headers["Retry-After"] = str(fault.retry_after)
            else:
                status, text = self._response_url_post(hook_id, payload)
                reply = _Reply(status, text)
            self._record(RESPONSE_URL_METHOD, {**params, "_hook": hook_id}, reply, None, {})
            return reply.status, str(reply.body)

    def handle_upload(self, file_id: str, data: bytes) -> tuple[int, str]:
        """Answer a POST to an upload URL: ``(200, "OK - <bytes>")`` like Slack."""
        with self._changed:
            fault = self._take_fault(UPLOAD_METHOD)
            if fault is not None:
                reply = _Reply(fault.status, fault.error)
            else:
                record = self._files.get(file_id)
                if record is None:
                    reply = _Reply(404, "file_not_found")
                else:
                    record["content"] = data
                    record["size"] = len(data)
                    record["uploaded"] = True
                    reply = _Reply(200, f"OK - {len(data)}")
            self._record(UPLOAD_METHOD, {"file_id": file_id, "size": len(data)}, reply, None, {})
            return reply.status, str(reply.body)

    # ------------------------------------------------------------------ helpers

    def _user(self, user_id: str) -> dict[str, Any]:
        user = self._users.get(user_id)
        if user is None:
            raise KeyError(f"unknown user {user_id}")
        return user

    def _resolve_channel(
        self, ref: str | None, *, open_im: bool = True, missing_ok: bool = False
    ) -> Any:
        """Channel id for a channel id, a ``#name``/name, or a user id (their IM)."""
        if ref:
            if ref in self._channels:
                return ref
            name = ref.lstrip("#")
            for cid, ch in self._channels.items():
                if ch.get("name") == name:
                    return cid
            if ref in self._users:
                if ref in self._ims:
                    return self._ims[ref]
                if open_im:
                    return self._open_im_locked(ref)
        if missing_ok:
            return None
        raise _SlackError("channel_not_found")

    def _known_channel(self, ref: str) -> str:
        """Like _resolve_channel, for the Python API: unknown channels are a KeyError."""
        try:
            return str(self._resolve_channel(ref))
        except _SlackError as exc:
            raise KeyError(f"unknown channel {ref!r}") from exc

    def _check_can_post(self, channel_id: str, actor: str) -> None:
        """Slack's posting rules: not into an archived channel, and only where the bot is a
        member unless it holds ``chat:write.public`` and the channel is public."""
        ch = self._channels[channel_id]
        if ch.get("is_archived"):
            raise _SlackError("is_archived")
        if self._is_member(channel_id, actor):
            return
        public = ch["is_channel"] and not ch["is_private"]
        if not (public and "chat:write.public" in self._granted):
            raise _SlackError("not_in_channel")

    def _is_member(self, channel_id: str, user_id: str) -> bool:
        members = self._channels[channel_id]["members"]
        return members is None or user_id in members

    def _next_ts(self) -> str:
        micros = max(_now_ts_micros(), self._last_ts + 1)
        self._last_ts = micros
        return _format_ts(micros)

    def _find_message(self, channel_id: str | None, ts: str | None) -> dict[str, Any] | None:
        if channel_id is None or not ts:
            return None
        for msg in self._messages.get(channel_id, []):
            if msg["ts"] == ts:
                return msg
        return None

    def _find_ephemeral(self, channel_id: str, ts: str | None) -> dict[str, Any] | None:
        for eph in self._ephemerals:
            if eph["channel"] == channel_id and eph["ts"] == ts:
                return eph
        return None

    @staticmethod
    def _is_history_visible(msg: dict[str, Any]) -> bool:
        thread_ts = msg.get("thread_ts")
        return (
            thread_ts is None or thread_ts == msg["ts"] or msg.get("subtype") == "thread_broadcast"
        )

    @staticmethod
    def _json_param(params: dict[str, Any], name: str, error: str) -> Any:
        value = params.get(name)
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                return json.loads(value)
            except ValueError as exc:
                raise _SlackError(error) from exc
        return value

    def _blocks(self, params: dict[str, Any]) -> list[dict[str, Any]] | None:
        blocks = self._json_param(params, "blocks", "invalid_blocks_format")
        if blocks is None:
            return None
        self._well_formed(blocks)
        details = block_limits.problems(blocks, "message")
        if details:
            raise _SlackError("invalid_blocks", errors=details, messages=[f"[ERROR] {d}" for d in details])
        return self._fill_block_ids(blocks)

    @staticmethod
    def _well_formed(blocks: Any) -> None:
        if not isinstance(blocks, list) or not all(
            isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks
        ):
            raise _SlackError("invalid_blocks_format")

    @staticmethod
    def _fill_block_ids(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        filled = copy.deepcopy(blocks)
        for block in filled:
            block.setdefault("block_id", secrets.token_urlsafe(3))
        return filled

    @staticmethod
    def _text(params: dict[str, Any]) -> str | None:
        text = params.get("text")
        if text is None:
            return None
        text = str(text)
        return text[:MAX_TEXT_CHARS]

    def _content(
        self, params: dict[str, Any]
    ) -> tuple[str | None, list[dict[str, Any]] | None, list[Any] | None]:
        text = self._text(params)
        blocks = self._blocks(params)
        attachments = self._json_param(params, "attachments", "invalid_attachments")
        if attachments is not None and not isinstance(attachments, list):
            raise _SlackError("invalid_attachments")
        return text, blocks, attachments

    def _bot_fields(self, user_id: str) -> dict[str, Any]:
        if user_id != self.bot_user_id:
            return {}
        return {
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": self.bot_name,
                "team_id": self.team_id,
                "deleted": False,
            },
        }

    def _store_message(
        self,
        channel_id: str,
        user_id: str,
        *,
        text: str | None,
        blocks: list[dict[str, Any]] | None,
        attachments: list[Any] | None,
        thread_ts: str | None,
        reply_broadcast: bool = False,
        metadata: Any = None,
        files: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        ts = self._next_ts()
        msg: dict[str, Any] = {
            "type": "message",
            "ts": ts,
            "user": user_id,
            "text": text or "",
            "team": self.team_id,
            **self._bot_fields(user_id),
        }
        if blocks is not None:
            msg["blocks"] = blocks
        if attachments is not None:
            msg["attachments"] = attachments
        if metadata is not None:
            msg["metadata"] = metadata
        if files:
            msg["files"] = files
            msg["upload"] = True
        if thread_ts:
            parent = self._find_message(channel_id, thread_ts)
            if parent is not None and parent.get("thread_ts") not in (None, parent["ts"]):
                thread_ts = str(parent["thread_ts"])  # a reply to a reply joins the thread
                parent = self._find_message(channel_id, thread_ts)
            msg["thread_ts"] = thread_ts
            if reply_broadcast:
                msg["subtype"] = "thread_broadcast"
            if parent is not None:
                msg["parent_user_id"] = parent.get("user")
                parent["thread_ts"] = parent["ts"]
                parent["reply_count"] = int(parent.get("reply_count", 0)) + 1
                reply_users = list(parent.get("reply_users", []))
                if user_id not in reply_users:
                    reply_users.append(user_id)
                parent["reply_users"] = reply_users
                parent["reply_users_count"] = len(reply_users)
                parent["latest_reply"] = ts
        self._messages.setdefault(channel_id, []).append(msg)
        return msg

    def _permalink(self, channel_id: str, msg: dict[str, Any]) -> str:
        link = (
            f"https://{self.team_domain}.slack.com/archives/{channel_id}/"
            f"p{str(msg['ts']).replace('.', '')}"
        )
        thread_ts = msg.get("thread_ts")
        if thread_ts and thread_ts != msg["ts"]:
            link += f"?thread_ts={thread_ts}&cid={channel_id}"
        return link

    def _public_user(self, user: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(user)

    def _channel_object(self, channel_id: str) -> dict[str, Any]:
        ch = self._channels[channel_id]
        obj = {k: v for k, v in ch.items() if k != "members"}
        if ch["is_im"]:
            obj["is_open"] = True
        return copy.deepcopy(obj)

    # ------------------------------------------------------------------ API: auth, users

    def _auth_test(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        user = self._users[actor]
        body = {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": user["name"],
            "team_id": self.team_id,
            "user_id": actor,
            "is_enterprise_install": False,
        }
        if actor == self.bot_user_id:
            body["bot_id"] = self.bot_id
        return body

    def _apps_connections_open(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        return {"url": self.socket_url()}

    def _users_info(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        uid = params.get("user")
        if not uid:
            raise _missing("user")
        user = self._users.get(str(uid))
        if user is None:
            raise _SlackError("user_not_found")
        return {"user": self._public_user(user)}

    def _users_lookup_by_email(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        address = params.get("email")
        if not address:
            raise _missing("email")
        wanted = str(address).strip().lower()
        for user in self._users.values():
            email = user["profile"].get("email")
            # Slack: a deactivated user is not returned (users_not_found).
            if email and email.lower() == wanted and not user["deleted"]:
                return {"user": self._public_user(user)}
        raise _SlackError("users_not_found")

    def _users_list(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        limit = int(params.get("limit") or 0) or 200
        limit = max(1, min(limit, 1000))
        ids = list(self._users)
        start = 0
        cursor = params.get("cursor")
        if cursor:
            after = _decode_cursor("user", str(cursor))
            if after not in ids:
                raise _SlackError("invalid_cursor")
            start = ids.index(after)
        page = ids[start : start + limit]
        next_cursor = _encode_cursor("user", ids[start + limit]) if start + limit < len(ids) else ""
        return {
            "members": [self._public_user(self._users[u]) for u in page],
            "cache_ts": int(time.time()),
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _usergroups_users_list(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        sid = params.get("usergroup")
        if not sid:
            raise _missing("usergroup")
        group = self._usergroups.get(str(sid))
        if group is None:
            raise _SlackError("no_such_subteam")
        if group["date_delete"] and not _as_bool(params.get("include_disabled")):
            raise _SlackError("no_such_subteam")
        return {"users": list(group["users"])}

    # ------------------------------------------------------------------ API: conversations

    def _conversations_open(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        return_im = _as_bool(params.get("return_im"))
        if params.get("channel"):
            cid = self._resolve_channel(str(params["channel"]), open_im=False)
            return {"channel": self._channel_object(cid) if return_im else {"id": cid}}
        users = params.get("users")
        if isinstance(users, list):
            ids = [str(u) for u in users]
        else:
            ids = [u.strip() for u in str(users or "").split(",") if u.strip()]
        if not ids:
            raise _SlackError("users_list_not_supplied")
        for uid in ids:
            user = self._users.get(uid)
            if user is None:
                raise _SlackError("user_not_found")
            if user["deleted"]:
                raise _SlackError("user_disabled")
        if len(ids) > 8:
            raise _SlackError("too_many_users")
        if len(ids) == 1:
            uid = ids[0]
            if self._users[uid]["is_bot"]:
                raise _SlackError("cannot_dm_bot")
            already = uid in self._ims
            cid = self._open_im_locked(uid)
            body: dict[str, Any] = {
                "channel": self._channel_object(cid) if return_im else {"id": cid}
            }
            if already:
                body.update(no_op=True, already_open=True)
            return body
        members = {*ids, self.bot_user_id}
        for cid, ch in self._channels.items():
            if ch["is_mpim"] and ch["members"] == members:
                return {"channel": {"id": cid}, "no_op": True, "already_open": True}
        cid = self._new_id("G")
        self._channels[cid] = {
            "id": cid,
            "name": "mpdm-" + "--".join(self._users[u]["name"] for u in ids) + "-1",
            "is_channel": False,
            "is_group": False,
            "is_im": False,
            "is_mpim": True,
            "is_private": True,
            "created": int(time.time()),
            "members": members,
        }
        self._messages.setdefault(cid, [])
        return {"channel": {"id": cid}}

    def _conversations_info(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        if not params.get("channel"):
            raise _missing("channel")
        cid = self._resolve_channel(str(params["channel"]), open_im=False)
        ch = self._channels[cid]
        if ch["is_private"] and not self._is_member(cid, actor):
            raise _SlackError("channel_not_found")  # Slack hides private channels from non-members
        return {"channel": {**self._channel_object(cid), "is_member": self._is_member(cid, actor)}}

    def _conversations_history(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        if not params.get("channel"):
            raise _SlackError("channel_not_found")
        cid = self._resolve_channel(str(params["channel"]), open_im=False)
        limit = max(1, min(int(params.get("limit") or 100), 999))
        inclusive = _as_bool(params.get("inclusive"))
        latest = params.get("latest")
        oldest = params.get("oldest")
        msgs = [m for m in self._messages.get(cid, []) if self._is_history_visible(m)]

        def in_range(m: dict[str, Any]) -> bool:
            key = _ts_key(m["ts"])
            if latest and (
                key > _ts_key(str(latest)) or (key == _ts_key(str(latest)) and not inclusive)
            ):
                return False
            return not (
                oldest
                and (key < _ts_key(str(oldest)) or (key == _ts_key(str(oldest)) and not inclusive))
            )

        msgs = [m for m in reversed(msgs) if in_range(m)]  # newest first
        start = 0
        if params.get("cursor"):
            start = int(_decode_cursor("next_ts", str(params["cursor"])))
        page = msgs[start : start + limit]
        has_more = start + limit < len(msgs)
        return {
            "messages": copy.deepcopy(page),
            "has_more": has_more,
            "pin_count": 0,
            "response_metadata": {
                "next_cursor": _encode_cursor("next_ts", start + limit) if has_more else ""
            },
        }

    def _conversations_replies(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        if not params.get("channel"):
            raise _SlackError("channel_not_found")
        if not params.get("ts"):
            raise _missing("ts")
        cid = self._resolve_channel(str(params["channel"]), open_im=False)
        ts = str(params["ts"])
        anchor = self._find_message(cid, ts)
        if anchor is None:
            raise _SlackError("thread_not_found")
        root = str(anchor.get("thread_ts") or anchor["ts"])
        thread = [m for m in self._messages[cid] if m["ts"] == root or m.get("thread_ts") == root]
        limit = max(1, min(int(params.get("limit") or 1000), 1000))
        start = 0
        if params.get("cursor"):
            start = int(_decode_cursor("next_ts", str(params["cursor"])))
        page = thread[start : start + limit]
        has_more = start + limit < len(thread)
        return {
            "messages": copy.deepcopy(page),
            "has_more": has_more,
            "response_metadata": {
                "next_cursor": _encode_cursor("next_ts", start + limit) if has_more else ""
            },
        }

    # ------------------------------------------------------------------ API: chat

    def _chat_post_message(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        if not params.get("channel"):
            raise _SlackError("channel_not_found")
        cid = self._resolve_channel(str(params["channel"]))
        text, blocks, attachments = self._content(params)
        if not text and not blocks and not attachments:
            raise _SlackError("no_text")
        self._check_can_post(cid, actor)
        metadata = self._json_param(params, "metadata", "invalid_metadata_format")
        msg = self._store_message(
            cid,
            actor,
            text=text,
            blocks=blocks,
            attachments=attachments,
            thread_ts=str(params["thread_ts"]) if params.get("thread_ts") else None,
            reply_broadcast=_as_bool(params.get("reply_broadcast")),
            metadata=metadata,
        )
        return {"channel": cid, "ts": msg["ts"], "message": copy.deepcopy(msg)}

    def _own_message(self, params: dict[str, Any], actor: str, refusal: str) -> tuple[str, dict[str, Any]]:
        """The (channel id, message) that `channel` + `ts` name, if `actor` posted it."""
        if not params.get("channel"):
            raise _SlackError("channel_not_found")
        if not params.get("ts"):
            raise _missing("ts")
        cid = self._resolve_channel(str(params["channel"]), open_im=False)
        msg = self._find_message(cid, str(params["ts"]))
        if msg is None:
            raise _SlackError("message_not_found")
        if msg.get("user") != actor:
            raise _SlackError(refusal)
        return cid, msg

    def _chat_update(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        cid, msg = self._own_message(params, actor, "cant_update_message")
        if self._channels[cid].get("is_archived"):
            raise _SlackError("is_archived")
        text, blocks, attachments = self._content(params)
        if text is None and blocks is None and attachments is None:
            raise _SlackError("no_text")
        if text is not None:
            msg["text"] = text
        if blocks is not None:
            if blocks:
                msg["blocks"] = blocks
            else:
                msg.pop("blocks", None)
        if attachments is not None:
            msg["attachments"] = attachments
        msg["edited"] = {"user": actor, "ts": self._next_ts()}
        return {
            "channel": cid,
            "ts": msg["ts"],
            "text": msg["text"],
            "message": copy.deepcopy(msg),
        }

    def _chat_post_ephemeral(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        if not params.get("channel"):
            raise _SlackError("channel_not_found")
        if not params.get("user"):
            raise _SlackError("user_not_found")
        user_id = str(params["user"])
        if user_id not in self._users:
            raise _SlackError("user_not_found")
        cid = self._resolve_channel(str(params["channel"]))
        self._check_can_post(cid, actor)
        if not self._is_member(cid, user_id):
            raise _SlackError("user_not_in_channel")
        text, blocks, attachments = self._content(params)
        if not text and not blocks and not attachments:
            raise _SlackError("no_text")
        ts = self._add_ephemeral(cid, user_id, actor, text, blocks, attachments, params)
        return {"message_ts": ts}

    def _add_ephemeral(
        self,
        channel_id: str,
        user_id: str,
        author: str,
        text: str | None,
        blocks: list[dict[str, Any]] | None,
        attachments: list[Any] | None,
        params: dict[str, Any],
    ) -> str:
        ts = self._next_ts()
        eph: dict[str, Any] = {
            "type": "message",
            "subtype": "ephemeral",
            "channel": channel_id,
            "user": user_id,
            "author": author,
            "ts": ts,
            "text": text or "",
        }
        if blocks is not None:
            eph["blocks"] = blocks
        if attachments is not None:
            eph["attachments"] = attachments
        if params.get("thread_ts"):
            eph["thread_ts"] = str(params["thread_ts"])
        self._ephemerals.append(eph)
        return ts

    def _chat_delete(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        cid, msg = self._own_message(params, actor, "cant_delete_message")
        self._delete_message(cid, msg)
        return {"channel": cid, "ts": msg["ts"]}

    def _delete_message(self, channel_id: str, msg: dict[str, Any]) -> None:
        if msg.get("reply_count"):
            # Slack keeps a tombstone where a thread parent with replies was deleted.
            for key in ("blocks", "attachments", "files", "bot_profile", "metadata", "edited"):
                msg.pop(key, None)
            msg.update(subtype="tombstone", text="This message was deleted.", hidden=True)
            return
        self._messages[channel_id].remove(msg)
        thread_ts = msg.get("thread_ts")
        if thread_ts and thread_ts != msg["ts"]:
            parent = self._find_message(channel_id, str(thread_ts))
            if parent is not None and parent.get("reply_count"):
                parent["reply_count"] -= 1
                replies = [
                    m
                    for m in self._messages[channel_id]
                    if m.get("thread_ts") == thread_ts and m["ts"] != thread_ts
                ]
                parent["latest_reply"] = replies[-1]["ts"] if replies else parent["ts"]

    def _chat_get_permalink(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        if not params.get("channel"):
            raise _SlackError("channel_not_found")
        if not params.get("message_ts"):
            raise _missing("message_ts")
        cid = self._resolve_channel(str(params["channel"]), open_im=False)
        msg = self._find_message(cid, str(params["message_ts"]))
        if msg is None:
            raise _SlackError("message_not_found")
        return {"channel": cid, "permalink": self._permalink(cid, msg)}

    # ------------------------------------------------------------------ API: views

    def _view_param(self, params: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
        view = self._json_param(params, "view", "invalid_arguments")
        if view is None:
            raise _missing("view")
        if not isinstance(view, dict) or view.get("type") not in allowed:
            raise _SlackError(
                "invalid_arguments",
                messages=[
                    f"[ERROR] view type must be one of {', '.join(allowed)} [json-pointer:/view/type]"
                ],
            )
        view = copy.deepcopy(view)
        self._well_formed(view.get("blocks", []))
        details = block_limits.view_problems(view)
        if details:
            raise _SlackError("invalid_arguments", messages=[f"[ERROR] {d}" for d in details])
        view["blocks"] = self._fill_block_ids(view.get("blocks", []))
        return view

    def _make_view(
        self,
        spec: dict[str, Any],
        *,
        view_id: str | None = None,
        root_view_id: str | None = None,
        previous_view_id: str | None = None,
    ) -> dict[str, Any]:
        vid = view_id or self._new_id("V")
        view = {
            "id": vid,
            "team_id": self.team_id,
            "type": spec["type"],
            "blocks": spec.get("blocks", []),
            "private_metadata": spec.get("private_metadata", ""),
            "callback_id": spec.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "title": spec.get("title"),
            "close": spec.get("close"),
            "submit": spec.get("submit"),
            "clear_on_close": bool(spec.get("clear_on_close", False)),
            "notify_on_close": bool(spec.get("notify_on_close", False)),
            "external_id": spec.get("external_id", ""),
            "root_view_id": root_view_id or vid,
            "previous_view_id": previous_view_id,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        if spec["type"] == "home":
            view.pop("title")
            view.pop("close")
            view.pop("submit")
        external_id = view["external_id"]
        if external_id:
            for other in self._views.values():
                if other["external_id"] == external_id and other["id"] != vid:
                    raise _SlackError("duplicate_external_id")
        self._views[vid] = view
        return view

    def _trigger_user(self, params: dict[str, Any]) -> str | None:
        trigger = params.get("trigger_id")
        if not trigger:
            raise _missing("trigger_id")
        issued = self._triggers.get(str(trigger))
        if issued is None:
            if self.strict_triggers:
                raise _SlackError("invalid_trigger_id")
            return None
        user_id, when = issued
        if self.strict_triggers and self._clock() - when > TRIGGER_TTL_SECONDS:
            raise _SlackError("expired_trigger_id")
        return user_id

    def _views_open(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        user = self._trigger_user(params)
        spec = self._view_param(params, ("modal",))
        view = self._make_view(spec)
        self._view_owner[view["id"]] = user
        self._modal_stacks[user] = [view["id"]]
        return {"view": copy.deepcopy(view)}

    def _views_push(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        user = self._trigger_user(params)
        spec = self._view_param(params, ("modal",))
        stack = self._modal_stacks.setdefault(user, [])
        if len(stack) >= MAX_VIEW_STACK:
            raise _SlackError("push_limit_reached")
        previous = stack[-1] if stack else None
        view = self._make_view(
            spec,
            root_view_id=stack[0] if stack else None,
            previous_view_id=previous,
        )
        self._view_owner[view["id"]] = user
        stack.append(view["id"])
        return {"view": copy.deepcopy(view)}

    def _views_update(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        view_id = params.get("view_id")
        external_id = params.get("external_id")
        if not view_id and not external_id:
            raise _missing("view_id")
        current: dict[str, Any] | None = None
        if view_id:
            current = self._views.get(str(view_id))
        else:
            current = next(
                (v for v in self._views.values() if v["external_id"] == external_id), None
            )
        if current is None:
            raise _SlackError("not_found")
        if params.get("hash") and str(params["hash"]) != current["hash"]:
            raise _SlackError("hash_conflict")
        spec = self._view_param(params, ("modal", "home"))
        updated = self._make_view(
            spec,
            view_id=current["id"],
            root_view_id=current["root_view_id"],
            previous_view_id=current["previous_view_id"],
        )
        return {"view": copy.deepcopy(updated)}

    def _views_publish(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        user_id = params.get("user_id")
        if not user_id:
            raise _missing("user_id")
        user_id = str(user_id)
        if user_id not in self._users:
            raise _SlackError("user_not_found")
        spec = self._view_param(params, ("home",))
        current_id = self._homes.get(user_id)
        if (
            current_id
            and params.get("hash")
            and str(params["hash"]) != self._views[current_id]["hash"]
        ):
            raise _SlackError("hash_conflict")
        view = self._make_view(spec, view_id=current_id)
        self._homes[user_id] = view["id"]
        self._view_owner[view["id"]] = user_id
        return {"view": copy.deepcopy(view)}

    # ------------------------------------------------------------------ API: files

    def _files_get_upload_url_external(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        filename = params.get("filename")
        length = params.get("length")
        missing = [n for n, v in (("filename", filename), ("length", length)) if v in (None, "")]
        if missing:
            raise _missing(*missing)
        try:
            size = int(str(length))
        except ValueError as exc:
            raise _SlackError("invalid_arguments") from exc
        file_id = self._new_id("F")
        self._files[file_id] = {
            "id": file_id,
            "created": int(time.time()),
            "timestamp": int(time.time()),
            "name": str(filename),
            "title": str(filename),
            "user": actor,
            "size": size,
            "alt_txt": params.get("alt_txt"),
            "snippet_type": params.get("snippet_type"),
            "is_external": False,
            "channels": [],
            "uploaded": False,
            "completed": False,
            "content": b"",
        }
        return {"upload_url": f"{self.root_url}upload/v1/{file_id}", "file_id": file_id}

    def _files_complete_upload_external(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        files = self._json_param(params, "files", "invalid_arguments")
        if not files:
            raise _missing("files")
        if not isinstance(files, list) or not all(
            isinstance(f, dict) and f.get("id") for f in files
        ):
            raise _SlackError("invalid_arguments")
        targets: list[str] = []
        if params.get("channel_id"):
            targets.append(self._resolve_channel(str(params["channel_id"])))
        if params.get("channels"):
            targets += [
                self._resolve_channel(c.strip())
                for c in str(params["channels"]).split(",")
                if c.strip()
            ]
        for cid in targets:
            self._check_can_post(cid, actor)
        records = []
        for item in files:
            record = self._files.get(str(item["id"]))
            if record is None or not record["uploaded"]:
                raise _SlackError("file_not_found")
            records.append((record, item))
        shared = []
        for record, item in records:
            if item.get("title"):
                record["title"] = str(item["title"])
            record["completed"] = True
            record["channels"] = list(dict.fromkeys([*record["channels"], *targets]))
            record["url_private"] = f"{self.root_url}files/{record['id']}/{record['name']}"
            record["permalink"] = (
                f"https://{self.team_domain}.slack.com/files/{actor}/{record['id']}/{record['name']}"
            )
            shared.append({k: v for k, v in record.items() if k not in _FILE_INTERNAL_KEYS})
        comment = params.get("initial_comment")
        thread_ts = str(params["thread_ts"]) if params.get("thread_ts") else None
        for cid in targets:
            self._store_message(
                cid,
                actor,
                text=str(comment)[:MAX_TEXT_CHARS] if comment else "",
                blocks=None,
                attachments=None,
                thread_ts=thread_ts,
                files=copy.deepcopy(shared),
            )
        return {"files": copy.deepcopy(shared)}

    def _files_upload_retired(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        # files.upload was retired by Slack; files_upload_v2 is the supported path.
        raise _SlackError("method_deprecated")

    # ------------------------------------------------------------------ response_url

    def _response_url_post(self, hook_id: str, payload: Any) -> tuple[int, str]:
        hook = self._hooks.get(hook_id)
        if hook is None:
            return 404, "invalid_token"
        if self._clock() - hook.created > RESPONSE_URL_TTL_SECONDS:
            return 404, "expired_url"
        if hook.uses >= RESPONSE_URL_MAX_USES:
            return 404, "used_url"
        if not isinstance(payload, dict):
            return 400, "invalid_payload"
        hook.uses += 1
        try:
            blocks = self._blocks(payload)
        except _SlackError as exc:
            return 400, exc.error
        text = self._text(payload)
        attachments = payload.get("attachments")

        original = self._find_message(hook.channel, hook.original_ts)
        original_eph = (
            self._find_ephemeral(hook.channel, hook.original_ts) if original is None else None
        )
        if _as_bool(payload.get("delete_original")):
            if original is not None:
                self._delete_message(hook.channel, original)
            elif original_eph is not None:
                self._ephemerals.remove(original_eph)
            else:
                return 404, "message_not_found"
            return 200, "ok"

        if not text and not blocks and not attachments:
            return 400, "no_text"
        replace = payload.get("replace_original")
        replace = hook.replace_by_default if replace is None else _as_bool(replace)
        if replace and (original is not None or original_eph is not None):
            target = original if original is not None else original_eph
            assert target is not None
            target["text"] = text or ""
            for key, value in (("blocks", blocks), ("attachments", attachments)):
                if value:
                    target[key] = value
                else:
                    target.pop(key, None)
            return 200, "ok"

        thread_ts = str(payload["thread_ts"]) if payload.get("thread_ts") else None
        if payload.get("response_type") == "in_channel":
            msg = self._store_message(
                hook.channel,
                self.bot_user_id,
                text=text,
                blocks=blocks,
                attachments=attachments,
                thread_ts=thread_ts,
            )
            new_ts = str(msg["ts"])
        else:
            new_ts = self._add_ephemeral(
                hook.channel,
                hook.user,
                self.bot_user_id,
                text,
                blocks,
                attachments,
                {"thread_ts": thread_ts} if thread_ts else {},
            )
        if hook.original_ts is None or (original is None and original_eph is None):
            # a slash command's later replace_original acts on its latest response
            hook.original_ts = new_ts
        return 200, "ok"


class _SocketConnection:
    """One Socket Mode WebSocket (RFC 6455, server side) on a request handler's socket.

    Only what Slack's side needs: text frames out (unmasked), masked frames in (text,
    continuation, ping -> pong, close), one sender at a time.
    """

    def __init__(self, sock: socket.socket, rfile: Any, fake: SlackFake) -> None:
        self.sock = sock
        self.rfile = rfile
        self.fake = fake
        self.open = True
        self._send_lock = threading.Lock()

    def send_json(self, message: Any) -> None:
        self._send(0x1, json.dumps(message).encode("utf-8"))

    def _send(self, opcode: int, payload: bytes) -> None:
        size = len(payload)
        if size < 126:
            head = struct.pack("!BB", 0x80 | opcode, size)
        elif size < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 126, size)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
        with self._send_lock:
            if not self.open and opcode != 0x8:
                raise RuntimeError("the Socket Mode connection is closed")
            self.sock.sendall(head + payload)

    def close(self, code: int = 1000) -> None:
        """Send a close frame and stop reading (the client's answer is not awaited)."""
        if self.open:
            with contextlib.suppress(OSError):
                self._send(0x8, struct.pack("!H", code))
        self.abort()

    def abort(self) -> None:
        self.open = False
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _read_exact(self, size: int) -> bytes:
        data = self.rfile.read(size) if size else b""
        if len(data) < size:
            raise EOFError
        return data

    def _read_frame(self) -> tuple[bool, int, bytes]:
        b1, b2 = self._read_exact(2)
        size = b2 & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._read_exact(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._read_exact(8))
        mask = self._read_exact(4) if b2 & 0x80 else b""
        data = self._read_exact(size)
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return bool(b1 & 0x80), b1 & 0x0F, data

    def run(self) -> None:
        """Read until the client closes or the fake stops."""
        parts: list[bytes] = []
        try:
            while self.open:
                fin, opcode, data = self._read_frame()
                if opcode == 0x9:  # ping
                    self._send(0xA, data)
                elif opcode == 0x8:  # close: echo it
                    self.close(struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1000)
                elif opcode in (0x0, 0x1, 0x2):
                    parts.append(data)
                    if fin:
                        message, parts = b"".join(parts), []
                        self.fake._socket_text(message.decode("utf-8", errors="replace"))
                # pongs (0xA) need no answer
        except (EOFError, OSError, ValueError):
            pass
        finally:
            self.abort()
            self.fake._socket_closed(self)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: SlackFake

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), slow on some hosts.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Handler(BaseHTTPRequestHandler):
    server_version = "SlackFake/1.0"

    @property
    def fake(self) -> SlackFake:
        assert isinstance(self.server, _Server)
        return self.server.fake

    def log_message(self, format: str, *args: Any) -> None:
        return  # keep test output quiet

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        self._send(status, data, "application/json; charset=utf-8", headers or {})

    def _send_text(self, status: int, text: str) -> None:
        self._send(status, text.encode("utf-8"), "text/html; charset=utf-8", {})

    def do_GET(self) -> None:
        self._route(b"")

    def do_POST(self) -> None:
        self._route(self._read_body())

    def _route(self, raw: bytes) -> None:
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        if len(parts) == 2 and parts[0] == "api":
            self._api(parts[1], url.query, raw)
        elif len(parts) == 3 and parts[:2] == ["hooks", "response"] and self.command == "POST":
            self._send_text(*self.fake.handle_response_url(parts[2], raw))
        elif len(parts) == 3 and parts[:2] == ["upload", "v1"] and self.command == "POST":
            self._send_text(*self.fake.handle_upload(parts[2], raw))
        elif parts == ["link"] and self.command == "GET":
            self._websocket(url.query)
        elif parts == ["_fake", "state"]:
            self._send_json(200, self.fake.snapshot())
        else:
            self._send_text(404, "not_found")

    def _websocket(self, query: str) -> None:
        """The Socket Mode endpoint: check the ticket, upgrade, then hold the socket."""
        key = self.headers.get("Sec-WebSocket-Key")
        upgrade = (self.headers.get("Upgrade") or "").lower()
        ticket = (parse_qs(query).get("ticket") or [""])[0]
        if upgrade != "websocket" or not key:
            self._send_text(400, "websocket_upgrade_required")
            return
        if not self.fake._take_ticket(ticket):
            self._send_text(401, "invalid_ticket")
            return
        accept = base64.b64encode(hashlib.sha1((key + _WEBSOCKET_GUID).encode()).digest()).decode()
        self.wfile.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\n"
                "Upgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode("ascii")
        )
        self.wfile.flush()
        self.close_connection = True
        connection = _SocketConnection(self.connection, self.rfile, self.fake)
        self.fake._socket_opened(connection)
        connection.run()

    def _api(self, method: str, query: str, raw: bytes) -> None:
        params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        content_type = (self.headers.get("Content-Type") or "").lower()
        token_allowed_in_body = True
        try:
            if content_type.startswith("application/json"):
                token_allowed_in_body = False  # Slack ignores a token inside a JSON body
                parsed = json.loads(raw.decode("utf-8") or "{}")
                if not isinstance(parsed, dict):
                    raise ValueError("JSON body must be an object")
                body_params = dict(parsed)
                body_params.pop("token", None)
                params.update(body_params)
            elif content_type.startswith("multipart/form-data"):
                params.update(_parse_multipart(content_type, raw))
            elif raw:
                params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except (ValueError, UnicodeDecodeError):
            self._send_json(200, {"ok": False, "error": "invalid_json"})
            return
        token = None
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        form_token = params.pop("token", None)
        if token is None and token_allowed_in_body and isinstance(form_token, str):
            token = form_token
        headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        status, body, extra = self.fake.handle_api(method, params, token, headers)
        self._send_json(status, body, extra)


def _parse_multipart(content_type: str, raw: bytes) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    params: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        data = part.get_payload(decode=True) or b""
        if part.get_filename():
            params[str(name)] = data
        else:
            params[str(name)] = data.decode("utf-8")
    return params
