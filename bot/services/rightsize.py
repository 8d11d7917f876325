"""Right-sizing a policy several owners' principals share: every owner says yes first.

A customer managed policy attached to principals of different owners is right-sized for
all of them at once (the proposal keeps what any of them used), so it is applied only
when every affected finding (one per principal holding it, same policy, same proposal)
has a yes: its owner's click on Apply, or a security approver's. Each yes is a row in
`usage_consent` and an audit event; the click that completes the set goes on to plan
and apply. A proposal that changed since (another scan) needs new yeses (its digest).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import select

from bot.core.lifecycle import LIVE_STATES
from bot.db import audit
from bot.db.engine import session_scope, write_scope
from bot.db.models import Finding, UsageConsent

CHECK = "unused-permissions"


def _label(arn: str) -> str:
    return arn.split(":", 5)[-1] if arn.startswith("arn:") else arn


def pending_owners(engine: Engine, finding: Finding) -> list[dict]:
    """The other principals holding the finding's policy whose yes to this proposal is
    missing: `{"arn", "owner", "why"}`."""
    details = finding.details or {}
    shared = details.get("shared_with") or []
    if not shared:
        return []
    policy, digest = details.get("policy_arn") or "", details.get("proposal_digest") or ""
    arns = [s["arn"] for s in shared]
    with session_scope(engine) as session:
        others = session.exec(select(Finding).where(
            Finding.check_id == CHECK, Finding.account_id == finding.account_id, Finding.sub_key == finding.sub_key,
            Finding.resource.in_(arns))).all()
        agreed = set(session.exec(select(UsageConsent.fingerprint).where(
            UsageConsent.policy_key == policy, UsageConsent.proposal_digest == digest)).all())
    by_arn = {f.resource: f for f in others}
    pending = []
    for item in shared:
        other = by_arn.get(item["arn"])
        if other is None or other.state not in LIVE_STATES:
            why = "has no open proposal for it"
        elif (other.details or {}).get("proposal_digest") != digest:
            why = "was shown a different proposal (scan again)"
        elif other.fingerprint not in agreed:
            why = "has not agreed yet"
        else:
            continue
        pending.append({"arn": item["arn"], "owner": item.get("owner"), "why": why})
    return pending


def require_consents(engine: Engine, finding: Finding, *, actor: str, now: datetime,
                     is_approver: Callable[[str], bool] = lambda _u: False) -> str | None:
    """Record `actor`'s yes for this finding; while anyone else must still agree, return the
    sentence naming them (the caller refuses with it: nothing changes in AWS until then)."""
    details = finding.details or {}
    if not details.get("shared_with"):
        return None
    policy, digest = details.get("policy_arn") or "", details.get("proposal_digest") or ""
    pending = pending_owners(engine, finding)  # the others: this finding's own yes is below
    with write_scope(engine) as session:  # the yes and its audit event together
        exists = session.exec(select(UsageConsent).where(
            UsageConsent.policy_key == policy, UsageConsent.proposal_digest == digest,
            UsageConsent.fingerprint == finding.fingerprint)).first()
        if exists is None:
            session.add(UsageConsent(policy_key=policy, proposal_digest=digest, fingerprint=finding.fingerprint,
                                     actor=actor, consented_at=now))
            audit.record(session, actor=actor, action=audit.AuditAction.RIGHTSIZE_CONSENTED,
                         subject_fingerprint=finding.fingerprint, resource=finding.resource,
                         account=finding.account_id, at=now,
                         payload={"policy": policy, "digest": digest, "approver": is_approver(actor),
                                  "pending": [p["arn"] for p in pending]})
    if pending:
        names = "; ".join(f"{_label(p['arn'])} ({p['owner'] or 'no owner: security triage'}) {p['why']}"
                          for p in pending)
        return (
            f"Noted: you agree to right-size {_label(policy)}. It is also attached to principals of other "
            f"owners, so Steward changes it only once each of them agrees: {names}. Nothing changed yet.")
    return None
