"""Least privilege end to end: `steward usage collect`, a scan, the proposal, apply, undo.

Against a moto server with the Access Advisor emulator (tests/access_advisor.py), through
the `steward` CLI and the remediation service the Slack buttons call.
"""

from __future__ import annotations

import json

import boto3
import pytest
from moto.sts.models import sts_backends
from sqlmodel import Session, select
from typer.testing import CliRunner

from bot.cli.main import app
from bot.config import Settings
from bot.db.engine import make_engine
from bot.db.migrate import upgrade
from bot.db.models import AuditEvent, Finding, PrincipalUsage, Remediation, UsageConsent
from bot.services.remediation import RemediationRefused, RemediationService
from bot.services.scans import ScanService
from tests.access_advisor import access_advisor  # noqa: F401
from tests.aws import ACCOUNT_ID, aws_env, backdate_role, moto_server  # noqa: F401

SIX = ["s3:*", "dynamodb:*", "lambda:InvokeFunction", "sqs:*", "sns:Publish", "kms:Decrypt"]
POLICY = {"Version": "2012-10-17", "Statement": [
    {"Sid": "App", "Effect": "Allow", "Action": SIX, "Resource": "*"},
    {"Sid": "NoDeletes", "Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"}]}
RESTORE_ROLE = "IAMStewardRestore"
TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def role_arn(name):
    return f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"


@pytest.fixture
def world(moto_server, access_advisor, empty_database_url, monkeypatch):  # noqa: F811
    db = empty_database_url  # SQLite and, with STEWARD_TEST_DATABASE_URL, PostgreSQL
    monkeypatch.setenv("STEWARD_DATABASE_URL", db)
    monkeypatch.delenv("STEWARD_RESTORE_ROLE_NAME", raising=False)
    iam = boto3.client("iam", endpoint_url=moto_server)
    policy = iam.create_policy(PolicyName="app-policy", PolicyDocument=json.dumps(POLICY))["Policy"]["Arn"]
    upgrade(db)
    engine = make_engine(db)
    yield {"iam": iam, "engine": engine, "policy": policy, "advisor": access_advisor, "db": db}
    engine.dispose()


def add_role(world, name, owner):
    world["iam"].create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST),
                             Tags=[{"Key": "owner", "Value": owner}])
    world["iam"].attach_role_policy(RoleName=name, PolicyArn=world["policy"])
    backdate_role(name, created=400)


def collect_and_scan(world):
    result = CliRunner().invoke(app, ["usage", "collect"])
    assert result.exit_code == 0, result.output
    ScanService(Settings(database_url=world["db"]), engine=world["engine"]).run(actor="test")
    with Session(world["engine"]) as session:
        return list(session.exec(select(Finding).where(Finding.check_id == "unused-permissions")))


def default_document(world):
    iam = world["iam"]
    version = iam.get_policy(PolicyArn=world["policy"])["Policy"]["DefaultVersionId"]
    doc = iam.get_policy_version(PolicyArn=world["policy"], VersionId=version)["PolicyVersion"]["Document"]
    return version, doc if isinstance(doc, dict) else json.loads(doc)


def events(engine, action):
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)))


