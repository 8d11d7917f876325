"""Apply a right-sizing proposal (`unused-permissions`): the policy loses what went unused.

* Customer managed policy: a new version with the proposed document becomes the default.
  At IAM's limit of 5 versions the oldest non-default one is deleted first (its document
  is in the before-state). Undo makes the previous default version the default again,
  deletes the version the apply created, and puts a pruned version back (as a new,
  non-default version: IAM numbers versions itself).
* Inline policy: the document is replaced; undo puts the previous document back.

The proposal travels in the target (`Target.proposal`, from the finding), with the digest
of the document it was computed from (`proposal_base`): a policy edited since the scan is
refused ("scan again"), never overwritten with a proposal made for another document.

What the apply writes only takes access away (`checks.rightsize.never_grants_more` is
checked again here against the live document), but IAM cannot tell: CreatePolicyVersion and
Put*Policy can grant anything. So this action runs, apply and undo, under Steward's restore
role only (`apply_needs_restore`), never under the default reduce-only role.
"""

from __future__ import annotations

import json
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
    require,
)
from checks.remediate.policies import _per_kind, cli_name, principal
from checks.rightsize import digest, never_grants_more

VERSION_LIMIT = 5


def _document(value: Any) -> dict[str, Any] | None:
    from checks.policy import load_document

    loaded = load_document(value)
    return dict(loaded) if loaded is not None else None


