"""What an owner may decide about each kind of finding: the buttons, as a table (pure);
and who may undo what (`undo_rule`).

Walked by tests: every check has a family, every remediation button names an action the
check offers, every reversible action has its undo words and an undo rule for each kind of
person. Slack action ids are `finding:<choice>` or `finding:remediate:<action>`; button
values are the finding's opaque token, never data.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class Choice(enum.StrEnum):
    REMEDIATE = "remediate"
    REQUEST_REMOVAL = "request_removal"  # a policy change: goes to the security channel
    KEEP = "keep"  # an exception with a reason and an end date (modal)
    SNOOZE = "snooze"
    NOT_MINE = "not_mine"
    ROTATE = "rotate"  # "I'll rotate it": a deadline the next scans verify
    ACK = "ack"  # account-level findings, seen by security
    SHOW_POLICY = "show_policy"  # the right-sized policy's JSON, in a modal (changes nothing)
    ROTATE_FOR_ME = "rotate_for_me"  # Steward creates the new key and hands it over (bot/services/rotation.py)


@dataclass(frozen=True)
class Button:
    choice: Choice
    label: str
    action: str | None = None  # remediation action id, for REMEDIATE
    style: str | None = None  # "primary" | "danger"
    confirm: str | None = None  # a confirm dialog's text

    @property
    def action_id(self) -> str:
        return f"finding:remediate:{self.action}" if self.action else f"finding:{self.choice}"


KEEP = Button(Choice.KEEP, "Keep…")
SNOOZE = Button(Choice.SNOOZE, "Snooze")
NOT_MINE = Button(Choice.NOT_MINE, "Not mine")
DEACTIVATE = Button(Choice.REMEDIATE, "Deactivate key", "deactivate-access-key", "primary")
DELETE_KEY = Button(Choice.REMEDIATE, "Delete key", "delete-access-key", "danger",
                    "Deleting a key cannot be undone. A security approver must approve it.")
QUARANTINE = Button(Choice.REMEDIATE, "Quarantine user", "quarantine-user", "primary")
REMOVE_PASSWORD = Button(Choice.REMEDIATE, "Remove console password", "remove-console-password", "danger",
                         "The console password is deleted and cannot be restored; the user would need a new "
                         "one. A security approver must approve it.")
ROTATE = Button(Choice.ROTATE, "I'll rotate it", style="primary")
ROTATE_FOR_ME = Button(Choice.ROTATE_FOR_ME, "Rotate it for me", style="primary",
                       confirm="Steward creates a new access key and puts it in AWS Secrets Manager, readable only "
                               "by this IAM user. The old key keeps working until the new one is in use.")
REQUEST_REMOVAL = Button(Choice.REQUEST_REMOVAL, "Request removal", style="primary")
ACK = Button(Choice.ACK, "Acknowledge")
RIGHTSIZE = Button(Choice.REMEDIATE, "Apply right-sized policy", "rightsize-policy", "primary",
                   "Steward makes the proposed policy the one in force; the previous version is kept and Undo "
                   "restores it. Owners of other principals holding the policy must agree too.")
SHOW_POLICY = Button(Choice.SHOW_POLICY, "Show policy JSON")
CIS_PASSWORD_POLICY = Button(Choice.REMEDIATE, "Apply CIS password policy", "apply-cis-password-policy", "primary")

KEY_FAMILY = (DEACTIVATE, KEEP, SNOOZE, NOT_MINE)
POLICY_FAMILY = (REQUEST_REMOVAL, KEEP, NOT_MINE)
SECURITY_ONLY = frozenset({
    "root-access-key", "root-mfa-disabled", "root-recently-used", "password-policy-weak",
    "role-trust-external-no-external-id", "role-trust-public",
})

FAMILIES: dict[str, tuple[Button, ...]] = {
    "unused-access-key": KEY_FAMILY,
    # Which of the two keys should go is the owner's call: each key's own finding (unused,
    # old) carries its Deactivate button.
    "multiple-active-keys": (KEEP, SNOOZE, NOT_MINE),
    "inactive-access-key": (DELETE_KEY, KEEP, SNOOZE, NOT_MINE),
    "old-access-key": (ROTATE_FOR_ME, ROTATE, DEACTIVATE, KEEP),
    "stale-user": (QUARANTINE, KEEP, NOT_MINE),
    "compromised-key-quarantine": (QUARANTINE, KEEP),
    "console-user-without-mfa": (REMOVE_PASSWORD, KEEP),
    "unused-password": (REMOVE_PASSWORD, KEEP),
    "user-direct-policy": POLICY_FAMILY,
    "admin-policy": POLICY_FAMILY,
    "service-wildcard-policy": POLICY_FAMILY,
    "privilege-escalation-policy": POLICY_FAMILY,
    "unused-role": (KEEP, SNOOZE, NOT_MINE),
    "unused-permissions": (RIGHTSIZE, SHOW_POLICY, KEEP, NOT_MINE),
    "root-access-key": (ACK, KEEP),
    "root-mfa-disabled": (ACK, KEEP),
    "root-recently-used": (ACK, KEEP),
    "password-policy-weak": (CIS_PASSWORD_POLICY, ACK, KEEP),
    "role-trust-external-no-external-id": (ACK, KEEP),
    "role-trust-public": (ACK, KEEP),
}

SNOOZE_DAYS = (7, 30)
ROTATE_DEADLINE_DAYS = 14


def buttons_for(check: str, details: Mapping[str, Any]) -> tuple[Button, ...]:
    """The buttons for one finding; a removal request needs a single policy to remove."""
    buttons = FAMILIES[check]
    if REQUEST_REMOVAL in buttons and not removal_action(details):
        buttons = tuple(b for b in buttons if b is not REQUEST_REMOVAL)
    if RIGHTSIZE in buttons and (details.get("policy_kind") == "aws" or details.get("empty")):
        # An AWS managed policy cannot be edited (the JSON is a suggested replacement); an
        # empty proposal means "remove the policy", a person's decision.
        buttons = tuple(b for b in buttons if b is not RIGHTSIZE)
    return buttons


def removal_action(details: Mapping[str, Any]) -> str | None:
    """detach-managed-policy or delete-inline-policy, from what the finding names."""
    if details.get("policy_arn"):
        return "detach-managed-policy"
    if details.get("policy_name"):
        return "delete-inline-policy"
    return None  # e.g. an escalation combined across policies: a person must untangle it


def parse_action_id(action_id: str) -> tuple[Choice, str | None]:
    """`finding:remediate:deactivate-access-key` -> (REMEDIATE, "deactivate-access-key")."""
    parts = action_id.split(":")
    if len(parts) < 2 or parts[0] != "finding":
        raise ValueError(f"not a finding action: {action_id!r}")
    choice = Choice(parts[1])
    return choice, (parts[2] if choice is Choice.REMEDIATE and len(parts) > 2 else None)


def auto_action(check: str) -> str | None:
    """The action `STEWARD_AUTO_REMEDIATE` may take for this check at the deadline: the first
    remediation button the owner could take alone (reversible and access-reducing only)."""
    from checks.remediate import registry

    for button in FAMILIES.get(check, ()):
        if button.action and registry.action(button.action).owner_may_apply_alone:
            return button.action
    return None


# --- undo: judged like the action it would reverse ----------------------------------------

# Steward's own auto-remediation (STEWARD_AUTO_REMEDIATE) acts for the owner, announced in
# their DM with "you can undo it": it counts as the owner's own action.
AUTO_ACTOR = "system:auto-remediate"


class UndoRule(enum.StrEnum):
    IMPOSSIBLE = "impossible"  # irreversible: nothing to undo
    ONE_CLICK = "one_click"  # done at once for the person asking
    NEEDS_APPROVER = "needs_approver"  # a security approver other than the person asking


def undo_rule(action, *, requested_by: str, undoer: str, undoer_is_owner: bool) -> UndoRule:
    """DESIGN.md §7.1: an undo gives access back, so it needs a second person, except the
    undo of an owner's own access-reducing action (deactivating their own key, quarantining
    their own user), which stays one click for that owner.

    `action` is a checks.remediate Action; `requested_by` asked for the original change.
    An undo of something a security approver or an operator did (or that needed an
    approver in the first place: detach or delete a policy, remove from a group, the
    password policy) goes to the security channel like the change did.
    """
    if not action.reversible:
        return UndoRule.IMPOSSIBLE
    own = requested_by in (undoer, AUTO_ACTOR)
    # An undo that needs the restore role gives access back (right-sizing's undo restores
    # the wider policy): a second person even for the owner's own right-sizing.
    if action.owner_may_apply_alone and not action.undo_needs_restore and undoer_is_owner and own:
        return UndoRule.ONE_CLICK
    return UndoRule.NEEDS_APPROVER


# What an undo does, in words for the security channel ("re-attached by @X after approval by @Y").
UNDO_WORDS: dict[str, str] = {
    "deactivate-access-key": "reactivated",
    "quarantine-user": "released from quarantine",
    "detach-managed-policy": "re-attached",
    "delete-inline-policy": "put back",
    "remove-user-from-group": "added back to the group",
    "apply-cis-password-policy": "previous password policy restored",
    "rightsize-policy": "previous policy restored",
}


def undo_words(action_id: str) -> str:
    return UNDO_WORDS.get(action_id, "undone")
