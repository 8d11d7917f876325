"""quarantine-user, remove-console-password, delete-user and remove-user-from-group on moto.

Moto has no service-specific credentials (ListServiceSpecificCredentials raises
NotImplementedError), so `ServiceCredentials` answers those two operations from the test.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from checks.remediate.base import NotUndoable, PreconditionFailed, RemediationError, Target
from checks.remediate.users import (
    DeleteUser,
    QuarantineUser,
    RemoveConsolePassword,
    RemoveUserFromGroup,
)
from tests import aws
from tests.aws import ACCOUNT_ID, document, iam_backend
from tests.checks import test_remediate_base as base
from tests.checks.test_remediate_base import (
    DENY_ALL_ARN,
    answer,
    assert_declared,
    recording,
    restore_by_hand,
    user_target,
)

# Fixtures used here.
aws_env = aws.aws_env
moto_session = aws.moto_session
moto_session_aws_policies = aws.moto_session_aws_policies
iam = base.iam

QUARANTINE = QuarantineUser()
REMOVE_PASSWORD = RemoveConsolePassword()
DELETE_USER = DeleteUser()
REMOVE_FROM_GROUP = RemoveUserFromGroup()
ALICE = user_target("alice", "/ops/")


def statuses(iam, user="alice"):
    keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {k["AccessKeyId"]: k["Status"] for k in keys}


def attached(iam, user="alice"):
    return {p["PolicyArn"] for p in iam.list_attached_user_policies(UserName=user)["AttachedPolicies"]}


@pytest.fixture
def alice(iam):
    """alice with an active and an inactive key."""
    iam.create_user(UserName="alice", Path="/ops/")
    active = iam.create_access_key(UserName="alice")["AccessKey"]["AccessKeyId"]
    inactive = iam.create_access_key(UserName="alice")["AccessKey"]["AccessKeyId"]
    iam.update_access_key(UserName="alice", AccessKeyId=inactive, Status="Inactive")
    return active, inactive


# ---------------------------------------------------------------------------------------
# quarantine-user


def test_quarantine_round_trip_reactivates_only_the_keys_it_deactivated(moto_session, iam, alice):
    active, inactive = alice
    with recording(moto_session) as calls:
        plan = QUARANTINE.plan(moto_session, ALICE)
        applied = QUARANTINE.apply(moto_session, ALICE)
    assert_declared(calls, QUARANTINE.permissions)
    assert plan.possible and "AWSDenyAll" in plan.summary and active in plan.summary
    assert inactive not in plan.summary
    assert attached(iam) == {DENY_ALL_ARN}
    assert statuses(iam) == {active: "Inactive", inactive: "Inactive"}
    assert len(applied.request_ids) == 2

    with recording(moto_session) as calls:
        undone = QUARANTINE.undo(moto_session, ALICE, applied.before)
    assert_declared(calls, QUARANTINE.undo_permissions)
    assert attached(iam) == set()
    assert statuses(iam) == {active: "Active", inactive: "Inactive"}
    assert undone.after == applied.before


def test_quarantine_undo_leaves_keys_it_did_not_touch(moto_session, iam, alice):
    active, inactive = alice
    applied = QUARANTINE.apply(moto_session, ALICE)
    # Meanwhile the inactive key is replaced by a new one, deactivated by a person.
    iam.delete_access_key(UserName="alice", AccessKeyId=inactive)
    newer = iam.create_access_key(UserName="alice")["AccessKey"]["AccessKeyId"]
    iam.update_access_key(UserName="alice", AccessKeyId=newer, Status="Inactive")
    QUARANTINE.undo(moto_session, ALICE, applied.before)
    assert statuses(iam) == {active: "Active", newer: "Inactive"}


def test_quarantine_twice_is_harmless(moto_session, iam, alice):
    applied = QUARANTINE.apply(moto_session, ALICE)
    again = QUARANTINE.apply(moto_session, ALICE)
    assert again.already_done and again.request_ids == ()
    assert QUARANTINE.plan(moto_session, ALICE).already_done
    # Undo with the first apply's before-state still works after the second apply.
    QUARANTINE.undo(moto_session, ALICE, applied.before)
    assert attached(iam) == set()
    assert QUARANTINE.undo(moto_session, ALICE, applied.before).already_done


def test_quarantine_keeps_a_deny_all_attached_before(moto_session, iam, alice):
    active, _ = alice
    iam.attach_user_policy(UserName="alice", PolicyArn=DENY_ALL_ARN)
    plan = QUARANTINE.plan(moto_session, ALICE)
    assert "attach" not in plan.summary and active in plan.summary
    applied = QUARANTINE.apply(moto_session, ALICE)
    QUARANTINE.undo(moto_session, ALICE, applied.before)
    assert attached(iam) == {DENY_ALL_ARN}
    assert statuses(iam)[active] == "Active"


def test_quarantine_of_a_user_that_is_gone(moto_session, iam):
    plan = QUARANTINE.plan(moto_session, user_target("ghost"))
    assert not plan.possible and "ghost no longer exists" in (plan.reason or "")


def test_quarantine_with_moto_s_own_aws_managed_policies(moto_session_aws_policies):
    """AWSDenyAll is in moto's AWS managed policy list: no stand-in needed."""
    iam = moto_session_aws_policies.client("iam")
    assert iam.get_policy(PolicyArn=DENY_ALL_ARN)["Policy"]["PolicyName"] == "AWSDenyAll"
    iam.create_user(UserName="bob")
    applied = QUARANTINE.apply(moto_session_aws_policies, user_target("bob"))
    assert attached(iam, "bob") == {DENY_ALL_ARN}
    QUARANTINE.undo(moto_session_aws_policies, user_target("bob"), applied.before)
    assert attached(iam, "bob") == set()


