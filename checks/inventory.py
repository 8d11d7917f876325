"""What Steward remembers about each IAM user between scans, for `/iam whoami` (pure).

Built from the snapshot; key ids are filled in where the scan resolved them (keys with
findings) — the credential report has none, and listing every user's keys would cost one
call per user.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from checks.context import CheckContext
from checks.keys import AccessKeyMeta, match_key_slot
from checks.model import AccountSnapshot, User
from checks.ownership import owner_from


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def user_facts(user: User, key_ids: Sequence[AccessKeyMeta] = ()) -> dict[str, Any]:
    keys = []
    for slot in user.existing_keys:
        meta = match_key_slot(slot, key_ids) if key_ids else None
        keys.append(
            {
                "slot": slot.slot,
                "access_key_id": meta.access_key_id if meta else None,
                "active": slot.active,
                "created": _iso(slot.last_rotated),
                "last_used": _iso(slot.last_used),
                "last_used_region": slot.last_used_region,
                "last_used_service": slot.last_used_service,
            }
        )
    return {
        "created": _iso(user.created),
        "console": user.password_enabled,
        "mfa": user.mfa_active,
        "password_last_used": _iso(user.password_last_used),
        "keys": keys,
        "groups": sorted(user.groups),
        "attached_policies": sorted(p.name for p in user.attached_policies),
        "inline_policies": sorted(p.name for p in user.inline_policies),
        "tags": dict(user.tags),
    }


def identities(
    snapshot: AccountSnapshot,
    ctx: CheckContext,
    keys_by_user: Mapping[str, Iterable[AccessKeyMeta]] | None = None,
) -> list[dict[str, Any]]:
    keys_by_user = keys_by_user or {}
    return [
        {
            "name": user.name,
            "arn": user.arn,
            "owner": owner_from(user.tags, ctx.owner_tags, user.name),
            "facts": user_facts(user, tuple(keys_by_user.get(user.name, ()))),
        }
        for user in snapshot.users
    ]
