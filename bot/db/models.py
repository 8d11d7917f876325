"""All database tables (SQLModel). Migrations in migrations/ are generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
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


class Scan(SQLModel, table=True):
    """One account's scan. Scans started together share a `run_id`."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, max_length=36)
    account_id: str = Field(index=True, max_length=12)
    started_at: datetime = _utc_column()
    finished_at: datetime | None = _utc_column(default=None)
    status: str = Field(max_length=20)  # running | succeeded | failed
    api_calls: int = 0
    error: str | None = Field(default=None, max_length=4000)
    actor: str = Field(default="system", max_length=200)
    counts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Finding(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("fingerprint", name="uq_finding_fingerprint"),
        Index("ix_finding_account_state", "account_id", "state"),
        Index("ix_finding_owner_state", "owner", "state"),
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
