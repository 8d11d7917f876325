"""Moto helpers for tests and benchmarks: fixtures, backdating, fast seeding.

Fixtures (import the ones you use into the test module):

* `aws_env`: fake credentials and region, no profile, no endpoint override.
* `moto_session`: in-process `mock_aws`, yields a `boto3.Session`.
* `moto_session_aws_policies`: the same with moto's ~1,500 AWS managed policies loaded
  (needed to attach e.g. ReadOnlyAccess; costs ~0.6 s per fresh account backend).
* `moto_server`: a `ThreadedMotoServer` on an ephemeral port in this process, with
  `AWS_ENDPOINT_URL` pointing at it (for end-to-end runs of the `steward` CLI, also in a
  subprocess that inherits the environment); yields the endpoint URL. State is reset
  before and after.

Backdating works by editing moto's backend objects, so it needs the backend in this
process (either fixture). Moto stores naive UTC datetimes; the helpers take an aware or
naive datetime, or a number of days ago.

`seed_iam` creates N users with keys, groups, policies, MFA and roles directly in the
backend (thousands per second), for the benchmark and for scale tests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iam.models import AccessKey, AccessKeyLastUsed, IAMBackend, iam_backends
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ACCOUNT_ID = DEFAULT_ACCOUNT_ID  # "123456789012": moto's account for unknown access keys
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}

When = datetime | float | int


# ---------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> dict[str, str]:
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_IAM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MOTO_IAM_LOAD_MANAGED_POLICIES", raising=False)
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return dict(FAKE_CREDENTIALS)


@pytest.fixture
def moto_session(aws_env: dict[str, str]) -> Iterator[boto3.Session]:
    with mock_aws():
        yield boto3.Session(region_name=REGION)


@pytest.fixture
def moto_session_aws_policies(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[boto3.Session]:
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    with mock_aws():
        yield boto3.Session(region_name=REGION)


@pytest.fixture
def instant_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore retries without their backoff sleeps nor the adaptive mode's client-side
    rate limiting (which slows sends down after throttling errors)."""
    monkeypatch.setattr(
        "botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, context: 0
    )
    monkeypatch.setattr(
        "botocore.retries.adaptive.ClientRateLimiter.on_sending_request",
        lambda self, request, **kwargs: None,
    )


@pytest.fixture
def moto_server(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with running_moto_server() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        yield url


@contextlib.contextmanager
def running_moto_server() -> Iterator[str]:
    """A ThreadedMotoServer on 127.0.0.1 and a free port; yields its URL. Resets moto's
    state on entry and exit (the backends are this process's globals)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        reset_moto(url)
        yield url
    finally:
        try:
            reset_moto(url)
        finally:
            server.stop()


def reset_moto(url: str) -> None:
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


# ---------------------------------------------------------------------------------------
# Backend access and backdating


def iam_backend(account_id: str = ACCOUNT_ID) -> IAMBackend:
    return iam_backends[account_id]["aws"]


def moment(when: When, *, now: datetime | None = None) -> datetime:
    """A naive UTC datetime, as moto stores them: `when` as a datetime (aware or naive
    UTC), or a number of days before `now` (default: the real clock)."""
    if isinstance(when, datetime):
        value = when
    else:
        value = (now or datetime.now(UTC)) - timedelta(days=float(when))
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def backdate_user(
    name: str, created: When, *, account_id: str = ACCOUNT_ID, now: datetime | None = None
) -> None:
    iam_backend(account_id).users[name].create_date = moment(created, now=now)


def set_password_last_used(
    name: str, when: When | None, *, account_id: str = ACCOUNT_ID, now: datetime | None = None
) -> None:
    """Moto reports it only for users with a login profile."""
    user = iam_backend(account_id).users[name]
    user.password_last_used = None if when is None else moment(when, now=now)


def access_key(user_name: str, which: int | str = 1, *, account_id: str = ACCOUNT_ID) -> AccessKey:
    """A user's key by credential-report slot (1 or 2) or by access key id."""
    keys = iam_backend(account_id).users[user_name].access_keys
    if isinstance(which, int):
        return keys[which - 1]
    return next(k for k in keys if k.access_key_id == which)


def backdate_access_key(
    user_name: str,
    which: int | str = 1,
    *,
    created: When | None = None,
    last_used: When | None = None,
    service: str = "s3",
    region: str = REGION,
    account_id: str = ACCOUNT_ID,
    now: datetime | None = None,
) -> AccessKey:
    """Set a key's creation time and/or last use (`moto.iam.models.AccessKeyLastUsed`)."""
    key = access_key(user_name, which, account_id=account_id)
    if created is not None:
        key.create_date = moment(created, now=now)
    if last_used is not None:
        key.last_used = AccessKeyLastUsed(
            timestamp=moment(last_used, now=now), service=service, region=region
        )
    return key


def backdate_role(
    name: str,
    *,
    created: When | None = None,
    last_used: When | None = None,
    region: str = REGION,
    account_id: str = ACCOUNT_ID,
    now: datetime | None = None,
) -> None:
    role = iam_backend(account_id).get_role(name)
    if created is not None:
        role.create_date = moment(created, now=now)
    if last_used is not None:
        role.last_used = moment(last_used, now=now)
        role.last_used_region = region


# ---------------------------------------------------------------------------------------
# Failing on purpose

QUERY_PROTOCOL = frozenset({"iam", "sts"})


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def inject_error(
    session: boto3.Session,
    operation: str,
    code: str,
    *,
    service: str = "iam",
    status: int = 403,
    message: str = "injected by the test",
    times: int | None = None,
) -> Callable[[], None]:
    """Make `service:operation` (e.g. "GenerateCredentialReport") answer with error `code`
    for clients created from `session` afterwards, the first `times` sends (all: None).

    It answers at the HTTP level (`before-send`, ahead of moto), so botocore parses,
    retries and counts it like a real AWS error. Returns a function that removes it.
    """
    state = {"left": times}
    if service in QUERY_PROTOCOL:
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>injected</RequestId></ErrorResponse>"
        ).encode()
        headers = {"Content-Type": "text/xml"}
    else:
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.1"}

    def answer(request: Any, **_: Any) -> AWSResponse | None:
        if state["left"] is not None:
            if state["left"] <= 0:
                return None
            state["left"] -= 1
        return AWSResponse(request.url, status, headers, _Body(body))

    event = f"before-send.{service}.{operation}"
    uid = f"inject-{service}-{operation}-{id(answer)}"
    session.events.register_first(event, answer, unique_id=uid)
    return lambda: session.events.unregister(event, unique_id=uid)


