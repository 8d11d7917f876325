"""Builders for hand-made snapshots: rule tests state only what matters to them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from checks.context import CheckContext, Thresholds
from checks.model import (
    AccessKeySlot,
    AccountSnapshot,
    Group,
    InlinePolicy,
    ManagedPolicy,
    PolicyRef,
    Role,
    User,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def ctx(**kwargs: Any) -> CheckContext:
    thresholds = kwargs.pop("thresholds", Thresholds())
    return CheckContext(now=NOW, thresholds=thresholds, **kwargs)


def key(
    slot: int = 1,
    *,
    active: bool = True,
    age: float = 10,
    used: float | None = 1,
    service: str | None = "s3",
) -> AccessKeySlot:
    return AccessKeySlot(
        slot=slot,
        active=active,
        last_rotated=ago(age),
        last_used=ago(used) if used is not None else None,
        last_used_region="us-east-1" if used is not None else None,
        last_used_service=service if used is not None else None,
    )


def user(name: str = "alice", *, age: float = 400, **kwargs: Any) -> User:
    return User(
        name=name,
        arn=f"arn:aws:iam::{ACCOUNT}:user/{name}",
        created=ago(age),
        user_id=f"AIDA{name.upper():0<16}"[:21],
        **kwargs,
    )


def group(name: str = "devs", **kwargs: Any) -> Group:
    return Group(name=name, arn=f"arn:aws:iam::{ACCOUNT}:group/{name}", created=ago(400), **kwargs)


def role(name: str = "app", *, age: float = 400, trust: dict | None = None, **kwargs: Any) -> Role:
    trust = trust or {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    return Role(
        name=name,
        arn=f"arn:aws:iam::{ACCOUNT}:role{kwargs.get('path', '/')}{name}",
        created=ago(age),
        trust_policy=trust,
        **kwargs,
    )


def document(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any = "*", **extra: Any) -> dict:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def inline(name: str, *statements: dict) -> InlinePolicy:
    return InlinePolicy(name=name, document=document(*statements))


def managed(name: str, *statements: dict, aws: bool = False) -> ManagedPolicy:
    arn = f"arn:aws:iam::aws:policy/{name}" if aws else f"arn:aws:iam::{ACCOUNT}:policy/{name}"
    return ManagedPolicy(name=name, arn=arn, document=document(*statements), attachment_count=1)


def ref(policy: ManagedPolicy) -> PolicyRef:
    return PolicyRef(name=policy.name, arn=policy.arn)


def snapshot(**kwargs: Any) -> AccountSnapshot:
    kwargs.setdefault("account_id", ACCOUNT)
    kwargs.setdefault("collected_at", NOW)
    for name in ("users", "groups", "roles", "policies"):
        if name in kwargs:
            kwargs[name] = tuple(kwargs[name])
    return AccountSnapshot(**kwargs)
