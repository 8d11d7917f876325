"""The only boto3 *read* path: one AWS account -> one `AccountSnapshot`.

A scan is a handful of calls whatever the number of principals:

    sts:GetCallerIdentity                       1
    iam:GenerateCredentialReport                1 (+1 per regeneration)
    iam:GetAccountAuthorizationDetails          1 per page (pages of 1,000 items)
    iam:ListPolicies (AWS scope, attached)      1 per page, only if AWS policies are attached
    iam:GetPolicyVersion                        1 per *attached* AWS managed policy
    iam:GetAccountPasswordPolicy                1
    iam:GetAccountSummary                       1
    iam:GetCredentialReport                     1 (+1 per poll while the report is built)

That is 6 calls plus, when AWS managed policies are attached (or used as permissions
boundaries), 1 + one per distinct such AWS managed policy: it grows with the policies in use,
never with the number of principals. Boundaries and instance profiles come with the
authorization details (no extra call). SCPs are read from the hub by `HubScps` (one
organizations:ListPoliciesForTarget per account, the OUs, root and policy documents once
per scan); with `scps=True` the account's own credentials read its attached SCPs instead
(`fetch_scps`). An account whose SCPs are not visible (AccessDenied, no organization) is
scanned without them, and its coverage says so.
The report is requested first and fetched last, so AWS builds it while the other calls run.

CloudTrail coverage (`fetch_trails`, with `trails=True`, the default): one
cloudtrail:DescribeTrails (shadow trails included, so an organization trail counts in every
member account) and one cloudtrail:GetTrailStatus for the multi-region trail that matters;
one cloudtrail:GetEventSelectors for that trail only when it has custom event selectors
(without them a trail records every management event, so there is nothing to ask);
plus one s3:GetBucketPolicyStatus for that trail's bucket only when the trail belongs to this
account (an organization trail's bucket lives in its log archive account: not visible, not
asked). A role without CloudTrail permissions is scanned without coverage (`trails` None).

AWS managed policies: by default (`aws_policies="attached"`) the authorization details are
fetched with `Filter=User,Role,Group,LocalManagedPolicy` and only the AWS managed policies
that are attached get their default document (ListPolicies + one GetPolicyVersion each).
`aws_policies="all"` makes one unfiltered pass instead, which carries every AWS managed
policy with its documents (about 1,500; most of a small account's scan time on moto, many
pages on AWS) and keeps the attached ones. `bench/scan_scale.py` measures both.

API calls are counted by `ApiCallCounter`, a hook on the session's event system. A call is
one client operation (one page of a paginator is one call); the SDK's retries of a
throttled or failed request do not count again, they are counted apart as `attempts`.
Clients use adaptive retries; `max_attempts` is the total number of attempts per call.

Every failure surfaces as `CollectError` with a one-line message; nothing is swallowed into
an empty snapshot (a crash must never look like a clean account).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import boto3
from botocore.exceptions import ClientError

# The shared AWS plumbing (errors, call counter, clients); re-exported here, where callers
# have always found it.
from checks.aws_calls import (  # noqa: F401
    ACCESS_DENIED,
    CREDENTIALS_REJECTED,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_REGION,
    SERVER_FAULTS,
    THROTTLED,
    ApiCallCounter,
    CollectError,
    aws_client,
    aws_errors,
    cache_clients,
    cached_clients,
    caches_clients,
    caller_account,
    client_config,
    collect_error,
    error_code,
    observe_throttling,
    on_needs_retry,
)
from checks.keys import AccessKeyMeta
from checks.model import (
    AccessKeySlot,
    AccountSnapshot,
    Group,
    InlinePolicy,
    ManagedPolicy,
    PasswordPolicy,
    PolicyRef,
    Role,
    RootAccount,
    Trail,
    User,
    main_trail,
    utc,
)

log = logging.getLogger(__name__)

# Entity types of the filtered authorization-details pass (AWS managed policies left out).
PRINCIPAL_FILTER = ("User", "Role", "Group", "LocalManagedPolicy")
# IAM's largest page; AWS may still return fewer items (it also truncates by size).
PAGE_SIZE = 1000
AWS_MANAGED_ARN = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/")

AwsPolicies = Literal["attached", "all"]

# ---------------------------------------------------------------------------------------
# Credential report

REPORT_COLUMNS = (
    "user",
    "arn",
    "user_creation_time",
    "password_enabled",
    "password_last_used",
    "password_last_changed",
    "password_next_rotation",
    "mfa_active",
    "access_key_1_active",
    "access_key_1_last_rotated",
    "access_key_1_last_used_date",
    "access_key_1_last_used_region",
    "access_key_1_last_used_service",
    "access_key_2_active",
    "access_key_2_last_rotated",
    "access_key_2_last_used_date",
    "access_key_2_last_used_region",
    "access_key_2_last_used_service",
    "cert_1_active",
    "cert_1_last_rotated",
    "cert_2_active",
    "cert_2_last_rotated",
)
ROOT_ROW = "<root_account>"
# Values the report uses for "nothing here": N/A (no such credential), no_information
# (never used, or used before IAM tracked it), not_supported (e.g. root's password_enabled).
NO_VALUE = frozenset({"", "n/a", "no_information", "not_supported", "none", "null", "-"})


@dataclass(frozen=True)
class ReportRow:
    """One user row of the credential report, parsed."""

    user: str
    arn: str
    created: datetime | None
    password_enabled: bool
    password_last_used: datetime | None
    password_last_changed: datetime | None
    mfa_active: bool
    access_keys: tuple[AccessKeySlot, ...]


@dataclass(frozen=True)
class CredentialReport:
    users: Mapping[str, ReportRow]
    root: RootAccount | None


def _value(raw: str | None) -> str | None:
    text = (raw or "").strip()
    return None if text.lower() in NO_VALUE else text


def _flag(raw: str | None) -> bool:
    return (raw or "").strip().lower() == "true"


def _when(raw: str | None, column: str = "") -> datetime | None:
    text = _value(raw)
    if text is None:
        return None
    try:
        return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        log.warning("credential report: unreadable date %r in %s", text, column or "a column")
        return None


def _slots(row: Mapping[str, str | None], created: datetime | None) -> tuple[AccessKeySlot, ...]:
    slots = []
    for n in (1, 2):
        active = _flag(row.get(f"access_key_{n}_active"))
        rotated = _when(row.get(f"access_key_{n}_last_rotated"), f"access_key_{n}_last_rotated")
        if rotated is None and active:
            # An active key whose creation time is unreadable still exists; the user's own
            # creation time is the oldest it can be (so age checks err towards reporting).
            log.warning(
                "credential report: active key %d of %s has no creation time", n, row.get("user")
            )
            rotated = created
        if rotated is None:
            continue  # empty slot: no key
        slots.append(
            AccessKeySlot(
                slot=n,
                active=active,
                last_rotated=rotated,
                last_used=_when(row.get(f"access_key_{n}_last_used_date")),
                last_used_region=_value(row.get(f"access_key_{n}_last_used_region")),
                last_used_service=_value(row.get(f"access_key_{n}_last_used_service")),
            )
        )
    return tuple(slots)


def parse_credential_report(content: bytes | str) -> CredentialReport:
    """Parse the CSV of GetCredentialReport (all 22 columns, the `<root_account>` row).

    Rows shorter or longer than the header are tolerated (missing cells read as "no
    value"), as are unknown placeholder values. A report without the `user` and `arn`
    columns is not a credential report: ValueError.
    """
    text = content.decode("utf-8-sig") if isinstance(content, bytes) else content
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")), restkey="_extra")
    header = [h.strip() for h in reader.fieldnames or ()]
    if "user" not in header or "arn" not in header:
        raise ValueError(f"not a credential report (header: {','.join(header)[:80]!r})")
    reader.fieldnames = header
    users: dict[str, ReportRow] = {}
    root: RootAccount | None = None
    for row in reader:
        name = (row.get("user") or "").strip()
        if not name:
            continue
        arn = (row.get("arn") or "").strip()
        created = _when(row.get("user_creation_time"), "user_creation_time")
        keys = _slots(row, created)
        mfa = _flag(row.get("mfa_active"))
        password_last_used = _when(row.get("password_last_used"), "password_last_used")
        if name == ROOT_ROW:
            root = RootAccount(
                arn=arn,
                created=created,
                password_last_used=password_last_used,
                mfa_active=mfa,
                access_keys=keys,
            )
            continue
        password = _flag(row.get("password_enabled"))
        users[name] = ReportRow(
            user=name,
            arn=arn,
            created=created,
            password_enabled=password,
            password_last_used=password_last_used if password else None,
            # Moto fills this with the creation time even without a password; AWS says N/A.
            password_last_changed=_when(row.get("password_last_changed")) if password else None,
            mfa_active=mfa,
            access_keys=keys,
        )
    return CredentialReport(users=users, root=root)


class CredentialReportPoller:
    """GenerateCredentialReport, then GetCredentialReport until the report is there.

    States handled: STARTED/INPROGRESS (poll again), ReportInProgress (poll again),
    LimitExceeded (back off, generate again), ReportExpired/ReportNotPresent (generate
    again). Waits back off exponentially and the total wait is bounded by `timeout`;
    running out raises a retryable `CollectError`. `start()` may be called early so AWS
    builds the report while other calls run; `fetch()` finishes the job.
    """

    def __init__(
        self,
        iam: Any,
        *,
        account: str | None = None,
        timeout: float = 300.0,
        initial_delay: float = 1.0,
        max_delay: float = 15.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.iam = iam
        self.account = account
        self.timeout = timeout
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.clock = clock
        self._generated = False
        self._deadline: float | None = None
        self.last_state = "not requested"

    def start(self) -> None:
        if self._deadline is None:
            self._deadline = self.clock() + self.timeout
        self._generate()

    def _generate(self) -> None:
        try:
            state = self.iam.generate_credential_report().get("State", "?")
        except ClientError as exc:
            if error_code(exc) != "LimitExceeded":
                raise
            self.last_state = "LimitExceeded on GenerateCredentialReport"
            return
        self._generated = True
        self.last_state = f"report {state}"

    def fetch(self) -> bytes:
        if self._deadline is None:
            self.start()
        assert self._deadline is not None
        delay = self.initial_delay
        while True:
            if self._generated:
                try:
                    content = self.iam.get_credential_report()["Content"]
                    return content.encode() if isinstance(content, str) else content
                except ClientError as exc:
                    code = error_code(exc)
                    if code in ("ReportExpired", "ReportNotPresent"):
                        self._generated = False
                    elif code not in ("ReportInProgress", "LimitExceeded"):
                        raise
                    self.last_state = code
            if self.clock() + delay > self._deadline:
                raise CollectError(
                    self.account,
                    f"credential report not ready after {self.timeout:g} s "
                    f"(last state: {self.last_state})",
                    True,
                )
            self.sleep(delay)
            delay = min(delay * 2, self.max_delay)
            if not self._generated:
                self._generate()


def fetch_credential_report(iam: Any, **kwargs: Any) -> bytes:
    """Generate and fetch the credential report CSV (see `CredentialReportPoller`)."""
    return CredentialReportPoller(iam, **kwargs).fetch()


# ---------------------------------------------------------------------------------------
# Authorization details

DETAIL_KEYS = ("UserDetailList", "GroupDetailList", "RoleDetailList", "Policies")


def fetch_authorization_details(
    iam: Any, *, entity_filter: Sequence[str] | None = PRINCIPAL_FILTER, page_size: int = PAGE_SIZE
) -> dict[str, list[dict[str, Any]]]:
    """All pages of GetAccountAuthorizationDetails, merged. `entity_filter=None`: no filter."""
    kwargs: dict[str, Any] = {"PaginationConfig": {"PageSize": page_size}}
    if entity_filter:
        kwargs["Filter"] = list(entity_filter)
    merged: dict[str, list[dict[str, Any]]] = {key: [] for key in DETAIL_KEYS}
    for page in iam.get_paginator("get_account_authorization_details").paginate(**kwargs):
        for key in DETAIL_KEYS:
            merged[key].extend(page.get(key) or ())
    return merged


def decode_document(value: Any, what: str = "policy") -> dict[str, Any]:
    """A policy document as a dict, from a dict, JSON text or URL-encoded JSON text
    (GetAccountAuthorizationDetails documents are RFC 3986 URL-encoded on the wire;
    boto3 usually decodes them already). Anything else is a ValueError: a document
    read as empty would hide whatever it grants."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        text = value.strip()
        for candidate in (text, urllib.parse.unquote(text)):
            try:
                document = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(document, dict):
                return document
    raise ValueError(f"unreadable document of {what}: {str(value)[:60]!r}")


def _refs(items: Iterable[Mapping[str, Any]] | None) -> tuple[PolicyRef, ...]:
    return tuple(PolicyRef(name=i["PolicyName"], arn=i["PolicyArn"]) for i in items or ())


def _inline(items: Iterable[Mapping[str, Any]] | None, owner: str) -> tuple[InlinePolicy, ...]:
    return tuple(
        InlinePolicy(
            name=i["PolicyName"],
            document=decode_document(i.get("PolicyDocument"), f"{owner} inline {i['PolicyName']}"),
        )
        for i in items or ()
    )


def _tags(items: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in items or ()}


def _created(item: Mapping[str, Any]) -> datetime:
    created = utc(item.get("CreateDate"))
    if created is None:
        raise ValueError(f"{item.get('Arn')} has no CreateDate")
    return created


def _group(item: Mapping[str, Any]) -> Group:
    return Group(
        name=item["GroupName"],
        arn=item["Arn"],
        created=utc(item.get("CreateDate")),
        attached_policies=_refs(item.get("AttachedManagedPolicies")),
        inline_policies=_inline(item.get("GroupPolicyList"), item["Arn"]),
    )


def _role(item: Mapping[str, Any]) -> Role:
    last_used = item.get("RoleLastUsed") or {}
    return Role(
        name=item["RoleName"],
        arn=item["Arn"],
        created=_created(item),
        trust_policy=decode_document(
            item.get("AssumeRolePolicyDocument"), f"{item['Arn']} trust policy"
        ),
        path=item.get("Path", "/"),
        tags=_tags(item.get("Tags")),
        attached_policies=_refs(item.get("AttachedManagedPolicies")),
        inline_policies=_inline(item.get("RolePolicyList"), item["Arn"]),
        last_used=utc(last_used.get("LastUsedDate")),
        last_used_region=last_used.get("Region") or None,
        permissions_boundary=_boundary(item),
        instance_profiles=tuple(
            sorted(p["InstanceProfileName"] for p in item.get("InstanceProfileList") or ())
        ),
    )


def _boundary(item: Mapping[str, Any]) -> str | None:
    return (item.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn") or None


def _user(item: Mapping[str, Any], row: ReportRow | None) -> User:
    base: dict[str, Any] = {
        "name": item["UserName"],
        "arn": item["Arn"],
        "created": _created(item),
        "user_id": item.get("UserId", ""),
        "path": item.get("Path", "/"),
        "tags": _tags(item.get("Tags")),
        "groups": tuple(item.get("GroupList") or ()),
        "attached_policies": _refs(item.get("AttachedManagedPolicies")),
        "inline_policies": _inline(item.get("UserPolicyList"), item["Arn"]),
        "permissions_boundary": _boundary(item),
    }
    if row is None:
        # Created after the report was generated (AWS reuses a report for up to 4 hours).
        return User(**base, in_credential_report=False)
    return User(
        **base,
        password_enabled=row.password_enabled,
        password_last_used=row.password_last_used,
        password_last_changed=row.password_last_changed,
        mfa_active=row.mfa_active,
        access_keys=row.access_keys,
    )


def _managed_policy(item: Mapping[str, Any]) -> ManagedPolicy:
    default = item.get("DefaultVersionId")
    versions = item.get("PolicyVersionList") or ()
    version = next((v for v in versions if v.get("IsDefaultVersion")), None) or next(
        (v for v in versions if v.get("VersionId") == default), None
    )
    if version is None:
        raise ValueError(f"{item.get('Arn')} came without its default version document")
    return ManagedPolicy(
        # Moto leaves PolicyName out for AWS managed policies; it is the ARN's last segment.
        name=item.get("PolicyName") or item["Arn"].rsplit("/", 1)[-1],
        arn=item["Arn"],
        document=decode_document(version.get("Document"), item["Arn"]),
        attachment_count=int(item.get("AttachmentCount") or 0),
        default_version_id=version.get("VersionId") or default or "v1",
    )


def fetch_policy_documents(iam: Any, arns: Iterable[str]) -> list[ManagedPolicy]:
    """Default documents of the given managed policies: one ListPolicies pass for the
    attached AWS managed policies' default version ids (GetPolicy for any it misses, e.g.
    attached a moment ago), then one GetPolicyVersion each."""
    wanted = sorted(set(arns))
    if not wanted:
        return []
    listed: dict[str, Mapping[str, Any]] = {}
    if any(AWS_MANAGED_ARN.match(arn) for arn in wanted):
        pages = iam.get_paginator("list_policies").paginate(
            Scope="AWS", OnlyAttached=True, PaginationConfig={"PageSize": PAGE_SIZE}
        )
        listed = {p["Arn"]: p for page in pages for p in page.get("Policies") or ()}
    policies = []
    for arn in wanted:
        meta = listed.get(arn) or iam.get_policy(PolicyArn=arn)["Policy"]
        version = iam.get_policy_version(PolicyArn=arn, VersionId=meta["DefaultVersionId"])
        policies.append(
            ManagedPolicy(
                name=meta["PolicyName"],
                arn=arn,
                document=decode_document(version["PolicyVersion"].get("Document"), arn),
                attachment_count=int(meta.get("AttachmentCount") or 0),
                default_version_id=meta["DefaultVersionId"],
            )
        )
    return policies


def _password_policy(iam: Any) -> PasswordPolicy | None:
    try:
        pp = iam.get_account_password_policy()["PasswordPolicy"]
    except ClientError as exc:
        if error_code(exc) == "NoSuchEntity":
            return None
        raise
    return PasswordPolicy(
        minimum_length=int(pp.get("MinimumPasswordLength", 8)),
        require_symbols=bool(pp.get("RequireSymbols", False)),
        require_numbers=bool(pp.get("RequireNumbers", False)),
        require_uppercase=bool(pp.get("RequireUppercaseCharacters", False)),
        require_lowercase=bool(pp.get("RequireLowercaseCharacters", False)),
        allow_users_to_change=bool(pp.get("AllowUsersToChangePassword", False)),
        max_age_days=pp.get("MaxPasswordAge"),
        reuse_prevention=pp.get("PasswordReusePrevention"),
        hard_expiry=bool(pp.get("HardExpiry", False)),
    )


# ---------------------------------------------------------------------------------------
# The scan of one account


def collect_account(
    session: boto3.Session,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    include_unattached_aws_policies: bool = False,
    aws_policies: AwsPolicies = "attached",
    expected_account: str | None = None,
    report_timeout: float = 300.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    scps: bool = False,
    trails: bool = True,
) -> AccountSnapshot:
    """Read one account's IAM state into an `AccountSnapshot`.

    `aws_policies`: "attached" (default; filtered details + the attached AWS managed
    policies' documents) or "all" (one unfiltered pass). `include_unattached_aws_policies`
    keeps every AWS managed policy in the snapshot (implies "all"). `expected_account`:
    fail if the credentials belong to another account (a role ARN pointing elsewhere).
    `scps`: also read the SCPs attached to the account (`fetch_scps`; off until the scan
    policy grants organizations:ListPoliciesForTarget and organizations:DescribePolicy).
    Raises `CollectError`.
    """
    if aws_policies not in ("attached", "all"):
        raise ValueError(f"aws_policies must be 'attached' or 'all', not {aws_policies!r}")
    full_pass = aws_policies == "all" or include_unattached_aws_policies
    account = expected_account
    counter = ApiCallCounter()
    collected_at = utc(datetime.now(UTC))
    assert collected_at is not None
    with counter.attached(session):
        with aws_errors(account, ""):
            iam = aws_client(session, "iam", max_attempts)
        account = caller_account(session, max_attempts, expected=expected_account)
        poller = CredentialReportPoller(
            iam, account=account, timeout=report_timeout, sleep=sleep, clock=clock
        )
        with aws_errors(account, "iam"):
            poller.start()
            details = fetch_authorization_details(
                iam, entity_filter=None if full_pass else PRINCIPAL_FILTER
            )
        try:
            groups = tuple(sorted(map(_group, details["GroupDetailList"]), key=lambda g: g.name))
            roles = tuple(sorted(map(_role, details["RoleDetailList"]), key=lambda r: r.name))
            listed = [_managed_policy(p) for p in details["Policies"]]
        except (KeyError, ValueError) as exc:
            raise CollectError(account, f"unreadable authorization details: {exc}", False) from exc
        principals = list(
            itertools.chain(
                details["UserDetailList"], details["GroupDetailList"], details["RoleDetailList"]
            )
        )
        # Boundaries are managed policies too: their documents are needed to intersect.
        attached = {
            ref.arn for p in principals for ref in _refs(p.get("AttachedManagedPolicies"))
        } | {arn for p in principals if (arn := _boundary(p))}
        policies = {
            p.arn: p
            for p in listed
            if include_unattached_aws_policies
            or not AWS_MANAGED_ARN.match(p.arn)
            or p.arn in attached
        }
        with aws_errors(account, "iam"):
            try:
                policies.update(
                    (p.arn, p) for p in fetch_policy_documents(iam, attached - policies.keys())
                )
            except ValueError as exc:
                raise CollectError(account, f"unreadable policy: {exc}", False) from exc
            password_policy = _password_policy(iam)
            summary = {k: int(v) for k, v in iam.get_account_summary()["SummaryMap"].items()}
        scp_documents = None
        if scps:
            with aws_errors(account, "organizations"):
                scp_documents = fetch_scps(aws_client(session, "organizations", max_attempts), account)
        trail_list = None
        if trails:
            with aws_errors(account, "cloudtrail"):
                trail_list = fetch_trails(session, account, max_attempts)
        with aws_errors(account, "iam"):
            content = poller.fetch()
        try:
            report = parse_credential_report(content)
            users = tuple(
                sorted(
                    (_user(u, report.users.get(u["UserName"])) for u in details["UserDetailList"]),
                    key=lambda u: u.name,
                )
            )
        except (KeyError, ValueError) as exc:
            raise CollectError(account, f"unreadable IAM data: {exc}", False) from exc
    log.info(
        "collected %s: %d users, %d roles, %d groups, %d policies in %d API calls (%d attempts)",
        account,
        len(users),
        len(roles),
        len(groups),
        len(policies),
        counter.calls,
        counter.attempts,
    )
    return AccountSnapshot(
        account_id=account,
        collected_at=collected_at,
        users=users,
        groups=groups,
        roles=roles,
        policies=tuple(sorted(policies.values(), key=lambda p: p.arn)),
        password_policy=password_policy,
        root=report.root,
        summary=summary,
        api_calls=counter.calls,
        scps=scp_documents,
        instance_profiles_known=True,
        trails=trail_list,
    )


def account_alias(session: boto3.Session, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                  account: str | None = None) -> str | None:
    """The account's IAM alias (what its sign-in URL shows), or None: one call,
    iam:ListAccountAliases. An account has at most one alias."""
    with aws_errors(account, "iam"):
        aliases = aws_client(session, "iam", max_attempts).list_account_aliases().get("AccountAliases") or []
    return str(aliases[0]) if aliases else None


# ---------------------------------------------------------------------------------------
# CloudTrail coverage


def _trail(item: Mapping[str, Any]) -> Trail:
    custom = bool(item.get("HasCustomEventSelectors"))
    return Trail(
        name=item.get("Name") or item.get("TrailARN", "?"),
        arn=item.get("TrailARN") or item.get("Name", "?"),
        home_region=item.get("HomeRegion") or "",
        multi_region=bool(item.get("IsMultiRegionTrail")),
        organization=bool(item.get("IsOrganizationTrail")),
        log_file_validation=bool(item.get("LogFileValidationEnabled")),
        s3_bucket=item.get("S3BucketName") or None,
        custom_event_selectors=custom,
        # Without custom selectors a trail records all management events, reads and writes.
        management_events=None if custom else True,
    )


def records_management_writes(selectors: Mapping[str, Any]) -> bool:
    """Whether a trail's custom event selectors (GetEventSelectors) record management write
    events, the ones an IAM change is: basic selectors with IncludeManagementEvents and
    ReadWriteType All or WriteOnly, or an advanced selector on eventCategory Management that
    does not keep only read-only events."""
    for selector in selectors.get("EventSelectors") or ():
        if selector.get("IncludeManagementEvents", True) and selector.get("ReadWriteType", "All") in ("All",
                                                                                                  "WriteOnly"):
            return True
    for selector in selectors.get("AdvancedEventSelectors") or ():
        fields = {f.get("Field"): f for f in selector.get("FieldSelectors") or ()}
        category, read_only = fields.get("eventCategory") or {}, fields.get("readOnly") or {}
        if "Management" in (category.get("Equals") or ()) and read_only.get("Equals") != ["true"] \
                and "false" not in (read_only.get("NotEquals") or ()):
            return True
    return False


def fetch_trails(session: boto3.Session, account: str, max_attempts: int = DEFAULT_MAX_ATTEMPTS
                 ) -> tuple[Trail, ...] | None:
    """The account's trails, with the main trail's logging status (and its bucket's public
    status when the bucket is this account's). None when CloudTrail is not readable."""
    cloudtrail = aws_client(session, "cloudtrail", max_attempts)
    try:
        listed = cloudtrail.describe_trails(includeShadowTrails=True).get("trailList") or []
    except ClientError as exc:
        if error_code(exc) in ACCESS_DENIED:
            log.info("%s: CloudTrail not readable (%s); coverage not evaluated", account, error_code(exc))
            return None
        raise
    trails = [_trail(t) for t in listed]
    main = main_trail(trails)
    if main is None:
        return tuple(sorted(trails, key=lambda t: t.arn))
    status = cloudtrail.get_trail_status(Name=main.arn)
    management = main.management_events
    if main.custom_event_selectors:
        try:
            management = records_management_writes(cloudtrail.get_event_selectors(TrailName=main.arn))
        except ClientError as exc:
            if error_code(exc) not in ACCESS_DENIED:
                raise
            log.info("%s: event selectors not readable (%s); management events not evaluated",
                     account, error_code(exc))
    public = None
    own = main.arn.split(":")[4:5] == [account] and not main.organization
    if main.s3_bucket and own:
        try:
            s3 = aws_client(session, "s3", max_attempts)
            public = bool(s3.get_bucket_policy_status(Bucket=main.s3_bucket)["PolicyStatus"].get("IsPublic"))
        except ClientError as exc:
            code = error_code(exc)
            if code == "NoSuchBucketPolicy":
                public = False
            elif code not in ACCESS_DENIED | {"NoSuchBucket", "PermanentRedirect"}:
                raise
    main = Trail(**{**main.__dict__, "is_logging": bool(status.get("IsLogging")), "bucket_public": public,
                    "management_events": management})
    return tuple(sorted((main if t.arn == main.arn else t for t in trails), key=lambda t: t.arn))


# ---------------------------------------------------------------------------------------
# Service control policies

FULL_AWS_ACCESS = "p-FullAWSAccess"
# Organizations answers these when the account cannot see its SCPs: a member account
# (only the management account and delegated administrators may ask), or no organization.
SCP_NOT_VISIBLE = ACCESS_DENIED | {
    "AWSOrganizationsNotInUseException",
    "AccessDeniedForDependencyException",
    "TargetNotFoundException",
}


_FULL_ACCESS_DOCUMENT = {"Version": "2012-10-17",
                         "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def _scp_documents(organizations: Any, listed: Iterable[Mapping[str, Any]],
                   documents: dict[str, Any] | None = None) -> tuple[ManagedPolicy, ...]:
    """The SCPs of a ListPoliciesForTarget answer with their documents: FullAWSAccess's
    is known, the others cost one DescribePolicy each (once per policy id with a cache)."""
    out = []
    for summary in sorted(listed, key=lambda p: p["Id"]):
        policy_id = summary["Id"]
        if policy_id == FULL_AWS_ACCESS:
            document: Any = _FULL_ACCESS_DOCUMENT
        elif documents is not None and policy_id in documents:
            document = documents[policy_id]
        else:
            content = organizations.describe_policy(PolicyId=policy_id)["Policy"]["Content"]
            document = decode_document(content, f"SCP {policy_id}")
            if documents is not None:
                documents[policy_id] = document
        out.append(ManagedPolicy(name=summary.get("Name") or policy_id,
                                 arn=summary.get("Arn") or policy_id, document=document))
    return tuple(out)


def fetch_scps(organizations: Any, account: str) -> tuple[ManagedPolicy, ...] | None:
    """The SCPs attached directly to `account`, or None when it cannot see them (normal
    for a member account: never a scan failure).

    Calls: one ListPoliciesForTarget (one page: an account has at most 5 SCPs), plus one
    DescribePolicy per attached SCP other than AWS's FullAWSAccess, whose content is
    known. SCPs attached to OUs and the root are not read here (`HubScps` reads them
    from the hub, once per scan).
    """
    try:
        listed = organizations.list_policies_for_target(
            TargetId=account, Filter="SERVICE_CONTROL_POLICY"
        )["Policies"]
    except ClientError as exc:
        if error_code(exc) in SCP_NOT_VISIBLE:
            log.info("%s: SCPs not visible (%s); judged without them", account, error_code(exc))
            return None
        raise
    return _scp_documents(organizations, listed)


@dataclass(frozen=True)
class AccountScps:
    """The SCPs that limit one account, as read from the hub."""

    account: tuple[ManagedPolicy, ...] | None  # attached to the account; None: not visible
    above: tuple[tuple[ManagedPolicy, ...], ...] = ()  # root first, then each OU
    note: str = ""  # why they are not applied ("SCPs not visible: AccessDenied")
    calls: int = 0  # API calls made for this account alone (not the shared ones)


class HubScps:
    """The SCPs of a scan's accounts, read from the hub: the management account, or a
    delegated administrator, whose credentials the scan starts from.

    Calls: one ListPoliciesForTarget per account (its own SCPs); shared by every account
    of the scan and made once: the walk of the organization's tree (ListRoots, then
    ListOrganizationalUnitsForParent and ListAccountsForParent per OU), one
    DescribeOrganization (SCPs never limit the management account), one
    ListPoliciesForTarget per OU and the root that holds a scanned account, and one
    DescribePolicy per distinct SCP other than FullAWSAccess. Without permission (or
    without an organization) the first call says so, the answer is remembered, and every
    account is judged without SCPs and says "SCPs not visible" in its coverage: never a
    scan failure. Thread-safe: the scan's accounts run in parallel.
    """

    def __init__(self, organizations: Any) -> None:
        self._org = organizations
        self._lock = threading.Lock()
        self._parents: dict[str, str] | None = None  # child id -> parent id
        self._levels: dict[str, tuple[ManagedPolicy, ...]] = {}  # OU or root id -> its SCPs
        self._documents: dict[str, Any] = {}  # policy id -> document
        self._hidden = ""  # the error code that hid the SCPs, once seen
        self._management: str | None = None
        self.shared_calls = 0

    def for_account(self, account: str) -> AccountScps:
        with self._lock:
            try:
                return self._for_account(account)
            except ClientError as exc:
                if error_code(exc) not in SCP_NOT_VISIBLE:
                    raise
                if not self._hidden:
                    log.info("SCPs not visible from the hub (%s); accounts judged without them",
                             error_code(exc))
                self._hidden = self._hidden or error_code(exc)
                return AccountScps(None, note=f"SCPs not visible: {error_code(exc)}")

    def _for_account(self, account: str) -> AccountScps:
        if self._hidden:
            return AccountScps(None, note=f"SCPs not visible: {self._hidden}")
        before = self.shared_calls
        if self._parents is None:
            self._parents = self._walk()
        if account == self._management:
            # SCPs never limit the management account's users and roles.
            return AccountScps(None, calls=self.shared_calls - before)
        chain: list[str] = []
        node = self._parents.get(account)
        while node is not None and len(chain) < 10:  # the tree is at most 5 OUs deep
            chain.append(node)
            node = self._parents.get(node)
        above = tuple(self._level(target) for target in reversed(chain))
        listed = self._org.list_policies_for_target(
            TargetId=account, Filter="SERVICE_CONTROL_POLICY"
        )["Policies"]
        own = self._describe(listed)
        # The account's own call, plus the shared ones this account was first to need.
        return AccountScps(own, above, calls=1 + self.shared_calls - before)

    def _describe(self, listed: Iterable[Mapping[str, Any]]) -> tuple[ManagedPolicy, ...]:
        known = len(self._documents)
        found = _scp_documents(self._org, listed, self._documents)
        self.shared_calls += len(self._documents) - known
        return found

    def _level(self, target: str) -> tuple[ManagedPolicy, ...]:
        if target not in self._levels:
            listed = self._org.list_policies_for_target(
                TargetId=target, Filter="SERVICE_CONTROL_POLICY"
            )["Policies"]
            self.shared_calls += 1
            self._levels[target] = self._describe(listed)
        return self._levels[target]

    def _walk(self) -> dict[str, str]:
        parents: dict[str, str] = {}
        organization = self._org.describe_organization()["Organization"]
        self._management = organization.get("MasterAccountId")
        self.shared_calls += 1
        roots = [r["Id"] for r in self._org.list_roots()["Roots"]]
        self.shared_calls += 1
        queue = list(roots)
        while queue:
            parent = queue.pop(0)
            for op, key, child_is_ou in (
                ("list_organizational_units_for_parent", "OrganizationalUnits", True),
                ("list_accounts_for_parent", "Accounts", False),
            ):
                for page in self._org.get_paginator(op).paginate(ParentId=parent):
                    self.shared_calls += 1
                    for child in page.get(key) or ():
                        parents[child["Id"]] = parent
                        if child_is_ou:
                            queue.append(child["Id"])
        return parents


# ---------------------------------------------------------------------------------------
# Key ids, for the keys that have findings


def resolve_access_key_ids(
    session: boto3.Session,
    user_names: Iterable[str],
    *,
    account: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    workers: int = 8,
) -> dict[str, list[AccessKeyMeta]]:
    """One ListAccessKeys per user (a user has at most two keys: one page). A user deleted
    since the scan has no keys (empty list). Count the calls by attaching an
    `ApiCallCounter` to `session` around this call. Raises `CollectError`."""
    names = list(dict.fromkeys(user_names))
    if not names:
        return {}
    with aws_errors(account, "iam"):
        iam = aws_client(session, "iam", max_attempts)

    def keys_of(name: str) -> list[AccessKeyMeta]:
        try:
            listed = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            listed = []
        return [
            AccessKeyMeta(access_key_id=k["AccessKeyId"], status=k.get("Status", ""), created=k["CreateDate"])
            for k in listed
        ]

    # One call per user, a few at a time: botocore clients are thread-safe, and the
    # adaptive retry mode slows every thread down together when IAM throttles.
    with aws_errors(account, "iam"), ThreadPoolExecutor(
        max_workers=min(workers, len(names)), thread_name_prefix="list-keys"
    ) as pool:
        return dict(zip(names, pool.map(keys_of, names), strict=True))
