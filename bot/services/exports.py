"""Sending stored findings to AWS Security Hub, each account's into that account.

Open findings go as ACTIVE; findings a scan resolved since the account's last export go
once more as ARCHIVED (compliance PASSED), so Security Hub closes them too. The last export
is the account's latest `export.securityhub` audit event: no extra bookkeeping table, and
the audit log shows every export with its counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from bot.config import Settings
from bot.core.report import stored_finding_json
from bot.db import audit, queries
from bot.db.audit import AuditAction as A
from bot.db.engine import session_scope
from bot.services.common import Clock, ServiceError, utcnow

log = logging.getLogger(__name__)


@dataclass
class AccountExport:
    account_id: str
    label: str
    active: int = 0
    archived: int = 0
    refused: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None


@dataclass
class ExportReport:
    region: str
    accounts: list[AccountExport]

    @property
    def failed(self) -> list[AccountExport]:
        return [a for a in self.accounts if a.error or a.refused]


class SecurityHubExport:
    def __init__(self, settings: Settings, *, engine: Engine,
                 aws_session_factory: Callable[[], object] | None = None, clock: Clock = utcnow):
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self._aws_session_factory = aws_session_factory or _default_aws_session

    def run(self, *, region: str | None = None, only_accounts: Iterable[str] = (), actor: str = "system") -> ExportReport:
        """Export every configured account's findings; one account failing does not stop the others."""
        from checks import accounts
        from checks.collect import DEFAULT_REGION, CollectError

        base = self._aws_session_factory()
        region = region or base.region_name or DEFAULT_REGION
        try:
            targets = accounts.discover_targets(
                base, only_accounts=set(only_accounts) or None, **self.settings.target_options()
            )
        except CollectError as exc:
            raise ServiceError(str(exc)) from None
        return ExportReport(region, [self._export_account(base, target, region, actor) for target in targets])

    def _export_account(self, base, target, region: str, actor: str) -> AccountExport:
        from checks import accounts
        from checks.collect import CollectError
        from checks.formats import Seen
        from checks.formats.asff import asff_finding
        from checks.securityhub import import_findings

        result = AccountExport(target.account_id or "unknown", target.label)
        now = self.clock()
        archived: list[str] = []
        try:
            session = accounts.session_for(target, base, external_id=self.settings.external_id)
            account_id = target.account_id or _caller_account(session, self.settings.aws_max_attempts)
            result.account_id = account_id
            with session_scope(self.engine) as db:
                last = queries.last_audit_event(session=db, action=A.EXPORT_SECURITYHUB, account_id=account_id)
                # Times are whole seconds: a finding resolved in the second of the last export
                # is taken unless that export archived it already (its fingerprints are listed).
                since = last.at if last else None
                sent = set(last.payload.get("archived_fingerprints", [])) if last else set()
                rows = [row for row in queries.findings_to_export(session=db, account_id=account_id,
                                                                  resolved_since=since)
                        if row.resolved_at is None or row.fingerprint not in sent]
                documents = [
                    asff_finding(stored_finding_json(row), Seen(row.first_seen, row.last_seen, row.resolved_at),
                                 region=region, now=now, state=row.state)
                    for row in rows
                ]
                archived = [row.fingerprint for row in rows if row.resolved_at is not None]
            outcome = import_findings(session, account_id, documents, region=region,
                                      max_attempts=self.settings.aws_max_attempts)
        except CollectError as exc:
            result.error = exc.message
        else:
            result.archived = sum(1 for d in documents if d["RecordState"] == "ARCHIVED")
            result.active = len(documents) - result.archived
            result.refused = outcome.failed
        # A clean export moves the account's "resolved since" mark; a failed or partly
        # refused one is audited under its own name, so the next export sends those again.
        clean = result.error is None and not result.refused
        with session_scope(self.engine) as db:
            audit.record(
                db, actor=actor, account=result.account_id if result.account_id != "unknown" else None, at=now,
                action=A.EXPORT_SECURITYHUB if clean else A.EXPORT_SECURITYHUB_FAILED,
                payload={"region": region, "active": result.active, "archived": result.archived,
                         "refused": sorted(f.get("Id", "") for f in result.refused), "error": result.error,
                         "archived_fingerprints": archived if clean else []},
            )
        return result


def _caller_account(session, max_attempts: int) -> str:
    from checks.aws_calls import caller_account

    return caller_account(session, max_attempts)


def _default_aws_session():
    import boto3

    return boto3.Session()
