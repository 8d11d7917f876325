"""Query functions. Each takes `*, session` and never commits: the service owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, select

from bot.core.lifecycle import TO_NOTIFY_STATES, State
from bot.core.report import account_name
from bot.db.models import (
    Account,
    AuditEvent,
    AuditRef,
    Finding,
    IamIdentity,
    OwnerOverride,
    Remediation,
    Scan,
)


def upsert_account(
    *, session: Session, account_id: str, label: str, role_arn: str | None, now: datetime
) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        account = Account(id=account_id, label=label, role_arn=role_arn, first_seen=now)
        session.add(account)
    else:
        account.label = label or account.label
        account.role_arn = role_arn
    return account


def add_scan(*, session: Session, scan: Scan) -> Scan:
    session.add(scan)
    session.flush()  # assigns the id findings refer to
    return scan


def findings_of_account(*, session: Session, account_id: str) -> dict[str, Finding]:
    rows = session.exec(select(Finding).where(Finding.account_id == account_id))
    return {f.fingerprint: f for f in rows}


def findings_in_states(
    *,
    session: Session,
    states: Iterable[str],
    account_id: str | None = None,
    owner: str | None = None,
    check_id: str | None = None,
) -> list[Finding]:
    query = select(Finding).where(Finding.state.in_(list(states)))
    if account_id:
        query = query.where(Finding.account_id == account_id)
    if owner:
        query = query.where(Finding.owner == owner)
    if check_id:
        query = query.where(Finding.check_id == check_id)
    return list(session.exec(query.order_by(Finding.id)))


def latest_scans(*, session: Session, limit: int = 20) -> list[Scan]:
    return list(session.exec(select(Scan).order_by(Scan.id.desc()).limit(limit)))


def identities_named(*, session: Session, name: str) -> list[IamIdentity]:
    return list(session.exec(select(IamIdentity).where(IamIdentity.name == name).limit(50)))


def identities_of_account(*, session: Session, account_id: str) -> list[IamIdentity]:
    return list(session.exec(select(IamIdentity).where(IamIdentity.account_id == account_id)))


def replace_identities(
    *, session: Session, account_id: str, identities: Iterable[dict], now: datetime
) -> None:
    """The account's IAM users as a successful scan saw them; users gone are forgotten."""
    stored = {i.arn: i for i in identities_of_account(session=session, account_id=account_id)}
    for item in identities:
        row = stored.pop(item["arn"], None)
        if row is None:
            session.add(IamIdentity(account_id=account_id, last_seen=now, **item))
        else:
            row.name, row.owner, row.facts, row.last_seen = item["name"], item["owner"], item["facts"], now
    for gone in stored.values():
        session.delete(gone)


def identities_owned_by(*, session: Session, owner_values: Iterable[str]) -> list[IamIdentity]:
    """IAM users owned by any of `owner_values`: by tag/email unless an override gives them to
    someone else, or by an override. Two indexed lookups rather than one OR over a join."""
    values = list(owner_values)
    by_tag = select(IamIdentity).where(
        IamIdentity.owner.in_(values),
        ~select(OwnerOverride.resource)
        .where(OwnerOverride.resource == IamIdentity.arn, OwnerOverride.slack_user_id.not_in(values))
        .exists(),
    )
    by_override = select(IamIdentity).join(OwnerOverride, OwnerOverride.resource == IamIdentity.arn).where(
        OwnerOverride.slack_user_id.in_(values)
    )
    rows = {row.id: row for query in (by_tag, by_override) for row in session.exec(query)}
    return sorted(rows.values(), key=lambda i: (i.account_id, i.name))


def findings_owned_by(
    *, session: Session, owner_values: Iterable[str], states: Iterable[str]
) -> list[Finding]:
    """Findings in `states` owned by any of `owner_values` (see `identities_owned_by`)."""
    values, states = list(owner_values), list(states)
    by_tag = select(Finding).where(
        Finding.owner.in_(values),
        Finding.state.in_(states),
        ~select(OwnerOverride.resource)
        .where(OwnerOverride.resource == Finding.resource, OwnerOverride.slack_user_id.not_in(values))
        .exists(),
    )
    by_override = select(Finding).join(OwnerOverride, OwnerOverride.resource == Finding.resource).where(
        OwnerOverride.slack_user_id.in_(values), Finding.state.in_(states)
    )
    rows = {row.id: row for query in (by_tag, by_override) for row in session.exec(query)}
    return sorted(rows.values(), key=lambda f: f.id)


