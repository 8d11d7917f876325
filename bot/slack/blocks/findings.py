"""Lists of findings as Block Kit (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slack_sdk.models.blocks import Block

from bot.core.lifecycle import UNREMARKABLE_STATES
from bot.core.report import severity_word, short_resource, summary
from bot.slack.blocks.common import (
    SEVERITY_MARK,
    account_text,
    chunk_lines,
    console_url,
    context,
    link,
    mrkdwn_section,
)
from checks.model import severity_rank


def finding_line(finding, accounts: Mapping[str, str] | None = None) -> str:
    mark = f"{SEVERITY_MARK.get(finding.severity, '•')} {severity_word(finding.severity)}"
    facts = summary(finding.check_id, finding.details or {})
    resource = link(console_url(finding.resource), short_resource(finding.resource))
    state = "" if finding.state in UNREMARKABLE_STATES else f" · _{finding.state}_"
    return (
        f"{mark} · *{finding.title}* — {resource} in {account_text(finding.account_id, accounts)}"
        + (f"\n      {facts}" if facts else "")
        + state
    )


def sort_findings(findings: Sequence) -> list:
    return sorted(
        findings,
        key=lambda f: (severity_rank(f.severity), f.check_id, f.resource),
    )


def findings_blocks(findings: Sequence, *, heading: str, limit: int = 30, max_blocks: int = 40,
                    accounts: Mapping[str, str] | None = None) -> list[Block]:
    """A heading, the most severe `limit` findings, and a note of how many were left out."""
    if not findings:
        return [mrkdwn_section(f"*{heading}*\nNothing open. :white_check_mark:")]
    ordered = sort_findings(findings)
    shown = ordered[:limit]
    lines = [f"*{heading}* ({len(findings)})", *(finding_line(f, accounts) for f in shown)]
    blocks: list[Block] = [mrkdwn_section(text) for text in chunk_lines(lines)][:max_blocks]
    if len(findings) > len(shown):
        blocks.append(context(f"…and {len(findings) - len(shown)} more, less severe. "
                              "`steward scan` or the weekly digest has the full list."))
    return blocks
