"""The append-only, hash-chained audit log (docs/architecture.md §4 "Audit").

Every scan, notification, decision, approval, remediation, undo, failure and refused attempt
is one `audit_event` row, written by `record()` in the caller's transaction (the service
layer commits the state change and its audit row together).

The chain
---------
Events are numbered 1, 2, 3, ... with no gaps. Each row stores `prev_hash` (the hash of the
event before it, `GENESIS_HASH` for event 1) and

    hash = sha256(prev_hash as ASCII + canonical_json(document)).hexdigest()

where `document` is the row without its hashes:

    {"sequence": 7, "at": "2026-01-02T03:04:05.000006Z", "actor": "U123", "action": "refused",
     "subject_fingerprint": "…" | null, "resource": "arn:…" | null, "account": "…" | null,
     "payload": {…}}

Canonical JSON: keys sorted, no whitespace (`,` and `:` separators), UTF-8 (not \\u escapes),
no NaN/Infinity; datetimes (`at` and any inside the payload) as ISO-8601 UTC with exactly six
fractional digits and a `Z`. The payload is normalised through canonical JSON before it is
stored, so what is stored is exactly what was hashed and every value round-trips through
SQLite and PostgreSQL unchanged (both keep microseconds; `at` is compared as aware UTC).

The head (`audit_chain_head`, row id 1: last sequence and last hash) is written in the same
transaction as the event. A bare chain cannot show that its newest rows were deleted; a
head that is ahead of the last row can.

Concurrency
-----------
Appending reads the head, computes the next hash and writes; two writers that read the same
head would fork the chain. So the head row is locked *before* it is read, and the lock is
held until the caller's transaction ends:

* PostgreSQL: `SELECT … FOR UPDATE` on the head row. A second writer blocks on the row lock;
  under READ COMMITTED it then reads the head its predecessor committed (under REPEATABLE
  READ / SERIALIZABLE it gets a serialization error instead: retry, never a fork).
* SQLite: the first statement is a no-op `UPDATE` of the head row. pysqlite opens the
  transaction (`BEGIN`) right before it and the UPDATE takes SQLite's RESERVED (write) lock,
  waiting up to the busy timeout while another writer holds it: the same effect as
  `BEGIN IMMEDIATE`, without touching the engine's other transactions. A transaction that
  starts with a write gets its snapshot together with the lock, and in WAL mode a writer
  whose snapshot is stale is refused (SQLITE_BUSY_SNAPSHOT), so the head read after the
  lock is always the newest one. If the caller's transaction already wrote something, it
  already holds the lock and nothing can have moved the head since.

The head update also checks `last_sequence` is still the value read (belt and braces), and
migration 0002's triggers refuse any head move that is not "one step, to an event that
exists". Audited transactions are therefore serialised: keep them short, and record the
audit event after the state change's other row locks (one lock order, no deadlocks).

The keyed chain (STEWARD_AUDIT_KEY, bot/db/audit_key.py)
-----------------------------------------------------
With a key configured, each event's `hash` is a MAC instead:

    hash = HMAC-SHA-256(key, prev_hash as ASCII + canonical_json(document)).hexdigest()

where the document also carries `"key_id"` (the key's id, stored in the row's `key_id`
column; unkeyed events have neither, so chains written before keys existed verify as
before). The head row also stores `head_mac = HMAC(key, "steward audit head" ‖ sequence ‖
hash)`: moving the head back to an earlier event needs the key too. The chain changes key
only through an `audit.rekeyed` event (MAC'd with the new key, naming the previous key id):
`steward audit rekey`, or the first write of a process whose current key is not the
chain's. Once keyed, a chain never goes back to unkeyed events.

Tamper evidence, and its limits
-------------------------------
`verify()` recomputes every hash or MAC in sequence order and compares the head: it detects
an edited row, a deleted row (a gap, or the head ahead of the last row), reordered or
inserted rows (a `prev_hash` that does not link) and an edited head. Triggers refuse
UPDATE/DELETE/TRUNCATE and inserts anywhere but at the head, but someone who can drop them
can rewrite an *unkeyed* chain from any row onwards, hashes and head included. Against a
keyed chain, someone with only the database cannot forge, append, rewrite or move the head
back without the key; what they can still do is delete the newest events *and* restore a
head row they copied earlier, or delete everything. Published heads (`--anchor`, the weekly
digest) catch both: `verify(anchors=…)` proves the chain still passes through each.
`verify()` also recomputes the search index (audit_ref) from the events.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, TextIO
from uuid import UUID

from sqlalchemy import Connection, Engine, exists, insert, select, update
from sqlmodel import Session

from bot.core import audit_names
from bot.db.audit_key import NO_KEYS, AuditKey, Keyring, process_keyring
from bot.db.models import AuditChainHead, AuditEvent, AuditRef

GENESIS_HASH = "0" * 64
HEAD_ID = 1

_EVENT = AuditEvent.__table__
_HEAD = AuditChainHead.__table__
_REF = AuditRef.__table__


class AuditAction(StrEnum):
    """Every action the audit log knows. Add new names here (values are stored, never renamed).

    Payload conventions: `reason` (free text or a short code), `before` / `after` (state),
    `aws_request_ids` (list), `error` (failures), `attempted` (what a refused actor tried).
    """

    # Scans (subject: none; account set; payload: run_id, counts, error)
    SCAN_STARTED = "scan.started"
    SCAN_SUCCEEDED = "scan.succeeded"
    SCAN_FAILED = "scan.failed"
    # Finding lifecycle seen by scans (subject: fingerprint + resource)
    FINDING_OPENED = "finding.opened"
    FINDING_RESOLVED = "finding.resolved"
    FINDING_REOPENED = "finding.reopened"
    # Routing
    FINDING_NOTIFIED = "finding.notified"
    FINDING_NOTIFY_FAILED = "finding.notify_failed"
    FINDING_REMINDED = "finding.reminded"
    FINDING_ESCALATED = "finding.escalated"
    OWNER_ASSIGNED = "owner.assigned"
    # Owner decisions in a DM (an exception, "Keep…", is `exception.granted` below). Events
    # written before these names existed read through `bot.core.audit_names.reads_as`:
    # "decision.keep" was Acknowledge, "decision.remediate" with decision "rotate" was
    # "I'll rotate it".
    DECISION_REMEDIATE = "decision.remediate"  # a remediation button (payload: action, remediation_id)
    DECISION_ROTATE_PROMISE = audit_names.ROTATE_PROMISE  # "I'll rotate it" (payload: until)
    DECISION_ACKNOWLEDGE = audit_names.ACKNOWLEDGE  # Acknowledge (account-level findings)
    DECISION_SNOOZE = "decision.snooze"
    DECISION_NOT_MINE = "decision.not_mine"
    # Two-person rule
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_GRANTED = "approval.granted"
    APPROVAL_REJECTED = "approval.rejected"
    # Exceptions ("Keep") and snoozes
    EXCEPTION_GRANTED = "exception.granted"
    EXCEPTION_EXPIRED = "exception.expired"
    EXCEPTION_REVOKED = "exception.revoked"
    SNOOZE_EXPIRED = "snooze.expired"
    # Remediation (payload: before/after state, aws_request_ids, dry_run, error)
    REMEDIATION_PLANNED = "remediation.planned"
    REMEDIATION_APPROVED = "remediation.approved"
    REMEDIATION_STARTED = "remediation.started"
    REMEDIATION_SUCCEEDED = "remediation.succeeded"
    REMEDIATION_FAILED = "remediation.failed"
    REMEDIATION_RECONCILED = "remediation.reconciled"
    REMEDIATION_UNDO_REQUESTED = "remediation.undo_requested"
    REMEDIATION_UNDONE = "remediation.undone"
    REMEDIATION_CANCELLED = "remediation.cancelled"  # planned, then dropped before anything ran
    REMEDIATION_UNDO_FAILED = "remediation.undo_failed"
    # Someone tried something they may not do, or on a stale state (payload: reason, attempted)
    REFUSED = "refused"
    # A request Steward could not finish (payload: attempted, error type, reason)
    REQUEST_FAILED = "request.failed"
    # Slack setup found broken or whole again by the health check (payload: parts, problems)
    SETUP_DEGRADED = "setup.degraded"
    SETUP_RESTORED = "setup.restored"
    # Reports
    DIGEST_POSTED = "digest.posted"
    # Findings sent to other tools (account set; payload: region, active, archived, refused, error)
    EXPORT_SECURITYHUB = "export.securityhub"
    EXPORT_SECURITYHUB_FAILED = "export.securityhub_failed"
    # The log itself: a new key for the chain (payload: previous_key_id), a head published
    # (payload: sequence, hash, channel, ts)
    AUDIT_REKEYED = "audit.rekeyed"
    AUDIT_HEAD_PUBLISHED = "audit.head_published"
    # Access reviews (bot/services/reviews.py; payload: campaign, item, reviewer, decision...)
    REVIEW_STARTED = "review.started"  # the population frozen: counts, scans, due date
    REVIEW_ROUTED = "review.routed"  # an item's reviewer, and why (owner, manager, security)
    REVIEW_SENT = "review.sent"  # a reviewer's message (channel, ts, items)
    REVIEW_SEND_FAILED = "review.send_failed"
    REVIEW_DETAILS_OPENED = "review.details_opened"
    REVIEW_DECIDED = "review.decided"  # still_needed | remove | overdue, with reason and timing
    REVIEW_NOT_MINE = "review.not_mine"
    REVIEW_DELEGATED = "review.delegated"
    REVIEW_REMINDED = "review.reminded"
    REVIEW_ESCALATED = "review.escalated"
    REVIEW_CLOSED = "review.closed"
    REVIEW_EXPORTED = "review.exported"
    # Activity: risky CloudTrail events (subject: the changed ARN; payload: event_id, rule,
    # facts; answers: person, reason), and bodies the intake could not read (payload: error)
    ACTIVITY_DETECTED = "activity.detected"
    ACTIVITY_ASKED = "activity.asked"
    ACTIVITY_CONFIRMED = "activity.confirmed"
    ACTIVITY_DENIED = "activity.denied"
    ACTIVITY_UNANSWERED = "activity.unanswered"
    ACTIVITY_ESCALATED = "activity.escalated"
    ACTIVITY_ACKNOWLEDGED = "activity.acknowledged"
    ACTIVITY_UNREADABLE = "activity.unreadable"
    # Least privilege from usage (account set; payload: principals, api_calls, failed)
    USAGE_COLLECTED = "usage.collected"
    USAGE_COLLECT_FAILED = "usage.collect_failed"
    # One owner's yes to right-sizing a policy shared with other owners (payload: policy, digest, pending)
    RIGHTSIZE_CONSENTED = "rightsize.consented"
    # "Rotate it for me" (subject: the old key's finding; payload: key ids, secret ARN, never a secret)
    ROTATION_STARTED = "rotation.started"
    ROTATION_KEY_CREATED = "rotation.key_created"
    ROTATION_PICKED_UP = "rotation.picked_up"
    ROTATION_NEW_KEY_USED = "rotation.new_key_used"
    ROTATION_DEACTIVATION_OFFERED = "rotation.deactivation_offered"
    ROTATION_OLD_KEY_DEACTIVATED = "rotation.old_key_deactivated"
    ROTATION_SECRET_DELETED = "rotation.secret_deleted"
    ROTATION_FAILED = "rotation.failed"


class AuditError(RuntimeError):
    """The audit log cannot be written (missing chain head, or it moved under us)."""


# --- canonical form ----------------------------------------------------------------------


def format_time(value: datetime) -> str:
    """The one textual form of a time in the chain: `2026-01-02T03:04:05.000006Z`."""
    if value.tzinfo is None:
        raise ValueError("naive datetime in the audit log; give an aware (UTC) datetime")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable in an audit payload")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, no NaN; datetimes via `format_time`."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    ).encode("utf-8")


def event_document(
    *,
    sequence: int,
    at: datetime,
    actor: str,
    action: str,
    subject_fingerprint: str | None,
    resource: str | None,
    account: str | None,
    payload: Mapping[str, Any],
    key_id: str | None = None,
) -> dict[str, Any]:
    """The hashed part of an event (everything but `prev_hash` and `hash`)."""
    document = {
        "sequence": sequence,
        "at": format_time(at),
        "actor": actor,
        "action": str(action),
        "subject_fingerprint": subject_fingerprint,
        "resource": resource,
        "account": account,
        "payload": payload,
    }
    if key_id is not None:  # absent for unkeyed events: their hashes stay what they were
        document["key_id"] = key_id
    return document


def chain_hash(prev_hash: str, document: Mapping[str, Any], key: AuditKey | None = None) -> str:
    """sha256 (unkeyed) or HMAC-SHA-256 with `key` over prev_hash + canonical JSON."""
    data = prev_hash.encode("utf-8") + canonical_json(document)
    return key.mac(data) if key is not None else hashlib.sha256(data).hexdigest()


def head_mac(key: AuditKey, sequence: int, last_hash: str) -> str:
    """The head row's own MAC: a head moved back to an earlier event needs the key."""
    return key.mac(b"steward audit head\x00%d\x00%s" % (sequence, last_hash.encode("ascii")))


