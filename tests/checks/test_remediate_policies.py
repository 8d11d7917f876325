"""detach-managed-policy and delete-inline-policy on a user, a group and a role (moto)."""

from __future__ import annotations

import json

import pytest

from checks.remediate.base import PreconditionFailed, RemediationError, Target
from checks.remediate.policies import DeleteInlinePolicy, DetachManagedPolicy
from tests import aws
from tests.aws import ACCOUNT_ID, TRUST_EC2, allow, document
from tests.checks import test_remediate_base as base
from tests.checks.test_remediate_base import (
    DENY_ALL_ARN,
    assert_declared,
    recording,
    restore_by_hand,
)

# Fixtures used here.
aws_env = aws.aws_env
moto_session = aws.moto_session
iam = base.iam

DETACH = DetachManagedPolicy()
DELETE_INLINE = DeleteInlinePolicy()
KINDS = ("user", "group", "role")
PARAM = {"user": "UserName", "group": "GroupName", "role": "RoleName"}
INLINE_DOC = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["ec2:*"], "Resource": "*"}],
}


@pytest.fixture
def principals(iam):
    """alice (path /ops/), group admins, role deploy (path /svc/)."""
    iam.create_user(UserName="alice", Path="/ops/")
    iam.create_group(GroupName="admins")
    iam.create_role(RoleName="deploy", Path="/svc/", AssumeRolePolicyDocument=json.dumps(TRUST_EC2))
    return {
        "user": f"arn:aws:iam::{ACCOUNT_ID}:user/ops/alice",
        "group": f"arn:aws:iam::{ACCOUNT_ID}:group/admins",
        "role": f"arn:aws:iam::{ACCOUNT_ID}:role/svc/deploy",
    }


NAMES = {"user": "alice", "group": "admins", "role": "deploy"}


@pytest.fixture
def policy_arn(iam):
    return iam.create_policy(PolicyName="ec2-all", PolicyDocument=document(allow("ec2:*")))[
        "Policy"]["Arn"]


def attached_arns(iam, kind):
    method = getattr(iam, f"list_attached_{kind}_policies")
    return [p["PolicyArn"] for p in method(**{PARAM[kind]: NAMES[kind]})["AttachedPolicies"]]


@pytest.mark.parametrize("kind", KINDS)
def test_detach_round_trip(moto_session, iam, principals, policy_arn, kind):
    getattr(iam, f"attach_{kind}_policy")(PolicyArn=policy_arn, **{PARAM[kind]: NAMES[kind]})
    target = Target.from_finding("service-wildcard-policy", principals[kind],
                                 {"policy_arn": policy_arn, "principal_type": kind})
    with recording(moto_session) as calls:
        plan = DETACH.plan(moto_session, target)
        applied = DETACH.apply(moto_session, target)
    assert_declared(calls, DETACH.permissions)
    assert plan.possible and "ec2-all" in plan.summary and NAMES[kind] in plan.summary
    assert attached_arns(iam, kind) == []
    # The document in force is snapshotted, though the policy itself stays.
    assert applied.before["document"]["Statement"][0]["Action"] == "ec2:*"
    assert applied.before["default_version_id"] == "v1"
    assert applied.after["attached"] is False

    assert DETACH.apply(moto_session, target).already_done
    with recording(moto_session) as calls:
        undone = DETACH.undo(moto_session, target, applied.before)
    assert_declared(calls, DETACH.undo_permissions)
    assert attached_arns(iam, kind) == [policy_arn]
    assert undone.after == applied.before
    assert DETACH.undo(moto_session, target, applied.before).already_done


@pytest.mark.parametrize("kind", KINDS)
def test_detach_can_be_restored_by_hand(moto_session, iam, principals, policy_arn, kind):
    getattr(iam, f"attach_{kind}_policy")(PolicyArn=policy_arn, **{PARAM[kind]: NAMES[kind]})
    target = Target.from_finding("admin-policy", principals[kind], {"policy_arn": policy_arn})
    applied = DETACH.apply(moto_session, target)
    text = restore_by_hand(iam, DETACH, target, applied.before)
    assert text.startswith(f"Attach the managed policy ec2-all to IAM {kind} {NAMES[kind]}")
    assert attached_arns(iam, kind) == [policy_arn]


def test_detach_refuses_to_lift_a_quarantine(moto_session, iam, principals):
    iam.attach_user_policy(UserName="alice", PolicyArn=DENY_ALL_ARN)
    target = Target.from_finding("user-direct-policy", principals["user"],
                                 {"policy_arn": DENY_ALL_ARN})
    plan = DETACH.plan(moto_session, target)
    assert not plan.possible and "quarantine" in (plan.reason or "")
    with pytest.raises(PreconditionFailed):
        DETACH.apply(moto_session, target)
    assert attached_arns(iam, "user") == [DENY_ALL_ARN]


