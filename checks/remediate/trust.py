"""Restore a role's previous trust policy (an activity containment: `role-trust-opened`).

When someone opens a role's trust to another account or to everyone and the actor says it
was not them (or does not answer), the security channel may put back the trust policy the
role had before: the document the latest scan recorded in the principal inventory, carried
by the finding's details (`previous_trust_policy`, `Target.trust_policy`).

`iam:UpdateAssumeRolePolicy` can grant anyone the role: IAM cannot tell a restore that
closes the trust from a change that opens it. So the apply and its undo run under
Steward's restore role only (`apply_needs_restore`, docs/architecture.md §7), always with a
security approver other than the requester; with the restore role off the request is
refused before anyone is asked, with the AWS CLI command and the trust policy to keep.

The before-state is the trust policy the apply replaced (normally the opened one); undo
puts it back, but only while the role still has the document Steward restored (a later
edit by a person is never overwritten).
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
    canonical,
    require,
)


def _document(value: Any) -> dict[str, Any] | None:
    from checks.policy import load_document

    loaded = load_document(value)
    return json.loads(json.dumps(loaded)) if loaded is not None else None


def same(a: Any, b: Any) -> bool:
    """The same document, whatever the key order or spacing (None never matches)."""
    left, right = canonical(_document(a)), canonical(_document(b))
    return left is not None and left == right


def admitted(document: Any, limit: int = 3) -> str:
    """Who a trust policy's Allow statements name, for the person approving: `arn:…:root,
    ec2.amazonaws.com` (at most `limit`, then `and N more`)."""
    loaded = _document(document) or {}
    statements = loaded.get("Statement", [])
    found: list[str] = []
    for statement in statements if isinstance(statements, list) else [statements]:
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        values = [principal] if isinstance(principal, str) else [
            v for value in (principal or {}).values() for v in (value if isinstance(value, list) else [value])]
        found += [str(v) for v in values if str(v) not in found]
    if not found:
        return "nobody"
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return ", ".join(found[:limit]) + more


def _command(name: str, text: str) -> str:
    return (f"aws iam update-assume-role-policy --role-name {shlex.quote(name)} "
            f"--policy-document {shlex.quote(text)}")


class RestoreTrustPolicy(Action):
    id = "restore-trust-policy"
    title = "Restore the previous trust policy"
    reversible = True  # undo puts back the trust the apply replaced, under the restore role
    reduces_access_only = False  # UpdateAssumeRolePolicy can let anyone in: an approver, always
    apply_needs_restore = True
    apply_restore_why = "writing a trust policy needs it: it can let anyone assume the role"
    permissions = frozenset({"iam:GetRole", "iam:UpdateAssumeRolePolicy"})
    undo_permissions = frozenset({"iam:GetRole", "iam:UpdateAssumeRolePolicy"})

    def read(self, iam: Iam, target: Target) -> State:
        if target.principal_type != "role" or not target.principal_name:
            raise Impossible(f"{target.resource} is not an IAM role")
        require(target, "trust_policy")
        got = iam.read("get_role", missing=True, RoleName=target.principal_name)
        if got is None:
            raise Impossible(f"the role {target.principal_name} no longer exists")
        return {"role_name": target.principal_name,
                "trust_policy": _document(got["Role"].get("AssumeRolePolicyDocument"))}

    def assess(self, target: Target, state: State) -> Plan:
        name = state["role_name"]
        if same(state.get("trust_policy"), target.trust_policy):
            return Plan(self.id, f"Already done: the role {name} has its previous trust policy.", already_done=True)
        if state.get("trust_policy") is None:
            reason = f"the trust policy of the role {name} could not be read"
            return Plan(self.id, f"Cannot restore it: {reason}.", possible=False, reason=reason)
        return Plan(self.id, f"Put the previous trust policy of the role {name} back in account "
                             f"{target.account_id}, as the last scan saw it: only {admitted(target.trust_policy)} "
                             f"may assume it (now: {admitted(state.get('trust_policy'))}). The trust it has now "
                             "is recorded and undo puts it back.")

    def change(self, iam: Iam, target: Target, state: State) -> None:
        iam.write("update_assume_role_policy", RoleName=state["role_name"], PolicyDocument=str(target.trust_policy))

    def revert(self, iam: Iam, target: Target, before: State, current: State) -> bool:
        if same(current.get("trust_policy"), before.get("trust_policy")):
            return False
        name = str(before.get("role_name") or target.principal_name)
        if not same(current.get("trust_policy"), target.trust_policy):
            raise RemediationError(
                f"cannot undo on the role {name}: its trust policy was changed again since Steward restored it; "
                "not overwriting that change (the trust it had before is in the before-state)")
        return iam.write("update_assume_role_policy", RoleName=name,
                         PolicyDocument=str(canonical(before.get("trust_policy"))))

    def restore_by_hand(self, target: Target, before: Mapping[str, Any]) -> str:
        name = str(before.get("role_name") or target.principal_name)
        return (f"Put back the trust policy the role {name} in account {target.account_id} had before Steward "
                f"restored the previous one:\n{_command(name, str(canonical(before.get('trust_policy'))))}")

    def apply_by_hand(self, target: Target) -> str:
        name = str(target.principal_name)
        return (f"Put the previous trust policy of the role {name} in account {target.account_id} back "
                f"(as Steward's last scan saw it):\n{_command(name, str(target.trust_policy))}")

    def apply_before_by_hand(self, target: Target) -> State:
        if not target.trust_policy_set:
            return {}
        return {"role_name": target.principal_name, "trust_policy": json.loads(target.trust_policy_set)}