def test_a_role_using_2_of_6_services_gets_a_policy_with_those_2_then_undo_restores_it(world, monkeypatch):
    add_role(world, "app", "alice@example.com")
    world["advisor"].use(role_arn("app"), "lambda:InvokeFunction", 2)
    world["advisor"].use(role_arn("app"), "kms:Decrypt", 10)
    world["advisor"].use(role_arn("app"), "s3:GetObject", 200)  # before the 45-day window
    (finding,) = collect_and_scan(world)
    with Session(world["engine"]) as session:
        stored = session.exec(select(PrincipalUsage)).one()
    assert stored.principal_arn == role_arn("app")
    assert {s["namespace"] for s in stored.services} == {"s3", "dynamodb", "lambda", "sqs", "sns", "kms"}
    assert events(world["engine"], "usage.collected")[0].payload["principals"] == 1
    d = finding.details
    assert d["summary"] == ("removes s3:*, dynamodb:*, sqs:*, sns:Publish; keeps lambda:InvokeFunction, "
                            "kms:Decrypt")
    assert d["proposal"]["Statement"] == [
        {"Sid": "App", "Effect": "Allow", "Action": ["lambda:InvokeFunction", "kms:Decrypt"], "Resource": "*"},
        POLICY["Statement"][1]]  # the Deny stays
    assert finding.owner == "alice@example.com" and d["shared_with"] == []

    # The restore role is off: nothing is written; the admin gets the command.
    result = CliRunner().invoke(app, ["remediate", str(finding.id), "rightsize-policy", "--yes"])
    assert result.exit_code == 1
    assert "restore role is not enabled" in result.stderr and "aws iam create-policy-version" in result.stderr
    assert default_document(world)[0] == "v1"

    monkeypatch.setenv("STEWARD_RESTORE_ROLE_NAME", RESTORE_ROLE)
    world["iam"].create_role(RoleName=RESTORE_ROLE, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}}]}))
    result = CliRunner().invoke(app, ["remediate", str(finding.id), "rightsize-policy", "--yes"])
    assert result.exit_code == 0, result.output
    version, doc = default_document(world)
    assert version == "v2" and doc == d["proposal"]
    # Written by the restore role: the default role may not create policy versions.
    assert sts_backends[ACCOUNT_ID]["global"].assumed_roles[-1].role_arn == role_arn(RESTORE_ROLE)
    with Session(world["engine"]) as session:
        row = session.exec(select(Remediation)).one()
    assert row.status == "succeeded" and row.before["default_version_id"] == "v1"
    assert row.before["document"] == POLICY

    result = CliRunner().invoke(app, ["undo", str(row.id)])
    assert result.exit_code == 0, result.output
    version, doc = default_document(world)
    assert version == "v1" and doc == POLICY
    listed = world["iam"].list_policy_versions(PolicyArn=world["policy"])["Versions"]
    assert [v["VersionId"] for v in listed] == ["v1"]  # the right-sized version is gone too
    assert events(world["engine"], "remediation.undone")


def test_at_five_versions_the_oldest_non_default_is_pruned_and_put_back_by_undo(world, monkeypatch):
    add_role(world, "app", "alice@example.com")
    world["advisor"].use(role_arn("app"), "kms:Decrypt", 1)
    for _ in range(4):  # v2..v5, v1 stays the default
        world["iam"].create_policy_version(PolicyArn=world["policy"], PolicyDocument=json.dumps(POLICY))
    (finding,) = collect_and_scan(world)
    monkeypatch.setenv("STEWARD_RESTORE_ROLE_NAME", RESTORE_ROLE)
    world["iam"].create_role(RoleName=RESTORE_ROLE, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}}]}))
    result = CliRunner().invoke(app, ["remediate", str(finding.id), "rightsize-policy", "--yes"])
    assert result.exit_code == 0, result.output
    ids = sorted(v["VersionId"] for v in world["iam"].list_policy_versions(PolicyArn=world["policy"])["Versions"])
    assert "v2" not in ids and len(ids) == 5 and default_document(world)[0] == "v6"
    with Session(world["engine"]) as session:
        row = session.exec(select(Remediation)).one()
    assert row.before["prune"]["version_id"] == "v2"
    assert CliRunner().invoke(app, ["undo", str(row.id)]).exit_code == 0
    assert default_document(world) == ("v1", POLICY)
    listed = world["iam"].list_policy_versions(PolicyArn=world["policy"])["Versions"]
    assert len(listed) == 5 and "v6" not in {v["VersionId"] for v in listed}


