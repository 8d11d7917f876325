"""Buttons and the reason modal of risky-change messages: ack at once, then the activity
service (bot/services/activity.py). The Slack user comes from the signed payload; button
values are the event's opaque token."""

from __future__ import annotations

import logging
import re

from slack_bolt import App

from bot.core.decisions import Answer, parse_activity_action
from bot.services.approvals import Refusal
from bot.slack.blocks import activity as blocks
from bot.slack.listeners.errors import answered

log = logging.getLogger(__name__)

# Every activity button (walked by tests/bot/test_activity_buttons.py against the builders).
ACTIVITY_BUTTON = re.compile(r"^activity:(yes|no|ack|contain:\d+)$")


def _ack(ack) -> None:
    ack()


def register(app: App, steward) -> None:
    activity = steward.activity

    def reply(respond, text: str) -> None:
        respond(text=text, response_type="ephemeral", replace_original=False)

    def on_button(body, action, respond, client):
        user, token = body["user"]["id"], action.get("value", "")
        answer, index = parse_activity_action(action["action_id"])
        try:
            if answer is Answer.YES:  # the reason first: a modal (views.open needs the trigger within 3 s)
                activity.check_can_answer(user, token)
                client.views_open(trigger_id=body["trigger_id"], view=blocks.yes_modal(token))
                return
            work = {Answer.NO: lambda: activity.deny(user, token),
                    Answer.ACK: lambda: activity.acknowledge(user, token),
                    Answer.CONTAIN: lambda: activity.contain(user, token, index or 0)}[answer]
            reply(respond, work())
        except Refusal as exc:
            reply(respond, f":no_entry: {exc}")

    def on_yes_submit(ack, body, view, client):
        reason = ((view["state"]["values"].get("reason", {}).get("value") or {}).get("value")) or ""
        _text, error = blocks.validate_reason(reason)
        if error:
            ack(response_action="errors", errors={"reason": error})
            return
        try:
            activity.confirm(body["user"]["id"], view.get("private_metadata") or "", reason=reason)
        except Refusal as exc:
            ack(response_action="errors", errors={"reason": str(exc)})
            return
        ack()

    app.action(ACTIVITY_BUTTON)(ack=_ack, lazy=[answered(on_button, steward.engine)])
    app.view(blocks.YES_MODAL)(on_yes_submit)
