"""Buttons, selects and the Keep… modal: ack at once, then call the campaign service.

The Slack user id always comes from the signed payload (`body["user"]["id"]`); button
values are opaque tokens. Replies to the clicker are ephemeral (`replace_original` false).
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from bot.core.decisions import Choice, parse_action_id
from bot.services.campaigns import Refusal
from bot.slack.blocks import approvals, dm
from bot.slack.listeners.errors import answered

log = logging.getLogger(__name__)

UNDO_BUTTON = re.compile(r"^remediation:undo(:\d+)?$")
FINDING_BUTTON = re.compile(r"^finding:(remediate:[a-z-]+|request_removal|not_mine|rotate|rotate_for_me|ack)$")


def _ack(ack) -> None:
    ack()


def register(app: App, steward) -> None:
    """Clicks are acked at once; the work (AWS calls, message updates) runs lazily after."""
    campaigns = steward.campaigns

    def reply(respond, text: str) -> None:
        response = respond(text=text, response_type="ephemeral", replace_original=False)
        if response.status_code != 200:
            log.warning("could not reply to a click: HTTP %s", response.status_code)

    def attempt(respond, work) -> None:
        try:
            reply(respond, work())
        except Refusal as exc:
            reply(respond, f":no_entry: {exc}")

    def on_button(body, action, respond):
        choice, remediation = parse_action_id(action["action_id"])
        attempt(respond, lambda: campaigns.click(body["user"]["id"], choice, action.get("value", ""),
                                                 action=remediation))

    def on_snooze(body, action, respond):
        token, _, days = action["selected_option"]["value"].rpartition(":")
        attempt(respond, lambda: campaigns.click(body["user"]["id"], Choice.SNOOZE, token,
                                                 days=int(days) if days.isdigit() else None))

    def open_keep(body, token, respond, client):
        user = body["user"]["id"]
        try:
            finding = campaigns.check_can_decide(user, token)
        except Refusal as exc:
            reply(respond, f":no_entry: {exc}")
            return
        default_end = (campaigns.clock() + timedelta(days=min(30, steward.settings.exception_max_days))).date()
        client.views_open(trigger_id=body["trigger_id"], view=dm.keep_modal(
            token, max_days=steward.settings.exception_max_days, default_end=default_end.isoformat(),
            private_metadata=token, finding=finding, accounts=campaigns.account_names([finding.account_id])))

    def on_keep(body, action, respond, client):
        open_keep(body, action.get("value", ""), respond, client)

    def on_more(body, action, respond, client):
        """A card's "More…" select: the same choices as the buttons, for one finding."""
        try:
            choice, remediation, days, token = dm.parse_more_value((action.get("selected_option") or {}).get("value"))
        except ValueError:
            reply(respond, ":no_entry: That choice is not one Steward offered.")
            return
        if choice is Choice.EXCEPTION:
            open_keep(body, token, respond, client)
            return
        if choice is Choice.SHOW_POLICY:
            show_policy(body, token, respond, client)
            return
        attempt(respond, lambda: campaigns.click(body["user"]["id"], choice, token, action=remediation, days=days))

    def show_policy(body, token, respond, client):
        """The right-sized policy's JSON in a modal, for the owner or an approver (changes nothing)."""
        from bot.slack.blocks.usage import policy_modal

        try:
            finding = campaigns.authorized_finding(body["user"]["id"], token, "show_policy")
        except Refusal as exc:
            reply(respond, f":no_entry: {exc}")
            return
        client.views_open(trigger_id=body["trigger_id"], view=policy_modal(finding))

    def on_show_policy(body, action, respond, client):
        show_policy(body, action.get("value", ""), respond, client)

    def on_keep_submit(ack, body, view, client):
        values = view["state"]["values"]
        reason = (values.get("reason", {}).get("value") or {}).get("value") or ""
        until_text = (values.get("until", {}).get("value") or {}).get("selected_date")
        errors, until = campaigns.validate_keep(reason, until_text)
        if errors:
            ack(response_action="errors", errors=errors)
            return
        user = body["user"]["id"]
        try:
            text = campaigns.keep(user, view["private_metadata"], reason=reason.strip(), until=until)
        except Refusal as exc:
            ack(response_action="errors", errors={"reason": str(exc)})
            return
        ack()
        # One rule for confirmations: private to the clicker, where the card is (the card
        # itself now says "Kept until … by @X" for everyone who sees it).
        channel = campaigns.card_channel(view["private_metadata"]) or user
        try:
            client.chat_postEphemeral(channel=channel, user=user, text=f":pushpin: {text}")
        except SlackApiError as exc:
            log.warning("could not confirm a Keep: %s", exc.response.get("error"))

    def on_assign(body, action, respond):
        token = (action.get("block_id") or "").removeprefix("f:")
        attempt(respond, lambda: campaigns.assign(body["user"]["id"], token, action["selected_user"]))

    def on_approve(body, action, respond):
        # The approval message is rebuilt by the service; the requester gets a DM line.
        attempt(respond, lambda: campaigns.approval(body["user"]["id"], action.get("value", ""), True))

    def on_undo_approve(body, action, respond):
        attempt(respond, lambda: campaigns.undo_approval(body["user"]["id"], action.get("value", ""), True))

    def on_reject(body, action, respond, client):
        """Reject… asks for a reason first (a modal); the submission does the rejecting."""
        kind = "undo" if action["action_id"] == "remediation:undo_reject" else "do"
        user, token = body["user"]["id"], action.get("value", "")
        try:
            campaigns.check_can_reject(user, token, undo=kind == "undo")
        except Refusal as exc:
            reply(respond, f":no_entry: {exc}")
            return
        client.views_open(trigger_id=body["trigger_id"], view=approvals.reject_modal(kind, token))

    def on_reject_ack(ack, view):
        # A modal's errors travel in the ack; the rejecting itself runs after it (lazy).
        values = view["state"]["values"]
        _reason, error = approvals.validate_reason((values.get("reason", {}).get("value") or {}).get("value"))
        if error:
            ack(response_action="errors", errors={"reason": error})
        else:
            ack()

    def on_reject_submit(body, view, client):
        values = view["state"]["values"]
        reason, error = approvals.validate_reason((values.get("reason", {}).get("value") or {}).get("value"))
        if error:
            return
        kind, _, token = (view.get("private_metadata") or "").partition(":")
        user = body["user"]["id"]
        decide = campaigns.undo_approval if kind == "undo" else campaigns.approval
        try:
            decide(user, token, False, reason=reason)
        except Refusal as exc:  # e.g. approved by someone else meanwhile: say so privately
            client.chat_postMessage(channel=user, text=f":no_entry: Not rejected: {exc}")

    def on_undo(body, action, respond):
        attempt(respond, lambda: campaigns.undo(body["user"]["id"], action.get("value", "")))

    def on_home(event, client):
        if event.get("tab", "home") != "home":
            return
        client.views_publish(user_id=event["user"], view=steward.home_view(event["user"]))

    for matcher, work in (
        (FINDING_BUTTON, on_button),
        ("finding:snooze", on_snooze),
        ("finding:keep", on_keep),  # views.open needs the trigger id within 3 s: lazy runs at once
        ("finding:show_policy", on_show_policy),
        (dm.MORE_ACTION, on_more),  # may open the Keep… modal too
        ("finding:assign", on_assign),
        ("remediation:approve", on_approve),
        ("remediation:undo_approve", on_undo_approve),
        # views.open needs the trigger id within 3 s: lazy runs at once
        (re.compile(r"^remediation:(undo_)?reject$"), on_reject),
        # A DM card's Undo, or one of an escalation's or a review's several (`remediation:undo:<n>`).
        (UNDO_BUTTON, on_undo),
    ):
        app.action(matcher)(ack=_ack, lazy=[answered(work, steward.engine)])
    # A guide is a link button: Slack opens the page and still sends the click, acked only.
    app.action(re.compile(r"^finding:guide(:\d+)?$"))(_ack)
    # A modal's errors travel in the ack, so the submission is handled before answering.
    app.view("keep_modal")(on_keep_submit)
    app.view("reject_modal")(ack=on_reject_ack, lazy=[answered(on_reject_submit, steward.engine)])
    app.event("app_home_opened")(ack=_ack, lazy=[answered(on_home, steward.engine)])
