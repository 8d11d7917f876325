"""The hash-chained audit log on SQLite and PostgreSQL: chain, locking, tampering, export."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, insert, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, func, select

from bot.config import Settings
from bot.db.audit import (
    EXPORT_COLUMNS,
    GENESIS_HASH,
    AuditAction,
    AuditError,
    ChainHead,
    Segment,
    VerifyResult,
    canonical_json,
    chain_hash,
    chain_head,
    event_document,
    events_about,
    export,
    record,
    rehash_export,
    rekey,
    verify,
)
from bot.db.audit_key import (
    NO_KEYS,
    AuditKeyError,
    Keyring,
    key_id_of,
    process_keyring,
    resolve,
    set_process_keyring,
    split_entries,
)
from bot.db.engine import make_engine, session_scope
from bot.db.migrate import current_revision, downgrade, upgrade
from bot.db.models import AuditEvent
from tests.aws import aws_env, moto_session  # noqa: F401

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


def tamper(engine, *statements: str, params: dict | None = None, keep_refs: bool = False) -> None:
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
        if not keep_refs:
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
    """The audit log's own triggers (not the job queue's, which later migrations add)."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            sql = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        return {name for name in conn.execute(text(sql)).scalars() if name.startswith("audit")}


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


# --- the keyed chain (STEWARD_AUDIT_KEY) -------------------------------------------------

KEY = "audit-key-0001-for-tests-only-0123456789abcdef"
NEW_KEY = "audit-key-0002-for-tests-only-fedcba9876543210"
KEYS = resolve(KEY)
OTHER_KEYS = resolve("someone-elses-key-with-enough-characters-000")


@pytest.fixture(autouse=True)
def _fresh_process_keyring():
    """Each test starts from the (empty) environment's keys and leaves nothing cached."""
    set_process_keyring(None)
    yield
    set_process_keyring(None)


def keyed(engine, count: int, keys: Keyring = KEYS, start: datetime = T0) -> None:
    with session_scope(engine) as session:
        for i in range(count):
            record(session, actor="UBOB", action=AuditAction.DECISION_SNOOZE, resource=USER_ARN,
                   account=ACCOUNT, payload={"i": i}, at=start + timedelta(minutes=i), keyring=keys)


def drop_insert_guards(conn) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("DROP TRIGGER audit_event_insert_guard ON audit_event"))
        conn.execute(text("DROP TRIGGER audit_ref_insert_guard ON audit_ref"))
    else:
        for trigger in ("audit_event_insert_at_head", "audit_event_stays_keyed", "audit_ref_insert_at_head"):
            conn.execute(text(f"DROP TRIGGER {trigger}"))


def rewrite_from(engine, k: int, *, keep_key_id: bool) -> None:
    """Edit event k and recompute every hash from it on with plain SHA-256 (no key): what an
    attacker with only the database can do. Triggers dropped, head moved to the new end."""
    rows = events(engine)
    tamper(engine, keep_refs=True)  # a careful attacker leaves the index consistent
    with engine.begin() as conn:
        drop_insert_guards(conn)
        prev = rows[k - 2].hash if k > 1 else GENESIS_HASH
        for row in rows[k - 1:]:
            payload = {**row.payload, "forged": True} if row.sequence == k else row.payload
            key_id = row.key_id if keep_key_id else None
            document = event_document(sequence=row.sequence, at=row.at, actor=row.actor, action=row.action,
                                      subject_fingerprint=row.subject_fingerprint, resource=row.resource,
                                      account=row.account, payload=payload, key_id=key_id)
            digest = chain_hash(prev, document)
            conn.execute(text("UPDATE audit_event SET payload = :p, prev_hash = :prev, hash = :h, key_id = :kid "
                              "WHERE sequence = :s"),
                         {"p": json.dumps(payload), "prev": prev, "h": digest, "kid": key_id, "s": row.sequence})
            prev = digest
        conn.execute(text("UPDATE audit_chain_head SET last_hash = :h, head_mac = NULL"), {"h": prev})


def test_a_key_starts_a_keyed_segment_with_a_rekey_event(engine):
    append(engine, 3)  # an existing unkeyed chain
    keyed(engine, 2)
    stored = events(engine)
    kid = KEYS.current.key_id
    assert [(e.sequence, e.action, e.key_id) for e in stored] == [
        (1, "finding.notified", None), (2, "finding.notified", None), (3, "finding.notified", None),
        (4, "audit.rekeyed", kid), (5, "decision.snooze", kid), (6, "decision.snooze", kid)]
    assert stored[3].payload == {"previous_key_id": None}
    assert len(kid) == 16 and kid not in KEY and KEY not in str(stored)
    result = verify(engine, keyring=KEYS)
    assert_good(result, 6)
    assert result.segments == (Segment(None, 1, 3, True), Segment(kid, 4, 6, True))
    with Session(engine) as session:
        assert chain_head(session) == ChainHead(6, stored[-1].hash, kid)
    # The MAC is not the plain hash: without the key nobody can recompute it.
    document = event_document(sequence=6, at=stored[5].at, actor="UBOB", action="decision.snooze",
                              subject_fingerprint=None, resource=USER_ARN, account=ACCOUNT,
                              payload={"i": 1}, key_id=kid)
    assert chain_hash(stored[4].hash, document) != stored[5].hash
    assert chain_hash(stored[4].hash, document, KEYS.current) == stored[5].hash


