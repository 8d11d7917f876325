"""The AWS plumbing every path to AWS shares: collection (`checks.collect`), the accounts
and their sessions (`checks.accounts`), remediation (`checks.remediate`), the Security Hub
export, and the services that check which account a session is in.

* Errors: botocore exceptions mapped to one `CollectError` with a one-line message and
  `retryable` (throttling, network, 5xx) -- `collect_error`, `aws_errors`, `error_code`,
  and the AWS error-code families (`ACCESS_DENIED`, `CREDENTIALS_REJECTED`, `THROTTLED`,
  `SERVER_FAULTS`).
* Throttling seen by the SDK's retries, reported to observers (`observe_throttling`;
  `on_needs_retry` is the hook `checks.accounts` puts on its sessions).
* `ApiCallCounter`: the API calls (and HTTP attempts) of a session's clients.
* Clients: `client_config` (adaptive retries, `max_attempts` attempts in all, the
  user-agent suffix) and `aws_client`, cached per session with `cache_clients`.
* `caller_identity` / `caller_account`: sts:GetCallerIdentity, errors mapped.

No import of `bot`; the pure modules (rules, policy analysis, model, catalog) never import
this one (it imports boto3).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

DEFAULT_REGION = "us-east-1"
DEFAULT_MAX_ATTEMPTS = 8

# ---------------------------------------------------------------------------------------
# Errors

ACCESS_DENIED = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}
)
CREDENTIALS_REJECTED = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "InvalidToken",
    }
)
THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "PriorRequestNotComplete",
    }
)
SERVER_FAULTS = frozenset(
    {"ServiceFailure", "ServiceUnavailable", "InternalFailure", "InternalError"}
)

# Told the error code of every throttling answer AWS gives a session made by
# `checks.accounts` (retried or not): the long-running processes count them for /metrics.
_throttle_observers: list[Callable[[str], None]] = []


def observe_throttling(callback: Callable[[str], None]) -> None:
    if callback not in _throttle_observers:
        _throttle_observers.append(callback)


def on_needs_retry(response: Any = None, **_: Any) -> None:
    """botocore's `needs-retry` event: look at the answer, decide nothing (returns None)."""
    if not response or not _throttle_observers:
        return
    code = str(((response[1] or {}).get("Error") or {}).get("Code", ""))
    if code in THROTTLED:
        for callback in list(_throttle_observers):
            callback(code)


class CollectError(Exception):
    """Collecting one account failed. `retryable`: trying again later may succeed
    (throttling, network, a report still being built); otherwise a person must act."""

    def __init__(self, account: str | None, message: str, retryable: bool = False) -> None:
        super().__init__(f"{account or 'unknown account'}: {message}")
        self.account = account
        self.message = message
        self.retryable = retryable


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def collect_error(
    account: str | None, exc: Exception, service: str = "", *, context: str = ""
) -> CollectError:
    """Translate a botocore exception into a `CollectError` with a one-line message.

    `service` is the IAM action prefix (`iam`, `sts`, `organizations`) used to name the
    denied action; `context` is appended, e.g. the role that could not be assumed.
    """
    suffix = f" ({context})" if context else ""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        action = f"{service}:{exc.operation_name}" if service else exc.operation_name
        detail = exc.response.get("Error", {}).get("Message", "") or code
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code in ACCESS_DENIED:
            return CollectError(account, f"AccessDenied on {action}{suffix}", False)
        if code in CREDENTIALS_REJECTED:
            return CollectError(
                account, f"AWS rejected the credentials on {action}: {code}{suffix}", False
            )
        if code in THROTTLED:
            attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
            return CollectError(
                account,
                f"throttled on {action} after {attempts + 1} attempts ({code}){suffix}",
                True,
            )
        retryable = code in SERVER_FAULTS or int(status) >= 500
        return CollectError(account, f"{code} on {action}: {detail}{suffix}", retryable)
    if isinstance(exc, NoCredentialsError):
        return CollectError(
            account,
            "no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or run with an instance/task role)",
            False,
        )
    if isinstance(exc, PartialCredentialsError | CredentialRetrievalError | ProfileNotFound):
        return CollectError(account, f"cannot load AWS credentials: {exc}{suffix}", False)
    if isinstance(exc, EndpointConnectionError):
        url = exc.kwargs.get("endpoint_url", "?")
        return CollectError(
            account,
            f"cannot reach the AWS endpoint {url} (check the network, AWS_ENDPOINT_URL "
            f"and AWS_REGION){suffix}",
            True,
        )
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError):
        return CollectError(account, f"AWS endpoint timed out or hung up: {exc}{suffix}", True)
    if isinstance(exc, NoRegionError):
        return CollectError(account, "no AWS region configured (set AWS_REGION)", False)
    return CollectError(account, f"{type(exc).__name__}: {exc}{suffix}", False)