# ---------------------------------------------------------------------------------------
# remove-console-password


def test_remove_console_password(moto_session, iam, alice):
    iam.create_login_profile(UserName="alice", Password="Correct-Horse-9!")
    with recording(moto_session) as calls:
        plan = REMOVE_PASSWORD.plan(moto_session, ALICE)
        applied = REMOVE_PASSWORD.apply(moto_session, ALICE)
    assert_declared(calls, REMOVE_PASSWORD.permissions)
    assert plan.possible and "cannot be undone" in (plan.irreversible_warning or "")
    assert applied.before["login_profile"] and not applied.after["login_profile"]
    assert "Correct-Horse" not in json.dumps(applied.before)
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_login_profile(UserName="alice")
    assert REMOVE_PASSWORD.apply(moto_session, ALICE).already_done
    with pytest.raises(NotUndoable):
        REMOVE_PASSWORD.undo(moto_session, ALICE, applied.before)
    gone = REMOVE_PASSWORD.plan(moto_session, user_target("ghost"))
    assert not gone.possible and "no longer exists" in (gone.reason or "")


# ---------------------------------------------------------------------------------------
# delete-user


class ServiceCredentials:
    """Service-specific credentials (e.g. CodeCommit Git credentials), answered by the
    test because moto does not implement them."""

    def __init__(self, session: boto3.Session) -> None:
        self.by_user: dict[str, list[dict[str, Any]]] = {}
        answer(session, "ListServiceSpecificCredentials", self._list)
        answer(session, "DeleteServiceSpecificCredential", self._delete)

    def add(self, user: str) -> str:
        cred_id = f"ACCA{len(self.by_user.get(user, [])):016d}"
        self.by_user.setdefault(user, []).append({
            "UserName": user,
            "Status": "Active",
            "ServiceUserName": f"{user}-at-123456789012",
            "CreateDate": dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
            "ServiceSpecificCredentialId": cred_id,
            "ServiceName": "codecommit.amazonaws.com",
        })
        return cred_id

    def _list(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ServiceSpecificCredentials": list(self.by_user.get(params["UserName"], []))}

    def _delete(self, params: dict[str, Any]) -> dict[str, Any]:
        creds = self.by_user.get(params["UserName"], [])
        creds[:] = [c for c in creds if c["ServiceSpecificCredentialId"]
                    != params["ServiceSpecificCredentialId"]]
        return {}


@pytest.fixture
def service_credentials(moto_session):
    return ServiceCredentials(moto_session)


def self_signed_certificate() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def loaded_alice(iam, alice, service_credentials):
    """alice with one of everything DeleteUser needs gone, quarantined."""
    iam.create_group(GroupName="developers")
    iam.add_user_to_group(GroupName="developers", UserName="alice")
    policy = iam.create_policy(PolicyName="s3-read", PolicyDocument=document(
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}))["Policy"]["Arn"]
    iam.attach_user_policy(UserName="alice", PolicyArn=policy)
    iam.put_user_policy(UserName="alice", PolicyName="inline-sqs", PolicyDocument=document(
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}))
    iam.tag_user(UserName="alice", Tags=[{"Key": "owner", "Value": "alice@example.com"}])
    iam.create_login_profile(UserName="alice", Password="Correct-Horse-9!")
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="alice")["VirtualMFADevice"][
        "SerialNumber"]
    iam.enable_mfa_device(UserName="alice", SerialNumber=serial,
                          AuthenticationCode1="123456", AuthenticationCode2="654321")
    cert = iam.upload_signing_certificate(UserName="alice",
                                          CertificateBody=self_signed_certificate())
    ssh = iam.upload_ssh_public_key(UserName="alice", SSHPublicKeyBody="ssh-ed25519 AAAAC3Nz test")
    credential = service_credentials.add("alice")
    iam.attach_user_policy(UserName="alice", PolicyArn=DENY_ALL_ARN)
    return {
        "keys": alice,
        "policy": policy,
        "mfa": serial,
        "cert": cert["Certificate"]["CertificateId"],
        "ssh": ssh["SSHPublicKey"]["SSHPublicKeyId"],
        "credential": credential,
    }


