"""The remediation contract: targets, errors, and the registry walked against the catalog.

Also the helpers the other `test_remediate_*` modules share (operation recording, a fast
AWSDenyAll, answering an operation from a test instead of moto).
"""

from __future__ import annotations

import contextlib
import functools
import json
import shlex
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError
from moto.iam.aws_managed_policies import aws_managed_policies_data
from moto.iam.models import AWSManagedPolicy

from checks.catalog import CATALOG
from checks.remediate.base import (
    Action,
    NotUndoable,
    PreconditionFailed,
    RemediationError,
    Target,
    remediation_error,
)
from checks.remediate.keys import DeactivateAccessKey
from checks.remediate.registry import ACTIONS, BY_ID, action
from tests import aws
from tests.aws import ACCOUNT_ID, REGION, iam_backend

# Fixtures of tests/aws.py used here.
aws_env = aws.aws_env
moto_session = aws.moto_session

DENY_ALL_ARN = "arn:aws:iam::aws:policy/AWSDenyAll"

# ---------------------------------------------------------------------------------------
# Helpers for the remediation tests


@contextlib.contextmanager
def recording(session: boto3.Session) -> Iterator[list[str]]:
    """Every operation the clients created from `session` call, as `iam:Op`, in order
    (including ones a test answers itself: the hook runs before `before-call`)."""
    calls: list[str] = []

    def record(model: Any = None, **_: Any) -> None:
        calls.append(f"{model.service_model.endpoint_prefix}:{model.name}")

    uid = f"test-recorder-{id(calls)}"
    session.events.register("before-parameter-build", record, unique_id=uid)
    try:
        yield calls
    finally:
        session.events.unregister("before-parameter-build", unique_id=uid)


def assert_declared(calls: list[str], declared: frozenset[str]) -> None:
    undeclared = sorted(set(calls) - declared)
    assert undeclared == [], f"operations used but not declared: {undeclared}"


@functools.cache
def _deny_all_data() -> dict[str, Any]:
    return json.loads(aws_managed_policies_data)["AWSDenyAll"]


def install_deny_all(account_id: str = ACCOUNT_ID) -> None:
    """Put moto's own copy of AWSDenyAll (it is in moto's AWS managed policy list) into the
    backend, without loading all ~1,500 (MOTO_IAM_LOAD_MANAGED_POLICIES costs ~0.6 s)."""
    backend = iam_backend(account_id)
    policy = AWSManagedPolicy.from_data("AWSDenyAll", account_id, REGION, _deny_all_data())
    backend.aws_managed_policies.append(policy)  # what moto tells local policies apart by
    backend.managed_policies[policy.arn] = policy


class _Http:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers: dict[str, str] = {}
        self.content = b""


def answer(
    session: boto3.Session, operation: str, handler: Callable[[dict[str, Any]], Any]
) -> None:
    """Answer `iam:<operation>` from the test, for clients created afterwards:
    `handler(params)` returns a response dict, an `(error code, message)` tuple for an AWS
    error, or None to let moto answer.

    It short-circuits `before-call`, so moto never sees the request. (`tests.aws.
    inject_error` answers at `before-send`, where moto's own handler still runs: an error
    injected into a *write* that way is reported, but moto has made the change.)"""

    def hook(params: dict[str, Any] | None = None, **_: Any) -> Any:
        result = handler((params or {}).get("body") or {})
        if result is None:
            return None
        if isinstance(result, tuple):
            code, message = result
            status = 403 if code == "AccessDenied" else 409
            return _Http(status), {"Error": {"Code": code, "Message": message},
                                   "ResponseMetadata": {"HTTPStatusCode": status}}
        return _Http(200), {**result, "ResponseMetadata": {"RequestId": "test", "HTTPStatusCode": 200}}

    session.events.register(f"before-call.iam.{operation}", hook)


def restore_by_hand(iam: Any, act: Action, target: Target, before: dict[str, Any]) -> str:
    """Carry out the AWS CLI command of `act.restore_by_hand` (its last line) with boto3,
    as an admin would with the CLI; returns the text. `--cli-input-json` becomes the
    parameters, `--user-name` becomes `UserName`."""
    text = act.restore_by_hand(target, before)
    command = shlex.split(text.splitlines()[-1])
    assert command[:2] == ["aws", "iam"], text
    params: dict[str, Any] = {}
    for flag, value in zip(command[3::2], command[4::2], strict=True):
        if flag == "--cli-input-json":
            params.update(json.loads(value))
        else:
            params["".join(w.capitalize() for w in flag[2:].split("-"))] = value
    getattr(iam, command[2].replace("-", "_"))(**params)
    return text


