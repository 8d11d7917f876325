"""Scanning accounts and keeping the stored findings in line with what scans see.

A run is one job per account. With a database each account has a `Scan` row from the
start (`queued`, `running`, then `succeeded`, `failed` or `cancelled`); one transaction per
account writes its final row and every finding change together, and only if the row is
not final yet (so a job delivered twice records once). On PostgreSQL the jobs go on
procrastinate's queue (bot/services/scan_jobs.py) for any worker; with SQLite or without a
database a thread pool in this process runs them, with the same retry policy.

Two things span the run's accounts: the Organizations SCPs (`checks.collect.HubScps`, read
from the Steward's own credentials, the tree and documents once per run and process), and
the role chains that cross accounts (`checks.chains`): each account's job keeps its part of
the graph on its row, and the process waiting for the run joins them once every account has
ended (`_join_chains`), recording those findings in their own transaction.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import select

from bot.config import Settings
from bot.core.lifecycle import Event, State, next_state
from bot.db import audit, queries
from bot.db.engine import session_scope
from bot.db.models import SCAN_FINAL, Finding, Scan
from bot.services.common import Clock, ServiceError, utcnow
from bot.services.scan_retry import MAX_ATTEMPTS, RetryLater, backoff_seconds
from checks.catalog import BY_ID, RAISED_BY_PEOPLE, severity_of
from checks.model import Result, Status

log = logging.getLogger(__name__)

# Account names (alias) are read once per account per service (a worker's lifetime), for a day.
ALIAS_TTL_SECONDS = 24 * 3600


@dataclass
class AccountOutcome:
    """What happened to one account in one scan run: enough for the table and the JSON."""

    account_id: str
    label: str
    status: str  # succeeded | failed
    started_at: datetime
    finished_at: datetime
    name: str = ""  # the account's alias or Organizations name ("" when it has neither)
    api_calls: int = 0
    error: str | None = None
    findings: list[Result] = field(default_factory=list)
    owners: dict[str, str | None] = field(default_factory=dict)  # fingerprint -> owner
    inventory: dict[str, int] = field(default_factory=dict)
    identities: list[dict] = field(default_factory=list)
    principals: list[dict] = field(default_factory=list)  # users and roles with entitlements (reviews)
    coverage: dict[str, list[int]] = field(default_factory=dict)  # check -> [evaluated, failed]
    notes: list[str] = field(default_factory=list)  # what the scan could not see ("SCPs not visible: ...")
    reach: dict | None = None  # the account's part of the run's role graph (checks.chains)
    changes: dict[str, int] = field(default_factory=dict)  # new / reopened / resolved
    resolved: list[str] = field(default_factory=list)  # fingerprints this scan resolved
    seconds: float = 0.0  # measured with a monotonic clock; the timestamps are whole seconds
    scan_id: int | None = None
    retryable: bool = False  # a failure another attempt may not have (throttling, network)

    @property
    def failed(self) -> bool:
        """Not known clean: failed, or cancelled before it finished."""
        return self.status != "succeeded"


@dataclass
class ScanReport:
    run_id: str
    outcomes: list[AccountOutcome]

    @property
    def failed(self) -> list[AccountOutcome]:
        return [o for o in self.outcomes if o.failed]

    @property
    def resolved(self) -> list[str]:
        return [fp for o in self.outcomes for fp in o.resolved]


ProgressCallback = Callable[[str, str], None]  # (account label, "started"|"retrying"|a final status)

POLL_SECONDS = 0.5
ACCOUNT_DEADLINE_SECONDS = 30 * 60  # an account still `running` after this is failed (stuck job)


@dataclass
class ScanRun:
    """A started run: its accounts (by scan row id when saved) and how they are worked."""

    run_id: str
    targets: list  # checks.accounts.Target, in discovery order
    rows: dict[int, object] = field(default_factory=dict)  # scan row id -> Target
    queued: bool = False  # per-account jobs on PostgreSQL (else threads in this process)
    futures: dict = field(default_factory=dict)  # in-process: Future -> Target
    pool: ThreadPoolExecutor | None = None

    @property
    def size(self) -> int:
        return len(self.targets)


class ScanService:
    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None,
        aws_session_factory: Callable[[], object] | None = None,
        clock: Clock = utcnow,
    ):
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self._aws_session_factory = aws_session_factory
        self._base = None
        self._base_lock = threading.Lock()
        self._aliases: dict[str, tuple[float, str]] = {}  # account id -> (monotonic time read, name)
        self._alias_lock = threading.Lock()
        self._internal: dict[str, set[str]] = {}  # run id -> its account ids (trust checks)
        self._scps: dict[str, object] = {}  # run id -> checks.collect.HubScps (read once per run)

    def run(
        self,
        *,
        only_accounts: Iterable[str] = (),
        save: bool = True,
        actor: str = "system",
        progress: ProgressCallback | None = None,
        work: bool = True,
    ) -> ScanReport:
        """Scan every configured account; persist each as it finishes; return when every
        account has ended. Ctrl+C (KeyboardInterrupt) cancels the rest of the run.

        Raises `ServiceError` when the accounts cannot even be listed (no credentials,
        endpoint down): there is nothing to record per account then.
        """
        scan_run = self.start(only_accounts=only_accounts, save=save, actor=actor)
        try:
            return self.wait(scan_run, progress=progress, work=work)
        except KeyboardInterrupt:
            self.cancel(scan_run.run_id, actor=actor)
            raise

    def start(self, *, only_accounts: Iterable[str] = (), save: bool = True, actor: str = "system") -> ScanRun:
        """Discover the accounts and start the run: with a database, one `queued` row per
        account; on PostgreSQL one job per account (any worker takes them), otherwise a
        thread pool in this process."""
        from checks import accounts
        from checks.collect import CollectError

        base = self._base_session()
        if base.get_credentials() is None:
            # Said once, before anything is recorded: no failed scan of an account nobody can name.
            from bot.config import NO_AWS_CREDENTIALS

            raise ServiceError(NO_AWS_CREDENTIALS)
        try:
            targets = accounts.discover_targets(
                base, only_accounts=set(only_accounts) or None, **self.settings.target_options()
            )
        except CollectError as exc:
            raise ServiceError(str(exc)) from None
        scan_run = ScanRun(run_id=str(uuid.uuid4()), targets=list(targets))
        self._remember_internal(scan_run.run_id, {t.account_id for t in targets if t.account_id})
        engine = self.engine if save else None
        if engine is not None:
            scan_run.rows = self._create_rows(scan_run, actor)
        if engine is not None and engine.dialect.name == "postgresql":
            from bot.services import scan_jobs

            scan_jobs.enqueue(self._database_url(), scan_run.run_id, scan_run.rows.items(), actor)
            scan_run.queued = True
            return scan_run
        work = list(scan_run.rows.items()) if engine is not None else [(None, t) for t in targets]
        workers = max(1, min(self.settings.scan_concurrency, len(work)))
        scan_run.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan")
        for scan_id, target in work:
            future = scan_run.pool.submit(self._in_process, scan_run.run_id, scan_id, target, actor)
            scan_run.futures[future] = target
        return scan_run

    def wait(self, scan_run: ScanRun, *, progress: ProgressCallback | None = None, work: bool = True) -> ScanReport:
        """Until every account of the run has ended. On PostgreSQL this process also works
        the run's jobs (`work`), so the run ends even with no `steward worker` up."""
        notify = progress or (lambda _label, _event: None)
        if not scan_run.queued:
            return self._wait_in_process(scan_run, notify)
        from bot.services import scan_jobs

        worker = None
        if work:
            worker = scan_jobs.WorkerThread(
                self._database_url(), queues=[scan_jobs.queue_of(scan_run.run_id)],
                concurrency=self.settings.scan_concurrency, name=f"scan-{scan_run.run_id[:8]}",
            )
            scan_jobs.install_service(self)
            worker.start()
        try:
            seen: dict[int, str] = {}
            while True:
                rows = self._row_states(scan_run)
                for scan_id, (status, error) in rows.items():
                    if seen.get(scan_id) != status:
                        event = {"running": "started", "queued": "retrying" if error else None}.get(status, status)
                        if event and not (status == "queued" and scan_id not in seen):
                            notify(scan_run.rows[scan_id].label, event)
                        seen[scan_id] = status
                if all(status in SCAN_FINAL for status, _ in rows.values()):
                    break
                if worker is not None and not worker.alive:
                    raise ServiceError(f"the job worker of scan run {scan_run.run_id} stopped: {worker.error}")
                self._fail_stuck(scan_run)
                time.sleep(POLL_SECONDS)
        finally:
            if worker is not None:
                worker.stop()
        self._join_chains(scan_run, [])
        return ScanReport(run_id=scan_run.run_id, outcomes=self._outcomes_from_rows(scan_run))

    def cancel(self, run_id: str, *, actor: str) -> int:
        """Cancel what is left of a run: open rows become `cancelled` (audited), queued jobs
        are cancelled and running ones asked to abort. Returns the accounts cancelled."""
        if self.engine is None:
            return 0
        now = self.clock()
        with session_scope(self.engine) as session:
            rows = list(session.exec(
                select(Scan).where(Scan.run_id == run_id, Scan.status.not_in(SCAN_FINAL)).with_for_update()
            ))
            for row in rows:
                row.status, row.finished_at = "cancelled", now
                row.error = f"cancelled by {actor}"
                row.counts = {"error": True, "cancelled": True}
                audit.record(session, actor=actor, action=audit.AuditAction.SCAN_FAILED,
                             account=_known(row.account_id), at=now,
                             payload={"run_id": run_id, "scan_id": row.id, "cancelled": True,
                                      "error": row.error})
        if self.engine.dialect.name == "postgresql":
            from bot.services import scan_jobs

            scan_jobs.cancel_jobs(self._database_url(), run_id)
        return len(rows)

    def run_of(self, run_id: str) -> list[Scan]:
        """The rows of a run (empty if there is no such run)."""
        with session_scope(self.engine) as session:
            return list(session.exec(select(Scan).where(Scan.run_id == run_id).order_by(Scan.id)))

    # --- one account: the job -----------------------------------------------------------

    def execute_account(self, run_id: str, scan_id: int | None, target, *, actor: str,
                        final_attempt: bool = True, internal: set[str] | None = None) -> AccountOutcome | None:
        """Scan one account of a run and record it. None: nothing done, the row was
        already final (a duplicate delivery) or cancelled. Raises `RetryLater` for a
        throttled or transient failure unless this is the final attempt (then the account
        is recorded as failed)."""
        if scan_id is not None and not self._claim(scan_id):
            return None
        if internal is None:
            internal = self._internal_accounts(run_id)
        outcome = self._scan_target(self._base_session(), target, internal, run_id)
        if outcome.failed and outcome.retryable and not final_attempt:
            if scan_id is not None:
                self._requeue(scan_id, outcome.error or "")
            raise RetryLater(outcome.error)
        if scan_id is not None and not self._persist(outcome, scan_id=scan_id, run_id=run_id, actor=actor,
                                                     role_arn=target.role_arn):
            return None
        return outcome

    def _in_process(self, run_id, scan_id, target, actor) -> AccountOutcome | None:
        """The job's retry policy, in a thread of this process (SQLite, or no database)."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return self.execute_account(run_id, scan_id, target, actor=actor,
                                            final_attempt=attempt >= MAX_ATTEMPTS,
                                            internal=self._internal.get(run_id))
            except RetryLater:
                time.sleep(backoff_seconds(attempt - 1))
        raise AssertionError("unreachable: the last attempt records instead of retrying")

    def _wait_in_process(self, scan_run: ScanRun, notify: ProgressCallback) -> ScanReport:
        assert scan_run.pool is not None
        for target in scan_run.targets:
            notify(target.label, "started")
        outcomes: list[AccountOutcome] = []
        try:
            for future in as_completed(scan_run.futures):
                outcome = future.result()
                if outcome is not None:
                    notify(outcome.label, outcome.status)
                    outcomes.append(outcome)
        finally:
            # Ctrl+C: queued accounts never start; running ones finish (their rows are
            # cancelled by then, so they record nothing).
            scan_run.pool.shutdown(wait=False, cancel_futures=True)
        if len(outcomes) < scan_run.size and scan_run.rows:
            return ScanReport(run_id=scan_run.run_id, outcomes=self._outcomes_from_rows(scan_run))
        self._join_chains(scan_run, outcomes)
        outcomes.sort(key=lambda o: (o.account_id, o.label))
        return ScanReport(run_id=scan_run.run_id, outcomes=outcomes)

    # --- the run as a whole: role chains across its accounts ------------------------------

    def _join_chains(self, scan_run: ScanRun, outcomes: list[AccountOutcome]) -> None:
        """Once every account of the run has ended: the role chains that cross accounts
        (`checks.chains`), from each succeeded account's part of the graph (kept on its
        scan row, or in `outcomes` without a database). Computed once per run, here, by
        the process that waits for the run; each chain is a finding on its first principal."""
        from checks import chains

        now = self.clock()
        if not scan_run.rows:  # no database: the parts are in memory
            by_account = {o.account_id: o for o in outcomes if not o.failed}
            parts = [o.reach for o in by_account.values() if o.reach]
            if len(parts) < 2:
                return
            for r in chains.results(parts, now):
                if r.account in by_account:
                    by_account[r.account].findings.append(r)
                    by_account[r.account].owners[r.fingerprint] = r.owner
            return
        with session_scope(self.engine) as session:
            rows = list(session.exec(select(Scan).where(Scan.run_id == scan_run.run_id,
                                                        Scan.status == "succeeded")))
            parts = [row.counts["reach"] for row in rows if (row.counts or {}).get("reach")]
            scanned = {row.account_id for row in rows}
            for row in rows:  # needed by this join only: not kept on the rows
                row.counts = {k: v for k, v in (row.counts or {}).items() if k != "reach"}
            if len(parts) < 2:
                return
            found = chains.results(parts, now)
            outcome_of = {o.account_id: o for o in outcomes}
            for row in rows:
                mine = [r for r in found if r.account == row.account_id]
                changed = sync_findings(
                    session, row.account_id, mine, {r.fingerprint: r.owner for r in mine}, row.id, now,
                    cross_account=True,
                    # A chain is gone only if every account it went through was scanned now.
                    may_resolve=lambda f: set((f.details or {}).get("path_accounts") or ("?",)) <= scanned,
                )
                for kind, action in (("new", audit.AuditAction.FINDING_OPENED),
                                     ("reopened", audit.AuditAction.FINDING_REOPENED),
                                     ("resolved", audit.AuditAction.FINDING_RESOLVED)):
                    for fp in changed[kind]:
                        audit.record(session, actor="system", action=action, subject_fingerprint=fp,
                                     account=row.account_id, at=now,
                                     payload={"run_id": scan_run.run_id, "scan_id": row.id,
                                              "reason": "cross-account role chain"})
                if row.account_id in outcome_of:
                    outcome = outcome_of[row.account_id]
                    outcome.findings.extend(mine)
                    outcome.owners.update({r.fingerprint: r.owner for r in mine})
                    outcome.resolved.extend(changed["resolved"])

    def _database_url(self) -> str:
        """The job queue lives in the database this service writes to."""
        return self.engine.url.render_as_string(hide_password=False)

    def _base_session(self):
        with self._base_lock:
            return self._base_session_unlocked()

    def _base_session_unlocked(self):
        if self._base is None:
            if self._aws_session_factory is not None:
                self._base = self._aws_session_factory()
            else:
                from checks.accounts import shared_session

                self._base = shared_session()
        return self._base

    def _hub_scps(self, run_id: str):
        """The run's SCP reader: the organization's tree and SCPs are read once per run
        (per process), from the Steward's own credentials (the hub)."""
        from checks.collect import HubScps, aws_client

        with self._base_lock:
            if run_id not in self._scps:
                self._scps[run_id] = HubScps(
                    aws_client(self._base_session_unlocked(), "organizations", self.settings.aws_max_attempts)
                )
                while len(self._scps) > 8:
                    self._scps.pop(next(iter(self._scps)))
            return self._scps[run_id]

    def _account_name(self, session, target, account_id: str) -> tuple[str, int]:
        """(the account's name, AWS calls made): its Organizations name when discovery knows
        it, else its IAM alias: one iam:ListAccountAliases per account, cached for a day
        per process; an account whose alias cannot be read is shown by its id."""
        from checks.collect import CollectError, account_alias

        if target.name:
            return target.name, 0
        now = time.monotonic()
        with self._alias_lock:
            cached = self._aliases.get(account_id)
        if cached is not None and now - cached[0] < ALIAS_TTL_SECONDS:
            return cached[1], 0
        try:
            name = account_alias(session, max_attempts=self.settings.aws_max_attempts, account=account_id) or ""
        except CollectError as exc:  # e.g. a scan role from before ListAccountAliases was declared
            log.info("no alias for %s: %s", account_id, exc)
            name = ""
        with self._alias_lock:
            self._aliases[account_id] = (now, name)
        return name, 1

    def _scan_target(self, base, target, internal: set[str], run_id: str | None = None) -> AccountOutcome:
        from checks import accounts, scan
        from checks.collect import CollectError

        now = self.clock()
        began = time.perf_counter()
        retryable = False
        ctx = self.settings.check_context(now, internal_accounts=internal)
        label = target.label
        try:
            scps = self._hub_scps(run_id) if run_id else None
            session = accounts.session_for(target, base, external_id=self.settings.external_id)
            result = scan.scan_account(
                session,
                ctx,
                label=label,
                max_attempts=self.settings.aws_max_attempts,
                known_keys=self._known_keys if self.engine is not None else None,
                usage_of=self._usage_of if self.engine is not None else None,
                scps=scps,
                reach=True,
            )
        except CollectError as exc:
            error, retryable = str(exc), exc.retryable
        except Exception as exc:  # a bug or an unexpected AWS answer: fail loudly, not clean
            log.exception("scan of %s crashed", label)
            error = f"internal error: {type(exc).__name__}: {exc}"
        else:
            name, alias_calls = self._account_name(session, target, result.account_id)
            return AccountOutcome(
                account_id=result.account_id,
                label=label,
                name=name,
                status="succeeded",
                started_at=now,
                finished_at=self.clock(),
                seconds=time.perf_counter() - began,
                api_calls=result.api_calls + alias_calls,
                findings=list(result.findings),
                owners={r.fingerprint: r.owner for r in result.findings},
                inventory=dict(result.inventory),
                identities=list(result.identities),
                principals=list(result.principals),
                coverage={k: [c.evaluated, c.failed] for k, c in result.coverage().items()},
                notes=list(result.notes),
                reach=dict(result.reach) if result.reach is not None else None,
            )
        return AccountOutcome(
            account_id=target.account_id or "unknown",
            label=label,
            status="failed",
            started_at=now,
            finished_at=self.clock(),
            seconds=time.perf_counter() - began,
            error=error,
            retryable=retryable,
        )

    def _usage_of(self, account_id: str) -> dict:
        from bot.services.usage import UsageService

        return UsageService(self.settings, engine=self.engine).usage_of(account_id)

    def _known_keys(self, account_id: str) -> dict[str, list]:
        """Access key ids earlier scans resolved, so a rescan need not list them again."""
        from checks.keys import AccessKeyMeta

        with session_scope(self.engine) as session:
            rows = queries.identities_of_account(session=session, account_id=account_id)
        return {
            row.name: [
                AccessKeyMeta(k["access_key_id"], "Active" if k.get("active") else "Inactive", datetime.fromisoformat(k["created"]))
                for k in (row.facts or {}).get("keys", [])
                if k.get("access_key_id") and k.get("created")
            ]
            for row in rows
        }

    # ---------------------------------------------------------------------------------

    # --- the run's rows ------------------------------------------------------------------

    def _create_rows(self, scan_run: ScanRun, actor: str) -> dict[int, object]:
        now = self.clock()
        with session_scope(self.engine) as session:
            rows = [
                Scan(run_id=scan_run.run_id, account_id=t.account_id or "unknown", started_at=now,
                     status="queued", actor=actor)
                for t in scan_run.targets
            ]
            session.add_all(rows)
            session.flush()
            return {row.id: target for row, target in zip(rows, scan_run.targets, strict=True)}

    def _claim(self, scan_id: int) -> bool:
        """Mark the row running, unless it is final (done, or cancelled) or gone."""
        with session_scope(self.engine) as session:
            row = session.get(Scan, scan_id, with_for_update=True)
            if row is None or row.status in SCAN_FINAL:
                return False
            row.status, row.started_at, row.attempts = "running", self.clock(), row.attempts + 1
            return True

    def _requeue(self, scan_id: int, error: str) -> None:
        with session_scope(self.engine) as session:
            row = session.get(Scan, scan_id, with_for_update=True)
            if row is not None and row.status not in SCAN_FINAL:
                row.status, row.error = "queued", f"retrying after: {error}"[:4000]

    def _row_states(self, scan_run: ScanRun) -> dict[int, tuple[str, str | None]]:
        with session_scope(self.engine) as session:
            rows = session.exec(select(Scan.id, Scan.status, Scan.error).where(Scan.run_id == scan_run.run_id))
            return {scan_id: (status, error) for scan_id, status, error in rows}

    def _fail_stuck(self, scan_run: ScanRun) -> None:
        """A job running past the deadline (a hung worker that still sends heartbeats) is
        recorded as failed; if it ever finishes, it finds its row final and records nothing."""
        cutoff = self.clock() - timedelta(seconds=ACCOUNT_DEADLINE_SECONDS)
        with session_scope(self.engine) as session:
            stuck = list(session.exec(select(Scan).where(
                Scan.run_id == scan_run.run_id, Scan.status == "running", Scan.started_at < cutoff
            ).with_for_update()))
            now = self.clock()
            for row in stuck:
                row.status, row.finished_at, row.counts = "failed", now, {"error": True}
                row.error = f"timed out: still running after {ACCOUNT_DEADLINE_SECONDS // 60} minutes"
                audit.record(session, actor=row.actor, action=audit.AuditAction.SCAN_FAILED,
                             account=_known(row.account_id), at=now,
                             payload={"run_id": row.run_id, "scan_id": row.id, "error": row.error})

    def _internal_accounts(self, run_id: str) -> set[str]:
        """The run's accounts (for trust checks: roles trusting them are not external)."""
        if run_id not in self._internal and self.engine is not None:
            with session_scope(self.engine) as session:
                ids = session.exec(select(Scan.account_id).where(Scan.run_id == run_id))
                self._remember_internal(run_id, {a for a in ids if a != "unknown"})
        return self._internal.get(run_id, set())

    def _remember_internal(self, run_id: str, accounts: set[str]) -> None:
        with self._base_lock:
            self._internal[run_id] = accounts
            while len(self._internal) > 8:  # a worker serves run after run: keep the recent ones
                self._internal.pop(next(iter(self._internal)))

    def _outcomes_from_rows(self, scan_run: ScanRun) -> list[AccountOutcome]:
        """The run's accounts as recorded (by whichever process scanned them): findings are
        the rows this scan saw (`last_scan_id`), resolved ones those it resolved."""
        outcomes = []
        with session_scope(self.engine) as session:
            for row in session.exec(select(Scan).where(Scan.run_id == scan_run.run_id)):
                target = scan_run.rows.get(row.id)
                counts = row.counts or {}
                outcome = AccountOutcome(
                    account_id=row.account_id, label=target.label if target else row.account_id,
                    status=row.status, started_at=row.started_at, finished_at=row.finished_at or row.started_at,
                    api_calls=row.api_calls, error=row.error, scan_id=row.id,
                    inventory=dict(counts.get("inventory") or {}), coverage=dict(counts.get("coverage") or {}),
                    notes=list(counts.get("notes") or ()),
                    changes={k: counts[k] for k in ("new", "reopened", "resolved") if k in counts},
                    seconds=float(counts.get("seconds") or 0.0),
                )
                if row.status == "succeeded":
                    seen = session.exec(select(Finding).where(Finding.last_scan_id == row.id,
                                                              Finding.state != State.RESOLVED))
                    for f in seen:
                        outcome.findings.append(Result(check=f.check_id, account=f.account_id, resource=f.resource,
                                                       status=Status.FAIL, sub_key=f.sub_key, details=dict(f.details)))
                        outcome.owners[f.fingerprint] = f.owner
                    outcome.resolved = list(session.exec(select(Finding.fingerprint).where(
                        Finding.account_id == row.account_id, Finding.state == State.RESOLVED,
                        Finding.resolved_at == row.finished_at)))
                outcomes.append(outcome)
        outcomes.sort(key=lambda o: (o.account_id, o.label))
        return outcomes

    def _persist(self, outcome: AccountOutcome, *, scan_id: int, run_id: str, actor: str,
                 role_arn: str | None) -> bool:
        """Record a final outcome on its row, with the finding changes, in one transaction.
        False (nothing written) when the row is final already: a duplicate delivery, a
        cancelled run, or a timed-out job that finished after all."""
        now = outcome.finished_at
        with session_scope(self.engine) as session:
            scan_row = session.get(Scan, scan_id, with_for_update=True)
            if scan_row is None or scan_row.status in SCAN_FINAL:
                return False
            if outcome.account_id != "unknown":
                account = queries.upsert_account(
                    session=session,
                    account_id=outcome.account_id,
                    label=outcome.name,
                    role_arn=role_arn,
                    now=now,
                )
                account.last_scan_at = now
                account.last_scan_status = outcome.status
                scan_row.account_id = outcome.account_id
            scan_row.started_at, scan_row.finished_at = outcome.started_at, now
            scan_row.status, scan_row.api_calls = outcome.status, outcome.api_calls
            scan_row.error = (outcome.error or "")[:4000] or None
            outcome.scan_id = scan_row.id
            event = {"run_id": run_id, "scan_id": scan_row.id, "label": outcome.label,
                     "api_calls": outcome.api_calls}
            if outcome.failed:
                # A failed scan proves nothing about the account: findings stay as they are.
                scan_row.counts = {"error": True}
                audit.record(session, actor=actor, action=audit.AuditAction.SCAN_FAILED,
                             account=_known(outcome.account_id), at=now,
                             payload={**event, "error": outcome.error})
                return True
            changed = sync_findings(
                session, outcome.account_id, outcome.findings, outcome.owners, scan_row.id, now
            )
            outcome.changes = {kind: len(fps) for kind, fps in changed.items()}
            outcome.resolved = changed["resolved"]
            queries.replace_identities(
                session=session, account_id=outcome.account_id, identities=outcome.identities, now=now
            )
            queries.replace_principals(session=session, account_id=outcome.account_id, scan_id=scan_row.id,
                                       principals=outcome.principals)
            scan_row.counts = {
                "findings": len(outcome.findings),
                "by_severity": _by_severity(outcome.findings),
                "inventory": outcome.inventory,
                "coverage": outcome.coverage,
                **({"notes": outcome.notes} if outcome.notes else {}),
                **({"reach": outcome.reach} if outcome.reach else {}),
                **outcome.changes,
                "seconds": round(outcome.seconds, 3),
            }
            # One event per account scan; the finding changes it caused are listed in it.
            audit.record(session, actor=actor, action=audit.AuditAction.SCAN_SUCCEEDED,
                         account=outcome.account_id, at=now,
                         payload={**event, "counts": {k: v for k, v in scan_row.counts.items()
                                                      if k not in ("coverage", "reach")},
                                  "fingerprints": changed})
            return True


