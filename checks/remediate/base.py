"""The contract of a remediation action: plan -> apply (before-state first) -> undo.

Every AWS *write* Steward makes is an `Action` (docs/architecture.md §4, Remediation). An action is a small class
that declares, next to its code:

* `id` (a remediation id of `checks.catalog`), `title`;
* `reversible`: undo is possible and implemented. Irreversible actions raise `NotUndoable`
  from `undo` and say so in their plan (`Plan.irreversible_warning`);
* `reduces_access_only`: the owner of a finding may take this action alone. True only for
  the reversible actions that can only take access away (deactivate a key, quarantine a
  user). Irreversible actions are False even when they only remove access (deleting a
  key): the two-person rule covers every irreversible and privilege-changing action. The
  rule itself lives in the orchestrator; `owner_may_apply_alone` is the one test to use;
* `needs_earlier`: the id of another action Steward itself must have done on the same
  resource at least `STEWARD_DELETE_AFTER_DAYS` before this one may run (delete a user only
  after quarantining it and waiting), or None;
* `auto_remediable` (derived, not declared): `STEWARD_AUTO_REMEDIATE` may take this action
  for the owner at the deadline — the actions the owner could take alone and undo alone;
* `permissions`: the IAM actions `plan` and `apply` call (precondition reads included);
  `undo_permissions`: the ones `undo` calls. `checks.permissions` builds the shipped
  policies from these, and the tests record every AWS operation each action makes on moto
  and check it is declared.

Every permission is classed (`access_class`): a read, one that can only *reduce* access, or
one that can *restore* (grant) access. Steward's default role holds the reads and the
reduce class only; an apply never needs more (an attach of Steward's own deny policy is
allowed there under an `iam:PolicyARN` condition, `REDUCE_CONDITIONS`). An undo that needs
a restore permission (`undo_needs_restore`: re-attach, put back, add to a group, delete a
password policy) runs under a separate restore role, off by default.

Behaviour every action shares (implemented once, in `Action`):

* `plan(session, target)` reads the live state and says, in one sentence a person reads,
  what `apply` would change, or why it cannot (`possible=False`), or that it is already
  done. It never writes.
* `apply(session, target, on_before=...)` reads the state again, refuses when the plan is
  not possible (`PreconditionFailed`), returns `already_done=True` without writing when
  the after-state already holds (so applying twice is harmless), otherwise hands the
  complete before-state to `on_before` (persist it there: it is written before the first
  AWS write, for crash recovery), makes the change and reads the after-state.
* `undo(session, target, before)` takes the `before` of the *first* successful apply and
  puts back what that apply changed, and only that; undoing twice is harmless too.

States (`before`, `after`) are JSON-ready dicts: strings, numbers, booleans, lists and
dicts (dates as ISO 8601 text). They never hold a secret: access keys appear by id and
status, passwords by presence only.

AWS failures surface as `RemediationError` with a one-line message (AccessDenied names
the IAM action the Steward role lacks) and `retryable` (throttling, network, 5xx).
Clients come from `checks.aws_calls.aws_client` (adaptive retries); none is created at import.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from checks.aws_calls import (
    ACCESS_DENIED,
    DEFAULT_MAX_ATTEMPTS,
    aws_client,
    collect_error,
    error_code,
)
from checks.model import utc

PrincipalType = Literal["account", "user", "group", "role"]
State = dict[str, Any]

IAM_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):"
    r"(?:(?P<root>root)|(?P<kind>user|group|role)/(?P<rest>.+))$"
)
REDUCE_POLICY_FILE = "deploy/iam/steward-reduce-policy.json"
RESTORE_POLICY_FILE = "deploy/iam/steward-restore-policy.json"

# ---------------------------------------------------------------------------------------
# What each IAM write can do to access

# Writes that can only take access away. `UpdateAccessKey` and `UpdateAccountPasswordPolicy`
# are here although they can also give access back (reactivate a key, loosen the policy):
# IAM cannot tell the two directions apart, the applies need them, and the app's
# two-person rule covers the undo that goes the other way.
REDUCE_PERMISSIONS = frozenset(
    {
        "iam:UpdateAccessKey",
        "iam:DeleteAccessKey",
        "iam:DeleteLoginProfile",
        "iam:DeleteSigningCertificate",
        "iam:DeleteSSHPublicKey",
        "iam:DeleteServiceSpecificCredential",
        "iam:DeactivateMFADevice",
        "iam:DeleteVirtualMFADevice",
        "iam:DetachUserPolicy",
        "iam:DetachGroupPolicy",
        "iam:DetachRolePolicy",
        "iam:DeleteUserPolicy",
        "iam:DeleteGroupPolicy",
        "iam:DeleteRolePolicy",
        "iam:RemoveUserFromGroup",
        "iam:DeleteUser",
        "iam:UpdateAccountPasswordPolicy",
        "iam:RemoveRoleFromInstanceProfile",
        "iam:DeleteRole",
        # A non-default version grants nothing while it is not the default.
        "iam:DeletePolicyVersion",
    }
)
# Writes that can grant access: never in the default role (except as REDUCE_CONDITIONS
# allow). Includes the usual escalation paths so a future declaration is classed.
RESTORE_PERMISSIONS = frozenset(
    {
        "iam:AttachUserPolicy",
        "iam:AttachGroupPolicy",
        "iam:AttachRolePolicy",
        "iam:PutUserPolicy",
        "iam:PutGroupPolicy",
        "iam:PutRolePolicy",
        "iam:AddUserToGroup",
        "iam:CreateLoginProfile",
        "iam:UpdateLoginProfile",
        "iam:CreateAccessKey",
        "iam:DeleteAccountPasswordPolicy",
        "iam:CreatePolicyVersion",
        "iam:SetDefaultPolicyVersion",
        "iam:UpdateAssumeRolePolicy",
        "iam:DeleteUserPermissionsBoundary",
        "iam:DeleteRolePermissionsBoundary",
        "iam:PassRole",
        "iam:CreateRole",
        "iam:TagRole",
        "iam:PutRolePermissionsBoundary",
        "iam:AddRoleToInstanceProfile",
    }
)
# The quarantine attaches AWSDenyAll, and only that: the default role may call
# AttachUserPolicy for exactly this policy (IAM's `iam:PolicyARN` condition key).
QUARANTINE_POLICY_ARN = "arn:aws:iam::aws:policy/AWSDenyAll"
REDUCE_CONDITIONS: dict[str, dict[str, dict[str, list[str]]]] = {
    "iam:AttachUserPolicy": {"ArnEquals": {"iam:PolicyARN": [QUARANTINE_POLICY_ARN]}},
}
AccessClass = Literal["read", "reduce", "restore"]


def access_class(permission: str) -> AccessClass:
    """`read` (Get/List), `reduce` or `restore`; KeyError for an unclassed write, so a new
    declaration must say which it is."""
    if re.match(r"^iam:(Get|List)[A-Z]", permission):
        return "read"
    if permission in REDUCE_PERMISSIONS:
        return "reduce"
    if permission in RESTORE_PERMISSIONS:
        return "restore"
    raise KeyError(f"{permission} is not classed as reduce or restore (checks/remediate/base.py)")


# ---------------------------------------------------------------------------------------
# Errors


class RemediationError(Exception):
    """An action could not be planned, applied or undone. `retryable`: trying again later
    may succeed (throttling, network); otherwise a person must act. `code` is the AWS
    error code when AWS refused (e.g. `DeleteConflict`, `NoSuchEntity`), else ""."""

    def __init__(self, message: str, retryable: bool = False, *, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.code = code


class PreconditionFailed(RemediationError):
    """`apply` was asked for what `plan` says is not possible (e.g. deleting an active key)."""


class NotUndoable(RemediationError):
    """`undo` of an irreversible action."""


def remediation_error(exc: Exception, account_id: str, *, context: str = "") -> RemediationError:
    """A botocore exception as a `RemediationError` with a one-line message."""
    suffix = f" ({context})" if context else ""
    if isinstance(exc, ClientError) and error_code(exc) in ACCESS_DENIED:
        action = f"iam:{exc.operation_name}"
        policy = RESTORE_POLICY_FILE if action in RESTORE_PERMISSIONS else REDUCE_POLICY_FILE
        return RemediationError(
            f"AccessDenied on {action} in account {account_id}{suffix}: the role Steward "
            f"uses there lacks {action} (see {policy}), or an SCP or permissions boundary "
            "denies it",
            False,
            code=error_code(exc),
        )
    base = collect_error(account_id, exc, "iam", context=context)
    code = error_code(exc) if isinstance(exc, ClientError) else ""
    return RemediationError(f"{base.message} in account {account_id}", base.retryable, code=code)


class Impossible(Exception):
    """Raised by an action's `read` when the target cannot be acted on (e.g. the key is
    gone); becomes `Plan(possible=False, reason=...)` or `PreconditionFailed`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------------------
