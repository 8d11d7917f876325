"""`steward scan` end to end: the real CLI against moto's server, data backdated in moto."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from bot.cli.main import app
from bot.db.engine import make_engine
from bot.db.models import AuditEvent, Finding, Scan
from tests.aws import (
    ACCOUNT_ID,
    aws_env,  # noqa: F401  (fixture)
    backdate_access_key,
    backdate_user,
    document,
    moto_env,
    moto_server,  # noqa: F401  (fixture)
)

TRUST_OTHER_ACCOUNT = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999988887777:root"}, "Action": "sts:AssumeRole"}
    ],
}


@pytest.fixture
def messy_account(moto_server):  # noqa: F811
    """A small account with one problem of each common kind."""
    iam = boto3.client("iam", endpoint_url=moto_server)
    iam.create_user(UserName="alice@example.com")
    iam.create_login_profile(UserName="alice@example.com", Password="Xx-12345678-yY")
    backdate_user("alice@example.com", 200)

    iam.create_user(UserName="bob", Tags=[{"Key": "owner", "Value": "bob@example.com"}])
    bob_key = iam.create_access_key(UserName="bob")["AccessKey"]["AccessKeyId"]
    backdate_user("bob", 300)
    backdate_access_key("bob", 1, created=200, last_used=100)

    iam.create_user(UserName="carol", Tags=[{"Key": "owner", "Value": "UCAROL1234"}])
    iam.create_access_key(UserName="carol")
    backdate_access_key("carol", 1, created=3, last_used=1)

    iam.create_group(GroupName="admins")
    iam.put_group_policy(
        GroupName="admins",
        PolicyName="everything",
        PolicyDocument=document({"Effect": "Allow", "Action": "*", "Resource": "*"}),
    )
    iam.add_user_to_group(GroupName="admins", UserName="carol")
    iam.create_role(RoleName="vendor-access", AssumeRolePolicyDocument=json.dumps(TRUST_OTHER_ACCOUNT))
    return {"url": moto_server, "iam": iam, "bob_key": bob_key}


def run_cli(*args: str, env: dict | None = None):
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return result


def test_scan_json_through_the_real_console_script(messy_account, tmp_path):
    """The installed `steward` entry point, as a pipeline would run it."""
    env = moto_env(messy_account["url"])
    env["STEWARD_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    steward = Path(sys.executable).parent / "steward"
    command = [str(steward)] if steward.exists() else [sys.executable, "-m", "bot"]
    proc = subprocess.run(
        [*command, "scan", "--format", "json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    findings = json.loads(proc.stdout)
    by_check = {}
    for f in findings:
        assert set(f) >= {"check", "account", "resource", "severity", "title", "owner", "fingerprint", "details"}
        assert f["account"] == ACCOUNT_ID
        assert f["severity"] in {"critical", "high", "medium", "low"}
        by_check.setdefault(f["check"], []).append(f)

    alice = f"arn:aws:iam::{ACCOUNT_ID}:user/alice@example.com"
    assert [f["resource"] for f in by_check["console-user-without-mfa"]] == [alice]
    assert by_check["console-user-without-mfa"][0]["owner"] == "alice@example.com"
    assert alice in [f["resource"] for f in by_check["unused-password"]]
    assert alice in [f["resource"] for f in by_check["stale-user"]]

    [unused] = by_check["unused-access-key"]
    assert unused["details"]["access_key_id"] == messy_account["bob_key"]
    assert unused["owner"] == "bob@example.com"
    [old] = by_check["old-access-key"]
    assert old["details"]["access_key_id"] == messy_account["bob_key"]
    assert old["fingerprint"] != unused["fingerprint"]

    assert [f["resource"].rsplit(":", 1)[1] for f in by_check["admin-policy"]] == ["group/admins"]
    assert by_check["admin-policy"][0]["details"]["policy_name"] == "everything"
    assert by_check["role-trust-external-no-external-id"][0]["details"]["external_accounts"] == ["999988887777"]
    assert "no-policy" in by_check["password-policy-weak"][0]["details"]["failing"]
    # carol's young, used key raises nothing about keys
    carol = f"arn:aws:iam::{ACCOUNT_ID}:user/carol"
    assert not [f for f in findings if f["resource"] == carol and "key" in f["check"]]
    assert "scan succeeded" in proc.stderr


def test_rescan_updates_resolves_and_counts_calls(messy_account, tmp_path):
    db = f"sqlite:///{tmp_path / 'rescan.db'}"
    env = {"STEWARD_DATABASE_URL": db}
    assert run_cli("scan", env=env).exit_code == 0
    assert run_cli("scan", env=env).exit_code == 0
    engine = make_engine(db)
    with Session(engine) as session:
        first = session.exec(select(Finding)).all()
        scans = session.exec(select(Scan).order_by(Scan.id)).all()
    assert len({f.fingerprint for f in first}) == len(first)  # no duplicates
    assert [s.status for s in scans] == ["succeeded", "succeeded"]
    # A handful of calls, plus one ListAccessKeys for the one user with key findings; the
    # rescan remembers bob's key id and skips that call.
    assert 5 <= scans[0].api_calls <= 11  # incl. iam:ListAccountAliases (once per account per service)
    assert scans[1].api_calls == scans[0].api_calls - 1
    assert scans[-1].counts["coverage"]["stale-user"][0] == 3  # three users evaluated

    iam = messy_account["iam"]
    iam.delete_access_key(UserName="bob", AccessKeyId=messy_account["bob_key"])
    assert run_cli("scan", env=env).exit_code == 0
    with Session(engine) as session:
        states = {(f.check_id, f.sub_key): f.state for f in session.exec(select(Finding))}
    assert states[("unused-access-key", messy_account["bob_key"])] == "resolved"
    assert states[("old-access-key", messy_account["bob_key"])] == "resolved"
    assert states[("stale-user", "")] == "open"

    with Session(engine) as session:
        events = session.exec(select(AuditEvent).order_by(AuditEvent.sequence)).all()
    assert [e.action for e in events] == ["scan.succeeded"] * 3
    assert set(events[-1].payload["fingerprints"]["resolved"]) == {
        f.fingerprint for f in first if f.sub_key == messy_account["bob_key"]
    }
    verified = run_cli("audit", "verify", env=env)
    assert verified.exit_code == 0, verified.output
    engine.dispose()


def test_table_output_groups_by_severity_and_names_owners(messy_account, tmp_path):
    result = run_cli("scan", "--no-save")
    assert result.exit_code == 0
    text = result.stdout
    assert "admin-policy" in text and "group/admins" in text
    assert "bob@example.com" in text
    severities = [line.split("│")[1].strip() for line in text.splitlines()
                  if line.startswith("│") and line.split("│")[1].strip()]
    rank = ["critical", "high", "medium", "low"]
    assert severities == sorted(severities, key=rank.index)
    assert {"high", "medium"} <= set(severities)
    assert not (tmp_path / "steward.db").exists()  # --no-save wrote nothing


def test_failed_account_is_reported_and_resolves_nothing(messy_account, tmp_path, monkeypatch):
    db = f"sqlite:///{tmp_path / 'fail.db'}"
    assert run_cli("scan", env={"STEWARD_DATABASE_URL": db}).exit_code == 0

    from checks import collect

    def denied(session, **kwargs):
        raise collect.CollectError(ACCOUNT_ID, "AccessDenied on iam:GetAccountAuthorizationDetails")

    monkeypatch.setattr(collect, "collect_account", denied)
    result = run_cli("scan", env={"STEWARD_DATABASE_URL": db})
    assert result.exit_code == 1
    assert "SCAN FAILED" in result.stdout
    assert "AccessDenied" in result.stderr
    engine = make_engine(db)
    with Session(engine) as session:
        states = {f.state for f in session.exec(select(Finding))}
        last = session.exec(select(Scan).order_by(Scan.id.desc())).first()
    assert states == {"open"}
    assert last.status == "failed" and "AccessDenied" in last.error
    engine.dispose()


def test_json_output_is_empty_array_but_exit_1_when_the_only_account_fails(messy_account, monkeypatch):
    from checks import collect

    monkeypatch.setattr(collect, "collect_account", lambda session, **kw: (_ for _ in ()).throw(RuntimeError("boom")))
    result = run_cli("scan", "--format", "json", "--no-save")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == []
    assert "internal error: RuntimeError: boom" in result.stderr


def test_unreachable_endpoint_is_a_clear_failure(aws_env, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("STEWARD_AWS_MAX_ATTEMPTS", "1")
    result = run_cli("scan", "--no-save")
    assert result.exit_code == 1
    assert "cannot reach the AWS endpoint http://127.0.0.1:9" in result.stderr
    assert "SCAN FAILED" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_setting_is_named(aws_env, monkeypatch):  # noqa: F811
    monkeypatch.setenv("STEWARD_UNUSED_DAYS", "soon")
    result = run_cli("scan", "--no-save")
    assert result.exit_code == 2
    assert "STEWARD_UNUSED_DAYS" in result.stderr


def test_account_option_is_validated(aws_env):  # noqa: F811
    result = run_cli("scan", "--account", "12345", "--no-save")
    assert result.exit_code == 2
    assert "12-digit" in result.stderr
