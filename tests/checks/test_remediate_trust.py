"""restore-trust-policy on moto: the previous trust comes back, undo puts the opened one back,
both only under the restore role; the by-hand commands do what they say."""

from __future__ import annotations

import json
import shlex

import pytest

from checks.remediate.base import RemediationError, Target
from checks.remediate.registry import BY_ID
from checks.remediate.trust import RestoreTrustPolicy, same
from tests import aws
from tests.aws import ACCOUNT_ID
from tests.checks import test_remediate_base as base
from tests.checks.test_remediate_base import assert_declared, recording, restore_by_hand

aws_env = aws.aws_env
moto_session = aws.moto_session
iam = base.iam

RESTORE = RestoreTrustPolicy()
OTHER = "999988887777"


def trust(principal: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]}


PREVIOUS = trust(f"arn:aws:iam::{ACCOUNT_ID}:root")
OPENED = trust(f"arn:aws:iam::{OTHER}:root")


def trust_of(iam, name: str = "app") -> dict:
    return iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]


@pytest.fixture
def opened(iam):
    """The role `app` trusted its own account; someone opened it to another account."""
    iam.create_role(RoleName="app", Path="/svc/", AssumeRolePolicyDocument=json.dumps(PREVIOUS))
    iam.update_assume_role_policy(RoleName="app", PolicyDocument=json.dumps(OPENED))
    return Target.from_finding("activity:role-trust-opened", f"arn:aws:iam::{ACCOUNT_ID}:role/app",
                               {"previous_trust_policy": PREVIOUS, "trust_policy_set": OPENED})


def test_the_target_carries_both_documents_as_canonical_text(opened):
    assert json.loads(opened.trust_policy) == PREVIOUS and json.loads(opened.trust_policy_set) == OPENED
    assert opened.principal_name == "app" and opened.principal_type == "role"
    assert Target.from_finding("x", f"arn:aws:iam::{ACCOUNT_ID}:role/app", {}).trust_policy is None


def test_restore_round_trip(moto_session, iam, opened):
    with recording(moto_session) as calls:
        plan = RESTORE.plan(moto_session, opened)
        applied = RESTORE.apply(moto_session, opened)
    assert_declared(calls, RESTORE.permissions)
    assert plan.possible and not plan.already_done and "previous trust policy of the role app" in plan.summary
    assert f"only arn:aws:iam::{ACCOUNT_ID}:root may assume it (now: arn:aws:iam::{OTHER}:root)" in plan.summary
    assert same(trust_of(iam), PREVIOUS)
    assert same(applied.before["trust_policy"], OPENED) and same(applied.after["trust_policy"], PREVIOUS)
    again = RESTORE.plan(moto_session, opened)
    assert again.already_done and "Already done" in again.summary
    assert RESTORE.apply(moto_session, opened).already_done

    with recording(moto_session) as calls:
        undone = RESTORE.undo(moto_session, opened, applied.before)
    assert_declared(calls, RESTORE.undo_permissions)
    assert not undone.already_done and same(trust_of(iam), OPENED)
    assert RESTORE.undo(moto_session, opened, applied.before).already_done  # twice is harmless


def test_undo_never_overwrites_a_later_change(moto_session, iam, opened):
    applied = RESTORE.apply(moto_session, opened)
    third = trust("arn:aws:iam::111122223333:root")
    iam.update_assume_role_policy(RoleName="app", PolicyDocument=json.dumps(third))
    with pytest.raises(RemediationError, match="changed again since Steward restored it"):
        RESTORE.undo(moto_session, opened, applied.before)
    assert same(trust_of(iam), third)


def test_a_missing_role_or_previous_document_cannot_be_restored(moto_session, iam):
    gone = Target.from_finding("x", f"arn:aws:iam::{ACCOUNT_ID}:role/gone", {"previous_trust_policy": PREVIOUS})
    plan = RESTORE.plan(moto_session, gone)
    assert not plan.possible and "no longer exists" in plan.summary
    iam.create_role(RoleName="app", AssumeRolePolicyDocument=json.dumps(OPENED))
    unknown = Target.from_finding("x", f"arn:aws:iam::{ACCOUNT_ID}:role/app", {})
    assert not RESTORE.plan(moto_session, unknown).possible
    user = Target.from_finding("x", f"arn:aws:iam::{ACCOUNT_ID}:user/app", {"previous_trust_policy": PREVIOUS})
    assert "not an IAM role" in RESTORE.plan(moto_session, user).summary


def test_the_by_hand_commands_do_what_they_say(moto_session, iam, opened):
    # Applying by hand (restore role off): the last line is the command an admin runs.
    command = shlex.split(RESTORE.apply_by_hand(opened).splitlines()[-1])
    assert command[:3] == ["aws", "iam", "update-assume-role-policy"]
    iam.update_assume_role_policy(RoleName=command[4], PolicyDocument=command[6])
    assert same(trust_of(iam), PREVIOUS)
    assert RESTORE.apply_before_by_hand(opened) == {"role_name": "app", "trust_policy": OPENED}
    # Undoing by hand from the before-state.
    text = restore_by_hand(iam, RESTORE, opened, {"role_name": "app", "trust_policy": OPENED})
    assert "before Steward restored the previous one" in text and same(trust_of(iam), OPENED)


def test_who_a_trust_admits_in_words():
    from checks.remediate.trust import admitted

    many = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{n}2:root" for n in
                                                                      range(100000000, 100000005)]}},
                          {"Effect": "Deny", "Principal": "*"}]}
    assert admitted(many).endswith("and 2 more") and admitted({}) == "nobody"
    assert admitted(json.dumps(trust("*"))) == "*"


def test_it_is_a_restore_class_write_needing_an_approver():
    act = BY_ID["restore-trust-policy"]
    assert act.apply_needs_restore and act.undo_needs_restore and act.reversible
    assert not act.owner_may_apply_alone and not act.auto_remediable
