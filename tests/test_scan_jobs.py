"""Scans of several accounts as per-account jobs, through the real entry points.

moto's server runs in this process without MOTO_ACCOUNT_ID, so each role of
STEWARD_ACCOUNT_ROLES is its own account; an account is made to throttle or to deny by
replacing a method of its IAM backend here (the server answers the `steward` processes
over HTTP). PostgreSQL tests run `steward worker` processes that take the jobs enqueued by
the scheduler's path (`ScanService.start`) or by `steward scan`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from moto.iam.exceptions import IAMException
from sqlmodel import Session, select

from bot.config import load_settings
from bot.db.engine import make_engine
from bot.db.migrate import upgrade
from bot.db.models import AuditEvent, Scan
from bot.services.scan_jobs import queue_of
from bot.services.scans import ScanService
from tests.aws import aws_env, iam_backend, moto_env, moto_server  # noqa: F401  (fixtures)
from tests.conftest import DIALECTS, PG_URL
from tests.databases import scratch_postgres

ROOT = Path(__file__).resolve().parent.parent
A, B, C = "111111111111", "222222222222", "333333333333"
pytestmark = pytest.mark.filterwarnings("ignore:Exception.IAMException. with code:UserWarning")
pg_only = pytest.mark.skipif(not PG_URL, reason="STEWARD_TEST_DATABASE_URL not set")


def role(account: str) -> str:
    return f"arn:aws:iam::{account}:role/IAMSteward"


@pytest.fixture
def accounts(moto_server, monkeypatch):  # noqa: F811
    """Three accounts with a user each; retries quick (one SDK attempt per job attempt)."""
    for account in (A, B, C):
        iam_backend(account).create_user("us-east-1", f"user-in-{account}", "/", [])
    monkeypatch.setenv("STEWARD_ACCOUNT_ROLES", " ".join(role(a) for a in (A, B, C)))
    monkeypatch.setenv("STEWARD_AWS_MAX_ATTEMPTS", "1")
    return moto_server


def fail_summary(account: str, code: str, times: int | None = None) -> dict:
    """Make GetAccountSummary of `account` answer `code` (`times` times; None: always)."""
    backend = iam_backend(account)
    real = backend.get_account_summary
    calls = {"n": 0}

    def summary():
        calls["n"] += 1
        if times is None or calls["n"] <= times:
            raise IAMException(code, "injected by the test")
        return real()

    backend.get_account_summary = summary
    return calls


@pytest.fixture(params=DIALECTS)
def db_url(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'steward.db'}"
        upgrade(url)
        yield url
    else:
        with scratch_postgres(PG_URL) as url:
            upgrade(url)
            yield url


@pytest.fixture
def pg_url():
    if not PG_URL:
        pytest.skip("STEWARD_TEST_DATABASE_URL not set")
    with scratch_postgres(PG_URL) as url:
        upgrade(url)
        yield url


def rows_and_events(url: str, run_id: str) -> tuple[list[Scan], list[AuditEvent]]:
    engine = make_engine(url)
    with Session(engine) as session:
        rows = list(session.exec(select(Scan).where(Scan.run_id == run_id).order_by(Scan.account_id)))
        events = [e for e in session.exec(select(AuditEvent).order_by(AuditEvent.sequence))
                  if (e.payload or {}).get("run_id") == run_id]
    engine.dispose()
    return rows, events


def steward(*args: str, env: dict, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot", *args], env=env, capture_output=True, text=True,
                          cwd=env["HOME"], timeout=180, **kwargs)


def cli_env(url: str, database_url: str, tmp_path) -> dict:
    env = moto_env(url)
    env.update(STEWARD_DATABASE_URL=database_url, PYTHONPATH=str(ROOT), HOME=str(tmp_path))
    return env


# --- both databases, in this process ----------------------------------------------------


def test_same_job_twice_records_once(accounts, db_url):
    """A redelivered job (or two workers racing for it) leaves one row and one audit event."""
    engine = make_engine(db_url)
    service = ScanService(load_settings(), engine=engine)
    run = service.start(actor="test")
    scan_id, target = next(iter(run.rows.items()))
    if run.queued:  # PostgreSQL: nobody works the queue; deliver this account's job by hand
        first = service.execute_account(run.run_id, scan_id, target, actor="test")
        assert first is not None and first.status == "succeeded"
        service.cancel(run.run_id, actor="test")  # the other accounts are not needed here
    else:
        assert [o.status for o in service.wait(run).outcomes] == ["succeeded"] * 3
    assert service.execute_account(run.run_id, scan_id, target, actor="test") is None  # again
    rows, events = rows_and_events(db_url, run.run_id)
    [scanned] = [r for r in rows if r.id == scan_id]
    assert (scanned.status, scanned.attempts) == ("succeeded", 1)
    assert [e.action for e in events if e.payload.get("scan_id") == scan_id] == ["scan.succeeded"]
    engine.dispose()


def test_throttled_account_is_retried_then_succeeds(accounts, db_url):
    calls = fail_summary(B, "Throttling", times=1)
    engine = make_engine(db_url)
    events = []
    report = ScanService(load_settings(), engine=engine).run(
        actor="test", progress=lambda label, event: events.append((label, event)))
    assert {o.account_id: o.status for o in report.outcomes} == {A: "succeeded", B: "succeeded", C: "succeeded"}
    assert calls["n"] == 2
    rows, audit = rows_and_events(db_url, report.run_id)
    assert {r.account_id: r.attempts for r in rows} == {A: 1, B: 2, C: 1}
    assert [e.action for e in audit].count("scan.succeeded") == 3 and len(audit) == 3
    # (The progress line "retrying" is seen only if a poll falls inside the 2 s back-off, so
    # it is not asserted; the second attempt on B's row is the proof of the retry.)
    assert {label for label, event in events if event == "succeeded"} == {o.label for o in report.outcomes}
    engine.dispose()


def test_cancelled_run_records_nothing_more(accounts, db_url):
    engine = make_engine(db_url)
    service = ScanService(load_settings(), engine=engine)
    run = service.start(actor="test") if engine.dialect.name == "postgresql" else None
    if run is None:
        # SQLite runs in this process at once: cancel through the rows, as --cancel does,
        # before any account is claimed (the thread pool has not been started yet).
        from checks.accounts import discover_targets

        targets = discover_targets(service._base_session(), **load_settings().target_options())
        from bot.services.scans import ScanRun

        run = ScanRun(run_id="cancel-me", targets=targets)
        run.rows = service._create_rows(run, "test")
    assert service.cancel(run.run_id, actor="someone") == 3
    scan_id, target = next(iter(run.rows.items()))
    assert service.execute_account(run.run_id, scan_id, target, actor="test") is None
    rows, audit = rows_and_events(db_url, run.run_id)
    assert [r.status for r in rows] == ["cancelled"] * 3
    assert all(e.action == "scan.failed" and e.payload["cancelled"] for e in audit) and len(audit) == 3
    if run.queued:
        report = service.wait(run)
        assert [o.status for o in report.outcomes] == ["cancelled"] * 3 and len(report.failed) == 3
    engine.dispose()


# --- the CLI ----------------------------------------------------------------------------


def test_permanently_failing_account_shows_failed_and_exits_1(accounts, db_url, tmp_path):
    fail_summary(C, "AccessDenied")
    proc = steward("scan", "--format", "json", env=cli_env(accounts, db_url, tmp_path))
    assert proc.returncode == 1, proc.stderr
    findings = json.loads(proc.stdout)
    assert {f["account"] for f in findings} <= {A, B}
    assert f"scan failed for {C} (role/IAMSteward)" in proc.stderr
    assert "AccessDenied on iam:GetAccountSummary" in proc.stderr
    rows = rows_and_events(db_url, next(iter({r for r in _run_ids(db_url)})))[0]
    assert {r.account_id: r.status for r in rows} == {A: "succeeded", B: "succeeded", C: "failed"}


def _run_ids(url: str) -> list[str]:
    engine = make_engine(url)
    with Session(engine) as session:
        ids = list(session.exec(select(Scan.run_id).distinct()))
    engine.dispose()
    return ids


@pg_only
def test_steward_scan_alone_on_postgresql_works_its_own_jobs(accounts, pg_url, tmp_path):
    """No worker running: the scan takes its own run's jobs and ends."""
    proc = steward("scan", env=cli_env(accounts, pg_url, tmp_path))
    assert proc.returncode == 0, proc.stderr
    for account in (A, B, C):
        assert f"{account} (role/IAMSteward)" in proc.stdout
    [run_id] = _run_ids(pg_url)
    assert f"scan run {run_id}: 3 accounts" in proc.stderr
    rows, audit = rows_and_events(pg_url, run_id)
    assert [r.status for r in rows] == ["succeeded"] * 3 and len(audit) == 3


