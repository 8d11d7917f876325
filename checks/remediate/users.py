"""IAM user actions: quarantine, remove the console password, delete, remove from a group.

Quarantine is the reversible first step before deleting a user (docs/architecture.md §4, Remediation): it attaches
the AWS managed `AWSDenyAll` policy (an explicit Deny of everything, which no Allow
overrides, console included) and deactivates the user's active access keys. Its undo
detaches the policy only if the quarantine attached it, and reactivates exactly the keys
the quarantine deactivated: a key that was already inactive, or created since, stays as
it is. Pass `undo` the `before` of the *first* apply (the one `on_before` received): a
second apply sees the quarantine in place and records that as its before-state.

Deleting a user is refused unless it is quarantined. The before-state is a complete
snapshot (groups, attached policies, inline policy documents, tags, access keys by id and
status, MFA devices, login profile presence, signing certificates, SSH public keys,
service-specific credentials, permissions boundary); then everything is torn down in the
order AWS requires and the user is deleted. `AWSDenyAll` is detached last, just before
DeleteUser, and attached again if the deletion fails, so a failed delete leaves the user
quarantined. A DeleteConflict (something was added meanwhile) triggers one more teardown
of whatever remains; a second conflict fails with a message naming what still blocks.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from checks.remediate.base import (
    Action,
    Iam,
    Impossible,
    Plan,
    RemediationError,
    State,
    Target,
    counted,
    iso,
    require,
)
from checks.remediate.keys import ACTIVE, INACTIVE, user_keys

DENY_ALL = "AWSDenyAll"


def attached_user_policies(iam: Iam, user_name: str) -> list[dict[str, str]] | None:
    listed = iam.items(
        "list_attached_user_policies", "AttachedPolicies", missing=True, UserName=user_name
    )
    if listed is None:
        return None
    return [{"name": p["PolicyName"], "arn": p["PolicyArn"]} for p in listed]


def user_gone(name: str | None) -> Impossible:
    return Impossible(f"IAM user {name} no longer exists")


# ---------------------------------------------------------------------------------------


class QuarantineUser(Action):
    id = "quarantine-user"
    title = "Quarantine user"
    reversible = True
    reduces_access_only = True
    permissions = frozenset(
        {
            "iam:ListAttachedUserPolicies",
            "iam:ListAccessKeys",
            "iam:AttachUserPolicy",
            "iam:UpdateAccessKey",
        }
    )
    undo_permissions = frozenset(
        {
            "iam:ListAttachedUserPolicies",
            "iam:ListAccessKeys",
            "iam:DetachUserPolicy",
            "iam:UpdateAccessKey",
        }
    )

    def read(self, iam: Iam, target: Target) -> State:
        require(target, "user_name")
        name = str(target.user_name)
        attached = attached_user_policies(iam, name)
        keys = user_keys(iam, name) if attached is not None else None
        if attached is None or keys is None:
            raise user_gone(name)
        deny = target.aws_policy_arn(DENY_ALL)
        return {
            "user_name": name,
            "deny_all_arn": deny,
            "deny_all_attached": any(p["arn"] == deny for p in attached),
            "access_keys": keys,
        }

    def assess(self, target: Target, state: State) -> Plan:
        active = [k["access_key_id"] for k in state["access_keys"] if k["status"] == ACTIVE]
        if state["deny_all_attached"] and not active:
            return Plan(
                self.id,
                f"Already done: {target.label} has {DENY_ALL} attached and no active access key.",
                already_done=True,
            )
        steps = []
        if not state["deny_all_attached"]:
            steps.append(f"attach {DENY_ALL} (every request the user makes is denied, "
                         "console included)")
        if active:
            steps.append(f"deactivate its {counted(len(active), 'active access key')} "
                         f"({', '.join(active)})")
        return Plan(
            self.id,
            f"Quarantine {target.label} in account {target.account_id}: {' and '.join(steps)}; "
            "undo reverses exactly these changes.",
        )

    def change(self, iam: Iam, target: Target, state: State) -> None:
        name = state["user_name"]
        if not state["deny_all_attached"]:
            iam.write("attach_user_policy", UserName=name, PolicyArn=state["deny_all_arn"])
        for key in state["access_keys"]:
            if key["status"] == ACTIVE:
                iam.write("update_access_key", UserName=name,
                          AccessKeyId=key["access_key_id"], Status=INACTIVE)

    def revert(self, iam: Iam, target: Target, before: State, current: State) -> bool:
        name = current["user_name"]
        changed = False
        if not before.get("deny_all_attached") and current["deny_all_attached"]:
            changed |= iam.write("detach_user_policy", missing=True, UserName=name,
                                 PolicyArn=current["deny_all_arn"])
        now = {k["access_key_id"]: k["status"] for k in current["access_keys"]}
        for key in before.get("access_keys", ()):
            # Only the keys this quarantine deactivated; a key deleted since stays deleted.
            if key["status"] == ACTIVE and now.get(key["access_key_id"]) == INACTIVE:
                changed |= iam.write("update_access_key", missing=True, UserName=name,
                                     AccessKeyId=key["access_key_id"], Status=ACTIVE)
        return changed


# ---------------------------------------------------------------------------------------


class RemoveConsolePassword(Action):
    id = "remove-console-password"
    title = "Remove console password"
    reversible = False
    reduces_access_only = False  # irreversible: needs a security approver
    permissions = frozenset({"iam:GetLoginProfile", "iam:GetUser", "iam:DeleteLoginProfile"})

    def read(self, iam: Iam, target: Target) -> State:
        require(target, "user_name")
        name = str(target.user_name)
        profile = iam.read("get_login_profile", missing=True, UserName=name)
        if profile is None:
            if iam.read("get_user", missing=True, UserName=name) is None:
                raise user_gone(name)
            return {"user_name": name, "login_profile": False}
        lp = profile.get("LoginProfile") or {}
        return {
            "user_name": name,
            "login_profile": True,
            "created": iso(lp.get("CreateDate")),
            "password_reset_required": bool(lp.get("PasswordResetRequired", False)),
        }

    def assess(self, target: Target, state: State) -> Plan:
        if not state["login_profile"]:
            return Plan(self.id, f"Already done: {target.label} has no console password.",
                        already_done=True)
        return Plan(
            self.id,
            f"Remove the console password of {target.label} in account {target.account_id}: "
            "the user can no longer sign in to the AWS console (access keys are not affected).",
            irreversible_warning=(
                "This cannot be undone: the password is gone, and signing in again needs an "
                "administrator to set a new one."
            ),
        )

    def change(self, iam: Iam, target: Target, state: State) -> None:
        iam.write("delete_login_profile", missing=True, UserName=state["user_name"])


# ---------------------------------------------------------------------------------------
# Delete user


def user_snapshot(iam: Iam, name: str) -> State | None:
    """Everything attached to the user, or None when it does not exist. No secrets."""
    got = iam.read("get_user", missing=True, UserName=name)
    if got is None:
        return None
    user = got["User"]

    def listed(method: str, key: str) -> list[Any]:
        return iam.items(method, key, UserName=name) or []

    inline = {
        policy: (iam.read("get_user_policy", UserName=name, PolicyName=policy) or {}).get(
            "PolicyDocument"
        )
        for policy in sorted(listed("list_user_policies", "PolicyNames"))
    }
    profile = iam.read("get_login_profile", missing=True, UserName=name)
    boundary = user.get("PermissionsBoundary") or {}
    return {
        "exists": True,
        "user_name": name,
        "user_id": user.get("UserId"),
        "arn": user.get("Arn"),
        "path": user.get("Path", "/"),
        "created": iso(user.get("CreateDate")),
        "permissions_boundary": boundary.get("PermissionsBoundaryArn"),
        "tags": {t["Key"]: t.get("Value", "") for t in listed("list_user_tags", "Tags")},
        "groups": sorted(g["GroupName"] for g in listed("list_groups_for_user", "Groups")),
        "attached_policies": attached_user_policies(iam, name) or [],
        "inline_policies": inline,
        "access_keys": user_keys(iam, name) or [],
        "mfa_devices": [
            {"serial_number": d["SerialNumber"], "enabled": iso(d.get("EnableDate"))}
            for d in listed("list_mfa_devices", "MFADevices")
        ],
        "login_profile": profile is not None,
        "signing_certificates": [
            {
                "certificate_id": c["CertificateId"],
                "status": c.get("Status"),
                "uploaded": iso(c.get("UploadDate")),
            }
            for c in listed("list_signing_certificates", "Certificates")
        ],
        "ssh_public_keys": [
            {
                "ssh_public_key_id": k["SSHPublicKeyId"],
                "status": k.get("Status"),
                "uploaded": iso(k.get("UploadDate")),
            }
            for k in listed("list_ssh_public_keys", "SSHPublicKeys")
        ],
        "service_specific_credentials": [
            {
                "service_specific_credential_id": c["ServiceSpecificCredentialId"],
                "service_name": c.get("ServiceName"),
                "service_user_name": c.get("ServiceUserName"),
                "status": c.get("Status"),
                "created": iso(c.get("CreateDate")),
            }
            for c in listed("list_service_specific_credentials", "ServiceSpecificCredentials")
        ],
    }


def attachments(snapshot: State, deny_arn: str = "") -> list[tuple[str, list[str]]]:
    """(what, ids) for everything in a snapshot that blocks DeleteUser, in teardown order;
    `deny_arn` is left out of the attached policies."""
    return [
        ("console password", ["login profile"] if snapshot["login_profile"] else []),
        ("access keys", [k["access_key_id"] for k in snapshot["access_keys"]]),
        ("signing certificates", [c["certificate_id"] for c in snapshot["signing_certificates"]]),
        ("SSH public keys", [k["ssh_public_key_id"] for k in snapshot["ssh_public_keys"]]),
        (
            "service-specific credentials",
            [c["service_specific_credential_id"] for c in snapshot["service_specific_credentials"]],
        ),
        ("MFA devices", [d["serial_number"] for d in snapshot["mfa_devices"]]),
        ("inline policies", list(snapshot["inline_policies"])),
        ("attached policies",
         [p["arn"] for p in snapshot["attached_policies"] if p["arn"] != deny_arn]),
        ("group memberships", list(snapshot["groups"])),
    ]


def blockers(snapshot: State | None, deny_arn: str = "") -> str:
    """What still hangs on the user, named, for an error message."""
    if snapshot is None:
        return "nothing (the user is gone)"
    found = [f"{what} {', '.join(ids)}" for what, ids in attachments(snapshot, deny_arn) if ids]
    return "; ".join(found) or "nothing Steward can list"


class DeleteUser(Action):
    id = "delete-user"
    title = "Delete user"
    reversible = False
    reduces_access_only = False  # irreversible: needs a security approver
    # Steward deletes a user only after it quarantined the user itself and the wait has
    # passed (a deleted user cannot be restored with its credentials).
    needs_earlier = "quarantine-user"
    _reads = frozenset(
        {
            "iam:GetUser",
            "iam:ListGroupsForUser",
            "iam:ListAttachedUserPolicies",
            "iam:ListUserPolicies",
            "iam:GetUserPolicy",
            "iam:ListUserTags",
            "iam:ListAccessKeys",
            "iam:ListMFADevices",
            "iam:GetLoginProfile",
            "iam:ListSigningCertificates",
            "iam:ListSSHPublicKeys",
            "iam:ListServiceSpecificCredentials",
        }
    )
    permissions = _reads | frozenset(
        {
            "iam:DeleteLoginProfile",
            "iam:DeleteAccessKey",
            "iam:DeleteSigningCertificate",
            "iam:DeleteSSHPublicKey",
            "iam:DeleteServiceSpecificCredential",
            "iam:DeactivateMFADevice",
            "iam:DeleteVirtualMFADevice",
            "iam:DeleteUserPolicy",
            "iam:DetachUserPolicy",
            "iam:RemoveUserFromGroup",
            "iam:DeleteUser",
            # Re-quarantines the user when the deletion fails after AWSDenyAll was detached.
            "iam:AttachUserPolicy",
        }
    )

    def read(self, iam: Iam, target: Target) -> State:
        require(target, "user_name")
        name = str(target.user_name)
        deny = target.aws_policy_arn(DENY_ALL)
        snapshot = user_snapshot(iam, name)
        if snapshot is None:
            return {"exists": False, "user_name": name, "deny_all_arn": deny}
        return {**snapshot, "deny_all_arn": deny}

    def assess(self, target: Target, state: State) -> Plan:
        if not state["exists"]:
            return Plan(self.id, f"Already done: {target.label} no longer exists.",
                        already_done=True)
        deny = state["deny_all_arn"]
        if not any(p["arn"] == deny for p in state["attached_policies"]):
            reason = (
                f"{target.label} is not quarantined ({DENY_ALL} is not attached); "
                "quarantine it first and delete it once nothing broke"
            )
            return Plan(self.id, f"Cannot delete: {reason}.", possible=False, reason=reason)
        parts = [
            f"{what} ({len(ids)})" if what != "console password" else what
            for what, ids in attachments(state, deny)
            if ids
        ]
        removing = f", after removing its {', '.join(parts)}" if parts else ""
        return Plan(
            self.id,
            f"Delete {target.label} from account {target.account_id}{removing}; "
            "a snapshot of all of it is kept.",
            irreversible_warning=(
                "A deleted user cannot be restored: a user recreated with the same name gets a "
                "new id and none of the old credentials (password, keys, MFA). The snapshot "
                "records what it had."
            ),
        )

    def change(self, iam: Iam, target: Target, state: State) -> None:
        name, deny = state["user_name"], state["deny_all_arn"]
        self._teardown(iam, state, deny)
        for attempt in (1, 2):
            try:
                self._detach_and_delete(iam, name, deny)
                return
            except RemediationError as exc:
                failure = exc
            # AWSDenyAll may be detached by now: put the quarantine back first.
            problem = self._requarantine(iam, name, deny)
            if failure.code != "DeleteConflict" or attempt == 2 or problem:
                break
            # Something was added since the snapshot: tear down what remains, once more.
            remaining = user_snapshot(iam, name)
            if remaining is None:
                return
            self._teardown(iam, remaining, deny)
        message = failure.message
        if failure.code == "DeleteConflict":
            message = (
                f"cannot delete IAM user {name} in account {iam.account_id}: AWS reports "
                f"DeleteConflict{' again after a second teardown' if attempt == 2 else ''}; "
                f"still attached: {blockers(user_snapshot(iam, name), deny)}"
            )
        if problem:
            message += f"; and re-attaching {DENY_ALL} failed: {problem}"
        raise RemediationError(message, failure.retryable, code=failure.code) from failure

    @staticmethod
    def _teardown(iam: Iam, snapshot: State, deny: str) -> None:
        """Remove everything DeleteUser requires gone, in AWS's order, except AWSDenyAll."""
        user = {"UserName": snapshot["user_name"]}
        if snapshot["login_profile"]:
            iam.write("delete_login_profile", missing=True, **user)
        for key in snapshot["access_keys"]:
            iam.write("delete_access_key", missing=True, AccessKeyId=key["access_key_id"], **user)
        for cert in snapshot["signing_certificates"]:
            iam.write("delete_signing_certificate", missing=True,
                      CertificateId=cert["certificate_id"], **user)
        for key in snapshot["ssh_public_keys"]:
            iam.write("delete_ssh_public_key", missing=True,
                      SSHPublicKeyId=key["ssh_public_key_id"], **user)
        for cred in snapshot["service_specific_credentials"]:
            iam.write("delete_service_specific_credential", missing=True,
                      ServiceSpecificCredentialId=cred["service_specific_credential_id"], **user)
        for device in snapshot["mfa_devices"]:
            serial = device["serial_number"]
            iam.write("deactivate_mfa_device", missing=True, SerialNumber=serial, **user)
            if serial.startswith("arn:"):  # virtual; hardware devices have plain serials
                iam.write("delete_virtual_mfa_device", missing=True, SerialNumber=serial)
        for policy in snapshot["inline_policies"]:
            iam.write("delete_user_policy", missing=True, PolicyName=policy, **user)
        for policy in snapshot["attached_policies"]:
            if policy["arn"] != deny:
                iam.write("detach_user_policy", missing=True, PolicyArn=policy["arn"], **user)
        for group in snapshot["groups"]:
            iam.write("remove_user_from_group", missing=True, GroupName=group, **user)

    @staticmethod
    def _detach_and_delete(iam: Iam, name: str, deny: str) -> None:
        iam.write("detach_user_policy", missing=True, UserName=name, PolicyArn=deny)
        iam.write("delete_user", missing=True, UserName=name)

    @staticmethod
    def _requarantine(iam: Iam, name: str, deny: str) -> str | None:
        """Attach AWSDenyAll again after a failed deletion; the error message if that
        failed too (the user may be gone, or the role lack the permission)."""
        try:
            iam.write("attach_user_policy", UserName=name, PolicyArn=deny)
        except RemediationError as exc:
            return exc.message
        return None


