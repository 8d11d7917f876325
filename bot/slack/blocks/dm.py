"""Owner DMs and security-channel messages about findings (pure Block Kit builders).

A message holds one card per IAM identity, worst first: the identity's findings (severity
as a colour and a word), what happened to each (who, when, Undo while possible), the single
best next step as a button and every other step behind a "More…" select, and Not mine for
the whole identity. Messages are rebuilt from the database on every change and replaced in
place with chat.update.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
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

from bot.core.decisions import NOT_MINE as NOT_MINE_BUTTON
from bot.core.decisions import (
    SECURITY_ONLY,
    SNOOZE_DAYS,
    Button,
    Choice,
    buttons_for,
    removal_action,
)
from bot.core.report import SEVERITY_RANK, plural, severity_word, short_resource, summary
from bot.slack.blocks.common import (
    SEVERITY_MARK,
    account_text,
    console_url,
    context,
    escape,
    link,
    mrkdwn_section,
)
from checks.catalog import BY_ID

# Header, intro and footer take 3 blocks; a card takes a section, a context and its actions,
# plus one Undo row per undoable change: messages are packed by `pack_cards` under 50.
FINDINGS_PER_MESSAGE = 15  # cards per message at most
BLOCK_BUDGET = 46  # of Slack's 50, leaving the header, intro and footer
MORE_ACTION = "card:more"  # the card's "More…" select: value `<choice>[:<arg>]|<finding token>`


@dataclass(frozen=True)
class Outcome:
    """What happened to a finding, for display: a remediation or a decision."""

    text: str  # mrkdwn, one line
    undo_token: str | None = None  # a remediation that can still be undone
    pending: bool = False  # waiting for a security approver
    undo_label: str = "Undo"  # "Ask to undo" when the undo needs a second person
    covers: tuple[str, str] | None = None  # (action, policy) a pending or done removal takes care of
    reopened: bool = False  # shown, but the finding is open again: its buttons come back (undone, rejected)


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def severity_label(severity: str) -> str:
    """`🟠 High`: the colour and the word (no emoji font, screen readers)."""
    return f"{SEVERITY_MARK.get(severity, '•')} {severity_word(severity)}"


def finding_section(finding, *, with_rationale: bool = True, accounts: Mapping[str, str] | None = None) -> Block:
    spec = BY_ID.get(finding.check_id)  # None: a risky change's containment (its rationale in details)
    resource = link(console_url(finding.resource), short_resource(finding.resource))
    lines = [f"{severity_label(finding.severity)} · *{escape(finding.title)}* — {resource} in "
             f"{account_text(finding.account_id, accounts)}"]
    facts = summary(finding.check_id, finding.details or {})
    if facts:
        lines.append(escape(facts))
    if (finding.details or {}).get("explanation"):  # escalation: the path or method, one line
        lines.append(escape(finding.details["explanation"]))
    rationale = spec.rationale if spec else str((finding.details or {}).get("rationale") or "")
    if with_rationale and rationale:
        lines.append(f"_{escape(rationale)}_")
    return mrkdwn_section("\n".join(lines))


def button(spec: Button, token: str, *, n: int = 0) -> ButtonElement:
    if spec.url:  # a guide: Slack opens the page (and sends a click the app only acks)
        return ButtonElement(text=spec.label, action_id=f"finding:guide:{n}", url=spec.url)
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


def undo_actions(token: str, label: str = "Undo") -> ActionsBlock:
    return ActionsBlock(
        block_id=f"r:{token}",
        elements=[ButtonElement(text=label, action_id="remediation:undo", value=token)],
    )


# ---------------------------------------------------------------------------------------
# One card per identity


def identity_cards(findings: Sequence) -> list[list]:
    """Findings grouped by identity (account, resource): each card's findings by severity then
    age, the cards by their worst severity then their oldest finding."""
    groups: dict[tuple[str, str], list] = {}
    for finding in findings:
        groups.setdefault((finding.account_id, finding.resource), []).append(finding)
    cards = [sorted(group, key=_rank) for group in groups.values()]
    return sorted(cards, key=lambda card: (_rank(card[0]), card[0].resource))


def _rank(finding) -> tuple:
    first = finding.first_seen
    return (SEVERITY_RANK.get(finding.severity, 9), first.isoformat() if first else "", finding.check_id)


def card_blocks_needed(card: Sequence) -> int:
    """The most blocks a card can take (section, context, actions, an Undo row per finding)."""
    return 3 + len(card)


def pack_cards(cards: Sequence[Sequence], *, budget: int = BLOCK_BUDGET,
               most: int = FINDINGS_PER_MESSAGE) -> list[list]:
    """Whole cards per message, in order, each message under Slack's block limit."""
    messages: list[list] = []
    current: list = []
    used = 0
    for card in cards:
        need = card_blocks_needed(card)
        if current and (used + need > budget or len(current) >= most):
            messages.append(current)
            current, used = [], 0
        current.append(card)
        used += need
    if current:
        messages.append(current)
    return messages