def test_detach_a_policy_named_only_as_inline_is_not_possible(moto_session, iam, principals):
    target = Target.from_finding("admin-policy", principals["role"], {"policy_name": "inline"})
    plan = DETACH.plan(moto_session, target)
    assert not plan.possible and "delete-inline-policy" in (plan.reason or "")


def test_detach_undo_when_the_policy_was_deleted_since(moto_session, iam, principals, policy_arn):
    iam.attach_user_policy(UserName="alice", PolicyArn=policy_arn)
    target = Target.from_finding("user-direct-policy", principals["user"],
                                 {"policy_arn": policy_arn})
    applied = DETACH.apply(moto_session, target)
    iam.delete_policy(PolicyArn=policy_arn)
    with pytest.raises(RemediationError, match="no longer exists"):
        DETACH.undo(moto_session, target, applied.before)


def test_detach_from_a_principal_that_is_gone(moto_session, iam, principals, policy_arn):
    target = Target.from_finding("admin-policy", f"arn:aws:iam::{ACCOUNT_ID}:role/gone",
                                 {"policy_arn": policy_arn})
    plan = DETACH.plan(moto_session, target)
    assert not plan.possible and "IAM role gone no longer exists" in (plan.reason or "")


def inline_names(iam, kind):
    method = getattr(iam, f"list_{kind}_policies")
    return method(**{PARAM[kind]: NAMES[kind]})["PolicyNames"]


@pytest.mark.parametrize("kind", KINDS)
def test_delete_inline_round_trip(moto_session, iam, principals, kind):
    getattr(iam, f"put_{kind}_policy")(PolicyName="ec2-inline", PolicyDocument=json.dumps(INLINE_DOC),
                                       **{PARAM[kind]: NAMES[kind]})
    target = Target.from_finding("service-wildcard-policy", principals[kind],
                                 {"policy_name": "ec2-inline"})
    with recording(moto_session) as calls:
        plan = DELETE_INLINE.plan(moto_session, target)
        applied = DELETE_INLINE.apply(moto_session, target)
    assert_declared(calls, DELETE_INLINE.permissions)
    assert plan.possible and "ec2-inline" in plan.summary and plan.irreversible_warning is None
    assert inline_names(iam, kind) == []
    assert applied.before["document"] == INLINE_DOC

    assert DELETE_INLINE.apply(moto_session, target).already_done
    with recording(moto_session) as calls:
        undone = DELETE_INLINE.undo(moto_session, target, applied.before)
    assert_declared(calls, DELETE_INLINE.undo_permissions)
    assert inline_names(iam, kind) == ["ec2-inline"]
    assert undone.after == applied.before
    assert DELETE_INLINE.undo(moto_session, target, applied.before).already_done


@pytest.mark.parametrize("kind", KINDS)
def test_delete_inline_can_be_restored_by_hand(moto_session, iam, principals, kind):
    quoted = {"Version": "2012-10-17", "Statement": [{  # survives the shell quoting
        "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
        "Condition": {"StringEquals": {"aws:username": "o'brien \"ops\" $HOME"}}}]}
    getattr(iam, f"put_{kind}_policy")(PolicyName="ec2-inline", PolicyDocument=json.dumps(quoted),
                                       **{PARAM[kind]: NAMES[kind]})
    target = Target.from_finding("admin-policy", principals[kind], {"policy_name": "ec2-inline"})
    applied = DELETE_INLINE.apply(moto_session, target)
    restore_by_hand(iam, DELETE_INLINE, target, applied.before)
    assert DELETE_INLINE.read(DELETE_INLINE.iam(moto_session, target), target) == applied.before


def test_delete_inline_undo_does_not_overwrite_a_newer_policy(moto_session, iam, principals):
    iam.put_user_policy(UserName="alice", PolicyName="p", PolicyDocument=json.dumps(INLINE_DOC))
    target = Target.from_finding("user-direct-policy", principals["user"], {"policy_name": "p"})
    applied = DELETE_INLINE.apply(moto_session, target)
    newer = document(allow("s3:GetObject"))
    iam.put_user_policy(UserName="alice", PolicyName="p", PolicyDocument=newer)
    with pytest.raises(RemediationError, match="not overwriting"):
        DELETE_INLINE.undo(moto_session, target, applied.before)
    assert iam.get_user_policy(UserName="alice", PolicyName="p")["PolicyDocument"] == json.loads(newer)
