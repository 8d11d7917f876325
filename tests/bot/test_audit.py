"""The hash-chained audit log on SQLite and PostgreSQL: chain, locking, tampering, export."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, func, select

from bot.audit import (
    EXPORT_COLUMNS,
    GENESIS_HASH,
    AuditAction,
    AuditError,
    ChainHead,
    VerifyResult,
    canonical_json,
    chain_hash,
    chain_head,
    event_document,
    events_about,
    export,
    record,
    rehash_export,
    verify,
)
from bot.db.engine import make_engine, session_scope
from bot.db.migrate import current_revision, downgrade, upgrade
from bot.db.models import AuditEvent

ACCOUNT = "111122223333"
USER_ARN = f"arn:aws:iam::{ACCOUNT}:user/bob"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
AUDIT_TABLES = {"audit_event", "audit_ref", "audit_chain_head"}


def assert_good(result: VerifyResult, count: int) -> None:
    assert (result.ok, result.checked, result.reason) == (True, count, None), result


def append(engine, count: int, *, actor: str = "system", start: datetime = T0) -> None:
    """`count` events in one committed transaction."""
    with session_scope(engine) as session:
        for i in range(count):
            record(session, actor=actor, action=AuditAction.FINDING_NOTIFIED, account=ACCOUNT,
                   resource=USER_ARN, payload={"i": i}, at=start + timedelta(minutes=i))


def events(engine) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent).order_by(AuditEvent.sequence)))


def tamper(engine, *statements: str, params: dict | None = None) -> None:
    """What someone with database access does: drop the append-only triggers, then edit.

    The search index (audit_ref) is emptied first: it is not evidence, and its foreign key
    would otherwise stand in the way of deleting or renumbering events.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for table, trigger in (
                ("audit_event", "audit_event_append_only"),
                ("audit_ref", "audit_ref_append_only"),
                ("audit_chain_head", "audit_chain_head_guard"),
            ):
                conn.execute(text(f"DROP TRIGGER {trigger} ON {table}"))
        else:
            for trigger in ("audit_event_no_update", "audit_event_no_delete", "audit_ref_no_delete",
                            "audit_chain_head_forward_only", "audit_chain_head_no_delete"):
                conn.execute(text(f"DROP TRIGGER {trigger}"))
        conn.execute(text("DELETE FROM audit_ref"))
        for statement in statements:
            conn.execute(text(statement), params or {})


# --- canonical form ----------------------------------------------------------------------


def test_canonical_json_is_sorted_compact_utf8_with_utc_times():
    paris = timezone(timedelta(hours=1))
    value = {"b": [1, 2.5, None, True], "a": "é", "t": datetime(2026, 1, 2, 4, 4, 5, 6, tzinfo=paris)}
    assert canonical_json(value) == '{"a":"é","b":[1,2.5,null,true],"t":"2026-01-02T03:04:05.000006Z"}'.encode()
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
    with pytest.raises(ValueError):
        canonical_json({"t": datetime(2026, 1, 1)})  # naive
    with pytest.raises(TypeError):
        canonical_json({"x": object()})


# --- writing and verifying ---------------------------------------------------------------


def test_events_chain_and_round_trip_exactly(engine):
    paris = timezone(timedelta(hours=2))
    with session_scope(engine) as session:
        first = record(session, actor="cli:alice", action=AuditAction.SCAN_STARTED, account=ACCOUNT,
                       payload={"run_id": "r1"}, at=datetime(2026, 3, 1, 14, 0, 0, 654321, tzinfo=paris))
        record(
            session,
            actor="U012AB3CD",
            action="remediation.succeeded",
            subject_fingerprint="f" * 32,
            resource=USER_ARN,
            account=ACCOUNT,
            payload={
                "before": {"status": "Active", "ratio": 0.1, "ünïcode": ["✓", None, True, 10**20]},
                "after": {"status": "Inactive"},
                "aws_request_ids": ["req-1"],
                "when": T0,
                "tags": {"b", "a"},
            },
        )
    assert first.sequence == 1
    assert_good(verify(engine), 2)

    stored = events(engine)
    assert [e.sequence for e in stored] == [1, 2]
    assert stored[0].at == datetime(2026, 3, 1, 12, 0, 0, 654321, tzinfo=UTC)
    assert stored[0].prev_hash == GENESIS_HASH and stored[1].prev_hash == stored[0].hash
    assert stored[1].payload["when"] == "2026-03-01T12:00:00.123456Z"
    assert stored[1].payload["tags"] == ["a", "b"]
    assert stored[1].payload["before"]["ünïcode"] == ["✓", None, True, 10**20]
    for e in stored:  # what the database hands back hashes exactly as what was written
        document = event_document(sequence=e.sequence, at=e.at, actor=e.actor, action=e.action,
                                  subject_fingerprint=e.subject_fingerprint, resource=e.resource,
                                  account=e.account, payload=e.payload)
        assert chain_hash(e.prev_hash, document) == e.hash
    with Session(engine) as session:
        assert chain_head(session) == ChainHead(2, stored[1].hash)


