"""Usage collection against moto with the Access Advisor emulator (tests/access_advisor.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from checks import usage
from tests.access_advisor import access_advisor  # noqa: F401
from tests.aws import (  # noqa: F401
    ACCOUNT_ID,
    allow,
    aws_env,
    document,
    inject_error,
    instant_retries,
    moto_session,
)

SIX = ["s3:*", "dynamodb:*", "lambda:InvokeFunction", "sqs:*", "sns:Publish", "kms:Decrypt"]


def make_role(iam, name="app", actions=SIX):
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    arn = iam.create_policy(PolicyName=f"{name}-policy", PolicyDocument=document(allow(actions)))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=name, PolicyArn=arn)
    return f"arn:aws:iam::{ACCOUNT_ID}:role/{name}", arn


def test_jobs_for_every_principal_then_polls_one_page_each(moto_session, access_advisor):  # noqa: F811
    iam = moto_session.client("iam")
    role, _ = make_role(iam)
    iam.create_user(UserName="alice")
    iam.put_user_policy(UserName="alice", PolicyName="p", PolicyDocument=document(allow("ec2:Describe*")))
    iam.create_user(UserName="nobody")  # holds no policy: no job
    iam.create_group(GroupName="devs")
    iam.put_group_policy(GroupName="devs", PolicyName="g", PolicyDocument=document(allow("logs:*")))
    iam.add_user_to_group(GroupName="devs", UserName="nobody")
    access_advisor.use(role, "lambda:InvokeFunction", 2)
    access_advisor.use(role, "dynamodb:GetItem", 10)
    pauses = []
    run = usage.collect_usage(moto_session, sleep=pauses.append)
    alice = f"arn:aws:iam::{ACCOUNT_ID}:user/alice"
    nobody = f"arn:aws:iam::{ACCOUNT_ID}:user/nobody"
    assert set(run.usage) == {role, alice, nobody}  # nobody holds the group's policy
    assert run.groups == {f"arn:aws:iam::{ACCOUNT_ID}:group/devs": [nobody]}
    # identity + 1 authorization-details page + 3 jobs + 3 polls in progress + 3 completed.
    assert run.by_operation == {"sts:GetCallerIdentity": 1, "iam:GetAccountAuthorizationDetails": 1,
                                "iam:GenerateServiceLastAccessedDetails": 3,
                                "iam:GetServiceLastAccessedDetails": 6}
    assert run.api_calls == 11 and run.poll_rounds == 2 and pauses == [1.0]
    got = run.usage[role].by_namespace
    assert set(got) == {"s3", "dynamodb", "lambda", "sqs", "sns", "kms"}
    assert got["lambda"].last_authenticated is not None and got["s3"].last_authenticated is None
    assert got["lambda"].actions is not None  # tracked at action level
    assert {a.name for a in got["lambda"].actions} == {"lambda:InvokeFunction"}
    assert got["dynamodb"].actions is None
    assert set(run.usage[alice].by_namespace) == {"ec2"}
    # Stored form round-trips.
    back = usage.from_json(role, run.usage[role].collected_at, run.usage[role].to_json())
    assert back.services == run.usage[role].services


def test_throttling_is_retried_later_not_a_failure(moto_session, access_advisor, instant_retries):  # noqa: F811
    iam = moto_session.client("iam")
    role, _ = make_role(iam)
    inject_error(moto_session, "GenerateServiceLastAccessedDetails", "Throttling", status=400, times=10)
    run = usage.collect_usage(moto_session, max_attempts=2, sleep=lambda s: None)
    assert set(run.usage) == {role} and not run.failed
    assert run.throttled >= 1


def test_access_denied_is_a_failed_principal_never_unused(moto_session, access_advisor, instant_retries):  # noqa: F811
    iam = moto_session.client("iam")
    make_role(iam)
    inject_error(moto_session, "GetServiceLastAccessedDetails", "AccessDenied")
    run = usage.collect_usage(moto_session, sleep=lambda s: None)
    assert not run.usage
    assert list(run.failed.values()) == ["AccessDenied on iam:GetServiceLastAccessedDetails"]


def test_timeout_names_the_principals_left(moto_session, access_advisor):  # noqa: F811
    iam = moto_session.client("iam")
    role, _ = make_role(iam)
    access_advisor.polls_before_done = 1000
    ticks = iter(range(0, 10_000, 100))
    run = usage.collect_usage(moto_session, sleep=lambda s: None, clock=lambda: next(ticks), timeout=250)
    assert run.failed == {role: "no answer from AWS within 250 s"}


def test_group_usage_is_its_members_latest():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    a = usage.PrincipalUsage("u1", now, (usage.ServiceUsage("s3", last_authenticated=now - timedelta(days=9)),))
    b = usage.PrincipalUsage("u2", now, (usage.ServiceUsage("s3", last_authenticated=now - timedelta(days=1)),
                                         usage.ServiceUsage("sqs")))
    g = usage.group_usage("g", ["u1", "u2", "u3"], {"u1": a, "u2": b}, now)
    assert g.by_namespace["s3"].last_authenticated == now - timedelta(days=1)
    assert g.by_namespace["sqs"].last_authenticated is None
    assert usage.group_usage("g", ["u3"], {}, now) is None


def test_cli_refuses_a_malformed_account_in_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from bot.cli.main import app

    monkeypatch.setenv("STEWARD_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    result = CliRunner().invoke(app, ["usage", "collect", "--account", "12"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --account takes a 12-digit AWS account id, not '12'"
    assert not (tmp_path / "x.db").exists()  # nothing created
