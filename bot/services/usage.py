"""Collecting and storing what principals really used (IAM last-accessed data).

`UsageService.collect` runs `checks.usage.collect_usage` for every configured account (one
account at a time; inside an account, bounded concurrency), replaces the account's stored
rows for the principals it read (a principal whose job failed keeps its previous row: an
old answer is better than none, and absence never means "unused"), and audits the run.
`usage_of(account_id)` is what a scan reads: no AWS call at scan time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, delete
from sqlmodel import select

from bot.config import Settings
from bot.db import audit
from bot.db.engine import session_scope, write_scope
from bot.db.models import PrincipalUsage as UsageRow
from bot.services.common import Clock, ServiceError, utcnow
from checks import usage as usage_model

log = logging.getLogger(__name__)
A = audit.AuditAction


@dataclass
class AccountUsage:
    account_id: str
    label: str
    principals: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    api_calls: int = 0
    seconds: float = 0.0
    error: str | None = None


class UsageService:
    def __init__(self, settings: Settings, *, engine: Engine,
                 aws_session_factory: Callable[[], object] | None = None, clock: Clock = utcnow,
                 sleep: Callable[[float], None] | None = None):
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self._aws_session_factory = aws_session_factory
        self._sleep = sleep

    def collect(self, *, only_accounts: Iterable[str] = (), actor: str = "system") -> list[AccountUsage]:
        """Every account's usage, stored. Raises `ServiceError` when no account can be listed."""
        from checks import accounts
        from checks.collect import CollectError

        base = self._aws_session_factory() if self._aws_session_factory else accounts.shared_session()
        if base.get_credentials() is None:
            from bot.config import NO_AWS_CREDENTIALS

            raise ServiceError(NO_AWS_CREDENTIALS)
        try:
            targets = accounts.discover_targets(base, only_accounts=set(only_accounts) or None,
                                                **self.settings.target_options())
        except CollectError as exc:
            raise ServiceError(str(exc)) from None
        out = []
        for target in targets:
            result = AccountUsage(target.account_id or "unknown", target.label)
            try:
                session = accounts.session_for(target, base, external_id=self.settings.external_id)
                kwargs = {"sleep": self._sleep} if self._sleep else {}
                run = usage_model.collect_usage(
                    session, account_id=target.account_id, concurrency=self.settings.usage_concurrency,
                    max_attempts=self.settings.aws_max_attempts, **kwargs)
            except CollectError as exc:
                result.error = str(exc)
                self._audit_failure(result, actor)
                out.append(result)
                continue
            result.account_id = run.account_id or result.account_id
            result.principals, result.failed = len(run.usage), dict(run.failed)
            result.api_calls, result.seconds = run.api_calls, run.seconds
            self.store(result.account_id, run, actor=actor)
            out.append(result)
        return out

    def store(self, account_id: str, run: usage_model.UsageRun, *, actor: str = "system") -> None:
        """Replace the stored rows of the principals `run` read (and drop deleted ones)."""
        now = self.clock()
        with write_scope(self.engine) as session:
            replaced = [*run.usage, *run.gone]
            for chunk in _chunks(replaced, 500):
                session.execute(delete(UsageRow).where(UsageRow.account_id == account_id,
                                                       UsageRow.principal_arn.in_(chunk)))
            for arn, principal in run.usage.items():
                session.add(UsageRow(account_id=account_id, principal_arn=arn, collected_at=principal.collected_at,
                                     job_completed_at=principal.job_completed_at, services=principal.to_json()))
            audit.record(session, actor=actor, action=A.USAGE_COLLECTED, account=account_id, at=now,
                         payload={"principals": len(run.usage), "failed": sorted(run.failed),
                                  "gone": len(run.gone), "api_calls": run.api_calls,
                                  "poll_rounds": run.poll_rounds, "throttled": run.throttled,
                                  "seconds": round(run.seconds, 2)})

    def usage_of(self, account_id: str) -> dict[str, usage_model.PrincipalUsage]:
        with session_scope(self.engine) as session:
            rows = session.exec(select(UsageRow).where(UsageRow.account_id == account_id)).all()
            return {r.principal_arn: usage_model.from_json(r.principal_arn, r.collected_at, r.services,
                                                           r.job_completed_at) for r in rows}

    def _audit_failure(self, result: AccountUsage, actor: str) -> None:
        with write_scope(self.engine) as session:
            audit.record(session, actor=actor, action=A.USAGE_COLLECT_FAILED, account=result.account_id,
                         at=self.clock(), payload={"error": result.error})


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def latest_collection(engine: Engine, account_id: str) -> datetime | None:
    from sqlalchemy import func

    with session_scope(engine) as session:
        return session.exec(select(func.max(UsageRow.collected_at))
                            .where(UsageRow.account_id == account_id)).one()
