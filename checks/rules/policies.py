"""Identity-policy rules: direct user policies, admin, service wildcards, escalation, quarantine.

Granularity (one shape for the four policy checks): one Result per (principal, policy)
with `sub_key` = the policy ARN, or `inline:<name>` for an inline policy, PASS or FAIL; a
principal with no policies at all gets one PASS with sub_key "" so a scan can say what it
covered. A managed attachment whose document is missing from the snapshot (or any
unreadable document) gets *no* Result: not evaluated is not passed
(`checks.policy.unevaluated_policies` lists those gaps).

Users, groups and roles are evaluated; a group's policies are reported on the group,
never on each member. Service-linked roles are skipped: AWS owns their policies and
nobody can change them, so findings there could never be acted on.

Semantics of admin, wildcard, NotAction, Deny and conditions: see `checks.policy`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from checks.context import CheckContext
from checks.model import AccountSnapshot, Result
from checks.policy import (
    COMBINED_SUB_KEY,
    COMPROMISED_KEY_QUARANTINE_PREFIX,
    Grant,
    PolicyAnalysis,
    combined_escalation,
    escalation_actions,
    inline_analysis,
    is_aws_quarantine,
    managed_analysis,
    principal_details,
    sources_of,
)
from checks.rules.base import Principal, owner_of, result

USER_DIRECT_POLICY = "user-direct-policy"
ADMIN_POLICY = "admin-policy"
SERVICE_WILDCARD_POLICY = "service-wildcard-policy"
PRIVILEGE_ESCALATION_POLICY = "privilege-escalation-policy"
COMPROMISED_KEY_QUARANTINE = "compromised-key-quarantine"

# (failed, details) for one policy document.
Judge = Callable[[PolicyAnalysis], tuple[bool, dict[str, Any]]]


def _principals(snapshot: AccountSnapshot) -> Iterator[Principal]:
    yield from snapshot.users
    yield from snapshot.groups
    yield from (role for role in snapshot.roles if not role.service_linked)


def _per_policy(
    check: str, snapshot: AccountSnapshot, ctx: CheckContext, judge: Judge
) -> list[Result]:
    results = []
    for principal in _principals(snapshot):
        owner = owner_of(principal, ctx)
        found = sources_of(snapshot, principal)
        if found.empty:
            results.append(
                result(
                    check,
                    snapshot,
                    principal.arn,
                    False,
                    details=principal_details(principal),
                    owner=owner,
                )
            )
        for source in found.sources:
            failed, extra = judge(source.analysis)
            results.append(
                result(
                    check,
                    snapshot,
                    principal.arn,
                    failed,
                    sub_key=source.sub_key,
                    details={**source.details(), **extra},
                    owner=owner,
                )
            )
    return results


def _grants(grants: tuple[Grant, ...]) -> dict[str, Any]:
    details: dict[str, Any] = {
        "actions": sorted({a for g in grants for a in g.actions}),
        "statement_indexes": sorted({g.statement_index for g in grants}),
        "conditional": all(g.conditional for g in grants),
    }
    excluded = sorted({e for g in grants for e in g.excluded})
    if excluded:
        details["excluded"] = excluded
    if any(g.not_action for g in grants):
        details["not_action"] = True
    return details


# ---------------------------------------------------------------------------------------


def user_direct_policy(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    """A managed or inline policy attached to a user itself (CIS 1.15), one Result each.

    Not reported: AWSDenyAll, the AWSCompromisedKeyQuarantine* policies, and any other
    policy with only Deny statements (Steward's own quarantine is one). They can only
    reduce access, and they are how a user is quarantined; asking to move them to a
    group would undo the quarantine. They get a PASS with `reduces_access`.
    A missing managed document is still an attachment, so it is still judged (by name).
    """
    results = []
    for user in snapshot.users:
        owner = owner_of(user, ctx)
        base = principal_details(user)
        if not user.attached_policies and not user.inline_policies:
            results.append(
                result(USER_DIRECT_POLICY, snapshot, user.arn, False, details=base, owner=owner)
            )
        for ref in user.attached_policies:
            policy = snapshot.policy_by_arn.get(ref.arn)
            analysis = managed_analysis(snapshot, policy) if policy is not None else None
            reduces = is_aws_quarantine(ref.arn) or bool(analysis and analysis.deny_only)
            details = {"policy_arn": ref.arn, **base}
            if reduces:
                details["reduces_access"] = True
            results.append(
                result(
                    USER_DIRECT_POLICY,
                    snapshot,
                    user.arn,
                    not reduces,
                    sub_key=ref.arn,
                    details=details,
                    owner=owner,
                )
            )
        for inline in user.inline_policies:
            analysis = inline_analysis(snapshot, inline)
            reduces = bool(analysis and analysis.deny_only)
            details = {"policy_name": inline.name, **base}
            if reduces:
                details["reduces_access"] = True
            results.append(
                result(
                    USER_DIRECT_POLICY,
                    snapshot,
                    user.arn,
                    not reduces,
                    sub_key=f"inline:{inline.name}",
                    details=details,
                    owner=owner,
                )
            )
    return results


def admin_policy(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    """An Allow of `*` on `*` that the document's own Denies do not cut down (CIS 1.16)."""

    def judge(a: PolicyAnalysis) -> tuple[bool, dict[str, Any]]:
        return (True, _grants(a.admin)) if a.is_admin else (False, {})

    return _per_policy(ADMIN_POLICY, snapshot, ctx, judge)


def service_wildcard_policy(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    """An Allow of `service:*` (or of all actions that is not admin, e.g. PowerUserAccess).

    A policy that is admin passes here with `covered_by: admin-policy`: everything it
    grants is already in that finding, and one fix (remove the `*`) answers both.
    """

    def judge(a: PolicyAnalysis) -> tuple[bool, dict[str, Any]]:
        if a.is_admin:
            return False, {"covered_by": ADMIN_POLICY}
        if a.service_wildcards:
            return True, _grants(a.service_wildcards)
        return False, {}

    return _per_policy(SERVICE_WILDCARD_POLICY, snapshot, ctx, judge)


def privilege_escalation_policy(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    """A known escalation path (cloudsplaining's methods, our matcher) per policy, and
    one `combined` Result per principal with two or more documents for the paths only
    their combination opens (e.g. `iam:PassRole` in one policy, `ec2:RunInstances` in
    another; for a user, group policies count too). A combined Result whose documents
    could not all be read is emitted only when it fails: a pass would claim too much.
    """

    def judge(a: PolicyAnalysis) -> tuple[bool, dict[str, Any]]:
        methods = a.escalation_methods
        if not methods:
            return False, {}
        return True, {
            "escalation_methods": list(methods),
            "actions": list(escalation_actions(methods)),
            "conditional": a.escalation_conditional,
        }

    results = _per_policy(PRIVILEGE_ESCALATION_POLICY, snapshot, ctx, judge)
    for principal in _principals(snapshot):
        combined = combined_escalation(snapshot, principal)
        if combined is None or (combined.unevaluated and not combined.methods):
            continue
        details: dict[str, Any] = {
            **principal_details(principal),
            "policies": list(combined.policies),
        }
        if combined.methods:
            details.update(
                escalation_methods=list(combined.methods),
                actions=list(combined.actions),
                conditional=combined.conditional,
            )
        if combined.unevaluated:
            details["unevaluated_policies"] = [u.sub_key for u in combined.unevaluated]
        results.append(
            result(
                PRIVILEGE_ESCALATION_POLICY,
                snapshot,
                principal.arn,
                bool(combined.methods),
                sub_key=COMBINED_SUB_KEY,
                details=details,
                owner=owner_of(principal, ctx),
            )
        )
    return results


def compromised_key_quarantine(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    """AWS attached an `AWSCompromisedKeyQuarantine*` policy: a key of this user leaked.

    Matched on the policy name (V1, V2, V3 and later), one Result per user.
    """
    results = []
    for user in snapshot.users:
        arns = [
            ref.arn
            for ref in user.attached_policies
            if (ref.name or ref.arn.rpartition("/")[2]).startswith(
                COMPROMISED_KEY_QUARANTINE_PREFIX
            )
        ]
        details: dict[str, Any] = principal_details(user)
        if arns:
            details.update(policy_arn=arns[0], policy_arns=arns)
        results.append(
            result(
                COMPROMISED_KEY_QUARANTINE,
                snapshot,
                user.arn,
                bool(arns),
                details=details,
                owner=owner_of(user, ctx),
            )
        )
    return results