TEARDOWN_ORDER = [
    "iam:DeleteLoginProfile",
    "iam:DeleteAccessKey",
    "iam:DeleteAccessKey",
    "iam:DeleteSigningCertificate",
    "iam:DeleteSSHPublicKey",
    "iam:DeleteServiceSpecificCredential",
    "iam:DeactivateMFADevice",
    "iam:DeleteVirtualMFADevice",
    "iam:DeleteUserPolicy",
    "iam:DetachUserPolicy",  # s3-read
    "iam:RemoveUserFromGroup",
    "iam:DetachUserPolicy",  # AWSDenyAll, last
    "iam:DeleteUser",
]


def writes(calls: list[str]) -> list[str]:
    return [c for c in calls if not c.startswith(("iam:Get", "iam:List"))]


def test_delete_user_snapshots_everything_then_tears_down_in_order(
    moto_session, iam, loaded_alice, service_credentials
):
    with recording(moto_session) as calls:
        plan = DELETE_USER.plan(moto_session, ALICE)
        applied = DELETE_USER.apply(moto_session, ALICE)
    assert_declared(calls, DELETE_USER.permissions)
    assert plan.possible and "cannot be restored" in (plan.irreversible_warning or "")
    assert "access keys (2)" in plan.summary and "console password" in plan.summary
    assert writes(calls) == TEARDOWN_ORDER

    before = applied.before
    assert before["groups"] == ["developers"]
    assert {p["arn"] for p in before["attached_policies"]} == {loaded_alice["policy"], DENY_ALL_ARN}
    assert before["inline_policies"]["inline-sqs"]["Statement"][0]["Action"] == "sqs:SendMessage"
    assert before["tags"] == {"owner": "alice@example.com"}
    assert {k["access_key_id"]: k["status"] for k in before["access_keys"]} == {
        loaded_alice["keys"][0]: "Active", loaded_alice["keys"][1]: "Inactive"}
    assert [d["serial_number"] for d in before["mfa_devices"]] == [loaded_alice["mfa"]]
    assert before["login_profile"] is True
    assert [c["certificate_id"] for c in before["signing_certificates"]] == [loaded_alice["cert"]]
    assert [k["ssh_public_key_id"] for k in before["ssh_public_keys"]] == [loaded_alice["ssh"]]
    assert [c["service_specific_credential_id"] for c in before["service_specific_credentials"]
            ] == [loaded_alice["credential"]]
    assert before["path"] == "/ops/" and before["user_id"]
    text = json.dumps(before)  # JSON-ready, and no secret in it
    assert "Correct-Horse" not in text and "SecretAccessKey" not in text

    assert applied.after == {"exists": False, "user_name": "alice", "deny_all_arn": DENY_ALL_ARN}
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_user(UserName="alice")
    assert iam.list_virtual_mfa_devices()["VirtualMFADevices"] == []
    assert service_credentials.by_user["alice"] == []
    assert iam.get_group(GroupName="developers")["Users"] == []

    again = DELETE_USER.apply(moto_session, ALICE)
    assert again.already_done and "no longer exists" in again.summary
    with pytest.raises(NotUndoable):
        DELETE_USER.undo(moto_session, ALICE, applied.before)


def test_delete_user_refuses_a_user_that_is_not_quarantined(
    moto_session, iam, alice, service_credentials
):
    plan = DELETE_USER.plan(moto_session, ALICE)
    assert not plan.possible and "not quarantined" in (plan.reason or "")
    with pytest.raises(PreconditionFailed, match="quarantine it first"):
        DELETE_USER.apply(moto_session, ALICE)
    assert iam.get_user(UserName="alice")


