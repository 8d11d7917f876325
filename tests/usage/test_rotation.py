""""Rotate it for me" end to end on a moto server, with Secrets Manager made strict about
who may read a secret (tests/secrets_strict.py): create, hand over, watch, deactivate, undo."""

from __future__ import annotations

import json
import logging

import boto3
import pytest
from botocore.exceptions import ClientError
from sqlmodel import Session, select

from bot.config import Settings
from bot.core.decisions import AUTO_ACTOR
from bot.core.logsafe import SlackDataFilter
from bot.db.engine import make_engine
from bot.db.migrate import upgrade
from bot.db.models import AuditEvent, Finding, KeyRotation, Remediation
from bot.services.remediation import RemediationService
from bot.services.rotation import RotationRefused, RotationService
from bot.services.scans import ScanService
from tests.aws import ACCOUNT_ID, aws_env, backdate_access_key, moto_server, moto_session  # noqa: F401
from tests.secrets_strict import strict_secrets

ROLE = "IAMStewardRotate"
ALICE = f"arn:aws:iam::{ACCOUNT_ID}:user/alice"


@pytest.fixture
def world(moto_server, empty_database_url, monkeypatch):  # noqa: F811
    reads = strict_secrets(monkeypatch)
    db = empty_database_url  # SQLite and, with STEWARD_TEST_DATABASE_URL, PostgreSQL
    iam = boto3.client("iam", endpoint_url=moto_server)
    iam.create_user(UserName="alice", Tags=[{"Key": "owner", "Value": "alice@example.com"}])
    old = iam.create_access_key(UserName="alice")["AccessKey"]
    backdate_access_key("alice", 1, created=200, last_used=1)
    iam.create_user(UserName="bob")
    bob = iam.create_access_key(UserName="bob")["AccessKey"]
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}}]}))
    upgrade(db)
    engine = make_engine(db)
    ScanService(Settings(database_url=db), engine=engine).run(actor="test")
    with Session(engine) as session:
        finding = session.exec(select(Finding).where(Finding.check_id == "old-access-key")).one()
    assert finding.details["access_key_id"] == old["AccessKeyId"]
    settings = Settings(database_url=db, rotation_role_name=ROLE, rotation_auto_deactivate=True)
    yield {"iam": iam, "engine": engine, "finding": finding, "old": old, "bob": bob, "url": moto_server,
           "settings": settings, "reads": reads}
    engine.dispose()


def client_as(world, key, service="secretsmanager"):
    return boto3.client(service, endpoint_url=world["url"], aws_access_key_id=key["AccessKeyId"],
                        aws_secret_access_key=key["SecretAccessKey"], aws_session_token=None)


def keys(world):
    return {k["AccessKeyId"]: k["Status"] for k in world["iam"].list_access_keys(UserName="alice")["AccessKeyMetadata"]}


def actions(engine):
    with Session(engine) as session:
        return [e.action for e in session.exec(select(AuditEvent).order_by(AuditEvent.sequence))]


def test_without_the_rotation_role_nothing_is_created(world):
    service = RotationService(Settings(database_url=world["settings"].database_url), engine=world["engine"])
    with pytest.raises(RotationRefused, match="rotation role is not enabled"):
        service.start(world["finding"].id, actor="UALICE")
    assert list(keys(world)) == [world["old"]["AccessKeyId"]]
    assert actions(world["engine"])[-1] == "refused"


