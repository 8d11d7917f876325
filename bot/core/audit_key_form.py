"""The form of STEWARD_AUDIT_KEY, checked without fetching anything (pure).

The settings check it when they load; bot/db/audit_key.py resolves the entries into keys.
"""

from __future__ import annotations

from bot.core.errors import SettingsError

SETTING = "STEWARD_AUDIT_KEY"
MIN_KEY_LENGTH = 32
SECRETS_MANAGER_PREFIX = "secretsmanager:"
SSM_PREFIX = "ssm:"


class AuditKeyError(SettingsError):
    """STEWARD_AUDIT_KEY is malformed or a referenced secret cannot be read (never shows a key)."""


def split_entries(value: str | None) -> list[str]:
    """The comma-separated entries of STEWARD_AUDIT_KEY, checked for form only (no AWS call)."""
    entries = [part.strip() for part in (value or "").split(",") if part.strip()]
    for position, entry in enumerate(entries, 1):
        if entry.startswith(SECRETS_MANAGER_PREFIX) or entry.startswith(SSM_PREFIX):
            if not entry.split(":", 1)[1].strip():
                raise AuditKeyError(f"{SETTING}: entry {position} names no secret after the prefix")
        elif len(entry.encode("utf-8")) < MIN_KEY_LENGTH:
            raise AuditKeyError(
                f"{SETTING}: entry {position} is neither a secretsmanager:/ssm: reference nor a key "
                f"of at least {MIN_KEY_LENGTH} characters"
            )
    return entries