@pg_only
def test_worker_processes_take_the_jobs_the_scheduler_enqueues(accounts, pg_url, tmp_path):
    """The scheduler path only enqueues; two `steward worker` processes scan the accounts
    (one throttled once, one denied), and the run ends with every account final."""
    throttled = fail_summary(B, "Throttling", times=1)
    fail_summary(C, "AccessDenied")
    env = cli_env(accounts, pg_url, tmp_path)
    env.update(SLACK_BOT_TOKEN="xoxb-test", STEWARD_SECURITY_CHANNEL="C0SECURITY",
               SLACK_API_URL="http://127.0.0.1:9/api/", STEWARD_SCAN_INTERVAL_HOURS="168",
               STEWARD_SCAN_CONCURRENCY="2")
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    workers = [subprocess.Popen([sys.executable, "-m", "bot", "worker"], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=log.open("w")) for log in logs]
    try:
        engine = make_engine(pg_url)
        service = ScanService(load_settings(), engine=engine)
        run = service.start(actor="system")
        assert run.queued
        report = _wait_with_deadline(service, run)
        assert {o.account_id: o.status for o in report.outcomes} == {A: "succeeded", B: "succeeded", C: "failed"}
        assert "AccessDenied on iam:GetAccountSummary" in report.outcomes[2].error
        assert throttled["n"] == 2
        rows, audit = rows_and_events(pg_url, run.run_id)
        assert {r.account_id: r.attempts for r in rows} == {A: 1, B: 2, C: 1}
        assert sorted(e.action for e in audit) == ["scan.failed", "scan.succeeded", "scan.succeeded"]
        engine.dispose()
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(60) for proc in workers]
    text = "".join(log.read_text() for log in logs)
    assert codes == [0, 0], text
    assert text.count("steward.scan_account") >= 3, text  # the jobs ran in the workers


