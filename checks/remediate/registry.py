"""Every remediation action, in one explicit tuple (no directory walking).

Ids match the `remediations` of `checks.catalog` together with the containments an
activity escalation offers (`checks.activity.rules.CONTAINMENT_ACTIONS`) exactly; tests
walk both ways, and `checks.permissions` builds the shipped remediation policy from these
declarations.
"""

from __future__ import annotations

from checks.remediate.base import Action
from checks.remediate.keys import DeactivateAccessKey, DeleteAccessKey
from checks.remediate.password_policy import ApplyCisPasswordPolicy
from checks.remediate.policies import DeleteInlinePolicy, DetachManagedPolicy
from checks.remediate.rightsize import RightsizePolicy
from checks.remediate.roles import DeleteRole
from checks.remediate.trust import RestoreTrustPolicy
from checks.remediate.users import (
    DeleteUser,
    QuarantineUser,
    RemoveConsolePassword,
    RemoveUserFromGroup,
)

ACTIONS: tuple[Action, ...] = (
    DeactivateAccessKey(),
    DeleteAccessKey(),
    QuarantineUser(),
    RemoveConsolePassword(),
    DeleteUser(),
    DetachManagedPolicy(),
    DeleteInlinePolicy(),
    RemoveUserFromGroup(),
    ApplyCisPasswordPolicy(),
    DeleteRole(),
    RightsizePolicy(),
    RestoreTrustPolicy(),
)

BY_ID: dict[str, Action] = {action.id: action for action in ACTIONS}


def action(action_id: str) -> Action:
    """The action with this id; KeyError naming the known ids otherwise."""
    try:
        return BY_ID[action_id]
    except KeyError:
        raise KeyError(f"unknown remediation {action_id!r} (known: {', '.join(BY_ID)})") from None
