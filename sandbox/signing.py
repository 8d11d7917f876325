"""Build and sign inbound Slack requests exactly as Slack sends them.

Slack signs every request to an app with the app's signing secret:
``v0=hex(HMAC-SHA256(secret, "v0:<timestamp>:<raw body>"))`` in ``X-Slack-Signature``, the
Unix time in ``X-Slack-Request-Timestamp``; receivers reject timestamps more than five
minutes away from their clock. :func:`sign` uses ``slack_sdk``'s own
``SignatureVerifier.generate_signature`` so both sides agree by construction.

Bodies (all ``bytes``, ready to sign and send):

* slash commands: ``application/x-www-form-urlencoded`` fields (:func:`slash_command_body`);
* interactivity: form-encoded ``payload=<json>`` (:func:`block_actions_body`,
  :func:`view_submission_body`);
* Events API: JSON (:func:`url_verification_body`, :func:`event_callback_body`);
* the SSL check: ``ssl_check=1&token=...`` (:func:`ssl_check_body`).

:func:`headers_for` adds the ``Content-Type`` Slack uses for a body, and :func:`post`
sends a signed request over real HTTP (for example to ``steward serve``). For a bolt app
in-process: ``app.dispatch(BoltRequest(body=body.decode(), headers=sign(body, secret)))``.

Defaults (team, app, bot ids) match :class:`sandbox.slack_fake.SlackFake`'s.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

from sandbox.workspace import (
    DEFAULT_APP_ID,
    DEFAULT_BOT_ID,
    DEFAULT_BOT_USER_ID,
    DEFAULT_TEAM_DOMAIN,
    DEFAULT_TEAM_ID,
)

__all__ = [
    "DEFAULT_CHANNEL_ID",
    "DEFAULT_VERIFICATION_TOKEN",
    "FORM_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "SignedResponse",
    "block_actions_body",
    "content_type_for",
    "event_callback_body",
    "headers_for",
    "post",
    "sign",
    "slash_command_body",
    "ssl_check_body",
    "url_verification_body",
    "view_submission_body",
]

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
JSON_CONTENT_TYPE = "application/json"
#: The deprecated verification token Slack still puts in payloads (apps must not trust it).
DEFAULT_VERIFICATION_TOKEN = "sandbox-verification-token"
DEFAULT_CHANNEL_ID = "C0SANDBOX1"
#: Slack's User-Agent on requests to apps.
SLACK_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


def sign(body: bytes | str, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The signature headers Slack sends with ``body``.

    ``timestamp`` defaults to now; pass an old one to build a replayed/stale request.
    """
    ts = str(int(time.time()) if timestamp is None else int(timestamp))
    try:
        signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    except UnicodeDecodeError:
        # slack_sdk decodes bytes as UTF-8 first; Slack itself signs the raw bytes.
        raw = body if isinstance(body, bytes) else body.encode("utf-8")
        digest = hmac.new(secret.encode("utf-8"), b"v0:" + ts.encode() + b":" + raw, "sha256")
        signature = f"v0={digest.hexdigest()}"
    assert signature is not None  # only None when timestamp is None
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}


def content_type_for(body: bytes | str) -> str:
    """The ``Content-Type`` Slack uses for a body built here (JSON for Events API
    bodies, form-encoded for commands, interactivity and the SSL check)."""
    head = body.lstrip()[:1]
    return JSON_CONTENT_TYPE if head in (b"{", "{") else FORM_CONTENT_TYPE


