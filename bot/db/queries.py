"""Query functions. Each takes `*, session` and never commits: the service owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlmodel import Session, select

from bot.db.models import Account, Finding, Scan


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
