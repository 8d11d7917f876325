"""Remediation orchestration end to end on moto: CLI, two-person rule, races, dry run, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import boto3
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from bot.cli.main import app
from bot.config import Settings
from bot.db.engine import make_engine, session_scope
from bot.db.migrate import upgrade
from bot.db.models import AuditEvent, Finding, Remediation
from bot.services.common import ServiceError
from bot.services.remediation import RemediationRefused, RemediationService
from bot.services.scans import ScanService
from tests.aws import (  # noqa: F401
    aws_env,
    backdate_access_key,
    backdate_user,
    inject_error,
    moto_env,
    moto_server,
)
from tests.checks.test_remediate_base import install_deny_all

ROOT = Path(__file__).resolve().parents[1]
APPROVER, OTHER_APPROVER, OWNER = "UAPPROVER1", "UAPPROVER2", "UOWNER0001"


@pytest.fixture
def world(moto_server, tmp_path, monkeypatch):  # noqa: F811
    """bob has an unused old key, carol is a stale user; the findings are in the database."""
    db = f"sqlite:///{tmp_path / 'steward.db'}"
    monkeypatch.setenv("STEWARD_DATABASE_URL", db)
    iam = boto3.client("iam", endpoint_url=moto_server)
    iam.create_user(UserName="bob", Tags=[{"Key": "owner", "Value": OWNER}])
    key = iam.create_access_key(UserName="bob")["AccessKey"]["AccessKeyId"]
    backdate_user("bob", 300)
    backdate_access_key("bob", 1, created=200, last_used=100)
    iam.create_user(UserName="carol")
    iam.create_access_key(UserName="carol")
    backdate_user("carol", 400)
    backdate_access_key("carol", 1, created=300, last_used=200)
    install_deny_all()
    upgrade(db)
    engine = make_engine(db)
    settings = Settings(database_url=db)
    ScanService(settings, engine=engine).run(actor="test")
    yield {"iam": iam, "key": key, "engine": engine, "db": db, "url": moto_server, "settings": settings}
    engine.dispose()


def finding_id(engine, check, user):
    with Session(engine) as session:
        return session.exec(
            select(Finding.id).where(Finding.check_id == check, Finding.resource.endswith(f":user/{user}"))
        ).one()


def service(world, **kwargs):
    return RemediationService(world["settings"], engine=world["engine"],
                              is_approver=lambda actor: actor in (APPROVER, OTHER_APPROVER), **kwargs)


def key_status(world, user="bob"):
    return world["iam"].list_access_keys(UserName=user)["AccessKeyMetadata"][0]["Status"]


def actions(engine):
    with Session(engine) as session:
        return [e.action for e in session.exec(select(AuditEvent).order_by(AuditEvent.sequence))]


def test_cli_remediate_then_undo(world):
    fid = finding_id(world["engine"], "unused-access-key", "bob")
    result = CliRunner().invoke(app, ["remediate", str(fid), "deactivate-access-key", "--yes"])
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.stdout and world["key"] in result.stdout
    assert key_status(world) == "Inactive"
    with Session(world["engine"]) as session:
        rem = session.exec(select(Remediation)).one()
        assert session.get(Finding, fid).state == "remediated"
    assert rem.before["status"] == "Active" and rem.request_ids

    result = CliRunner().invoke(app, ["undo", str(rem.id)])
    assert result.exit_code == 0, result.output
    assert key_status(world) == "Active"
    with Session(world["engine"]) as session:
        assert session.get(Finding, fid).state == "open"
        assert session.get(Remediation, rem.id).status == "undone"
    assert actions(world["engine"])[-6:] == [
        "remediation.planned", "remediation.approved", "remediation.started",
        "remediation.succeeded", "remediation.undo_requested", "remediation.undone",
    ]
    assert CliRunner().invoke(app, ["audit", "verify"]).exit_code == 0


def test_dry_run_changes_nothing_and_says_so(world):
    fid = finding_id(world["engine"], "unused-access-key", "bob")
    result = CliRunner().invoke(app, ["remediate", str(fid), "deactivate-access-key", "--dry-run", "--yes"])
    assert result.exit_code == 0, result.output
    assert "DRY RUN" in result.stdout and "dry run: nothing changed" in result.stdout
    assert key_status(world) == "Active"
    with Session(world["engine"]) as session:
        assert session.get(Finding, fid).state == "open"


def test_action_not_offered_for_the_check_is_refused(world):
    fid = finding_id(world["engine"], "unused-access-key", "bob")
    result = CliRunner().invoke(app, ["remediate", str(fid), "delete-user", "--yes"])
    assert result.exit_code == 1
    assert "not offered for unused-access-key" in result.stderr
    assert key_status(world) == "Active"


def test_credentials_sts_refuses_stop_the_request_in_one_line(world):
    """The account check before any plan (checks.aws_calls.caller_account): STS refusing the
    credentials is the project's one line naming the action, and nothing is changed."""
    session = boto3.Session()
    inject_error(session, "GetCallerIdentity", "ExpiredToken", service="sts")
    svc = service(world, aws_session_factory=lambda: session)
    fid = finding_id(world["engine"], "unused-access-key", "bob")
    with pytest.raises(ServiceError) as refused:
        svc.request(fid, "deactivate-access-key", actor=APPROVER)
    assert str(refused.value).endswith("AWS rejected the credentials on sts:GetCallerIdentity: ExpiredToken")
    assert key_status(world) == "Active"
    with Session(world["engine"]) as session_:
        assert session_.exec(select(Remediation)).one().status == "cancelled"