def test_without_the_key_a_keyed_chain_is_never_called_good(engine):
    keyed(engine, 3)
    for keys in (NO_KEYS, OTHER_KEYS):
        result = verify(engine, keyring=keys)
        assert (result.ok, result.unverifiable, result.first_bad_sequence) == (False, True, 1)
        assert KEYS.current.key_id in result.reason and "not given" in result.reason
        assert result.segments == (Segment(KEYS.current.key_id, 1, 4, False),)  # the rekey event + 3
    # Nor can a process without it (or with another key) extend the chain.
    for keys, expected in ((NO_KEYS, "STEWARD_AUDIT_KEY is not set"), (OTHER_KEYS, "does not hold")):
        with Session(engine) as session, pytest.raises(AuditError, match=expected):
            record(session, actor="system", action=AuditAction.SCAN_STARTED, keyring=keys)
    # The process's own keys come from the setting.
    with pytest.raises(AuditError), Session(engine) as session:
        record(session, actor="system", action=AuditAction.SCAN_STARTED)
    assert_good(verify(engine, keyring=KEYS), 4)


def test_a_key_given_that_the_chain_does_not_use_yet_is_not_good(engine):
    append(engine, 2)
    result = verify(engine, keyring=KEYS)
    assert (result.ok, result.unverifiable) == (False, True)
    assert "steward audit rekey" in result.reason
    with session_scope(engine) as session:
        event = rekey(session, actor="cli:alice", keyring=KEYS)
        assert (event.sequence, event.actor, event.key_id) == (3, "cli:alice", KEYS.current.key_id)
    with session_scope(engine) as session:
        assert rekey(session, actor="cli:alice", keyring=KEYS) is None  # already there
    assert_good(verify(engine, keyring=KEYS), 3)


def test_rotation_is_recorded_and_old_segments_need_the_retired_key(engine):
    keyed(engine, 2)
    rotated = resolve(f"{NEW_KEY},{KEY}")
    keyed(engine, 2, keys=rotated)
    stored = events(engine)
    old, new = KEYS.current.key_id, rotated.current.key_id
    assert [(e.action, e.key_id) for e in stored] == [
        ("audit.rekeyed", old), ("decision.snooze", old), ("decision.snooze", old),
        ("audit.rekeyed", new), ("decision.snooze", new), ("decision.snooze", new)]
    assert stored[3].payload == {"previous_key_id": old}
    result = verify(engine, keyring=rotated)
    assert_good(result, 6)
    assert [(s.key_id, s.first, s.last) for s in result.segments] == [(old, 1, 3), (new, 4, 6)]
    only_new = verify(engine, keyring=resolve(NEW_KEY))
    assert only_new.unverifiable and f"events 1–3 under key id {old}" in only_new.reason
    # A process still on the old key cannot write after the rotation (no flip-flopping).
    with Session(engine) as session, pytest.raises(AuditError, match=new):
        record(session, actor="system", action=AuditAction.SCAN_STARTED, keyring=KEYS)


def test_concurrent_writers_start_the_keyed_segment_once(database_url):
    engine = make_engine(database_url)
    append(engine, 1)
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def writer(actor: str) -> None:
        own = make_engine(database_url)
        try:
            barrier.wait()
            for i in range(60):
                with session_scope(own) as session:
                    record(session, actor=actor, action=AuditAction.DECISION_SNOOZE, payload={"i": i}, keyring=KEYS)
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=writer, args=(f"U{n}",)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert not errors, errors
        assert [e.action for e in events(engine)].count("audit.rekeyed") == 1
        assert_good(verify(engine, keyring=KEYS, batch_size=50), 182)
    finally:
        engine.dispose()


