"""Small helpers every rule module shares, so rules read as their conditions only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from checks.context import CheckContext
from checks.model import AccountSnapshot, Group, Result, Role, Status, User
from checks.ownership import owner_from

Principal = User | Group | Role


def owner_of(principal: Principal | None, ctx: CheckContext) -> str | None:
    if principal is None or isinstance(principal, Group):
        # Groups carry no tags in IAM; their findings go to security triage.
        return None
    name = principal.name if isinstance(principal, User) else None
    return owner_from(principal.tags, ctx.owner_tags, name)


def result(
    check: str,
    snapshot: AccountSnapshot,
    resource: str,
    failed: bool,
    *,
    sub_key: str = "",
    details: Mapping[str, Any] | None = None,
    owner: str | None = None,
) -> Result:
    return Result(
        check=check,
        account=snapshot.account_id,
        resource=resource,
        status=Status.FAIL if failed else Status.PASS,
        sub_key=sub_key,
        details=dict(details or {}),
        owner=owner,
    )


def iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def principal_type(principal: Principal) -> str:
    return type(principal).__name__.lower()
