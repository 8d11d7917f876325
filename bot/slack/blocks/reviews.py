"""Access reviews in Slack (pure builders): a reviewer's message (paged), the details,
Remove access… and Delegate… modals, the security channel's progress message, reminders
and escalations.

Everything is built from the campaign and item rows handed in; nothing here reads the
database or calls Slack. Limits: a message stays under Slack's 50 blocks (ITEMS_PER_PAGE
items of two blocks each, plus a header, context, navigation), a section under 3,000
characters, a select's option under 75 characters, a modal under 100 blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    Option,
    PlainTextInputElement,
    StaticMultiSelectElement,
    UserSelectElement,
)
from slack_sdk.models.views import View

from bot.core.decisions import REVIEW_BUTTONS, REVIEW_ITEM_BUTTONS, ReviewChoice
from bot.slack.blocks.common import console_url, context, day, escape, link, mention, mrkdwn_section

ITEMS_PER_PAGE = 10  # at most 2 blocks each + 5 around them: 25 of Slack's 50
UNDO_ACTION_ID = "remediation:undo"  # + ":<n>"; routed by bot/slack/listeners/actions.py, like a DM card's Undo
OPTION_LIMIT = 75  # characters in a select option's text
OPTIONS_MAX = 100  # options in one static select
REASON_MAX = 1000
SECURITY = "security"  # the reviewer of items with nobody accountable: the security channel

DECISION_WORDS = {
    "still_needed": ":white_check_mark: Still needed",
    "remove": ":scissors: Remove access",
    "overdue": ":alarm_clock: Overdue: nobody decided by the due date (not certified)",
}


def who(user: str | None) -> str:
    return "the security team" if user == SECURITY else mention(user)


def principal_label(item) -> str:
    return f"IAM {item.kind} {item.name}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _names(values: Sequence[str], limit: int = 6) -> str:
    if not values:
        return "—"
    shown = ", ".join(escape(v) for v in values[:limit])
    return shown + (f" +{len(values) - limit} more" if len(values) > limit else "")


def entitlement_lines(snapshot: Mapping[str, Any]) -> list[str]:
    """Every entitlement of one item, a line each (for the details modal)."""
    lines = []
    for e in snapshot.get("entitlements", []):
        mark = "" if e.get("removable") else " _(not removable by Steward)_"
        lines.append(f"• {escape(e['label'])}{mark}")
    return lines or ["• no groups, policies, keys or console access"]


def item_summary(item, *, security: bool = False) -> str:
    """One item as a reviewer scans it: what, where, whose, and what it holds."""
    snap = item.snapshot or {}
    ents = snap.get("entitlements", [])
    by_kind: dict[str, list[str]] = {}
    for e in ents:
        by_kind.setdefault(e["kind"], []).append(e.get("name") or e["label"])
    owner = escape(item.owner) if item.owner else "no owner tag"
    head = (f"*{link(console_url(item.arn), principal_label(item))}* · account `{item.account_id}` · {owner}")
    parts = []
    if item.kind == "user":
        parts.append(f"Groups: {_names(by_kind.get('group', []))}")
    parts.append(f"Policies: {_names(by_kind.get('policy', []) + by_kind.get('inline', []))}")
    if item.kind == "user":
        keys = [e for e in ents if e["kind"] == "key"]
        active = sum(1 for e in keys if (e.get("details") or {}).get("active"))
        parts.append(f"Keys: {len(keys)} ({active} active)" if keys else "Keys: none")
        parts.append(f"Console: {'yes' + (' with MFA' if snap.get('mfa') else ', no MFA') if snap.get('console') else 'no'}")
    else:
        trusted = by_kind.get("trust", [])
        parts.append(f"Assumable by: {_names(trusted, 3)}")
    lines = [head, " · ".join(parts), f"Last used: {day(snap.get('last_used'))}"]
    effective = snap.get("effective") or {}
    if effective.get("summary"):
        lines.append(f":warning: {escape(_clip(effective['summary'], 400))}")
    if security and item.routed_by:
        lines.append(f"_Here because: {escape(ROUTED_WORDS.get(item.routed_by, item.routed_by))}_")
    if item.delegated_from:
        lines.append(f"_Delegated by {who(item.delegated_from)}: “{escape(_clip(item.delegation_reason or '', 300))}”_")
    return "\n".join(lines)


ROUTED_WORDS = {
    "owner": "its owner",
    "manager": "the owner's manager (a person never certifies their own access)",
    "security:no-owner": "nobody owns it (no owner tag or override)",
    "security:owner-not-in-slack": "its owner is not in Slack",
    "security:self-owned": "it is its owner's own access and no manager is known",
    "security:not-mine": "its reviewer said it is not theirs",
    "delegated": "delegated",
}


def decision_line(item, outcome: str | None = None) -> str:
    words = DECISION_WORDS.get(item.decision or "", item.decision or "")
    line = words
    if item.decision != "overdue":
        line += f" — {who(item.decided_by)} {day(item.decided_at)}"
    if item.decision_reason:
        line += f": “{escape(_clip(item.decision_reason, 300))}”"
    if outcome:
        line += f"\n{outcome}"
    return line


@dataclass(frozen=True)
class MessagePage:
    """One page of a reviewer's message, as the service hands it over."""

    token: str  # the message's opaque token
    reviewer: str  # a Slack user id, or SECURITY
    items: Sequence[Any]  # ReviewItem rows of this page
    page: int
    pages: int
    total: int
    undecided: int
    details_seen: int  # undecided items on this page whose details were opened
    outcomes: Mapping[str, str]  # item token -> what became of a removal
    undo: Mapping[str, Sequence[tuple[str, str]]] = field(default_factory=dict)  # item token -> (label, remediation token)


