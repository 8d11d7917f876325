"""Identity-policy rules: direct user policies, admin, service wildcards, escalation, quarantine.

Granularity of admin, wildcard and direct-policy checks: one Result per (principal, policy)
with `sub_key` = the policy ARN, or `inline:<name>` for an inline policy, PASS or FAIL; a
principal with no policies at all gets one PASS with sub_key "" so a scan can say what it
covered. A managed attachment whose document is missing from the snapshot (or any
unreadable document) gets *no* Result: not evaluated is not passed
(`checks.policy.unevaluated_policies` lists those gaps).

`privilege-escalation-policy` is principal-level instead (sub_key ""): it judges what
the principal can really do across all its documents and the roles it can reach
(`checks.effective`, `checks.escalation`), with the granting policies in its details.

Users, groups and roles are evaluated; a group's policies are reported on the group,
never on each member. Service-linked roles are skipped: AWS owns their policies and
nobody can change them, so findings there could never be acted on.

Semantics of admin, wildcard, NotAction, Deny and conditions: see `checks.policy`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from checks import effective, escalation
from checks import escalation_methods as catalogue
from checks.context import CheckContext
from checks.model import AccountSnapshot, Result, Severity, User
from checks.policy import (
    COMPROMISED_KEY_QUARANTINE_PREFIX,
    Grant,
    PolicyAnalysis,
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
    """What the principal can really do, one Result per principal (sub_key ""): the
    escalation methods its effective permissions allow (all its policies and, for a user,
    its groups', minus every Deny, within its boundary and the account's SCPs, conditions
    decided where they can be; `checks.effective`), and any chain of roles it can assume
    up to an administrator or an exploitable method (`checks.escalation`).

    A method whose prerequisite exists is exploitable (the check's severity); one whose
    prerequisite is absent is latent (`severity: medium` in the details). A user's methods
    that one of its groups already has (by name) are reported on the group only. A
    principal with a document that could not be read gets no PASS (it may fail, never
    falsely pass).
    """
    analysis = escalation.analyse([snapshot], ctx.now)
    with escalation.gc_paused():
        return _escalation_results(snapshot, ctx, analysis)


def _escalation_results(
    snapshot: AccountSnapshot, ctx: CheckContext, analysis: escalation.Analysis
) -> list[Result]:
    results = []
    for principal in _principals(snapshot):
        verdict = analysis.verdicts[principal.arn]
        methods = list(verdict.methods)
        via_groups: list[str] = []
        if isinstance(principal, User):
            held: dict[str, str] = {}
            for group_arn in analysis.groups_of.get(principal.arn, ()):
                for m in analysis.verdicts[group_arn].methods:
                    held.setdefault(m.name, group_arn)
            via_groups = sorted({held[m.name] for m in methods if m.name in held})
            methods = [m for m in methods if m.name not in held]
        chain = None if verdict.admin else analysis.chains.get(principal.arn)
        failed = bool(methods) or chain is not None
        if not failed and verdict.unevaluated:
            continue
        details = escalation_details(principal, verdict, methods, chain)
        if via_groups:
            details["also_via_groups"] = [effective.short_name(g) for g in via_groups]
        if snapshot.scps is None and snapshot.scps_note:
            details["scps_not_applied"] = snapshot.scps_note  # "SCPs not visible: AccessDenied…"
        results.append(
            result(
                PRIVILEGE_ESCALATION_POLICY,
                snapshot,
                principal.arn,
                failed,
                details=details,
                owner=owner_of(principal, ctx),
            )
        )
    return results


_METHODS_SHOWN = 10


def escalation_details(
    principal: Principal,
    verdict: effective.PrincipalVerdict,
    methods: list[effective.MethodVerdict],
    chain: escalation.Chain | None,
) -> dict[str, Any]:
    """The evidence of one principal's escalation verdict, JSON-ready and deterministic."""
    details: dict[str, Any] = principal_details(principal)
    exploitable = [m for m in methods if m.exploitable]
    if methods or chain:
        details["status"] = "exploitable" if exploitable or chain else "latent"
        if not exploitable and not chain:
            details["severity"] = Severity.MEDIUM.value
    if methods:
        sources = sorted({s for m in methods for s in m.sources})
        details.update(
            escalation_methods=[m.name for m in methods],
            # An administrator holds every action: `*` says it, a list of dozens does not.
            actions=["*"] if verdict.admin else sorted({a for m in methods for a in m.method.actions}),
            conditional=all(m.conditions for m in methods) and not (chain and not chain.conditions),
            policies=sources,
            methods=[_method(m) for m in methods[:_METHODS_SHOWN]],
        )
        if len(methods) > _METHODS_SHOWN:
            details["more_methods"] = len(methods) - _METHODS_SHOWN
        own = [s for s in sources if not s.startswith("group:")]
        if len(sources) == 1 and own:
            key = "policy_name" if own[0].startswith("inline:") else "policy_arn"
            details[key] = own[0].removeprefix("inline:")
    if chain:
        details["path"] = [effective.short_name(a) for a in chain.path]
        details["path_reaches"] = chain.reaches
        if chain.conditions:
            details["path_conditions"] = list(chain.conditions)
    if verdict.removed:
        details["removed_by"] = [
            {"policy": s.source, "statement_index": s.index, "actions": list(s.statement.actions.written)}
            for s in verdict.removed
        ]
    if verdict.bounded_by:
        details["permissions_boundary"] = verdict.bounded_by
    if verdict.blocked_by:
        details["blocked_by"] = [{"policy": src, "actions": list(actions)} for src, actions in verdict.blocked_by]
    if verdict.scps:
        details["scps_applied"] = True
    if verdict.unevaluated:
        details["unevaluated_policies"] = [u.source for u in verdict.unevaluated]
    sentence = explanation(principal, methods, chain)
    if verdict.admin and methods:
        sentence = (f"{effective.short_name(principal.arn)} is an administrator (`*` on `*`): it can do anything, "
                    f"including granting itself more" + _conditional(tuple(methods[0].conditions)))
    if sentence:
        details["explanation"] = sentence
    return details


def _method(m: effective.MethodVerdict) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": m.name,
        "status": "exploitable" if m.exploitable else "latent",
        "granted_by": list(m.sources),
    }
    if m.targets:
        out["targets"] = list(m.targets)
    if m.conditions:
        out["conditional"] = list(m.conditions)
    if m.note:
        out["note"] = m.note
    out["reference"] = m.method.reference
    return out


