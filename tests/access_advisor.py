"""IAM's last-accessed data (Access Advisor) for moto, which does not implement it.

`install(monkeypatch)` (or the `access_advisor` fixture) adds two operations to moto's IAM
responses, in process and in `ThreadedMotoServer` alike (same backend objects):

* `GenerateServiceLastAccessedDetails(Arn, Granularity)` -> `JobId` (NoSuchEntity for a
  user or role that does not exist, InvalidInput for a bad granularity);
* `GetServiceLastAccessedDetails(JobId, MaxItems, Marker)` -> `JobStatus` IN_PROGRESS for
  the first `polls_before_done` polls of a job (default 1), then COMPLETED with
  `JobType`, `JobCreationDate`, `JobCompletionDate`, `IsTruncated`/`Marker` (pages of
  MaxItems, default 100 like AWS) and `ServicesLastAccessed`: one entry per service the
  principal's policies allow (inline, attached, and a user's groups'; `NotAction` and `*`
  reach every service of the emulator's catalogue), with `ServiceName`,
  `ServiceNamespace`, `TotalAuthenticatedEntities`, and for used services
  `LastAuthenticated`, `LastAuthenticatedEntity`, `LastAuthenticatedRegion`;
  `TrackedActionsLastAccessed` for the services AWS tracks at action level (with
  ACTION_LEVEL), each action with `ActionName` (without prefix, like AWS),
  `LastAccessedEntity`, `LastAccessedTime`, `LastAccessedRegion`.

Usage is recorded by the test: `Advisor.use(arn, "s3:GetObject", days_ago)`. A service's
last use is its latest action's. Records live per account id in this process.

Authorization comes first, as in AWS: a caller signing with an assumed role's credentials
(a member role, through moto's STS) whose policies allow no `iam:<operation>` (or deny it)
gets AccessDenied before the ARN or job id is looked at; so a request about a role or job
that does not exist answers NoSuchEntity only to a caller allowed to make it (what
`steward doctor` relies on to check the permission without starting a job). Resources and
conditions are not evaluated. Other callers (moto's default credentials) are let through,
as moto lets them through everywhere.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from checks.policy import wildcard_match

# namespace -> (ServiceName, actions the emulator knows, tracked at action level)
SERVICES: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "s3": ("Amazon S3", ("GetObject", "PutObject", "ListBucket", "CreateBucket", "DeleteBucket",
                         "GetBucketPolicy", "PutBucketPolicy"), True),
    "ec2": ("Amazon EC2", ("DescribeInstances", "RunInstances", "TerminateInstances",
                           "CreateVpc"), True),
    "iam": ("AWS Identity and Access Management", ("GetUser", "ListUsers", "CreateUser",
                                                   "CreateAccessKey", "PassRole"), True),
    "lambda": ("AWS Lambda", ("InvokeFunction", "CreateFunction", "UpdateFunctionCode",
                              "DeleteFunction", "ListFunctions"), True),
    "dynamodb": ("Amazon DynamoDB", ("GetItem", "PutItem", "Query", "Scan", "DeleteTable"), False),
    "sqs": ("Amazon SQS", ("SendMessage", "ReceiveMessage", "DeleteMessage"), False),
    "sns": ("Amazon SNS", ("Publish", "Subscribe"), False),
    "kms": ("AWS Key Management Service", ("Decrypt", "Encrypt", "GenerateDataKey"), False),
    "logs": ("Amazon CloudWatch Logs", ("PutLogEvents", "CreateLogStream"), False),
    "secretsmanager": ("AWS Secrets Manager", ("GetSecretValue", "CreateSecret"), False),
    "sts": ("AWS Security Token Service", ("AssumeRole", "GetCallerIdentity"), False),
}


@dataclass
class _Job:
    account: str
    arn: str
    granularity: str
    created: datetime
    polls_left: int
    completed: datetime | None = None


@dataclass
class Advisor:
    """The emulator's state: usage records and jobs."""

    polls_before_done: int = 1
    # (account, principal arn) -> {action (prefixed, lower): (when, region)}
    records: dict[tuple[str, str], dict[str, tuple[datetime, str]]] = field(default_factory=dict)
    jobs: dict[str, _Job] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    generated: int = 0
    polled: int = 0

    def use(self, arn: str, action: str, days_ago: float = 0, *, region: str = "us-east-1",
            now: datetime | None = None) -> None:
        """Record that `arn` called `action` (`lambda:InvokeFunction`) `days_ago` days ago."""
        account = arn.split(":")[4]
        when = (now or datetime.now(UTC)) - timedelta(days=days_ago)
        with self.lock:
            self.records.setdefault((account, arn), {})[action.lower()] = (when, region)

    def reset(self) -> None:
        with self.lock:
            self.records.clear()
            self.jobs.clear()


