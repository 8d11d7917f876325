"""The append-only, hash-chained audit log (DESIGN.md §4 "Audit").

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

Tamper evidence, and its limits
-------------------------------
`verify()` recomputes every hash in sequence order and compares the head: it detects an
edited row (its hash), a deleted row (a gap, or the head ahead of the last row), reordered
or inserted rows (a `prev_hash` that does not link) and an edited head. Triggers refuse
UPDATE/DELETE/TRUNCATE, but someone who can drop them can also rewrite every hash from the
edited row onwards and the head; only a copy of the head kept elsewhere (see `chain_head()`)
catches that.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, TextIO
from uuid import UUID

from sqlalchemy import Connection, Engine, insert, select, update
from sqlmodel import Session

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
    # Owner decisions in a DM
    DECISION_REMEDIATE = "decision.remediate"
    DECISION_KEEP = "decision.keep"
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
    # Reports
    DIGEST_POSTED = "digest.posted"


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
) -> dict[str, Any]:
    """The hashed part of an event (everything but `prev_hash` and `hash`)."""
    return {
        "sequence": sequence,
        "at": format_time(at),
        "actor": actor,
        "action": str(action),
        "subject_fingerprint": subject_fingerprint,
        "resource": resource,
        "account": account,
        "payload": payload,
    }


def chain_hash(prev_hash: str, document: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("utf-8") + canonical_json(document)).hexdigest()


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
    )


# --- writing -----------------------------------------------------------------------------


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
) -> AuditEvent:
    """Append one event in the caller's transaction. Never commits.

    `actor` is a Slack user id, `system`, or `cli:<user>`. The payload may hold datetimes,
    dates, UUIDs and sets; it is stored in its canonical JSON form (what `.payload` of the
    returned event shows). Raises ValueError for an unknown action, an empty actor, a naive
    `at` or NaN; TypeError for a payload value JSON cannot hold; AuditError if the chain head
    is missing (schema not migrated, or the log was tampered with). Empty strings for the
    subject fields are stored as null.
    """
    action = AuditAction(action)
    if not actor:
        raise ValueError("an audit event needs an actor")
    at = at or datetime.now(UTC)
    if at.tzinfo is None:
        raise ValueError("naive datetime given as an audit event time")
    at = at.astimezone(UTC)
    payload = json.loads(canonical_json(dict(payload or {})))
    subject_fingerprint = subject_fingerprint or None
    resource = resource or None
    account = account or None

    prev_sequence, prev_hash = _lock_head(session)
    sequence = prev_sequence + 1
    document = event_document(
        sequence=sequence,
        at=at,
        actor=actor,
        action=action,
        subject_fingerprint=subject_fingerprint,
        resource=resource,
        account=account,
        payload=payload,
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
        prev_hash=prev_hash,
        hash=chain_hash(prev_hash, document),
    )
    session.add(event)
    session.flush()  # the event row exists before its refs (foreign key) and the head (trigger)
    refs = _refs(actor, subject_fingerprint, resource, account, payload)
    if refs:
        session.execute(insert(_REF), [{"ref": ref, "sequence": sequence} for ref in refs])
    moved = session.execute(
        update(_HEAD)
        .where(_HEAD.c.id == HEAD_ID, _HEAD.c.last_sequence == prev_sequence)
        .values(last_sequence=sequence, last_hash=event.hash)
    )
    if moved.rowcount != 1:
        raise AuditError("the audit chain head moved while it was locked")
    return event


def _lock_head(session: Session) -> tuple[int, str]:
    if session.get_bind().dialect.name == "sqlite":
        # Take SQLite's write lock before reading the head (see the module docstring).
        session.execute(
            update(_HEAD)
            .where(_HEAD.c.id == HEAD_ID)
            .values(last_sequence=_HEAD.c.last_sequence)
        )
    head = session.execute(
        select(_HEAD.c.last_sequence, _HEAD.c.last_hash)
        .where(_HEAD.c.id == HEAD_ID)
        .with_for_update()
    ).one_or_none()
    if head is None:
        raise AuditError(
            "the audit chain head row is missing: run `steward db upgrade`, "
            "or the audit log was tampered with (run `steward audit verify`)"
        )
    return head.last_sequence, head.last_hash


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


@dataclass(frozen=True)
class ChainHead:
    last_sequence: int
    last_hash: str


def chain_head(session: Session) -> ChainHead | None:
    """The current head; publish it elsewhere (digest, ticket) to anchor the chain."""
    row = session.execute(
        select(_HEAD.c.last_sequence, _HEAD.c.last_hash).where(_HEAD.c.id == HEAD_ID)
    ).one_or_none()
    return None if row is None else ChainHead(row.last_sequence, row.last_hash)


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
class VerifyResult:
    ok: bool
    checked: int  # events verified good (all of them when ok)
    first_bad_sequence: int | None = None
    reason: str | None = None


def verify(source: Session | Engine | Connection, *, batch_size: int = 5000) -> VerifyResult:
    """Recompute the whole chain in sequence order, streaming `batch_size` rows at a time.

    Safe while others append: the head is read after the rows, and rows committed with a
    newer head are read on a further pass.
    """
    if isinstance(source, Engine):
        with source.connect() as connection:
            return _verify(connection, batch_size)
    if isinstance(source, Session):
        return _verify(source.connection(), batch_size)
    return _verify(source, batch_size)


def _verify(connection: Connection, batch_size: int) -> VerifyResult:
    expected, prev_hash = 1, GENESIS_HASH
    required = 0  # a head read earlier says events 1..required exist

    def bad(sequence: int | None, reason: str) -> VerifyResult:
        return VerifyResult(False, expected - 1, sequence, reason)

    while True:
        stmt = (
            select(_EVENT)
            .where(_EVENT.c.sequence >= expected)
            .order_by(_EVENT.c.sequence)
            .execution_options(yield_per=batch_size)
        )
        with connection.execute(stmt) as rows:
            for row in rows:
                if row.sequence != expected:
                    return bad(expected, f"event {expected} is missing (deleted); next is {row.sequence}")
                if row.prev_hash != prev_hash:
                    return bad(
                        expected,
                        f"event {expected} does not link to event {expected - 1} "
                        "(events reordered, inserted or deleted)",
                    )
                try:
                    computed = chain_hash(prev_hash, _document_of(row))
                except (TypeError, ValueError) as exc:
                    return bad(expected, f"event {expected} was modified (cannot be hashed: {exc})")
                if computed != row.hash:
                    return bad(expected, f"event {expected} was modified (its hash does not match)")
                prev_hash = row.hash
                expected += 1

        last = expected - 1
        if last < required:
            return bad(
                expected,
                f"event {expected} is missing: the chain head is at {required} "
                f"but the log ends at {last} (newest events deleted)",
            )
        head = connection.execute(
            select(_HEAD.c.last_sequence, _HEAD.c.last_hash).where(_HEAD.c.id == HEAD_ID)
        ).one_or_none()
        if head is None:
            return bad(None, "the chain head row is missing")
        if head.last_sequence < last:
            return bad(
                head.last_sequence + 1,
                f"events after the chain head (head at {head.last_sequence}, log ends at {last})",
            )
        if head.last_sequence == last:
            if head.last_hash != prev_hash:
                return bad(last or None, f"the chain head's hash does not match event {last}")
            return VerifyResult(True, last)
        # The head is ahead: either others appended while we read (their events were
        # committed with this head, so the next pass sees them) or the newest were deleted.
        required = head.last_sequence


# --- export ------------------------------------------------------------------------------


class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


EXPORT_COLUMNS = (
    "sequence", "at", "actor", "action", "subject_fingerprint", "resource", "account",
    "payload", "prev_hash", "hash",
)


def export(
    session: Session,
    fmt: ExportFormat | str,
    *,
    stream: TextIO,
    since: datetime | None = None,
    batch_size: int = 5000,
) -> int:
    """Write events (oldest first, `at >= since` if given) as CSV or JSON lines; count them.

    Both carry `prev_hash` and `hash`, so an export can be re-verified with `chain_hash`
    (`at` is the exact string hashed; CSV gives the payload as canonical JSON text and
    empty cells for nulls).
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
            writer.writerow(["" if row[c] is None else row[c] for c in EXPORT_COLUMNS])
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
        yield document


def rehash_export(documents: Iterable[Mapping[str, Any]]) -> Iterator[tuple[int, bool]]:
    """For parsed JSON-lines export records: (sequence, hash recomputes and links to the previous)."""
    prev: str | None = None
    for doc in documents:
        body = {k: v for k, v in doc.items() if k not in ("prev_hash", "hash")}
        linked = prev is None or doc["prev_hash"] == prev
        yield doc["sequence"], linked and chain_hash(doc["prev_hash"], body) == doc["hash"]
        prev = doc["hash"]
