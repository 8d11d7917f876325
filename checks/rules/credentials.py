"""IAM user credential checks: passwords, MFA, access keys and stale users (CIS 1.10-1.14).

A never-used credential counts as unused once it is older than the grace period; many
scanners skip never-used credentials and so miss keys that were created and forgotten.
Users missing from the credential report (created after it was generated) are not
evaluated here: no Result, so coverage says so.
"""

from __future__ import annotations

from datetime import datetime

from checks.context import CheckContext, Thresholds
from checks.model import AccessKeySlot, AccountSnapshot, Result, User
from checks.rules.base import iso, owner_of, result


def _reported_users(snapshot: AccountSnapshot):
    return (u for u in snapshot.users if u.in_credential_report)


def _limits(user: User, ctx: CheckContext) -> Thresholds:
    return ctx.thresholds.for_tags(user.tags)


def _unused(
    last_used: datetime | None, since: datetime | None, limits: Thresholds, ctx: CheckContext
) -> bool:
    """Not used within `unused_days`; never used counts once `since` is past the grace period."""
    if last_used is not None:
        return ctx.days_since(last_used) > limits.unused_days
    if since is None:
        return False
    return ctx.days_since(since) >= limits.never_used_grace_days


def _key_details(key: AccessKeySlot, ctx: CheckContext) -> dict:
    return {
        "key_slot": key.slot,
        "key_created": iso(key.last_rotated),
        "age_days": int(ctx.days_since(key.last_rotated)),
        "active": key.active,
        "last_used": iso(key.last_used),
        "last_used_service": key.last_used_service,
        "last_used_region": key.last_used_region,
    }


def _slot_key(key: AccessKeySlot) -> str:
    # Replaced by the access key id once the scan resolves it (checks.scan).
    return f"slot:{key.slot}"


def console_user_without_mfa(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    return [
        result(
            "console-user-without-mfa",
            snapshot,
            user.arn,
            user.password_enabled and not user.mfa_active,
            details={"password_last_used": iso(user.password_last_used)},
            owner=owner_of(user, ctx),
        )
        for user in _reported_users(snapshot)
        if user.password_enabled
    ]


def unused_password(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    results = []
    for user in _reported_users(snapshot):
        if not user.password_enabled:
            continue
        limits = _limits(user, ctx)
        set_at = user.password_last_changed or user.created
        results.append(
            result(
                "unused-password",
                snapshot,
                user.arn,
                _unused(user.password_last_used, set_at, limits, ctx),
                details={
                    "password_last_used": iso(user.password_last_used),
                    "password_set": iso(set_at),
                    "unused_days": limits.unused_days,
                },
                owner=owner_of(user, ctx),
            )
        )
    return results


def _active_key_results(snapshot: AccountSnapshot, ctx: CheckContext, check: str, judge) -> list[Result]:
    """One result per active key; `judge(key, limits)` -> (failed, extra details)."""
    results = []
    for user in _reported_users(snapshot):
        limits = _limits(user, ctx)
        for key in user.active_keys:
            failed, extra = judge(key, limits)
            results.append(
                result(check, snapshot, user.arn, failed, sub_key=_slot_key(key),
                       details={**_key_details(key, ctx), **extra}, owner=owner_of(user, ctx))
            )
    return results


def unused_access_key(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    return _active_key_results(snapshot, ctx, "unused-access-key", lambda key, limits: (
        _unused(key.last_used, key.last_rotated, limits, ctx), {"unused_days": limits.unused_days}))


def old_access_key(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    return _active_key_results(snapshot, ctx, "old-access-key", lambda key, limits: (
        ctx.days_since(key.last_rotated) > limits.key_max_age_days, {"max_age_days": limits.key_max_age_days}))


def multiple_active_keys(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    return [
        result(
            "multiple-active-keys",
            snapshot,
            user.arn,
            len(user.active_keys) > 1,
            details={"active_key_slots": [k.slot for k in user.active_keys]},
            owner=owner_of(user, ctx),
        )
        for user in _reported_users(snapshot)
        if user.active_keys
    ]


def inactive_access_key(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    return [
        result(
            "inactive-access-key",
            snapshot,
            user.arn,
            not key.active,
            sub_key=_slot_key(key),
            details=_key_details(key, ctx),
            owner=owner_of(user, ctx),
        )
        for user in _reported_users(snapshot)
        for key in user.existing_keys
    ]


def last_activity(user: User) -> datetime | None:
    """The latest password or access-key use, or None if never used."""
    uses = [user.password_last_used, *(k.last_used for k in user.existing_keys)]
    uses = [u for u in uses if u is not None]
    return max(uses) if uses else None


def stale_user(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    results = []
    for user in _reported_users(snapshot):
        limits = _limits(user, ctx)
        last = last_activity(user)
        old_enough = ctx.days_since(user.created) >= limits.stale_user_days
        idle = last is None or ctx.days_since(last) > limits.stale_user_days
        results.append(
            result(
                "stale-user",
                snapshot,
                user.arn,
                old_enough and idle,
                details={
                    "last_activity": iso(last),
                    "created": iso(user.created),
                    "stale_user_days": limits.stale_user_days,
                },
                owner=owner_of(user, ctx),
            )
        )
    return results
