"""`/iam whoami`: the caller's own IAM identities and open findings (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slack_sdk.models.blocks import Block, DividerBlock, HeaderBlock, PlainTextObject

from bot.slack.blocks.common import (
    account_text,
    console_url,
    context,
    day,
    escape,
    link,
    mrkdwn_section,
)
from bot.slack.blocks.findings import findings_blocks

MAX_IDENTITIES = 8


def key_line(key: dict) -> str:
    name = key.get("access_key_id") or f"key {key.get('slot')}"
    status = "active" if key.get("active") else "inactive"
    used = day(key.get("last_used"))
    where = ", ".join(x for x in (key.get("last_used_service"), key.get("last_used_region")) if x)
    return (
        f"`{name}` {status}, created {day(key.get('created'))}, last used {used}"
        + (f" ({where})" if where and key.get("last_used") else "")
    )


def identity_text(identity, accounts: Mapping[str, str] | None = None) -> str:
    facts = identity.facts or {}
    console = "no console access"
    if facts.get("console"):
        mfa = "MFA on" if facts.get("mfa") else "*no MFA*"
        console = f"console access, {mfa}, password last used {day(facts.get('password_last_used'))}"
    lines = [
        f"*{link(console_url(identity.arn), identity.name)}* in account {account_text(identity.account_id, accounts)}",
        f"`{escape(identity.arn)}`",
        console,
    ]
    keys = facts.get("keys") or []
    lines.extend(["Access keys: none"] if not keys else ["Access keys:", *(f"• {key_line(k)}" for k in keys)])
    groups = facts.get("groups") or []
    lines.append("Groups: " + (", ".join(escape(g) for g in groups) if groups else "none"))
    direct = [*(facts.get("attached_policies") or []), *(f"{p} (inline)" for p in facts.get("inline_policies") or [])]
    lines.append("Policies on the user itself: " + (", ".join(escape(p) for p in direct) if direct else "none"))
    return "\n".join(lines)


def whoami_blocks(identities: Sequence, findings: Sequence, *, last_scan=None, owner_tags=(),
                  accounts: Mapping[str, str] | None = None) -> list[Block]:
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text="Your IAM identities"))]
    if not identities:
        tags = ", ".join(f"`{t}`" for t in owner_tags) or "an owner tag"
        blocks.append(
            mrkdwn_section(
                "I don't know of any IAM user that is yours.\n"
                f"Steward finds owners through tags on IAM users and roles ({tags}) holding your "
                "email address or Slack user id, or a user name that is your email address. "
                "Ask your cloud team to tag the identities you use, or a security approver to "
                "assign them to you; they show up here after the next scan."
            )
        )
    for identity in list(identities)[:MAX_IDENTITIES]:
        blocks.append(mrkdwn_section(identity_text(identity, accounts)))
    if len(identities) > MAX_IDENTITIES:
        blocks.append(context(f"…and {len(identities) - MAX_IDENTITIES} more identities."))
    blocks.append(DividerBlock())
    blocks.extend(findings_blocks(findings, heading="Your open findings", limit=15, max_blocks=10, accounts=accounts))
    note = "Only you can see this."
    if last_scan is not None:
        note += f" Last scan {day(last_scan)}."
    blocks.append(context(note))
    return blocks
