"""What each principal really used: IAM's last-accessed data (Access Advisor), per principal.

Model and parsing are pure (`PrincipalUsage`, `parse_job`, `from_json`); `collect_usage` is
the AWS read path, batched so 1,000 principals cost ~2,000 calls however slow AWS is:

    sts:GetCallerIdentity                1 (which account)
    iam:GetAccountAuthorizationDetails   1 per page (which users and roles hold policies)
    iam:GenerateServiceLastAccessedDetails  1 per user and role (Granularity ACTION_LEVEL)
    iam:GetServiceLastAccessedDetails       1 per principal per poll round (MaxItems 1000:
                                            one page, AWS's largest)

Every job is started first (AWS builds them in parallel), then the unfinished ones are
polled in rounds with an exponential backoff between rounds (1 s doubling to 30 s), each
round a bounded thread pool (`concurrency`). Throttling is absorbed by botocore's adaptive
retries; a call still throttled after `max_attempts` is put back and tried again after the
next pause, never counted as a failed principal until `timeout`. Groups get no job: a group's
grants are judged against the usage of its members (AWS reports for a group only what its
members did through it, at the price of one more job per group).

Services AWS tracks at action level (`TrackedActionsLastAccessed`: S3, EC2, IAM, Lambda and
more each year) carry their actions; others only the service. A service AWS lists with no
`LastAuthenticated` was granted and never used in the tracking period (400 days).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from checks.model import utc

log = logging.getLogger(__name__)

GRANULARITY = "ACTION_LEVEL"
MAX_ITEMS = 1000  # GetServiceLastAccessedDetails' largest page
FIRST_PAUSE = 1.0
MAX_PAUSE = 30.0
DEFAULT_TIMEOUT = 900.0
TRACKING_DAYS = 400  # how far back AWS's last-accessed data reaches


@dataclass(frozen=True)
class ActionUsage:
    name: str  # `s3:GetObject`
    last_accessed: datetime | None = None
    region: str | None = None


@dataclass(frozen=True)
class ServiceUsage:
    namespace: str  # `s3`
    name: str = ""  # `Amazon S3`
    last_authenticated: datetime | None = None
    region: str | None = None
    entity: str | None = None
    # None: AWS does not track this service's actions; otherwise every tracked action.
    actions: tuple[ActionUsage, ...] | None = None

    def used_since(self, cutoff: datetime) -> bool:
        return self.last_authenticated is not None and self.last_authenticated >= cutoff

    def actions_used_since(self, cutoff: datetime) -> frozenset[str] | None:
        """Lower-cased names of the tracked actions used since `cutoff` (None: untracked)."""
        if self.actions is None:
            return None
        return frozenset(a.name.lower() for a in self.actions
                         if a.last_accessed is not None and a.last_accessed >= cutoff)


@dataclass(frozen=True)
class PrincipalUsage:
    arn: str
    collected_at: datetime
    services: tuple[ServiceUsage, ...] = ()
    job_completed_at: datetime | None = None

    @property
    def by_namespace(self) -> Mapping[str, ServiceUsage]:
        return {s.namespace.lower(): s for s in self.services}

    def to_json(self) -> list[dict[str, Any]]:
        return [_service_json(s) for s in self.services]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _service_json(s: ServiceUsage) -> dict[str, Any]:
    out: dict[str, Any] = {"namespace": s.namespace, "name": s.name,
                           "last_authenticated": _iso(s.last_authenticated),
                           "region": s.region, "entity": s.entity}
    if s.actions is not None:
        out["actions"] = [{"name": a.name, "last_accessed": _iso(a.last_accessed),
                           "region": a.region} for a in s.actions]
    return out


def _when(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return utc(value)


def from_json(arn: str, collected_at: datetime, services: Iterable[Mapping[str, Any]],
              job_completed_at: datetime | None = None) -> PrincipalUsage:
    """The stored form (`PrincipalUsage.to_json`) back into the model."""
    parsed = []
    for s in services:
        actions = s.get("actions")
        parsed.append(ServiceUsage(
            namespace=s["namespace"], name=s.get("name") or "",
            last_authenticated=_when(s.get("last_authenticated")), region=s.get("region"),
            entity=s.get("entity"),
            actions=None if actions is None else tuple(
                ActionUsage(a["name"], _when(a.get("last_accessed")), a.get("region")) for a in actions),
        ))
    return PrincipalUsage(arn, utc(collected_at) or collected_at, tuple(parsed), _when(job_completed_at))


def parse_job(arn: str, response: Mapping[str, Any], collected_at: datetime) -> PrincipalUsage:
    """A COMPLETED GetServiceLastAccessedDetails answer (AWS's field names) -> the model."""
    services = []
    for item in response.get("ServicesLastAccessed") or ():
        tracked = item.get("TrackedActionsLastAccessed")
        namespace = str(item["ServiceNamespace"])
        services.append(ServiceUsage(
            namespace=namespace,
            name=str(item.get("ServiceName") or ""),
            last_authenticated=_when(item.get("LastAuthenticated")),
            region=item.get("LastAuthenticatedRegion"),
            entity=item.get("LastAuthenticatedEntity"),
            actions=None if tracked is None else tuple(
                ActionUsage(name=_action_name(namespace, a.get("ActionName", "")),
                            last_accessed=_when(a.get("LastAccessedTime")),
                            region=a.get("LastAccessedRegion"))
                for a in tracked),
        ))
    return PrincipalUsage(arn, collected_at, tuple(sorted(services, key=lambda s: s.namespace)),
                          _when(response.get("JobCompletionDate")))


def _action_name(namespace: str, name: str) -> str:
    """AWS names tracked actions without the prefix (`GetObject`); ours carry it."""
    return name if ":" in name else f"{namespace}:{name}"


# ---------------------------------------------------------------------------------------
# Collection (AWS)


@dataclass
class UsageRun:
    account_id: str
    usage: dict[str, PrincipalUsage] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # arn -> one-line reason
    gone: list[str] = field(default_factory=list)  # deleted between listing and the job
    groups: dict[str, list[str]] = field(default_factory=dict)  # group arn -> member arns
    api_calls: int = 0
    attempts: int = 0
    poll_rounds: int = 0
    throttled: int = 0
    seconds: float = 0.0
    by_operation: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Principals:
    """Users and roles that hold policies (service-linked roles left out), and the
    members of every group that holds policies."""

    arns: tuple[str, ...]
    groups: Mapping[str, tuple[str, ...]]


def list_principals(iam: Any) -> Principals:
    from checks.collect import fetch_authorization_details

    details = fetch_authorization_details(iam, entity_filter=("User", "Role", "Group"))
    holds = lambda item, inline: bool(item.get("AttachedManagedPolicies") or item.get(inline))  # noqa: E731
    group_arns = {g["GroupName"]: g["Arn"] for g in details["GroupDetailList"]
                  if holds(g, "GroupPolicyList")}
    arns: list[str] = []
    groups: dict[str, list[str]] = {arn: [] for arn in group_arns.values()}
    for user in details["UserDetailList"]:
        in_groups = [group_arns[g] for g in user.get("GroupList") or () if g in group_arns]
        for group in in_groups:
            groups[group].append(user["Arn"])
        if holds(user, "UserPolicyList") or in_groups:
            arns.append(user["Arn"])
    for role in details["RoleDetailList"]:
        if str(role.get("Path", "/")).startswith("/aws-service-role/"):
            continue
        if holds(role, "RolePolicyList"):
            arns.append(role["Arn"])
    return Principals(tuple(sorted(arns)), {g: tuple(sorted(m)) for g, m in groups.items()})


def collect_usage(
    session: Any,
    *,
    account_id: str | None = None,
    principals: Sequence[str] | None = None,
    concurrency: int = 8,
    max_attempts: int = 8,
    timeout: float = DEFAULT_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] | None = None,
) -> UsageRun:
    """Last-accessed data of every user and role of the session's account holding a policy
    (or of `principals`, ARNs). Raises `CollectError` when the account cannot be read at
    all; a principal whose job fails is in `run.failed`, never reported as unused."""
    from botocore.exceptions import BotoCoreError, ClientError

    from checks.aws_calls import (
        THROTTLED,
        ApiCallCounter,
        aws_client,
        aws_errors,
        caller_account,
        collect_error,
        error_code,
    )

    wall = now or (lambda: utc(datetime.now(UTC)))  # type: ignore[return-value]
    started = clock()
    counter = ApiCallCounter()
    run = UsageRun(account_id=account_id or "")
    with counter.attached(session):
        with aws_errors(account_id, "iam"):
            iam = aws_client(session, "iam", max_attempts)
        if principals is None:
            if not account_id:
                run.account_id = caller_account(session, max_attempts)
            with aws_errors(run.account_id, "iam"):
                listed = list_principals(iam)
            principals = listed.arns
            run.groups = {g: list(m) for g, m in listed.groups.items()}

        def attempt(call: Callable[[], Any]) -> tuple[str, Any]:
            """('ok', answer) | ('retry', None) | ('gone', None) | ('error', message)."""
            try:
                return "ok", call()
            except ClientError as exc:
                code = error_code(exc)
                if code in THROTTLED:
                    run.throttled += 1
                    return "retry", None
                if code == "NoSuchEntity":
                    return "gone", None
                failure = collect_error(run.account_id, exc, "iam")
                return ("retry", None) if failure.retryable else ("error", failure.message)
            except BotoCoreError as exc:
                failure = collect_error(run.account_id, exc, "iam")
                return ("retry", None) if failure.retryable else ("error", failure.message)

        def start(arn: str) -> tuple[str, str, Any]:
            status, answer = attempt(lambda: iam.generate_service_last_accessed_details(
                Arn=arn, Granularity=GRANULARITY))
            return arn, status, answer["JobId"] if status == "ok" else answer

        def poll(item: tuple[str, str]) -> tuple[str, str, Any]:
            arn, job = item
            status, answer = attempt(lambda: iam.get_service_last_accessed_details(
                JobId=job, MaxItems=MAX_ITEMS))
            return arn, status, answer

        to_start = list(dict.fromkeys(principals))
        jobs: dict[str, str] = {}
        pause = FIRST_PAUSE
        workers = max(1, min(concurrency, len(to_start) or 1))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="usage") as pool:
            while to_start or jobs:
                if to_start:
                    retry_start: list[str] = []
                    for arn, status, answer in pool.map(start, to_start):
                        if status == "ok":
                            jobs[arn] = answer
                        elif status == "retry":
                            retry_start.append(arn)
                        elif status == "gone":
                            run.gone.append(arn)
                        else:
                            run.failed[arn] = answer
                    to_start = retry_start
                    if not jobs and to_start and clock() - started < timeout:
                        sleep(pause)
                        pause = min(pause * 2, MAX_PAUSE)
                        continue
                if not jobs:
                    break
                if clock() - started >= timeout:
                    for arn in [*jobs, *to_start]:
                        run.failed[arn] = f"no answer from AWS within {timeout:.0f} s"
                    jobs.clear()
                    to_start = []
                    break
                run.poll_rounds += 1
                for arn, status, answer in pool.map(poll, list(jobs.items())):
                    if status == "retry":
                        continue
                    if status != "ok":
                        jobs.pop(arn)
                        if status == "gone":
                            run.gone.append(arn)
                        else:
                            run.failed[arn] = answer
                        continue
                    state = answer.get("JobStatus")
                    if state == "COMPLETED":
                        jobs.pop(arn)
                        if answer.get("IsTruncated"):
                            log.warning("usage of %s: more than %d services, first page only", arn, MAX_ITEMS)
                        run.usage[arn] = parse_job(arn, answer, wall())
                    elif state == "FAILED":
                        jobs.pop(arn)
                        error = answer.get("Error") or {}
                        run.failed[arn] = f"AWS could not build the report: {error.get('Message') or error.get('Code') or 'FAILED'}"
                if jobs or to_start:
                    sleep(pause)
                    pause = min(pause * 2, MAX_PAUSE)
    run.api_calls = counter.calls
    run.attempts = counter.attempts
    run.by_operation = dict(counter.by_operation)
    run.seconds = clock() - started
    log.info("usage of %s: %d principals in %d calls (%d rounds, %d throttled, %d failed)",
             run.account_id, len(run.usage), run.api_calls, run.poll_rounds, run.throttled, len(run.failed))
    return run