def test_owner_may_deactivate_alone_but_irreversible_needs_a_second_person(world):
    svc = service(world)
    fid = finding_id(world["engine"], "unused-access-key", "bob")
    own = svc.request(fid, "deactivate-access-key", actor=OWNER)
    assert svc.approve(own.id, approver=OWNER).status == "approved"
    assert svc.execute(own.id, actor=OWNER).status == "succeeded"

    inactive = world["iam"]  # now delete the (inactive) key: irreversible
    assert key_status(world) == "Inactive" and inactive
    ScanService(world["settings"], engine=world["engine"]).run(actor="test")
    fid = finding_id(world["engine"], "inactive-access-key", "bob")
    req = svc.request(fid, "delete-access-key", actor=APPROVER)
    with pytest.raises(RemediationRefused, match="second person"):
        svc.approve(req.id, approver=APPROVER)
    with pytest.raises(RemediationRefused, match="security approver"):
        svc.approve(req.id, approver=OWNER)
    assert svc.approve(req.id, approver=OTHER_APPROVER).approved_by == OTHER_APPROVER
    assert svc.execute(req.id, actor=OTHER_APPROVER).status == "succeeded"
    assert world["iam"].list_access_keys(UserName="bob")["AccessKeyMetadata"] == []
    assert actions(world["engine"]).count("refused") == 2


def test_two_threads_executing_one_remediation_run_it_once(world):
    svc = service(world)
    fid = finding_id(world["engine"], "unused-access-key", "bob")
    rem = svc.request(fid, "deactivate-access-key", actor=OWNER)
    svc.approve(rem.id, approver=OWNER)
    outcomes, start = [], threading.Barrier(2)

    def click():
        start.wait()
        try:
            outcomes.append(svc.execute(rem.id, actor=OWNER).status)
        except RemediationRefused as exc:
            outcomes.append(f"refused: {exc}")

    threads = [threading.Thread(target=click) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes)[1] == "succeeded"
    assert sorted(outcomes)[0].startswith(("refused: Already in hand", "refused: Already handled"))
    assert actions(world["engine"]).count("remediation.started") == 1


def test_a_second_request_while_one_is_in_flight_is_refused(world):
    svc = service(world)
    fid = finding_id(world["engine"], "unused-access-key", "bob")
    first = svc.request(fid, "deactivate-access-key", actor=OWNER)
    with pytest.raises(RemediationRefused, match=f"#{first.id}"):
        svc.request(fid, "deactivate-access-key", actor=APPROVER)


def test_a_request_after_the_same_action_succeeded_is_told_it_is_done(world):
    """A late click (it read the finding before the first one finished) starts nothing."""
    svc = service(world)
    fid = finding_id(world["engine"], "unused-access-key", "bob")
    first = svc.request(fid, "deactivate-access-key", actor=OWNER)
    svc.approve(first.id, approver=OWNER)
    assert svc.execute(first.id, actor=OWNER).status == "succeeded"
    with pytest.raises(RemediationRefused, match=f"Already done: .* #{first.id}"):
        svc.request(fid, "deactivate-access-key", actor=OWNER)
    assert actions(world["engine"]).count("remediation.planned") == 1
    svc.undo(first.id, actor=OWNER, undoer_is_owner=True)  # given back: it may be done again
    assert svc.request(fid, "deactivate-access-key", actor=OWNER).status == "planned"


