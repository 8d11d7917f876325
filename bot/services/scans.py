"""Scanning accounts and keeping the stored findings in line with what scans see.

One transaction per account scan writes the scan row and every finding change together.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from bot import audit
from bot.config import Settings
from bot.db import queries
from bot.db.engine import session_scope
from bot.db.models import Finding, Scan
from bot.lifecycle import Event, State, next_state
from bot.services.common import Clock, ServiceError, utcnow
from checks.catalog import BY_ID
from checks.model import Result

log = logging.getLogger(__name__)


@dataclass
class AccountOutcome:
    """What happened to one account in one scan run: enough for the table and the JSON."""

    account_id: str
    label: str
    status: str  # succeeded | failed
    started_at: datetime
    finished_at: datetime
    api_calls: int = 0
    error: str | None = None
    findings: list[Result] = field(default_factory=list)
    owners: dict[str, str | None] = field(default_factory=dict)  # fingerprint -> owner
    inventory: dict[str, int] = field(default_factory=dict)
    identities: list[dict] = field(default_factory=list)
    coverage: dict[str, list[int]] = field(default_factory=dict)  # check -> [evaluated, failed]
    changes: dict[str, int] = field(default_factory=dict)  # new / reopened / resolved
    resolved: list[str] = field(default_factory=list)  # fingerprints this scan resolved
    seconds: float = 0.0  # measured with a monotonic clock; the timestamps are whole seconds
    scan_id: int | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"


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


ProgressCallback = Callable[[str, str], None]  # (account label, "started"|"succeeded"|"failed")


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
        self._aws_session_factory = aws_session_factory or _default_aws_session

    def run(
        self,
        *,
        only_accounts: Iterable[str] = (),
        save: bool = True,
        actor: str = "system",
        progress: ProgressCallback | None = None,
    ) -> ScanReport:
        """Scan every configured account concurrently; persist each as it finishes.

        Raises `ServiceError` when the accounts cannot even be listed (no credentials,
        endpoint down): there is nothing to record per account then.
        """
        from checks import accounts
        from checks.collect import CollectError

        base = self._aws_session_factory()
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
        internal = {t.account_id for t in targets if t.account_id}
        run_id = str(uuid.uuid4())
        notify = progress or (lambda _label, _event: None)
        outcomes: list[AccountOutcome] = []
        workers = max(1, min(self.settings.scan_concurrency, len(targets)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan") as pool:
            futures = {}
            for target in targets:
                notify(target.label, "started")
                futures[pool.submit(self._scan_target, base, target, internal)] = target
            for future in as_completed(futures):
                outcome = future.result()
                if save and self.engine is not None:
                    self._persist(outcome, run_id=run_id, actor=actor, role_arn=futures[future].role_arn)
                notify(outcome.label, outcome.status)
                outcomes.append(outcome)
        outcomes.sort(key=lambda o: (o.account_id, o.label))
        return ScanReport(run_id=run_id, outcomes=outcomes)

    def _scan_target(self, base, target, internal: set[str]) -> AccountOutcome:
        from checks import accounts, scan
        from checks.collect import CollectError

        now = self.clock()
        began = time.perf_counter()
        ctx = self.settings.check_context(now, internal_accounts=internal)
        label = target.label
        try:
            session = accounts.session_for(target, base, external_id=self.settings.external_id)
            result = scan.scan_account(
                session,
                ctx,
                label=label,
                max_attempts=self.settings.aws_max_attempts,
                known_keys=self._known_keys if self.engine is not None else None,
            )
        except CollectError as exc:
            error = str(exc)
        except Exception as exc:  # a bug or an unexpected AWS answer: fail loudly, not clean
            log.exception("scan of %s crashed", label)
            error = f"internal error: {type(exc).__name__}: {exc}"
        else:
            return AccountOutcome(
                account_id=result.account_id,
                label=label,
                status="succeeded",
                started_at=now,
                finished_at=self.clock(),
                seconds=time.perf_counter() - began,
                api_calls=result.api_calls,
                findings=list(result.findings),
                owners={r.fingerprint: r.owner for r in result.findings},
                inventory=dict(result.inventory),
                identities=list(result.identities),
                coverage={k: [c.evaluated, c.failed] for k, c in result.coverage().items()},
            )
        return AccountOutcome(
            account_id=target.account_id or "unknown",
            label=label,
            status="failed",
            started_at=now,
            finished_at=self.clock(),
            seconds=time.perf_counter() - began,
            error=error,
        )

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

    def _persist(self, outcome: AccountOutcome, *, run_id: str, actor: str, role_arn: str | None) -> None:
        now = outcome.finished_at
        with session_scope(self.engine) as session:
            if outcome.account_id != "unknown":
                account = queries.upsert_account(
                    session=session,
                    account_id=outcome.account_id,
                    label=outcome.label,
                    role_arn=role_arn,
                    now=now,
                )
                account.last_scan_at = now
                account.last_scan_status = outcome.status
            scan_row = queries.add_scan(
                session=session,
                scan=Scan(
                    run_id=run_id,
                    account_id=outcome.account_id,
                    started_at=outcome.started_at,
                    finished_at=now,
                    status=outcome.status,
                    api_calls=outcome.api_calls,
                    error=(outcome.error or "")[:4000] or None,
                    actor=actor,
                ),
            )
            outcome.scan_id = scan_row.id
            event = {"run_id": run_id, "scan_id": scan_row.id, "label": outcome.label,
                     "api_calls": outcome.api_calls}
            if outcome.failed:
                # A failed scan proves nothing about the account: findings stay as they are.
                scan_row.counts = {"error": True}
                audit.record(session, actor=actor, action=audit.AuditAction.SCAN_FAILED,
                             account=_known(outcome.account_id), at=now,
                             payload={**event, "error": outcome.error})
                return
            changed = sync_findings(
                session, outcome.account_id, outcome.findings, outcome.owners, scan_row.id, now
            )
            outcome.changes = {kind: len(fps) for kind, fps in changed.items()}
            outcome.resolved = changed["resolved"]
            queries.replace_identities(
                session=session, account_id=outcome.account_id, identities=outcome.identities, now=now
            )
            scan_row.counts = {
                "findings": len(outcome.findings),
                "by_severity": _by_severity(outcome.findings),
                "inventory": outcome.inventory,
                "coverage": outcome.coverage,
                **outcome.changes,
            }
            # One event per account scan; the finding changes it caused are listed in it.
            audit.record(session, actor=actor, action=audit.AuditAction.SCAN_SUCCEEDED,
                         account=outcome.account_id, at=now,
                         payload={**event, "counts": {k: v for k, v in scan_row.counts.items() if k != "coverage"},
                                  "fingerprints": changed})


def sync_findings(
    session,
    account_id: str,
    findings: list[Result],
    owners: dict[str, str | None],
    scan_id: int,
    now: datetime,
) -> dict[str, list[str]]:
    """Bring the stored findings of one account in line with a *successful* scan.

    New fingerprints are inserted, known ones updated (never duplicated), ones the scan no
    longer reports become resolved, and resolved ones that are back are reopened. Returns
    the fingerprints of each kind of change.
    """
    stored = queries.findings_of_account(session=session, account_id=account_id)
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
                    severity=spec.severity.value,
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
        row.severity, row.title = spec.severity.value, spec.title
    for fp, row in stored.items():
        if fp in seen or row.state == State.RESOLVED:
            continue
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
        sev = BY_ID[r.check].severity.value
        counts[sev] = counts.get(sev, 0) + 1
    return counts


def _default_aws_session():
    import boto3

    return boto3.Session()