@contextlib.contextmanager
def aws_errors(account: str | None, service: str, *, context: str = "") -> Iterator[None]:
    """Re-raise botocore errors raised inside the block as `CollectError`."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise collect_error(account, exc, service, context=context) from exc


# ---------------------------------------------------------------------------------------
# Counting API calls


class ApiCallCounter:
    """Counts the AWS API calls of clients created from a session while attached.

    The hooks go on the session's event system, which botocore copies into each client
    when it is created: attach *before* creating the clients (or use a session whose
    clients `aws_client` caches: those get the hooks too). `calls` counts operations
    (`before-call`: one per client method call, one per paginator page); `attempts` counts
    HTTP requests sent (`before-send`: retries included; botocore's Stubber sends none).

        with ApiCallCounter().attached(session) as counter:
            ...
        counter.calls
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._uid = f"iam-steward-counter-{id(self)}"
        self.calls = 0
        self.attempts = 0
        self.by_operation: Counter[str] = Counter()

    def attach(self, session: boto3.Session) -> None:
        # Clients copy the session's hooks when built: the ones `aws_client` already
        # cached for this session get them directly.
        for events in (session.events, *(c.meta.events for c in cached_clients(session))):
            events.register("before-call", self._on_call, unique_id=f"{self._uid}-call")
            events.register("before-send", self._on_send, unique_id=f"{self._uid}-send")

    def detach(self, session: boto3.Session) -> None:
        for events in (session.events, *(c.meta.events for c in cached_clients(session))):
            events.unregister("before-call", unique_id=f"{self._uid}-call")
            events.unregister("before-send", unique_id=f"{self._uid}-send")

    @contextlib.contextmanager
    def attached(self, session: boto3.Session) -> Iterator[ApiCallCounter]:
        self.attach(session)
        try:
            yield self
        finally:
            self.detach(session)

    def _on_call(self, model: Any = None, **_: Any) -> None:
        name = f"{model.service_model.endpoint_prefix}:{model.name}" if model else "?"
        with self._lock:
            self.calls += 1
            self.by_operation[name] += 1

    def _on_send(self, **_: Any) -> None:
        with self._lock:
            self.attempts += 1


def client_config(max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Config:
    """Adaptive retries (backoff plus client-side rate limiting after throttling).
    `max_attempts` counts every attempt, the first included: botocore's Config key for
    that is `total_max_attempts`; its `max_attempts` key would count retries only."""
    return Config(
        retries={"mode": "adaptive", "total_max_attempts": max_attempts},
        user_agent_extra="iam-steward",
    )


class _ClientCache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clients: dict[tuple[str, str, int], Any] = {}


# Sessions whose clients are reused (see `cache_clients`); weak keys: a cache lives exactly
# as long as its session, i.e. one account's scan for the sessions `session_for` builds.
_CLIENT_CACHES: weakref.WeakKeyDictionary[boto3.Session, _ClientCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def cache_clients(session: boto3.Session) -> boto3.Session:
    """Make `aws_client` hand out one client per service (and region and retry budget) of
    `session` for as long as the session lives, instead of building a new one each time
    (building a client costs milliseconds of CPU; botocore clients are thread-safe)."""
    with _CACHES_LOCK:
        _CLIENT_CACHES.setdefault(session, _ClientCache())
    return session


def caches_clients(session: boto3.Session) -> bool:
    return session in _CLIENT_CACHES


def cached_clients(session: boto3.Session) -> list[Any]:
    cache = _CLIENT_CACHES.get(session)
    if cache is None:
        return []
    with cache.lock:
        return list(cache.clients.values())


def aws_client(session: boto3.Session, service: str, max_attempts: int) -> Any:
    # AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_IAM, ...) are applied by botocore itself.
    region = session.region_name or DEFAULT_REGION
    cache = _CLIENT_CACHES.get(session)
    if cache is None:
        return session.client(service, region_name=region, config=client_config(max_attempts))
    key = (service, region, max_attempts)
    with cache.lock:
        client = cache.clients.get(key)
        if client is None:
            client = cache.clients[key] = session.client(
                service, region_name=region, config=client_config(max_attempts)
            )
        return client


# ---------------------------------------------------------------------------------------
# Which account a session is in


def caller_identity(session: boto3.Session, max_attempts: int = DEFAULT_MAX_ATTEMPTS, *,
                    account: str | None = None, expected: str | None = None) -> tuple[str, str]:
    """(account id, partition) of the session's credentials (sts:GetCallerIdentity).
    `account` names the account in the error message when the call fails (`CollectError`).
    With `expected`: a `CollectError` unless the credentials belong to that account, so
    nothing is read from or written to the wrong account because the credentials changed
    (the one place this is checked: collection and remediation both call it)."""
    with aws_errors(account or expected, "sts"):
        identity = aws_client(session, "sts", max_attempts).get_caller_identity()
    partition = str(identity.get("Arn", "arn:aws:")).split(":")[1] or "aws"
    actual = str(identity["Account"])
    if expected and actual != expected:
        raise CollectError(expected, f"the credentials belong to account {actual}, not {expected}", False)
    return actual, partition


def caller_account(session: boto3.Session, max_attempts: int = DEFAULT_MAX_ATTEMPTS, *,
                   account: str | None = None, expected: str | None = None) -> str:
    """The account id of the session's credentials; `CollectError` when STS refuses, or
    when they are not `expected`'s."""
    return caller_identity(session, max_attempts, account=account, expected=expected)[0]
