"""Access key actions: deactivate (undo: reactivate) and delete (inactive keys only).

Deactivating is the reversible first step (docs/architecture.md §4, Remediation); deleting is the irreversible
second one, which the orchestrator offers only after a waiting period and an approval.
The delete action itself refuses an active key, whatever the caller decided.
"""

from __future__ import annotations

from typing import Any

from checks.remediate.base import (
    Action,
    Iam,
    Impossible,
    Plan,
    State,
    Target,
    iso,
    require,
)

ACTIVE = "Active"
INACTIVE = "Inactive"


def user_keys(iam: Iam, user_name: str) -> list[dict[str, Any]] | None:
    """The user's access keys as `{access_key_id, status, created}`, by creation time;
    None when the user does not exist. Never a secret: ListAccessKeys returns none."""
    listed = iam.items("list_access_keys", "AccessKeyMetadata", missing=True, UserName=user_name)
    if listed is None:
        return None
    keys = [
        {
            "access_key_id": k["AccessKeyId"],
            "status": k.get("Status", ""),
            "created": iso(k.get("CreateDate")),
        }
        for k in listed
    ]
    return sorted(keys, key=lambda k: (k["created"] or "", k["access_key_id"]))


def key_state(iam: Iam, target: Target) -> State:
    """`exists`, `user_exists`, and for an existing key its status, creation and last use."""
    require(target, "user_name", "access_key_id")
    state: State = {
        "user_name": target.user_name,
        "access_key_id": target.access_key_id,
        "user_exists": True,
        "exists": False,
    }
    keys = user_keys(iam, str(target.user_name))
    if keys is None:
        state["user_exists"] = False
        return state
    key = next((k for k in keys if k["access_key_id"] == target.access_key_id), None)
    if key is None:
        return state
    used = iam.read("get_access_key_last_used", AccessKeyId=target.access_key_id) or {}
    last = used.get("AccessKeyLastUsed") or {}
    state.update(
        exists=True,
        status=key["status"],
        created=key["created"],
        last_used=iso(last.get("LastUsedDate")),
        last_used_service=last.get("ServiceName") if last.get("LastUsedDate") else None,
    )
    return state


def gone_reason(state: State) -> str:
    if not state["user_exists"]:
        return f"IAM user {state['user_name']} no longer exists"
    return f"access key {state['access_key_id']} of IAM user {state['user_name']} no longer exists"


def describe_key(state: State) -> str:
    used = state.get("last_used")
    service = state.get("last_used_service")
    use = f"last used {used[:10]}" + (f" ({service})" if service else "") if used else "never used"
    return (
        f"access key {state['access_key_id']} of IAM user {state['user_name']} "
        f"(created {(state.get('created') or '?')[:10]}, {use})"
    )


class DeactivateAccessKey(Action):
    id = "deactivate-access-key"
    title = "Deactivate access key"
    reversible = True
    reduces_access_only = True
    permissions = frozenset(
        {"iam:ListAccessKeys", "iam:GetAccessKeyLastUsed", "iam:UpdateAccessKey"}
    )
    undo_permissions = permissions

    def read(self, iam: Iam, target: Target) -> State:
        state = key_state(iam, target)
        if not state["exists"]:
            raise Impossible(gone_reason(state))
        return state

    def assess(self, target: Target, state: State) -> Plan:
        if state["status"] != ACTIVE:
            return Plan(self.id, f"Already done: {describe_key(state)} is inactive.",
                        already_done=True)
        return Plan(
            self.id,
            f"Deactivate {describe_key(state)} in account {target.account_id}: requests "
            "signed with it fail from then on; undo reactivates it.",
        )

    def change(self, iam: Iam, target: Target, state: State) -> None:
        iam.write("update_access_key", UserName=target.user_name,
                  AccessKeyId=target.access_key_id, Status=INACTIVE)

    def revert(self, iam: Iam, target: Target, before: State, current: State) -> bool:
        # Reactivate only a key this action deactivated, and only if still inactive.
        if before.get("status") != ACTIVE or current["status"] == ACTIVE:
            return False
        iam.write("update_access_key", UserName=target.user_name,
                  AccessKeyId=target.access_key_id, Status=ACTIVE)
        return True


class DeleteAccessKey(Action):
    id = "delete-access-key"
    title = "Delete access key"
    reversible = False
    reduces_access_only = False  # irreversible: needs a security approver
    permissions = frozenset(
        {"iam:ListAccessKeys", "iam:GetAccessKeyLastUsed", "iam:DeleteAccessKey"}
    )

    def read(self, iam: Iam, target: Target) -> State:
        return key_state(iam, target)

    def assess(self, target: Target, state: State) -> Plan:
        if not state["exists"]:
            return Plan(self.id, f"Already done: {gone_reason(state)}.", already_done=True)
        if state["status"] == ACTIVE:
            reason = (
                f"access key {state['access_key_id']} is active; Steward deletes only "
                "inactive keys (deactivate it first and wait)"
            )
            return Plan(self.id, f"Cannot delete: {reason}.", possible=False, reason=reason)
        return Plan(
            self.id,
            f"Delete the inactive {describe_key(state)} in account {target.account_id}.",
            irreversible_warning=(
                "A deleted access key cannot be restored: anything still configured with it "
                "fails for good and needs a new key."
            ),
        )

    def change(self, iam: Iam, target: Target, state: State) -> None:
        iam.write("delete_access_key", missing=True, UserName=target.user_name,
                  AccessKeyId=target.access_key_id)
