"""The App Home tab: the viewer's open findings, exceptions and recent decisions (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slack_sdk.models.blocks import DividerBlock, HeaderBlock, PlainTextObject
from slack_sdk.models.views import View

from bot.core.audit_names import reads_as
from bot.slack.blocks.common import context, escape, mrkdwn_section
from bot.slack.blocks.findings import findings_blocks

ACTION_WORDS = {
    "decision.remediate": "asked for a cleanup", "decision.acknowledge": "acknowledged",
    "decision.rotate_promise": "promised to rotate",
    "decision.snooze": "snoozed", "decision.not_mine": "said not mine",
    "exception.granted": "kept (exception)", "remediation.succeeded": "cleanup done",
    "remediation.undone": "undid a cleanup", "approval.rejected": "rejected",
    "remediation.approved": "approved",
}


def words(event) -> str:
    """What the person did, in words (events under an old name read as today's)."""
    name = reads_as(event.action, event.payload)
    return ACTION_WORDS.get(name, name)


def is_decision(event) -> bool:
    return reads_as(event.action, event.payload) in ACTION_WORDS


def home_view(open_findings: Sequence, exceptions: Sequence, recent: Sequence, *,
              accounts: Mapping[str, str] | None = None) -> View:
    """`accounts`: account id -> name, shown beside the id as in DMs (`acme-prod (1234…)`)."""
    blocks = [HeaderBlock(text=PlainTextObject(text="IAM Steward"))]
    blocks.extend(findings_blocks(open_findings, heading="Your open findings", limit=20, max_blocks=20,
                                  accounts=accounts))
    blocks.append(DividerBlock())
    if exceptions:
        lines = ["*Your exceptions*"]
        lines.extend(f"• {e.title} — `{e.resource.split(':', 5)[-1]}` until {e.decision_until:%Y-%m-%d}: "
                     f"“{escape(e.decision_reason or '')}”" for e in exceptions[:15])
        blocks.append(mrkdwn_section("\n".join(lines)))
    else:
        blocks.append(mrkdwn_section("*Your exceptions*\nNone."))
    blocks.append(DividerBlock())
    if recent:
        lines = ["*Your recent decisions*"]
        lines.extend(f"• {event.at:%Y-%m-%d} {words(event)}"
                     f"{' — `' + event.resource.split(':', 5)[-1] + '`' if event.resource else ''}"
                     for event in recent[:10])
        blocks.append(mrkdwn_section("\n".join(lines)))
    else:
        blocks.append(mrkdwn_section("*Your recent decisions*\nNone yet."))
    blocks.append(context("`/iam whoami` lists your IAM identities; `/iam help` lists the commands."))
    return View(type="home", blocks=blocks[:100])
