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

Sessions: `session_for` assumes the target's role with the ExternalId when one is set,
through botocore's refreshing credentials (renewed before they expire, so a long scan or a
job that waits in the queue never signs with expired ones). Every session reads botocore's
data through one shared loader and caches its clients (`shared_session`): a new
`boto3.Session` per account re-read botocore's JSON data files, about half the CPU of a
many-account scan.

The restore role (`STEWARD_RESTORE_ROLE_NAME`, off by default) is a second role of the same
name in every account where it is enabled, the Steward's own account included (there is
no "current credentials" shortcut: the Steward role itself never holds restore
permissions). `restore_target` names it; `session_for` assumes it like any other.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.session
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    Credentials,
    RefreshableCredentials,
)
from botocore.loaders import Loader

from checks.aws_calls import (
    DEFAULT_MAX_ATTEMPTS,
    CollectError,
    aws_client,
    aws_errors,
    cache_clients,
    caches_clients,
    caller_identity,
    on_needs_retry,
)

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
    name: str = ""  # the account's Organizations name, when discovery knows it


def parse_role_arn(role_arn: str) -> tuple[str, str, str]:
    """(partition, account id, role name with path) of an IAM role ARN; CollectError if
    it is not one."""
    match = ROLE_ARN.match(role_arn.strip())
    if not match:
        raise CollectError(None, f"not an IAM role ARN: {role_arn!r}", False)
    return match["partition"], match["account"], match["name"]


def _caller(base_session: boto3.Session, max_attempts: int) -> tuple[str, str]:
    """(account id, partition) of the base credentials."""
    return caller_identity(base_session, max_attempts)


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
                targets[account_id] = Target(account_id, None, f"{label}, current credentials",
                                             str(acct.get("Name") or ""))
            else:
                arn = f"arn:{partition}:iam::{account_id}:role/{role_path}"
                targets[account_id] = Target(account_id, arn, label, str(acct.get("Name") or ""))

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
    role's credentials (sts:AssumeRole, with ExternalId when set), refreshed before they
    expire. Raises `CollectError` naming the role when it cannot be assumed.

    The session is light (botocore's data comes from the process's one loader) and its
    clients are cached for its life (`checks.aws_calls.cache_clients`). With a base session
    from `shared_session` (itself shared by threads), the no-role target gets a session of
    its own over the base's credentials, so its API call counter counts only its calls.
    """
    if target.role_arn is None:
        if not caches_clients(base_session):
            return base_session
        return _account_session(base_session, base_session.get_credentials())
    extra = {"RoleSessionName": session_name, "DurationSeconds": duration_seconds}
    if external_id:
        extra["ExternalId"] = external_id
    fetcher = _AssumeRoleWithClient(
        lambda: aws_client(base_session, "sts", max_attempts), target.role_arn, extra
    )
    # The first AssumeRole happens now, so a role that cannot be assumed is named here;
    # later ones happen when the credentials come within botocore's refresh window.
    with aws_errors(
        target.account_id,
        "sts",
        context=f"role {target.role_arn}; check its trust policy and the ExternalId",
    ):
        credentials = RefreshableCredentials.create_from_metadata(
            fetcher.fetch_credentials(), fetcher.fetch_credentials, "assume-role"
        )
    return _account_session(base_session, credentials)


def shared_session(region_name: str | None = None) -> boto3.Session:
    """A base session for many accounts: botocore's data read through the process's one
    loader, and clients cached (it is meant to be shared by a scan's threads: botocore
    clients are thread-safe). Credentials, region and endpoints come from the usual chain."""
    return cache_clients(_light_session(region_name=region_name))


class _SearchPaths(list):
    """boto3 appends its data directory to a session's loader paths each time a Session is
    built; with one loader shared by every session, keep each path once."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


_loader: Loader | None = None
_loader_lock = threading.Lock()


def shared_loader() -> Loader:
    """The process's one botocore data loader: service models and endpoint data are read
    and parsed once, not once per account session (that was half the CPU of a scan)."""
    global _loader
    with _loader_lock:
        if _loader is None:
            paths = [p for p in os.environ.get("AWS_DATA_PATH", "").split(os.pathsep) if p]
            _loader = Loader(extra_search_paths=_SearchPaths(os.path.expanduser(p) for p in paths))
        return _loader


def _light_session(*, region_name: str | None = None, profile_name: str | None = None) -> boto3.Session:
    core = botocore.session.Session()
    core.register_component("data_loader", shared_loader())
    core.register("needs-retry", on_needs_retry, unique_id="iam-steward-throttles")
    return boto3.Session(botocore_session=core, region_name=region_name, profile_name=profile_name)


def _account_session(base_session: boto3.Session, credentials: Credentials | None) -> boto3.Session:
    # Keep the base session's profile (for its region and endpoint settings) when it has a
    # real one; the credentials below win over the profile's own.
    profile = base_session.profile_name
    session = _light_session(
        region_name=base_session.region_name,
        profile_name=profile if profile in base_session.available_profiles else None,
    )
    if credentials is not None:
        session._session.register_component("credential_provider", CredentialResolver([_Given(credentials)]))
    return cache_clients(session)


class _Given(CredentialProvider):
    METHOD = "assume-role"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials


class _AssumeRoleWithClient(AssumeRoleCredentialFetcher):
    """botocore's AssumeRole fetcher (its refresh logic, ExternalId, session name), calling
    the base session's one cached STS client instead of building an STS client (from frozen
    base credentials) at every refresh."""

    def __init__(self, sts: Callable[[], Any], role_arn: str, extra_args: dict) -> None:
        super().__init__(lambda *_a, **_k: sts(), None, role_arn, extra_args=extra_args)
        self._sts = sts

    def _create_client(self) -> Any:
        return self._sts()
