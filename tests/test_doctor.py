"""`steward doctor` through the CLI, against the enforcing Slack fake and moto.

All green with the generated manifest; each broken piece (a missing scope, the bot not in
the security channel, a wrong ExternalId, an un-migrated database, a deactivated approver,
no worker) turns exactly its own line red with the fix named, and the exit code is 1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto.iam.models import iam_backends
from typer.testing import CliRunner

from bot.cli.main import app
from bot.run.leader import leader_lock
from bot.services import doctor
from bot.slack.manifest import needed_scopes
from checks import permissions
from sandbox.slack_fake import SlackFake
from tests import aws
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


def deploy_member_role(hub: boto3.Session, external_id: str = EXTERNAL_ID) -> None:
    """The member stack's role in another account: trusts the hub account with the ExternalId,
    carries the generated scan policy."""
    creds = hub.client("sts").assume_role(RoleArn=f"arn:aws:iam::{MEMBER}:role/bootstrap",
                                          RoleSessionName="setup")["Credentials"]
    iam = boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"], region_name=aws.REGION).client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": external_id}}}]}
    iam.create_role(RoleName=permissions.DEFAULT_ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName=permissions.DEFAULT_ROLE_NAME, PolicyName="iam-steward-scan",
                        PolicyDocument=json.dumps(permissions.scan_policy()))
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
                     "scan reads allowed: 1 users", "remediation: scan only", "reachable and migrated",
                     "a worker leads the scheduler", "All "):
        assert expected in result.output, expected


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
