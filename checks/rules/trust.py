"""Role trust-policy rules: public roles and external accounts without an ExternalId.

One Result per role (sub_key ""). A role whose trust policy is missing or unreadable gets
no Result (not evaluated is not passed). What counts as public, restricting, external and
an ExternalId guard is decided in `checks.policy.analyse_trust`.
"""

from __future__ import annotations

from typing import Any

from checks.context import CheckContext
from checks.model import AccountSnapshot, Result
from checks.policy import TrustAnalysis, analyse_trust, principal_details
from checks.rules.base import owner_of, result

ROLE_TRUST_EXTERNAL_NO_EXTERNAL_ID = "role-trust-external-no-external-id"
ROLE_TRUST_PUBLIC = "role-trust-public"


def _analysed(snapshot: AccountSnapshot, ctx: CheckContext):
    for role in snapshot.roles:
        analysis = analyse_trust(
            role.trust_policy,
            own_account=snapshot.account_id,
            internal_accounts=ctx.internal_accounts,
        )
        if analysis is not None:
            yield role, analysis


def _base(role, analysis: TrustAnalysis) -> dict[str, Any]:
    details: dict[str, Any] = principal_details(role)
    if analysis.malformed:
        details["malformed_statements"] = analysis.malformed
    return details


def role_trust_public(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    """Any AWS account may assume the role: `*` principal without a restricting condition."""
    results = []
    for role, analysis in _analysed(snapshot, ctx):
        details = _base(role, analysis)
        if analysis.public:
            details.update(
                statement_index=analysis.public[0].statement_index,
                statement_indexes=[p.statement_index for p in analysis.public],
                principals=sorted({v for p in analysis.public for v in p.principals}),
                external_id_only=all(p.external_id_only for p in analysis.public),
            )
        results.append(
            result(
                ROLE_TRUST_PUBLIC,
                snapshot,
                role.arn,
                bool(analysis.public),
                details=details,
                owner=owner_of(role, ctx),
            )
        )
    return results


def role_trust_external_no_external_id(
    snapshot: AccountSnapshot, ctx: CheckContext
) -> list[Result]:
    """Another AWS account may assume the role and no `sts:ExternalId` is required.

    The snapshot's own account and `ctx.internal_accounts` are not external.
    """
    results = []
    for role, analysis in _analysed(snapshot, ctx):
        details = _base(role, analysis)
        if analysis.external:
            details.update(
                external_accounts=sorted({a for e in analysis.external for a in e.accounts}),
                statement_index=analysis.external[0].statement_index,
                statement_indexes=[e.statement_index for e in analysis.external],
                principals=sorted({p for e in analysis.external for p in e.principals}),
            )
        if analysis.unresolved_principals:
            details["unresolved_principals"] = sorted(set(analysis.unresolved_principals))
        results.append(
            result(
                ROLE_TRUST_EXTERNAL_NO_EXTERNAL_ID,
                snapshot,
                role.arn,
                bool(analysis.external),
                details=details,
                owner=owner_of(role, ctx),
            )
        )
    return results
