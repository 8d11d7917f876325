"""Which accounts a scan covers, and a boto3 Session for each.

Three sources, combined:

* nothing configured: the account of the current credentials (the standard boto3 chain);
* `account_roles`: role ARNs (`STEWARD_ACCOUNT_ROLES`), one account each, the account id
  read from the ARN;
* `org_role_name` (`STEWARD_ORG_ROLE_NAME`): every ACTIVE account of the AWS Organization
  (organizations:ListAccounts, so the credentials must be the management account's or a
  delegated administrator's), each through `arn:<partition>:iam::<id>:role/<name>`.

The account the current credentials belong to is always scanned with those credentials,
never by assuming a role in itself: the Organizations access role normally exists only in
member accounts, and assuming into the own account would need a trust policy nobody wrote.
An explicit role ARN for an account wins over the Organizations one.

Sessions: `session_for` assumes the target's role with the ExternalId when one is set. The
temporary credentials are not refreshed (one hour by default, far longer than one
account's scan).

The restore role (`STEWARD_RESTORE_ROLE_NAME`, off by default) is a second role of the same
name in every account where it is enabled, the Steward's own account included (there is
no "current credentials" shortcut: the Steward role itself never holds restore
permissions). `restore_target` names it; `session_for` assumes it like any other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import boto3

from checks.collect import DEFAULT_MAX_ATTEMPTS, CollectError, aws_client, aws_errors

# Role names (and, in practice, path segments) use IAM's name characters; anything else in
# a configured ARN is a pasting mistake (two ARNs joined by ';', a stray quote) to report.
ROLE_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):role/(?P<name>(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64})$"
)
ACCOUNT_ID = re.compile(r"^\d{12}$")
ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")


@dataclass(frozen=True)
class Target:
    """One account to scan. `role_arn` None: use the base credentials. `account_id` None:
    whatever account the base credentials belong to (not looked up until needed)."""

    account_id: str | None
    role_arn: str | None
    label: str


def parse_role_arn(role_arn: str) -> tuple[str, str, str]:
    """(partition, account id, role name with path) of an IAM role ARN; CollectError if
    it is not one."""
    match = ROLE_ARN.match(role_arn.strip())
    if not match:
        raise CollectError(None, f"not an IAM role ARN: {role_arn!r}", False)
    return match["partition"], match["account"], match["name"]


def _caller(base_session: boto3.Session, max_attempts: int) -> tuple[str, str]:
    """(account id, partition) of the base credentials."""
    with aws_errors(None, "sts"):
        identity = aws_client(base_session, "sts", max_attempts).get_caller_identity()
    partition = str(identity.get("Arn", "arn:aws:")).split(":")[1] or "aws"
    return str(identity["Account"]), partition


def _org_accounts(base_session: boto3.Session, max_attempts: int) -> list[dict]:
    with aws_errors(
        None,
        "organizations",
        context="Organizations discovery needs the management account or a delegated administrator",
    ):
        org = aws_client(base_session, "organizations", max_attempts)
        pages = org.get_paginator("list_accounts").paginate()
        accounts = [a for page in pages for a in page.get("Accounts") or ()]
    # `State` is the newer field, `Status` the one moto and older API versions return.
    return [a for a in accounts if (a.get("State") or a.get("Status")) == "ACTIVE"]


def discover_targets(
    base_session: boto3.Session,
    *,
    account_roles: Iterable[str] = (),
    org_role_name: str | None = None,
    external_id: str | None = None,
    only_accounts: set[str] | None = None,
    exclude_accounts: set[str] | frozenset[str] = frozenset(),
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> list[Target]:
    """The accounts to scan, in a stable order (Organizations order, then the listed
    roles), without `exclude_accounts`. `only_accounts` keeps those ids (`steward scan
    --account ID`); an id that is not among the targets is a `CollectError`. `external_id`
    is not needed to discover (it is sent by `session_for`); it is accepted so callers can
    pass the settings as one.
    """
    del external_id  # used by session_for, not for discovery
    targets: dict[str, Target] = {}
    unresolved: Target | None = None
    caller: tuple[str, str] | None = None

    if org_role_name:
        caller = _caller(base_session, max_attempts)
        own_id, partition = caller
        role_path = org_role_name.strip().strip("/")
        for acct in _org_accounts(base_session, max_attempts):
            account_id = str(acct["Id"])
            label = f"{acct.get('Name') or account_id} ({account_id})"
            if account_id == own_id:
                targets[account_id] = Target(account_id, None, f"{label}, current credentials")
            else:
                arn = f"arn:{partition}:iam::{account_id}:role/{role_path}"
                targets[account_id] = Target(account_id, arn, label)

    for role_arn in account_roles:
        role_arn = role_arn.strip()
        if not role_arn:
            continue
        _, account_id, name = parse_role_arn(role_arn)
        targets[account_id] = Target(account_id, role_arn, f"{account_id} (role/{name})")

    for account_id in exclude_accounts:
        targets.pop(account_id, None)
    if not targets and not org_role_name and not account_roles:
        unresolved = Target(None, None, "current credentials")

    if not targets and unresolved is None:
        raise CollectError(None, "no account left to scan: STEWARD_EXCLUDE_ACCOUNTS excludes every configured one", False)
    if only_accounts is None:
        return [unresolved] if unresolved else list(targets.values())

    for wanted in only_accounts:
        if not ACCOUNT_ID.match(wanted):
            raise CollectError(wanted, f"not an AWS account id: {wanted!r} (12 digits)", False)
    if unresolved is not None:
        own_id = (caller or _caller(base_session, max_attempts))[0]
        targets[own_id] = Target(own_id, None, f"{own_id} (current credentials)")
    missing = sorted(only_accounts - targets.keys())
    if missing:
        known = ", ".join(sorted(targets)) or "none"
        raise CollectError(
            missing[0],
            f"account {', '.join(missing)} is not among the configured accounts ({known})",
            False,
        )
    return [t for account_id, t in targets.items() if account_id in only_accounts]


def restore_target(account_id: str, role_name: str, partition: str = "aws") -> Target:
    """The restore role of `account_id`: `arn:<partition>:iam::<account>:role/<role_name>`."""
    if not ROLE_NAME.match(role_name):
        raise CollectError(account_id, f"not an IAM role name: {role_name!r}", False)
    arn = f"arn:{partition}:iam::{account_id}:role/{role_name}"
    return Target(account_id, arn, f"{account_id} (restore role/{role_name})")


def session_for(
    target: Target,
    base_session: boto3.Session,
    *,
    external_id: str | None = None,
    session_name: str = "iam-steward",
    duration_seconds: int = 3600,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> boto3.Session:
    """A Session for `target`: the base session itself when it has no role, otherwise the
    role's temporary credentials (sts:AssumeRole, with ExternalId when set). Raises
    `CollectError` naming the role when it cannot be assumed."""
    if target.role_arn is None:
        return base_session
    request = {
        "RoleArn": target.role_arn,
        "RoleSessionName": session_name,
        "DurationSeconds": duration_seconds,
    }
    if external_id:
        request["ExternalId"] = external_id
    with aws_errors(
        target.account_id,
        "sts",
        context=f"role {target.role_arn}; check its trust policy and the ExternalId",
    ):
        credentials = aws_client(base_session, "sts", max_attempts).assume_role(**request)[
            "Credentials"
        ]
    # Keep the base session's profile (for its region and endpoint settings) when it has a
    # real one; the explicit credentials below win over the profile's own.
    profile = base_session.profile_name
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=base_session.region_name,
        profile_name=profile if profile in base_session.available_profiles else None,
    )
