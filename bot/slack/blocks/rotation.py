"""Messages of a guided key rotation (pure Block Kit builders): the offer to deactivate the
old key once the new one is in use, and the note when Steward did it itself."""

from __future__ import annotations

from datetime import datetime

from slack_sdk.models.blocks import ActionsBlock, Block

from bot.core.decisions import DEACTIVATE
from bot.slack.blocks.common import escape, mrkdwn_section
from bot.slack.blocks.dm import button


def offer_text(row, old_used: datetime | None) -> str:
    quiet = f"not used since {old_used:%Y-%m-%d}" if old_used else "never used since"
    return (f"Your new access key {row.new_key_id} (IAM user {row.user_name}) is in use, and the old one, "
            f"{row.old_key_id}, is {quiet}. Deactivate the old key now? You can undo it.")


def offer_blocks(row, old_used: datetime | None, token: str) -> list[Block]:
    return [mrkdwn_section(f":arrows_counterclockwise: {escape(offer_text(row, old_used))}"),
            ActionsBlock(block_id=f"f:{token}", elements=[button(DEACTIVATE, token)])]


def deactivated_text(row, remediation_id: int) -> str:
    return (f":arrows_counterclockwise: Your new access key {row.new_key_id} (IAM user {row.user_name}) is in use "
            f"and the old one, {row.old_key_id}, was quiet, so Steward deactivated {row.old_key_id} "
            f"(remediation #{remediation_id}); Undo is on the key's message.")