def test_rotation_end_to_end(world, caplog):
    caplog.set_level(logging.DEBUG)
    engine, old_id = world["engine"], world["old"]["AccessKeyId"]
    service = RotationService(world["settings"], engine=engine)
    row, message = service.start(world["finding"].id, actor="UALICE")
    new_id = row.new_key_id
    assert keys(world) == {old_id: "Active", new_id: "Active"}
    assert row.secret_arn in message and new_id in message and ALICE in message

    # Only alice's principal can read it (here with her old key): not Steward, not bob, not root.
    policy = json.loads(world["iam"] and boto3.client("secretsmanager", endpoint_url=world["url"])
                        .get_resource_policy(SecretId=row.secret_arn)["ResourcePolicy"])
    assert {s["Sid"] for s in policy["Statement"]} == {"OnlyTheOwnerReads", "NobodyElseReads"}
    for who in (boto3.client("secretsmanager", endpoint_url=world["url"]), client_as(world, world["bob"])):
        with pytest.raises(ClientError, match="AccessDeniedException"):
            who.get_secret_value(SecretId=row.secret_arn)
    secret = json.loads(client_as(world, world["old"]).get_secret_value(SecretId=row.secret_arn)["SecretString"])
    assert secret["AccessKeyId"] == new_id
    assert [(caller, ok) for caller, _, ok in world["reads"]] == [
        (f"arn:aws:iam::{ACCOUNT_ID}:root", False), (f"arn:aws:iam::{ACCOUNT_ID}:user/bob", False), (ALICE, True)]
    # And it works: the new key is alice's.
    new_key = {"AccessKeyId": new_id, "SecretAccessKey": secret["SecretAccessKey"]}
    assert client_as(world, new_key, "sts").get_caller_identity()["Arn"] == ALICE
    # The secret went nowhere else: not the database, the audit log, the logs.
    with Session(engine) as session:
        stored = json.dumps([e.payload for e in session.exec(select(AuditEvent))]) + json.dumps(
            [r.model_dump(mode="json") for r in session.exec(select(KeyRotation))])
    # Logs as Steward's handlers write them (bot.core.logsafe drops botocore's DEBUG bodies).
    logged = "\n".join(r.getMessage() for r in caplog.records if SlackDataFilter().filter(r))
    assert new_id in logged and secret["SecretAccessKey"] not in stored and secret["SecretAccessKey"] not in logged

    # Watch 1: the secret was read -> its deletion is scheduled; the new key was used (the
    # call above) but the old one was used yesterday -> the old key stays.
    assert service.tick() == {"picked_up": 1, "new_key_used": 1}
    described = boto3.client("secretsmanager", endpoint_url=world["url"]).describe_secret(SecretId=row.secret_arn)
    assert described.get("DeletedDate") is not None
    assert keys(world)[old_id] == "Active"
    assert service.tick() == {}
    assert keys(world)[old_id] == "Active"
    # Watch 3: the old key quiet for 5 days (> STEWARD_ROTATION_QUIET_DAYS=3) -> deactivated.
    backdate_access_key("alice", old_id, last_used=5)
    assert service.tick() == {"deactivated": 1}
    assert keys(world) == {old_id: "Inactive", new_id: "Active"}
    with Session(engine) as session:
        row = session.get(KeyRotation, row.id)
        remediation = session.exec(select(Remediation)).one()
    assert row.status == "old_deactivated" and row.delete_after is not None
    assert remediation.requested_by == AUTO_ACTOR and remediation.action == "deactivate-access-key"
    assert service.tick() == {}  # done watching
    # Undo: the owner's one click (an announced auto-remediation counts as theirs).
    undone = RemediationService(world["settings"], engine=engine).undo(remediation.id, actor="UALICE",
                                                                        undoer_is_owner=True)
    assert undone.status == "undone" and keys(world)[old_id] == "Active"
    trail = [a for a in actions(engine) if a.startswith("rotation.")]
    assert trail == ["rotation.started", "rotation.key_created", "rotation.picked_up", "rotation.new_key_used",
                     "rotation.old_key_deactivated"]


