"""Undo that gives access back runs under Steward's restore role, and only there.

Through the `steward` CLI against a moto server: `steward remediate` detaches a policy
(the default role may), then `steward undo` must re-attach it. With
`STEWARD_RESTORE_ROLE_NAME` unset the undo is refused before any AWS call, says why, and
hands an admin the before-state; with it set, the re-attach is made by the restore role.
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
from bot.db.models import AuditEvent, Finding, Remediation
from bot.services.remediation import RemediationRefused, RemediationService, RestoreRoleOff
from bot.services.scans import ScanService
from tests.aws import ACCOUNT_ID, aws_env, moto_server  # noqa: F401

ADMIN_DOC = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
RESTORE_ROLE = "IAMStewardRestore"


@pytest.fixture
def world(moto_server, tmp_path, monkeypatch):  # noqa: F811
    """dave holds a customer policy allowing `*` on `*`; an approved detach took it away."""
    db = f"sqlite:///{tmp_path / 'steward.db'}"
    monkeypatch.setenv("STEWARD_DATABASE_URL", db)
    monkeypatch.delenv("STEWARD_RESTORE_ROLE_NAME", raising=False)
    iam = boto3.client("iam", endpoint_url=moto_server)
    iam.create_user(UserName="dave")
    arn = iam.create_policy(PolicyName="EverythingAdmin", PolicyDocument=json.dumps(ADMIN_DOC))[
        "Policy"]["Arn"]
    iam.attach_user_policy(UserName="dave", PolicyArn=arn)
    upgrade(db)
    engine = make_engine(db)
    ScanService(Settings(database_url=db), engine=engine).run(actor="test")
    with Session(engine) as session:
        finding = session.exec(select(Finding).where(Finding.check_id == "admin-policy")).one()
    result = CliRunner().invoke(app, ["remediate", str(finding.id), "detach-managed-policy", "--yes"])
    assert result.exit_code == 0, result.output
    with Session(engine) as session:
        remediation = session.exec(select(Remediation)).one()
    assert attached(iam) == []
    yield {"iam": iam, "engine": engine, "policy_arn": arn, "remediation": remediation.id}
    engine.dispose()


def attached(iam) -> list[str]:
    return [p["PolicyArn"] for p in iam.list_attached_user_policies(UserName="dave")["AttachedPolicies"]]


def events(engine) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent).order_by(AuditEvent.sequence)))


def status(engine, remediation: int) -> str:
    with Session(engine) as session:
        return session.get(Remediation, remediation).status


def assumed_roles() -> list[str]:
    return [r.role_arn for r in sts_backends[ACCOUNT_ID]["global"].assumed_roles]


def make_restore_role(iam) -> None:
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}}]}
    iam.create_role(RoleName=RESTORE_ROLE, AssumeRolePolicyDocument=json.dumps(trust))


def test_with_restore_off_the_undo_changes_nothing_and_hands_over_the_before_state(world):
    before = len(events(world["engine"]))
    calls_before = len(assumed_roles())
    result = CliRunner().invoke(app, ["undo", str(world["remediation"])])
    assert result.exit_code == 1
    said = " ".join(result.stderr.split())
    assert f"Steward's restore role is not enabled in account {ACCOUNT_ID}" in said
    assert "the before-state is below so an admin can restore by hand" in said
    assert f"aws iam attach-user-policy --user-name dave --policy-arn {world['policy_arn']}" in said
    assert '"policy_name": "EverythingAdmin"' in result.stderr and '"attached": true' in result.stderr
    # Nothing changed: not in AWS, not in the record; the refusal is audited.
    assert attached(world["iam"]) == []
    assert status(world["engine"], world["remediation"]) == "succeeded"
    (refusal,) = events(world["engine"])[before:]
    assert refusal.action == "refused" and "restore role is not enabled" in refusal.payload["reason"]
    assert len(assumed_roles()) == calls_before  # no AWS call made


def test_the_refusal_carries_the_before_state_for_the_caller(world, monkeypatch):
    svc = RemediationService(Settings(), engine=world["engine"])
    with pytest.raises(RestoreRoleOff) as info:
        svc.undo(world["remediation"], actor="UADMIN")
    assert info.value.before["policy_arn"] == world["policy_arn"]
    assert info.value.by_hand.startswith("Attach the managed policy EverythingAdmin to IAM user dave")


def test_with_restore_on_the_undo_runs_under_the_restore_role(world, monkeypatch):
    monkeypatch.setenv("STEWARD_RESTORE_ROLE_NAME", RESTORE_ROLE)
    make_restore_role(world["iam"])
    result = CliRunner().invoke(app, ["undo", str(world["remediation"])])
    assert result.exit_code == 0, result.output
    assert attached(world["iam"]) == [world["policy_arn"]]
    assert status(world["engine"], world["remediation"]) == "undone"
    assert assumed_roles()[-1] == f"arn:aws:iam::{ACCOUNT_ID}:role/{RESTORE_ROLE}"
    assert events(world["engine"])[-1].action == "remediation.undone"


def _sts_refuses_assume_role(session: boto3.Session) -> boto3.Session:
    """Where the restore role does not exist, AWS refuses AssumeRole (moto would not)."""

    def hook(model=None, **_):
        return (_Http403(), {"Error": {"Code": "AccessDenied", "Message": "not authorized"},
                             "ResponseMetadata": {"HTTPStatusCode": 403}})

    session.events.register("before-call.sts.AssumeRole", hook)
    return session


class _Http403:
    status_code, headers, content = 403, {}, b""


def test_with_restore_on_but_no_role_in_the_account_the_undo_fails_plainly(world):
    svc = RemediationService(Settings(restore_role_name=RESTORE_ROLE), engine=world["engine"],
                             aws_session_factory=lambda: _sts_refuses_assume_role(boto3.Session()))
    with pytest.raises(RemediationRefused) as info:
        svc.undo(world["remediation"], actor="cli:admin", operator=True)
    said = " ".join(str(info.value).split())
    assert f"Steward's restore role {RESTORE_ROLE} could not be used in account {ACCOUNT_ID}" in said
    assert "is EnableRestore on there?" in said and "aws iam attach-user-policy" in said
    assert attached(world["iam"]) == []
    assert status(world["engine"], world["remediation"]) == "succeeded"
    assert events(world["engine"])[-1].action == "remediation.undo_failed"


def test_an_owner_s_own_undo_never_needs_the_restore_role(world):
    # Quarantine and deactivate undo under the default role, restore or not.
    from checks.remediate.registry import BY_ID

    assert not BY_ID["quarantine-user"].undo_needs_restore
    assert not BY_ID["deactivate-access-key"].undo_needs_restore


def test_a_restore_role_name_iam_would_refuse_is_a_settings_error(monkeypatch, tmp_path):
    monkeypatch.setenv("STEWARD_DATABASE_URL", f"sqlite:///{tmp_path / 'steward.db'}")
    monkeypatch.setenv("STEWARD_RESTORE_ROLE_NAME", "IAM Steward Restore")
    result = CliRunner().invoke(app, ["undo", "1"])
    assert result.exit_code == 2
    assert "STEWARD_RESTORE_ROLE_NAME" in result.stderr and "Traceback" not in result.output
