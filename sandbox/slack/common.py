"""What the local Slack's modules share: Slack's limits and lifetimes, the error an API
handler raises (`SlackError`), the records of calls, faults, rate budgets, response URLs
and replies, and Slack's `ts` and cursor formats. The workspace's ids and tokens are in
`sandbox.workspace`.
"""

from __future__ import annotations

import base64
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bot.slack.methods import METHODS
from sandbox import block_limits

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

RESPONSE_URL_METHOD = "response_url"
"""Pseudo method name under which response_url posts are recorded (and can be faulted)."""
UPLOAD_METHOD = "files.upload_url"
"""Pseudo method name under which posts to a files.getUploadURLExternal URL are recorded."""

T = TypeVar("T")
FILE_INTERNAL_KEYS = frozenset({"content", "uploaded", "completed"})


class SlackError(Exception):
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
class Fault:
    status: int
    error: str
    remaining: int | None
    retry_after: int | None = None


@dataclass
class Budget:
    per_minute: int
    window: float
    per_channel: bool
    hits: dict[str, deque[float]] = field(default_factory=dict)


@dataclass
class Hook:
    id: str
    channel: str
    user: str
    original_ts: str | None
    replace_by_default: bool
    created: float
    uses: int = 0


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def now_ts_micros() -> int:
    return time.time_ns() // 1_000


def format_ts(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def ts_key(ts: str) -> tuple[int, int]:
    sec, _, frac = ts.partition(".")
    return int(sec), int(frac.ljust(6, "0")[:6] or 0)


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def encode_cursor(prefix: str, value: str | int) -> str:
    return base64.b64encode(f"{prefix}:{value}".encode()).decode()


def decode_cursor(prefix: str, cursor: str) -> str:
    try:
        raw = base64.b64decode(cursor.encode(), validate=True).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise SlackError("invalid_cursor") from exc
    head, sep, value = raw.partition(":")
    if not sep or head != prefix:
        raise SlackError("invalid_cursor")
    return value


def missing_fields(*names: str) -> SlackError:
    return SlackError(
        "invalid_arguments",
        messages=[f"[ERROR] missing required field: {n}" for n in names],
    )