def test_a_click_that_read_the_finding_before_the_first_run_finished_starts_nothing(world, monkeypatch):
    """The late click's first read is stale (the finding still looks open); the check made
    again under the write lock, just before the row is added, sees the run that succeeded."""
    svc = service(world)
    fid = finding_id(world["engine"], "unused-access-key", "bob")
    with session_scope(world["engine"]) as session:
        stale = session.get(Finding, fid)
    first = svc.request(fid, "deactivate-access-key", actor=OWNER)
    svc.approve(first.id, approver=OWNER)
    assert svc.execute(first.id, actor=OWNER).status == "succeeded"
    monkeypatch.setattr(RemediationService, "_finding", lambda self, session, ref: stale)
    with pytest.raises(RemediationRefused, match=f"Already done: .* #{first.id}"):
        svc.request(fid, "deactivate-access-key", actor=OWNER)
    assert actions(world["engine"]).count("remediation.planned") == 1


def test_delete_user_waits_for_stewards_own_quarantine(world, monkeypatch):
    from datetime import timedelta

    from checks.remediate.base import Plan
    from checks.remediate.users import DeleteUser

    svc = service(world)
    fid = finding_id(world["engine"], "stale-user", "carol")
    with pytest.raises(RemediationRefused, match="at least 30 days"):
        svc.request(fid, "delete-user", actor=APPROVER)
    quarantine = svc.request(fid, "quarantine-user", actor=APPROVER)
    svc.approve(quarantine.id, approver=APPROVER)
    done = svc.execute(quarantine.id, actor=APPROVER)
    assert done.status == "succeeded"
    with pytest.raises(RemediationRefused, match="since"):
        svc.request(fid, "delete-user", actor=APPROVER)
    # Moto's server lacks the service-specific-credential calls delete-user reads; the
    # action itself is tested in tests/checks. Here only the waiting period matters.
    monkeypatch.setattr(DeleteUser, "plan", lambda self, session, target: Plan(
        self.id, "Delete IAM user carol.", irreversible_warning="This cannot be undone."))
    later = service(world, clock=lambda: done.finished_at + timedelta(days=31))
    req = later.request(fid, "delete-user", actor=APPROVER)
    assert req.status == "planned" and req.irreversible_warning == "This cannot be undone."


CRASHING_SCRIPT = """
import os, sys, time
from checks.remediate.keys import DeactivateAccessKey
original = DeactivateAccessKey.change

def change(self, iam, target, state):
    if os.environ["CRASH_WHEN"] == "after":
        original(self, iam, target, state)
    open(os.environ["CRASH_FLAG"], "w").close()
    time.sleep(600)

DeactivateAccessKey.change = change
from bot.config import load_settings
from bot.db.engine import make_engine, session_scope
from bot.services.remediation import RemediationService
settings = load_settings()
svc = RemediationService(settings, engine=make_engine(settings.effective_database_url))
rem = svc.request(int(sys.argv[1]), "deactivate-access-key", actor="cli:crash")
svc.approve(rem.id, approver="cli:crash", operator=True)
svc.execute(rem.id, actor="cli:crash")
"""