ADVISOR = Advisor()


def _documents_of(backend: Any, arn: str) -> list[Any]:
    kind, _, rest = arn.split(":", 5)[5].partition("/")
    name = rest.rsplit("/", 1)[-1]
    if kind == "user":
        principal = backend.get_user(name)
        groups = backend.get_groups_for_user(name)
    elif kind == "role":
        principal = backend.get_role(name)
        groups = []
    else:
        principal = backend.get_group(name)
        groups = []
    docs = []
    for holder in (principal, *groups):
        docs.extend(holder.policies.values())
        for policy in holder.managed_policies.values():
            version = next(v for v in policy.versions if v.version_id == policy.default_version_id)
            docs.append(version.document)
    return [json.loads(d) if isinstance(d, str) else d for d in docs]


def _granted(documents: list[Any]) -> dict[str, set[str]]:
    """namespace -> the catalogue actions some Allow statement names (NotAction: all but)."""
    out: dict[str, set[str]] = {}
    for doc in documents:
        statements = doc.get("Statement", [])
        for s in [statements] if isinstance(statements, dict) else statements:
            if s.get("Effect") != "Allow":
                continue
            negated = "NotAction" in s
            patterns = s.get("NotAction" if negated else "Action", [])
            patterns = [patterns] if isinstance(patterns, str) else patterns
            for namespace, (_, actions, _) in SERVICES.items():
                for action in actions:
                    full = f"{namespace}:{action}"
                    hit = any(wildcard_match(p, full) for p in patterns)
                    if hit != negated:
                        out.setdefault(namespace, set()).add(action)
    return out


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _allows(documents: list[Any], action: str) -> bool:
    """Some Allow statement names `action` and no Deny does (Action only, NotAction too)."""
    allowed = False
    for doc in documents:
        statements = doc.get("Statement", [])
        for s in [statements] if isinstance(statements, dict) else statements:
            negated = "NotAction" in s
            patterns = s.get("NotAction" if negated else "Action", [])
            patterns = [patterns] if isinstance(patterns, str) else patterns
            if any(wildcard_match(p, action) for p in patterns) == negated:
                continue
            if s.get("Effect") == "Deny":
                return False
            allowed = allowed or s.get("Effect") == "Allow"
    return allowed


def _authorize(self: Any, operation: str) -> None:
    """AccessDenied (403, moto's own) for an assumed role whose policies do not allow
    `iam:<operation>`."""
    from moto.core.exceptions import AccessDeniedError
    from moto.sts.models import sts_backends

    assumed = sts_backends[self.current_account][self.partition].get_assumed_role_from_access_key(
        self.get_access_key())
    if assumed is None:
        return
    try:
        documents = _documents_of(self.backend, assumed.role_arn)
    except Exception:
        documents = []
    if not _allows(documents, f"iam:{operation}"):
        raise AccessDeniedError(user_arn=assumed.arn, action=f"iam:{operation}")


def generate(self: Any) -> Any:
    from moto.core.responses import ActionResult
    from moto.iam.exceptions import IAMException, NotFoundException

    _authorize(self, "GenerateServiceLastAccessedDetails")
    arn = self._get_param("Arn")
    granularity = self._get_param("Granularity") or "SERVICE_LEVEL"
    if granularity not in ("SERVICE_LEVEL", "ACTION_LEVEL"):
        raise _invalid(IAMException, f"Granularity {granularity!r} is not valid")
    try:
        kind = arn.split(":", 5)[5].split("/", 1)[0]
        if kind not in ("user", "role", "group", "policy"):
            raise ValueError
        if kind != "policy":
            _documents_of(self.backend, arn)
    except (ValueError, IndexError, StopIteration) as exc:
        raise _invalid(IAMException, f"ARN {arn} is not a valid entity") from exc
    except Exception as exc:
        if type(exc).__name__.endswith("NotFoundException") or "NoSuchEntity" in str(getattr(exc, "code", "")):
            raise NotFoundException(f"The entity {arn} cannot be found.") from exc
        raise
    job = str(uuid.uuid4())
    with ADVISOR.lock:
        ADVISOR.generated += 1
        ADVISOR.jobs[job] = _Job(self.current_account, arn, granularity, datetime.now(UTC),
                                 ADVISOR.polls_before_done)
    return ActionResult({"JobId": job})


