"""deactivate-access-key and delete-access-key on moto."""

from __future__ import annotations

import pytest

from checks.remediate.base import NotUndoable, PreconditionFailed, RemediationError
from checks.remediate.keys import DeactivateAccessKey, DeleteAccessKey
from tests import aws
from tests.aws import backdate_access_key
from tests.checks import test_remediate_base as base
from tests.checks.test_remediate_base import assert_declared, recording, user_target

# Fixtures used here.
aws_env = aws.aws_env
moto_session = aws.moto_session
iam = base.iam

DEACTIVATE = DeactivateAccessKey()
DELETE = DeleteAccessKey()


def statuses(iam, user="alice"):
    keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {k["AccessKeyId"]: k["Status"] for k in keys}


@pytest.fixture
def keys(iam):
    iam.create_user(UserName="alice", Path="/ops/")
    first = iam.create_access_key(UserName="alice")["AccessKey"]["AccessKeyId"]
    second = iam.create_access_key(UserName="alice")["AccessKey"]["AccessKeyId"]
    backdate_access_key("alice", first, last_used=3, service="s3")
    return first, second


def target(key_id, user="alice"):
    return user_target(user, "/ops/", access_key_id=key_id)


def test_deactivate_round_trip(moto_session, iam, keys):
    first, second = keys
    with recording(moto_session) as calls:
        plan = DEACTIVATE.plan(moto_session, target(first))
        applied = DEACTIVATE.apply(moto_session, target(first))
    assert_declared(calls, DEACTIVATE.permissions)
    assert plan.possible and not plan.already_done and plan.irreversible_warning is None
    assert first in plan.summary and "alice" in plan.summary and "(s3)" in plan.summary
    assert statuses(iam) == {first: "Inactive", second: "Active"}
    assert applied.before["status"] == "Active" and applied.after["status"] == "Inactive"
    assert len(applied.request_ids) == 1 and not applied.already_done

    with recording(moto_session) as calls:
        undone = DEACTIVATE.undo(moto_session, target(first), applied.before)
    assert_declared(calls, DEACTIVATE.undo_permissions)
    assert statuses(iam) == {first: "Active", second: "Active"}
    assert undone.after == applied.before and not undone.already_done


def test_deactivate_twice_is_harmless(moto_session, iam, keys):
    first, _ = keys
    DEACTIVATE.apply(moto_session, target(first))
    assert DEACTIVATE.plan(moto_session, target(first)).already_done
    again = DEACTIVATE.apply(moto_session, target(first))
    assert again.already_done and again.request_ids == () and again.before == again.after
    # Undo with the second apply's before-state reactivates nothing: it changed nothing.
    assert DEACTIVATE.undo(moto_session, target(first), again.before).already_done
    assert statuses(iam)[first] == "Inactive"


def test_undo_twice_is_harmless(moto_session, iam, keys):
    first, _ = keys
    applied = DEACTIVATE.apply(moto_session, target(first))
    DEACTIVATE.undo(moto_session, target(first), applied.before)
    assert DEACTIVATE.undo(moto_session, target(first), applied.before).already_done


def test_a_key_that_is_gone_cannot_be_deactivated(moto_session, iam, keys):
    first, _ = keys
    iam.delete_access_key(UserName="alice", AccessKeyId=first)
    plan = DEACTIVATE.plan(moto_session, target(first))
    assert not plan.possible and "no longer exists" in (plan.reason or "")
    with pytest.raises(PreconditionFailed, match="no longer exists"):
        DEACTIVATE.apply(moto_session, target(first))
    gone_user = DEACTIVATE.plan(moto_session, target("AKIAX", user="nobody"))
    assert not gone_user.possible and "IAM user nobody no longer exists" in gone_user.reason


def test_an_unresolved_key_id_is_not_guessed(moto_session, iam, keys):
    plan = DEACTIVATE.plan(moto_session, target(None))
    assert not plan.possible and "access key id" in (plan.reason or "")


def test_undo_after_the_key_was_deleted_fails_clearly(moto_session, iam, keys):
    first, _ = keys
    applied = DEACTIVATE.apply(moto_session, target(first))
    iam.delete_access_key(UserName="alice", AccessKeyId=first)
    with pytest.raises(RemediationError, match=r"cannot undo .* no longer exists"):
        DEACTIVATE.undo(moto_session, target(first), applied.before)


def test_delete_refuses_an_active_key(moto_session, iam, keys):
    first, _ = keys
    plan = DELETE.plan(moto_session, target(first))
    assert not plan.possible and "active" in (plan.reason or "")
    with pytest.raises(PreconditionFailed, match="deactivate it first"):
        DELETE.apply(moto_session, target(first))
    assert first in statuses(iam)


def test_delete_an_inactive_key_then_again(moto_session, iam, keys):
    first, second = keys
    iam.update_access_key(UserName="alice", AccessKeyId=first, Status="Inactive")
    with recording(moto_session) as calls:
        plan = DELETE.plan(moto_session, target(first))
        applied = DELETE.apply(moto_session, target(first))
    assert_declared(calls, DELETE.permissions)
    assert plan.possible and plan.irreversible_warning and "cannot be restored" in plan.irreversible_warning
    assert statuses(iam) == {second: "Active"}
    assert applied.before["status"] == "Inactive" and applied.before["last_used"]
    assert applied.after["exists"] is False
    again = DELETE.apply(moto_session, target(first))
    assert again.already_done and "no longer exists" in again.summary
    with pytest.raises(NotUndoable):
        DELETE.undo(moto_session, target(first), applied.before)


def test_the_before_state_is_handed_over_before_the_first_write(moto_session, iam, keys):
    first, _ = keys
    seen = []

    def persist(before):
        seen.append((dict(before), statuses(iam)[first]))
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        DEACTIVATE.apply(moto_session, target(first), on_before=persist)
    assert seen == [(seen[0][0], "Active")] and seen[0][0]["status"] == "Active"
    assert statuses(iam)[first] == "Active"  # nothing written when persisting failed
