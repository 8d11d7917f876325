"""Unused roles: access nobody exercises is access worth removing."""

from __future__ import annotations

from checks.context import CheckContext
from checks.model import AccountSnapshot, Result
from checks.rules.base import iso, owner_of, result


def unused_role(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    results = []
    for role in snapshot.roles:
        if role.service_linked:  # managed by AWS services; not ours to remove
            continue
        limits = ctx.thresholds.for_tags(role.tags)
        old_enough = ctx.days_since(role.created) >= limits.unused_role_days
        idle = role.last_used is None or ctx.days_since(role.last_used) > limits.unused_role_days
        results.append(
            result(
                "unused-role",
                snapshot,
                role.arn,
                old_enough and idle,
                details={
                    "last_used": iso(role.last_used),
                    "last_used_region": role.last_used_region,
                    "created": iso(role.created),
                    "unused_role_days": limits.unused_role_days,
                },
                owner=owner_of(role, ctx),
            )
        )
    return results
