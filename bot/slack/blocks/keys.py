"""`/iam keys`: the caller's own access keys across accounts (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import Block, HeaderBlock, PlainTextObject

from bot.slack.blocks.common import SEVERITY_MARK, chunk_lines, context, day, escape, mrkdwn_section

MAX_KEYS = 40


def key_text(key) -> str:
    """One key: `…WXYZ` of user in account, status, age, last use, and its open findings.
    Only the id's last four characters are shown (enough to tell keys apart)."""
    name = f"`…{key.key_id[-4:]}`" if key.key_id else f"key {key.slot}"
    status = "active" if key.active else "inactive"
    age = "age unknown" if key.age_days is None else f"{key.age_days} days old"
    where = ", ".join(x for x in (key.last_used_service, key.last_used_region) if x)
    used = f"last used {day(key.last_used)}" + (f" ({escape(where)})" if where and key.last_used else "")
    line = f"{name} of *{escape(key.user)}* in `{key.account_id}`: {status}, {age}, {used}"
    for finding in key.findings:
        line += f"\n    {SEVERITY_MARK.get(finding.severity, '•')} open finding: {escape(finding.title)}"
    return line


def keys_blocks(keys: Sequence) -> list[Block]:
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text="Your access keys"))]
    if not keys:
        blocks.append(mrkdwn_section(
            "You have no access keys on the IAM users I know are yours. "
            "`/iam whoami` shows which users those are."))
    else:
        blocks.extend(mrkdwn_section(text) for text in chunk_lines([key_text(k) for k in keys[:MAX_KEYS]]))
        if len(keys) > MAX_KEYS:
            blocks.append(context(f"…and {len(keys) - MAX_KEYS} more keys."))
    flagged = sum(1 for k in keys if k.findings)
    blocks.append(context(f"Only you can see this. {flagged} of {len(keys)} keys have open findings."
                          if keys else "Only you can see this."))
    return blocks