def test_a_shared_policy_changes_only_once_every_owner_agreed(world, monkeypatch):
    add_role(world, "app", "alice@example.com")
    add_role(world, "batch", "bob@example.com")
    world["advisor"].use(role_arn("app"), "lambda:InvokeFunction", 2)
    world["advisor"].use(role_arn("batch"), "sqs:SendMessage", 3)
    findings = {f.resource: f for f in collect_and_scan(world)}
    alice, bob = findings[role_arn("app")], findings[role_arn("batch")]
    # One proposal for both: what either of them used stays.
    assert alice.details["proposal"] == bob.details["proposal"]
    assert alice.details["keeps"] == ["lambda:InvokeFunction", "sqs:*"]
    assert alice.details["shared_with"] == [{"arn": role_arn("batch"), "owner": "bob@example.com"}]
    assert "Also held by role/batch (bob@example.com): each owner must agree" in alice.details["explanation"]

    monkeypatch.setenv("STEWARD_RESTORE_ROLE_NAME", RESTORE_ROLE)
    world["iam"].create_role(RoleName=RESTORE_ROLE, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}}]}))
    service = RemediationService(Settings(database_url=world["db"], restore_role_name=RESTORE_ROLE),
                                 engine=world["engine"])
    with pytest.raises(RemediationRefused, match=r"role/batch \(bob@example.com\) has not agreed yet"):
        service.request(alice.id, "rightsize-policy", actor="UALICE")
    assert default_document(world)[0] == "v1"
    with pytest.raises(RemediationRefused):  # asking again changes nothing, still waiting for bob
        service.request(alice.id, "rightsize-policy", actor="UALICE")
    row = service.request(bob.id, "rightsize-policy", actor="UBOB")  # the last yes: planned
    service.approve(row.id, approver="UBOB")  # an owner may apply it alone
    done = service.execute(row.id, actor="UBOB")
    assert done.status == "succeeded"
    assert default_document(world) == ("v2", alice.details["proposal"])
    with Session(world["engine"]) as session:
        assert {c.actor for c in session.exec(select(UsageConsent))} == {"UALICE", "UBOB"}
    assert [e.payload["pending"] for e in events(world["engine"], "rightsize.consented")] == [
        [role_arn("batch")], []]
    # Bob's undo of his own right-sizing gives access back: it needs an approver.
    with pytest.raises(RemediationRefused, match="needs a security approver"):
        service.undo(row.id, actor="UBOB", undoer_is_owner=True)


def test_an_inline_policy_is_rewritten_and_undo_puts_the_document_back(world, monkeypatch):
    iam = world["iam"]
    iam.create_role(RoleName="worker", AssumeRolePolicyDocument=json.dumps(TRUST),
                    Tags=[{"Key": "owner", "Value": "carol@example.com"}])
    inline = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["sqs:ReceiveMessage", "dynamodb:PutItem"], "Resource": "*"}]}
    iam.put_role_policy(RoleName="worker", PolicyName="jobs", PolicyDocument=json.dumps(inline))
    backdate_role("worker", created=400)
    world["advisor"].use(role_arn("worker"), "sqs:ReceiveMessage", 1)
    (finding,) = collect_and_scan(world)
    assert finding.sub_key == "inline:jobs" and finding.details["policy_kind"] == "inline"
    monkeypatch.setenv("STEWARD_RESTORE_ROLE_NAME", RESTORE_ROLE)
    iam.create_role(RoleName=RESTORE_ROLE, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}}]}))
    result = CliRunner().invoke(app, ["remediate", str(finding.id), "rightsize-policy", "--yes"])
    assert result.exit_code == 0, result.output

    def current():
        doc = iam.get_role_policy(RoleName="worker", PolicyName="jobs")["PolicyDocument"]
        return doc if isinstance(doc, dict) else json.loads(doc)

    assert current()["Statement"][0]["Action"] == ["sqs:ReceiveMessage"]
    with Session(world["engine"]) as session:
        row = session.exec(select(Remediation)).one()
    assert CliRunner().invoke(app, ["undo", str(row.id)]).exit_code == 0
    assert current() == inline


def test_a_policy_edited_since_the_scan_is_not_overwritten(world, monkeypatch):
    add_role(world, "app", "alice@example.com")
    world["advisor"].use(role_arn("app"), "kms:Decrypt", 1)
    (finding,) = collect_and_scan(world)
    edited = {**POLICY, "Statement": [*POLICY["Statement"], {"Effect": "Allow", "Action": "logs:*", "Resource": "*"}]}
    world["iam"].create_policy_version(PolicyArn=world["policy"], PolicyDocument=json.dumps(edited), SetAsDefault=True)
    monkeypatch.setenv("STEWARD_RESTORE_ROLE_NAME", RESTORE_ROLE)
    world["iam"].create_role(RoleName=RESTORE_ROLE, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}}]}))
    result = CliRunner().invoke(app, ["remediate", str(finding.id), "rightsize-policy", "--yes"])
    assert result.exit_code == 1 and "changed since the proposal was made" in " ".join(result.stderr.split())
    assert default_document(world) == ("v2", edited)