def _conflict_after_adding_a_key(session: boto3.Session, times: int | None) -> list[str]:
    """DeleteUser answers DeleteConflict `times` times (None: always), each time after a
    new access key appeared (someone racing the deletion). Returns the keys added."""
    added: list[str] = []

    def handler(params: dict[str, Any]) -> Any:
        if times is not None and len(added) >= times:
            return None  # moto answers
        key = iam_backend().create_access_key(params["UserName"], status="Active")
        added.append(key.access_key_id)
        return ("DeleteConflict", "Cannot delete entity, must delete access keys first.")

    answer(session, "DeleteUser", handler)
    return added


def test_delete_user_retries_the_teardown_once_after_a_conflict(
    moto_session, iam, loaded_alice, service_credentials
):
    added = _conflict_after_adding_a_key(moto_session, times=1)
    with recording(moto_session) as calls:
        applied = DELETE_USER.apply(moto_session, ALICE)
    assert_declared(calls, DELETE_USER.permissions)
    assert calls.count("iam:DeleteUser") == 2 and len(added) == 1
    assert "iam:AttachUserPolicy" in calls  # quarantined again while the rest is torn down
    assert applied.after["exists"] is False
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_user(UserName="alice")


def test_delete_user_names_what_blocks_after_a_second_conflict(
    moto_session, iam, loaded_alice, service_credentials
):
    added = _conflict_after_adding_a_key(moto_session, times=None)
    with pytest.raises(RemediationError) as info:
        DELETE_USER.apply(moto_session, ALICE)
    assert info.value.code == "DeleteConflict" and not info.value.retryable
    assert "second teardown" in info.value.message
    assert f"access keys {added[-1]}" in info.value.message
    # The user is still there, and quarantined again.
    assert attached(iam) == {DENY_ALL_ARN}


def test_delete_user_failure_other_than_a_conflict_requarantines(
    moto_session, iam, loaded_alice, service_credentials
):
    answer(moto_session, "DeleteUser", lambda _: ("AccessDenied", "not authorized"))
    with pytest.raises(RemediationError, match="AccessDenied on iam:DeleteUser") as info:
        DELETE_USER.apply(moto_session, ALICE)
    assert info.value.code == "AccessDenied"
    assert attached(iam) == {DENY_ALL_ARN}


# ---------------------------------------------------------------------------------------
# remove-user-from-group


@pytest.fixture
def admins(iam, alice):
    iam.create_group(GroupName="admins")
    iam.add_user_to_group(GroupName="admins", UserName="alice")


def members(iam, group="admins"):
    return [u["UserName"] for u in iam.get_group(GroupName=group)["Users"]]


def test_remove_user_from_group_round_trip(moto_session, iam, admins):
    # An admin-policy finding on the group, naming the member to remove.
    target = Target.from_finding("admin-policy", f"arn:aws:iam::{ACCOUNT_ID}:group/admins",
                                 {"policy_name": "all", "user_name": "alice"})
    with recording(moto_session) as calls:
        plan = REMOVE_FROM_GROUP.plan(moto_session, target)
        applied = REMOVE_FROM_GROUP.apply(moto_session, target)
    assert_declared(calls, REMOVE_FROM_GROUP.permissions)
    assert plan.possible and "admins" in plan.summary
    assert members(iam) == []
    assert REMOVE_FROM_GROUP.apply(moto_session, target).already_done
    with recording(moto_session) as calls:
        undone = REMOVE_FROM_GROUP.undo(moto_session, target, applied.before)
    assert_declared(calls, REMOVE_FROM_GROUP.undo_permissions)
    assert members(iam) == ["alice"] and undone.after == applied.before


def test_remove_user_from_group_can_be_restored_by_hand(moto_session, iam, admins):
    target = user_target("alice", "/ops/", group_name="admins")
    applied = REMOVE_FROM_GROUP.apply(moto_session, target)
    text = restore_by_hand(iam, REMOVE_FROM_GROUP, target, applied.before)
    assert text.startswith("Add IAM user alice to group admins")
    assert members(iam) == ["alice"]


def test_remove_user_from_group_needs_both_names(moto_session, iam, admins):
    target = Target.from_finding("admin-policy", f"arn:aws:iam::{ACCOUNT_ID}:group/admins", {})
    plan = REMOVE_FROM_GROUP.plan(moto_session, target)
    assert not plan.possible and "user name" in (plan.reason or "")


def test_undo_remove_from_a_group_deleted_since(moto_session, iam, admins):
    target = user_target("alice", "/ops/", group_name="admins")
    applied = REMOVE_FROM_GROUP.apply(moto_session, target)
    iam.delete_group(GroupName="admins")
    with pytest.raises(RemediationError, match="NoSuchEntity"):
        REMOVE_FROM_GROUP.undo(moto_session, target, applied.before)
