"""Root account checks (CIS 1.4, 1.5, 1.7) over the credential report's `<root_account>` row.

With no root row (moto, or a report without one) these rules return nothing: the scan's
coverage then shows root as not evaluated instead of passing it.
"""

from __future__ import annotations

from checks.context import CheckContext
from checks.model import AccountSnapshot, Result
from checks.rules.base import iso, result


def root_access_key(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    root = snapshot.root
    if root is None:
        return []
    active = [k.slot for k in root.access_keys if k.exists and k.active]
    return [
        result(
            "root-access-key",
            snapshot,
            root.arn,
            bool(active),
            details={"active_key_slots": active},
        )
    ]


def root_mfa_disabled(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    root = snapshot.root
    if root is None:
        return []
    return [result("root-mfa-disabled", snapshot, root.arn, not root.mfa_active)]


def root_recently_used(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    root = snapshot.root
    if root is None:
        return []
    limit = ctx.thresholds.root_recent_days
    uses = {"password": root.password_last_used}
    uses.update({f"access_key_{k.slot}": k.last_used for k in root.access_keys})
    recent = {
        what: iso(when)
        for what, when in uses.items()
        if when is not None and ctx.days_since(when) <= limit
    }
    return [
        result(
            "root-recently-used",
            snapshot,
            root.arn,
            bool(recent),
            details={"recent_use": recent, "window_days": limit},
        )
    ]
