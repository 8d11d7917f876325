"""The weekly digest: posture and progress for the security channel, aggregated in SQL.

`DigestService.build(now)` returns a `Digest` (a plain value; bot/slack/blocks/digest.py renders
it for Slack and for the terminal). Every number is a COUNT/SUM/GROUP BY in the database;
Python only pivots small grouped results (at most one row per account and severity), so a
build over 100,000 findings stays well under a second (bench/digest.py).

Definitions (a window is [start, end), "this week" is the 7 days before `now`):

* open: findings in `bot.core.lifecycle.OPEN_STATES` (snoozed and excepted ones are not open).
* new / resolved / reopened: summed from the `counts` of successful scans finished in the
  window (each scan records exactly what it changed), so a finding resolved and reopened in
  the same week counts in both.
* remediated: findings with a remediation that succeeded in the window.
* time to fix: first_seen -> the first successful remediation, else resolved_at; the median
  over the findings fixed in the window.
* exceptions: `decision == "exception"` granted (`decided_at`) in the window; expiring:
  `decision_until` within the next 7 days.
* overdue: notified more than STEWARD_ESCALATE_AFTER_DAYS ago, still `notified`, no decision.
* failed accounts: accounts whose latest scan failed.
* history (the chart): for each of the last 8 weeks, findings present then, derived from
  first_seen/resolved_at (`first_seen <= t < resolved_at`). Past states are not kept, so
  a finding excepted or snoozed back then still counts, and a reopened finding counts from
  its first sighting.

Posting (`post`) is idempotent per ISO week (in STEWARD_TIMEZONE) and channel: a
`digest_post` row is claimed before chat.postMessage, completed with the message ts in the
transaction that records DIGEST_POSTED, and the chart goes into the message's thread with
files_upload_v2. The message carries the audit chain head as of the build (an anchor for
`steward audit verify --anchors-from-slack`, bot/db/audit_anchors.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from slack_sdk.errors import SlackClientError
from sqlalchemy import Engine, and_, case, delete, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from bot.config import Settings, SettingsError
from bot.core.digest_model import (
    SEVERITIES,
    AccountPosture,
    ApprovalRef,
    CheckCount,
    Digest,
    ExceptionRef,
    FailedAccount,
    FindingRef,
    HistoryPoint,
    OverdueOwner,
    WeekCounts,
)
from bot.core.lifecycle import OPEN_STATES, State
from bot.db import audit, queries
from bot.db.engine import session_scope
from bot.db.models import Account, ActivityEvent, DigestPost, Finding, Remediation, Scan
from bot.db.types import UTCDateTime
from bot.services.common import Clock, utcnow
from checks.model import severity_rank

log = logging.getLogger(__name__)

WEEK = timedelta(days=7)
HISTORY_WEEKS = 8
LIST_LIMIT = 10  # rows fetched for each "top N" list
OVERDUE_OWNERS_LIMIT = 15
CLAIM_STALE_AFTER = timedelta(minutes=15)  # a claim without a ts this old was a crash

_OPEN = sorted(str(s) for s in OPEN_STATES)


@dataclass(frozen=True)
class DigestPostResult:
    week: str
    channel: str
    posted: bool  # False: this week's digest was already posted (or is being posted)
    ts: str | None
    file_id: str | None = None
    note: str = ""


def iso_week(moment: datetime, timezone: str) -> str:
    year, week, _ = moment.astimezone(ZoneInfo(timezone)).isocalendar()
    return f"{year}-W{week:02d}"


# --- building -------------------------------------------------------------------------------


class DigestService:
    def __init__(self, settings: Settings, engine: Engine, clock: Clock = utcnow, *, directory=None):
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.directory = directory  # bot.slack.owners.OwnerDirectory: owners shown as @mentions

    def build(self, now: datetime | None = None, *, directory=None) -> Digest:
        """Aggregate everything the digest shows, as of `now` (default: the clock); with a
        directory (or the service's), owners who are workspace members are @mentioned."""
        digest = self._build(now or self.clock())
        directory = directory or self.directory
        return self._with_members(digest, directory) if directory is not None else digest

    def _with_members(self, digest: Digest, directory) -> Digest:
        """The oldest open problems with each owner as a Slack user where one is known: an
        owner assigned by security triage, else the owner value (an email) looked up in the
        owner directory. A failed lookup leaves the value as it is."""
        refs = [f for f in digest.oldest_open if not f.notified_to]
        if not refs:
            return digest
        with session_scope(self.engine) as session:
            assigned = queries.overrides_for(session=session, resources=[f.resource for f in refs])
        shown = []
        for f in digest.oldest_open:
            user = None if f.notified_to else assigned.get(f.resource)
            if user is None and not f.notified_to and f.owner:
                try:
                    user = directory.user_for(f.owner)
                except Exception as exc:  # Slack slow or down: the digest goes out with the value
                    log.warning("digest: could not look up an owner in Slack: %s", type(exc).__name__)
            shown.append(replace(f, owner=user) if user else f)
        return replace(digest, oldest_open=tuple(shown))

    def _build(self, now: datetime) -> Digest:
        start, prev = now - WEEK, now - 2 * WEEK
        escalate_days = int(getattr(self.settings, "escalate_after_days", 7))
        with session_scope(self.engine) as session:
            q = _Queries(session, now)
            by_severity, by_check, posture = q.open_breakdown()
            history, granted_count, expiring_count = q.history_and_exceptions(now, start)
            this_fix, last_fix = q.median_fix(prev, start, now)
            overdue, overdue_by_owner = q.overdue(now - timedelta(days=escalate_days))
            approvals, oldest_approvals = q.pending_approvals()
            head = audit.chain_head(session)
            return Digest(
                generated_at=now,
                week=iso_week(now, self.settings.timezone),
                period_start=start,
                period_end=now,
                timezone=self.settings.timezone,
                open_by_severity=by_severity,
                open_by_check=by_check,
                this_week=q.week_counts(start, now, this_fix),
                last_week=q.week_counts(prev, start, last_fix),
                exceptions_granted=granted_count,
                exceptions_granted_recent=q.exceptions_granted(start, now) if granted_count else (),
                exceptions_expiring=expiring_count,
                exceptions_expiring_soon=q.exceptions_expiring(now, now + WEEK) if expiring_count else (),
                escalate_after_days=escalate_days,
                overdue=overdue,
                overdue_by_owner=overdue_by_owner,
                oldest_open=q.oldest_open(),
                pending_approvals=approvals,
                pending_approvals_oldest=oldest_approvals,
                failed_accounts=q.failed_accounts(),
                posture=posture,
                accounts_known=q.accounts_known(),
                history=history,
                audit_head=head if head and head.last_sequence else None,
                account_names=queries.account_names(session=session),
                risky_changes=q.risky_changes(start, now),
            )

    # --- posting ----------------------------------------------------------------------------

    def post(self, client, *, now: datetime | None = None, actor: str = "system",
             channel: str | None = None) -> DigestPostResult:
        """Post this week's digest (and its chart) unless it is already in `channel`."""
        from bot.slack.blocks.digest import digest_blocks, digest_fallback
        from bot.slack.charts import history_chart_png

        channel = channel or self.settings.security_channel
        if not channel:
            raise SettingsError("missing setting: STEWARD_SECURITY_CHANNEL (where the digest goes)")
        now = now or self.clock()
        week = iso_week(now, self.settings.timezone)
        existing = self._claim(week, channel, actor, now)
        if existing is not None:
            return existing
        try:
            if self.directory is None:
                from bot.slack.owners import OwnerDirectory

                digest = self.build(now, directory=OwnerDirectory(client))
            else:
                digest = self.build(now)
            answer = client.chat_postMessage(
                channel=channel, text=digest_fallback(digest),
                blocks=digest_blocks(digest), unfurl_links=False, unfurl_media=False,
            )
        except BaseException:
            self._unclaim(week, channel, actor)
            raise
        ts = answer["ts"]
        posted_channel = answer.get("channel") or channel
        with session_scope(self.engine) as session:
            session.execute(
                update(DigestPost)
                .where(DigestPost.week == week, DigestPost.channel == channel)
                .values(ts=ts, posted_at=now, summary=digest.summary())
            )
            head = digest.audit_head
            published = {"audit_head": {"sequence": head.last_sequence, "hash": head.last_hash}} if head else {}
            audit.record(session, actor=actor, action=audit.AuditAction.DIGEST_POSTED, at=now,
                         payload={**digest.summary(), "channel": posted_channel, "ts": ts, **published})
        file_id = self._upload_chart(client, digest, posted_channel, ts, history_chart_png)
        if file_id:
            with session_scope(self.engine) as session:
                session.execute(
                    update(DigestPost)
                    .where(DigestPost.week == week, DigestPost.channel == channel)
                    .values(file_id=file_id)
                )
        return DigestPostResult(week, channel, True, ts, file_id)

    def _claim(self, week: str, channel: str, actor: str, now: datetime) -> DigestPostResult | None:
        """Claim (week, channel); None if claimed now, else the result to return instead."""
        try:
            with session_scope(self.engine) as session:
                session.add(DigestPost(week=week, channel=channel, claimed_by=actor, claimed_at=now))
            return None
        except IntegrityError:
            pass
        with session_scope(self.engine) as session:
            row = session.get(DigestPost, (week, channel))
            if row is None:  # released between our insert and this read: try once more
                session.add(DigestPost(week=week, channel=channel, claimed_by=actor, claimed_at=now))
                return None
            if row.ts:
                return DigestPostResult(week, channel, False, row.ts, row.file_id,
                                        f"already posted at {row.posted_at:%Y-%m-%d %H:%M} UTC")
            if row.claimed_at > now - CLAIM_STALE_AFTER:
                return DigestPostResult(week, channel, False, None, None,
                                        f"being posted by {row.claimed_by} since {row.claimed_at:%H:%M} UTC")
            # A crash between the claim and the post: take the claim over (compare-and-set).
            taken = session.execute(
                update(DigestPost)
                .where(DigestPost.week == week, DigestPost.channel == channel,
                       DigestPost.ts.is_(None), DigestPost.claimed_at == row.claimed_at)
                .values(claimed_by=actor, claimed_at=now)
            ).rowcount
            if taken != 1:
                return DigestPostResult(week, channel, False, None, None, "claimed by another process")
            log.warning("taking over the %s digest claim left by %s", week, row.claimed_by)
            return None

    def _unclaim(self, week: str, channel: str, actor: str) -> None:
        with session_scope(self.engine) as session:
            session.execute(
                delete(DigestPost).where(DigestPost.week == week, DigestPost.channel == channel,
                                         DigestPost.ts.is_(None), DigestPost.claimed_by == actor)
            )

    @staticmethod
    def _upload_chart(client, digest: Digest, channel: str, ts: str, render) -> str | None:
        try:
            png = render(digest.history)
            answer = client.files_upload_v2(
                channel=channel, thread_ts=ts, file=png, filename=f"iam-digest-{digest.week}.png",
                title=f"Unresolved findings by severity, last {len(digest.history)} weeks",
            )
        except (SlackClientError, OSError, ValueError) as exc:
            # The digest itself is posted and recorded; a missing chart is worth a warning only.
            log.warning("digest %s: chart upload failed: %s", digest.week, exc)
            return None
        files = answer.get("files") or [answer.get("file") or {}]
        return (files[0] or {}).get("id")


# --- the queries ----------------------------------------------------------------------------


def _seconds(later, earlier, dialect: str):
    """SQL for `later - earlier` in seconds, on SQLite and PostgreSQL."""
    if dialect == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return func.extract("epoch", later - earlier)


def _sum_if(condition, value=1):
    return func.coalesce(func.sum(case((condition, value), else_=0)), 0)


class _Queries:
    """One method per aggregate. The finding table is read by about six statements, each a
    single pass: the open breakdown (severity x check x account in one GROUP BY), history and
    exception counts together, the fix-time medians (window functions), overdue by owner,
    the oldest open, and the exception lists only when there are some."""

    def __init__(self, session, now: datetime):
        self.session = session
        self.now = now
        self.dialect = session.get_bind().dialect.name

    def _rows(self, stmt):
        return self.session.execute(stmt).all()

    def risky_changes(self, start: datetime, end: datetime) -> dict[str, int]:
        """Risky IAM changes received in the window, by state (one GROUP BY)."""
        rows = self._rows(select(ActivityEvent.state, func.count())
                          .where(ActivityEvent.received_at >= start, ActivityEvent.received_at <= end)
                          .group_by(ActivityEvent.state))
        return {state: int(n) for state, n in rows}

    # open findings

    def open_breakdown(self) -> tuple[dict[str, int], tuple[CheckCount, ...], tuple[AccountPosture, ...]]:
        """Open counts by severity, by check and by account, from one GROUP BY."""
        from checks.catalog import BY_ID

        rows = self._rows(
            select(Finding.account_id, Finding.check_id, Finding.severity, func.count())
            .where(Finding.state.in_(_OPEN))
            .group_by(Finding.account_id, Finding.check_id, Finding.severity)
        )
        severities: dict[str, int] = dict.fromkeys(SEVERITIES, 0)
        checks: dict[tuple[str, str], int] = {}
        accounts: dict[str, dict[str, int]] = {}
        for account_id, check, severity, n in rows:
            n = int(n)
            severities[severity] = severities.get(severity, 0) + n
            checks[(check, severity)] = checks.get((check, severity), 0) + n
            per_account = accounts.setdefault(account_id, {})
            per_account[severity] = per_account.get(severity, 0) + n
        by_check = sorted(
            (CheckCount(check, BY_ID[check].title if check in BY_ID else check, severity, n)
             for (check, severity), n in checks.items()),
            key=lambda c: (severity_rank(c.severity), -c.count, c.check_id),
        )
        labels = dict(self._rows(select(Account.id, Account.label))) if accounts else {}
        posture = sorted(
            (AccountPosture(a, labels.get(a) or a, counts) for a, counts in accounts.items()),
            key=AccountPosture.sort_key,
        )
        return severities, tuple(by_check), tuple(posture)

    def oldest_open(self) -> tuple[FindingRef, ...]:
        rows = self.session.execute(
            select(Finding.id, Finding.title, Finding.severity, Finding.resource, Finding.account_id,
                   Finding.owner, Finding.first_seen, Finding.notified_to)
            .where(Finding.state.in_(_OPEN))
            .order_by(Finding.first_seen, _severity_rank_sql(), Finding.id)
            .limit(LIST_LIMIT)
        ).all()
        return tuple(FindingRef(*row) for row in rows)

    def accounts_known(self) -> int:
        return int(self.session.execute(select(func.count()).select_from(Account)).scalar_one())

    # the week and the one before

    def week_counts(self, start: datetime, end: datetime, fix: tuple[int, float | None]) -> WeekCounts:
        in_window = and_(Scan.finished_at >= start, Scan.finished_at < end)
        new, resolved, reopened = self.session.execute(
            select(
                func.sum(Scan.counts["new"].as_integer()),
                func.sum(Scan.counts["resolved"].as_integer()),
                func.sum(Scan.counts["reopened"].as_integer()),
            ).where(Scan.status == "succeeded", in_window)
        ).one()
        remediated = self.session.execute(
            select(func.count(func.distinct(Remediation.finding_id)))
            .where(Remediation.status == "succeeded", Remediation.finished_at >= start,
                   Remediation.finished_at < end)
        ).scalar_one()
        return WeekCounts(int(new or 0), int(resolved or 0), int(remediated or 0), int(reopened or 0), *fix)

    def median_fix(self, prev: datetime, start: datetime, end: datetime):
        """(count, median days) of fixes in [prev, start) and [start, end), in one statement.

        Fixed at = the first successful remediation, else resolved_at. The median comes from
        row_number() and count() over each window (SQLite has no percentile function).
        """
        first_fix = (
            select(Remediation.finding_id.label("finding_id"), func.min(Remediation.finished_at).label("done"))
            .where(Remediation.status == "succeeded")
            .group_by(Remediation.finding_id)
            .subquery()
        )
        fixed_at = func.coalesce(first_fix.c.done, Finding.resolved_at, type_=UTCDateTime)
        days = _seconds(fixed_at, Finding.first_seen, self.dialect) / 86400.0
        week = case((fixed_at >= start, 1), else_=0).label("week")
        fixes = (
            select(week, days.label("days"))
            .select_from(Finding)
            .outerjoin(first_fix, first_fix.c.finding_id == Finding.id)
            .where(or_(Finding.resolved_at >= prev, first_fix.c.done >= prev), fixed_at >= prev, fixed_at < end)
            .subquery()
        )
        ranked = select(
            fixes.c.week,
            fixes.c.days,
            func.row_number().over(partition_by=fixes.c.week, order_by=fixes.c.days).label("rn"),
            func.count().over(partition_by=fixes.c.week).label("n"),
        ).subquery()
        rows = self._rows(
            select(ranked.c.week, func.max(ranked.c.n), func.avg(ranked.c.days))
            .where(or_(ranked.c.rn == (ranked.c.n + 1) // 2, ranked.c.rn == (ranked.c.n + 2) // 2))
            .group_by(ranked.c.week)
        )
        found = {int(w): (int(n), max(0.0, float(median))) for w, n, median in rows}
        return found.get(1, (0, None)), found.get(0, (0, None))

    # decisions, people, approvals

    def exceptions_granted(self, start: datetime, end: datetime) -> tuple[ExceptionRef, ...]:
        rows = self.session.execute(
            _exception_columns()
            .where(Finding.decision == "exception", Finding.decided_at >= start, Finding.decided_at < end)
            .order_by(Finding.decided_at.desc(), Finding.id).limit(LIST_LIMIT)
        ).all()
        return tuple(ExceptionRef(*row) for row in rows)

    def exceptions_expiring(self, start: datetime, end: datetime) -> tuple[ExceptionRef, ...]:
        rows = self.session.execute(
            _exception_columns()
            .where(Finding.decision == "exception", Finding.decision_until >= start, Finding.decision_until < end)
            .order_by(Finding.decision_until, Finding.id).limit(LIST_LIMIT)
        ).all()
        return tuple(ExceptionRef(*row) for row in rows)

    def overdue(self, notified_before: datetime) -> tuple[int, tuple[OverdueOwner, ...]]:
        rows = self._rows(
            select(Finding.notified_to, func.count(), func.min(Finding.notified_at))
            .where(Finding.state == State.NOTIFIED.value, Finding.decision.is_(None),
                   Finding.notified_at <= notified_before)
            .group_by(Finding.notified_to)
            .order_by(func.count().desc(), Finding.notified_to)
        )
        total = sum(int(n) for _, n, _ in rows)
        return total, tuple(OverdueOwner(user, int(n), oldest) for user, n, oldest in rows[:OVERDUE_OWNERS_LIMIT])

    def pending_approvals(self) -> tuple[int, tuple[ApprovalRef, ...]]:
        waiting = Remediation.status.in_(("planned", "undo_requested"))  # undo requests wait too
        total = self.session.execute(select(func.count()).select_from(Remediation).where(waiting)).scalar_one()
        if not total:
            return 0, ()
        rows = self.session.execute(
            select(Remediation.id, Remediation.action, Remediation.resource, Remediation.account_id,
                   Finding.title, Finding.severity, Remediation.requested_by, Remediation.requested_at)
            .join(Finding, Finding.id == Remediation.finding_id)
            .where(waiting)
            .order_by(Remediation.requested_at, Remediation.id)
            .limit(LIST_LIMIT)
        ).all()
        return int(total), tuple(ApprovalRef(*row) for row in rows)

    def failed_accounts(self) -> tuple[FailedAccount, ...]:
        # The latest scan that ended per account: rows of a run in progress (queued,
        # running) or cancelled say nothing about the account yet.
        latest = (select(func.max(Scan.id).label("id")).where(Scan.status.in_(("succeeded", "failed")))
                  .group_by(Scan.account_id).subquery())
        rows = self._rows(
            select(Scan.account_id, Account.label, Scan.finished_at, Scan.error)
            .join(latest, latest.c.id == Scan.id)
            .outerjoin(Account, Account.id == Scan.account_id)
            .where(Scan.status == "failed")
            .order_by(Scan.account_id)
        )
        return tuple(FailedAccount(a, label or a, at, error) for a, label, at, error in rows)

    # history for the chart, and the exception counts (same pass over the table)

    def history_and_exceptions(self, now: datetime, start: datetime):
        points = [now - WEEK * k for k in range(HISTORY_WEEKS - 1, -1, -1)]
        columns = [
            _sum_if(and_(Finding.first_seen <= literal(t, UTCDateTime),
                         or_(Finding.resolved_at.is_(None), Finding.resolved_at > literal(t, UTCDateTime))))
            for t in points
        ]
        is_exception = Finding.decision == "exception"
        columns.append(_sum_if(and_(is_exception, Finding.decided_at >= start, Finding.decided_at < now)))
        columns.append(_sum_if(and_(is_exception, Finding.decision_until >= now,
                                    Finding.decision_until < now + WEEK)))
        rows = self._rows(select(Finding.severity, *columns).group_by(Finding.severity))
        history = []
        for i, t in enumerate(points):
            counts = dict.fromkeys(SEVERITIES, 0)
            for row in rows:
                counts[row[0]] = counts.get(row[0], 0) + int(row[i + 1] or 0)
            history.append(HistoryPoint(t, counts))
        granted = sum(int(row[-2] or 0) for row in rows)
        expiring = sum(int(row[-1] or 0) for row in rows)
        return tuple(history), granted, expiring


def _exception_columns():
    return select(Finding.title, Finding.resource, Finding.account_id, Finding.decided_by, Finding.decided_at,
                  Finding.decision_until, Finding.decision_reason)


def _severity_rank_sql():
    """`severity_rank` in SQL (checks.model: the one severity order)."""
    return case({s: severity_rank(s) for s in SEVERITIES}, value=Finding.severity, else_=severity_rank(""))
