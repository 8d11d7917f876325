"""Risky-change messages (pure Block Kit builders): the actor's "Did you do this?" DM, the
reason modal, and the security channel's escalation with one-click containment.

Buttons carry the event's opaque token (and the containment's position in the event's
list), never data. Action ids: `activity:yes`, `activity:no`, `activity:ack`,
`activity:contain:<n>`; the Undo of a containment is the remediation's own Undo,
`remediation:undo:<n>` (Slack refuses an actions block whose action ids repeat, and the
n tells the Undos of one message apart; bot/slack/listeners/actions.py routes them all).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    HeaderBlock,
    InputBlock,
    PlainTextInputElement,
    PlainTextObject,
)
from slack_sdk.models.views import View

from bot.core.decisions import Answer, activity_action_id
from bot.slack.blocks.common import SEVERITY_MARK, context, escape, mention, mrkdwn_section
from checks.activity.rules import BY_ID as RULES

REASON_MAX = 1000
YES_MODAL = "activity_yes_modal"


@dataclass(frozen=True)
class ContainmentView:
    """One containment option as the security channel sees it: its button, or what became
    of it (a remediation's outcome line, with the remediation's Undo while possible). `again`:
    the outcome (an undo) is history and the button is offered again beside it."""

    label: str
    outcome: str | None = None
    undo_token: str | None = None
    undo_label: str = "Undo"
    pending: bool = False
    again: bool = False


def undo_action_id(index: int) -> str:
    """The Undo of containment `index` (one per containment: unique within the actions block)."""
    return f"remediation:undo:{index}"


def facts_lines(row) -> list[str]:
    f = row.facts or {}
    return [
        f"*What:* `{escape(f.get('event', '?'))}` — {escape(row.summary)}",
        f"*By:* {escape(f.get('actor', '?'))}",
        f"*From:* {escape(f.get('ip', '?'))} · {escape(f.get('user_agent', '?'))[:150]}",
        f"*When:* {escape(f.get('time', '?'))} · account `{escape(row.account_id)}` · {escape(f.get('region', ''))}",
    ]


def ask_dm(row, *, minutes: int) -> list[Block]:
    """The actor's DM: the facts and Yes (a reason, in a modal) / No."""
    mark = SEVERITY_MARK.get(row.severity, "•")
    return [
        HeaderBlock(text=PlainTextObject(text="Did you do this?")),
        mrkdwn_section(f"{mark} Steward saw a risky IAM change made with your identity:\n" + "\n".join(facts_lines(row))),
        context(f"If you do not answer within {minutes} minutes, the security team is asked to look at it. "
                f"Event `{escape(row.event_id)}`."),
        ActionsBlock(block_id=f"a:{row.token}", elements=[
            ButtonElement(text="Yes, it was me", action_id=activity_action_id(Answer.YES), value=row.token, style="primary"),
            ButtonElement(text="No, this wasn't me", action_id=activity_action_id(Answer.NO), value=row.token, style="danger",
                          confirm=ConfirmObject(title="Not you?", confirm="It wasn't me", deny="Cancel",
                                                text="The security team is told at once and can contain it.")),
        ]),
    ]


def answered_dm(row) -> list[Block]:
    """The DM once answered (or handed to security): the facts and what happened."""
    line = {
        "confirmed": f":white_check_mark: You confirmed it: “{escape(row.reason or '')}”. Thanks — recorded.",
        "denied": ":rotating_light: You said this wasn't you. The security team has it now.",
        "unanswered": ":hourglass: No answer in time: the security team has been asked to look at it.",
    }.get(row.state, f"State: {escape(row.state)}")
    return [
        HeaderBlock(text=PlainTextObject(text="Did you do this?")),
        mrkdwn_section("\n".join(facts_lines(row))),
        context(line),
    ]


def yes_modal(token: str) -> View:
    return View(
        type="modal",
        callback_id=YES_MODAL,
        private_metadata=token,
        title=PlainTextObject(text="It was me"),
        submit=PlainTextObject(text="Confirm"),
        close=PlainTextObject(text="Cancel"),
        blocks=[InputBlock(
            block_id="reason",
            label=PlainTextObject(text="Why did you make this change?"),
            element=PlainTextInputElement(action_id="value", multiline=True, max_length=REASON_MAX,
                                          placeholder=PlainTextObject(text="e.g. ticket OPS-123: new deploy key")),
        )],
    )


def validate_reason(reason: str | None) -> tuple[str, str | None]:
    text = (reason or "").strip()
    if len(text) < 3:
        return text, "Please say why, in a few words (the security team reads it)."
    if len(text) > REASON_MAX:
        return text, f"At most {REASON_MAX} characters."
    return text, None


_WHY = {
    "denied": "{person} says this *wasn't them*.",
    "unanswered": "{person} did not answer within {minutes} minutes.",
    "escalated": "{why}",
    "confirmed": "{person} confirmed it: “{reason}”.",
}


def security_message(row, options: Sequence[ContainmentView], *, minutes: int,
                     why: str = "") -> list[Block]:
    """The escalation: facts, why it is here, and one button per containment (or its outcome)."""
    mark = SEVERITY_MARK.get(row.severity, "•")
    reason_line = _WHY.get(row.state, "{why}").format(
        person=mention(row.person), minutes=minutes, why=why or "Sent straight to security.",
        reason=escape(row.reason or ""))
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=f"Risky IAM change: {_title(row.rule_id)}"[:150])),
        mrkdwn_section(f"{mark} " + reason_line + "\n" + "\n".join(facts_lines(row))),
    ]
    buttons = []
    lines = []
    for index, option in enumerate(options):
        if option.outcome:
            lines.append(option.outcome)
            if option.undo_token and not option.pending:
                buttons.append(ButtonElement(text=f"{option.undo_label}: {option.label}"[:75],
                                             action_id=undo_action_id(index), value=option.undo_token))
        if not option.outcome or option.again:
            buttons.append(ButtonElement(text=option.label[:75], action_id=activity_action_id(Answer.CONTAIN, index),
                                         value=row.token, style="danger" if not buttons else None,
                                         confirm=ConfirmObject(title="Contain?", confirm="Do it", deny="Cancel",
                                                               text=f"{option.label}. Steward records it and "
                                                                    "offers Undo where possible.")))
    if lines:
        blocks.append(mrkdwn_section("\n".join(lines)))
    if row.acknowledged_by:
        blocks.append(context(f":eyes: Acknowledged by {mention(row.acknowledged_by)}."))
    elif row.state != "confirmed":
        buttons.append(ButtonElement(text="Acknowledge", action_id=activity_action_id(Answer.ACK), value=row.token))
    if buttons:
        # Slack allows 25 elements per actions block; a message has at most a few options.
        blocks.append(ActionsBlock(block_id=f"s:{row.token}", elements=buttons[:25]))
    if not options:
        blocks.append(context("Steward cannot contain this one itself (root, or no IAM principal to act on): "
                              "check it in the console."))
    return blocks


def _title(rule_id: str) -> str:
    rule = RULES.get(rule_id)
    return rule.title if rule else rule_id


def fallback_text(row) -> str:
    return f"Risky IAM change in {row.account_id}: {row.summary}"[:300]


def option_views(containment: Sequence[Mapping], outcomes: Mapping[int, ContainmentView]) -> list[ContainmentView]:
    return [outcomes.get(i) or ContainmentView(label=str(c.get("label") or c.get("action"))) for i, c in
            enumerate(containment)]