def _invalid(base: type, message: str) -> Exception:
    class InvalidInput(base):  # type: ignore[misc, valid-type]
        code = "InvalidInput"

    return InvalidInput(message)


def get(self: Any) -> Any:
    from moto.core.responses import ActionResult
    from moto.iam.exceptions import IAMException, NotFoundException

    _authorize(self, "GetServiceLastAccessedDetails")
    job_id = self._get_param("JobId")
    max_items = int(self._get_param("MaxItems") or 100)
    marker = int(self._get_param("Marker") or 0)
    if not 1 <= max_items <= 1000:
        raise _invalid(IAMException, "MaxItems must be between 1 and 1000")
    with ADVISOR.lock:
        ADVISOR.polled += 1
        job = ADVISOR.jobs.get(job_id)
        if job is None or job.account != self.current_account:
            raise NotFoundException(f"Job {job_id} not found")
        base = {"JobType": job.granularity, "JobCreationDate": _iso(job.created)}
        if job.polls_left > 0:
            job.polls_left -= 1
            return ActionResult({"JobStatus": "IN_PROGRESS", **base, "ServicesLastAccessed": []})
        job.completed = job.completed or datetime.now(UTC)
        records = dict(ADVISOR.records.get((job.account, job.arn), {}))
    try:
        granted = _granted(_documents_of(self.backend, job.arn))
    except Exception:
        granted = {}
    entries = []
    for namespace in sorted(granted):
        name, _actions, tracked = SERVICES[namespace]
        used = {a: v for a, v in records.items() if a.startswith(namespace + ":")}
        entry: dict[str, Any] = {"ServiceName": name, "ServiceNamespace": namespace,
                                 "TotalAuthenticatedEntities": 1 if used else 0}
        if used:
            when, region = max(used.values())
            entry.update(LastAuthenticated=_iso(when), LastAuthenticatedEntity=job.arn,
                         LastAuthenticatedRegion=region)
        if tracked and job.granularity == "ACTION_LEVEL":
            rows = []
            for action in sorted(granted[namespace]):
                row: dict[str, Any] = {"ActionName": action}
                hit = used.get(f"{namespace}:{action}".lower())
                if hit:
                    row.update(LastAccessedEntity=job.arn, LastAccessedTime=_iso(hit[0]),
                               LastAccessedRegion=hit[1])
                rows.append(row)
            entry["TrackedActionsLastAccessed"] = rows
        entries.append(entry)
    page = entries[marker:marker + max_items]
    result = {"JobStatus": "COMPLETED", **base, "JobCompletionDate": _iso(job.completed),
              "ServicesLastAccessed": page, "IsTruncated": marker + max_items < len(entries)}
    if result["IsTruncated"]:
        result["Marker"] = str(marker + max_items)
    return ActionResult(result)


def install(monkeypatch: pytest.MonkeyPatch, *, polls_before_done: int = 1) -> Advisor:
    from moto.iam.responses import IamResponse

    ADVISOR.reset()
    ADVISOR.polls_before_done = polls_before_done
    ADVISOR.generated = ADVISOR.polled = 0
    monkeypatch.setattr(IamResponse, "generate_service_last_accessed_details", generate, raising=False)
    monkeypatch.setattr(IamResponse, "get_service_last_accessed_details", get, raising=False)
    return ADVISOR


@pytest.fixture
def access_advisor(monkeypatch: pytest.MonkeyPatch) -> Iterator[Advisor]:
    yield install(monkeypatch)
    ADVISOR.reset()


_ids = itertools.count()
