"""What an owner may decide about each kind of finding: the buttons, as a table (pure);
and who may undo what (`undo_rule`).

Walked by tests: every check has a family, every remediation button names an action the
check offers, every reversible action has its undo words and an undo rule for each kind of
person. Slack action ids are `finding:<choice>` or `finding:remediate:<action>`; button
values are the finding's opaque token, never data.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any


class Choice(enum.StrEnum):
    REMEDIATE = "remediate"
    REQUEST_REMOVAL = "request_removal"  # a policy change: goes to the security channel
    # An exception: the owner keeps the access on purpose, with a reason and an end date (the
    # "Keep…" button and its modal). The value is the Slack action id on messages already sent.
    EXCEPTION = "keep"
    SNOOZE = "snooze"
    NOT_MINE = "not_mine"
    ROTATE = "rotate"  # "I'll rotate it": a deadline the next scans verify
    ACK = "ack"  # account-level findings, seen by security
    GUIDE = "guide"  # a link to how to fix it by hand (MFA set-up, key rotation): Slack opens it
    SHOW_POLICY = "show_policy"  # the right-sized policy's JSON, in a modal (changes nothing)
    ROTATE_FOR_ME = "rotate_for_me"  # Steward creates the new key and hands it over (bot/services/rotation.py)


@dataclass(frozen=True)
class Button:
    choice: Choice
    label: str
    action: str | None = None  # remediation action id, for REMEDIATE
    style: str | None = None  # "primary" | "danger"
    confirm: str | None = None  # a confirm dialog's text
    url: str | None = None  # GUIDE: the page it opens

    @property
    def action_id(self) -> str:
        return f"finding:remediate:{self.action}" if self.action else f"finding:{self.choice}"

    @property
    def fixes(self) -> bool:
        """A step that puts the finding right (not keep, snooze, acknowledge or hand on)."""
        return self.choice in (Choice.REMEDIATE, Choice.REQUEST_REMOVAL, Choice.ROTATE, Choice.GUIDE)


EXCEPTION = Button(Choice.EXCEPTION, "Keep…")  # the button of an exception
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
DELETE_ROLE = Button(Choice.REMEDIATE, "Delete role", "delete-role", "danger",
                     "The role is deleted (its policies, tags and instance profiles are recorded so an approved "
                     "undo can recreate it). A security approver must approve it.")


def guide(label: str, url: str) -> Button:
    return Button(Choice.GUIDE, label, style=None, url=url)


AWS_DOCS = "https://docs.aws.amazon.com/IAM/latest/UserGuide/"
SET_UP_MFA = guide("Set up MFA (guide)", AWS_DOCS + "id_credentials_mfa_enable_virtual.html")
ROTATION_GUIDE = guide("How to rotate a key", AWS_DOCS + "id-credentials-access-keys-update.html")
ROOT_KEY_GUIDE = guide("Delete root keys (guide)", AWS_DOCS + "id_root-user_manage_delete-key.html")
ROOT_MFA_GUIDE = guide("Root MFA (guide)", AWS_DOCS + "enable-mfa-for-root.html")
ROOT_USE_GUIDE = guide("Root user practices", AWS_DOCS + "root-user-best-practices.html")
EXTERNAL_ID_GUIDE = guide("External ID (guide)", AWS_DOCS + "id_roles_common-scenarios_third-party.html")
TRUST_GUIDE = guide("Edit the trust policy", AWS_DOCS + "id_roles_update-role-trust-policy.html")
TRAIL_GUIDE = guide("Create a multi-region trail (guide)", AWS_DOCS.replace("/IAM/", "/awscloudtrail/")
                    + "cloudtrail-create-a-trail-using-the-console-first-time.html")
VALIDATION_GUIDE = guide("Log file validation (guide)", AWS_DOCS.replace("/IAM/", "/awscloudtrail/")
                         + "cloudtrail-log-file-validation-enabling.html")
SELECTORS_GUIDE = guide("Management events (guide)", AWS_DOCS.replace("/IAM/", "/awscloudtrail/")
                        + "logging-management-events-with-cloudtrail.html")
BUCKET_GUIDE = guide("Block public access (guide)", "https://docs.aws.amazon.com/AmazonS3/latest/userguide/"
                     "access-control-block-public-access.html")
EDIT_POLICY_GUIDE = guide("Edit the policies (guide)", AWS_DOCS + "access_policies_manage-edit.html")

POLICY_FAMILY = (REQUEST_REMOVAL, EXCEPTION, NOT_MINE)
SECURITY_ONLY = frozenset({
    "root-access-key", "root-mfa-disabled", "root-recently-used", "password-policy-weak",
    "role-trust-external-no-external-id", "role-trust-public",
    "cloudtrail-no-multi-region-trail", "cloudtrail-log-validation-off", "cloudtrail-management-events-off",
    "cloudtrail-bucket-public",
})

# A remediation's button, by action id, where its words are better than the action's title
# (`remediation_button` derives the rest from the action itself).
REMEDIATION_BUTTONS: dict[str, Button] = {b.action: b for b in (
    DEACTIVATE, DELETE_KEY, QUARANTINE, REMOVE_PASSWORD, RIGHTSIZE, CIS_PASSWORD_POLICY, DELETE_ROLE) if b.action}

# The checks whose buttons are not the default (`family`: each remediation the catalog entry
# offers, then Keep…, Snooze, Not mine): a new check that fits the default needs no row here.
# Each family's order is its priority: the card shows the first as the single best next
# step. Every family has a step that fixes it (a remediation, a removal request, a rotation
# promise or a guide), walked by a test.
FAMILIES: dict[str, tuple[Button, ...]] = {
    # Deactivate first (it can be undone); a key that stays inactive is then offered for
    # deletion by its `inactive-access-key` finding.
    "unused-access-key": (DEACTIVATE, EXCEPTION, SNOOZE, NOT_MINE),
    # Which of the two keys should go is the owner's call: each key's own finding (unused,
    # old) carries its Deactivate button.
    "multiple-active-keys": (ROTATION_GUIDE, EXCEPTION, SNOOZE, NOT_MINE),
    "old-access-key": (ROTATE_FOR_ME, ROTATE, ROTATION_GUIDE, DEACTIVATE, EXCEPTION),
    "stale-user": (QUARANTINE, EXCEPTION, NOT_MINE),
    "compromised-key-quarantine": (QUARANTINE, EXCEPTION),
    # An active person sets MFA up; a password nobody should have goes.
    "console-user-without-mfa": (SET_UP_MFA, REMOVE_PASSWORD, EXCEPTION),
    "unused-password": (REMOVE_PASSWORD, EXCEPTION),
    "user-direct-policy": POLICY_FAMILY,
    "admin-policy": POLICY_FAMILY,
    "service-wildcard-policy": POLICY_FAMILY,
    # Combined across policies, a removal may not apply (buttons_for drops it): the guide stays.
    "privilege-escalation-policy": (REQUEST_REMOVAL, EDIT_POLICY_GUIDE, EXCEPTION, NOT_MINE),
    "unused-permissions": (RIGHTSIZE, SHOW_POLICY, EXCEPTION, NOT_MINE),
    "root-access-key": (ROOT_KEY_GUIDE, ACK, EXCEPTION),
    "root-mfa-disabled": (ROOT_MFA_GUIDE, ACK, EXCEPTION),
    "root-recently-used": (ROOT_USE_GUIDE, ACK, EXCEPTION),
    "password-policy-weak": (CIS_PASSWORD_POLICY, ACK, EXCEPTION),
    "role-trust-external-no-external-id": (EXTERNAL_ID_GUIDE, ACK, EXCEPTION),
    "role-trust-public": (TRUST_GUIDE, ACK, EXCEPTION),
    # Raised by an access review's "Remove access…" and carried out (or sent for approval)
    # at once: it never reaches a findings DM, where only an exception would make sense.
    "access-review-revocation": (EXCEPTION,),
    "cloudtrail-no-multi-region-trail": (TRAIL_GUIDE, ACK, EXCEPTION),
    "cloudtrail-log-validation-off": (VALIDATION_GUIDE, ACK, EXCEPTION),
    "cloudtrail-management-events-off": (SELECTORS_GUIDE, ACK, EXCEPTION),
    "cloudtrail-bucket-public": (BUCKET_GUIDE, ACK, EXCEPTION),
}
SNOOZE_DAYS = (7, 30)
ROTATE_DEADLINE_DAYS = 14


def remediation_button(action_id: str) -> Button:
    """The button of one remediation: its words from `REMEDIATION_BUTTONS`, else from the
    action (its title; an action that needs an approver, or cannot be undone, asks first)."""
    if action_id in REMEDIATION_BUTTONS:
        return REMEDIATION_BUTTONS[action_id]
    from checks.remediate import registry

    action = registry.action(action_id)
    if action.owner_may_apply_alone:
        return Button(Choice.REMEDIATE, action.title, action.id, "primary")
    undo = "" if action.reversible else " This cannot be undone."
    return Button(Choice.REMEDIATE, action.title, action.id, "danger",
                  f"{action.title}: a security approver must approve it.{undo}")


def family(check: str) -> tuple[Button, ...]:
    """The buttons of a check, in priority order: its row in `FAMILIES`, or the default."""
    if check in FAMILIES:
        return FAMILIES[check]
    from checks.catalog import BY_ID

    offered = tuple(remediation_button(action) for action in BY_ID[check].remediations)
    return (*offered, EXCEPTION, SNOOZE, NOT_MINE)


def all_families() -> dict[str, tuple[Button, ...]]:
    """Every check's buttons, catalog order (what the docs' decision table shows)."""
    from checks.catalog import BY_ID

    return {check: family(check) for check in BY_ID}


def buttons_for(check: str, details: Mapping[str, Any], *,
                unavailable: Collection[Choice] = ()) -> tuple[Button, ...]:
    """The buttons for one finding; a removal request needs a single policy to remove.
    `unavailable`: choices this deployment cannot carry out (`unavailable_choices`), never
    offered rather than refused after the click."""
    buttons = tuple(b for b in family(check) if b.choice not in unavailable)
    if REQUEST_REMOVAL in buttons and not removal_action(details):
        buttons = tuple(b for b in buttons if b is not REQUEST_REMOVAL)
    if RIGHTSIZE in buttons and (details.get("policy_kind") == "aws" or details.get("empty")):
        # An AWS managed policy cannot be edited (the JSON is a suggested replacement); an
        # empty proposal means "remove the policy", a person's decision.
        buttons = tuple(b for b in buttons if b is not RIGHTSIZE)
    return buttons


def unavailable_choices(*, rotation_role: bool) -> frozenset[Choice]:
    """What a deployment without an opt-in role cannot do: "Rotate it for me" needs the
    rotation role (creating keys is not something Steward's default role may do)."""
    return frozenset() if rotation_role else frozenset({Choice.ROTATE_FOR_ME})


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
    remediation button whose action is `auto_remediable` (reversible and access-reducing)."""
    from checks.remediate import registry

    for button in family(check):
        if button.action and registry.action(button.action).auto_remediable:
            return button.action
    return None


def auto_remediable_checks() -> tuple[str, ...]:
    """The checks `STEWARD_AUTO_REMEDIATE` may name (those with an `auto_action`)."""
    return tuple(check for check in all_families() if auto_action(check) is not None)


# --- undo: judged like the action it would reverse ----------------------------------------

# Steward's own auto-remediation (STEWARD_AUTO_REMEDIATE) acts for the owner, announced in
# their DM with "you can undo it": it counts as the owner's own action.
AUTO_ACTOR = "system:auto-remediate"


class UndoRule(enum.StrEnum):
    IMPOSSIBLE = "impossible"  # irreversible: nothing to undo
    ONE_CLICK = "one_click"  # done at once for the person asking
    NEEDS_APPROVER = "needs_approver"  # a security approver other than the person asking


def undo_rule(action, *, requested_by: str, undoer: str, undoer_is_owner: bool) -> UndoRule:
    """docs/architecture.md §7, invariant 1: an undo gives access back, so it needs a second person, except the
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
    "delete-role": "recreated",
    "rightsize-policy": "previous policy restored",
    "restore-trust-policy": "opened trust policy put back",
}


