"""The account password policy against CIS 1.8 and 1.9 (and the complexity options)."""

from __future__ import annotations

from checks.context import CheckContext
from checks.model import AccountSnapshot, Result
from checks.rules.base import result


def failing_options(snapshot: AccountSnapshot, ctx: CheckContext) -> list[str]:
    """Names of the password-policy options that fall short; `no-policy` when there is none."""
    policy = snapshot.password_policy
    if policy is None:
        return ["no-policy"]
    limits = ctx.thresholds
    failing = []
    if policy.minimum_length < limits.password_min_length:
        failing.append("minimum-length")
    if (policy.reuse_prevention or 0) < limits.password_reuse_prevention:
        failing.append("reuse-prevention")
    for option, required in (
        ("require-uppercase", policy.require_uppercase),
        ("require-lowercase", policy.require_lowercase),
        ("require-numbers", policy.require_numbers),
        ("require-symbols", policy.require_symbols),
    ):
        if not required:
            failing.append(option)
    return failing


def password_policy_weak(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    failing = failing_options(snapshot, ctx)
    policy = snapshot.password_policy
    return [
        result(
            "password-policy-weak",
            snapshot,
            snapshot.account_arn,
            bool(failing),
            details={
                "failing": failing,
                "minimum_length": policy.minimum_length if policy else None,
                "reuse_prevention": policy.reuse_prevention if policy else None,
            },
        )
    ]