def explanation(
    principal: Principal,
    methods: list[effective.MethodVerdict],
    chain: escalation.Chain | None,
) -> str:
    """One sentence a person understands: the chain, or the first method and its target."""
    who = effective.short_name(principal.arn)
    if chain:
        path = " → ".join(effective.short_name(a) for a in chain.path)
        if chain.reaches == effective.ADMIN:
            sentence = f"{who} can become administrator by assuming roles: {path}"
        else:
            method = catalogue.BY_NAME[chain.reaches].explanation
            sentence = f"{who} can assume roles {path}, and the last one can {method}"
        return sentence + _conditional(chain.conditions)
    if not methods:
        return ""
    exploitable = [m for m in methods if m.exploitable]
    first = (exploitable or methods)[0]
    more = len(methods) - 1
    target = f" (e.g. {first.targets[0]})" if first.targets else ""
    if first.exploitable:
        sentence = f"{who} can {first.method.explanation}{target}"
    else:
        sentence = f"{who} could {first.method.explanation} once it exists ({first.note})"
    if more:
        sentence += f", and {more} more way{'s' if more > 1 else ''}"
    return sentence + _conditional(first.conditions)


def _conditional(conditions: tuple[str, ...]) -> str:
    return f" — conditional: {'; '.join(conditions)}" if conditions else ""


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