class RightsizePolicy(Action):
    id = "rightsize-policy"
    title = "Apply right-sized policy"
    reversible = True
    reduces_access_only = True  # the new document is checked to grant nothing the old did not
    apply_needs_restore = True
    apply_restore_why = "writing a policy version needs it"
    permissions = frozenset({"iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions",
                             "iam:CreatePolicyVersion", "iam:DeletePolicyVersion"}) | (
        _per_kind("iam:Get{kind}Policy") | _per_kind("iam:List{kind}Policies") | _per_kind("iam:Put{kind}Policy"))
    undo_permissions = frozenset({"iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions",
                                  "iam:SetDefaultPolicyVersion", "iam:CreatePolicyVersion",
                                  "iam:DeletePolicyVersion"}) | (
        _per_kind("iam:Get{kind}Policy") | _per_kind("iam:List{kind}Policies") | _per_kind("iam:Put{kind}Policy"))

    # -- state ----------------------------------------------------------------------------

    def read(self, iam: Iam, target: Target) -> State:
        require(target, "proposal")
        if target.policy_arn:
            return self._read_managed(iam, target)
        require(target, "policy_name")
        kind, who = principal(target)
        names = iam.items(f"list_{kind}_policies", "PolicyNames", missing=True, **who)
        if names is None:
            raise Impossible(f"{target.label} no longer exists")
        state: State = {"kind": "inline", "principal_type": kind, "principal_name": target.principal_name,
                        "policy_name": target.policy_name, "exists": target.policy_name in names}
        if not state["exists"]:
            raise Impossible(f"{target.label} has no inline policy {target.policy_name} any more")
        got = iam.read(f"get_{kind}_policy", PolicyName=target.policy_name, **who) or {}
        state["document"] = _document(got.get("PolicyDocument"))
        return state

    def _read_managed(self, iam: Iam, target: Target) -> State:
        arn = str(target.policy_arn)
        got = iam.read("get_policy", missing=True, PolicyArn=arn)
        if got is None:
            raise Impossible(f"the policy {arn} no longer exists")
        default = got["Policy"]["DefaultVersionId"]
        version = (iam.read("get_policy_version", PolicyArn=arn, VersionId=default) or {}).get("PolicyVersion") or {}
        listed = iam.items("list_policy_versions", "Versions", PolicyArn=arn) or []
        versions = sorted(({"version_id": v["VersionId"], "default": bool(v.get("IsDefaultVersion")),
                            "created": str(v.get("CreateDate") or "")} for v in listed),
                          key=lambda v: (v["created"], int(v["version_id"].lstrip("v") or 0)))
        state: State = {"kind": "managed", "policy_arn": arn, "policy_name": got["Policy"].get("PolicyName"),
                        "default_version_id": default, "document": _document(version.get("Document")),
                        "versions": versions}
        prunable = [v for v in versions if not v["default"]]
        if len(versions) >= VERSION_LIMIT and prunable:
            oldest = prunable[0]["version_id"]
            doc = (iam.read("get_policy_version", PolicyArn=arn, VersionId=oldest) or {}).get("PolicyVersion") or {}
            state["prune"] = {"version_id": oldest, "document": _document(doc.get("Document"))}
        return state

    def assess(self, target: Target, state: State) -> Plan:
        proposal = json.loads(str(target.proposal))
        current = state.get("document")
        what = (f"the managed policy {state.get('policy_name') or state.get('policy_arn')}"
                if state["kind"] == "managed" else f"the inline policy {state['policy_name']} of {target.label}")
        if current is not None and digest(current) == digest(proposal):
            return Plan(self.id, f"Already done: {what} is the right-sized one.", already_done=True)
        if current is None or (target.proposal_base and digest(current) != target.proposal_base):
            reason = f"{what} changed since the proposal was made; the next scan proposes again"
            return Plan(self.id, f"Cannot apply: {reason}.", possible=False, reason=reason)
        problems = never_grants_more(current, proposal)
        if problems:
            reason = f"the proposal would not only reduce {what}: {problems[0]}"
            return Plan(self.id, f"Cannot apply: {reason}.", possible=False, reason=reason)
        if state["kind"] == "managed":
            prune = state.get("prune")
            pruned = (f" (IAM keeps 5 versions: the oldest, {prune['version_id']}, is deleted first and kept in "
                      "the before-state)") if prune else ""
            return Plan(self.id, f"Make a right-sized version of {what} the default in account "
                                 f"{target.account_id}{pruned}; undo makes {state['default_version_id']} the "
                                 "default again.")
        return Plan(self.id, f"Replace the document of {what} in account {target.account_id} with the "
                             "right-sized one; undo puts the previous document back.")

    # -- writes ---------------------------------------------------------------------------

    def change(self, iam: Iam, target: Target, state: State) -> None:
        text = str(target.proposal)
        if state["kind"] == "managed":
            if state.get("prune"):
                iam.write("delete_policy_version", missing=True, PolicyArn=state["policy_arn"],
                          VersionId=state["prune"]["version_id"])
            iam.write("create_policy_version", PolicyArn=state["policy_arn"], PolicyDocument=text, SetAsDefault=True)
            return
        kind, who = principal(target)
        iam.write(f"put_{kind}_policy", PolicyName=state["policy_name"], PolicyDocument=text, **who)

    def revert(self, iam: Iam, target: Target, before: State, current: State) -> bool:
        if digest(current.get("document") or {}) == digest(before.get("document") or {}):
            return False
        proposal = json.loads(str(target.proposal))
        if digest(current.get("document") or {}) != digest(proposal):
            raise RemediationError(
                f"cannot undo on {target.label}: the policy was changed again since Steward right-sized it; "
                "not overwriting that change (the previous document is in the before-state)")
        if before["kind"] == "inline":
            kind, who = principal(target)
            return iam.write(f"put_{kind}_policy", PolicyName=before["policy_name"],
                             PolicyDocument=json.dumps(before["document"]), **who)
        arn = before["policy_arn"]
        ours = current["default_version_id"]
        still_there = {v["version_id"] for v in current.get("versions") or ()}
        if before["default_version_id"] in still_there:
            iam.write("set_default_policy_version", PolicyArn=arn, VersionId=before["default_version_id"])
        else:
            iam.write("create_policy_version", PolicyArn=arn, PolicyDocument=json.dumps(before["document"]),
                      SetAsDefault=True)
        iam.write("delete_policy_version", missing=True, PolicyArn=arn, VersionId=ours)
        prune = before.get("prune")
        if prune and prune.get("document") is not None:
            iam.write("create_policy_version", PolicyArn=arn, PolicyDocument=json.dumps(prune["document"]),
                      SetAsDefault=False)
        return True

    def restore_by_hand(self, target: Target, before: Mapping[str, Any]) -> str:
        if before.get("kind") == "inline":
            kind = before.get("principal_type", target.principal_type)
            text = json.dumps(before.get("document"), separators=(",", ":"))
            return (f"Put the previous document of the inline policy {before.get('policy_name')} of "
                    f"{target.label} back:\naws iam put-{kind}-policy {cli_name(kind, target.principal_name)} "
                    f"--policy-name {shlex.quote(str(before.get('policy_name')))} --policy-document {shlex.quote(text)}")
        return (f"Make version {before.get('default_version_id')} of {before.get('policy_arn')} the default again:\n"
                f"aws iam set-default-policy-version --policy-arn {shlex.quote(str(before.get('policy_arn')))} "
                f"--version-id {shlex.quote(str(before.get('default_version_id')))}")

    def apply_by_hand(self, target: Target) -> str:
        """What an administrator runs when Steward may not write policies (restore role off)."""
        text = str(target.proposal)
        if target.policy_arn:
            return (f"Create the right-sized version of {target.policy_arn} as the default:\n"
                    f"aws iam create-policy-version --policy-arn {shlex.quote(target.policy_arn)} "
                    f"--set-as-default --policy-document {shlex.quote(text)}")
        kind = target.principal_type
        return (f"Replace the inline policy {target.policy_name} of {target.label}:\n"
                f"aws iam put-{kind}-policy {cli_name(kind, target.principal_name)} "
                f"--policy-name {shlex.quote(str(target.policy_name))} --policy-document {shlex.quote(text)}")