# What an action acts on


def canonical(document: Any) -> str | None:
    """A policy document (a mapping) as canonical JSON text (sorted keys, no spaces), else None."""
    if not isinstance(document, Mapping):
        return None
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Target:
    """What an action acts on, built from a finding (`from_finding`) or by hand.

    `resource` is the finding's ARN: the account (`...:root`), a user, a group or a role,
    possibly with a path (`user/ops/alice`). `principal_name` is the name without the
    path. `user_name`/`group_name` are the user and group involved: the principal itself,
    or, for remove-user-from-group, the other side from the finding's details.
    """

    account_id: str
    resource: str
    principal_type: PrincipalType
    principal_name: str | None = None
    path: str = "/"
    partition: str = "aws"
    user_name: str | None = None
    group_name: str | None = None
    access_key_id: str | None = None
    policy_arn: str | None = None
    policy_name: str | None = None
    check: str = ""
    # A right-sizing proposal (`unused-permissions`): the new document as canonical JSON
    # text, and the digest of the document it was computed from (to refuse a stale one).
    proposal: str | None = None
    proposal_base: str | None = None
    # A role's trust policy to put back (`restore-trust-policy`, an activity containment):
    # the previous document as canonical JSON text, and the one the risky change set (what
    # an admin restoring by hand would put back to undo it).
    trust_policy: str | None = None
    trust_policy_set: str | None = None

    @classmethod
    def from_finding(
        cls, check: str, resource: str, details: Mapping[str, Any] | None = None
    ) -> Target:
        """Parse the principal from the ARN; take `access_key_id`, `policy_arn`,
        `policy_name`, `group_name`, `user_name`, a right-sizing `proposal` and the trust
        policies of a restore (`previous_trust_policy`, `trust_policy_set`) from the details.
        ValueError when `resource` is not an IAM account, user, group or role ARN."""
        details = details or {}
        match = IAM_ARN.match(resource.strip())
        if not match:
            raise ValueError(f"not an IAM account, user, group or role ARN: {resource!r}")

        def text(key: str) -> str | None:
            value = details.get(key)
            return str(value) if value not in (None, "") else None

        kind: PrincipalType = "account" if match["root"] else match["kind"]
        name: str | None = None
        path = "/"
        if match["rest"]:
            path_part, _, name = match["rest"].rpartition("/")
            path = f"/{path_part}/" if path_part else "/"
        return cls(
            account_id=match["account"],
            resource=resource.strip(),
            principal_type=kind,
            principal_name=name,
            path=path,
            partition=match["partition"],
            user_name=name if kind == "user" else text("user_name"),
            group_name=name if kind == "group" else text("group_name"),
            access_key_id=text("access_key_id"),
            policy_arn=text("policy_arn"),
            policy_name=text("policy_name"),
            check=check,
            proposal=canonical(details.get("proposal")),
            proposal_base=text("base_digest"),
            trust_policy=canonical(details.get("previous_trust_policy")),
            trust_policy_set=canonical(details.get("trust_policy_set")),
        )

    @property
    def label(self) -> str:
        """`IAM user alice`, `IAM role ops/deploy`, `account 123456789012`."""
        if self.principal_type == "account":
            return f"account {self.account_id}"
        return f"IAM {self.principal_type} {self.principal_name}"

    def aws_policy_arn(self, name: str) -> str:
        """The ARN of an AWS managed policy in this target's partition."""
        return f"arn:{self.partition}:iam::aws:policy/{name}"


