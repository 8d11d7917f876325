"""`steward audit verify` / `steward audit export` through the real CLI (typer's CliRunner)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from bot.audit import AuditAction, record, rehash_export
from bot.cli import app
from bot.db.engine import session_scope

DAY1 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
DAY2 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def steward(*args: str):
    return CliRunner().invoke(app, ["audit", *args], catch_exceptions=False)


@pytest.fixture
def audited(engine, database_url, monkeypatch):
    """A migrated database with three audit events, as STEWARD_DATABASE_URL."""
    monkeypatch.setenv("STEWARD_DATABASE_URL", database_url)
    with session_scope(engine) as session:
        record(session, actor="system", action=AuditAction.SCAN_STARTED, account="111122223333", at=DAY1)
        record(session, actor="UBOB", action=AuditAction.DECISION_KEEP, subject_fingerprint="fp1",
               payload={"reason": "vendor, \"legacy\" app"}, at=DAY2)
        record(session, actor="cli:alice", action=AuditAction.REFUSED, payload={"reason": "stale"}, at=DAY2)
    return engine


def test_verify_ok(audited):
    result = steward("verify")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "audit chain OK: 3 events"


def test_verify_names_the_first_bad_event(audited):
    with audited.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER audit_event_append_only ON audit_event"))
        else:
            conn.execute(text("DROP TRIGGER audit_event_no_update"))
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
