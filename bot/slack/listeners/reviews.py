"""Access-review buttons and modals: ack at once, then call the review service.

Action ids come from bot.core.decisions (`REVIEW_BUTTONS`); values are opaque tokens. The Slack
user id always comes from the signed payload. Replies to the clicker are ephemeral.
"""

from __future__ import annotations

import logging
import re

from slack_bolt import App

from bot.core.decisions import REVIEW_BUTTONS, ReviewChoice, parse_review_action_id
from bot.services.reviews import ReviewRefusal
from bot.slack.blocks import reviews as rb
from bot.slack.listeners.errors import answered

log = logging.getLogger(__name__)

#: Every review button (tests check each one in bot.core.decisions is matched here).
#: The page buttons share a block, so each has its own id: `review:page:previous` / `:next`.
REVIEW_ACTION = re.compile(r"^review:(" + "|".join(re.escape(c.value) for c in REVIEW_BUTTONS)
                           + r"|page:previous|page:next)$")


def _ack(ack) -> None:
    ack()


def _page_value(value: str) -> tuple[str, int]:
    token, _, page = (value or "").rpartition(":")
    return token, int(page) if page.isdigit() else 0


def register(app: App, steward) -> None:
    reviews = steward.reviews

    def reply(respond, text: str) -> None:
        response = respond(text=text, response_type="ephemeral", replace_original=False)
        if response.status_code != 200:
            log.warning("could not reply to a review click: HTTP %s", response.status_code)

    def on_click(body, action, respond, client):
        user, value = body["user"]["id"], action.get("value", "")
        choice = parse_review_action_id(action["action_id"].removesuffix(":previous").removesuffix(":next"))
        try:
            if choice is ReviewChoice.STILL_NEEDED:
                reply(respond, f":white_check_mark: {reviews.still_needed(user, value)}")
            elif choice is ReviewChoice.NOT_MINE:
                reply(respond, f":leftwards_arrow_with_hook: {reviews.not_mine(user, value)}")
            elif choice is ReviewChoice.ALL_STILL_NEEDED:
                reply(respond, f":white_check_mark: {reviews.all_still_needed(user, *_page_value(value))}")
            elif choice is ReviewChoice.PAGE:
                reviews.turn_page(user, *_page_value(value))
            elif choice is ReviewChoice.DETAILS:
                # views.open needs the trigger id within 3 s: this lazy listener runs at once
                view = reviews.open_details(user, *_page_value(value))
                client.views_open(trigger_id=body["trigger_id"], view=view)
            elif choice is ReviewChoice.REMOVE:
                item = reviews.check_can_decide(user, value)
                if not any(e.get("removable") for e in (item.snapshot or {}).get("entitlements", [])):
                    reply(respond, ":no_entry: Steward cannot remove any of this identity's access itself "
                                   "(a service-linked role, or keys it has no id for). Delegate it to the security "
                                   "team with Not mine, or decide Still needed.")
                    return
                client.views_open(trigger_id=body["trigger_id"], view=rb.remove_modal(item, private_metadata=value))
            elif choice is ReviewChoice.DELEGATE:
                item = reviews.check_can_decide(user, value)
                client.views_open(trigger_id=body["trigger_id"], view=rb.delegate_modal(item, private_metadata=value))
        except ReviewRefusal as exc:
            reply(respond, f":no_entry: {exc}")

    def _values(view) -> dict:
        return view["state"]["values"]

    def on_remove_ack(ack, view):
        chosen = [o["value"] for o in (_values(view).get("entitlements", {}).get("value") or {})
                  .get("selected_options", [])]
        reason = ((_values(view).get("reason", {}).get("value") or {}).get("value") or "").strip()
        if not chosen:
            ack(response_action="errors", errors={"entitlements": "Choose at least one entitlement."})
        elif len(reason) > rb.REASON_MAX:
            ack(response_action="errors", errors={"reason": f"At most {rb.REASON_MAX} characters."})
        else:
            ack()

    def on_remove_submit(body, view, client):
        chosen = [o["value"] for o in (_values(view).get("entitlements", {}).get("value") or {})
                  .get("selected_options", [])]
        reason = ((_values(view).get("reason", {}).get("value") or {}).get("value") or "").strip()
        user = body["user"]["id"]
        if not chosen:
            return
        try:
            text = reviews.remove(user, view.get("private_metadata") or "", chosen, reason=reason[:rb.REASON_MAX])
        except ReviewRefusal as exc:
            text = f":no_entry: Nothing removed: {exc}"
        client.chat_postMessage(channel=user, text=f":scissors: {text}")

    def on_delegate_ack(ack, view):
        reason = ((_values(view).get("reason", {}).get("value") or {}).get("value") or "").strip()
        to = (_values(view).get("delegate", {}).get("value") or {}).get("selected_user")
        if not to:
            ack(response_action="errors", errors={"delegate": "Choose a person."})
        elif len(reason) < 5:
            ack(response_action="errors", errors={"reason": "Say why in a few words: it is kept as evidence."})
        else:
            ack()

    def on_delegate_submit(body, view, client):
        reason = ((_values(view).get("reason", {}).get("value") or {}).get("value") or "").strip()
        to = (_values(view).get("delegate", {}).get("value") or {}).get("selected_user") or ""
        user = body["user"]["id"]
        if not to or len(reason) < 5:
            return
        try:
            text = f":leftwards_arrow_with_hook: {reviews.delegate(user, view.get('private_metadata') or '', to, reason)}"
        except ReviewRefusal as exc:
            text = f":no_entry: Not delegated: {exc}"
        client.chat_postMessage(channel=user, text=text)

    app.action(REVIEW_ACTION)(ack=_ack, lazy=[answered(on_click, steward.engine)])
    # A modal's errors travel in the ack; the work runs after it (lazy), answered by DM.
    app.view("review_remove_modal")(ack=on_remove_ack, lazy=[answered(on_remove_submit, steward.engine)])
    app.view("review_delegate_modal")(ack=on_delegate_ack, lazy=[answered(on_delegate_submit, steward.engine)])