def _wait_with_deadline(service, run, seconds: float = 120):
    """`wait(work=False)` as the scheduler calls it, failing the test instead of hanging."""
    import threading

    result = {}
    thread = threading.Thread(target=lambda: result.update(report=service.wait(run, work=False)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert "report" in result, "the workers did not finish the run"
    return result["report"]


@pg_only
def test_cancel_a_queued_run_from_the_cli(accounts, pg_url, tmp_path):
    engine = make_engine(pg_url)
    service = ScanService(load_settings(), engine=engine)
    run = service.start(actor="test")  # nobody works it
    env = cli_env(accounts, pg_url, tmp_path)
    proc = steward("scan", "--cancel", run.run_id, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"scan run {run.run_id}: 3 accounts cancelled" in proc.stderr
    with engine.connect() as connection:
        from sqlalchemy import text

        statuses = connection.execute(text("SELECT status FROM procrastinate_jobs WHERE queue_name = :q"),
                                      {"q": queue_of(run.run_id)}).scalars().all()
    assert sorted(statuses) == ["cancelled"] * 3
    report = service.wait(run, work=False)
    assert [o.status for o in report.outcomes] == ["cancelled"] * 3
    assert steward("scan", "--cancel", "no-such-run", env=env).returncode == 2  # bad usage
    engine.dispose()


@pg_only
def test_ctrl_c_cancels_the_rest_of_the_run(accounts, pg_url, tmp_path):
    """SIGINT while `steward scan` waits: what is left is cancelled, exit 130."""
    backend = iam_backend(A)
    real = backend.get_account_summary

    def slow():
        time.sleep(3)
        return real()

    backend.get_account_summary = slow
    env = cli_env(accounts, pg_url, tmp_path)
    env["STEWARD_SCAN_CONCURRENCY"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "bot", "scan"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not _run_ids(pg_url):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    [run_id] = _run_ids(pg_url)
    assert f"scan run {run_id} cancelled" in err
    rows, _audit = rows_and_events(pg_url, run_id)
    assert "cancelled" in {r.status for r in rows}
    assert all(r.status in ("succeeded", "cancelled") for r in rows)


def test_no_save_scan_needs_no_database(accounts, tmp_path):
    env = cli_env(accounts, "sqlite:////nonexistent/dir/x.db", tmp_path)
    proc = steward("scan", "--no-save", "--format", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert {f["account"] for f in json.loads(proc.stdout)} <= {A, B, C}
    assert proc.stderr.count("scan succeeded") == 3