def group_usage(group_arn: str, members: Sequence[str], usage: Mapping[str, PrincipalUsage],
                collected_at: datetime) -> PrincipalUsage | None:
    """A group's usage as the latest use by any member (None: no member has data)."""
    known = [usage[m] for m in members if m in usage]
    if not known:
        return None
    merged: dict[str, ServiceUsage] = {}
    for principal in known:
        for s in principal.services:
            seen = merged.get(s.namespace)
            merged[s.namespace] = _later(seen, s) if seen else s
    return PrincipalUsage(group_arn, collected_at, tuple(sorted(merged.values(), key=lambda s: s.namespace)))


def _stamp(value: datetime | None) -> float:
    return value.timestamp() if value is not None else float("-inf")


def _later(a: ServiceUsage, b: ServiceUsage) -> ServiceUsage:
    base = a if _stamp(a.last_authenticated) >= _stamp(b.last_authenticated) else b
    if a.actions is None or b.actions is None:
        return ServiceUsage(base.namespace, base.name, base.last_authenticated, base.region,
                            base.entity, a.actions if b.actions is None else b.actions)
    actions: dict[str, ActionUsage] = {x.name: x for x in a.actions}
    for x in b.actions:
        y = actions.get(x.name)
        if y is None or _stamp(x.last_accessed) > _stamp(y.last_accessed):
            actions[x.name] = x
    return ServiceUsage(base.namespace, base.name, base.last_authenticated, base.region, base.entity,
                        tuple(sorted(actions.values(), key=lambda x: x.name)))