def review_message(campaign, view: MessagePage) -> list[Block]:
    security = view.reviewer == SECURITY
    due = day(campaign.due_at)
    blocks: list[Block] = [HeaderBlock(text=_clip(f"Access review: {campaign.name}", 150))]
    if security:
        intro = (f"These {view.total} identities have nobody accountable to review them, or were handed back. "
                 f"A security approver decides, or delegates each to the right person, by *{due}*.")
    else:
        intro = (f"Please confirm who still needs the access below: {view.total} identit"
                 f"{'y' if view.total == 1 else 'ies'} you are accountable for, by *{due}*. "
                 "Anything not decided by then is reported as *overdue*, never as approved.")
    blocks.append(mrkdwn_section(intro))
    blocks.append(context(f"{view.undecided} of {view.total} still to decide · page {view.page + 1} of {view.pages}"
                          " · Remove access… goes through Steward's usual approvals and can be undone"))
    for item in view.items:
        text = item_summary(item, security=security)
        if item.decision:
            blocks.append(mrkdwn_section(f"{text}\n{decision_line(item, view.outcomes.get(item.token))}"))
            undo = view.undo.get(item.token) or ()
            if undo:  # the remediation engine's own Undo (its rules decide who may, and how)
                blocks.append(ActionsBlock(block_id=f"u:{item.token}", elements=[
                    # One action id per button: Slack refuses an actions block that repeats one.
                    ButtonElement(text=_clip(label, 75), action_id=f"{UNDO_ACTION_ID}:{n}", value=token)
                    for n, (label, token) in enumerate(undo[:5])]))
            continue
        blocks.append(mrkdwn_section(text))
        blocks.append(ActionsBlock(block_id=f"r:{item.token}", elements=[
            ButtonElement(text=b.label, action_id=b.action_id, value=item.token, style=b.style)
            for b in REVIEW_ITEM_BUTTONS
        ]))
    blocks.append(DividerBlock())
    nav: list[ButtonElement] = []
    # Previous and Next share the block: each its own action id (Slack refuses repeats).
    page = REVIEW_BUTTONS[ReviewChoice.PAGE].action_id
    if view.page > 0:
        nav.append(ButtonElement(text="◀ Previous", action_id=f"{page}:previous",
                                 value=f"{view.token}:{view.page - 1}"))
    if view.page + 1 < view.pages:
        nav.append(ButtonElement(text="Next ▶", action_id=f"{page}:next",
                                 value=f"{view.token}:{view.page + 1}"))
    if any(not i.decision for i in view.items):
        details = REVIEW_BUTTONS[ReviewChoice.DETAILS]
        nav.append(ButtonElement(text=details.label, action_id=details.action_id, value=f"{view.token}:{view.page}"))
    if view.details_seen:
        bulk = REVIEW_BUTTONS[ReviewChoice.ALL_STILL_NEEDED]
        nav.append(ButtonElement(text=f"All {view.details_seen} still needed", action_id=bulk.action_id,
                                 value=f"{view.token}:{view.page}", style=bulk.style))
    if nav:
        blocks.append(ActionsBlock(block_id="review-nav", elements=nav))
    elif not any(not i.decision for i in view.items):
        blocks.append(context("Everything on this page is decided. Thank you!"))
    return blocks


def review_fallback(campaign, view: MessagePage) -> str:
    return f"Access review {campaign.name}: {view.undecided} of {view.total} to decide by {day(campaign.due_at)}"


def details_modal(campaign, items: Iterable[Any]) -> View:
    blocks: list[Block] = [context(f"As frozen when the campaign started ({day(campaign.started_at)}); "
                                   "your decision applies to this access.")]
    for item in list(items)[:ITEMS_PER_PAGE]:
        snap = item.snapshot or {}
        lines = [f"*{escape(principal_label(item))}* (`{escape(item.arn)}`)",
                 f"Created {day(snap.get('created'))} · last used {day(snap.get('last_used'))}"
                 f" · owner {escape(item.owner or 'none')}"]
        lines += entitlement_lines(snap)
        effective = snap.get("effective") or {}
        if effective.get("summary"):
            lines.append(f":warning: {escape(effective['summary'])}")
        if effective.get("findings"):
            lines.append(f"Open findings: {escape(', '.join(effective['findings']))}")
        blocks.append(mrkdwn_section("\n".join(lines)))
        blocks.append(DividerBlock())
    return View(type="modal", callback_id="review_details_modal", title="Access review details",
                close="Close", blocks=blocks[:100])


