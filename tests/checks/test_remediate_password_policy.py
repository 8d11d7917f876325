"""apply-cis-password-policy: the merge (pure) and the round trip on moto."""

from __future__ import annotations

import pytest

from checks.remediate.base import Target
from checks.remediate.password_policy import ApplyCisPasswordPolicy, cis_parameters, parameters
from tests import aws
from tests.aws import ACCOUNT_ID
from tests.checks import test_remediate_base as base
from tests.checks.test_remediate_base import assert_declared, recording, restore_by_hand

# Fixtures used here.
aws_env = aws.aws_env
moto_session = aws.moto_session
iam = base.iam

ACTION = ApplyCisPasswordPolicy()
ACCOUNT = Target.from_finding("password-policy-weak", f"arn:aws:iam::{ACCOUNT_ID}:root",
                              {"failing": ["minimum_length"]})
CIS = {
    "MinimumPasswordLength": 14,
    "RequireUppercaseCharacters": True,
    "RequireLowercaseCharacters": True,
    "RequireNumbers": True,
    "RequireSymbols": True,
    "AllowUsersToChangePassword": True,
    "HardExpiry": False,
    "PasswordReusePrevention": 24,
}


def current(iam):
    try:
        return iam.get_account_password_policy()["PasswordPolicy"]
    except iam.exceptions.NoSuchEntityException:
        return None


def test_the_baseline_when_there_is_no_policy():
    assert cis_parameters(None) == CIS


def test_the_merge_never_weakens_and_keeps_expiry():
    strong = {**CIS, "MinimumPasswordLength": 20, "MaxPasswordAge": 60, "HardExpiry": True}
    assert cis_parameters(strong) == strong
    weak = {"MinimumPasswordLength": 8, "RequireSymbols": True, "PasswordReusePrevention": 5,
            "MaxPasswordAge": 30}
    assert cis_parameters(weak) == {**CIS, "MaxPasswordAge": 30}


def test_parameters_leave_out_what_is_not_set():
    got = parameters({"MinimumPasswordLength": 8, "ExpirePasswords": False, "MaxPasswordAge": 0,
                      "AllowUsersToChangePassword": True})
    assert "MaxPasswordAge" not in got and "PasswordReusePrevention" not in got
    assert got["AllowUsersToChangePassword"] is True and got["RequireSymbols"] is False
    assert parameters(None) is None


def test_apply_then_undo_deletes_a_policy_that_did_not_exist(moto_session, iam):
    with recording(moto_session) as calls:
        plan = ACTION.plan(moto_session, ACCOUNT)
        applied = ACTION.apply(moto_session, ACCOUNT)
    assert_declared(calls, ACTION.permissions)
    assert plan.possible and plan.summary.startswith("Create a password policy for account")
    assert "minimum length 14" in plan.summary and "never expire" in plan.summary
    assert parameters(current(iam)) == CIS
    assert applied.before == {"account_id": ACCOUNT_ID, "exists": False, "policy": None}

    assert ACTION.apply(moto_session, ACCOUNT).already_done
    with recording(moto_session) as calls:
        undone = ACTION.undo(moto_session, ACCOUNT, applied.before)
    assert_declared(calls, ACTION.undo_permissions)
    assert current(iam) is None and undone.after == applied.before
    assert ACTION.undo(moto_session, ACCOUNT, applied.before).already_done


@pytest.mark.parametrize("previous", [
    {"MinimumPasswordLength": 8, "RequireNumbers": True, "MaxPasswordAge": 60, "HardExpiry": True},
    {"MinimumPasswordLength": 10, "PasswordReusePrevention": 3, "AllowUsersToChangePassword": True},
])
def test_undo_restores_the_previous_policy_exactly(moto_session, iam, previous):
    iam.update_account_password_policy(**previous)
    original = current(iam)
    applied = ACTION.apply(moto_session, ACCOUNT)
    after = current(iam)
    assert after["MinimumPasswordLength"] == 14 and after["PasswordReusePrevention"] == 24
    assert after.get("MaxPasswordAge", 0) == original.get("MaxPasswordAge", 0)  # expiry kept
    assert after["HardExpiry"] == original["HardExpiry"]
    ACTION.undo(moto_session, ACCOUNT, applied.before)
    assert current(iam) == original


@pytest.mark.parametrize("previous", [
    None,
    {"MinimumPasswordLength": 8, "RequireNumbers": True, "MaxPasswordAge": 60, "HardExpiry": True},
])
def test_the_previous_policy_can_be_restored_by_hand(moto_session, iam, previous):
    if previous:
        iam.update_account_password_policy(**previous)
    original = current(iam)
    applied = ACTION.apply(moto_session, ACCOUNT)
    text = restore_by_hand(iam, ACTION, ACCOUNT, applied.before)
    assert current(iam) == original
    assert ("had no password policy" in text) is (previous is None)


def test_a_policy_that_meets_the_baseline_is_already_done(moto_session, iam):
    iam.update_account_password_policy(**{**CIS, "MinimumPasswordLength": 16})
    plan = ACTION.plan(moto_session, ACCOUNT)
    assert plan.already_done and "meets the CIS baseline" in plan.summary
    applied = ACTION.apply(moto_session, ACCOUNT)
    assert applied.already_done and applied.request_ids == ()
    assert current(iam)["MinimumPasswordLength"] == 16
