"""delete-role on moto: everything attached comes off first, the before-state recreates it."""

from __future__ import annotations

import json

import pytest

from checks.remediate.base import PreconditionFailed, RemediationError, Target
from checks.remediate.roles import DeleteRole
from tests import aws
from tests.aws import ACCOUNT_ID, TRUST_EC2, allow, document
from tests.checks import test_remediate_base as base
from tests.checks.test_remediate_base import assert_declared, recording

aws_env = aws.aws_env
moto_session = aws.moto_session
iam = base.iam

DELETE = DeleteRole()
INLINE = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}


@pytest.fixture
def role(iam):
    iam.create_role(RoleName="old-etl", Path="/batch/", AssumeRolePolicyDocument=json.dumps(TRUST_EC2),
                    Description="nightly ETL (retired)", MaxSessionDuration=7200,
                    Tags=[{"Key": "owner", "Value": "priya@example.com"}])
    iam.put_role_policy(RoleName="old-etl", PolicyName="read", PolicyDocument=json.dumps(INLINE))
    arn = iam.create_policy(PolicyName="etl-sqs", PolicyDocument=document(allow("sqs:*")))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="old-etl", PolicyArn=arn)
    iam.create_instance_profile(InstanceProfileName="etl-profile")
    iam.add_role_to_instance_profile(InstanceProfileName="etl-profile", RoleName="old-etl")
    return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:role/batch/old-etl", "policy": arn}


def test_delete_role_round_trip(moto_session, iam, role):
    target = Target.from_finding("unused-role", role["arn"], {})
    with recording(moto_session) as calls:
        plan = DELETE.plan(moto_session, target)
        applied = DELETE.apply(moto_session, target)
    assert_declared(calls, DELETE.permissions)
    assert plan.possible and "old-etl" in plan.summary and "1 instance profile" in plan.summary
    assert "1 inline policy" in plan.summary and "1 managed policy" in plan.summary
    assert "old-etl" not in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    before = applied.before
    assert before["inline_policies"]["read"]["Statement"][0]["Action"] == "s3:GetObject"
    assert before["managed_policies"] == [role["policy"]] and before["instance_profiles"] == ["etl-profile"]
    assert DELETE.apply(moto_session, target).already_done

    with recording(moto_session) as calls:
        DELETE.undo(moto_session, target, before)
    assert_declared(calls, DELETE.undo_permissions)
    again = iam.get_role(RoleName="old-etl")["Role"]
    assert again["Path"] == "/batch/" and again["MaxSessionDuration"] == 7200
    assert again["Description"] == "nightly ETL (retired)"
    assert iam.list_role_policies(RoleName="old-etl")["PolicyNames"] == ["read"]
    assert [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName="old-etl")["AttachedPolicies"]] == [
        role["policy"]]
    profile = iam.get_instance_profile(InstanceProfileName="etl-profile")["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == ["old-etl"]
    assert {"Key": "owner", "Value": "priya@example.com"} in iam.list_role_tags(RoleName="old-etl")["Tags"]
    # A second undo finds a role of that name and refuses to overwrite it.
    with pytest.raises(RemediationError, match="exists again"):
        DELETE.undo(moto_session, target, before)


def test_delete_role_gives_access_back_only_through_the_restore_role():
    assert DELETE.undo_needs_restore and not DELETE.owner_may_apply_alone


def test_a_service_linked_role_is_not_deleted(moto_session, iam):
    iam.create_role(RoleName="AWSServiceRoleForX", Path="/aws-service-role/x.amazonaws.com/",
                    AssumeRolePolicyDocument=json.dumps(TRUST_EC2))
    target = Target.from_finding(
        "unused-role", f"arn:aws:iam::{ACCOUNT_ID}:role/aws-service-role/x.amazonaws.com/AWSServiceRoleForX", {})
    plan = DELETE.plan(moto_session, target)
    assert not plan.possible and "service-linked" in (plan.reason or "")
    with pytest.raises(PreconditionFailed):
        DELETE.apply(moto_session, target)


def test_restore_by_hand_names_every_step(moto_session, role):
    target = Target.from_finding("unused-role", role["arn"], {})
    applied = DELETE.apply(moto_session, target)
    text = DELETE.restore_by_hand(target, applied.before)
    assert "aws iam create-role --role-name old-etl --path /batch/" in text
    assert "put-role-policy" in text and "attach-role-policy" in text and "add-role-to-instance-profile" in text