def last_successful_scan_at(*, session: Session) -> datetime | None:
    return session.exec(
        select(func.max(Scan.finished_at)).where(Scan.status == "succeeded")
    ).one()


def finding_by_ref(*, session: Session, ref: str | int) -> Finding | None:
    """A finding by its id or its fingerprint (a unique prefix of 8+ characters will do)."""
    text_ref = str(ref).strip()
    if text_ref.isdigit():
        return session.get(Finding, int(text_ref))
    if len(text_ref) < 8:
        return None
    rows = list(session.exec(select(Finding).where(Finding.fingerprint.startswith(text_ref)).limit(2)))
    return rows[0] if len(rows) == 1 else None


def account_role(*, session: Session, account_id: str) -> str | None:
    account = session.get(Account, account_id)
    return account.role_arn if account else None


def last_remediation_done(*, session: Session, resource: str, action: str) -> datetime | None:
    """When Steward last completed `action` on `resource` (and did not undo it), if ever."""
    return session.exec(
        select(func.max(Remediation.finished_at)).where(
            Remediation.resource == resource,
            Remediation.action == action,
            Remediation.status == "succeeded",
            Remediation.dry_run.is_(False),
        )
    ).one()


def remediation_in_flight(*, session: Session, finding_id: int) -> Remediation | None:
    return session.exec(
        select(Remediation).where(
            Remediation.finding_id == finding_id,
            Remediation.status.in_(["planned", "approved", "executing", "undoing"]),
        )
    ).first()


def finding_by_token(*, session: Session, token: str) -> Finding | None:
    return session.exec(select(Finding).where(Finding.token == token)).first()


def remediation_by_token(*, session: Session, token: str) -> Remediation | None:
    return session.exec(select(Remediation).where(Remediation.token == token)).first()


def latest_remediations(*, session: Session, finding_ids: Iterable[int]) -> dict[int, Remediation]:
    """The newest remediation of each finding (for showing what happened)."""
    ids = list(finding_ids)
    if not ids:
        return {}
    rows = session.exec(select(Remediation).where(Remediation.finding_id.in_(ids)).order_by(Remediation.id))
    return {row.finding_id: row for row in rows}  # later ids overwrite earlier ones


def findings_to_route(*, session: Session) -> list[Finding]:
    """Open findings nobody has been told about yet (including ones whose send was cut short)."""
    return list(session.exec(
        select(Finding)
        .where(Finding.state.in_(sorted(TO_NOTIFY_STATES)), Finding.notify_ts.is_(None))
        .order_by(Finding.id)
    ))


def findings_by_fingerprints(*, session: Session, fingerprints: Iterable[str]) -> list[Finding]:
    wanted = list(fingerprints)
    found: list[Finding] = []
    for start in range(0, len(wanted), 500):  # keep IN lists a reasonable size
        found += session.exec(select(Finding).where(Finding.fingerprint.in_(wanted[start : start + 500])))
    return found


def findings_in_message(*, session: Session, channel: str, ts: str) -> list[Finding]:
    return list(session.exec(
        select(Finding).where(Finding.notify_channel == channel, Finding.notify_ts == ts).order_by(Finding.id)
    ))


def overrides_for(*, session: Session, resources: Iterable[str]) -> dict[str, str]:
    keys = list(set(resources))
    if not keys:
        return {}
    rows = session.exec(select(OwnerOverride).where(OwnerOverride.resource.in_(keys)))
    return {row.resource: row.slack_user_id for row in rows}


def waiting_findings(*, session: Session, notified_before: datetime, field: str | None = None) -> list[Finding]:
    """Findings DMed to an owner before `notified_before` with no decision since, and (with
    `field`, e.g. "reminded_at") not yet reminded or escalated."""
    query = select(Finding).where(
        Finding.state == State.NOTIFIED, Finding.notified_at <= notified_before,
        Finding.notified_to.is_not(None), Finding.decision.is_(None),
    )
    if field:
        query = query.where(getattr(Finding, field).is_(None))
    return list(session.exec(query.order_by(Finding.id)))