def undo_words(action_id: str) -> str:
    return UNDO_WORDS.get(action_id, "undone")


# What each remediation is called in sentences people read ("asks to detach the managed
# policy"): never the internal id. Walked by a test against the remediation registry.
ACTION_NAMES: dict[str, str] = {
    "deactivate-access-key": "deactivate the access key",
    "delete-access-key": "delete the access key",
    "quarantine-user": "quarantine the user",
    "remove-console-password": "remove the console password",
    "delete-user": "delete the user",
    "detach-managed-policy": "detach the managed policy",
    "delete-inline-policy": "delete the inline policy",
    "remove-user-from-group": "remove the user from the group",
    "apply-cis-password-policy": "apply the CIS password policy",
    "delete-role": "delete the role",
    "rightsize-policy": "narrow the policy to what is used",
    "restore-trust-policy": "restore the role's previous trust policy",
}


def action_name(action_id: str) -> str:
    """`detach-managed-policy` -> "detach the managed policy"."""
    return ACTION_NAMES.get(action_id, action_id.replace("-", " "))


# --- access reviews: what a reviewer may decide about one principal ------------------------
# Slack action ids are `review:<choice>`; a button's value is the item's (or the reviewer's
# message's) opaque token, never data. Walked by tests: every button here is rendered by
# bot/slack/blocks/reviews.py, handled by bot/slack/listeners/reviews.py, and round-trips.