@pytest.mark.parametrize("keep_key_id", [False, True], ids=["unkeyed", "key-id-kept"])
def test_with_the_key_a_forged_appended_event_is_named(engine, keep_key_id):
    keyed(engine, 5)
    last = events(engine)[-1]
    key_id = last.key_id if keep_key_id else None
    document = event_document(sequence=7, at=T0, actor="UMALLORY", action="approval.granted",
                              subject_fingerprint=None, resource=None, account=None, payload={}, key_id=key_id)
    forged = chain_hash(last.hash, document)
    with engine.begin() as conn:
        drop_insert_guards(conn)
        conn.execute(insert(AuditEvent.__table__).values(
            sequence=7, at=T0, actor="UMALLORY", action="approval.granted", payload={},
            prev_hash=last.hash, hash=forged, key_id=key_id))
        conn.execute(text("UPDATE audit_chain_head SET last_sequence = 7, last_hash = :h"), {"h": forged})
    result = verify(engine, keyring=KEYS)
    assert (result.ok, result.unverifiable, result.first_bad_sequence, result.checked) == (False, False, 7, 6)
    assert ("MAC" if keep_key_id else "not keyed") in result.reason


def test_an_attackers_own_key_is_never_accepted(engine):
    keyed(engine, 3)  # events 1..4 under KEYS
    # The triggers allow a well-formed keyed append: a rekey to a key the attacker made up.
    keyed(engine, 2, keys=Keyring((OTHER_KEYS.current, KEYS.current)))
    result = verify(engine, keyring=KEYS)
    assert (result.ok, result.unverifiable, result.first_bad_sequence, result.checked) == (False, True, 5, 4)
    assert f"events 5–7 under key id {OTHER_KEYS.current.key_id}" in result.reason


@pytest.mark.parametrize("keep_key_id", [False, True], ids=["unkeyed", "key-id-kept"])
def test_with_the_key_a_rewritten_chain_is_named(engine, keep_key_id):
    append(engine, 2)
    keyed(engine, 8)  # events 3 (rekey) to 11
    rewrite_from(engine, 6, keep_key_id=keep_key_id)
    assert verify(engine, keyring=NO_KEYS).ok is False  # not even without the key: keyed rows remain
    result = verify(engine, keyring=KEYS)
    assert (result.ok, result.first_bad_sequence, result.checked) == (False, 6, 5)
    assert "event 6" in result.reason


def test_an_unkeyed_chain_rewritten_with_triggers_dropped_passes_plain_verify_but_not_its_anchor(engine):
    append(engine, 10)
    published = events(engine)[7]  # head #8 published in an earlier digest
    append(engine, 2)
    rewrite_from(engine, 5, keep_key_id=False)
    assert_good(verify(engine), 12)  # the limit of an unkeyed chain
    result = verify(engine, anchors=[(published.sequence, published.hash)])
    assert (result.ok, result.first_bad_sequence, result.checked) == (False, 8, 0)
    assert "published as head #8" in result.reason
    # An earlier head still matches: the rewrite is between the two.
    early = events(engine)[2]
    result = verify(engine, anchors=[(3, early.hash), (8, published.hash)])
    assert (result.first_bad_sequence, result.checked, result.anchors_matched) == (8, 3, 1)
    assert "after event 3" in result.reason


def test_with_the_key_a_cut_and_rewound_chain_is_named(engine):
    keyed(engine, 9)  # events 1 (rekey) to 10
    seventh = events(engine)[6]
    tamper(engine, "DELETE FROM audit_ref WHERE sequence > 7", "DELETE FROM audit_event WHERE sequence > 7",
           f"UPDATE audit_chain_head SET last_sequence = 7, last_hash = '{seventh.hash}'", keep_refs=True)
    result = verify(engine, keyring=KEYS)
    assert (result.ok, result.first_bad_sequence, result.checked) == (False, 8, 7)
    assert "moved back" in result.reason


def test_a_head_restored_from_an_old_copy_is_caught_by_a_later_published_head(engine):
    keyed(engine, 6)  # events 1..7
    with engine.connect() as conn:
        copy = conn.execute(text("SELECT last_sequence, last_hash, head_mac FROM audit_chain_head")).one()
    keyed(engine, 3)  # events 8..10; head #10 is published
    published = events(engine)[-1]
    tamper(engine, "DELETE FROM audit_ref WHERE sequence > 7", "DELETE FROM audit_event WHERE sequence > 7",
           "UPDATE audit_chain_head SET last_sequence = :s, last_hash = :h, head_mac = :m",
           params={"s": copy.last_sequence, "h": copy.last_hash, "m": copy.head_mac}, keep_refs=True)
    assert verify(engine, keyring=KEYS).ok  # a database-only attacker's best: undetectable alone
    result = verify(engine, keyring=KEYS, anchors=[(10, published.hash)])
    assert (result.ok, result.first_bad_sequence) == (False, 8)
    assert "beyond the end of the log" in result.reason