# ---------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Plan:
    """What `apply` would do. `summary` is one sentence for a person (Slack, audit).
    `possible` False: `reason` says why and `apply` would refuse. `already_done`: the
    after-state holds; `apply` would change nothing. `irreversible_warning`: set for
    actions that cannot be undone, in words for the person approving."""

    action: str
    summary: str
    possible: bool = True
    reason: str | None = None
    already_done: bool = False
    irreversible_warning: str | None = None


@dataclass(frozen=True)
class Applied:
    """The outcome of `apply` or `undo`: the state before and after, the request ids of
    the AWS writes (for CloudTrail), and whether there was nothing to do."""

    action: str
    summary: str
    before: State
    after: State
    request_ids: tuple[str, ...] = ()
    already_done: bool = False


# ---------------------------------------------------------------------------------------
# IAM calls for one run


class Iam:
    """An IAM client for one plan/apply/undo: maps errors, keeps the write request ids.

    Method names are boto3's (`list_access_keys`). `missing=True` turns NoSuchEntity into
    None (the thing is not there), for reads and for writes whose target may already be
    gone (a delete retried by the SDK after a lost response, or raced by a person).
    """

    def __init__(self, session: boto3.Session, account_id: str, max_attempts: int) -> None:
        self.account_id = account_id
        self.request_ids: list[str] = []
        with self._errors():
            self.client = aws_client(session, "iam", max_attempts)

    @contextmanager
    def _errors(self, context: str = "") -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise remediation_error(exc, self.account_id, context=context) from exc

    def read(self, method: str, *, missing: bool = False, **params: Any) -> dict[str, Any] | None:
        try:
            with self._errors():
                return getattr(self.client, method)(**params)
        except RemediationError as exc:
            if missing and exc.code == "NoSuchEntity":
                return None
            raise

    def items(
        self, method: str, key: str, *, missing: bool = False, **params: Any
    ) -> list[Any] | None:
        """Every item of a list operation, all pages (dicts, or names for `PolicyNames`)."""
        try:
            with self._errors():
                if not self.client.can_paginate(method):
                    return list(getattr(self.client, method)(**params).get(key) or ())
                pages = self.client.get_paginator(method).paginate(**params)
                return [item for page in pages for item in page.get(key) or ()]
        except RemediationError as exc:
            if missing and exc.code == "NoSuchEntity":
                return None
            raise

    def write(self, method: str, *, missing: bool = False, **params: Any) -> bool:
        """Make one change. False: NoSuchEntity with `missing=True` (nothing to change)."""
        try:
            with self._errors():
                response = getattr(self.client, method)(**params)
        except RemediationError as exc:
            if missing and exc.code == "NoSuchEntity":
                return False
            raise
        request_id = (response.get("ResponseMetadata") or {}).get("RequestId")
        if request_id:
            self.request_ids.append(str(request_id))
        return True


