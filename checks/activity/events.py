"""CloudTrail records, as EventBridge delivers them, parsed into one frozen value (pure).

EventBridge wraps a CloudTrail management event in an envelope (`source` "aws.iam",
`detail-type` "AWS API Call via CloudTrail" or "AWS Console Sign In via CloudTrail",
`detail` = the CloudTrail record). A bare CloudTrail record (what a trail's S3 file or
CloudTrail Lake holds) is accepted too. Field names are AWS's: eventID, eventName,
eventSource, eventTime, userIdentity{type, arn, principalId, accountId, accessKeyId,
userName, invokedBy, sessionContext{sessionIssuer, sourceIdentity, attributes}, onBehalfOf},
sourceIPAddress, userAgent, requestParameters, responseElements,
additionalEventData{MFAUsed}, errorCode, recipientAccountId.

Anything that is not such a record raises `EventError` with one line saying why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SOURCES = ("aws.iam", "aws.sts", "aws.signin", "aws.cloudtrail")
ACCOUNT_ID = re.compile(r"^\d{12}$")
EMAILISH = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class EventError(ValueError):
    """Not a CloudTrail record this intake can read."""


@dataclass(frozen=True)
class Actor:
    """Who made the call, from `userIdentity`.

    kind: root | user | role-session | identity-center | service | federated | unknown.
    `user_name` is the IAM user's name (kind user); `role_arn` the role a session came
    from; `session_name` and `source_identity` what a role session says about its person;
    `access_key_id` the key used (AKIA... for an IAM user's long-term key)."""

    kind: str
    arn: str = ""
    account_id: str = ""
    principal_id: str = ""
    user_name: str | None = None
    role_arn: str | None = None
    session_name: str | None = None
    source_identity: str | None = None
    identity_store_user: str | None = None
    access_key_id: str | None = None
    invoked_by: str | None = None

    @property
    def long_term_key(self) -> str | None:
        key = self.access_key_id or ""
        return key if self.kind == "user" and key.startswith("AKIA") else None

    @property
    def user_arn(self) -> str | None:
        return self.arn if self.kind == "user" and self.arn else None

    def person_hints(self) -> tuple[str, ...]:
        """Values that may name a person, best first: a source identity, then (Identity
        Center or a session named like an email) the session name."""
        hints = []
        if self.source_identity:
            hints.append(self.source_identity)
        if self.session_name and (self.kind == "identity-center" or EMAILISH.match(self.session_name)):
            hints.append(self.session_name)
        return tuple(hints)

    def describe(self) -> str:
        if self.kind == "root":
            return "the root user"
        if self.kind == "user":
            return f"IAM user {self.user_name}"
        if self.kind in ("role-session", "identity-center"):
            role = (self.role_arn or "").rsplit("/", 1)[-1] or "a role"
            who = self.source_identity or self.session_name or "?"
            return f"{who} (session of role {role})"
        if self.kind == "service":
            return f"AWS service {self.invoked_by}"
        return self.arn or self.principal_id or "an unknown identity"


@dataclass(frozen=True)
class CloudTrailEvent:
    event_id: str
    name: str
    source: str  # eventSource, e.g. iam.amazonaws.com
    time: datetime
    account_id: str  # the account the event happened in (recipientAccountId)
    region: str
    actor: Actor
    source_ip: str = ""
    user_agent: str = ""
    request: Mapping[str, Any] = field(default_factory=dict)
    response: Mapping[str, Any] = field(default_factory=dict)
    additional: Mapping[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    read_only: bool | None = None

    @property
    def succeeded(self) -> bool:
        if self.error_code:
            return False
        if self.name == "ConsoleLogin":
            return (self.response or {}).get("ConsoleLogin") == "Success"
        return True

    @property
    def service(self) -> str:
        return self.source.split(".", 1)[0]

    def facts(self) -> dict[str, str]:
        """What a person is shown: what, by whom, from where, when (JSON-ready)."""
        return {
            "event": f"{self.service}:{self.name}",
            "actor": self.actor.describe(),
            "ip": self.source_ip or "?",
            "user_agent": (self.user_agent or "?")[:200],
            "time": self.time.isoformat(),
            "account": self.account_id,
            "region": self.region,
            "event_id": self.event_id,
        }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _actor(raw: Any) -> Actor:
    if not isinstance(raw, Mapping):
        return Actor("unknown")
    kind_raw = raw.get("type") or ""
    arn = _text(raw.get("arn")) or ""
    common = {
        "arn": arn,
        "account_id": _text(raw.get("accountId")) or "",
        "principal_id": _text(raw.get("principalId")) or "",
        "access_key_id": _text(raw.get("accessKeyId")),
        "invoked_by": _text(raw.get("invokedBy")),
    }
    if kind_raw == "Root":
        return Actor("root", **common)
    if kind_raw == "IAMUser":
        return Actor("user", user_name=_text(raw.get("userName")) or arn.rsplit("/", 1)[-1], **common)
    if kind_raw == "AssumedRole":
        context = raw.get("sessionContext") or {}
        issuer = context.get("sessionIssuer") or {}
        session_name = arn.rsplit("/", 1)[-1] if ":assumed-role/" in arn else None
        on_behalf = raw.get("onBehalfOf") or {}
        role_arn = _text(issuer.get("arn"))
        sso = bool(on_behalf.get("userId")) or "/AWSReservedSSO_" in (role_arn or "") or \
            ":assumed-role/AWSReservedSSO_" in arn
        return Actor(
            "identity-center" if sso else "role-session",
            role_arn=role_arn,
            session_name=session_name,
            source_identity=_text(context.get("sourceIdentity")) or _text(raw.get("sourceIdentity")),
            identity_store_user=_text(on_behalf.get("userId")),
            **common,
        )
    if kind_raw == "AWSService":
        return Actor("service", **common)
    if kind_raw in ("FederatedUser", "SAMLUser", "WebIdentityUser", "IdentityCenterUser"):
        return Actor("federated", **common)
    return Actor("unknown", **common)


def _when(raw: Any) -> datetime:
    if not isinstance(raw, str):
        raise EventError("no eventTime")
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise EventError(f"unreadable eventTime {raw[:40]!r}") from None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse(body: str | bytes | Mapping[str, Any]) -> CloudTrailEvent:
    """One EventBridge-delivered (or bare) CloudTrail record. Raises EventError."""
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventError(f"not JSON: {exc}") from None
    if not isinstance(body, Mapping):
        raise EventError("not a JSON object")
    record = body.get("detail") if "detail" in body else body
    if not isinstance(record, Mapping):
        raise EventError("EventBridge envelope without a detail object")
    event_id = _text(record.get("eventID"))
    name = _text(record.get("eventName"))
    source = _text(record.get("eventSource"))
    if not (event_id and name and source):
        missing = [k for k, v in (("eventID", event_id), ("eventName", name), ("eventSource", source)) if not v]
        raise EventError(f"not a CloudTrail record (missing {', '.join(missing)})")
    actor = _actor(record.get("userIdentity"))
    account = _text(record.get("recipientAccountId")) or _text(body.get("account")) or actor.account_id
    if not (account and ACCOUNT_ID.match(account)):
        raise EventError("no 12-digit account id (recipientAccountId)")
    read_only = record.get("readOnly")
    return CloudTrailEvent(
        event_id=event_id,
        name=name,
        source=source,
        time=_when(record.get("eventTime")),
        account_id=account,
        region=_text(record.get("awsRegion")) or _text(body.get("region")) or "",
        actor=actor,
        source_ip=_text(record.get("sourceIPAddress")) or "",
        user_agent=_text(record.get("userAgent")) or "",
        request=_mapping(record.get("requestParameters")),
        response=_mapping(record.get("responseElements")),
        additional=_mapping(record.get("additionalEventData")),
        error_code=_text(record.get("errorCode")),
        read_only=read_only if isinstance(read_only, bool) else None,
    )
