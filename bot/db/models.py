"""All database tables (SQLModel). Migrations in migrations/ are generated from these."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Float, Index, LargeBinary, Unicode, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from bot.db.types import UTCDateTime


def _utc_column(**kwargs: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kwargs)


class Account(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=12)
    label: str = Field(default="", max_length=200)
    role_arn: str | None = Field(default=None, max_length=2048)
    first_seen: datetime = _utc_column()
    last_scan_at: datetime | None = _utc_column(default=None)
    last_scan_status: str | None = Field(default=None, max_length=20)


def is_steward_object(name: str | None, type_: str, parent_names: object) -> bool:
    """For Alembic's autogenerate (`include_name`): procrastinate's own tables (its job
    queue on PostgreSQL, created by migration 0011 from its schema file) are not Steward's
    models."""
    return not (type_ == "table" and (name or "").startswith("procrastinate_"))


SCAN_FINAL = ("succeeded", "failed", "cancelled")  # a scan row in any other state is in flight


class Scan(SQLModel, table=True):
    """One account's scan. Scans started together share a `run_id`; a run has one row per
    account, created `queued` when the run starts (the row is the account's job: it goes
    `running`, then one of `SCAN_FINAL`). Readers of results look at final rows only."""

    __table_args__ = (UniqueConstraint("run_id", "account_id", name="uq_scan_run_account"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, max_length=36)
    account_id: str = Field(index=True, max_length=12)  # "unknown" until the account answered
    started_at: datetime = _utc_column()
    finished_at: datetime | None = _utc_column(default=None)
    status: str = Field(max_length=20)  # queued | running | succeeded | failed | cancelled
    attempts: int = 0  # tries so far (throttling and transient errors are retried)
    api_calls: int = 0
    error: str | None = Field(default=None, max_length=4000)
    actor: str = Field(default="system", max_length=200)
    counts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Finding(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("fingerprint", name="uq_finding_fingerprint"),
        Index("ix_finding_account_state", "account_id", "state"),
        Index("ix_finding_owner_state", "owner", "state"),
        UniqueConstraint("token", name="uq_finding_token"),
        Index("ix_finding_notify_message", "notify_channel", "notify_ts"),
        # Reminders, escalations, expiry and the digest look findings up by these.
        Index("ix_finding_state_notified", "state", "notified_at"),
        Index("ix_finding_decision_until", "decision_until"),
        Index("ix_finding_resolved_at", "resolved_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(max_length=64)
    account_id: str = Field(max_length=12)
    check_id: str = Field(index=True, max_length=64)
    resource: str = Field(max_length=2048)
    sub_key: str = Field(default="", max_length=512)
    severity: str = Field(max_length=10)
    title: str = Field(max_length=200)
    owner: str | None = Field(default=None, max_length=320)
    state: str = Field(max_length=20)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    first_seen: datetime = _utc_column()
    last_seen: datetime = _utc_column()
    resolved_at: datetime | None = _utc_column(default=None)
    state_changed_at: datetime = _utc_column()
    times_reopened: int = 0
    last_scan_id: int | None = Field(default=None)
    # Opaque handle carried by Slack buttons (never the data itself).
    token: str = Field(default_factory=lambda: secrets.token_urlsafe(12), max_length=32)
    # Routing: the DM (or triage message) this finding is listed in, and when.
    notify_batch: str | None = Field(default=None, max_length=36)  # set before sending
    notify_channel: str | None = Field(default=None, max_length=32)
    notify_ts: str | None = Field(default=None, max_length=32)
    notified_to: str | None = Field(default=None, max_length=32)  # Slack user id, or None for triage
    notified_at: datetime | None = _utc_column(default=None)
    reminded_at: datetime | None = _utc_column(default=None)
    escalated_at: datetime | None = _utc_column(default=None)
    # The owner's decision: snooze, exception ("Keep"), rotation promise, acknowledgement.
    decision: str | None = Field(default=None, max_length=20)
    decision_reason: str | None = Field(default=None, max_length=1000)
    decision_until: datetime | None = _utc_column(default=None)
    decided_by: str | None = Field(default=None, max_length=32)
    decided_at: datetime | None = _utc_column(default=None)


# --- Audit log (bot/db/audit.py) ----------------------------------------------------------
# Append-only: migration 0002 adds triggers (PostgreSQL and SQLite) refusing UPDATE,
# DELETE and TRUNCATE on audit_event/audit_ref and any backward move of audit_chain_head;
# 0009 adds INSERT guards (an event only at the head, linked to it, never unkeyed after a
# keyed one; refs only for the event being appended) and covers the head's MAC.
# Alembic does not see triggers: a later migration that rebuilds one of these tables
# (SQLite batch mode copies the table) must recreate them.


class AuditEvent(SQLModel, table=True):
    """One audited event, chained: hash = sha256(prev_hash + canonical JSON of the row), or
    for a keyed event (`key_id` set) HMAC-SHA-256 with that key over the same bytes."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_at", "at"),)

    sequence: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = _utc_column()
    actor: str = Field(max_length=200)
    action: str = Field(max_length=64)
    subject_fingerprint: str | None = Field(default=None, max_length=64)
    resource: str | None = Field(default=None, max_length=2048)
    account: str | None = Field(default=None, max_length=12)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    key_id: str | None = Field(default=None, max_length=16)  # of STEWARD_AUDIT_KEY, never the key


