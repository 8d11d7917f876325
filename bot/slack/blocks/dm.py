"""Owner DMs and security-channel messages about findings (pure Block Kit builders).

A message lists findings; each finding is a section with the facts and either its buttons
or what was decided (who, when), with Undo while undo is possible. Messages are rebuilt
from the database on every change and replaced in place with chat.update.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    HeaderBlock,
    Option,
    PlainTextObject,
    StaticSelectElement,
    UserSelectElement,
)

from bot.core.decisions import SECURITY_ONLY, SNOOZE_DAYS, Button, Choice, buttons_for
from bot.core.report import short_resource, summary
from bot.slack.blocks.common import (
    SEVERITY_MARK,
    console_url,
    context,
    escape,
    link,
    mrkdwn_section,
)
from checks.catalog import BY_ID

# Header, intro and footer take 3 blocks; each finding at most 3 (facts, status, buttons).
FINDINGS_PER_MESSAGE = 15


@dataclass(frozen=True)
class Outcome:
    """What happened to a finding, for display: a remediation or a decision."""

    text: str  # mrkdwn, one line
    undo_token: str | None = None  # a remediation that can still be undone
    pending: bool = False  # waiting for a security approver
    undo_label: str = "Undo"  # "Ask to undo" when the undo needs a second person


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def finding_section(finding, *, with_rationale: bool = True) -> Block:
    spec = BY_ID[finding.check_id]
    mark = SEVERITY_MARK.get(finding.severity, "•")
    resource = link(console_url(finding.resource), short_resource(finding.resource))
    lines = [f"{mark} *{escape(finding.title)}* — {resource} in `{finding.account_id}`"]
    facts = summary(finding.check_id, finding.details or {})
    if facts:
        lines.append(escape(facts))
    if (finding.details or {}).get("explanation"):  # escalation: the path or method, one line
        lines.append(escape(finding.details["explanation"]))
    if with_rationale:
        lines.append(f"_{escape(spec.rationale)}_")
    return mrkdwn_section("\n".join(lines))


def button(spec: Button, token: str) -> ButtonElement:
    confirm = None
    if spec.confirm:
        confirm = ConfirmObject(title="Are you sure?", text=spec.confirm, confirm="Yes, go ahead", deny="Cancel")
    return ButtonElement(text=spec.label, action_id=spec.action_id, value=token, style=spec.style, confirm=confirm)


def snooze_select(token: str) -> StaticSelectElement:
    return StaticSelectElement(
        placeholder="Snooze",
        action_id="finding:snooze",
        options=[Option(text=f"Snooze {d} days", value=f"{token}:{d}") for d in SNOOZE_DAYS],
    )


def finding_actions(finding, *, dry_run: bool = False) -> ActionsBlock:
    elements = []
    for spec in buttons_for(finding.check_id, finding.details or {}):
        elements.append(snooze_select(finding.token) if spec.choice is Choice.SNOOZE else button(spec, finding.token))
    return ActionsBlock(block_id=f"f:{finding.token}", elements=elements)


def undo_actions(token: str, label: str = "Undo") -> ActionsBlock:
    return ActionsBlock(
        block_id=f"r:{token}",
        elements=[ButtonElement(text=label, action_id="remediation:undo", value=token)],
    )


def finding_blocks(finding, outcome: Outcome | None, *, dry_run: bool = False,
                   deadline: tuple[datetime, str] | None = None) -> list[Block]:
    blocks: list[Block] = [finding_section(finding)]
    if outcome is None:
        if deadline:
            blocks.append(context(f":robot_face: Unless you decide by *{deadline[0]:%Y-%m-%d}*, Steward will "
                                  f"*{deadline[1].lower()}* itself (reversible: you can undo it)."))
        blocks.append(finding_actions(finding, dry_run=dry_run))
        return blocks
    blocks.append(context(outcome.text))
    if outcome.undo_token:
        blocks.append(undo_actions(outcome.undo_token, outcome.undo_label))
    return blocks


def owner_dm(findings: Sequence, outcomes: Mapping[str, Outcome], *, dry_run: bool = False,
             part: tuple[int, int] = (1, 1), deadlines: Mapping[str, tuple[datetime, str]] | None = None) -> list[Block]:
    """One DM: the owner's findings (at most FINDINGS_PER_MESSAGE), decided or not."""
    count = len(findings)
    title = "IAM Steward: a few things to tidy up in AWS" if count > 1 else "IAM Steward: one thing to tidy up in AWS"
    if part[1] > 1:
        title += f" ({part[0]}/{part[1]})"
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=title[:150])),
        context("These IAM identities are tagged as yours. Pick what should happen; reversible "
                "changes happen at once, the rest goes to the security team for approval."),
    ]
    for finding in findings:
        blocks.extend(finding_blocks(finding, outcomes.get(finding.token), dry_run=dry_run,
                                     deadline=(deadlines or {}).get(finding.token)))
    blocks.append(context(_footer(dry_run)))
    return blocks