@pytest.fixture
def iam(moto_session: boto3.Session) -> Any:
    install_deny_all()
    return moto_session.client("iam", region_name=REGION)


def user_target(name: str, path: str = "/", **details: Any) -> Target:
    return Target.from_finding("test", f"arn:aws:iam::{ACCOUNT_ID}:user{path}{name}", details)


# ---------------------------------------------------------------------------------------
# Target


def test_target_from_a_key_finding_with_a_path():
    target = Target.from_finding(
        "unused-access-key",
        "arn:aws:iam::123456789012:user/ops/team/alice",
        {"access_key_id": "AKIAEXAMPLE", "key_slot": 1, "principal_type": "user"},
    )
    assert target.account_id == "123456789012"
    assert (target.principal_type, target.principal_name, target.path) == (
        "user", "alice", "/ops/team/")
    assert target.user_name == "alice" and target.group_name is None
    assert target.access_key_id == "AKIAEXAMPLE"
    assert target.label == "IAM user alice"
    assert target.aws_policy_arn("AWSDenyAll") == DENY_ALL_ARN


def test_target_from_policy_findings_on_a_group_role_and_the_account():
    group = Target.from_finding("admin-policy", "arn:aws:iam::123456789012:group/admins",
                                {"policy_name": "inline-admin", "user_name": "bob"})
    assert (group.principal_type, group.group_name, group.user_name) == ("group", "admins", "bob")
    assert group.policy_name == "inline-admin" and group.policy_arn is None
    role = Target.from_finding("admin-policy", "arn:aws-us-gov:iam::123456789012:role/svc/deploy",
                               {"policy_arn": "arn:aws-us-gov:iam::aws:policy/AdministratorAccess"})
    assert (role.principal_type, role.principal_name, role.path) == ("role", "deploy", "/svc/")
    assert role.aws_policy_arn("AWSDenyAll") == "arn:aws-us-gov:iam::aws:policy/AWSDenyAll"
    account = Target.from_finding("password-policy-weak", "arn:aws:iam::123456789012:root",
                                  {"failing": ["minimum_length"]})
    assert (account.principal_type, account.principal_name) == ("account", None)
    assert account.label == "account 123456789012"


def test_unresolved_details_are_none():
    target = Target.from_finding("old-access-key", "arn:aws:iam::123456789012:user/a",
                                 {"access_key_id": None})
    assert target.access_key_id is None


@pytest.mark.parametrize("resource", ["arn:aws:s3:::bucket", "arn:aws:iam::123:user/a",
                                      "arn:aws:iam::123456789012:policy/p", "alice"])
def test_target_rejects_what_is_not_an_iam_principal(resource):
    with pytest.raises(ValueError, match="not an IAM"):
        Target.from_finding("x", resource, {})


# ---------------------------------------------------------------------------------------
# Errors


def _client_error(code: str, operation: str = "DeleteUser", retries: int = 0) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": f"{code} happened"},
         "ResponseMetadata": {"HTTPStatusCode": 400, "RetryAttempts": retries}},
        operation,
    )


def test_access_denied_names_the_missing_action():
    err = remediation_error(_client_error("AccessDenied"), "123456789012")
    assert "iam:DeleteUser" in err.message and "123456789012" in err.message
    assert "steward-reduce-policy.json" in err.message
    restoring = remediation_error(_client_error("AccessDenied", operation="AddUserToGroup"), "1")
    assert "steward-restore-policy.json" in restoring.message
    assert not err.retryable and err.code == "AccessDenied"


def test_throttling_is_retryable_and_conflicts_keep_their_code():
    assert remediation_error(_client_error("Throttling", retries=7), "1").retryable
    conflict = remediation_error(_client_error("DeleteConflict"), "123456789012")
    assert conflict.code == "DeleteConflict" and not conflict.retryable
    assert "DeleteConflict on iam:DeleteUser" in conflict.message


def test_access_denied_from_aws_surfaces_from_apply(moto_session, iam):
    iam.create_user(UserName="alice")
    key = iam.create_access_key(UserName="alice")["AccessKey"]["AccessKeyId"]
    answer(moto_session, "UpdateAccessKey", lambda _: ("AccessDenied", "not authorized"))
    with pytest.raises(RemediationError, match="AccessDenied on iam:UpdateAccessKey") as info:
        DeactivateAccessKey().apply(moto_session, user_target("alice", access_key_id=key))
    assert not isinstance(info.value, PreconditionFailed)
    statuses = iam.list_access_keys(UserName="alice")["AccessKeyMetadata"]
    assert [k["Status"] for k in statuses] == ["Active"]