def test_without_auto_deactivation_it_is_offered_once(world):
    settings = world["settings"].model_copy(update={"rotation_auto_deactivate": False})
    service = RotationService(settings, engine=world["engine"])
    row, _ = service.start(world["finding"].id, actor="UALICE")
    backdate_access_key("alice", world["old"]["AccessKeyId"], last_used=4)
    assert service.tick() == {}  # the old key is quiet, but the new one was never used: wait
    backdate_access_key("alice", row.new_key_id, last_used=0)
    assert service.tick() == {"new_key_used": 1, "offered": 1}
    assert service.tick() == {}
    assert keys(world)[world["old"]["AccessKeyId"]] == "Active"  # offered, not done


def test_two_keys_means_making_room_first(world):
    iam = world["iam"]
    spare = iam.create_access_key(UserName="alice")["AccessKey"]["AccessKeyId"]
    service = RotationService(world["settings"], engine=world["engine"])
    with pytest.raises(RotationRefused, match="two active keys"):
        service.start(world["finding"].id, actor="UALICE")
    iam.update_access_key(UserName="alice", AccessKeyId=spare, Status="Inactive")
    with pytest.raises(RotationRefused, match=f"The inactive one, {spare}, has to be deleted first"):
        service.start(world["finding"].id, actor="UALICE")
    assert len(keys(world)) == 2
    with Session(world["engine"]) as session:
        assert [r.status for r in session.exec(select(KeyRotation))] == ["failed", "failed"]


def test_every_call_of_a_rotation_is_in_the_rotation_policy(moto_session):  # noqa: F811
    from checks import rotation
    from checks.permissions import rotation_policy
    from tests.checks.test_remediate_base import recording

    iam = moto_session.client("iam")
    iam.create_user(UserName="carol")
    old = iam.create_access_key(UserName="carol")["AccessKey"]["AccessKeyId"]
    with recording(moto_session) as calls:
        reader = rotation.user_arn(moto_session, ACCOUNT_ID, "carol")
        rotation.make_room(moto_session, ACCOUNT_ID, "carol", old)
        new = rotation.create_key(moto_session, ACCOUNT_ID, "carol", reader_arn=reader, rotation_id=1)
        rotation.key_last_used(moto_session, ACCOUNT_ID, new.access_key_id)
        rotation.picked_up(moto_session, ACCOUNT_ID, new.secret_arn)
        rotation.schedule_secret_deletion(moto_session, ACCOUNT_ID, new.secret_arn)
    granted = {a for s in rotation_policy()["Statement"] for a in s["Action"]}
    assert set(calls) - granted == set()
    assert granted - set(calls) == {"iam:DeleteAccessKey", "secretsmanager:TagResource"}  # rollback; tags


def test_a_key_whose_secret_could_not_be_stored_is_deleted_again(moto_session):  # noqa: F811
    from checks import rotation
    from tests.aws import inject_error

    iam = moto_session.client("iam")
    iam.create_user(UserName="carol")
    inject_error(moto_session, "PutResourcePolicy", "AccessDeniedException", service="secretsmanager")
    with pytest.raises(rotation.RotationError, match="AccessDenied"):
        rotation.create_key(moto_session, ACCOUNT_ID, "carol", reader_arn="arn:aws:iam::1:user/carol", rotation_id=1)
    assert iam.list_access_keys(UserName="carol")["AccessKeyMetadata"] == []


def test_a_secret_nobody_fetches_is_deleted_after_the_waiting_days(world):
    from datetime import timedelta

    from bot.services.common import utcnow

    later = [utcnow()]
    service = RotationService(world["settings"], engine=world["engine"], clock=lambda: later[0])
    row, _ = service.start(world["finding"].id, actor="UALICE")
    assert service.tick() == {}
    later[0] += timedelta(days=world["settings"].rotation_secret_days)
    assert service.tick() == {"expired": 1}
    secrets = boto3.client("secretsmanager", endpoint_url=world["url"])
    assert secrets.describe_secret(SecretId=row.secret_arn).get("DeletedDate") is not None
    assert "rotation.secret_deleted" in actions(world["engine"])
    assert service.tick() == {}  # over