def _footer(dry_run: bool) -> str:
    text = "Questions? Ask in the security channel. `/iam whoami` shows everything Steward knows about you."
    if dry_run:
        text = ":test_tube: *Dry run*: Steward records decisions but changes nothing in AWS. " + text
    return text


def dm_fallback_text(findings: Sequence) -> str:
    return f"IAM Steward: {len(findings)} finding(s) about IAM identities you own need a decision."


# ---------------------------------------------------------------------------------------
# Security channel


def triage_message(findings: Sequence, outcomes: Mapping[str, Outcome], *, reason: str) -> list[Block]:
    """Findings for the security team: ownerless ones get a user picker to assign an owner."""
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=f"IAM Steward triage: {len(findings)} finding(s)")),
        context(reason),
    ]
    for finding in findings:
        blocks.append(finding_section(finding, with_rationale=False))
        outcome = outcomes.get(finding.token)
        if outcome is not None:
            blocks.append(context(outcome.text))
            if outcome.undo_token:
                blocks.append(undo_actions(outcome.undo_token, outcome.undo_label))
            continue
        elements = []
        if finding.check_id not in SECURITY_ONLY:
            elements.append(UserSelectElement(placeholder="Assign owner", action_id="finding:assign"))
        elements.extend(
            snooze_select(finding.token) if b.choice is Choice.SNOOZE else button(b, finding.token)
            for b in buttons_for(finding.check_id, finding.details or {})
            if b.choice is not Choice.NOT_MINE
        )
        blocks.append(ActionsBlock(block_id=f"f:{finding.token}", elements=elements[:25]))
    return blocks


def escalation_message(owner: str, findings: Sequence, days: int) -> list[Block]:
    lines = [f"<@{owner}> has {len(findings)} finding(s) waiting for a decision for {days}+ days:"]
    lines.extend(f"• {SEVERITY_MARK.get(f.severity, '•')} {escape(f.title)} — "
                 f"{link(console_url(f.resource), short_resource(f.resource))}" for f in findings[:20])
    if len(findings) > 20:
        lines.append(f"…and {len(findings) - 20} more.")
    return [mrkdwn_section("\n".join(lines))]


def reminder_text(count: int, days: int) -> str:
    return (f":wave: Friendly reminder: {count} finding(s) above have been waiting {days} days for a "
            "decision. In a few more days they go to the security channel.")


def keep_modal(token: str, *, max_days: int, default_end: str, private_metadata: str):
    """The "Keep…" modal: a required reason and an end date (at most `max_days` away)."""
    from slack_sdk.models.blocks import DatePickerElement, InputBlock, PlainTextInputElement
    from slack_sdk.models.views import View

    return View(
        type="modal",
        callback_id="keep_modal",
        private_metadata=private_metadata,
        title="Keep as it is",
        submit="Keep",
        close="Cancel",
        blocks=[
            context(f"An exception lasts at most {max_days} days; Steward asks again when it ends."),
            InputBlock(block_id="reason", label="Why is this needed?", element=PlainTextInputElement(
                action_id="value", multiline=True, max_length=1000, min_length=5)),
            InputBlock(block_id="until", label="Until", element=DatePickerElement(
                action_id="value", initial_date=default_end)),
        ],
    )
