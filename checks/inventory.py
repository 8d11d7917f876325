"""What Steward remembers about each IAM user between scans, for `/iam whoami` (pure).

Built from the snapshot; key ids are filled in where the scan resolved them (keys with
findings) — the credential report has none, and listing every user's keys would cost one
call per user.
"""

from __future__ import annotations

import json
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


def principal_entitlements(snapshot: AccountSnapshot, ctx: CheckContext,
                           keys_by_user: Mapping[str, Iterable[AccessKeyMeta]] | None = None) -> list[dict[str, Any]]:
    """Every user and role of the account with what it is entitled to, as the scan saw it
    (pure): what an access review freezes (bot/services/reviews.py). One entry per
    principal, so a campaign's item count can be checked against the scan's inventory."""
    keys_by_user = keys_by_user or {}
    out: list[dict[str, Any]] = []
    for user in snapshot.users:
        facts = user_facts(user, tuple(keys_by_user.get(user.name, ())))
        used = [facts["password_last_used"], *(k["last_used"] for k in facts["keys"])]
        out.append({
            "kind": "user",
            "name": user.name,
            "arn": user.arn,
            "owner": owner_from(user.tags, ctx.owner_tags, user.name),
            "entitlements": {
                "groups": facts["groups"],
                "attached_policies": [{"name": p.name, "arn": p.arn} for p in user.attached_policies],
                "inline_policies": facts["inline_policies"],
                "keys": facts["keys"],
                "console": facts["console"],
                "mfa": facts["mfa"],
                "permissions_boundary": user.permissions_boundary,
            },
            "created": facts["created"],
            "last_used": max((u for u in used if u), default=None),
        })
    for role in snapshot.roles:
        out.append({
            "kind": "role",
            "name": role.name,
            "arn": role.arn,
            "owner": owner_from(role.tags, ctx.owner_tags),
            "entitlements": {
                "attached_policies": [{"name": p.name, "arn": p.arn} for p in role.attached_policies],
                "inline_policies": sorted(p.name for p in role.inline_policies),
                "service_linked": role.service_linked,
                "trusted_by": _trusted(role.trust_policy),
                # The whole document, so a trust opened later can be put back (activity's
                # restore-trust-policy); reviews list `trusted_by`, never this, as an entitlement.
                "trust_policy": json.loads(json.dumps(role.trust_policy)) if role.trust_policy else None,
                "permissions_boundary": role.permissions_boundary,
            },
            "created": _iso(role.created),
            "last_used": _iso(role.last_used),
        })
    return out


def _trusted(trust: Mapping[str, Any]) -> list[str]:
    """Who may assume a role, from its trust policy's Allow statements (for a person to read)."""
    found: list[str] = []
    statements = trust.get("Statement", []) if isinstance(trust, Mapping) else []
    for statement in statements if isinstance(statements, list) else [statements]:
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        if isinstance(principal, str):
            found.append(principal)
        elif isinstance(principal, Mapping):
            for value in principal.values():
                found.extend(value if isinstance(value, list) else [value])
    return sorted({str(v) for v in found})[:20]
