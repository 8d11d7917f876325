"""Published chain heads ("anchors"): the line Steward posts, and reading them back.

The weekly digest and `steward audit head --post` put one context line in the security
channel, readable by people and by `steward audit verify --anchors-from-slack`:

    Audit chain head #1234 `<64 hex digits>` (keyed, key id 0123456789abcdef) · …

Slack keeps it where the database cannot rewrite it. Only messages Steward's own bot user
posted count when reading them back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

ANCHOR = re.compile(r"audit chain head #(\d+) `?([0-9a-f]{64})\b", re.IGNORECASE)
_CLI_ANCHOR = re.compile(r"^#?(\d+):([0-9a-fA-F]{64})$")


def anchor_text(sequence: int, last_hash: str, key_id: str | None) -> str:
    keyed = f"keyed, key id {key_id}" if key_id else "unkeyed"
    return (f"Audit chain head #{sequence} `{last_hash}` ({keyed}) · "
            "`steward audit verify --anchors-from-slack` proves the log still passes through it")


def parse_anchor(value: str) -> tuple[int, str]:
    """`SEQ:HASH` as given to `--anchor`; ValueError saying what the form is."""
    match = _CLI_ANCHOR.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not SEQUENCE:HASH (a number, a colon, 64 hex digits)")
    return int(match.group(1)), match.group(2).lower()


def anchors_in(text: str) -> list[tuple[int, str]]:
    return [(int(seq), digest.lower()) for seq, digest in ANCHOR.findall(text)]


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def message_anchors(message: Mapping[str, Any]) -> set[tuple[int, str]]:
    """Every anchor in a message's text and blocks."""
    return {a for text in _strings({"text": message.get("text"), "blocks": message.get("blocks")})
            for a in anchors_in(text)}


class ConflictingAnchors(ValueError):
    """Two published heads name different hashes for one sequence."""


def merge(anchors: Iterable[tuple[int, str]]) -> dict[int, str]:
    merged: dict[int, str] = {}
    for sequence, digest in anchors:
        if merged.setdefault(sequence, digest) != digest:
            raise ConflictingAnchors(
                f"two published heads disagree about event {sequence} ({merged[sequence][:16]}… and "
                f"{digest[:16]}…): the log was rewritten between them, or one was not posted by Steward"
            )
    return merged


def anchors_from_slack(client, channel: str, *, page_size: int = 200) -> tuple[set[tuple[int, str]], int]:
    """(anchors, messages read) from `channel`'s history, counting only Steward's own messages."""
    me = client.auth_test()
    user_id, bot_id = me.get("user_id"), me.get("bot_id")
    found: set[tuple[int, str]] = set()
    read = 0
    cursor = None
    while True:
        page = client.conversations_history(channel=channel, limit=page_size, cursor=cursor)
        for message in page.get("messages") or []:
            read += 1
            if (user_id and message.get("user") == user_id) or (bot_id and message.get("bot_id") == bot_id):
                found |= message_anchors(message)
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not page.get("has_more") or not cursor:
            return found, read