def removal_key(finding) -> tuple[str, str] | None:
    """The policy a Request removal would remove from this identity, to offer it once."""
    action = removal_action(finding.details or {})
    if action is None:
        return None
    details = finding.details or {}
    return action, str(details.get("policy_arn") or details.get("policy_name"))


def _subject(finding) -> str:
    """What a finding's action is about, for option labels: the key id, the policy, or the check."""
    d = finding.details or {}
    if d.get("access_key_id"):
        return str(d["access_key_id"])
    if d.get("policy_name") or d.get("policy_arn"):
        return str(d.get("policy_name") or short_resource(d["policy_arn"]).rsplit("/", 1)[-1])
    return finding.title


def _choices(finding, covered: set, unavailable: Collection[Choice] = ()) -> list[tuple[Button, str]]:
    """(button, option label) of one undecided finding, without a removal already covered."""
    result = []
    for spec in buttons_for(finding.check_id, finding.details or {}, unavailable=unavailable):
        if spec.choice is Choice.NOT_MINE:
            continue  # once per card, for the whole identity
        if spec.choice is Choice.REQUEST_REMOVAL:
            key = removal_key(finding)
            if key in covered:
                continue
            covered.add(key)
            label = f"Request removal of {_subject(finding)}"
        elif spec.choice in (Choice.EXCEPTION, Choice.SNOOZE, Choice.ACK):
            label = f"{spec.label.rstrip('…')}: {finding.title}"
        else:  # "Deactivate key AKIA…"; a choice that is not an action reads "Show policy JSON: reporting"
            subject = _subject(finding)
            joiner = " " if spec.choice is Choice.REMEDIATE else ": "
            label = spec.label if subject == finding.title else f"{spec.label}{joiner}{subject}"
        result.append((spec, label))
    return result


def _option_value(spec: Button, token: str, arg: str = "") -> str:
    choice = f"remediate:{spec.action}" if spec.action else str(spec.choice)
    return f"{choice}{':' + arg if arg else ''}|{token}"


def parse_more_value(value: str) -> tuple[Choice, str | None, int | None, str]:
    """A "More…" option's value -> (choice, remediation action, snooze days, finding token).
    ValueError for anything else."""
    head, sep, token = (value or "").rpartition("|")
    if not sep or not token:
        raise ValueError("not a card option")
    parts = head.split(":")
    choice = Choice(parts[0])
    action = parts[1] if choice is Choice.REMEDIATE and len(parts) == 2 else None
    days = int(parts[1]) if choice is Choice.SNOOZE and len(parts) == 2 and parts[1].isdigit() else None
    if choice is Choice.REMEDIATE and not action:
        raise ValueError("no action")
    return choice, action, days, token