# ---------------------------------------------------------------------------------------
# The registry, walked


def test_action_ids_are_unique_and_indexed():
    assert len(BY_ID) == len(ACTIONS)
    assert action("quarantine-user") is BY_ID["quarantine-user"]
    with pytest.raises(KeyError, match="unknown remediation"):
        action("nope")


def test_catalog_and_registry_match_both_ways():
    from checks.activity.rules import CONTAINMENT_ACTIONS

    offered = {r for spec in CATALOG for r in spec.remediations}
    assert offered - BY_ID.keys() == set(), "catalog offers remediations that do not exist"
    assert set(CONTAINMENT_ACTIONS) - BY_ID.keys() == set(), "activity offers containments that do not exist"
    assert BY_ID.keys() - offered - set(CONTAINMENT_ACTIONS) == set(), "registry has actions nothing offers"
    # Only an activity escalation offers the restore of a trust policy (no scan check does).
    assert BY_ID.keys() - offered == {"restore-trust-policy"}


@functools.cache
def _iam_operations() -> frozenset[str]:
    model = botocore.session.get_session().get_service_model("iam")
    return frozenset(f"iam:{name}" for name in model.operation_names)


@pytest.mark.parametrize("act", ACTIONS, ids=lambda a: a.id)
def test_every_action_declares_its_contract(act: Action):
    assert act.id and act.title
    assert isinstance(act.reversible, bool) and isinstance(act.reduces_access_only, bool)
    assert act.permissions, "plan/apply permissions must be declared"
    declared = act.permissions | act.undo_permissions
    assert declared <= _iam_operations(), f"not IAM operations: {declared - _iam_operations()}"
    overrides_revert = type(act).revert is not Action.revert
    if act.reversible:
        assert act.undo_permissions, "a reversible action declares its undo permissions"
        assert overrides_revert, "a reversible action implements undo"
    else:
        assert not act.undo_permissions and not overrides_revert
        with pytest.raises(NotUndoable):
            act.undo(None, user_target("x"), {})  # type: ignore[arg-type]


@pytest.mark.parametrize("act", [a for a in ACTIONS if a.undo_needs_restore], ids=lambda a: a.id)
def test_an_undo_needing_the_restore_role_says_how_to_restore_by_hand(act: Action):
    from bot.core.decisions import UndoRule, undo_rule

    assert type(act).restore_by_hand is not Action.restore_by_hand
    # Giving access back is never one click: of these, owners may apply only right-sizing
    # alone (it only reduces), and its undo still needs an approver, even the owner's own.
    assert not act.owner_may_apply_alone or act.apply_needs_restore
    if act.apply_needs_restore:
        assert type(act).apply_by_hand is not Action.apply_by_hand
    assert undo_rule(act, requested_by="U1", undoer="U1", undoer_is_owner=True) is UndoRule.NEEDS_APPROVER


def test_only_reversible_access_reducing_actions_may_be_taken_by_the_owner_alone():
    alone = {a.id for a in ACTIONS if a.owner_may_apply_alone}
    assert alone == {"deactivate-access-key", "quarantine-user", "rightsize-policy"}
    assert {a.id for a in ACTIONS if a.reduces_access_only} == alone


@pytest.mark.parametrize("act", [a for a in ACTIONS if a.needs_earlier], ids=lambda a: a.id)
def test_an_action_needing_an_earlier_one_names_a_reversible_action_on_the_same_resource(act: Action):
    """The earlier action (quarantine before delete) is registered, one Steward can undo during
    the wait, and the later one is irreversible (otherwise no wait would be needed)."""
    earlier = BY_ID[act.needs_earlier]
    assert earlier.reversible and earlier is not act
    assert not act.reversible
    assert any(act.id in c.remediations and earlier.id in c.remediations for c in CATALOG)


def test_needs_earlier_today():
    assert {a.id: a.needs_earlier for a in ACTIONS if a.needs_earlier} == {"delete-user": "quarantine-user"}


@pytest.mark.parametrize("act", ACTIONS, ids=lambda a: a.id)
def test_auto_remediable_only_when_the_owner_could_take_it_alone(act: Action):
    assert act.auto_remediable is (act.owner_may_apply_alone and not act.undo_needs_restore)
    if act.auto_remediable:
        assert act.reversible and act.reduces_access_only and not act.undo_needs_restore