@pytest.mark.parametrize(("when", "status", "key"), [("before", "failed", "Active"), ("after", "succeeded", "Inactive")])
def test_killed_between_intent_and_completion_is_reconciled(world, tmp_path, when, status, key):
    fid = finding_id(world["engine"], "unused-access-key", "bob")
    flag = tmp_path / "reached"
    env = {**moto_env(world["url"]), "STEWARD_DATABASE_URL": world["db"], "CRASH_WHEN": when,
           "CRASH_FLAG": str(flag), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CRASHING_SCRIPT), str(fid)], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert proc.poll() is None, "the remediation process ended before the crash point"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    with Session(world["engine"]) as session:
        left = session.exec(select(Remediation)).one()
    assert left.status == "executing" and left.before["status"] == "Active"
    assert left.lease_owner and str(proc.pid) in left.lease_owner

    # Its process is gone: settled at once, not after a timeout.
    result = CliRunner().invoke(app, ["reconcile"])
    assert result.exit_code == 0, result.output
    assert "reconciled 1" in result.stderr
    with Session(world["engine"]) as session:
        rem = session.get(Remediation, left.id)
        finding = session.get(Finding, fid)
    assert rem.status == status and rem.lease_owner is None
    assert key_status(world) == key
    assert finding.state == ("remediated" if status == "succeeded" else "failed")
    assert actions(world["engine"])[-1] == ("remediation.succeeded" if status == "succeeded" else "remediation.failed")
    # Reconciling again finds nothing left to do: nothing runs twice.
    assert "reconciled 0" in CliRunner().invoke(app, ["reconcile"]).stderr


def test_undo_is_judged_like_the_action_it_reverses(world):
    svc = service(world)
    fid = finding_id(world["engine"], "unused-access-key", "bob")
    # An approver deactivated the owner's key: undoing it gives access back, so it is not
    # one click for the owner, and the asker cannot approve their own undo.
    rem = svc.request(fid, "deactivate-access-key", actor=APPROVER)
    svc.approve(rem.id, approver=APPROVER)
    svc.execute(rem.id, actor=APPROVER)
    with pytest.raises(RemediationRefused, match="needs a security approver other than you"):
        svc.undo(rem.id, actor=OWNER, undoer_is_owner=True)
    assert key_status(world) == "Inactive"
    asked = svc.request_undo(rem.id, actor=APPROVER)
    assert asked.status == "undo_requested"
    with pytest.raises(RemediationRefused, match="second person"):
        svc.approve_undo(rem.id, approver=APPROVER)
    with pytest.raises(RemediationRefused, match="security approver"):
        svc.approve_undo(rem.id, approver=OWNER)
    assert key_status(world) == "Inactive"
    done = svc.approve_undo(rem.id, approver=OTHER_APPROVER)
    assert (done.status, done.undone_by, done.undo_decided_by) == ("undone", APPROVER, OTHER_APPROVER)
    assert key_status(world) == "Active"

    # The owner's own deactivation: one click for the owner.
    rem = svc.request(fid, "deactivate-access-key", actor=OWNER)
    svc.approve(rem.id, approver=OWNER)
    svc.execute(rem.id, actor=OWNER)
    assert svc.undo(rem.id, actor=OWNER, undoer_is_owner=True).status == "undone"
    assert key_status(world) == "Active"


def _lease_row(world, holder: str, expires_in: float) -> int:
    from datetime import UTC, datetime, timedelta

    from bot.db.engine import session_scope

    fid = finding_id(world["engine"], "unused-access-key", "bob")
    rem = service(world).request(fid, "deactivate-access-key", actor=OWNER)
    service(world).approve(rem.id, approver=OWNER)
    with session_scope(world["engine"]) as session:
        row = session.get(Remediation, rem.id)
        row.status, row.lease_owner = "executing", holder
        row.lease_expires_at = datetime.now(UTC) + timedelta(seconds=expires_in)
    return rem.id


@pytest.mark.parametrize(("whose", "expires_in", "settled"), [
    ("dead process here", 3600, True),
    ("live process here", 3600, False),
    ("live process here", -1, True),  # stopped renewing: its lease ran out
    ("another host", 3600, False),
])
def test_a_lease_whose_holder_is_gone_is_settled_at_once(world, whose, expires_in, settled):
    import socket

    from bot.run.leader import _pid_namespace

    here = f"{socket.gethostname()}:{_pid_namespace()}"
    if whose == "dead process here":
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        holder = f"{here}:{gone.pid}:deadbeef"
    elif whose == "live process here":
        holder = f"{here}:{os.getppid()}:cafe0001"
    else:
        holder = f"elsewhere:1:{os.getpid()}:cafe0002"
    rid = _lease_row(world, holder, expires_in)
    rows = service(world).reconcile()
    with Session(world["engine"]) as session:
        row = session.get(Remediation, rid)
    assert ([r.id for r in rows] == [rid]) is settled
    assert row.status == ("failed" if settled else "executing")  # the key was never touched
    assert key_status(world) == "Active"