def headers_for(body: bytes | str, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """All the headers Slack sends: ``Content-Type``, ``User-Agent`` and the signature."""
    return {
        "Content-Type": content_type_for(body),
        "User-Agent": SLACK_USER_AGENT,
        **sign(body, secret, timestamp),
    }


@dataclass(frozen=True)
class SignedResponse:
    """What the app answered to :func:`post`."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


def post(
    url: str,
    body: bytes | str,
    secret: str,
    *,
    timestamp: int | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> SignedResponse:
    """POST a signed body to ``url`` as Slack would; never raises on HTTP errors."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    all_headers = {**headers_for(data, secret, timestamp), **(headers or {})}
    request = urllib.request.Request(url, data=data, headers=all_headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return SignedResponse(resp.status, dict(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as err:
        return SignedResponse(err.code, dict(err.headers.items()), err.read())


def _trigger_id() -> str:
    return f"{secrets.randbelow(10**13)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"


def _default_response_url(kind: str, team_id: str) -> str:
    return (
        f"https://hooks.slack.com/{kind}/{team_id}/"
        f"{secrets.randbelow(10**13)}/{secrets.token_urlsafe(18)}"
    )


def _message_ts() -> str:
    micros = time.time_ns() // 1_000
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _form(fields: Mapping[str, Any]) -> bytes:
    return urlencode({k: v for k, v in fields.items() if v is not None}).encode("utf-8")


def _payload_form(payload: Mapping[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode("utf-8")


def _user(user_id: str, user_name: str | None, team_id: str) -> dict[str, str]:
    name = user_name or user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def slash_command_body(
    command: str = "/iam",
    *,
    text: str = "",
    user_id: str = "U0SANDBOX1",
    user_name: str | None = None,
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    channel_id: str = DEFAULT_CHANNEL_ID,
    channel_name: str | None = None,
    response_url: str | None = None,
    trigger_id: str | None = None,
    api_app_id: str = DEFAULT_APP_ID,
    token: str = DEFAULT_VERIFICATION_TOKEN,
) -> bytes:
    """A slash command invocation as Slack POSTs it (form fields in Slack's order)."""
    if channel_name is None:
        channel_name = "directmessage" if channel_id.startswith("D") else "sandbox"
    return _form(
        {
            "token": token,
            "team_id": team_id,
            "team_domain": team_domain,
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": user_name or user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": api_app_id,
            "is_enterprise_install": "false",
            "response_url": response_url or _default_response_url("commands", team_id),
            "trigger_id": trigger_id or _trigger_id(),
        }
    )


def _find_block_id(blocks: Any, action_id: str) -> str | None:
    for block in blocks or []:
        if not isinstance(block, dict):
            continue
        elements = list(block.get("elements") or [])
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        if isinstance(block.get("element"), dict):
            elements.append(block["element"])
        if any(isinstance(e, dict) and e.get("action_id") == action_id for e in elements):
            return block.get("block_id")
    return None


def block_actions_body(
    user_id: str,
    action_id: str,
    value: str | None = None,
    message: Mapping[str, Any] | None = None,
    channel_id: str | None = None,
    response_url: str | None = None,
    container: Mapping[str, Any] | None = None,
    *,
    is_ephemeral: bool = False,
    view: Mapping[str, Any] | None = None,
    block_id: str | None = None,
    action: Mapping[str, Any] | None = None,
    action_text: str = "Button",
    state_values: Mapping[str, Any] | None = None,
    user_name: str | None = None,
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    api_app_id: str = DEFAULT_APP_ID,
    trigger_id: str | None = None,
    token: str = DEFAULT_VERIFICATION_TOKEN,
) -> bytes:
    """A ``block_actions`` interaction (a button click) as Slack POSTs it.

    * From a message (default): pass the ``message`` dict (for example one from
      ``SlackFake.messages()``/``dm()``) and its ``channel_id``; without ``message`` a
      minimal bot message with a fresh ``ts`` is used. The payload carries ``message``,
      ``channel`` and a ``message`` container.
    * From an ephemeral message (``is_ephemeral=True``): Slack sends no ``message``, only
      the container with ``message_ts`` and ``is_ephemeral: true``.
    * From a view (``view=`` a Home tab or modal view dict): a ``view`` container and the
      ``view``; no channel or message.

    ``action`` replaces the default button action element (for selects and the like);
    ``container`` replaces the derived container.
    """
    actions_ts = _message_ts()
    element: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": action_text, "emoji": True},
    }
    if value is not None:
        element["value"] = value
    if action is not None:
        element = {**element, **dict(action)}
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id, user_name, team_id),
        "api_app_id": api_app_id,
        "token": token,
        "trigger_id": trigger_id or _trigger_id(),
        "team": {"id": team_id, "domain": team_domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "state": {"values": dict(state_values or {})},
    }
    blocks: Any = None
    if view is not None:
        blocks = view.get("blocks")
        payload["container"] = dict(container or {"type": "view", "view_id": view.get("id")})
        payload["view"] = dict(view)
        if channel_id is not None:
            payload["channel"] = {"id": channel_id, "name": _channel_name(channel_id)}
    else:
        cid = channel_id or (message or {}).get("channel") or DEFAULT_CHANNEL_ID
        if message is None:
            message = {
                "type": "message",
                "ts": _message_ts(),
                "user": DEFAULT_BOT_USER_ID,
                "bot_id": DEFAULT_BOT_ID,
                "app_id": api_app_id,
                "text": "",
                "team": team_id,
                "blocks": [],
            }
        blocks = message.get("blocks")
        payload["container"] = dict(
            container
            or {
                "type": "message",
                "message_ts": message["ts"],
                "channel_id": cid,
                "is_ephemeral": is_ephemeral,
            }
        )
        payload["channel"] = {"id": cid, "name": _channel_name(cid)}
        if not is_ephemeral:
            payload["message"] = dict(message)
        payload["response_url"] = response_url or _default_response_url("actions", team_id)
    if response_url is not None:
        payload["response_url"] = response_url
    element["block_id"] = block_id or _find_block_id(blocks, action_id) or "actions"
    element["action_ts"] = actions_ts
    payload["actions"] = [element]
    return _payload_form(payload)


def _channel_name(channel_id: str) -> str:
    return "directmessage" if channel_id.startswith("D") else "sandbox"


def _state_value(value: Any) -> Any:
    if isinstance(value, str) or value is None:
        return {"type": "plain_text_input", "value": value}
    return value


def view_submission_body(
    user_id: str,
    callback_id: str,
    private_metadata: str = "",
    state_values: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    view: Mapping[str, Any] | None = None,
    view_id: str | None = None,
    blocks: list[dict[str, Any]] | None = None,
    title: str = "IAM Steward",
    response_urls: list[dict[str, Any]] | None = None,
    user_name: str | None = None,
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    api_app_id: str = DEFAULT_APP_ID,
    trigger_id: str | None = None,
    token: str = DEFAULT_VERIFICATION_TOKEN,
) -> bytes:
    """A ``view_submission`` (a modal's Submit) as Slack POSTs it.

    ``state_values`` is ``{block_id: {action_id: element_state}}``; an element state given
    as a plain string is shorthand for ``{"type": "plain_text_input", "value": ...}``.
    ``view`` (for example one from ``SlackFake.modals()``) supplies the other view fields.
    """
    values = {
        block: {action: _state_value(state) for action, state in actions.items()}
        for block, actions in (state_values or {}).items()
    }
    base = dict(view or {})
    vid = view_id or base.get("id") or f"V0{secrets.token_hex(4).upper()}"
    submitted: dict[str, Any] = {
        "id": vid,
        "team_id": team_id,
        "type": "modal",
        "blocks": blocks if blocks is not None else base.get("blocks", []),
        "private_metadata": private_metadata,
        "callback_id": callback_id,
        "state": {"values": values},
        "hash": base.get("hash") or f"{int(time.time())}.{secrets.token_hex(4)}",
        "title": base.get("title") or {"type": "plain_text", "text": title, "emoji": True},
        "clear_on_close": base.get("clear_on_close", False),
        "notify_on_close": base.get("notify_on_close", False),
        "close": base.get("close"),
        "submit": base.get("submit") or {"type": "plain_text", "text": "Submit", "emoji": True},
        "previous_view_id": base.get("previous_view_id"),
        "root_view_id": base.get("root_view_id") or vid,
        "app_id": api_app_id,
        "external_id": base.get("external_id", ""),
        "app_installed_team_id": team_id,
        "bot_id": DEFAULT_BOT_ID,
    }
    payload = {
        "type": "view_submission",
        "team": {"id": team_id, "domain": team_domain},
        "user": _user(user_id, user_name, team_id),
        "api_app_id": api_app_id,
        "token": token,
        "trigger_id": trigger_id or _trigger_id(),
        "view": submitted,
        "response_urls": list(response_urls or []),
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return _payload_form(payload)


def url_verification_body(challenge: str, *, token: str = DEFAULT_VERIFICATION_TOKEN) -> bytes:
    """The Events API URL verification handshake (JSON)."""
    return json.dumps({"token": token, "challenge": challenge, "type": "url_verification"}).encode(
        "utf-8"
    )


def ssl_check_body(*, token: str = DEFAULT_VERIFICATION_TOKEN) -> bytes:
    """The SSL certificate check Slack POSTs to slash command URLs (form)."""
    return _form({"ssl_check": "1", "token": token})


def event_callback_body(
    event: Mapping[str, Any],
    *,
    team_id: str = DEFAULT_TEAM_ID,
    api_app_id: str = DEFAULT_APP_ID,
    event_id: str | None = None,
    event_time: int | None = None,
    token: str = DEFAULT_VERIFICATION_TOKEN,
) -> bytes:
    """An Events API ``event_callback`` (JSON), e.g. ``{"type": "app_home_opened",
    "user": "U...", "tab": "home"}``."""
    return json.dumps(
        {
            "token": token,
            "team_id": team_id,
            "api_app_id": api_app_id,
            "event": dict(event),
            "type": "event_callback",
            "event_id": event_id or f"Ev0{secrets.token_hex(5).upper()}",
            "event_time": int(time.time()) if event_time is None else event_time,
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": team_id,
                    "user_id": DEFAULT_BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
    ).encode("utf-8")
