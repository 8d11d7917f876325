"""Pieces every Block Kit builder shares: severity marks, console links, safe text."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from urllib.parse import quote

from slack_sdk.models.blocks import ContextBlock, MarkdownTextObject, SectionBlock

CONSOLE = "https://console.aws.amazon.com/iam/home"
SEVERITY_MARK = {"critical": "🔴", "high": "🟠", "medium": "🟡", "low": "🔵"}
SECTION_LIMIT = 3000  # characters in one section's text
MESSAGE_BLOCK_LIMIT = 50


def escape(text: str) -> str:
    """Slack mrkdwn control characters; IAM names may contain `&` but never need markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention(user: str | None) -> str:
    """A Slack user as a mention; anyone else (`cli:alice`, `system`) as plain text."""
    if user and user[0] in "UW" and user.isalnum():
        return f"<@{user}>"
    return escape(user or "someone")


def link(url: str, label: str) -> str:
    return f"<{url}|{escape(label)}>"


def console_url(arn: str) -> str:
    """The IAM console page of a user, group, role, policy or the account settings."""
    tail = arn.split(":", 5)[-1] if arn.startswith("arn:") else ""
    kind, _, path = tail.partition("/")
    name = path.rsplit("/", 1)[-1]
    if kind == "user":
        return f"{CONSOLE}#/users/details/{quote(name)}"
    if kind == "role":
        return f"{CONSOLE}#/roles/details/{quote(name)}"
    if kind == "group":
        return f"{CONSOLE}#/groups/details/{quote(name)}"
    if kind == "policy":
        return f"{CONSOLE}#/policies/details/{quote(arn, safe='')}"
    return f"{CONSOLE}#/account_settings"


def signin_url(account_id: str) -> str:
    """The account's own sign-in page: the console then opens in that account, not in
    whichever one the person happens to be signed in to."""
    return f"https://{account_id}.signin.aws.amazon.com/console"


def account_text(account_id: str, accounts: Mapping[str, str] | None = None) -> str:
    """`prod (123456789012)`, linked to that account's sign-in page; the bare id when unnamed."""
    name = (accounts or {}).get(account_id) or ""
    shown = f"{escape(name)} ({account_id})" if name and name != account_id else account_id
    if account_id.isdigit() and len(account_id) == 12:
        return f"<{signin_url(account_id)}|{shown}>"
    return shown


def day(value: datetime | str | None, never: str = "never") -> str:
    if value is None:
        return never
    if isinstance(value, str):
        return value[:10]
    return value.strftime("%Y-%m-%d")


def mrkdwn_section(text: str) -> SectionBlock:
    if len(text) > SECTION_LIMIT:
        text = text[: SECTION_LIMIT - 1] + "…"
    return SectionBlock(text=MarkdownTextObject(text=text))


def context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text[:3000])])


def chunk_lines(lines: list[str], limit: int = SECTION_LIMIT) -> list[str]:
    """Join lines into as few section texts as fit the per-section limit."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        line = line[:limit]
        if current and len(current) + 1 + len(line) > limit:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return chunks