class AuditRef(SQLModel, table=True):
    """Search index for "recent events about X": one row per (thing mentioned, event)."""

    __tablename__ = "audit_ref"
    # `verify` compares each run of events with its refs (by sequence).
    __table_args__ = (Index("ix_audit_ref_sequence", "sequence"),)

    ref: str = Field(primary_key=True, max_length=1024)
    sequence: int = Field(primary_key=True, foreign_key="audit_event.sequence")


class AuditChainHead(SQLModel, table=True):
    """The chain head (row id 1), kept apart so deleting the last events is detected."""

    __tablename__ = "audit_chain_head"

    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    last_sequence: int = 0
    last_hash: str = Field(max_length=64)
    # For a keyed head: HMAC over (sequence, hash), so rewinding the head needs the key.
    head_mac: str | None = Field(default=None, max_length=64)


# --- Who is who ---------------------------------------------------------------------------


class IamIdentity(SQLModel, table=True):
    """An IAM user as the last successful scan saw it (for `/iam whoami`)."""

    __tablename__ = "iam_identity"
    __table_args__ = (
        UniqueConstraint("arn", name="uq_iam_identity_arn"),
        Index("ix_iam_identity_owner", "owner"),
        Index("ix_iam_identity_account", "account_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(max_length=12)
    name: str = Field(max_length=128)
    arn: str = Field(max_length=2048)
    owner: str | None = Field(default=None, max_length=320)  # from tags or the email name
    facts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    last_seen: datetime = _utc_column()


class OwnerOverride(SQLModel, table=True):
    """A security approver's assignment of a principal (or account) to a Slack user.

    Wins over tags. Keyed by the resource ARN that findings and identities carry.
    """

    __tablename__ = "owner_override"

    resource: str = Field(primary_key=True, max_length=2048)
    slack_user_id: str = Field(max_length=32)
    assigned_by: str = Field(max_length=200)
    assigned_at: datetime = _utc_column()
    reason: str | None = Field(default=None, max_length=1000)


# --- Remediation ----------------------------------------------------------------------------


class Remediation(SQLModel, table=True):
    """One cleanup of one finding: planned -> approved -> executing -> succeeded | failed ->
    (undo_requested ->) undoing -> undone; planned -> rejected | cancelled.

    The intent (status `executing`) is committed before the AWS call, and `before` as soon
    as the action has read it, so a crash leaves enough to reconcile on restart. At most
    one remediation per finding is in flight (a partial unique index), and every status
    change is a compare-and-set, so a double click or a second worker cannot run it twice.
    """

    __table_args__ = (
        Index(
            "uq_remediation_in_flight",
            "finding_id",
            unique=True,
            sqlite_where=text("status IN ('planned', 'approved', 'executing', 'undoing')"),
            postgresql_where=text("status IN ('planned', 'approved', 'executing', 'undoing')"),
        ),
        Index("ix_remediation_status", "status"),
        UniqueConstraint("token", name="uq_remediation_token"),
    )

    id: int | None = Field(default=None, primary_key=True)
    token: str = Field(default_factory=lambda: secrets.token_urlsafe(12), max_length=32)
    finding_id: int = Field(foreign_key="finding.id", index=True)
    fingerprint: str = Field(max_length=64)
    action: str = Field(max_length=64)
    account_id: str = Field(max_length=12)
    resource: str = Field(max_length=2048)
    target: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=20)
    dry_run: bool = False
    plan_summary: str = Field(default="", max_length=2000)
    irreversible_warning: str | None = Field(default=None, max_length=1000)
    requested_by: str = Field(max_length=200)
    requested_at: datetime = _utc_column()
    approved_by: str | None = Field(default=None, max_length=200)
    approved_at: datetime | None = _utc_column(default=None)
    started_at: datetime | None = _utc_column(default=None)
    finished_at: datetime | None = _utc_column(default=None)
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    request_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    error: str | None = Field(default=None, max_length=4000)
    undone_by: str | None = Field(default=None, max_length=200)
    undone_at: datetime | None = _utc_column(default=None)
    # The process carrying out the current step (planning, asking for approval, the AWS
    # call, an undo) and until when its lease runs: it renews it while it works. A row in
    # a working state whose holder is gone (lease expired, or its process dead on this
    # host) is settled by whichever process looks first (RemediationService.reconcile).
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_expires_at: datetime | None = _utc_column(default=None)
    # The security channel's approval request (updated on every later change, undo included).
    approval_channel: str | None = Field(default=None, max_length=32)
    approval_ts: str | None = Field(default=None, max_length=32)
    # An undo that gives access back waits for a second person (status `undo_requested`).
    undo_requested_by: str | None = Field(default=None, max_length=200)
    undo_requested_at: datetime | None = _utc_column(default=None)
    undo_decided_by: str | None = Field(default=None, max_length=200)
    undo_approval_ts: str | None = Field(default=None, max_length=32)


# --- Scheduler and digest (bot/run/scheduler.py, bot/services/digest.py) -------------------------


class SchedulerJob(SQLModel, table=True):
    """APScheduler's SQLAlchemyJobStore table, declared here so Alembic owns it.

    Same columns, types and index as the job store's own definition (APScheduler 3.x), so
    its `create(checkfirst=True)` at start-up finds the table and does nothing: the worker
    needs no CREATE privilege and `steward db downgrade` removes the table with the rest.
    Rows are pickled jobs that reference their functions by text (`bot.run.scheduler:run_scan`).
    """

    __tablename__ = "apscheduler_jobs"

    id: str = Field(sa_column=Column(Unicode(191), primary_key=True))
    next_run_time: float | None = Field(default=None, sa_column=Column(Float(25), index=True))
    job_state: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class DigestPost(SQLModel, table=True):
    """One weekly digest per ISO week and channel: the claim, then the posted message.

    The row is claimed (no `ts`) before chat.postMessage, so two processes posting the same
    week cannot both post; it gets the message `ts` in the transaction that records the
    DIGEST_POSTED audit event. A claim left without a `ts` by a crash may be taken over
    after a while (see DigestService.post).
    """

    __tablename__ = "digest_post"

    week: str = Field(primary_key=True, max_length=8)  # ISO week, e.g. 2026-W48
    channel: str = Field(primary_key=True, max_length=32)
    claimed_by: str = Field(max_length=200)
    claimed_at: datetime = _utc_column()
    ts: str | None = Field(default=None, max_length=32)
    posted_at: datetime | None = _utc_column(default=None)
    file_id: str | None = Field(default=None, max_length=32)
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


# --- Inbound Slack requests (bot/slack/replay.py) ----------------------------------------------


class SeenRequest(SQLModel, table=True):
    """An interaction already processed, by its Slack signature or trigger id + action ts.

    Inserted (primary key) before a request is handled, so the same signed request sent
    again inside Slack's five-minute window is recognised and not processed twice. Rows are
    deleted once `expires_at` is past (a replayed request that old fails the timestamp check).
    """

    __tablename__ = "seen_request"

    key: str = Field(primary_key=True, max_length=128)
    seen_at: datetime = _utc_column()
    expires_at: datetime = _utc_column(index=True)


# --- Access reviews (bot/services/reviews.py) --------------------------------------------


class PrincipalInventory(SQLModel, table=True):
    """Every user and role of an account with its entitlements, as the account's latest
    successful scan saw them (replaced by each one, in its transaction). A review campaign
    freezes its population from these rows; `scan_id` names the scan they came from."""

    __tablename__ = "principal_inventory"
    __table_args__ = (
        UniqueConstraint("account_id", "arn", name="uq_principal_inventory_arn"),
        Index("ix_principal_inventory_scan", "scan_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(max_length=12)
    scan_id: int
    kind: str = Field(max_length=8)  # user | role
    name: str = Field(max_length=128)
    arn: str = Field(max_length=2048)
    owner: str | None = Field(default=None, max_length=320)
    entitlements: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created: str | None = Field(default=None, max_length=40)
    last_used: str | None = Field(default=None, max_length=40)


class ReviewCampaign(SQLModel, table=True):
    """One access-review (certification) campaign: its frozen population and its progress."""

    __tablename__ = "review_campaign"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    scope: str = Field(max_length=8)  # users | roles | all
    accounts: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # account id -> the scan row whose inventory was frozen, and that scan's own counts
    scans: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    population: int = 0  # items frozen (== the scans' inventory count for the scope)
    inventory_count: int = 0
    status: str = Field(default="open", max_length=10)  # open | closed
    started_by: str = Field(max_length=200)
    started_at: datetime = _utc_column()
    due_at: datetime = _utc_column()
    closed_at: datetime | None = _utc_column(default=None)
    progress_channel: str | None = Field(default=None, max_length=32)
    progress_ts: str | None = Field(default=None, max_length=32)
    progress_updated_at: datetime | None = _utc_column(default=None)


class ReviewItem(SQLModel, table=True):
    """One principal of a campaign, its entitlements frozen at the start, and the decision."""

    __tablename__ = "review_item"
    __table_args__ = (
        UniqueConstraint("campaign_id", "arn", name="uq_review_item_arn"),
        UniqueConstraint("token", name="uq_review_item_token"),
        Index("ix_review_item_reviewer", "campaign_id", "reviewer"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="review_campaign.id")
    token: str = Field(default_factory=lambda: secrets.token_urlsafe(12), max_length=32)
    account_id: str = Field(max_length=12)
    kind: str = Field(max_length=8)
    name: str = Field(max_length=128)
    arn: str = Field(max_length=2048)
    owner: str | None = Field(default=None, max_length=320)
    snapshot: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Who reviews it: a Slack user id, or "security" (the security channel's approvers).
    reviewer: str | None = Field(default=None, max_length=32)
    routed_by: str | None = Field(default=None, max_length=40)  # owner | manager | security: why
    delegated_from: str | None = Field(default=None, max_length=32)
    delegation_reason: str | None = Field(default=None, max_length=1000)
    details_seen_at: datetime | None = _utc_column(default=None)
    decision: str | None = Field(default=None, max_length=20)  # still_needed | remove | overdue
    decision_reason: str | None = Field(default=None, max_length=1000)
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = _utc_column(default=None)
    decision_seconds: float | None = Field(default=None, sa_type=Float)
    removed: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    remediation_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # entitlement id -> why its removal could not be asked for (planning refused, Slack down)
    removal_errors: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    audit_sequences: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class ReviewMessage(SQLModel, table=True):
    """The one message per reviewer and campaign (a DM, or the security channel's), paged."""

    __tablename__ = "review_message"
    __table_args__ = (
        UniqueConstraint("campaign_id", "reviewer", name="uq_review_message_reviewer"),
        UniqueConstraint("token", name="uq_review_message_token"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="review_campaign.id")
    reviewer: str = Field(max_length=32)
    token: str = Field(default_factory=lambda: secrets.token_urlsafe(12), max_length=32)
    attempted_at: datetime | None = _utc_column(default=None)  # set before posting (resume)
    channel: str | None = Field(default=None, max_length=32)
    ts: str | None = Field(default=None, max_length=32)
    page: int = 0
    sent_at: datetime | None = _utc_column(default=None)
    details_opened_at: datetime | None = _utc_column(default=None)
    reminded_at: datetime | None = _utc_column(default=None)
    escalated_at: datetime | None = _utc_column(default=None)
# --- Activity: CloudTrail events (bot/services/activity.py) ---------------------------------


class ActivitySeen(SQLModel, table=True):
    """Every CloudTrail event the intake has taken, by its eventID: inserted (primary key) in
    the transaction that handles it, so a second delivery (SQS is at-least-once) is
    recognised and changes nothing. Rows are deleted after `STEWARD_ACTIVITY_SEEN_DAYS`
    (longer than the queue keeps a message)."""

    __tablename__ = "activity_seen"

    event_id: str = Field(primary_key=True, max_length=128)
    account_id: str = Field(max_length=12)
    seen_at: datetime = _utc_column(index=True)
    risky: bool = False


class ActivityEvent(SQLModel, table=True):
    """A risky IAM change (checks/activity/rules.py) and what became of it.

    state: asking (DM sent or being sent) -> confirmed | denied | unanswered; or
    escalated (straight to security: root, an unknown actor, a security-route rule). Denied
    and unanswered ones are escalated too (`security_ts`). Every change is a compare-and-set
    on `state` and is audited in the same transaction."""

    __tablename__ = "activity_event"
    __table_args__ = (
        UniqueConstraint("event_id", name="uq_activity_event_event_id"),
        UniqueConstraint("token", name="uq_activity_event_token"),
        Index("ix_activity_event_state_deadline", "state", "answer_due"),
        Index("ix_activity_event_received_at", "received_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=128)
    token: str = Field(default_factory=lambda: secrets.token_urlsafe(12), max_length=32)
    account_id: str = Field(max_length=12)
    rule_id: str = Field(max_length=64)
    severity: str = Field(max_length=10)
    summary: str = Field(max_length=1000)
    target: str = Field(max_length=2048)
    facts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    containment: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    actor_arn: str = Field(default="", max_length=2048)
    actor_kind: str = Field(max_length=20)
    person: str | None = Field(default=None, max_length=32)  # the Slack user asked
    state: str = Field(max_length=20)
    event_time: datetime = _utc_column()
    received_at: datetime = _utc_column()
    answer_due: datetime | None = _utc_column(default=None)
    answered_by: str | None = Field(default=None, max_length=32)
    answered_at: datetime | None = _utc_column(default=None)
    reason: str | None = Field(default=None, max_length=1000)
    dm_channel: str | None = Field(default=None, max_length=32)
    dm_ts: str | None = Field(default=None, max_length=32)
    escalated_at: datetime | None = _utc_column(default=None)
    security_channel: str | None = Field(default=None, max_length=32)
    security_ts: str | None = Field(default=None, max_length=32)
    acknowledged_by: str | None = Field(default=None, max_length=32)
    # A process claims a row before it sends its DM or security message (crash: re-sent
    # by the sweep once the claim is older than a minute).
    claimed_at: datetime | None = _utc_column(default=None)


# --- Least privilege from real usage and guided key rotation (issue #17) -------------------


class PrincipalUsage(SQLModel, table=True):
    """The last-accessed data (Access Advisor) of one user or role, as `checks.usage`
    collected it: a scan reads these rows instead of asking AWS (`steward usage collect`
    and the worker's daily job refresh them). `services` is `PrincipalUsage.to_json()`."""

    __tablename__ = "principal_usage"
    __table_args__ = (UniqueConstraint("account_id", "principal_arn", name="uq_principal_usage"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(max_length=12, index=True)
    principal_arn: str = Field(max_length=2048)
    collected_at: datetime = _utc_column()
    job_completed_at: datetime | None = _utc_column(default=None)
    services: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class UsageConsent(SQLModel, table=True):
    """One owner's yes to a right-sizing proposal of a policy several owners' principals
    share: the proposal is applied only once every affected finding has one."""

    __tablename__ = "usage_consent"
    __table_args__ = (
        UniqueConstraint("policy_key", "proposal_digest", "fingerprint", name="uq_usage_consent"),
    )

    id: int | None = Field(default=None, primary_key=True)
    policy_key: str = Field(max_length=2200)
    proposal_digest: str = Field(max_length=64)
    fingerprint: str = Field(max_length=64)
    actor: str = Field(max_length=200)
    consented_at: datetime = _utc_column()


class KeyRotation(SQLModel, table=True):
    """A "Rotate it for me": the new key, where its secret waits for the owner, and the
    old key's retirement. Never holds a secret (key ids and the secret's ARN only)."""

    __tablename__ = "key_rotation"

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(max_length=12, index=True)
    user_name: str = Field(max_length=64)
    old_key_id: str = Field(max_length=128)
    new_key_id: str | None = Field(default=None, max_length=128)
    secret_arn: str | None = Field(default=None, max_length=2048)
    reader_arn: str = Field(max_length=2048)
    status: str = Field(max_length=24, index=True)
    requested_by: str = Field(max_length=200)
    owner: str | None = Field(default=None, max_length=200)
    created_at: datetime = _utc_column()
    updated_at: datetime = _utc_column()
    new_key_first_used_at: datetime | None = _utc_column(default=None)
    old_key_last_used_at: datetime | None = _utc_column(default=None)
    offered_at: datetime | None = _utc_column(default=None)
    deactivated_at: datetime | None = _utc_column(default=None)
    deactivated_by: str | None = Field(default=None, max_length=200)
    delete_after: datetime | None = _utc_column(default=None)
    secret_delete_at: datetime | None = _utc_column(default=None)
    error: str | None = Field(default=None, max_length=4000)
