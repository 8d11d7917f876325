"""`steward audit verify` / `steward audit export` through the real CLI (typer's CliRunner)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlmodel import Session, select
from typer.testing import CliRunner

from bot.cli.main import app
from bot.db.audit import AuditAction, chain_hash, event_document, record, rehash_export
from bot.db.audit_key import key_id_of, set_process_keyring
from bot.db.engine import session_scope
from bot.db.models import AuditEvent
from sandbox.slack_fake import SlackFake
from tests.aws import aws_env, moto_session  # noqa: F401

DAY1 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
DAY2 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


# What someone with database access drops: (PostgreSQL trigger ON table, SQLite trigger).
TRIGGERS = {
    "event updates": ("audit_event_append_only ON audit_event", "audit_event_no_update"),
    "head moves": ("audit_chain_head_guard ON audit_chain_head", "audit_chain_head_forward_only"),
    "ref updates": ("audit_ref_append_only ON audit_ref", "audit_ref_no_update"),
}


def allow(conn, *what: str) -> None:
    for name in what:
        postgresql, sqlite = TRIGGERS[name]
        conn.execute(text(f"DROP TRIGGER {postgresql if conn.dialect.name == 'postgresql' else sqlite}"))


def steward(*args: str):
    return CliRunner().invoke(app, ["audit", *args], catch_exceptions=False)


@pytest.fixture
def audited(engine, database_url, monkeypatch):
    """A migrated database with three audit events, as STEWARD_DATABASE_URL."""
    monkeypatch.setenv("STEWARD_DATABASE_URL", database_url)
    with session_scope(engine) as session:
        record(session, actor="system", action=AuditAction.SCAN_STARTED, account="111122223333", at=DAY1)
        record(session, actor="UBOB", action=AuditAction.EXCEPTION_GRANTED, subject_fingerprint="fp1",
               payload={"reason": "vendor, \"legacy\" app"}, at=DAY2)
        record(session, actor="cli:alice", action=AuditAction.REFUSED, payload={"reason": "stale"}, at=DAY2)
    return engine


def test_verify_ok(audited):
    result = steward("verify")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "audit chain OK: 3 events"


def test_verify_names_the_first_bad_event(audited):
    with audited.begin() as conn:
        allow(conn, "event updates")
        conn.execute(text("UPDATE audit_event SET actor = 'UMALLORY' WHERE sequence = 2"))
    result = steward("verify")
    assert result.exit_code == 1
    assert "audit chain BROKEN at event 2" in result.stderr
    assert "modified" in result.stderr
    assert "OK" not in result.stdout


def test_export_jsonl_to_stdout(audited):
    result = steward("export", "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["sequence"] for line in lines] == [1, 2, 3]
    assert lines[1]["payload"] == {"reason": 'vendor, "legacy" app'}
    assert all(ok for _, ok in rehash_export(lines))
    assert "exported 3 audit events" in result.stderr


def test_export_csv_since_a_date_to_a_file(audited, tmp_path):
    target = tmp_path / "audit.csv"
    result = steward("export", "--format", "csv", "--since", "2026-03-02", "--output", str(target))
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"), newline="")))
    assert [(r["sequence"], r["actor"]) for r in rows] == [("2", "UBOB"), ("3", "cli:alice")]
    assert json.loads(rows[0]["payload"]) == {"reason": 'vendor, "legacy" app'}
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("since", "count"),
    [("2026-03-01T10:00:00Z", 3), ("2026-03-01T10:00:00.000001+00:00", 2), ("2026-03-02T11:00:00", 0)],
)
def test_export_since_a_datetime(audited, since, count):
    result = steward("export", "--since", since)
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == count


@pytest.mark.parametrize("args", [
    ["--since", "last tuesday"],
    ["--since", "2026-02-30"],
    ["--format", "xml"],
    ["--output", "/nonexistent-dir/audit.csv"],
])
def test_export_bad_usage_exits_2(audited, args):
    result = steward("export", *args)
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr


def test_since_error_message_is_clear(audited):
    result = steward("export", "--since", "yesterday")
    assert "YYYY-MM-DD" in result.stderr and "--since" in result.stderr


# --- keys, rekey, published heads -----------------------------------------------------------

KEY = "cli-test-audit-key-0001-0123456789abcdef0123"


@pytest.fixture(autouse=True)
def _no_cached_keys():
    set_process_keyring(None)
    yield
    set_process_keyring(None)


def events_of(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(text("SELECT sequence, hash, key_id FROM audit_event ORDER BY sequence")).all()


def test_rekey_then_verify_needs_the_key(audited, monkeypatch):
    assert steward("rekey").exit_code == 2  # no key to start a segment with
    monkeypatch.setenv("STEWARD_AUDIT_KEY", KEY)
    result = steward("verify")
    assert result.exit_code == 2 and "steward audit rekey" in result.stderr

    result = steward("rekey")
    kid = key_id_of(KEY.encode())
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"the audit chain is keyed with key id {kid} from event 4 (before: unkeyed)"
    assert steward("rekey").stdout.startswith("the audit chain is already keyed")
    result = steward("verify")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["audit chain OK: 4 events", f"  events 4–4: MACs checked with key id {kid}"]

    monkeypatch.delenv("STEWARD_AUDIT_KEY")
    result = steward("verify")
    assert result.exit_code == 2
    assert "audit chain NOT VERIFIED" in result.stderr and kid in result.stderr and "OK" not in result.stdout
    assert KEY not in result.stderr + result.stdout


def test_verify_with_the_key_names_a_forged_event(audited, monkeypatch):
    monkeypatch.setenv("STEWARD_AUDIT_KEY", KEY)
    assert steward("rekey").exit_code == 0
    last = events_of(audited)[-1]
    with audited.begin() as conn:  # a well-formed event, linked, with the key id, but no key
        allow(conn, "head moves")
        conn.execute(text(
            "INSERT INTO audit_event (sequence, at, actor, action, payload, prev_hash, hash, key_id) "
            "VALUES (5, :at, 'UMALLORY', 'approval.granted', '{}', :prev, :h, :kid)"),
            {"at": DAY2, "prev": last.hash, "h": "a" * 64, "kid": last.key_id})
        conn.execute(text("UPDATE audit_chain_head SET last_sequence = 5, last_hash = :h"), {"h": "a" * 64})
    result = steward("verify")
    assert result.exit_code == 1
    assert "audit chain BROKEN at event 5" in result.stderr and "MAC" in result.stderr


def test_a_bad_key_setting_is_one_line(audited, monkeypatch):
    monkeypatch.setenv("STEWARD_AUDIT_KEY", "too-short")
    result = steward("verify")
    assert result.exit_code == 2 and "STEWARD_AUDIT_KEY" in result.stderr
    assert "too-short" not in result.stderr and "Traceback" not in result.stderr


def test_the_key_from_secrets_manager(audited, monkeypatch, moto_session):  # noqa: F811
    moto_session.client("secretsmanager").create_secret(Name="steward/audit", SecretString=KEY)
    monkeypatch.setenv("STEWARD_AUDIT_KEY", "secretsmanager:steward/audit")
    assert steward("rekey").exit_code == 0
    result = steward("verify")
    assert result.exit_code == 0 and key_id_of(KEY.encode()) in result.stdout
    monkeypatch.setenv("STEWARD_AUDIT_KEY", "secretsmanager:steward/missing")
    result = steward("verify")
    assert result.exit_code == 2
    assert "cannot read secretsmanager:steward/missing: ResourceNotFoundException" in result.stderr


@pytest.fixture
def slack(audited, monkeypatch):
    with SlackFake() as fake:
        channel = fake.add_channel("security")
        monkeypatch.setenv("SLACK_BOT_TOKEN", fake.token)
        monkeypatch.setenv("SLACK_API_URL", fake.base_url)
        monkeypatch.setenv("STEWARD_SECURITY_CHANNEL", channel)
        yield fake, channel


def rewrite_unkeyed_from(engine, k: int) -> None:
    """Drop the triggers, edit event k, recompute every hash after it and the head (no key)."""
    with engine.begin() as conn:
        allow(conn, "event updates", "head moves")
    with Session(engine) as session:
        rows = list(session.exec(select(AuditEvent).order_by(AuditEvent.sequence)))
    prev = rows[k - 2].hash
    with engine.begin() as conn:
        for row in rows[k - 1:]:
            payload = {"reason": "nothing to see"} if row.sequence == k else row.payload
            document = event_document(sequence=row.sequence, at=row.at, actor=row.actor, action=row.action,
                                      subject_fingerprint=row.subject_fingerprint, resource=row.resource,
                                      account=row.account, payload=payload)
            digest = chain_hash(prev, document)
            conn.execute(text("UPDATE audit_event SET payload = :j, prev_hash = :p, hash = :h WHERE sequence = :s"),
                         {"j": json.dumps(payload), "p": prev, "h": digest, "s": row.sequence})
            prev = digest
        conn.execute(text("UPDATE audit_chain_head SET last_hash = :h"), {"h": prev})


def test_published_heads_catch_a_rewritten_unkeyed_chain(slack, audited):
    fake, channel = slack
    result = steward("head", "--post")
    assert result.exit_code == 0, result.stderr
    published = events_of(audited)[2]
    assert result.stdout.startswith(f"Audit chain head #3 {published.hash} (unkeyed)")
    (message,) = fake.messages(channel)
    assert message["blocks"][0]["type"] == "context" and published.hash in message["text"]
    assert events_of(audited)[-1].sequence == 4  # the publication itself is audited
    # Somebody else's message with a made-up head is not Steward's and does not count.
    fake.post_as_user(channel, fake.add_user(name="someone"), f"Audit chain head #2 `{'e' * 64}`")

    result = steward("verify", "--anchors-from-slack")
    assert result.exit_code == 0, result.stderr
    assert "passes through 1 published head\n" in result.stdout

    rewrite_unkeyed_from(audited, 2)
    plain = steward("verify")
    assert plain.exit_code == 0 and plain.stdout.startswith("audit chain OK: 4 events")  # undetectable alone
    for args in (["--anchors-from-slack"], ["--anchor", f"3:{published.hash}"]):
        result = steward("verify", *args)
        assert result.exit_code == 1, args
        assert "audit chain BROKEN at event 3" in result.stderr and "published as head #3" in result.stderr


def test_verify_anchor_usage_errors(audited):
    assert steward("verify", "--anchor", "3:nothex").exit_code == 2
    result = steward("verify", "--anchors-from-slack")
    assert result.exit_code == 2 and "SLACK_BOT_TOKEN" in result.stderr


def test_an_anchor_beyond_the_end_means_deleted_events(audited):
    result = steward("verify", "--anchor", f"9:{'a' * 64}")
    assert result.exit_code == 1 and "BROKEN at event 4" in result.stderr and "beyond the end" in result.stderr


def test_verify_reports_a_tampered_reference_index(audited):
    with audited.begin() as conn:
        allow(conn, "ref updates")
        conn.execute(text("UPDATE audit_ref SET ref = 'UEVE' WHERE ref = 'UBOB'"))
    result = steward("verify")
    assert result.exit_code == 1
    assert "BROKEN at event 2" in result.stderr and "audit_ref" in result.stderr and "'UBOB' is missing" in result.stderr


def test_export_reads_old_decision_names_as_today_and_still_verifies(engine, database_url, monkeypatch):
    """Rows written under the old vocabulary (before decision.rotate_promise and
    decision.acknowledge existed) are exported with `reads_as` naming them as today; the
    stored `action` and the hashes are untouched, so the export re-verifies."""
    from enum import StrEnum

    from bot.db import audit

    old = StrEnum("AuditAction", {**{m.name: m.value for m in AuditAction}, "DECISION_KEEP": "decision.keep"})
    monkeypatch.setenv("STEWARD_DATABASE_URL", database_url)
    with session_scope(engine) as session, monkeypatch.context() as older_steward:
        older_steward.setattr(audit, "AuditAction", old)  # what an older Steward could write
        record(session, actor="UDAVE", action="decision.remediate", subject_fingerprint="fp1",
               payload={"decision": "rotate", "until": "2026-01-20"}, at=DAY1)
        record(session, actor="UBOB", action="decision.remediate", subject_fingerprint="fp2",
               payload={"action": "deactivate-access-key", "remediation_id": 1}, at=DAY1)
        record(session, actor="UCAROL", action="decision.keep", subject_fingerprint="fp3",
               payload={"decision": "ack"}, at=DAY2)
    with session_scope(engine) as session:
        record(session, actor="UCAROL", action=AuditAction.DECISION_ACKNOWLEDGE, subject_fingerprint="fp4",
               payload={"decision": "ack"}, at=DAY2)
        with pytest.raises(ValueError):  # the old names are never written again
            record(session, actor="UCAROL", action="decision.keep", at=DAY2)

    result = steward("export", "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["action"], line["reads_as"]) for line in lines] == [
        ("decision.remediate", "decision.rotate_promise"),
        ("decision.remediate", "decision.remediate"),
        ("decision.keep", "decision.acknowledge"),
        ("decision.acknowledge", "decision.acknowledge"),
    ]
    assert all(ok for _, ok in rehash_export(lines))
    csv_out = steward("export", "--format", "csv").stdout
    assert "decision.keep" in csv_out and csv_out.splitlines()[0].endswith(",reads_as")
    assert steward("verify").exit_code == 0