def decisions_ending(*, session: Session, now: datetime) -> list[Finding]:
    return list(session.exec(
        select(Finding)
        .where(Finding.decision_until.is_not(None), Finding.decision_until <= now, Finding.state != State.RESOLVED)
        .order_by(Finding.id)
    ))


def last_audit_event(*, session: Session, action: str, account_id: str) -> AuditEvent | None:
    """The account's latest event of `action` (e.g. its last clean Security Hub export)."""
    return session.exec(
        select(AuditEvent).where(AuditEvent.action == action, AuditEvent.account == account_id)
        .order_by(AuditEvent.sequence.desc()).limit(1)
    ).first()


def findings_to_export(*, session: Session, account_id: str, resolved_since: datetime | None) -> list[Finding]:
    """Every finding still open in an account, plus those resolved since `resolved_since`."""
    open_ = Finding.state != State.RESOLVED
    account_id_matches = Finding.account_id == account_id
    # A risky change's containment handle (bot.services.activity) is not a finding of the scan.
    not_activity = Finding.check_id.not_like("activity:%")
    if resolved_since is None:
        query = select(Finding).where(account_id_matches, not_activity, open_)
    else:
        query = select(Finding).where(
            account_id_matches, not_activity, open_ | (Finding.resolved_at >= resolved_since)
        )
    return list(session.exec(query.order_by(Finding.id)))


def account_names(*, session: Session, account_ids: Iterable[str] | None = None) -> dict[str, str]:
    """Account id -> its name (alias or Organizations name), for accounts that have one."""
    query = select(Account.id, Account.label)
    if account_ids is not None:
        query = query.where(Account.id.in_(list(set(account_ids))))
    return {id_: name for id_, label in session.exec(query) if (name := account_name(label, id_))}


def owner_changes(*, session: Session, resources: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Identity (resource) -> (the last owner change's audit action, its actor): who said
    "Not mine" or who assigned an owner, from the audit log's search index."""
    resources = list(set(resources))
    if not resources:
        return {}
    rows = session.exec(
        select(AuditRef.ref, AuditEvent.action, AuditEvent.actor)
        .join(AuditEvent, AuditEvent.sequence == AuditRef.sequence)
        .where(AuditRef.ref.in_(resources), AuditEvent.action.in_(["decision.not_mine", "owner.assigned"]))
        .order_by(AuditEvent.sequence)
    )
    return {ref: (action, actor) for ref, action, actor in rows}


def overrides_with_assigner(*, session: Session, resources: Iterable[str]) -> dict[str, OwnerOverride]:
    resources = list(set(resources))
    if not resources:
        return {}
    return {o.resource: o for o in session.exec(select(OwnerOverride).where(OwnerOverride.resource.in_(resources)))}


def open_findings_of_identity(*, session: Session, resource: str, states: Iterable[str]) -> list[Finding]:
    """Findings of one identity (resource) in `states` without a standing decision."""
    return list(session.exec(select(Finding).where(
        Finding.resource == resource, Finding.state.in_(list(states)), Finding.decision.is_(None))))


def replace_principals(*, session: Session, account_id: str, scan_id: int, principals: Iterable[dict]) -> int:
    """The account's users and roles with their entitlements, as scan `scan_id` saw them
    (what an access review freezes). Replaces the account's earlier rows; returns the count."""
    from sqlalchemy import delete, insert

    from bot.db.models import PrincipalInventory

    session.execute(delete(PrincipalInventory).where(PrincipalInventory.account_id == account_id))
    rows = [{"account_id": account_id, "scan_id": scan_id, "kind": p["kind"], "name": p["name"], "arn": p["arn"],
             "owner": p.get("owner"), "entitlements": p.get("entitlements") or {}, "created": p.get("created"),
             "last_used": p.get("last_used")} for p in principals]
    if rows:
        session.execute(insert(PrincipalInventory), rows)
    return len(rows)