def card(findings: Sequence, outcomes: Mapping[str, Outcome], *, triage: bool = False,
         deadlines: Mapping[str, tuple[datetime, str]] | None = None,
         accounts: Mapping[str, str] | None = None, leads: Mapping[str, str] | None = None,
         unavailable: Collection[Choice] = ()) -> list[Block]:
    """One identity: what is wrong (worst first), what happened, the best next step as a
    button and every other step behind "More…"; Not mine (owners) or Assign owner (triage)."""
    top = findings[0]
    resource = link(console_url(top.resource), short_resource(top.resource))
    worst = min((f.severity for f in findings), key=lambda s: SEVERITY_RANK.get(s, 9))
    lines = [f"{severity_label(worst)} · *{resource}* in {account_text(top.account_id, accounts)}"
             f"{' · ' + plural(len(findings), 'finding') if len(findings) > 1 else ''}"]
    if (leads or {}).get(top.resource):  # "Assigned to you by @Sam", "Not mine (from @Tom)"
        lines.append(f"_{leads[top.resource]}_")
    for finding in findings:
        facts = summary(finding.check_id, finding.details or {})
        line = f"• *{escape(finding.title)}* ({severity_word(finding.severity)})"
        if facts:
            line += f": {escape(facts)}"
        if (finding.details or {}).get("explanation"):
            line += f"\n   {escape(finding.details['explanation'])}"
        lines.append(line)
    undecided = [f for f in findings if f.token not in outcomes or outcomes[f.token].reopened]
    if undecided and not triage:
        lines.append(f"_{escape(BY_ID[undecided[0].check_id].rationale)}_")
    blocks: list[Block] = [mrkdwn_section("\n".join(lines))]

    covered = {o.covers for o in outcomes.values() if o.covers}
    notes = []
    for finding in findings:
        outcome = outcomes.get(finding.token)
        if outcome is not None:
            notes.append(f"*{escape(finding.title)}*: {outcome.text}")
        elif removal_key(finding) in covered:
            notes.append(f"*{escape(finding.title)}*: taken care of by the removal above.")
        elif (deadlines or {}).get(finding.token):
            day, what = deadlines[finding.token]
            notes.append(f":robot_face: Unless you decide by *{day:%Y-%m-%d}*, Steward will *{what.lower()}* "
                         f"itself ({escape(finding.title).lower()}; reversible: you can undo it).")
    if notes:
        blocks.append(context("\n".join(notes)))

    # The family's order is its priority: the worst finding's first step is the best one.
    choices = [(f, spec, label) for f in undecided for spec, label in _choices(f, covered, unavailable)]
    elements: list = []
    if triage and top.check_id not in SECURITY_ONLY and undecided:
        elements.append(UserSelectElement(placeholder="Assign owner", action_id="finding:assign"))
    if choices:
        f, spec, _label = choices.pop(0)
        elements.append(snooze_select(f.token) if spec.choice is Choice.SNOOZE else button(spec, f.token))
    guides = list({spec.url: spec for _f, spec, _l in choices if spec.url}.values())
    choices = [c for c in choices if not c[1].url]
    elements.extend(button(spec, "", n=n) for n, spec in enumerate(guides, start=1))
    options = []
    for f, spec, label in choices:
        if spec.choice is Choice.SNOOZE:
            options.extend(Option(text=_cut(f"Snooze {d} days: {f.title}"), value=_option_value(spec, f.token, str(d)))
                           for d in SNOOZE_DAYS)
        else:
            options.append(Option(text=_cut(label), value=_option_value(spec, f.token)))
    if options:
        elements.append(StaticSelectElement(placeholder="More…", action_id=MORE_ACTION, options=options[:100]))
    if not triage and undecided:
        elements.append(button(NOT_MINE_BUTTON, undecided[0].token))
    if elements:
        blocks.append(ActionsBlock(block_id=f"f:{(undecided or findings)[0].token}", elements=elements[:25]))
    for finding in findings:
        outcome = outcomes.get(finding.token)
        if outcome is not None and outcome.undo_token:
            blocks.append(undo_actions(outcome.undo_token, outcome.undo_label))
    return blocks


