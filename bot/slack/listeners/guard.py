"""Global Bolt middleware: requests from the wrong workspace or app, and replays, stop here.

Runs after Bolt's own checks (signature, SSL check, URL verification) and before any
listener, for HTTP and Socket Mode alike. Both refusals are audited and answered.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from slack_bolt.response import BoltResponse

from bot.slack import replay
from bot.slack.listeners.errors import (
    actor_of,
    attempted,
    failure_text,
    record_failure,
    reply_privately,
)

log = logging.getLogger(__name__)

REPLAYED = "This request was already handled once; nothing was done again."
FOREIGN = "This Steward serves another Slack workspace; nothing was done."


def request_keys(body: Mapping[str, Any], headers: Mapping[str, Any]) -> list[str]:
    """What identifies one interaction: the HTTP signature (unique per signed request), the
    trigger id and action time of a click or command, the event id of an event."""

    def digest(*parts: Any) -> str:
        return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()

    keys = []
    signature = (headers.get("x-slack-signature") or [None])[0]
    if signature:
        keys.append("sig:" + digest(signature))
    trigger = body.get("trigger_id")
    if body.get("type") == "block_actions" and trigger:
        keys.append("act:" + digest(trigger, *((a or {}).get("action_ts") for a in body.get("actions") or [])))
    elif trigger:  # slash commands and view submissions: a fresh trigger id each time
        keys.append("trg:" + digest(trigger))
    if body.get("event_id"):
        keys.append("evt:" + digest(body["event_id"]))
    return keys


def team_of(body: Mapping[str, Any]) -> str | None:
    team = body.get("team")
    if isinstance(team, dict):
        return team.get("id")
    if body.get("team_id"):
        return body["team_id"]
    user = body.get("user")
    return user.get("team_id") if isinstance(user, dict) else None


def answer(body: Mapping[str, Any], respond, text: str) -> BoltResponse:
    """The one reply to a request stopped here: in the ack for a command, else privately
    through the response URL (a modal or an event has none: the ack is empty)."""
    if "command" in body:
        return BoltResponse(status=200, body={"response_type": "ephemeral", "text": text})
    if body.get("response_url"):
        reply_privately(respond, text)
    return BoltResponse(status=200, body="")


def build(steward, *, team_id: str | None, app_id: str | None):
    """The middleware; `team_id`/`app_id` None means not checked (see bot/slack/app.py)."""

    def refuse(body, respond, reason: str, text: str) -> BoltResponse:
        try:
            steward.record_refusal(actor_of(body), attempted(body), reason)
        except Exception as exc:
            log.error("could not audit a refused request: %s", type(exc).__name__)
        return answer(body, respond, text)

    def guard(body, request, respond, next):
        if team_id and team_of(body) != team_id:
            return refuse(body, respond, "request from another workspace", FOREIGN)
        if app_id and body.get("api_app_id") != app_id:
            return refuse(body, respond, "request for another app", FOREIGN)
        try:
            fresh = replay.claim(steward.engine, request_keys(body, request.headers), now=steward.clock())
        except Exception as error:  # the database is locked or gone: say so, change nothing
            log.error("replay check failed: %s", type(error).__name__)
            record_failure(steward.engine, body, error)
            return answer(body, respond, failure_text("take this request", error))
        if not fresh:
            return refuse(body, respond, "replayed request", REPLAYED)
        return next()

    return guard
