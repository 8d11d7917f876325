"""Delete an unused role (with an approver), keeping everything needed to recreate it.

IAM only deletes a role with nothing attached, so the apply takes it out of its instance
profiles, deletes its inline policies, detaches its managed policies and then deletes it.
The before-state records all of it (trust policy, path, description, session length,
permissions boundary, tags, inline documents, managed policy ARNs, instance profiles), so an
approved undo under the restore role recreates the role as it was. The new role has a new
unique id: a trust policy elsewhere that named the old role must be saved again to name the
new one (IAM replaced the ARN by the old id when the role was deleted). Service-linked roles
are refused: their service deletes them.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from checks.remediate.base import (
    Action,
    Iam,
    Impossible,
    Plan,
    RemediationError,
    State,
    Target,
    counted,
)

SERVICE_LINKED_PATH = "/aws-service-role/"


def _document(value: Any) -> Any:
    """IAM returns policy documents URL-encoded in some SDKs and as dicts in boto3."""
    if isinstance(value, str):
        try:
            return json.loads(unquote(value))
        except ValueError:
            return value
    return value


def _text(document: Any) -> str:
    return document if isinstance(document, str) else json.dumps(document, separators=(",", ":"))


class DeleteRole(Action):
    id = "delete-role"
    title = "Delete role"
    reversible = True  # recreated from the before-state, under the restore role
    reduces_access_only = False  # whoever relied on it loses it, and undo grants: an approver
    permissions = frozenset({
        "iam:GetRole", "iam:ListRolePolicies", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies",
        "iam:ListInstanceProfilesForRole", "iam:ListRoleTags",
        "iam:RemoveRoleFromInstanceProfile", "iam:DeleteRolePolicy", "iam:DetachRolePolicy", "iam:DeleteRole",
    })
    undo_permissions = frozenset({
        "iam:GetRole", "iam:ListRolePolicies", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies",
        "iam:ListInstanceProfilesForRole", "iam:ListRoleTags",
        "iam:CreateRole", "iam:TagRole", "iam:PutRolePermissionsBoundary", "iam:PutRolePolicy",
        "iam:AttachRolePolicy", "iam:AddRoleToInstanceProfile",
    })

    def read(self, iam: Iam, target: Target) -> State:
        if target.principal_type != "role" or not target.principal_name:
            raise Impossible(f"{target.resource} is not an IAM role")
        name = target.principal_name
        got = iam.read("get_role", missing=True, RoleName=name)
        if got is None:
            return {"exists": False, "role_name": name}
        role = got["Role"]
        inline = {
            policy: _document((iam.read("get_role_policy", RoleName=name, PolicyName=policy) or {})
                              .get("PolicyDocument"))
            for policy in iam.items("list_role_policies", "PolicyNames", RoleName=name) or []
        }
        attached = [p["PolicyArn"] for p in iam.items("list_attached_role_policies", "AttachedPolicies",
                                                      RoleName=name) or []]
        profiles = [p["InstanceProfileName"] for p in iam.items("list_instance_profiles_for_role",
                                                                "InstanceProfiles", RoleName=name) or []]
        tags = iam.items("list_role_tags", "Tags", RoleName=name) or []
        return {
            "exists": True,
            "role_name": name,
            "path": role.get("Path", "/"),
            "trust_policy": _document(role.get("AssumeRolePolicyDocument")),
            "description": role.get("Description") or "",
            "max_session_duration": int(role.get("MaxSessionDuration") or 3600),
            "permissions_boundary": (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn"),
            "tags": [{"Key": t["Key"], "Value": t["Value"]} for t in tags],
            "inline_policies": inline,
            "managed_policies": sorted(attached),
            "instance_profiles": sorted(profiles),
            "role_id": role.get("RoleId"),
        }

    def assess(self, target: Target, state: State) -> Plan:
        name = state["role_name"]
        if not state["exists"]:
            return Plan(self.id, f"Already done: the role {name} no longer exists.", already_done=True)
        if str(state.get("path", "")).startswith(SERVICE_LINKED_PATH):
            reason = "it is a service-linked role: delete it through the service that created it"
            return Plan(self.id, f"Cannot delete the role {name}: {reason}.", False, reason)
        steps = []
        if state["instance_profiles"]:
            steps.append(f"take it out of {counted(len(state['instance_profiles']), 'instance profile')}")
        if state["inline_policies"]:
            steps.append(f"delete {counted(len(state['inline_policies']), 'inline policy', 'inline policies')}")
        if state["managed_policies"]:
            steps.append(f"detach {counted(len(state['managed_policies']), 'managed policy', 'managed policies')}")
        first = f" ({', '.join(steps)} first)" if steps else ""
        return Plan(
            self.id,
            f"Delete the role {name} in account {target.account_id}{first}. Its trust policy, policies, "
            "tags and instance profiles are recorded; undo recreates it (with a new role id: trust "
            "policies elsewhere that named it must be saved again).",
        )

    def change(self, iam: Iam, target: Target, state: State) -> None:
        name = state["role_name"]
        for profile in state["instance_profiles"]:
            iam.write("remove_role_from_instance_profile", missing=True, InstanceProfileName=profile, RoleName=name)
        for policy in state["inline_policies"]:
            iam.write("delete_role_policy", missing=True, RoleName=name, PolicyName=policy)
        for arn in state["managed_policies"]:
            iam.write("detach_role_policy", missing=True, RoleName=name, PolicyArn=arn)
        iam.write("delete_role", missing=True, RoleName=name)

    def revert(self, iam: Iam, target: Target, before: State, current: State) -> bool:
        if not before.get("exists"):
            return False
        name = before["role_name"]
        if current.get("exists"):
            raise RemediationError(f"cannot recreate the role {name}: a role of that name exists again; "
                                   "not overwriting it")
        params: dict[str, Any] = {
            "RoleName": name, "Path": before.get("path") or "/",
            "AssumeRolePolicyDocument": _text(before["trust_policy"]),
            "MaxSessionDuration": int(before.get("max_session_duration") or 3600),
        }
        if before.get("description"):
            params["Description"] = before["description"]
        if before.get("permissions_boundary"):
            params["PermissionsBoundary"] = before["permissions_boundary"]
        if before.get("tags"):
            params["Tags"] = before["tags"]
        iam.write("create_role", **params)
        for policy, document in (before.get("inline_policies") or {}).items():
            iam.write("put_role_policy", RoleName=name, PolicyName=policy, PolicyDocument=_text(document))
        for arn in before.get("managed_policies") or []:
            iam.write("attach_role_policy", missing=True, RoleName=name, PolicyArn=arn)
        for profile in before.get("instance_profiles") or []:
            iam.write("add_role_to_instance_profile", missing=True, InstanceProfileName=profile, RoleName=name)
        return True

    def restore_by_hand(self, target: Target, before: Mapping[str, Any]) -> str:
        name = str(before.get("role_name") or target.principal_name)
        lines = [
            f"Recreate the role {name} in account {target.account_id} from the before-state below:",
            f"aws iam create-role --role-name {shlex.quote(name)} --path {shlex.quote(str(before.get('path') or '/'))} "
            f"--assume-role-policy-document {shlex.quote(_text(before.get('trust_policy')))}",
        ]
        for policy, document in (before.get("inline_policies") or {}).items():
            lines.append(f"aws iam put-role-policy --role-name {shlex.quote(name)} --policy-name "
                         f"{shlex.quote(policy)} --policy-document {shlex.quote(_text(document))}")
        for arn in before.get("managed_policies") or []:
            lines.append(f"aws iam attach-role-policy --role-name {shlex.quote(name)} --policy-arn {shlex.quote(arn)}")
        for profile in before.get("instance_profiles") or []:
            lines.append(f"aws iam add-role-to-instance-profile --role-name {shlex.quote(name)} "
                         f"--instance-profile-name {shlex.quote(profile)}")
        return "\n".join(lines)