class ReviewChoice(enum.StrEnum):
    STILL_NEEDED = "still_needed"
    REMOVE = "remove"  # "Remove access…": a modal to choose the entitlements
    NOT_MINE = "not_mine"  # to the security channel, which finds the right reviewer
    DELEGATE = "delegate"  # "Delegate…": another person, with a reason (modal)
    DETAILS = "details"  # every entitlement of the page's items (modal); unlocks the bulk button
    ALL_STILL_NEEDED = "all_still_needed"  # only for items whose details were opened
    PAGE = "page"  # the message's previous / next page


@dataclass(frozen=True)
class ReviewButton:
    choice: ReviewChoice
    label: str
    style: str | None = None
    opens_modal: bool = False  # views.open needs the trigger id within 3 s

    @property
    def action_id(self) -> str:
        return f"review:{self.choice}"


#: Per item, in this order.
REVIEW_ITEM_BUTTONS = (
    ReviewButton(ReviewChoice.STILL_NEEDED, "Still needed", "primary"),
    ReviewButton(ReviewChoice.REMOVE, "Remove access…", "danger", opens_modal=True),
    ReviewButton(ReviewChoice.NOT_MINE, "Not mine"),
    ReviewButton(ReviewChoice.DELEGATE, "Delegate…", opens_modal=True),
)
#: Per message (page): details first; the bulk button only once details were opened.
REVIEW_MESSAGE_BUTTONS = (
    ReviewButton(ReviewChoice.DETAILS, "Open details", opens_modal=True),
    ReviewButton(ReviewChoice.ALL_STILL_NEEDED, "All still needed (details seen)", "primary"),
    ReviewButton(ReviewChoice.PAGE, "Page"),
)
REVIEW_BUTTONS: dict[ReviewChoice, ReviewButton] = {
    b.choice: b for b in (*REVIEW_ITEM_BUTTONS, *REVIEW_MESSAGE_BUTTONS)
}
#: The decisions an item can end with (`overdue`: nobody decided by the due date; never certified).
REVIEW_DECISIONS = ("still_needed", "remove", "overdue")

