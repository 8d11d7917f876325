"""Who owns an IAM principal, as far as the snapshot can tell (pure).

Tag keys in the configured order win; their value may be an email address or a Slack user
id. Failing that, a user whose name is an email address owns itself. The bot maps the
answer to a Slack user later (`bot/slack/owners.py`), and an owner override beats all of this.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{6,}$")


def is_owner_value(value: str) -> bool:
    return bool(EMAIL.match(value) or SLACK_USER_ID.match(value))


def owner_from(
    tags: Mapping[str, str], owner_tags: Sequence[str], name: str | None = None
) -> str | None:
    for key in owner_tags:
        value = (tags.get(key) or "").strip()
        if value and is_owner_value(value):
            return normalise(value)
    if name and EMAIL.match(name):
        return normalise(name)
    return None


def normalise(value: str) -> str:
    """Emails compare case-insensitively in practice; Slack ids are upper case already."""
    return value.lower() if EMAIL.match(value) else value
