"""The weekly digest as a value: what the service computes and the Block Kit builder renders.

Pure data (no database, no Slack), so bot/slack/blocks/digest.py can render it without
importing the service that builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from checks.model import SEVERITY_ORDER

SEVERITIES = SEVERITY_ORDER  # most severe first (checks.model, the one home)


@dataclass(frozen=True)
class WeekCounts:
    new: int = 0
    resolved: int = 0
    remediated: int = 0
    reopened: int = 0
    fixed: int = 0  # findings whose time to fix ended in the window
    median_fix_days: float | None = None


@dataclass(frozen=True)
class CheckCount:
    check_id: str
    title: str
    severity: str
    count: int


@dataclass(frozen=True)
class OverdueOwner:
    user: str | None  # Slack user id; None = unassigned (security-channel triage)
    count: int
    oldest_notified_at: datetime


@dataclass(frozen=True)
class FindingRef:
    id: int
    title: str
    severity: str
    resource: str
    account_id: str
    owner: str | None
    first_seen: datetime
    notified_to: str | None = None


@dataclass(frozen=True)
class ExceptionRef:
    title: str
    resource: str
    account_id: str
    decided_by: str | None
    decided_at: datetime | None
    until: datetime | None
    reason: str | None


@dataclass(frozen=True)
class ApprovalRef:
    id: int
    action: str
    resource: str
    account_id: str
    title: str
    severity: str
    requested_by: str
    requested_at: datetime


@dataclass(frozen=True)
class FailedAccount:
    account_id: str
    label: str
    at: datetime | None
    error: str | None


@dataclass(frozen=True)
class AccountPosture:
    account_id: str
    label: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def sort_key(self) -> tuple:
        return (*(-self.counts.get(s, 0) for s in SEVERITIES), self.account_id)


@dataclass(frozen=True)
class HistoryPoint:
    at: datetime
    counts: dict[str, int]


@dataclass(frozen=True)
class Digest:
    generated_at: datetime
    week: str  # ISO week in STEWARD_TIMEZONE, e.g. "2026-W48"
    period_start: datetime
    period_end: datetime
    timezone: str
    open_by_severity: dict[str, int]
    open_by_check: tuple[CheckCount, ...]
    this_week: WeekCounts
    last_week: WeekCounts
    exceptions_granted: int
    exceptions_granted_recent: tuple[ExceptionRef, ...]
    exceptions_expiring: int
    exceptions_expiring_soon: tuple[ExceptionRef, ...]
    escalate_after_days: int
    overdue: int
    overdue_by_owner: tuple[OverdueOwner, ...]
    oldest_open: tuple[FindingRef, ...]
    pending_approvals: int
    pending_approvals_oldest: tuple[ApprovalRef, ...]
    failed_accounts: tuple[FailedAccount, ...]
    posture: tuple[AccountPosture, ...]  # accounts with open findings, worst first
    accounts_known: int
    history: tuple[HistoryPoint, ...]  # oldest first; the last one is `generated_at`
    # bot.db.audit.ChainHead, published in the message (an anchor); the core never imports the database.
    audit_head: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    account_names: dict[str, str] = field(default_factory=dict)  # id -> alias or Organizations name
    # Risky IAM changes seen this week (bot/services/activity.py), by what became of them:
    # confirmed, denied, unanswered, escalated (straight to security), asking (still waiting).
    risky_changes: dict[str, int] = field(default_factory=dict)

    @property
    def open_total(self) -> int:
        return sum(self.open_by_severity.values())

    def summary(self) -> dict[str, Any]:
        """The numbers an audit event or a log line carries."""
        return {
            "week": self.week,
            "open": self.open_total,
            "open_by_severity": dict(self.open_by_severity),
            "new": self.this_week.new,
            "resolved": self.this_week.resolved,
            "remediated": self.this_week.remediated,
            "reopened": self.this_week.reopened,
            "overdue": self.overdue,
            "pending_approvals": self.pending_approvals,
            "failed_accounts": len(self.failed_accounts),
            "risky_changes": dict(self.risky_changes),
        }
