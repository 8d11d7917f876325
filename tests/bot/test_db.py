"""Persistence of scans and findings on SQLite and PostgreSQL, and the migrations."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import inspect
from sqlmodel import Session, select

from bot.config import Settings
from bot.db.engine import make_engine, session_scope
from bot.db.migrate import current_revision, downgrade, ensure_schema, head_revision, upgrade
from bot.db.models import AuditEvent, Finding, Scan
from bot.services.scans import AccountOutcome, ScanService, sync_findings
from checks.model import Result, Status
from tests.factories import ACCOUNT, NOW

TABLES = {"account", "scan", "finding", "audit_event", "audit_ref", "audit_chain_head", "iam_identity",
          "owner_override", "remediation"}


def test_migrations_up_down_up(empty_database_url):
    upgrade(empty_database_url)
    engine = make_engine(empty_database_url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert current_revision(engine) == head_revision()
    downgrade(empty_database_url, "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(empty_database_url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_migrations_match_the_models(database_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    from bot.db.models import is_steward_object

    engine = make_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": is_steward_object})
        assert compare_metadata(context, SQLModel.metadata) == []
    engine.dispose()


def test_routing_migration_gives_existing_findings_tokens(empty_database_url):
    from sqlalchemy import text

    upgrade(empty_database_url, "0004")
    engine = make_engine(empty_database_url)
    with engine.begin() as conn:
        for fp in ("a", "b"):
            conn.execute(text(
                "INSERT INTO finding (fingerprint, account_id, check_id, resource, sub_key, severity, title, state,"
                " details, first_seen, last_seen, state_changed_at, times_reopened)"
                " VALUES (:fp, '111122223333', 'stale-user', 'arn', '', 'high', 't', 'open', '{}', :now, :now, :now, 0)"
            ), {"fp": fp, "now": NOW.replace(tzinfo=None)})
    upgrade(empty_database_url)
    with engine.connect() as conn:
        tokens = [row[0] for row in conn.execute(text("SELECT token FROM finding"))]
    assert len(set(tokens)) == 2 and all(len(t) >= 16 for t in tokens)
    engine.dispose()


def test_ensure_schema_refuses_a_stale_production_database(empty_database_url):
    engine = make_engine(empty_database_url)
    try:
        ensure_schema(engine, upgrade=False)
    except RuntimeError as exc:
        assert "steward db upgrade" in str(exc)
    else:
        raise AssertionError("a database without schema was accepted")
    ensure_schema(engine, upgrade=True)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def finding(resource="arn:aws:iam::111122223333:user/alice", check="stale-user", sub_key=""):
    return Result(check=check, account=ACCOUNT, resource=resource, status=Status.FAIL,
                  sub_key=sub_key, details={"n": 1}, owner="alice@example.com")


def sync(engine, results, now):
    with session_scope(engine) as session:
        return sync_findings(session, ACCOUNT, results, {r.fingerprint: r.owner for r in results}, 1, now)


def rows(engine):
    with Session(engine) as session:
        return {f.fingerprint: f for f in session.exec(select(Finding))}


def test_rescan_updates_instead_of_duplicating(engine):
    a, b = finding(), finding(check="unused-access-key", sub_key="AKIAEXAMPLE1")
    assert sync(engine, [a, b], NOW) == {"new": [a.fingerprint, b.fingerprint], "reopened": [], "resolved": []}
    later = NOW + timedelta(hours=6)
    assert sync(engine, [a, b, a], later) == {"new": [], "reopened": [], "resolved": []}
    stored = rows(engine)
    assert len(stored) == 2
    assert stored[a.fingerprint].first_seen == NOW
    assert stored[a.fingerprint].last_seen == later
    assert stored[a.fingerprint].owner == "alice@example.com"


def test_missing_findings_resolve_and_come_back_reopened(engine):
    a, b = finding(), finding(resource="arn:aws:iam::111122223333:user/bob")
    sync(engine, [a, b], NOW)
    assert sync(engine, [a], NOW + timedelta(days=1))["resolved"] == [b.fingerprint]
    assert rows(engine)[b.fingerprint].state == "resolved"
    assert rows(engine)[b.fingerprint].resolved_at == NOW + timedelta(days=1)
    assert sync(engine, [a, b], NOW + timedelta(days=2))["reopened"] == [b.fingerprint]
    back = rows(engine)[b.fingerprint]
    assert (back.state, back.resolved_at, back.times_reopened) == ("reopened", None, 1)
    assert back.first_seen == NOW  # history kept: same row, same first sighting


def test_failed_scan_never_resolves_findings(engine):
    sync(engine, [finding()], NOW)
    service = ScanService(Settings(), engine=engine, clock=lambda: NOW)
    failed = AccountOutcome(account_id=ACCOUNT, label=ACCOUNT, status="failed",
                            started_at=NOW, finished_at=NOW + timedelta(seconds=3),
                            error="AccessDenied on iam:GenerateCredentialReport")
    with Session(engine) as session:
        queued = Scan(run_id="r1", account_id=ACCOUNT, started_at=NOW, status="queued")
        session.add(queued)
        session.commit()
        scan_id = queued.id
    assert service._persist(failed, scan_id=scan_id, run_id="r1", actor="test", role_arn=None)
    assert not service._persist(failed, scan_id=scan_id, run_id="r1", actor="test", role_arn=None)  # final: once
    assert [f.state for f in rows(engine).values()] == ["open"]
    with Session(engine) as session:
        scan = session.exec(select(Scan)).one()
    assert (scan.status, scan.error) == ("failed", "AccessDenied on iam:GenerateCredentialReport")
    assert scan.finished_at == NOW + timedelta(seconds=3)
    with Session(engine) as session:
        [event] = session.exec(select(AuditEvent)).all()
    assert (event.action, event.actor, event.account) == ("scan.failed", "test", ACCOUNT)
    assert event.payload["error"] == "AccessDenied on iam:GenerateCredentialReport"


def test_owner_override_wins_over_tags(engine):
    from bot.db import queries
    from bot.db.models import IamIdentity, OwnerOverride

    with session_scope(engine) as session:
        for name in ("svc", "tool"):
            session.add(IamIdentity(account_id=ACCOUNT, name=name, arn=f"arn:aws:iam::{ACCOUNT}:user/{name}",
                                    owner="alice@example.com", facts={}, last_seen=NOW))
        session.add(OwnerOverride(resource=f"arn:aws:iam::{ACCOUNT}:user/tool", slack_user_id="UBOB",
                                  assigned_by="USEC", assigned_at=NOW))
    with session_scope(engine) as session:
        alice = [i.name for i in queries.identities_owned_by(session=session, owner_values={"UALICE", "alice@example.com"})]
        bob = [i.name for i in queries.identities_owned_by(session=session, owner_values={"UBOB", "bob@example.com"})]
    assert (alice, bob) == (["svc"], ["tool"])
