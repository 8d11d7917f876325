"""The check catalog: every check Steward runs, with its contract, in one explicit tuple.

Ids are stable (docs/architecture.md §3): they appear in JSON output, the database and Slack buttons.
Tests walk `CATALOG` (unique ids, a fixture test per check, remediations that exist).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from checks.context import CheckContext
from checks.model import AccountSnapshot, ResourceType, Result, Severity
from checks.rules import cloudtrail, credentials, password_policy, policies, roles, root, trust
from checks.rules import usage as usage_rules

Rule = Callable[[AccountSnapshot, CheckContext], list[Result]]


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str
    severity: Severity
    resource_type: ResourceType
    rationale: str  # one line a busy owner reads in a DM
    reference: str
    evaluate: Rule
    # Remediation action ids offered for a finding of this check (checks/remediate/).
    remediations: tuple[str, ...] = ()


CATALOG: tuple[CheckSpec, ...] = (
    CheckSpec(
        "root-access-key",
        "Root account has an active access key",
        Severity.CRITICAL,
        ResourceType.ACCOUNT,
        "Root keys cannot be restricted by any policy; a leak is a full account takeover.",
        "CIS 1.4",
        root.root_access_key,
    ),
    CheckSpec(
        "root-mfa-disabled",
        "Root account has no MFA",
        Severity.CRITICAL,
        ResourceType.ACCOUNT,
        "The root password alone guards every resource in the account.",
        "CIS 1.5",
        root.root_mfa_disabled,
    ),
    CheckSpec(
        "root-recently-used",
        "Root account used recently",
        Severity.HIGH,
        ResourceType.ACCOUNT,
        "Daily work as root bypasses every permission boundary and audit habit.",
        "CIS 1.7",
        root.root_recently_used,
    ),
    CheckSpec(
        "password-policy-weak",
        "Account password policy is weak",
        Severity.MEDIUM,
        ResourceType.ACCOUNT,
        "Short, simple or reused console passwords are guessed and sprayed.",
        "CIS 1.8, 1.9",
        password_policy.password_policy_weak,
        ("apply-cis-password-policy",),
    ),
    CheckSpec(
        "console-user-without-mfa",
        "Console user without MFA",
        Severity.HIGH,
        ResourceType.USER,
        "A phished or reused password gives full console access without a second factor.",
        "CIS 1.10",
        credentials.console_user_without_mfa,
        ("remove-console-password",),
    ),
    CheckSpec(
        "unused-password",
        "Console password not used",
        Severity.MEDIUM,
        ResourceType.USER,
        "A password nobody uses is a login nobody watches.",
        "CIS 1.12",
        credentials.unused_password,
        ("remove-console-password",),
    ),
    CheckSpec(
        "unused-access-key",
        "Access key not used",
        Severity.MEDIUM,
        ResourceType.KEY,
        "An unused key is pure risk: nothing breaks when it goes, a lot breaks if it leaks.",
        "CIS 1.12",
        credentials.unused_access_key,
        ("deactivate-access-key", "delete-access-key"),
    ),
    CheckSpec(
        "old-access-key",
        "Access key not rotated",
        Severity.MEDIUM,
        ResourceType.KEY,
        "Long-lived keys end up in laptops, repositories and former colleagues' hands.",
        "CIS 1.14",
        credentials.old_access_key,
        ("deactivate-access-key",),
    ),
    CheckSpec(
        "multiple-active-keys",
        "User has two active access keys",
        Severity.LOW,
        ResourceType.USER,
        "Two live keys usually means a rotation that was never finished.",
        "CIS 1.13",
        credentials.multiple_active_keys,
    ),
    CheckSpec(
        "inactive-access-key",
        "Inactive access key still exists",
        Severity.LOW,
        ResourceType.KEY,
        "A deactivated key can be switched back on; delete keys nobody needs.",
        "Best practice: delete unused keys",
        credentials.inactive_access_key,
        ("delete-access-key",),
    ),
    CheckSpec(
        "stale-user",
        "IAM user not used",
        Severity.HIGH,
        ResourceType.USER,
        "Accounts of people who left or projects that ended keep their access until removed.",
        "Best practice: find unused IAM accounts",
        credentials.stale_user,
        ("quarantine-user", "delete-user"),
    ),
    CheckSpec(
        "user-direct-policy",
        "Policy attached directly to a user",
        Severity.LOW,
        ResourceType.USER,
        "Permissions granted person by person drift; grant them through groups or roles.",
        "CIS 1.15",
        policies.user_direct_policy,
        ("detach-managed-policy", "delete-inline-policy"),
    ),
    CheckSpec(
        "admin-policy",
        "Policy allows full administrator access",
        Severity.HIGH,
        ResourceType.USER,
        "`*` on `*` means every action on every resource, including turning off the logs.",
        "CIS 1.16",
        policies.admin_policy,
        ("detach-managed-policy", "delete-inline-policy", "remove-user-from-group"),
    ),
    CheckSpec(
        "service-wildcard-policy",
        "Policy allows every action of a service",
        Severity.MEDIUM,
        ResourceType.USER,
        "`service:*` grants actions nobody reviewed, including ones added by AWS later.",
        "Least privilege",
        policies.service_wildcard_policy,
        ("detach-managed-policy", "delete-inline-policy"),
    ),
    CheckSpec(
        "privilege-escalation-policy",
        "Principal can escalate its privileges",
        Severity.HIGH,
        ResourceType.USER,
        "All its policies together, or the roles it can assume, let it grant itself more.",
        "Least privilege",
        policies.privilege_escalation_policy,
        ("detach-managed-policy", "delete-inline-policy"),
    ),
    CheckSpec(
        "role-trust-external-no-external-id",
        "Role trusts another account without an ExternalId",
        Severity.HIGH,
        ResourceType.ROLE,
        "Without sts:ExternalId a third party can be tricked into using this role (confused deputy).",
        "Confused deputy",
        trust.role_trust_external_no_external_id,
    ),
    CheckSpec(
        "role-trust-public",
        "Role can be assumed by any AWS account",
        Severity.CRITICAL,
        ResourceType.ROLE,
        "A `*` principal with no restricting condition lets anyone on AWS try to assume it.",
        "Public access",
        trust.role_trust_public,
    ),
    CheckSpec(
        "compromised-key-quarantine",
        "AWS quarantined this user for a leaked key",
        Severity.CRITICAL,
        ResourceType.USER,
        "AWS found this user's key in public; rotate it and check CloudTrail for misuse.",
        "Leaked keys",
        policies.compromised_key_quarantine,
        ("quarantine-user",),
    ),
    CheckSpec(
        "unused-role",
        "Role not used",
        Severity.LOW,
        ResourceType.ROLE,
        "Roles nobody assumes still carry their permissions; remove what is not needed.",
        "Unused access",
        roles.unused_role,
        ("delete-role",),
    ),
    CheckSpec(
        "cloudtrail-no-multi-region-trail",
        "No multi-region CloudTrail trail is logging",
        Severity.HIGH,
        ResourceType.ACCOUNT,
        "Without a logging trail in every region, nobody can tell who changed IAM, or when.",
        "CIS 3.1",
        cloudtrail.no_multi_region_trail,
    ),
    CheckSpec(
        "cloudtrail-log-validation-off",
        "CloudTrail log file validation is off",
        Severity.MEDIUM,
        ResourceType.ACCOUNT,
        "Without digest files, edited or deleted log files go unnoticed.",
        "CIS 3.2",
        cloudtrail.log_validation_off,
    ),
    CheckSpec(
        "cloudtrail-management-events-off",
        "CloudTrail does not record management events",
        Severity.HIGH,
        ResourceType.ACCOUNT,
        "IAM changes are management events: a trail that skips them records none of them.",
        "CIS 3.1",
        cloudtrail.management_events_off,
    ),
    CheckSpec(
        "cloudtrail-bucket-public",
        "CloudTrail bucket is publicly readable",
        Severity.CRITICAL,
        ResourceType.ACCOUNT,
        "Anyone can read the account's activity log: every principal, IP and resource in it.",
        "CIS 3.3",
        cloudtrail.bucket_public,
    ),
    CheckSpec(
        "unused-permissions",
        "Permissions granted but not used",
        Severity.MEDIUM,
        ResourceType.USER,
        "Services it never used are access an attacker gets for free; the proposal keeps what it uses.",
        "Least privilege: IAM last-accessed data",
        usage_rules.unused_permissions,
        ("rightsize-policy",),
    ),
)


def _never(_snapshot: AccountSnapshot, _ctx: CheckContext) -> list[Result]:
    return []


#: A revocation a reviewer asked for in an access review (bot/services/reviews.py): raised
#: by a person, never by a scan (scans neither evaluate nor resolve it). One finding per
#: entitlement to remove, so the remediation engine carries it out like any other (the same
#: approval rules, undo and audit).
ACCESS_REVIEW_REVOCATION = CheckSpec(
    "access-review-revocation",
    "Access review: entitlement to remove",
    Severity.MEDIUM,
    ResourceType.USER,
    "Its reviewer said this access is no longer needed.",
    "SOC 2 CC6.2/CC6.3, ISO 27001 A.5.18",
    _never,
    ("remove-user-from-group", "detach-managed-policy", "delete-inline-policy", "deactivate-access-key",
     "remove-console-password"),
)
RAISED_BY_PEOPLE = frozenset({ACCESS_REVIEW_REVOCATION.id})

BY_ID: dict[str, CheckSpec] = {spec.id: spec for spec in (*CATALOG, ACCESS_REVIEW_REVOCATION)}


def spec(check_id: str) -> CheckSpec:
    return BY_ID[check_id]


def severity_of(check_id: str, details: Mapping[str, Any] | None = None) -> Severity:
    """The check's severity, unless the finding's evidence lowers it: a latent escalation
    path (`details["severity"]`) is reported below an exploitable one of the same check."""
    override = (details or {}).get("severity")
    return Severity(override) if override in Severity.__members__.values() else BY_ID[check_id].severity