# ---------------------------------------------------------------------------------------
# Seeding

TRUST_EC2 = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
TRUST_EXTERNAL = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
            "Action": "sts:AssumeRole",
        }
    ],
}
SEED_AWS_POLICIES = (
    "arn:aws:iam::aws:policy/ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AdministratorAccess",
    "arn:aws:iam::aws:policy/AmazonS3FullAccess",
)


def document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: str | list[str], resource: str = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


@dataclass(frozen=True)
class Seeded:
    users: int
    keys: int
    groups: int
    roles: int
    customer_policies: int
    aws_policies: tuple[str, ...]
    console_users: int
    mfa_users: int

    @property
    def principals(self) -> int:
        return self.users + self.roles + self.groups


def seed_iam(
    users: int,
    *,
    roles: int | None = None,
    groups: int = 10,
    customer_policies: int = 5,
    aws_policies: Sequence[str] = SEED_AWS_POLICIES,
    account_id: str = ACCOUNT_ID,
    now: datetime | None = None,
    seed: int = 7,
) -> Seeded:
    """Create a realistic mix straight in moto's IAM backend (no API calls):

    every user in a group, a third with one key and a tenth with two (some inactive,
    some old, some never used), a fifth with a console password (a third of those with
    MFA), owner tags on half, an inline policy on every 20th, a customer policy on every
    25th, the AWS managed `aws_policies` on groups, users and roles (skipped unless moto
    loads AWS managed policies: MOTO_IAM_LOAD_MANAGED_POLICIES=true), and `roles`
    (default users // 10) with EC2 or cross-account trust.
    """
    rng = random.Random(seed)
    backend = iam_backend(account_id)
    roles = users // 10 if roles is None else roles
    available = {p.arn for p in backend.aws_managed_policies}
    aws_arns = tuple(a for a in aws_policies if a in available)

    local_arns = []
    for i in range(customer_policies):
        actions = ["s3:GetObject", "s3:ListBucket"] if i % 2 else ["ec2:*"]
        policy = backend.create_policy(
            description="",
            path="/",
            policy_document=document(allow(actions)),
            policy_name=f"seed-policy-{i}",
            tags=[],
        )
        local_arns.append(policy.arn)

    group_names = [f"seed-group-{g}" for g in range(groups)]
    for g, name in enumerate(group_names):
        backend.create_group(name)
        if local_arns:
            backend.attach_group_policy(local_arns[g % len(local_arns)], name)
        if aws_arns and g == 0:
            backend.attach_group_policy(aws_arns[0], name)
        if g % 4 == 1:
            backend.put_group_policy(name, "group-inline", document(allow("sqs:SendMessage")))

    keys = console = mfa = 0
    for i in range(users):
        name = f"seed-user-{i:05d}"
        tags = [{"Key": "owner", "Value": f"{name}@example.com"}] if i % 2 == 0 else []
        user = backend.create_user(REGION, name, "/", tags)
        user.create_date = moment(rng.uniform(1, 800), now=now)
        if group_names:
            backend.add_user_to_group(group_names[i % len(group_names)], name)
        n_keys = 2 if i % 10 == 0 else 1 if i % 3 == 0 else 0
        for k in range(n_keys):
            key = backend.create_access_key(
                name, status="Inactive" if k == 1 and i % 20 == 0 else "Active"
            )
            key.create_date = moment(rng.uniform(0, 400), now=now)
            if rng.random() < 0.7:
                key.last_used = AccessKeyLastUsed(
                    timestamp=moment(rng.uniform(0, 120), now=now), service="s3", region=REGION
                )
            keys += 1
        if i % 5 == 0:
            backend.create_login_profile(name, "Seed-Passw0rd!")
            user.password_last_used = moment(rng.uniform(0, 200), now=now) if i % 2 else None
            console += 1
            if i % 3 == 0:
                user.enable_mfa_device(f"arn:aws:iam::{account_id}:mfa/{name}", "123456", "654321")
                mfa += 1
        if i % 20 == 0:
            backend.put_user_policy(name, "user-inline", document(allow("dynamodb:*")))
        if local_arns and i % 25 == 0:
            backend.attach_user_policy(local_arns[i % len(local_arns)], name)
        if aws_arns and i % 50 == 0:
            backend.attach_user_policy(aws_arns[(i // 50) % len(aws_arns)], name)

    for r in range(roles):
        name = f"seed-role-{r:05d}"
        trust = TRUST_EXTERNAL if r % 7 == 0 else TRUST_EC2
        role = backend.create_role(name, json.dumps(trust), "/", None, "", [], None)
        role.create_date = moment(rng.uniform(1, 800), now=now)
        if r % 2:
            role.last_used = moment(rng.uniform(0, 200), now=now)
            role.last_used_region = REGION
        if local_arns:
            backend.attach_role_policy(local_arns[r % len(local_arns)], name)
        if aws_arns and r % 10 == 0:
            backend.attach_role_policy(aws_arns[(r // 10) % len(aws_arns)], name)
        if r % 5 == 0:
            backend.put_role_policy(name, "role-inline", document(allow("kms:Decrypt")))

    return Seeded(
        users=users,
        keys=keys,
        groups=len(group_names),
        roles=roles,
        customer_policies=len(local_arns),
        aws_policies=aws_arns,
        console_users=console,
        mfa_users=mfa,
    )


def moto_env(url: str | None = None) -> dict[str, str]:
    """Environment for a subprocess (e.g. `steward scan`) talking to a moto server."""
    env = {**os.environ, **FAKE_CREDENTIALS}
    if url:
        env["AWS_ENDPOINT_URL"] = url
    return env


# ---------------------------------------------------------------------------------------
# Security Hub, as strict as AWS documents it


def strict_security_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's `BatchImportFindings` refuse what Security Hub refuses.

    moto accepts any finding; Security Hub answers InvalidAccessException when the hub is
    not enabled, takes at most 100 findings per call, accepts a default-product finding
    only from the account it is about, refuses findings over 240 KB, and does not apply an
    update whose UpdatedAt is older than the stored one.
    """
    from moto.securityhub.exceptions import InvalidInputException, SecurityHubClientError
    from moto.securityhub.models import SecurityHubBackend

    original = SecurityHubBackend.batch_import_findings

    def strict(self: SecurityHubBackend, findings: list[dict[str, Any]]):
        if not self.enabled:
            raise SecurityHubClientError("InvalidAccessException",
                            f"Account {self.account_id} is not subscribed to AWS Security Hub")
        if len(findings) > 100:
            raise InvalidInputException("BatchImportFindings", "Findings must contain at most 100 items")
        accepted, refused = [], []
        stored = {f.id: f.data for f in self.findings}
        own_product = f"arn:aws:securityhub:{self.region_name}:{self.account_id}:product/{self.account_id}/default"
        for finding in findings:
            problem = None
            if finding.get("AwsAccountId") != self.account_id or finding.get("ProductArn") != own_product:
                problem = ("AccessDeniedException", "a default-product finding must be about the calling account")
            elif len(json.dumps(finding)) > 240 * 1024:
                problem = ("InvalidInput", "finding larger than 240 KB")
            elif finding["Id"] in stored and finding["UpdatedAt"] < stored[finding["Id"]]["UpdatedAt"]:
                problem = ("InvalidInput", "UpdatedAt is older than the stored finding's")
            if problem:
                refused.append({"Id": finding.get("Id", ""), "ErrorCode": problem[0], "ErrorMessage": problem[1]})
            else:
                accepted.append(finding)
        failed_count, success_count, failed = original(self, accepted)
        return failed_count + len(refused), success_count, failed + refused

    monkeypatch.setattr(SecurityHubBackend, "batch_import_findings", strict)


@pytest.fixture
def custom_selectors_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS's DescribeTrails says HasCustomEventSelectors once PutEventSelectors was called;
    moto 5 always answers False: answered here as AWS does."""
    from moto.cloudtrail.models import Trail as MotoTrail

    original = MotoTrail.description

    def description(self, include_region: bool = False):
        desc = original(self, include_region=include_region)
        desc["HasCustomEventSelectors"] = bool(self.event_selectors or self.advanced_event_selectors)
        return desc

    monkeypatch.setattr(MotoTrail, "description", description)
