"""`steward doctor` through the CLI, against the enforcing Slack fake and moto.

All green with the generated manifest; each broken piece (a missing scope, the bot not in
the security channel, a wrong ExternalId, an un-migrated database, a deactivated approver,
no worker, a scan role without Access Advisor, an opt-in role not deployed, an activity
queue without a dead-letter queue or with a short visibility timeout) turns exactly its own
line red with the fix named, and the exit code is 1. Doctor writes nothing: no AWS call
that changes anything (no Access Advisor job, no message received), no database row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto.iam.models import iam_backends
from typer.testing import CliRunner

from bot.cli.main import app
from bot.db.engine import make_engine
from bot.run.leader import leader_lock
from bot.services import doctor
from bot.slack.manifest import needed_scopes
from checks import permissions
from sandbox.slack_fake import SlackFake
from tests import access_advisor, aws
from tests.aws import ACCOUNT_ID

aws_env = aws.aws_env
moto_session = aws.moto_session

MEMBER = "111122223333"
ROLE_ARN = f"arn:aws:iam::{MEMBER}:role/{permissions.DEFAULT_ROLE_NAME}"
EXTERNAL_ID = "a-long-shared-secret-0123456789"


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def enforce_trust_policies(session: boto3.Session) -> None:
    """What moto leaves out: STS refuses AssumeRole unless the role's trust policy's
    `sts:ExternalId` condition holds (AccessDenied, as AWS answers)."""

    def check(request: Any, **_: Any) -> AWSResponse | None:
        body = request.body or b""
        form = {k: v[0] for k, v in parse_qs(body.decode() if isinstance(body, bytes) else body).items()}
        account, name = re.match(r"arn:aws:iam::(\d{12}):role/(.+)$", form["RoleArn"]).groups()
        roles = iam_backends[account]["global"].roles.values()
        role = next((r for r in roles if r.name == name), None)
        wanted = None
        if role is not None:
            for stmt in json.loads(role.assume_role_policy_document)["Statement"]:
                wanted = (stmt.get("Condition") or {}).get("StringEquals", {}).get("sts:ExternalId", wanted)
        if role is not None and (wanted is None or wanted == form.get("ExternalId")):
            return None
        body = (b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User is not "
                b"authorized to perform: sts:AssumeRole</Message></Error></ErrorResponse>")
        return AWSResponse(request.url, 403, {"Content-Type": "text/xml"}, _Body(body))

    session.events.register_first("before-send.sts.AssumeRole", check, unique_id="trust-policies")


def member_iam(hub: boto3.Session):
    """An IAM client in the member account (moto's STS lets the setup in; a session of its
    own, so the trust policies `enforce_trust_policies` puts on the hub's do not apply)."""
    del hub
    creds = boto3.Session(region_name=aws.REGION).client("sts").assume_role(RoleArn=f"arn:aws:iam::{MEMBER}:role/bootstrap",
                                          RoleSessionName="setup")["Credentials"]
    return boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"], region_name=aws.REGION).client("iam")


def deploy_member_role(hub: boto3.Session, external_id: str = EXTERNAL_ID, *,
                       role_name: str = permissions.DEFAULT_ROLE_NAME, policy: dict | None = None) -> None:
    """The member stack's role in another account: trusts the hub account with the ExternalId,
    carries the generated scan policy (or `policy`, for the opt-in roles)."""
    iam = member_iam(hub)
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": external_id}}}]}
    iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName=role_name, PolicyName="iam-steward-scan" if policy is None else f"{role_name}-policy",
                        PolicyDocument=json.dumps(policy or permissions.scan_policy()))
    if role_name == permissions.DEFAULT_ROLE_NAME:
        iam.create_user(UserName="alice@example.com")


@dataclass
class Deployment:
    fake: SlackFake
    env: dict[str, str]
    channel: str
    approver: str
    url: str

    def doctor(self, **env: str):
        result = CliRunner().invoke(app, ["doctor"], env={**self.env, **env})
        lines = result.output.splitlines()
        red = [line for line in lines if "✗" in line]
        return result, red


@pytest.fixture
def deployment(database_url, moto_session, monkeypatch) -> Iterator[Deployment]:
    access_advisor.install(monkeypatch)  # IAM's last-accessed calls, with AccessDenied as AWS answers it
    deploy_member_role(moto_session)
    enforce_trust_policies(moto_session)
    monkeypatch.setattr(doctor, "aws_session", lambda: moto_session)
    worker = leader_lock(database_url)  # a running `steward worker` holds this lock
    assert worker.try_acquire()
    with SlackFake() as fake:
        approver = fake.add_user(name="priya", email="priya@example.com")
        channel = fake.add_channel("security", is_private=True)
        env = {
            "SLACK_BOT_TOKEN": fake.token, "SLACK_API_URL": fake.base_url, "SLACK_SIGNING_SECRET": "s3cret",
            "STEWARD_SECURITY_CHANNEL": channel, "STEWARD_SECURITY_APPROVERS": approver,
            "STEWARD_DATABASE_URL": database_url, "STEWARD_ACCOUNT_ROLES": ROLE_ARN,
            "STEWARD_EXTERNAL_ID": EXTERNAL_ID,
        }
        yield Deployment(fake, env, channel, approver, database_url)
    worker.release()