def remove_modal(item, *, private_metadata: str) -> View:
    """Choose the entitlements to remove (only those Steward can remove), and why."""
    options = [Option(value=e["id"], text=_clip(e["label"], OPTION_LIMIT))
               for e in (item.snapshot or {}).get("entitlements", []) if e.get("removable")][:OPTIONS_MAX]
    return View(
        type="modal", callback_id="review_remove_modal", private_metadata=private_metadata,
        title="Remove access", submit="Remove", close="Cancel",
        blocks=[
            mrkdwn_section(f"*{escape(principal_label(item))}* in account `{item.account_id}`. Removals that only "
                           "reduce access and are reversible happen at once with Undo; the others go to a "
                           "security approver first."),
            InputBlock(block_id="entitlements", label="What should go?", element=StaticMultiSelectElement(
                action_id="value", placeholder="Choose entitlements", options=options)),
            InputBlock(block_id="reason", label="Why (kept as evidence)", optional=True,
                       element=PlainTextInputElement(action_id="value", multiline=True, max_length=REASON_MAX)),
        ],
    )


def delegate_modal(item, *, private_metadata: str) -> View:
    return View(
        type="modal", callback_id="review_delegate_modal", private_metadata=private_metadata,
        title="Delegate the review", submit="Delegate", close="Cancel",
        blocks=[
            mrkdwn_section(f"Who should review *{escape(principal_label(item))}* instead? They get it in their "
                           "review message; your reason is kept as evidence."),
            InputBlock(block_id="delegate", label="Reviewer", element=UserSelectElement(
                action_id="value", placeholder="Choose a person")),
            InputBlock(block_id="reason", label="Why them?", element=PlainTextInputElement(
                action_id="value", multiline=True, min_length=5, max_length=REASON_MAX)),
        ],
    )


@dataclass(frozen=True)
class Progress:
    population: int
    decided: int
    still_needed: int
    removed: int
    overdue: int
    reviewers: int
    late_reviewers: Sequence[tuple[str, int]]  # (reviewer, undecided) escalated or past due
    unsent: int = 0

    @property
    def percent(self) -> int:
        return 100 if not self.population else int(self.decided * 100 / self.population)


def progress_message(campaign, progress: Progress, *, now: datetime) -> list[Block]:
    state = "closed" if campaign.status == "closed" else f"due {day(campaign.due_at)}"
    bar_len = 20
    filled = round(progress.percent * bar_len / 100)
    lines = [
        f"*{progress.percent}% decided* `{'█' * filled}{'░' * (bar_len - filled)}` "
        f"{progress.decided} of {progress.population} identities · {progress.reviewers} reviewers",
        f":white_check_mark: {progress.still_needed} still needed · :scissors: {progress.removed} removal(s) asked"
        f" · :alarm_clock: {progress.overdue} overdue",
    ]
    if progress.unsent:
        lines.append(f":warning: {progress.unsent} reviewer message(s) could not be sent yet; retried every hour.")
    if progress.late_reviewers:
        shown = ", ".join(f"{who(r)} ({n})" for r, n in progress.late_reviewers[:15])
        more = len(progress.late_reviewers) - 15
        lines.append(f"Late reviewers: {shown}{f' +{more} more' if more > 0 else ''}")
    scans = ", ".join(f"{a}: scan #{s.get('scan_id')}" for a, s in sorted((campaign.scans or {}).items()))
    return [
        HeaderBlock(text=_clip(f"Access review: {campaign.name} ({state})", 150)),
        mrkdwn_section("\n".join(lines)),
        context(f"Campaign #{campaign.id} started by {who(campaign.started_by)} {day(campaign.started_at)}; "
                f"population frozen from {escape(_clip(scans, 1500)) or 'no scan'}; "
                f"updated {now:%Y-%m-%d %H:%M} UTC · `steward review export {campaign.id}` for the evidence"),
    ]


def escalation_blocks(campaign, reviewer: str, undecided: int, days: int) -> list[Block]:
    return [mrkdwn_section(
        f":rotating_light: {who(reviewer)} has {undecided} identit{'y' if undecided == 1 else 'ies'} still to review "
        f"in *{escape(campaign.name)}* after {days} days (due {day(campaign.due_at)}). Nudge them, or delegate "
        "the items to someone who can decide.")]


def reminder_text(campaign, undecided: int) -> str:
    return (f":wave: A reminder: {undecided} identit{'y is' if undecided == 1 else 'ies are'} still waiting for your "
            f"review in {campaign.name}, due {day(campaign.due_at)}. Undecided items are reported as overdue.")
