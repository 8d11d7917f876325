"""`/iam audit X`: recent audit events about a resource, user or key (pure)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from slack_sdk.models.blocks import Block

from bot.slack.blocks.common import chunk_lines, context, escape, mrkdwn_section


def event_line(event) -> str:
    actor = f"<@{event.actor}>" if event.actor[:1] in "UW" and event.actor.isalnum() else escape(event.actor)
    payload = {k: v for k, v in (event.payload or {}).items() if k in ("action", "reason", "error", "decision", "until")}
    extra = f" `{escape(json.dumps(payload, sort_keys=True))[:300]}`" if payload else ""
    what = escape(event.resource.split(":", 5)[-1]) if event.resource else ""
    return f"`#{event.sequence}` {event.at:%Y-%m-%d %H:%M} *{event.action}* by {actor} {what}{extra}"


def audit_blocks(needle: str, events: Sequence) -> list[Block]:
    if not events:
        return [mrkdwn_section(f"No audit events mention `{escape(needle)}`.")]
    lines = [f"*Audit events about* `{escape(needle)}` (newest first)", *(event_line(e) for e in events)]
    blocks: list[Block] = [mrkdwn_section(text) for text in chunk_lines(lines)][:45]
    blocks.append(context("The full log: `steward audit export`. Integrity: `steward audit verify`."))
    return blocks