def test_all_green_with_the_generated_manifest(deployment: Deployment) -> None:
    result, red = deployment.doctor()
    assert result.exit_code == 0, result.output
    assert red == []
    for expected in ("bot token valid", "granted scopes cover", "#security, bot is a member",
                     "1 active", "SLACK_SIGNING_SECRET is set", f"{MEMBER} (role/IAMSteward): role assumable",
                     "scan reads allowed: 1 users", "usage data allowed (Access Advisor): last-accessed jobs may",
                     "remediation: scan only", "reachable and migrated", "a worker leads the scheduler", "All "):
        assert expected in result.output, expected
    # The opt-in pieces, off: one informational line each, saying what is refused and how to turn it on.
    for section, line in (("Restore role", "STEWARD_RESTORE_ROLE_NAME is not set: undos that give access back"),
                          ("Rotation role", "STEWARD_ROTATION_ROLE_NAME is not set: \"Rotate it for me\" is not offered"),
                          ("Activity intake", "activity alerts: off: STEWARD_ACTIVITY_QUEUE_URL is not set")):
        assert section in result.output and line in result.output, line
    assert "EnableRestore=true" in result.output and "EnableRotation=true" in result.output
    assert "EnableActivity=true" in result.output and "ActivityQueueUrl" in result.output
    sections = [line for line in result.output.splitlines() if line and not line.startswith(" ")]
    assert sections[:7] == ["Slack", "AWS", "Restore role", "Rotation role", "Activity intake", "Database", "Scheduler"]


def assert_only_red(result, red: list[str], line: str, fix: str) -> None:
    assert result.exit_code == 1, result.output
    assert len(red) == 1 and line in red[0], result.output
    after = result.output.split(red[0], 1)[1].splitlines()[1]
    assert after.strip().startswith("fix:") and fix in after, result.output


def test_a_missing_scope_turns_only_the_scopes_line_red(deployment: Deployment) -> None:
    deployment.fake.set_scopes(sorted(set(needed_scopes()) - {"im:history"}))
    result, red = deployment.doctor()
    assert_only_red(result, red, "missing im:history", "manifest.yml")


def test_the_bot_outside_the_security_channel(deployment: Deployment) -> None:
    public = deployment.fake.add_channel("sec-public", bot_member=False)
    result, red = deployment.doctor(STEWARD_SECURITY_CHANNEL=public)
    assert_only_red(result, red, "not a member of #sec-public", "/invite @IAM Steward")


def test_a_wrong_external_id(deployment: Deployment) -> None:
    result, red = deployment.doctor(STEWARD_EXTERNAL_ID="not-the-stacks-secret")
    assert_only_red(result, red, "role assumable", "ExternalId must equal STEWARD_EXTERNAL_ID")
    assert "AccessDenied" in red[0]


def test_an_unmigrated_database(deployment: Deployment, tmp_path) -> None:
    from sqlalchemy import create_engine

    url = f"sqlite:///{tmp_path / 'new.db'}"
    create_engine(url).connect().close()  # the file exists, with no schema
    result, red = deployment.doctor(STEWARD_DATABASE_URL=url)
    assert_only_red(result, red, "schema at none, this version needs", "run `steward db upgrade`")
    assert "Scheduler" not in result.output  # no lock to look at without a schema
    result, red = deployment.doctor(STEWARD_DATABASE_URL=f"sqlite:///{tmp_path / 'missing.db'}")
    assert_only_red(result, red, "no database at", "run `steward db upgrade`")
    assert not (tmp_path / "missing.db").exists()  # doctor creates nothing


def test_a_deactivated_approver_and_a_revoked_token(deployment: Deployment) -> None:
    deployment.fake.set_user_deleted(deployment.approver)
    result, red = deployment.doctor()
    assert_only_red(result, red, "is deactivated", "STEWARD_SECURITY_APPROVERS")
    deployment.fake.revoke_token()
    result, red = deployment.doctor()
    assert_only_red(result, red, "account_inactive", "reinstall the app")