def sync_findings(
    session,
    account_id: str,
    findings: list[Result],
    owners: dict[str, str | None],
    scan_id: int,
    now: datetime,
    *,
    cross_account: bool = False,
    may_resolve: Callable[[Finding], bool] = lambda _row: True,
) -> dict[str, list[str]]:
    """Bring the stored findings of one account in line with a *successful* scan.

    New fingerprints are inserted, known ones updated (never duplicated), ones the scan no
    longer reports become resolved, and resolved ones that are back are reopened. Returns
    the fingerprints of each kind of change.

    The role chains that cross accounts (`checks.chains`, sub_key "cross-account") are
    judged once the whole run has ended, not by the account's own scan: the account's
    sync leaves them alone, and the run's sync (`cross_account=True`) touches only them,
    resolving only those `may_resolve` allows (every account of their path was scanned).
    """
    from checks.chains import CROSS_ACCOUNT

    stored = {
        fp: row
        for fp, row in queries.findings_of_account(session=session, account_id=account_id).items()
        if (row.sub_key == CROSS_ACCOUNT) == cross_account
    }
    changes: dict[str, list[str]] = {"new": [], "reopened": [], "resolved": []}
    seen: set[str] = set()
    for result in findings:
        fp = result.fingerprint
        if fp in seen:
            continue
        seen.add(fp)
        spec = BY_ID[result.check]
        row = stored.get(fp)
        if row is None:
            session.add(
                Finding(
                    fingerprint=fp,
                    account_id=account_id,
                    check_id=result.check,
                    resource=result.resource,
                    sub_key=result.sub_key,
                    severity=severity_of(result.check, result.details).value,
                    title=spec.title,
                    owner=owners.get(fp),
                    state=State.OPEN,
                    details=dict(result.details),
                    first_seen=now,
                    last_seen=now,
                    state_changed_at=now,
                    last_scan_id=scan_id,
                )
            )
            changes["new"].append(fp)
            continue
        new_state = next_state(row.state, Event.SEEN)
        if new_state != row.state:
            row.state, row.state_changed_at, row.resolved_at = new_state, now, None
            row.times_reopened += 1
            changes["reopened"].append(fp)
        row.last_seen, row.last_scan_id = now, scan_id
        row.details, row.owner = dict(result.details), owners.get(fp)
        row.severity, row.title = severity_of(result.check, result.details).value, spec.title
    for fp, row in stored.items():
        if fp in seen or row.state == State.RESOLVED or not may_resolve(row) or row.check_id in RAISED_BY_PEOPLE:
            continue  # (a revocation asked for in an access review is no scan's to resolve)
        new_state = next_state(row.state, Event.NOT_SEEN)
        if new_state == State.RESOLVED:
            row.state, row.state_changed_at, row.resolved_at = new_state, now, now
            changes["resolved"].append(fp)
    return changes


def _known(account_id: str) -> str | None:
    return account_id if account_id != "unknown" else None


def _by_severity(findings: list[Result]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in findings:
        sev = severity_of(r.check, r.details).value
        counts[sev] = counts.get(sev, 0) + 1
    return counts


def count_aws_throttles() -> None:
    """AWS throttling answers seen by this process's sessions feed /metrics (once per process)."""
    from checks.collect import observe_throttling

    observe_throttling(_count_throttle)


def _count_throttle(_code: str) -> None:
    from bot.run.metrics import AWS_THROTTLED

    AWS_THROTTLED.inc()