def iso(value: datetime | str | None) -> str | None:
    """A JSON-ready date: aware UTC ISO 8601, whole seconds."""
    if value is None or isinstance(value, str):
        return value
    moment = utc(value)
    return moment.isoformat() if moment else None


def require(target: Target, *fields: str) -> None:
    """Impossible unless the target has every field (e.g. an unresolved access key id)."""
    missing = [f.replace("_", " ") for f in fields if not getattr(target, f)]
    if missing:
        raise Impossible(f"the finding does not name the {' and '.join(missing)}")


# ---------------------------------------------------------------------------------------
# Actions


class Action:
    """Base class of every remediation action. Subclasses declare the class attributes
    and implement `read`, `assess`, `change` and (reversible ones) `revert`."""

    id: ClassVar[str]
    title: ClassVar[str]
    reversible: ClassVar[bool]
    reduces_access_only: ClassVar[bool]
    permissions: ClassVar[frozenset[str]]
    undo_permissions: ClassVar[frozenset[str]] = frozenset()
    # Declared, never inferred: the apply itself needs a permission that could grant (a
    # new policy version, an inline document replaced), so apply and undo run under the
    # restore role only, never the default one, even though what it writes only takes
    # access away (checked before it is written). Off: the generator refuses such a need.
    apply_needs_restore: ClassVar[bool] = False
    #: Why such an apply needs the restore role, in words (said when that role is off).
    apply_restore_why: ClassVar[str] = "its write could grant access"
    max_attempts: ClassVar[int] = DEFAULT_MAX_ATTEMPTS
    #: Another action Steward must have done on the resource, the waiting period earlier.
    needs_earlier: ClassVar[str | None] = None

    # -- what subclasses implement ------------------------------------------------------

    def read(self, iam: Iam, target: Target) -> State:
        """The complete live state this action would change (its before-state). Raise
        `Impossible` when there is nothing it could act on."""
        raise NotImplementedError

    def assess(self, target: Target, state: State) -> Plan:
        """Judge `state` (pure): possible, already done, and the sentence to show."""
        raise NotImplementedError

    def change(self, iam: Iam, target: Target, state: State) -> None:
        """Make the change, given the before-state `read` returned."""
        raise NotImplementedError

    def revert(self, iam: Iam, target: Target, before: State, current: State) -> bool:
        """Put back what the apply that recorded `before` changed; `current` is the
        state now. Return False when there was nothing left to put back."""
        raise NotUndoable(f"{self.id} cannot be undone", False)

    # -- the shared behaviour -------------------------------------------------------------

    @property
    def undo_needs_restore(self) -> bool:
        """The undo gives access back (re-attach, put back, add to a group...): it runs under
        Steward's restore role, never the default one."""
        return any(access_class(p) == "restore" for p in self.undo_permissions)

    def restore_by_hand(self, target: Target, before: Mapping[str, Any]) -> str:
        """What an administrator does to put back what the apply that recorded `before`
        changed, in words and AWS CLI commands (for when the restore role is off)."""
        return (f"Put back the {self.title.lower()} on {target.label} in account "
                f"{target.account_id} from the before-state below.")

    def apply_by_hand(self, target: Target) -> str:
        """What an administrator runs to make this change when Steward may not (only the
        actions that `apply_needs_restore` say more)."""
        return f"{self.title} on {target.label} in account {target.account_id} by hand."

    def apply_before_by_hand(self, target: Target) -> State:
        """For an apply refused because the restore role is off: the before-state the
        target alone tells (what an admin applying by hand would put back to undo it), or
        {} when only a live read could say."""
        return {}

    @property
    def owner_may_apply_alone(self) -> bool:
        """docs/architecture.md §4: an owner may take alone the reversible actions that only reduce
        access; every other action needs a security approver who is not the requester."""
        return self.reversible and self.reduces_access_only

    @property
    def auto_remediable(self) -> bool:
        """`STEWARD_AUTO_REMEDIATE` may take it for the owner when their deadline passed: it
        acts as the owner would, so only what the owner may take alone and undo in one click
        (not right-sizing: its undo gives access back through the restore role)."""
        return self.owner_may_apply_alone and not self.undo_needs_restore

    def iam(self, session: boto3.Session, target: Target) -> Iam:
        return Iam(session, target.account_id, self.max_attempts)

    def plan(self, session: boto3.Session, target: Target) -> Plan:
        try:
            state = self.read(self.iam(session, target), target)
        except Impossible as exc:
            return Plan(self.id, f"Cannot {self.title.lower()}: {exc.reason}.", False, exc.reason)
        return self.assess(target, state)

    def apply(
        self,
        session: boto3.Session,
        target: Target,
        *,
        on_before: Callable[[State], None] | None = None,
    ) -> Applied:
        iam = self.iam(session, target)
        try:
            before = self.read(iam, target)
        except Impossible as exc:
            raise PreconditionFailed(f"{self.id} on {target.label}: {exc.reason}") from exc
        plan = self.assess(target, before)
        if not plan.possible:
            raise PreconditionFailed(f"{self.id} on {target.label}: {plan.reason}")
        if plan.already_done:
            return Applied(self.id, plan.summary, before, before, (), already_done=True)
        if on_before is not None:
            on_before(before)
        self.change(iam, target, before)
        after = self.read_after(iam, target)
        return Applied(self.id, plan.summary, before, after, tuple(iam.request_ids))

    def undo(self, session: boto3.Session, target: Target, before: Mapping[str, Any]) -> Applied:
        if not self.reversible:
            raise NotUndoable(f"{self.id} cannot be undone ({self.title})", False)
        iam = self.iam(session, target)
        try:
            current = self.read(iam, target)
        except Impossible as exc:
            raise RemediationError(f"cannot undo {self.id} on {target.label}: {exc.reason}") from exc
        changed = self.revert(iam, target, dict(before), current)
        after = self.read_after(iam, target) if changed else current
        summary = f"Undid {self.title.lower()} on {target.label}."
        if not changed:
            summary = f"Nothing to undo for {self.title.lower()} on {target.label}."
        return Applied(
            self.id, summary, current, after, tuple(iam.request_ids), already_done=not changed
        )

    def read_after(self, iam: Iam, target: Target) -> State:
        try:
            return self.read(iam, target)
        except Impossible as exc:
            return {"impossible": exc.reason}


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`1 access key`, `2 access keys`."""
    return f"{count} {noun if count == 1 else (plural or noun + 's')}"