def test_no_worker_running(deployment: Deployment, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    from bot.db.migrate import upgrade

    upgrade(url)
    result, red = deployment.doctor(STEWARD_DATABASE_URL=url)
    assert_only_red(result, red, "no `steward worker` holds the scheduler lock", "start `steward worker`")
    assert leader_lock(url).try_acquire()  # doctor gave the lock back


def test_socket_mode_and_remediation_lines(deployment: Deployment, moto_session) -> None:
    fake = deployment.fake
    result, red = deployment.doctor(SLACK_SIGNING_SECRET="", SLACK_APP_TOKEN=fake.app_token)
    assert result.exit_code == 0 and "Socket Mode: app-level token accepted" in result.output
    result, red = deployment.doctor(SLACK_SIGNING_SECRET="", SLACK_APP_TOKEN="xapp-wrong")
    assert_only_red(result, red, "SLACK_APP_TOKEN refused: invalid_auth", "connections:write")
    result, red = deployment.doctor(SLACK_SIGNING_SECRET="")
    assert_only_red(result, red, "neither SLACK_SIGNING_SECRET nor SLACK_APP_TOKEN", "set SLACK_SIGNING_SECRET")


# ---------------------------------------------------------------------------------------
# The lines for this wave's features: usage data, the opt-in roles, the activity queue


def test_a_scan_role_without_access_advisor(deployment: Deployment, moto_session) -> None:
    # A member stack from before usage collection: its scan policy lacks the two calls.
    old = permissions.scan_policy()
    for statement in old["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if "ServiceLastAccessed" not in a]
    member_iam(moto_session).put_role_policy(RoleName=permissions.DEFAULT_ROLE_NAME, PolicyName="iam-steward-scan",
                                             PolicyDocument=json.dumps(old))
    result, red = deployment.doctor()
    assert_only_red(result, red, "usage data allowed (Access Advisor)", "member-account-role.yaml")
    assert "iam:GenerateServiceLastAccessedDetails and iam:GetServiceLastAccessedDetails refused" in red[0]
    assert access_advisor.ADVISOR.generated == 0  # refused or not, no job was started


def test_restore_and_rotation_roles(deployment: Deployment, moto_session) -> None:
    restore, rotate = permissions.DEFAULT_RESTORE_ROLE_NAME, permissions.DEFAULT_ROTATION_ROLE_NAME
    deploy_member_role(moto_session, role_name=restore, policy=permissions.restore_policy())
    result, red = deployment.doctor(STEWARD_RESTORE_ROLE_NAME=restore)
    assert result.exit_code == 0, result.output
    assert f"{MEMBER}: role/{restore} assumable: AssumeRole succeeded" in result.output
    assert "STEWARD_RESTORE_ROLE_NAME is not set" not in result.output
    # Configured, not deployed in the account: red, naming the member stack's switch.
    result, red = deployment.doctor(STEWARD_RESTORE_ROLE_NAME=restore, STEWARD_ROTATION_ROLE_NAME=rotate)
    assert_only_red(result, red, f"role/{rotate} assumable", "EnableRotation=true and the role name IAMStewardRotate")
    assert "AccessDenied" in red[0]
    # Deployed, but the ExternalId differs: the same line, the same fix.
    deploy_member_role(moto_session, role_name=rotate, policy=permissions.rotation_policy(), external_id="other")
    result, red = deployment.doctor(STEWARD_RESTORE_ROLE_NAME=restore, STEWARD_ROTATION_ROLE_NAME=rotate)
    assert_only_red(result, red, f"role/{rotate} assumable", "ExternalId equal to STEWARD_EXTERNAL_ID")


def activity_queue(session: boto3.Session, *, redrive: bool = True, visibility: int = 120,
                   receives: int = 5) -> str:
    """The hub stack's queue (deploy/cloudformation/hub-role.yaml), or a variation of it."""
    sqs = session.client("sqs")
    dlq = sqs.create_queue(QueueName="activity-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {"VisibilityTimeout": str(visibility), "ReceiveMessageWaitTimeSeconds": "20"}
    if redrive:
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": receives})
    return sqs.create_queue(QueueName="activity", Attributes=attributes)["QueueUrl"]


def test_the_activity_queue(deployment: Deployment, moto_session) -> None:
    url = activity_queue(moto_session)
    result, red = deployment.doctor(STEWARD_ACTIVITY_QUEUE_URL=url)
    assert result.exit_code == 0, result.output
    for line in ("queue reachable: activity, 0 messages waiting",
                 "dead-letter queue (redrive policy): to activity-dlq after 5 receives",
                 "visibility timeout and long polling: visibility timeout 120 s; long polling"):
        assert line in result.output, line
    assert "activity alerts: off" not in result.output
    result, red = deployment.doctor(STEWARD_ACTIVITY_QUEUE_URL=url.replace("/activity", "/no-such-queue"))
    assert_only_red(result, red, "queue reachable: no queue at", "ActivityQueueUrl output")


def test_a_malformed_queue_url_is_the_line_steward_events_stops_with(deployment: Deployment) -> None:
    problem = "STEWARD_ACTIVITY_QUEUE_URL is not an SQS queue URL: 'not-a-url' (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"
    result, red = deployment.doctor(STEWARD_ACTIVITY_QUEUE_URL="not-a-url")
    assert_only_red(result, red, f"queue reachable: {problem}", "ActivityQueueUrl output")
    assert "NoRegionError" not in result.output and "cannot reach" not in result.output
    events = CliRunner().invoke(app, ["events", "--once"], env={**deployment.env, "STEWARD_ACTIVITY_QUEUE_URL": "not-a-url"})
    assert events.exit_code == 2 and events.stderr.strip() == f"error: {problem}", events.stderr


def test_an_activity_queue_without_a_dead_letter_queue(deployment: Deployment, moto_session) -> None:
    url = activity_queue(moto_session, redrive=False)
    result, red = deployment.doctor(STEWARD_ACTIVITY_QUEUE_URL=url)
    assert_only_red(result, red, "dead-letter queue (redrive policy): none", "redrive policy to a dead-letter queue")


def test_an_activity_queue_with_a_short_visibility_timeout(deployment: Deployment, moto_session) -> None:
    url = activity_queue(moto_session, visibility=30)
    result, red = deployment.doctor(STEWARD_ACTIVITY_QUEUE_URL=url)
    assert_only_red(result, red, "visibility timeout 30 s", "VisibilityTimeout to 120 s")


def test_an_activity_queue_whose_settings_steward_may_not_read(deployment: Deployment, moto_session) -> None:
    # A hub stack from before GetQueueAttributes was granted on the queue.
    url = activity_queue(moto_session)
    aws.inject_error(moto_session, "GetQueueAttributes", "AccessDenied", service="sqs")
    result, red = deployment.doctor(STEWARD_ACTIVITY_QUEUE_URL=url)
    assert result.exit_code == 0 and red == [], result.output
    assert "queue reachable: not checked: Steward's role may not call sqs:GetQueueAttributes" in result.output


READS = ("Get", "List", "Describe", "AssumeRole")
#: Reads by IAM's access levels: the scan's credential report (the dry collection doctor has
#: always made), and Access Advisor's, asked for a role that does not exist (no job: below).
GENERATE_READS = {"GenerateCredentialReport", "GenerateServiceLastAccessedDetails"}


def test_doctor_writes_nothing(deployment: Deployment, moto_session, monkeypatch) -> None:
    """Everything configured: every AWS call is a read (GenerateServiceLastAccessedDetails
    only for a role that does not exist: no job), the queue's messages are not received,
    no database row changes, no file appears."""
    from botocore.client import BaseClient
    from sqlalchemy import inspect, text

    restore, rotate = permissions.DEFAULT_RESTORE_ROLE_NAME, permissions.DEFAULT_ROTATION_ROLE_NAME
    deploy_member_role(moto_session, role_name=restore, policy=permissions.restore_policy())
    deploy_member_role(moto_session, role_name=rotate, policy=permissions.rotation_policy())
    url = activity_queue(moto_session)
    sqs = moto_session.client("sqs")
    sqs.send_message(QueueUrl=url, MessageBody="{}")

    def rows() -> dict[str, list]:
        engine = make_engine(deployment.url)
        try:
            with engine.connect() as connection:
                return {t: sorted(map(tuple, connection.execute(text(f'SELECT * FROM "{t}"'))), key=repr)
                        for t in inspect(connection).get_table_names()}
        finally:
            engine.dispose()

    calls: list[str] = []
    make_api_call = BaseClient._make_api_call

    def record(self, operation_name, api_params):
        calls.append(operation_name)
        return make_api_call(self, operation_name, api_params)

    before, files = rows(), sorted(p.name for p in Path.cwd().iterdir())
    monkeypatch.setattr(BaseClient, "_make_api_call", record)
    result, red = deployment.doctor(STEWARD_RESTORE_ROLE_NAME=restore, STEWARD_ROTATION_ROLE_NAME=rotate,
                                    STEWARD_ACTIVITY_QUEUE_URL=url)
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    assert result.exit_code == 0 and red == [], result.output
    assert "GetServiceLastAccessedDetails" in calls and "GetQueueAttributes" in calls and "AssumeRole" in calls
    writes = sorted({c for c in calls if not c.startswith(READS)} - GENERATE_READS)
    assert writes == [], writes
    assert access_advisor.ADVISOR.generated == 0  # no last-accessed job started
    assert rows() == before
    assert sorted(p.name for p in Path.cwd().iterdir()) == files
    message = sqs.receive_message(QueueUrl=url, MessageSystemAttributeNames=["ApproximateReceiveCount"])["Messages"]
    assert message[0]["Attributes"]["ApproximateReceiveCount"] == "1"  # doctor never received it