#: Entitlement kind -> the remediation action that removes it (checks/remediate/).
REVIEW_REMOVAL_ACTIONS: dict[str, str] = {
    "group": "remove-user-from-group",
    "policy": "detach-managed-policy",
    "inline": "delete-inline-policy",
    "key": "deactivate-access-key",
    "console": "remove-console-password",
}


def parse_review_action_id(action_id: str) -> ReviewChoice:
    """`review:still_needed` -> STILL_NEEDED; ValueError for anything else."""
    prefix, _, choice = action_id.partition(":")
    if prefix != "review":
        raise ValueError(f"not a review action: {action_id!r}")
    return ReviewChoice(choice)
# --- risky changes (bot/services/activity.py): the actor's answer and security's containment ---


class Answer(enum.StrEnum):
    YES = "yes"  # the person asked: "Yes, it was me" (opens the reason modal)
    NO = "no"  # the person asked: "No, this wasn't me" (escalates at once)
    ACK = "ack"  # a security approver: seen
    CONTAIN = "contain"  # a security approver: one containment, by its position in the event's list


# Who may press each activity button (the service checks; the table is walked by a test).
ACTIVITY_BUTTONS: dict[Answer, str] = {
    Answer.YES: "asked",
    Answer.NO: "asked",
    Answer.ACK: "approver",
    Answer.CONTAIN: "approver",
}


def activity_action_id(answer: Answer, index: int | None = None) -> str:
    if answer is Answer.CONTAIN:
        return f"activity:contain:{int(index or 0)}"
    return f"activity:{answer}"


def parse_activity_action(action_id: str) -> tuple[Answer, int | None]:
    """`activity:contain:2` -> (CONTAIN, 2); `activity:yes` -> (YES, None)."""
    parts = action_id.split(":")
    if len(parts) < 2 or parts[0] != "activity":
        raise ValueError(f"not an activity action: {action_id!r}")
    answer = Answer(parts[1])
    if answer is Answer.CONTAIN:
        if len(parts) != 3 or not parts[2].isdigit():
            raise ValueError(f"containment without its position: {action_id!r}")
        return answer, int(parts[2])
    if len(parts) != 2:
        raise ValueError(f"not an activity action: {action_id!r}")
    return answer, None
