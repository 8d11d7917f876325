"""Role chains across the accounts of one scan run, through the scan service (moto's
server: each role of STEWARD_ACCOUNT_ROLES is its own account) on both databases, and
without a database."""

from __future__ import annotations

import json

import boto3
import pytest
from sqlmodel import Session, select

from bot.config import load_settings
from bot.db.engine import make_engine
from bot.db.models import AuditEvent, Finding
from bot.services.scans import ScanService
from checks.chains import CROSS_ACCOUNT
from tests.aws import aws_env, moto_server  # noqa: F401  (fixtures)
from tests.test_scan_jobs import db_url, role  # noqa: F401  (fixture)

A, B = "111111111111", "222222222222"
CI = f"arn:aws:iam::{A}:user/ci"
CHECK = "privilege-escalation-policy"


def iam_of(url: str, account: str):
    creds = boto3.client("sts", endpoint_url=url).assume_role(
        RoleArn=role(account), RoleSessionName="test")["Credentials"]
    return boto3.client("iam", endpoint_url=url, aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


def trust(*principals: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": list(principals)}, "Action": "sts:AssumeRole"}]})


def allow(action: str, resource: str = "*") -> str:
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]})


@pytest.fixture
def org(moto_server, monkeypatch):  # noqa: F811
    """user/ci (A) may assume role/deploy (B), which may assume role/admin (B)."""
    a, b = iam_of(moto_server, A), iam_of(moto_server, B)
    a.create_user(UserName="ci")
    a.put_user_policy(UserName="ci", PolicyName="hop",
                      PolicyDocument=allow("sts:AssumeRole", f"arn:aws:iam::{B}:role/deploy"))
    b.create_role(RoleName="deploy", AssumeRolePolicyDocument=trust(CI))
    b.put_role_policy(RoleName="deploy", PolicyName="hop", PolicyDocument=allow("sts:AssumeRole"))
    b.create_role(RoleName="admin", AssumeRolePolicyDocument=trust(f"arn:aws:iam::{B}:root"))
    b.put_role_policy(RoleName="admin", PolicyName="all", PolicyDocument=allow("*"))
    monkeypatch.setenv("STEWARD_ACCOUNT_ROLES", f"{role(A)} {role(B)}")
    monkeypatch.setenv("STEWARD_AWS_MAX_ATTEMPTS", "1")
    return {"url": moto_server, "b": b}


def chain_findings(report) -> list:
    return [r for o in report.outcomes for r in o.findings if r.sub_key == CROSS_ACCOUNT]


def stored(url: str) -> tuple[list[Finding], list[str]]:
    engine = make_engine(url)
    with Session(engine) as session:
        rows = list(session.exec(select(Finding).where(Finding.sub_key == CROSS_ACCOUNT)))
        events = [e.action for e in session.exec(select(AuditEvent).order_by(AuditEvent.sequence))
                  if (e.payload or {}).get("reason") == "cross-account role chain"]
    engine.dispose()
    return rows, events


def test_chain_across_accounts_is_found_kept_and_resolved(org, db_url):  # noqa: F811
    engine = make_engine(db_url)
    service = ScanService(load_settings(), engine=engine)
    report = service.run(actor="test")
    assert [o.status for o in report.outcomes] == ["succeeded", "succeeded"]
    (found,) = chain_findings(report)
    assert (found.check, found.account, found.resource) == (CHECK, A, CI)
    assert found.details["explanation"] == (
        f"user/ci can become administrator by assuming roles across accounts: "
        f"user/ci ({A}) → role/deploy ({B}) → role/admin ({B})")
    (row,), events = stored(db_url)
    assert (row.fingerprint, row.state) == (found.fingerprint, "open") and events == ["finding.opened"]
    # Each account's part of the graph served this run's join only: not kept on its row.
    assert all("reach" not in r.counts and "coverage" in r.counts for r in service.run_of(report.run_id))

    # A rescan of the unchanged organization: the same finding, untouched.
    again = service.run(actor="test")
    assert [r.fingerprint for r in chain_findings(again)] == [found.fingerprint]
    (row2,), events = stored(db_url)
    assert (row2.state, row2.details, row2.first_seen) == ("open", row.details, row.first_seen)
    assert events == ["finding.opened"]

    # The chain is gone, but only account A is scanned: B's side is unknown, nothing resolved.
    org["b"].update_assume_role_policy(RoleName="deploy", PolicyDocument=trust(f"arn:aws:iam::{A}:user/other"))
    service.run(actor="test", only_accounts=[A])
    assert [r.state for r in stored(db_url)[0]] == ["open"]
    # Both accounts scanned (the quiet twin): resolved, and said so in the audit log.
    quiet = service.run(actor="test")
    assert chain_findings(quiet) == []
    (row3,), events = stored(db_url)
    assert row3.state == "resolved" and events == ["finding.opened", "finding.resolved"]
    engine.dispose()


def test_chain_across_accounts_without_a_database(org):
    report = ScanService(load_settings(), engine=None).run(save=False, actor="test")
    (found,) = chain_findings(report)
    assert found.resource == CI and found.details["path"] == ["user/ci", "role/deploy", "role/admin"]
    # role/deploy's own chain is inside B: B's ordinary finding, not a cross-account one.
    (b,) = [o for o in report.outcomes if o.account_id == B]
    deploy = [r for r in b.findings if r.resource.endswith("role/deploy") and r.check == CHECK]
    assert [r.sub_key for r in deploy] == [""]