# ---------------------------------------------------------------------------------------


class RemoveUserFromGroup(Action):
    id = "remove-user-from-group"
    title = "Remove user from group"
    reversible = True
    reduces_access_only = False  # privilege-changing (a group may hold a Deny): approver
    permissions = frozenset({"iam:ListGroupsForUser", "iam:RemoveUserFromGroup"})
    undo_permissions = frozenset({"iam:ListGroupsForUser", "iam:AddUserToGroup"})

    def read(self, iam: Iam, target: Target) -> State:
        require(target, "user_name", "group_name")
        groups = iam.items("list_groups_for_user", "Groups", missing=True,
                           UserName=target.user_name)
        if groups is None:
            raise user_gone(target.user_name)
        return {
            "user_name": target.user_name,
            "group_name": target.group_name,
            "member": any(g["GroupName"] == target.group_name for g in groups),
        }

    def assess(self, target: Target, state: State) -> Plan:
        who = f"IAM user {state['user_name']}"
        if not state["member"]:
            return Plan(self.id,
                        f"Already done: {who} is not in group {state['group_name']}.",
                        already_done=True)
        return Plan(
            self.id,
            f"Remove {who} from group {state['group_name']} in account {target.account_id}: "
            "the user loses what the group's policies grant; undo adds it back.",
        )

    def change(self, iam: Iam, target: Target, state: State) -> None:
        iam.write("remove_user_from_group", missing=True, UserName=state["user_name"],
                  GroupName=state["group_name"])

    def restore_by_hand(self, target: Target, before: Mapping[str, Any]) -> str:
        user, group = before.get("user_name"), before.get("group_name")
        return (
            f"Add IAM user {user} to group {group} in account {target.account_id} again:\n"
            f"aws iam add-user-to-group --user-name {shlex.quote(str(user))} "
            f"--group-name {shlex.quote(str(group))}"
        )

    def revert(self, iam: Iam, target: Target, before: State, current: State) -> bool:
        if not before.get("member") or current["member"]:
            return False
        return iam.write("add_user_to_group", UserName=current["user_name"],
                         GroupName=current["group_name"])
