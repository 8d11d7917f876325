"""Policy actions on a user, group or role: detach a managed policy, delete an inline one.

Both snapshot the policy document before changing anything (docs/architecture.md §4, Remediation): a detached
managed policy keeps existing, but its default version may change later, so the before-
state records the version and document that were in force; a deleted inline policy exists
nowhere else, so its document is what undo puts back. Undo re-attaches / re-puts only
what the apply removed, and refuses to overwrite an inline policy of the same name that
someone put there since.

Detaching `AWSDenyAll` or an `AWSCompromisedKeyQuarantine*` policy is refused: those only
take access away, and detaching them would lift a quarantine (undo the quarantine instead).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from checks.policy import is_aws_quarantine
from checks.remediate.base import (
    Action,
    Iam,
    Impossible,
    Plan,
    RemediationError,
    State,
    Target,
    require,
)

KINDS = ("user", "group", "role")
NAME_PARAM = {"user": "UserName", "group": "GroupName", "role": "RoleName"}


def principal(target: Target) -> tuple[str, dict[str, str]]:
    """(kind, {UserName|GroupName|RoleName: name}) of a user, group or role target."""
    if target.principal_type not in KINDS or not target.principal_name:
        raise Impossible(f"{target.resource} is not an IAM user, group or role")
    kind = target.principal_type
    return kind, {NAME_PARAM[kind]: target.principal_name}


def cli_name(kind: str, name: str | None) -> str:
    """`--user-name alice` for the AWS CLI."""
    return f"--{kind}-name {shlex.quote(str(name))}"


def _per_kind(template: str) -> frozenset[str]:
    return frozenset(template.format(kind=k.capitalize()) for k in KINDS)


class DetachManagedPolicy(Action):
    id = "detach-managed-policy"
    title = "Detach managed policy"
    reversible = True
    reduces_access_only = False  # privilege-changing (the policy may hold a Deny): approver
    permissions = (
        _per_kind("iam:ListAttached{kind}Policies")
        | _per_kind("iam:Detach{kind}Policy")
        | frozenset({"iam:GetPolicy", "iam:GetPolicyVersion"})
    )
    undo_permissions = (
        _per_kind("iam:ListAttached{kind}Policies")
        | _per_kind("iam:Attach{kind}Policy")
        | frozenset({"iam:GetPolicy", "iam:GetPolicyVersion"})
    )

    def read(self, iam: Iam, target: Target) -> State:
        kind, who = principal(target)
        if not target.policy_arn and target.policy_name:
            raise Impossible(
                f"the finding names the inline policy {target.policy_name}; "
                "delete-inline-policy removes inline policies"
            )
        require(target, "policy_arn")
        attached = iam.items(
            f"list_attached_{kind}_policies", "AttachedPolicies", missing=True, **who
        )
        if attached is None:
            raise Impossible(f"{target.label} no longer exists")
        state: State = {
            "principal_type": kind,
            "principal_name": target.principal_name,
            "policy_arn": target.policy_arn,
            "attached": any(p["PolicyArn"] == target.policy_arn for p in attached),
        }
        if state["attached"]:
            state.update(self._policy(iam, str(target.policy_arn)))
        return state

    @staticmethod
    def _policy(iam: Iam, arn: str) -> dict[str, Any]:
        """The policy's name, default version and that version's document."""
        got = iam.read("get_policy", missing=True, PolicyArn=arn)
        if got is None:  # deleted a moment ago; nothing to snapshot
            return {"policy_name": arn.rsplit("/", 1)[-1]}
        meta = got["Policy"]
        version = iam.read(
            "get_policy_version", PolicyArn=arn, VersionId=meta["DefaultVersionId"]
        ) or {}
        return {
            "policy_name": meta.get("PolicyName"),
            "default_version_id": meta["DefaultVersionId"],
            "document": (version.get("PolicyVersion") or {}).get("Document"),
        }

    def assess(self, target: Target, state: State) -> Plan:
        arn = state["policy_arn"]
        if is_aws_quarantine(arn):
            reason = (
                f"{arn.rsplit('/', 1)[-1]} only denies access; detaching it would lift a "
                "quarantine (undo the quarantine instead)"
            )
            return Plan(self.id, f"Cannot detach: {reason}.", possible=False, reason=reason)
        if not state["attached"]:
            return Plan(self.id, f"Already done: {arn} is not attached to {target.label}.",
                        already_done=True)
        return Plan(
            self.id,
            f"Detach the managed policy {state.get('policy_name') or arn} ({arn}) from "
            f"{target.label} in account {target.account_id}: it loses what the policy grants; "
            "undo attaches it again.",
        )

    def change(self, iam: Iam, target: Target, state: State) -> None:
        kind, who = principal(target)
        iam.write(f"detach_{kind}_policy", missing=True, PolicyArn=state["policy_arn"], **who)

    def restore_by_hand(self, target: Target, before: Mapping[str, Any]) -> str:
        kind, arn = before.get("principal_type", target.principal_type), before.get("policy_arn")
        return (
            f"Attach the managed policy {before.get('policy_name') or arn} to {target.label} "
            f"in account {target.account_id} again:\n"
            f"aws iam attach-{kind}-policy {cli_name(kind, target.principal_name)} "
            f"--policy-arn {shlex.quote(str(arn))}"
        )

    def revert(self, iam: Iam, target: Target, before: State, current: State) -> bool:
        if not before.get("attached") or current["attached"]:
            return False
        kind, who = principal(target)
        try:
            return iam.write(f"attach_{kind}_policy", PolicyArn=current["policy_arn"], **who)
        except RemediationError as exc:
            if exc.code != "NoSuchEntity":
                raise
            raise RemediationError(
                f"cannot attach {current['policy_arn']} to {target.label} again: the policy no "
                "longer exists (its document is in the before-state)",
                code=exc.code,
            ) from exc


class DeleteInlinePolicy(Action):
    id = "delete-inline-policy"
    title = "Delete inline policy"
    reversible = True
    reduces_access_only = False  # privilege-changing (the policy may hold a Deny): approver
    permissions = (
        _per_kind("iam:List{kind}Policies")
        | _per_kind("iam:Get{kind}Policy")
        | _per_kind("iam:Delete{kind}Policy")
    )
    undo_permissions = (
        _per_kind("iam:List{kind}Policies")
        | _per_kind("iam:Get{kind}Policy")
        | _per_kind("iam:Put{kind}Policy")
    )

    def read(self, iam: Iam, target: Target) -> State:
        kind, who = principal(target)
        require(target, "policy_name")
        names = iam.items(f"list_{kind}_policies", "PolicyNames", missing=True, **who)
        if names is None:
            raise Impossible(f"{target.label} no longer exists")
        state: State = {
            "principal_type": kind,
            "principal_name": target.principal_name,
            "policy_name": target.policy_name,
            "exists": target.policy_name in names,
        }
        if state["exists"]:
            got = iam.read(f"get_{kind}_policy", PolicyName=target.policy_name, **who) or {}
            state["document"] = got.get("PolicyDocument")
        return state

    def assess(self, target: Target, state: State) -> Plan:
        name = state["policy_name"]
        if not state["exists"]:
            return Plan(self.id, f"Already done: {target.label} has no inline policy {name}.",
                        already_done=True)
        return Plan(
            self.id,
            f"Delete the inline policy {name} of {target.label} in account "
            f"{target.account_id}: it loses what the policy grants; the document is kept and "
            "undo puts it back.",
        )

    def change(self, iam: Iam, target: Target, state: State) -> None:
        kind, who = principal(target)
        iam.write(f"delete_{kind}_policy", missing=True, PolicyName=state["policy_name"], **who)

    def restore_by_hand(self, target: Target, before: Mapping[str, Any]) -> str:
        kind, name = before.get("principal_type", target.principal_type), before.get("policy_name")
        document = before.get("document")
        text = document if isinstance(document, str) else json.dumps(document, separators=(",", ":"))
        return (
            f"Put the inline policy {name} back on {target.label} in account "
            f"{target.account_id} (its document is `document` in the before-state):\n"
            f"aws iam put-{kind}-policy {cli_name(kind, target.principal_name)} "
            f"--policy-name {shlex.quote(str(name))} --policy-document {shlex.quote(text)}"
        )

    def revert(self, iam: Iam, target: Target, before: State, current: State) -> bool:
        if not before.get("exists"):
            return False
        if current["exists"]:
            if current.get("document") == before.get("document"):
                return False
            raise RemediationError(
                f"cannot put back the inline policy {current['policy_name']} of "
                f"{target.label}: a different policy of that name was put there since; "
                "not overwriting it"
            )
        document = before["document"]
        kind, who = principal(target)
        return iam.write(
            f"put_{kind}_policy",
            PolicyName=current["policy_name"],
            PolicyDocument=document if isinstance(document, str) else json.dumps(document),
            **who,
        )
