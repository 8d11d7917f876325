"""The IAM domain model: one account's IAM state at one moment, and what checks say about it.

Everything here is a frozen dataclass built by `checks.collect` (from AWS) or by test
fixtures (by hand). Rules read it; nothing writes it. All datetimes are aware UTC, truncated
to whole seconds, so values from the credential report and from the API compare equal.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

AWS_MANAGED_PREFIX = "arn:aws:iam::aws:policy/"


def utc(value: datetime | None) -> datetime | None:
    """Aware UTC, whole seconds. Naive datetimes are taken to be UTC (moto returns those)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 is the most severe; for sorting."""
        return list(Severity).index(self)


#: The one severity order (most severe first); everything that sorts or lists severities
#: reads it or `severity_rank`.
SEVERITY_ORDER: tuple[str, ...] = tuple(s.value for s in Severity)


def severity_rank(value: str) -> int:
    """`Severity.rank` of a stored severity string; anything unknown sorts last."""
    try:
        return Severity(value).rank
    except ValueError:
        return len(SEVERITY_ORDER)


class ResourceType(enum.StrEnum):
    ACCOUNT = "account"
    USER = "user"
    KEY = "key"
    GROUP = "group"
    ROLE = "role"


# ---------------------------------------------------------------------------------------
# Policies


@dataclass(frozen=True)
class PolicyRef:
    """A managed policy attached to a principal (its document lives in `AccountSnapshot.policies`)."""

    name: str
    arn: str

    @property
    def aws_managed(self) -> bool:
        return self.arn.startswith(AWS_MANAGED_PREFIX)


@dataclass(frozen=True)
class InlinePolicy:
    name: str
    document: Mapping[str, Any]


@dataclass(frozen=True)
class ManagedPolicy:
    """A managed policy with the document of its default version."""

    name: str
    arn: str
    document: Mapping[str, Any]
    attachment_count: int = 0
    default_version_id: str = "v1"

    @property
    def aws_managed(self) -> bool:
        return self.arn.startswith(AWS_MANAGED_PREFIX)


# ---------------------------------------------------------------------------------------
# Principals


@dataclass(frozen=True)
class AccessKeySlot:
    """One of the two access-key slots of the credential report.

    The report carries no key id; `checks.scan` resolves ids only for keys with findings,
    by matching `last_rotated` (the key's creation time) against ListAccessKeys.
    """

    slot: int  # 1 or 2
    active: bool
    last_rotated: datetime | None  # creation time of the key in this slot
    last_used: datetime | None = None
    last_used_region: str | None = None
    last_used_service: str | None = None

    @property
    def exists(self) -> bool:
        return self.last_rotated is not None


@dataclass(frozen=True)
class User:
    name: str
    arn: str
    created: datetime
    user_id: str = ""
    path: str = "/"
    tags: Mapping[str, str] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    attached_policies: tuple[PolicyRef, ...] = ()
    inline_policies: tuple[InlinePolicy, ...] = ()
    permissions_boundary: str | None = None  # the boundary policy's ARN
    # From the credential report. None where the report has no information.
    password_enabled: bool = False
    password_last_used: datetime | None = None
    password_last_changed: datetime | None = None
    mfa_active: bool = False
    access_keys: tuple[AccessKeySlot, ...] = ()
    in_credential_report: bool = True

    @property
    def existing_keys(self) -> tuple[AccessKeySlot, ...]:
        return tuple(k for k in self.access_keys if k.exists)

    @property
    def active_keys(self) -> tuple[AccessKeySlot, ...]:
        return tuple(k for k in self.access_keys if k.exists and k.active)


@dataclass(frozen=True)
class Group:
    name: str
    arn: str
    created: datetime | None = None
    attached_policies: tuple[PolicyRef, ...] = ()
    inline_policies: tuple[InlinePolicy, ...] = ()


@dataclass(frozen=True)
class Role:
    name: str
    arn: str
    created: datetime
    trust_policy: Mapping[str, Any] = field(default_factory=dict)
    path: str = "/"
    tags: Mapping[str, str] = field(default_factory=dict)
    attached_policies: tuple[PolicyRef, ...] = ()
    inline_policies: tuple[InlinePolicy, ...] = ()
    last_used: datetime | None = None
    last_used_region: str | None = None
    permissions_boundary: str | None = None  # the boundary policy's ARN
    instance_profiles: tuple[str, ...] = ()  # names of the instance profiles holding it

    @property
    def service_linked(self) -> bool:
        return self.path.startswith("/aws-service-role/")


@dataclass(frozen=True)
class RootAccount:
    """The `<root_account>` row of the credential report."""

    arn: str
    created: datetime | None = None
    password_last_used: datetime | None = None
    mfa_active: bool = False
    access_keys: tuple[AccessKeySlot, ...] = ()


@dataclass(frozen=True)
class PasswordPolicy:
    minimum_length: int = 8
    require_symbols: bool = False
    require_numbers: bool = False
    require_uppercase: bool = False
    require_lowercase: bool = False
    allow_users_to_change: bool = False
    max_age_days: int | None = None
    reuse_prevention: int | None = None
    hard_expiry: bool = False


@dataclass(frozen=True)
class Trail:
    """A CloudTrail trail as one account sees it (DescribeTrails, shadow trails included).

    `is_logging`, `management_events` and `bucket_public` are None when they were not read:
    the collector reads them for one trail only (the multi-region trail that matters), to keep
    its budget of calls; rules never read None as "fine"."""

    name: str
    arn: str
    home_region: str = ""
    multi_region: bool = False
    organization: bool = False
    log_file_validation: bool = False
    s3_bucket: str | None = None
    custom_event_selectors: bool = False
    is_logging: bool | None = None
    # Default selectors record every management event; custom ones are not read here.
    management_events: bool | None = None
    # From s3:GetBucketPolicyStatus, when the bucket is visible from this account.
    bucket_public: bool | None = None


def main_trail(trails: Iterable[Trail]) -> Trail | None:
    """The trail whose status is read: a multi-region trail, preferring one recording the
    default (every management event) and this account's own over a shadow copy."""
    multi = [t for t in trails if t.multi_region]
    if not multi:
        return None
    return sorted(multi, key=lambda t: (t.custom_event_selectors, t.organization, t.arn))[0]



# ---------------------------------------------------------------------------------------
# The snapshot


@dataclass(frozen=True)
class AccountSnapshot:
    account_id: str
    collected_at: datetime
    users: tuple[User, ...] = ()
    groups: tuple[Group, ...] = ()
    roles: tuple[Role, ...] = ()
    # Customer managed policies and the AWS managed policies that are attached, by ARN.
    policies: tuple[ManagedPolicy, ...] = ()
    password_policy: PasswordPolicy | None = None
    # None when the credential report had no root row (moto, or a partial report): root
    # checks then report nothing rather than a clean bill of health.
    root: RootAccount | None = None
    summary: Mapping[str, int] = field(default_factory=dict)
    api_calls: int = 0
    # The Organizations SCPs attached to the account, when the scan could read them; None
    # when it could not (not an organization member, or no permission): no SCP is assumed.
    scps: tuple[ManagedPolicy, ...] | None = None
    # The SCPs of the levels above the account (the root first, then each OU down to the
    # account's parent), one tuple per level; each level must allow an action too. Empty
    # when they were not read (then only the account's own SCPs limit).
    scps_above: tuple[tuple[ManagedPolicy, ...], ...] = ()
    # Why the SCPs are not applied, when `scps` is None and the scan tried ("SCPs not
    # visible: AccessDenied"); shown in the scan's coverage.
    scps_note: str = ""
    # Whether roles' `instance_profiles` were collected (hand-made snapshots leave it False).
    instance_profiles_known: bool = False
    # CloudTrail's trails; None when not read (hand-made snapshots, or no cloudtrail permission).
    trails: tuple[Trail, ...] | None = None
    # Last-accessed data by principal ARN (`checks.usage.PrincipalUsage`), stored by the
    # usage collection and attached by the scan; None: not collected (the
    # `unused-permissions` check then judges nothing).
    usage: Mapping[str, Any] | None = None

    # Lookup indexes; cached_property writes to __dict__ directly, so this works on a
    # frozen dataclass.
    @cached_property
    def user_by_name(self) -> Mapping[str, User]:
        return {u.name: u for u in self.users}

    @cached_property
    def group_by_name(self) -> Mapping[str, Group]:
        return {g.name: g for g in self.groups}

    @cached_property
    def role_by_name(self) -> Mapping[str, Role]:
        return {r.name: r for r in self.roles}

    @cached_property
    def policy_by_arn(self) -> Mapping[str, ManagedPolicy]:
        return {p.arn: p for p in self.policies}

    @property
    def account_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:root"


# ---------------------------------------------------------------------------------------
# What checks say


class Status(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Result:
    """One check's verdict on one resource. FAIL results become findings.

    `sub_key` distinguishes several findings of one check on one resource (an access key
    slot, later its id; a policy ARN or inline policy name). `details` is JSON-ready.
    """

    check: str
    account: str
    resource: str
    status: Status
    sub_key: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    owner: str | None = None

    @property
    def failed(self) -> bool:
        return self.status is Status.FAIL

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.account, self.check, self.resource, self.sub_key)


def fingerprint(account: str, check: str, resource: str, sub_key: str = "") -> str:
    """Stable identity of a finding across scans."""
    raw = "\x1f".join((account, check, resource, sub_key))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]