def test_record_leaves_the_commit_to_the_caller(engine):
    with Session(engine) as session:
        record(session, actor="system", action=AuditAction.SCAN_STARTED)
        session.rollback()
    assert events(engine) == []
    with Session(engine) as session:
        assert chain_head(session) == ChainHead(0, GENESIS_HASH)
    assert_good(verify(engine), 0)


def test_record_rejects_bad_input(engine):
    with Session(engine) as session:
        with pytest.raises(ValueError):
            record(session, actor="system", action="scan.exploded")
        with pytest.raises(ValueError):
            record(session, actor="system", action=AuditAction.REFUSED, at=datetime(2026, 1, 1))
        with pytest.raises(ValueError):
            record(session, actor="", action=AuditAction.REFUSED)
        with pytest.raises(TypeError):
            record(session, actor="system", action=AuditAction.REFUSED, payload={"x": object()})


# --- concurrency -------------------------------------------------------------------------


def test_concurrent_writers_never_fork_the_chain(database_url):
    """Two writers, each with its own engine (connections), 500 committed appends each."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(actor: str) -> None:
        engine = make_engine(database_url)
        try:
            barrier.wait()
            for i in range(500):
                with session_scope(engine) as session:
                    if i % 2:  # a read before the write, as services do
                        chain_head(session)
                    record(session, actor=actor, action=AuditAction.DECISION_SNOOZE, payload={"i": i})
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("UAAA", "UBBB")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors

    engine = make_engine(database_url)
    try:
        assert_good(verify(engine, batch_size=64), 1000)
        stored = events(engine)
        assert [e.sequence for e in stored] == list(range(1, 1001))
        for actor in ("UAAA", "UBBB"):
            assert [e.payload["i"] for e in stored if e.actor == actor] == list(range(500))
    finally:
        engine.dispose()


def test_a_second_writer_waits_for_the_head_lock(engine):
    first = Session(engine)
    a = record(first, actor="UAAA", action=AuditAction.APPROVAL_GRANTED)  # lock held, uncommitted
    done = threading.Event()
    seen: dict[str, str] = {}

    def second() -> None:
        with session_scope(engine) as session:
            seen["prev_hash"] = record(session, actor="UBBB", action=AuditAction.APPROVAL_REJECTED).prev_hash
        done.set()

    thread = threading.Thread(target=second)
    thread.start()
    try:
        assert not done.wait(0.5), "the second writer did not wait for the first one's lock"
        a_hash = a.hash
        first.commit()
    finally:
        first.close()
    assert done.wait(30)
    thread.join()
    assert seen["prev_hash"] == a_hash
    assert_good(verify(engine), 2)


def test_verify_follows_events_appended_while_it_reads(engine, database_url):
    append(engine, 5)
    other = make_engine(database_url)
    fired = []

    def append_before_head_read(conn, cursor, statement, *args):
        if "audit_chain_head" in statement and not fired:
            fired.append(True)
            append(other, 2)

    event.listen(engine, "before_cursor_execute", append_before_head_read)
    try:
        assert_good(verify(engine), 7)
    finally:
        event.remove(engine, "before_cursor_execute", append_before_head_read)
        other.dispose()
    assert fired


# --- append-only and tamper evidence -----------------------------------------------------


def test_triggers_refuse_edits_deletes_and_head_rewinds(engine):
    append(engine, 3)
    refused = [
        "UPDATE audit_event SET actor = 'mallory' WHERE sequence = 2",
        "DELETE FROM audit_event WHERE sequence = 3",
        "DELETE FROM audit_ref",
        "UPDATE audit_ref SET ref = 'x'",
        "UPDATE audit_chain_head SET last_sequence = 2",
        "UPDATE audit_chain_head SET last_hash = 'f'",
        "DELETE FROM audit_chain_head",
        f"INSERT INTO audit_chain_head (id, last_sequence, last_hash) VALUES (2, 0, '{GENESIS_HASH}')",
    ]
    if engine.dialect.name == "postgresql":
        refused += ["TRUNCATE audit_event CASCADE", "TRUNCATE audit_ref", "TRUNCATE audit_chain_head"]
    for statement in refused:
        with pytest.raises(DBAPIError, match=r"append-only|may only advance"), engine.begin() as conn:
            conn.execute(text(statement))
    assert_good(verify(engine), 3)
    assert len(events(engine)) == 3


def test_verify_detects_an_edited_payload(engine):
    append(engine, 10)
    tamper(engine, """UPDATE audit_event SET payload = '{"i": 99}' WHERE sequence = 4""")
    result = verify(engine, batch_size=3)
    assert (result.ok, result.first_bad_sequence, result.checked) == (False, 4, 3)
    assert "modified" in result.reason


def test_verify_detects_an_edit_whose_hash_was_recomputed(engine):
    append(engine, 10)
    row = events(engine)[3]
    forged = {"i": 99}
    document = event_document(sequence=4, at=row.at, actor=row.actor, action=row.action,
                              subject_fingerprint=None, resource=row.resource, account=row.account,
                              payload=forged)
    tamper(engine, "UPDATE audit_event SET payload = :p, hash = :h WHERE sequence = 4",
           params={"p": json.dumps(forged), "h": chain_hash(row.prev_hash, document)})
    result = verify(engine)
    assert (result.ok, result.first_bad_sequence) == (False, 5)
    assert "does not link" in result.reason


def test_verify_detects_a_deleted_event(engine):
    append(engine, 10)
    tamper(engine, "DELETE FROM audit_event WHERE sequence = 6")
    result = verify(engine, batch_size=4)
    assert (result.ok, result.first_bad_sequence, result.checked) == (False, 6, 5)
    assert "missing" in result.reason


def test_verify_detects_the_newest_event_deleted(engine):
    append(engine, 10)
    tamper(engine, "DELETE FROM audit_event WHERE sequence = 10")
    result = verify(engine)
    assert (result.ok, result.first_bad_sequence, result.checked) == (False, 10, 9)
    assert "newest events deleted" in result.reason


def test_verify_detects_reordered_events(engine):
    append(engine, 10)
    tamper(
        engine,
        "UPDATE audit_event SET sequence = -1 WHERE sequence = 4",
        "UPDATE audit_event SET sequence = 4 WHERE sequence = 5",
        "UPDATE audit_event SET sequence = 5 WHERE sequence = -1",
    )
    result = verify(engine)
    assert (result.ok, result.first_bad_sequence) == (False, 4)
    assert "reordered" in result.reason


def test_verify_detects_a_forged_head(engine):
    append(engine, 10)
    tamper(engine, f"UPDATE audit_chain_head SET last_hash = '{'f' * 64}'")
    result = verify(engine)
    assert (result.ok, result.first_bad_sequence, result.checked) == (False, 10, 10)
    assert "chain head" in result.reason


def test_verify_detects_a_rewound_head(engine):
    append(engine, 10)
    ninth = events(engine)[8]
    tamper(engine, f"UPDATE audit_chain_head SET last_sequence = 9, last_hash = '{ninth.hash}'")
    result = verify(engine)
    assert (result.ok, result.first_bad_sequence) == (False, 10)
    assert "after the chain head" in result.reason


def test_a_missing_head_stops_writers_and_fails_verification(engine):
    append(engine, 2)
    tamper(engine, "DELETE FROM audit_chain_head")
    assert "head row is missing" in verify(engine).reason
    with Session(engine) as session, pytest.raises(AuditError):
        record(session, actor="system", action=AuditAction.SCAN_STARTED)


# --- queries and export ------------------------------------------------------------------


def test_events_about_finds_by_resource_fingerprint_actor_and_key_id(engine):
    policy = "arn:aws:iam::aws:policy/AdministratorAccess"
    with session_scope(engine) as session:
        record(session, actor="system", action=AuditAction.SCAN_STARTED, account=ACCOUNT)
        record(session, actor="system", action=AuditAction.FINDING_NOTIFIED, subject_fingerprint="fp1",
               resource=USER_ARN, account=ACCOUNT, payload={"access_key_id": KEY_ID, "owner": "UBOB"})
        record(session, actor="UBOB", action=AuditAction.DECISION_REMEDIATE, subject_fingerprint="fp1",
               resource=USER_ARN, account=ACCOUNT, payload={"note": f"deactivate {KEY_ID} please"})
        record(session, actor="UEVE", action=AuditAction.REFUSED, subject_fingerprint="fp2",
               resource=f"arn:aws:iam::{ACCOUNT}:role/ops", payload={"detach": [{"policy": policy}]})
    with Session(engine) as session:
        def about(needle, limit=20):
            return [e.sequence for e in events_about(session, needle, limit)]

        assert about(USER_ARN) == [3, 2]
        assert about("fp1") == [3, 2]
        assert about(KEY_ID) == [3, 2]
        assert about("UBOB") == [3, 2]  # actor of 3, owner in 2's payload
        assert about("UEVE") == [4]
        assert about(policy) == [4]
        assert about(ACCOUNT, limit=2) == [3, 2]
        assert about("nobody") == [] and about("  ") == []


def test_export_round_trips_as_jsonl_and_csv(engine):
    append(engine, 3, actor="UDAY1", start=datetime(2026, 3, 1, 23, 0, tzinfo=UTC))
    append(engine, 2, actor="UDAY2", start=datetime(2026, 3, 2, 0, 0, tzinfo=UTC))
    with session_scope(engine) as session:
        record(session, actor="UBOB", action=AuditAction.EXCEPTION_GRANTED, subject_fingerprint="fp",
               payload={"reason": 'needed, "really"\nfor now', "expires": "2026-06-01"},
               at=datetime(2026, 3, 3, tzinfo=UTC))
    stored = events(engine)

    with Session(engine) as session:
        out = io.StringIO()
        assert export(session, "jsonl", stream=out) == 6
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert all(ok for _, ok in rehash_export(lines))
        assert [line["sequence"] for line in lines] == [e.sequence for e in stored]
        assert [line["payload"] for line in lines] == [e.payload for e in stored]
        assert [line["hash"] for line in lines] == [e.hash for e in stored]
        assert lines[0]["at"] == "2026-03-01T23:00:00.000000Z"
        assert set(lines[0]) == set(EXPORT_COLUMNS)

        out = io.StringIO()
        assert export(session, "csv", stream=out, since=datetime(2026, 3, 2, tzinfo=UTC)) == 3
        rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
        assert [int(r["sequence"]) for r in rows] == [4, 5, 6]
        assert [json.loads(r["payload"]) for r in rows] == [e.payload for e in stored[3:]]
        assert rows[2]["resource"] == "" and rows[2]["subject_fingerprint"] == "fp"
        parsed = [{**r, "sequence": int(r["sequence"]), "payload": json.loads(r["payload"]),
                   **{k: r[k] or None for k in ("subject_fingerprint", "resource", "account")}}
                  for r in rows]
        assert all(ok for _, ok in rehash_export(parsed))

        with pytest.raises(ValueError):
            export(session, "xml", stream=io.StringIO())


# --- migration ---------------------------------------------------------------------------


def _triggers(engine) -> set[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            sql = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        return set(conn.execute(text(sql)).scalars())


def test_migration_0002_up_down_up(empty_database_url):
    engine = make_engine(empty_database_url)
    try:
        upgrade(empty_database_url, "0001")
        upgrade(empty_database_url, "0002")
        assert current_revision(engine) == "0002"
        assert set(inspect(engine).get_table_names()) >= AUDIT_TABLES
        assert {"audit_event_no_update", "audit_event_append_only"} & _triggers(engine)
        with engine.connect() as conn:  # the head is seeded
            assert conn.execute(text("SELECT last_sequence FROM audit_chain_head")).scalar() == 0

        downgrade(empty_database_url, "0001")
        assert not AUDIT_TABLES & set(inspect(engine).get_table_names())
        assert not {t for t in _triggers(engine) if t.startswith("audit")}
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                assert conn.execute(text(
                    "SELECT count(*) FROM pg_proc WHERE proname LIKE 'audit%'")).scalar() == 0

        downgrade(empty_database_url, "base")
        upgrade(empty_database_url)
        with Session(engine) as session:
            assert session.exec(select(func.count()).select_from(AuditEvent)).one() == 0
        assert_good(verify(engine), 0)
    finally:
        engine.dispose()


def test_migration_0009_keeps_unkeyed_chains_and_every_trigger(empty_database_url):
    engine = make_engine(empty_database_url)
    try:
        upgrade(empty_database_url)
        append(engine, 3)
        before = _triggers(engine)
        downgrade(empty_database_url, "0007")
        assert not {"audit_event_insert_guard", "audit_event_insert_at_head"} & _triggers(engine)
        assert {t for t in before if "insert" not in t and "keyed" not in t} <= _triggers(engine)
        upgrade(empty_database_url)
        assert _triggers(engine) == before
        assert_good(verify(engine), 3)  # the existing unkeyed chain verifies as before
        append(engine, 1)
        assert_good(verify(engine), 4)
    finally:
        engine.dispose()