def _document_of(row: Any) -> dict[str, Any]:
    return event_document(
        sequence=row.sequence,
        at=row.at,
        actor=row.actor,
        action=row.action,
        subject_fingerprint=row.subject_fingerprint,
        resource=row.resource,
        account=row.account,
        payload=row.payload,
        key_id=row.key_id,
    )


# --- writing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainHead:
    last_sequence: int
    last_hash: str
    key_id: str | None = None  # the key of the last event (None: unkeyed or empty chain)


def record(
    session: Session,
    *,
    actor: str,
    action: AuditAction | str,
    subject_fingerprint: str | None = None,
    resource: str | None = None,
    account: str | None = None,
    payload: Mapping[str, Any] | None = None,
    at: datetime | None = None,
    keyring: Keyring | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction. Never commits.

    `actor` is a Slack user id, `system`, or `cli:<user>`. The payload may hold datetimes,
    dates, UUIDs and sets; it is stored in its canonical JSON form (what `.payload` of the
    returned event shows). Raises ValueError for an unknown action, an empty actor, a naive
    `at` or NaN; TypeError for a payload value JSON cannot hold; AuditError if the chain head
    is missing (schema not migrated, or the log was tampered with) or the chain is keyed with
    a key this process does not have. Empty strings for the subject fields are stored as null.

    `keyring` defaults to this process's STEWARD_AUDIT_KEY. If its current key is not the
    chain's (the chain is unkeyed, or under a retired key), an `audit.rekeyed` event is
    written first.
    """
    action = AuditAction(action)
    if not actor:
        raise ValueError("an audit event needs an actor")
    at = at or datetime.now(UTC)
    if at.tzinfo is None:
        raise ValueError("naive datetime given as an audit event time")
    at = at.astimezone(UTC)
    payload = json.loads(canonical_json(dict(payload or {})))
    keyring = process_keyring() if keyring is None else keyring

    head = _lock_head(session)
    key = _signing_key(head, keyring)
    if key is not None and head.key_id != key.key_id:
        _, head = _append(session, head, key, at=at, actor="system", action=AuditAction.AUDIT_REKEYED,
                          payload={"previous_key_id": head.key_id})
    event, _ = _append(
        session, head, key, at=at, actor=actor, action=action, payload=payload,
        subject_fingerprint=subject_fingerprint or None, resource=resource or None, account=account or None,
    )
    return event


def rekey(session: Session, *, actor: str, keyring: Keyring | None = None) -> AuditEvent | None:
    """Start the current key's segment now (an `audit.rekeyed` event); None if already there."""
    keyring = process_keyring() if keyring is None else keyring
    if keyring.current is None:
        raise AuditError("STEWARD_AUDIT_KEY is not set: there is no key to start a keyed segment with")
    head = _lock_head(session)
    key = _signing_key(head, keyring)
    if head.key_id == key.key_id:
        return None
    event, _ = _append(session, head, key, at=datetime.now(UTC), actor=actor, action=AuditAction.AUDIT_REKEYED,
                       payload={"previous_key_id": head.key_id})
    return event


def _signing_key(head: ChainHead, keyring: Keyring) -> AuditKey | None:
    """The key to append with; AuditError if this process cannot continue the chain."""
    key = keyring.current
    if head.key_id is None or keyring.get(head.key_id) is not None:
        return key
    if key is None:
        raise AuditError(
            f"the audit chain is keyed (key id {head.key_id}) but STEWARD_AUDIT_KEY is not set "
            "in this process: refusing to write an unkeyed event"
        )
    raise AuditError(
        f"the audit chain is keyed with key id {head.key_id}, which this process's STEWARD_AUDIT_KEY "
        f"does not hold (it has {', '.join(keyring.key_ids)}): restart it with the current key"
    )


def _append(session: Session, head: ChainHead, key: AuditKey | None, *, at: datetime, actor: str,
            action: AuditAction, payload: dict[str, Any], subject_fingerprint: str | None = None,
            resource: str | None = None, account: str | None = None) -> tuple[AuditEvent, ChainHead]:
    sequence = head.last_sequence + 1
    key_id = key.key_id if key is not None else None
    document = event_document(
        sequence=sequence, at=at, actor=actor, action=action, subject_fingerprint=subject_fingerprint,
        resource=resource, account=account, payload=payload, key_id=key_id,
    )
    event = AuditEvent(
        sequence=sequence,
        at=at,
        actor=actor,
        action=action.value,
        subject_fingerprint=subject_fingerprint,
        resource=resource,
        account=account,
        payload=payload,
        prev_hash=head.last_hash,
        hash=chain_hash(head.last_hash, document, key),
        key_id=key_id,
    )
    session.add(event)
    session.flush()  # the event row exists before its refs (foreign key) and the head (trigger)
    refs = _refs(actor, subject_fingerprint, resource, account, payload)
    if refs:
        session.execute(insert(_REF), [{"ref": ref, "sequence": sequence} for ref in refs])
    moved = session.execute(
        update(_HEAD)
        .where(_HEAD.c.id == HEAD_ID, _HEAD.c.last_sequence == head.last_sequence)
        .values(last_sequence=sequence, last_hash=event.hash,
                head_mac=head_mac(key, sequence, event.hash) if key is not None else None)
    )
    if moved.rowcount != 1:
        raise AuditError("the audit chain head moved while it was locked")
    return event, ChainHead(sequence, event.hash, key_id)


def _head_query():
    return (
        select(_HEAD.c.last_sequence, _HEAD.c.last_hash, _HEAD.c.head_mac, _EVENT.c.key_id)
        .select_from(_HEAD.outerjoin(_EVENT, _EVENT.c.sequence == _HEAD.c.last_sequence))
        .where(_HEAD.c.id == HEAD_ID)
    )


def _lock_head(session: Session) -> ChainHead:
    if session.get_bind().dialect.name == "sqlite":
        # Take SQLite's write lock before reading the head (see the module docstring).
        session.execute(
            update(_HEAD)
            .where(_HEAD.c.id == HEAD_ID)
            .values(last_sequence=_HEAD.c.last_sequence)
        )
    head = session.execute(
        select(_HEAD.c.last_sequence, _HEAD.c.last_hash).where(_HEAD.c.id == HEAD_ID).with_for_update()
    ).one_or_none()
    if head is None:
        raise AuditError(
            "the audit chain head row is missing: run `steward db upgrade`, "
            "or the audit log was tampered with (run `steward audit verify`)"
        )
    # A statement of its own: on PostgreSQL a join locked in the same statement would read
    # the last event from the snapshot taken *before* the lock wait, missing the event the
    # previous lock holder just committed.
    key_id = session.execute(select(_EVENT.c.key_id).where(_EVENT.c.sequence == head.last_sequence)).scalar()
    return ChainHead(head.last_sequence, head.last_hash, key_id)


# What `events_about` can find an event by, besides actor, fingerprint, resource and account:
# string values under these payload keys, any ARN, and any access key id in a string.
REF_PAYLOAD_KEYS = frozenset(
    {"access_key_id", "fingerprint", "owner", "previous_owner", "requester", "approver",
     "policy_arn", "role_arn", "user_arn", "group_arn"}
)
_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
_MAX_REF_LENGTH = 1024
_MAX_REFS = 64


def _refs(actor, fingerprint, resource, account, payload) -> list[str]:
    found: dict[str, None] = {}  # ordered set

    def add(value: str) -> None:
        if value and len(value) <= _MAX_REF_LENGTH and len(found) < _MAX_REFS:
            found[value] = None

    def scan_text(value: str) -> None:
        if value.startswith("arn:"):
            add(value)
        for key_id in _ACCESS_KEY_ID.findall(value):
            add(key_id)

    def walk(value: Any, key: str | None, depth: int) -> None:
        if depth > 8:
            return
        if isinstance(value, str):
            if key in REF_PAYLOAD_KEYS:
                add(value)
            scan_text(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, k, depth + 1)
        elif isinstance(value, list):
            for v in value:
                walk(v, key, depth + 1)

    for value in (actor, fingerprint, resource, account):
        if value:
            add(value)
    if resource:
        scan_text(resource)
    walk(payload, None, 0)
    return list(found)


# --- reading -----------------------------------------------------------------------------


def chain_head(session: Session) -> ChainHead | None:
    """The current head; publish it elsewhere (digest, `steward audit head`) to anchor the chain."""
    row = session.execute(_head_query()).one_or_none()
    return None if row is None else ChainHead(row.last_sequence, row.last_hash, row.key_id)


def events_about(session: Session, needle: str, limit: int = 20) -> list[AuditEvent]:
    """Newest first: events whose actor, fingerprint, resource ARN or account is `needle`,
    or whose payload mentions it (an ARN, an access key id, or a `REF_PAYLOAD_KEYS` value)."""
    needle = needle.strip()
    if not needle:
        return []
    stmt = (
        select(AuditEvent)
        .join(AuditRef, AuditRef.sequence == AuditEvent.sequence)
        .where(AuditRef.ref == needle)
        .order_by(AuditRef.sequence.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class Segment:
    """A run of events under one key (key_id None: unkeyed)."""

    key_id: str | None
    first: int
    last: int
    checked: bool  # MACs checked (False: the key was not given)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int  # events verified good (all of them when ok)
    first_bad_sequence: int | None = None
    reason: str | None = None
    # Nothing was proved wrong, but the chain cannot be called good: a keyed segment whose key
    # was not given, or a key given that the chain does not use yet.
    unverifiable: bool = False
    segments: tuple[Segment, ...] = ()
    anchors_matched: int = 0  # published heads the chain passes through


def verify(
    source: Session | Engine | Connection,
    *,
    batch_size: int = 5000,
    keyring: Keyring | None = None,
    anchors: Iterable[tuple[int, str]] = (),
) -> VerifyResult:
    """Recompute the whole chain in sequence order, streaming `batch_size` rows at a time.

    Checks every hash or MAC (with `keyring`, default this process's STEWARD_AUDIT_KEY), the
    key changes, the head (and its MAC), that the chain passes through every `anchors`
    (sequence, hash) published earlier, and that audit_ref holds exactly the references
    the events imply. Safe while others append: the head is read after the rows, and rows
    committed with a newer head are read on a further pass.
    """
    walk = _Walk(process_keyring() if keyring is None else keyring, dict(anchors))
    if isinstance(source, Engine):
        with source.connect() as connection:
            return walk.run(connection, batch_size)
    if isinstance(source, Session):
        return walk.run(source.connection(), batch_size)
    return walk.run(source, batch_size)


class _Broken(Exception):
    def __init__(self, sequence: int | None, reason: str, checked: int | None = None):
        super().__init__(reason)
        self.sequence, self.reason, self.checked = sequence, reason, checked


@dataclass
class _Walk:
    keyring: Keyring
    anchors: dict[int, str]
    expected: int = 1
    prev_hash: str = GENESIS_HASH
    segments: list[list] = field(default_factory=list)  # [key_id, first, last, checked]
    matched: list[int] = field(default_factory=list)  # anchors found in the chain
    refs: dict[int, set[str]] = field(default_factory=dict)  # expected, not compared yet
    ref_problems: list[tuple[int, str]] = field(default_factory=list)

    def run(self, connection: Connection, batch_size: int) -> VerifyResult:
        try:
            self._rows(connection, batch_size)
            return self._result()
        except _Broken as broken:
            checked = self.expected - 1 if broken.checked is None else broken.checked
            return VerifyResult(False, checked, broken.sequence, broken.reason, segments=self._segments(),
                                anchors_matched=len(self.matched))

    def _rows(self, connection: Connection, batch_size: int) -> None:
        required = 0  # a head read earlier says events 1..required exist
        while True:
            stmt = (
                select(_EVENT)
                .where(_EVENT.c.sequence >= self.expected)
                .order_by(_EVENT.c.sequence)
                .execution_options(yield_per=batch_size)
            )
            with connection.execute(stmt) as rows:
                for row in rows:
                    self._event(row)
                    if len(self.refs) >= batch_size:
                        self._compare_refs(connection)
            self._compare_refs(connection)
            last = self.expected - 1
            if last < required:
                raise _Broken(self.expected, f"event {self.expected} is missing: the chain head is at {required} "
                                             f"but the log ends at {last} (newest events deleted)")
            head = connection.execute(
                select(_HEAD.c.last_sequence, _HEAD.c.last_hash, _HEAD.c.head_mac).where(_HEAD.c.id == HEAD_ID)
            ).one_or_none()
            if head is None:
                raise _Broken(None, "the chain head row is missing")
            if head.last_sequence < last:
                raise _Broken(head.last_sequence + 1,
                              f"events after the chain head (head at {head.last_sequence}, log ends at {last})")
            if head.last_sequence == last:
                if head.last_hash != self.prev_hash:
                    raise _Broken(last or None, f"the chain head's hash does not match event {last}")
                self._check_head_mac(head)
                self._orphan_refs(connection, last)
                return
            # The head is ahead: either others appended while we read (their events were
            # committed with this head, so the next pass sees them) or the newest were deleted.
            required = head.last_sequence

    def _event(self, row) -> None:
        n = self.expected
        if row.sequence != n:
            raise _Broken(n, f"event {n} is missing (deleted); next is {row.sequence}")
        if row.prev_hash != self.prev_hash:
            raise _Broken(n, f"event {n} does not link to event {n - 1} (events reordered, inserted or deleted)")
        self._key_change(row)
        key = self.keyring.get(row.key_id) if row.key_id else None
        if row.key_id is None or key is not None:
            try:
                computed = chain_hash(self.prev_hash, _document_of(row), key)
            except (TypeError, ValueError) as exc:
                raise _Broken(n, f"event {n} was modified (cannot be hashed: {exc})") from None
            if computed != row.hash:
                what = "hash" if key is None else f"MAC under key id {row.key_id}"
                raise _Broken(n, f"event {n} was modified or forged (its {what} does not match)")
        published = self.anchors.get(n)
        if published is not None:
            if published != row.hash:
                since = f"after event {self.matched[-1]}, " if self.matched else ""
                raise _Broken(n, f"event {n} is not the one published as head #{n}: the chain was rewritten "
                                 f"{since}at or before event {n}", self.matched[-1] if self.matched else 0)
            self.matched.append(n)
        self.refs[n] = set(_refs(row.actor, row.subject_fingerprint, row.resource, row.account, row.payload))
        self.prev_hash = row.hash
        self.segments[-1][2] = n
        self.expected += 1

    def _key_change(self, row) -> None:
        n = self.expected
        previous = self.segments[-1][0] if self.segments else None
        if self.segments and row.key_id == previous:
            return
        if row.key_id is None and self.segments:
            raise _Broken(n, f"event {n} is not keyed, but the chain is keyed since event "
                             f"{self._first_keyed()}: it was written without the key (forged or rewritten)")
        if row.key_id is not None:
            if row.action != AuditAction.AUDIT_REKEYED.value:
                raise _Broken(n, f"event {n} starts key id {row.key_id} without a rekey event (forged)")
            if (row.payload or {}).get("previous_key_id") != previous:
                raise _Broken(n, f"event {n}'s rekey event does not name the previous key id {previous}")
        self.segments.append([row.key_id, n, n, row.key_id is None or self.keyring.get(row.key_id) is not None])

    def _first_keyed(self) -> int:
        return next(first for key_id, first, _, _ in self.segments if key_id is not None)

    def _check_head_mac(self, head) -> None:
        last = self.expected - 1
        key_id = self.segments[-1][0] if self.segments else None
        key = self.keyring.get(key_id)
        if key is None:
            if key_id is None and head.head_mac is not None:
                raise _Broken(last or None, "the chain head carries a MAC but its last event is unkeyed")
            return  # unkeyed; or a key not given (reported as unverifiable)
        if head.head_mac != head_mac(key, last, head.last_hash):
            raise _Broken(last + 1, f"the chain head's MAC does not match event {last}: the head was moved back "
                                    f"(events from {last + 1} on deleted) or forged")

    def _compare_refs(self, connection: Connection) -> None:
        if not self.refs:
            return
        low, high = min(self.refs), max(self.refs)
        stored: dict[int, set[str]] = {}
        for ref, sequence in connection.execute(
            select(_REF.c.ref, _REF.c.sequence).where(_REF.c.sequence.between(low, high))
        ):
            stored.setdefault(sequence, set()).add(ref)
        for sequence in sorted(self.refs):
            expected, found = self.refs[sequence], stored.get(sequence, set())
            for ref in sorted(expected - found):
                self.ref_problems.append((sequence, f"event {sequence}: reference {ref!r} is missing"))
            for ref in sorted(found - expected):
                self.ref_problems.append((sequence, f"event {sequence}: reference {ref!r} is not in the event"))
        self.refs.clear()

    def _orphan_refs(self, connection: Connection, last: int) -> None:
        orphans = connection.execute(
            select(_REF.c.ref, _REF.c.sequence)
            .where(~exists().where(_EVENT.c.sequence == _REF.c.sequence))
            .order_by(_REF.c.sequence).limit(5)
        ).all()
        for ref, sequence in orphans:
            self.ref_problems.append((sequence, f"reference {ref!r} points to event {sequence}, which does not exist"))

    def _segments(self) -> tuple[Segment, ...]:
        return tuple(Segment(*values) for values in self.segments)

    def _result(self) -> VerifyResult:
        last = self.expected - 1
        segments = self._segments()
        beyond = sorted(s for s in self.anchors if s > last)
        if beyond:
            return VerifyResult(False, last, last + 1, f"the head published as #{beyond[0]} is beyond the end of "
                                f"the log (it ends at {last}): events from {last + 1} on were deleted",
                                segments=segments, anchors_matched=len(self.matched))
        if self.ref_problems:
            first = min(sequence for sequence, _ in self.ref_problems)
            shown = "; ".join(text for _, text in self.ref_problems[:5])
            more = len(self.ref_problems) - 5
            return VerifyResult(False, last, first, "the search index (audit_ref) differs from the events: "
                                + shown + (f"; and {more} more" if more > 0 else ""),
                                segments=segments, anchors_matched=len(self.matched))
        unchecked = [s for s in segments if not s.checked]
        if unchecked:
            given = ", ".join(self.keyring.key_ids) or "no key (STEWARD_AUDIT_KEY is not set)"
            spans = ", ".join(f"events {s.first}–{s.last} under key id {s.key_id}" for s in unchecked)
            return VerifyResult(False, unchecked[0].first - 1, unchecked[0].first,
                                f"cannot check {spans}: that key was not given (given: {given}); "
                                "if it is not one of your keys, the chain was rewritten",
                                unverifiable=True, segments=segments, anchors_matched=len(self.matched))
        current = self.keyring.current
        if current is not None and last and segments[-1].key_id != current.key_id:
            return VerifyResult(False, last, None, f"the chain does not end under the current key "
                                f"(id {current.key_id}): if you just set or changed STEWARD_AUDIT_KEY, run "
                                "`steward audit rekey`; otherwise the newest events were rewritten or deleted "
                                "by someone without the key", unverifiable=True, segments=segments,
                                anchors_matched=len(self.matched))
        return VerifyResult(True, last, segments=segments, anchors_matched=len(self.matched))


# --- export ------------------------------------------------------------------------------


class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


EXPORT_COLUMNS = (
    "sequence", "at", "actor", "action", "subject_fingerprint", "resource", "account",
    "payload", "prev_hash", "hash", "key_id", "reads_as",
)
#: Export fields that are not part of the hashed document.
NOT_HASHED = ("prev_hash", "hash", "reads_as")


def export(
    session: Session,
    fmt: ExportFormat | str,
    *,
    stream: TextIO,
    since: datetime | None = None,
    batch_size: int = 5000,
) -> int:
    """Write events (oldest first, `at >= since` if given) as CSV or JSON lines; count them.

    Each event also carries `reads_as`, its name today (`bot.core.audit_names`: events
    written under an older name read as the current one; `action` stays the stored name).
    Both carry `prev_hash` and `hash`, so an export can be re-verified with `chain_hash`
    (`at` is the exact string hashed; CSV gives the payload as canonical JSON text and
    empty cells for nulls). Keyed events also carry `key_id` (re-verifying them needs the key).
    """
    fmt = ExportFormat(fmt)
    if since is not None and since.tzinfo is None:
        raise ValueError("`since` must be an aware datetime")
    rows = _export_rows(session, since, batch_size)
    count = 0
    if fmt is ExportFormat.csv:
        writer = csv.writer(stream)
        writer.writerow(EXPORT_COLUMNS)
        for row in rows:
            row["payload"] = canonical_json(row["payload"]).decode("utf-8")
            writer.writerow(["" if row.get(c) is None else row[c] for c in EXPORT_COLUMNS])
            count += 1
    else:
        for row in rows:
            stream.write(canonical_json(row).decode("utf-8") + "\n")
            count += 1
    return count


def _export_rows(session: Session, since: datetime | None, batch_size: int) -> Iterator[dict]:
    stmt = select(_EVENT).order_by(_EVENT.c.sequence).execution_options(yield_per=batch_size)
    if since is not None:
        stmt = stmt.where(_EVENT.c.at >= since)
    for row in session.connection().execute(stmt):
        document = _document_of(row)
        document["prev_hash"] = row.prev_hash
        document["hash"] = row.hash
        document["key_id"] = row.key_id  # null for unkeyed events (not part of their hash)
        # The name the event has today (old vocabulary mapped; the stored `action` is what is hashed).
        document["reads_as"] = audit_names.reads_as(row.action, row.payload)
        yield document


def rehash_export(documents: Iterable[Mapping[str, Any]],
                  keyring: Keyring = NO_KEYS) -> Iterator[tuple[int, bool]]:
    """For parsed export records: (sequence, hash or MAC recomputes and links to the previous).

    A keyed record whose key is not in `keyring` cannot be checked: it counts as not good.
    """
    prev: str | None = None
    for doc in documents:
        body = {k: v for k, v in doc.items() if k not in NOT_HASHED and not (k == "key_id" and not v)}
        key = keyring.get(body.get("key_id"))
        linked = prev is None or doc["prev_hash"] == prev
        good = linked and ("key_id" not in body or key is not None)
        yield doc["sequence"], good and chain_hash(doc["prev_hash"], body, key) == doc["hash"]
        prev = doc["hash"]
