"""Permissions granted but not used (IAM last-accessed data), with a right-sized policy.

One result per principal and policy it holds directly (a group's policies on the group),
judged only when every principal holding the policy has usage data and is older than the
window (a new principal has not had the time to use what it was given). A policy several
principals hold keeps what any of them used (`checks.rightsize.UsageView`); the finding on
each of them names the others (`shared_with`), whose owners must agree before it changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from checks.context import CheckContext
from checks.model import AccountSnapshot, Group, Result, Role, User
from checks.policy import load_document
from checks.rightsize import Proposal, UnsafeProposal, UsageView, digest, propose
from checks.rules.base import Principal, owner_of, result
from checks.usage import PrincipalUsage, group_usage

CHECK = "unused-permissions"
AWS_MANAGED_ARN = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/")


def _holders(snapshot: AccountSnapshot) -> dict[str, list[Principal]]:
    """Managed policy ARN -> the users, groups and roles it is attached to."""
    out: dict[str, list[Principal]] = {}
    for p in (*snapshot.users, *snapshot.groups, *snapshot.roles):
        for ref in p.attached_policies:
            out.setdefault(ref.arn, []).append(p)
    return out


def _members(snapshot: AccountSnapshot, group: Group) -> list[User]:
    return [u for u in snapshot.users if group.name in u.groups]


def _usage(snapshot: AccountSnapshot, p: Principal, ctx: CheckContext, days: int) -> list[PrincipalUsage] | None:
    """The usage records judging `p` (a group: its members'), or None when one is missing
    or too young to judge."""
    usage = snapshot.usage or {}
    people: Iterable[User | Role] = _members(snapshot, p) if isinstance(p, Group) else (p,)
    found = []
    for who in people:
        record = usage.get(who.arn)
        if record is None or (ctx.days_since(who.created) or 0) < days:
            return None
        found.append(record)
    if isinstance(p, Group):
        if not found:
            return None
        merged = group_usage(p.arn, [m.arn for m in people], {r.arn: r for r in found}, ctx.now)
        return [merged] if merged else None
    return found


def unused_permissions(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    if snapshot.usage is None:
        return []
    holders = _holders(snapshot)
    results: list[Result] = []
    for principal in (*snapshot.users, *snapshot.groups, *snapshot.roles):
        if isinstance(principal, Role) and principal.service_linked:
            continue
        tags = getattr(principal, "tags", {}) or {}
        days = ctx.thresholds.for_tags(tags).unused_days
        for name, document in ((i.name, i.document) for i in principal.inline_policies):
            records = _usage(snapshot, principal, ctx, days)
            if records is None:
                continue
            results.extend(_judge(snapshot, ctx, principal, days, records, document,
                                  {"policy_name": name, "policy_kind": "inline"}, f"inline:{name}", []))
        for ref in principal.attached_policies:
            policy = snapshot.policy_by_arn.get(ref.arn)
            if policy is None:
                continue
            sharing = holders.get(ref.arn, [principal])
            shared_days = max([days, *(ctx.thresholds.for_tags(getattr(h, "tags", {}) or {}).unused_days
                                       for h in sharing)])
            records = []
            for holder in sharing:
                got = _usage(snapshot, holder, ctx, shared_days)
                if got is None:
                    records = None
                    break
                records.extend(got)
            if records is None:
                continue
            kind = "aws" if AWS_MANAGED_ARN.match(ref.arn) else "customer"
            facts: dict[str, Any] = {"policy_arn": ref.arn, "policy_kind": kind,
                                     "default_version_id": policy.default_version_id}
            if kind == "aws":
                facts["suggested_name"] = f"{principal.name}-{policy.name}-rightsized"[:128]
            others = [h for h in sharing if h.arn != principal.arn]
            results.extend(_judge(snapshot, ctx, principal, shared_days, records, policy.document, facts,
                                  ref.arn, others))
    return results


def _judge(snapshot: AccountSnapshot, ctx: CheckContext, principal: Principal, days: int,
           records: list[PrincipalUsage], document: Mapping[str, Any], facts: dict[str, Any], sub_key: str,
           others: list[Principal]) -> list[Result]:
    view = UsageView(tuple(records), ctx.now - timedelta(days=days))
    try:
        proposal: Proposal = propose(document, view)
    except (ValueError, UnsafeProposal):
        return []  # unreadable, or a rewrite that failed its own check: nothing to offer
    collected = min(r.collected_at for r in records)
    shared = [{"arn": o.arn, "owner": owner_of(o, ctx)} for o in others]
    explanation = f"Right-sized: {proposal.summary()}."
    if proposal.empty:
        explanation = f"Nothing it allows was used in {days} days: the policy could go altogether."
    if shared:
        names = ", ".join(f"{s['arn'].split(':', 5)[-1]} ({s['owner'] or 'no owner'})" for s in shared[:5])
        explanation += f" Also held by {names}: each owner must agree before it changes."
    details = {
        **facts,
        "unused_days": days,
        "removes": list(proposal.removed),
        "narrowed": list(proposal.narrowed),
        "keeps": list(proposal.kept),
        "summary": proposal.summary(),
        "proposal": proposal.document,
        "proposal_digest": proposal.digest,
        "empty": proposal.empty,
        "notes": list(proposal.notes),
        "usage_collected_at": collected.isoformat(),
        "shared_with": shared,
        "base_digest": digest(load_document(document) or {}),
        "explanation": explanation,
    }
    return [result(CHECK, snapshot, principal.arn, proposal.changed, sub_key=sub_key, details=details,
                   owner=owner_of(principal, ctx))]