def test_insert_guards_refuse_events_off_the_head_and_unkeyed_events_after_keyed_ones(engine):
    keyed(engine, 2)
    head = events(engine)[-1]
    refused = [
        ("INSERT INTO audit_event (sequence, at, actor, action, payload, prev_hash, hash, key_id) "
         f"VALUES (9, '2026-01-01 00:00:00', 'm', 'refused', '{{}}', '{head.hash}', 'f', 'x')"),
        ("INSERT INTO audit_event (sequence, at, actor, action, payload, prev_hash, hash, key_id) "
         f"VALUES (4, '2026-01-01 00:00:00', 'm', 'refused', '{{}}', '{GENESIS_HASH}', 'f', 'x')"),
        ("INSERT INTO audit_event (sequence, at, actor, action, payload, prev_hash, hash) "
         f"VALUES (4, '2026-01-01 00:00:00', 'm', 'refused', '{{}}', '{head.hash}', 'f')"),
        "INSERT INTO audit_ref (ref, sequence) VALUES ('UMALLORY', 2)",
        f"UPDATE audit_chain_head SET head_mac = '{'0' * 64}'",
    ]
    for statement in refused:
        with pytest.raises(DBAPIError, match=r"append-only|may only advance"), engine.begin() as conn:
            conn.execute(text(statement))
    assert_good(verify(engine, keyring=KEYS), 3)


def test_verify_recomputes_the_reference_index(engine):
    with session_scope(engine) as session:
        record(session, actor="UBOB", action=AuditAction.EXCEPTION_GRANTED, resource=USER_ARN,
               payload={"access_key_id": KEY_ID})
        record(session, actor="UEVE", action=AuditAction.REFUSED)
    tamper(engine)  # empties audit_ref and drops the triggers
    with engine.begin() as conn:
        drop_insert_guards(conn)
        for ref, sequence in (("UBOB", 1), (USER_ARN, 1), ("UEVE", 2), ("UEVE", 1)):
            conn.execute(text("INSERT INTO audit_ref (ref, sequence) VALUES (:r, :s)"), {"r": ref, "s": sequence})
    result = verify(engine)
    assert (result.ok, result.unverifiable, result.first_bad_sequence, result.checked) == (False, False, 1, 2)
    assert f"event 1: reference {KEY_ID!r} is missing" in result.reason
    assert "event 1: reference 'UEVE' is not in the event" in result.reason
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_ref WHERE ref = 'UEVE' AND sequence = 1"))
        conn.execute(text("INSERT INTO audit_ref (ref, sequence) VALUES (:r, 1)"), {"r": KEY_ID})
    assert_good(verify(engine), 2)


def test_keys_never_reach_the_database_or_the_logs(engine, caplog):
    caplog.set_level("DEBUG")
    keyed(engine, 3)
    verify(engine, keyring=KEYS)
    verify(engine, keyring=NO_KEYS)
    with engine.connect() as conn:
        dump = [str(conn.execute(text(f"SELECT * FROM {table}")).all()) for table in AUDIT_TABLES]
    assert KEY not in " ".join(dump) and KEY not in caplog.text
    assert KEY not in repr(KEYS) and KEY not in repr(Settings(audit_key=KEY))


# --- keys from the setting, AWS Secrets Manager and SSM Parameter Store --------------------


def test_key_entries_are_checked_without_echoing_them(monkeypatch):
    from bot.config import SettingsError, load_settings

    assert split_entries(f" {KEY} , secretsmanager:steward/audit , ssm:/steward/old ") == [
        KEY, "secretsmanager:steward/audit", "ssm:/steward/old"]
    for bad in ("short-key", "secretsmanager:", f"{KEY},ssm:"):
        monkeypatch.setenv("STEWARD_AUDIT_KEY", bad)
        with pytest.raises(SettingsError, match="STEWARD_AUDIT_KEY") as caught:
            load_settings()
        assert bad not in str(caught.value) or bad.endswith(":")
    monkeypatch.setenv("STEWARD_AUDIT_KEY", f"{NEW_KEY},{KEY}")
    assert process_keyring().key_ids == (key_id_of(NEW_KEY.encode()), key_id_of(KEY.encode()))


def test_keys_are_fetched_from_secrets_manager_and_ssm(moto_session):  # noqa: F811
    secrets = moto_session.client("secretsmanager")
    arn = secrets.create_secret(Name="steward/audit-key", SecretString=NEW_KEY)["ARN"]
    moto_session.client("ssm").put_parameter(Name="/steward/audit-key-old", Value=KEY, Type="SecureString")
    keys = resolve("secretsmanager:steward/audit-key,ssm:/steward/audit-key-old")
    assert keys.key_ids == (key_id_of(NEW_KEY.encode()), KEYS.current.key_id)
    assert resolve(f"secretsmanager:{arn}").current.key_id == key_id_of(NEW_KEY.encode())
    with pytest.raises(AuditKeyError, match=r"cannot read secretsmanager:steward/nope: ResourceNotFoundException"):
        resolve("secretsmanager:steward/nope")
    secrets.create_secret(Name="steward/short", SecretString="tiny")
    with pytest.raises(AuditKeyError, match="at least 32 bytes") as caught:
        resolve("secretsmanager:steward/short")
    assert "tiny" not in str(caught.value)
