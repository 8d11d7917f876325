"""Inbound Slack HTTP requests, checked before Bolt sees them (pure, except the clock).

Three problems with handing the raw request to Bolt as it is:

* Bolt's ``parse_body`` (slack_bolt/request/internals.py) reads *any* form body that
  contains the substring ``payload`` as an interactivity payload, so ``/iam audit
  payload-processor`` (or a channel or user name containing "payload") arrives with an
  empty body and is answered ``404 unhandled request``. :func:`parse_body` parses by the
  form's *keys*, and :class:`SlackRequest` (a BoltRequest) uses it, also for the copies
  Bolt makes for lazy listeners. The raw body is untouched, so Bolt's own signature check
  still runs over exactly the bytes Slack signed.
* Malformed requests (non-ASCII signature, non-numeric or repeated timestamp header,
  ``payload`` that is a list or a number, actions without ``action_id`` ...) made Bolt or
  a listener raise: HTTP 500. :func:`check_signature` and :func:`check_shape` answer
  401 / 400 first, before anything runs.
* The order matters: the signature is checked over the raw bytes *before* the body is
  parsed, so an unsigned request learns nothing about how its body would be read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt.request import BoltRequest

#: Slack refuses to send, and Bolt refuses to accept, requests older than five minutes.
MAX_AGE_SECONDS = 5 * 60
SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
TIMESTAMP = re.compile(r"[0-9]{1,12}")
ACTION_ID_MAX = 255


class Malformed(ValueError):
    """The request is not one Slack sends: answer 400, change nothing."""


def check_signature(
    secret: str,
    raw: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    now: Callable[[], float] = time.time,
) -> bool:
    """Slack's v0 signature over the raw bytes, with a single numeric timestamp no more than
    five minutes away. Anything odd in the headers (a repeated header arrives joined with a
    comma, non-ASCII, a missing ``v0=``) is simply not valid."""
    if not timestamp or not signature:
        return False
    if not TIMESTAMP.fullmatch(timestamp) or not SIGNATURE.fullmatch(signature):
        return False
    if abs(now() - int(timestamp)) > MAX_AGE_SECONDS:
        return False
    expected = hmac.new(
        secret.encode("utf-8"), b"v0:" + timestamp.encode("ascii") + b":" + raw, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(signature.encode("ascii"), ("v0=" + expected).encode("ascii"))


def parse_body(body: str, content_type: str | None) -> dict[str, Any]:
    """The request body as Slack meant it (what Bolt's ``parse_body`` should return).

    JSON bodies (Events API) as JSON; form bodies by their keys: interactivity is a form
    with a ``payload`` field holding JSON, everything else (slash commands, the SSL check)
    is plain fields. Raises Malformed for anything that is not an object.
    """
    if not body:
        return {}
    try:
        if (content_type or "").split(";")[0].strip() == "application/json" or body.startswith("{"):
            parsed: Any = json.loads(body)
        else:
            fields = dict(parse_qsl(body, keep_blank_values=True))
            parsed = json.loads(fields["payload"]) if "payload" in fields else fields
    except ValueError:
        raise Malformed("body is neither a form nor JSON") from None
    if not isinstance(parsed, dict):
        raise Malformed("body is not an object")
    return parsed


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _user_id(body: Mapping[str, Any]) -> Any:
    user = body.get("user")
    return user.get("id") if isinstance(user, dict) else None


def check_shape(body: Mapping[str, Any]) -> None:
    """Raise Malformed unless the fields every listener relies on are there and typed."""
    if "command" in body:
        for field in ("command", "user_id", "team_id"):
            if not _text(body.get(field)):
                raise Malformed(f"slash command without {field}")
        return
    kind = body.get("type")
    if kind is None:
        if body.get("ssl_check") is not None:
            return
        raise Malformed("no type")
    if not isinstance(kind, str):
        raise Malformed("type is not text")
    if kind in ("block_actions", "view_submission", "view_closed", "shortcut", "message_action"):
        if not _text(_user_id(body)):
            raise Malformed("interaction without a user id")
        team = body.get("team")
        if team is not None and not (isinstance(team, dict) and _text(team.get("id"))):
            raise Malformed("team is not an object with an id")
    if kind == "block_actions":
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions:
            raise Malformed("block_actions without actions")
        for action in actions:
            if not isinstance(action, dict):
                raise Malformed("action is not an object")
            action_id = action.get("action_id")
            if not _text(action_id) or len(action_id) > ACTION_ID_MAX:
                raise Malformed("action without action_id")
            for field in ("value", "block_id", "action_ts"):
                if field in action and not isinstance(action[field], str):
                    raise Malformed(f"action {field} is not text")
    elif kind in ("view_submission", "view_closed"):
        view = body.get("view")
        if not isinstance(view, dict) or not _text(view.get("callback_id")):
            raise Malformed("view submission without a view")
        state = view.get("state")
        if state is not None and not (isinstance(state, dict) and isinstance(state.get("values", {}), dict)):
            raise Malformed("view state is not an object")
        if not isinstance(view.get("private_metadata", ""), str):
            raise Malformed("private_metadata is not text")
    elif kind == "event_callback":
        if not isinstance(body.get("event"), dict):
            raise Malformed("event_callback without an event")
    elif kind == "url_verification" and not isinstance(body.get("challenge"), str):
        raise Malformed("url_verification without a challenge")


class SlackRequest(BoltRequest):
    """A BoltRequest whose body is parsed by :func:`parse_body` (see the module docstring).

    Bolt copies the request for lazy listeners with ``to_copyable()``, which re-parses the
    raw body: that copy is a SlackRequest too.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        if self.mode == "http":
            from slack_bolt.request.internals import build_context

            self.body = parse_body(self.raw_body, self.content_type)
            self.context = build_context(self.context, self.body)

    def to_copyable(self) -> SlackRequest:
        return SlackRequest(
            body=self.raw_body if self.mode == "http" else self.body,
            query=self.query,
            headers=self.headers,
            context=self.context.to_copyable(),
            mode=self.mode,
        )