def _cut(text: str, limit: int = 75) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def owner_dm(findings: Sequence, outcomes: Mapping[str, Outcome], *, dry_run: bool = False,
             part: tuple[int, int] = (1, 1), deadlines: Mapping[str, tuple[datetime, str]] | None = None,
             accounts: Mapping[str, str] | None = None, leads: Mapping[str, str] | None = None,
             unavailable: Collection[Choice] = ()) -> list[Block]:
    """One DM: one card per identity, worst first; `leads`: a line per identity (resource)
    shown first on its card ("Assigned to you by @Sam"); `unavailable`: choices this
    deployment cannot carry out (`decisions.unavailable_choices`), not offered."""
    cards = identity_cards(findings)
    title = ("IAM Steward: a few things to tidy up in AWS" if len(findings) > 1
             else "IAM Steward: one thing to tidy up in AWS")
    if part[1] > 1:
        title += f" ({part[0]}/{part[1]})"
    intro = ("These IAM identities are yours" if len(cards) > 1 else "This IAM identity is yours")
    intro += (" (owner tag, or assigned by the security team). Pick what should happen; reversible changes "
              "happen at once, the rest goes to the security team for approval. Not yours? Click Not mine.")
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text=title[:150])), context(intro)]
    for group in cards:
        blocks.extend(card(group, outcomes, deadlines=deadlines, accounts=accounts, leads=leads,
                           unavailable=unavailable))
    blocks.append(context(_footer(dry_run)))
    return blocks


def _footer(dry_run: bool) -> str:
    text = "Questions? Ask in the security channel. `/iam whoami` shows everything Steward knows about you."
    if dry_run:
        text = ":test_tube: *Dry run*: Steward records decisions but changes nothing in AWS. " + text
    return text


def dm_fallback_text(findings: Sequence) -> str:
    cards = identity_cards(findings)
    return (f"IAM Steward: {plural(len(findings), 'finding')} about "
            f"{plural(len(cards), 'IAM identity', 'IAM identities')} you own need a decision.")


# ---------------------------------------------------------------------------------------
# Security channel


def triage_message(findings: Sequence, outcomes: Mapping[str, Outcome], *, reason: str,
                   accounts: Mapping[str, str] | None = None, leads: Mapping[str, str] | None = None,
                   unavailable: Collection[Choice] = ()) -> list[Block]:
    """Findings for the security team, one card per identity: ownerless ones get a user
    picker to assign an owner (for the whole identity)."""
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=f"IAM Steward triage: {plural(len(findings), 'finding')}")),
        context(reason),
    ]
    for group in identity_cards(findings):
        blocks.extend(card(group, outcomes, triage=True, accounts=accounts, leads=leads, unavailable=unavailable))
    return blocks


def escalation_message(owner: str, findings: Sequence, days: int,
                       accounts: Mapping[str, str] | None = None) -> list[Block]:
    lines = [f"<@{owner}> has {plural(len(findings), 'finding')} waiting for a decision for {days}+ days:"]
    lines.extend(f"• {severity_label(f.severity)} · {escape(f.title)} — "
                 f"{link(console_url(f.resource), short_resource(f.resource))} in "
                 f"{account_text(f.account_id, accounts)}" for f in findings[:20])
    if len(findings) > 20:
        lines.append(f"…and {len(findings) - 20} more.")
    return [mrkdwn_section("\n".join(lines))]


def reminder_text(count: int, days: int) -> str:
    return (f":wave: Friendly reminder: {plural(count, 'finding')} above "
            f"{'has' if count == 1 else 'have'} been waiting {days} days for a "
            "decision. In a few more days they go to the security channel.")


def keep_modal(token: str, *, max_days: int, default_end: str, private_metadata: str, finding=None,
               accounts: Mapping[str, str] | None = None):
    """The "Keep…" modal: what it is about (the identity and the finding), a required reason
    and an end date (at most `max_days` away)."""
    from slack_sdk.models.blocks import DatePickerElement, InputBlock, PlainTextInputElement
    from slack_sdk.models.views import View

    about = []
    if finding is not None:
        about.append(mrkdwn_section(
            f"*{escape(finding.title)}* ({severity_word(finding.severity)})\n"
            f"{link(console_url(finding.resource), short_resource(finding.resource))} in "
            f"{account_text(finding.account_id, accounts)}"))
    return View(
        type="modal",
        callback_id="keep_modal",
        private_metadata=private_metadata,
        title="Keep as it is",
        submit="Keep",
        close="Cancel",
        blocks=[
            *about,
            context(f"An exception lasts at most {max_days} days; Steward asks again when it ends."),
            InputBlock(block_id="reason", label="Why is this needed?", element=PlainTextInputElement(
                action_id="value", multiline=True, max_length=1000, min_length=5)),
            InputBlock(block_id="until", label="Until", element=DatePickerElement(
                action_id="value", initial_date=default_end)),
        ],
    )
