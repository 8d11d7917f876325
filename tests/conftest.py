"""Shared fixtures: databases (SQLite always, PostgreSQL when STEWARD_TEST_DATABASE_URL is set)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bot.db.engine import make_engine
from bot.db.migrate import upgrade
from tests.databases import scratch_postgres

PG_URL = os.environ.get("STEWARD_TEST_DATABASE_URL")


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Tests never read the developer's .env, database or AWS profile."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("STEWARD_", "SLACK_", "AWS_")) and name != "STEWARD_TEST_DATABASE_URL":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test (dropped afterwards)."""
    assert PG_URL
    with scratch_postgres(PG_URL) as url:
        yield url


DIALECTS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(not PG_URL, reason="STEWARD_TEST_DATABASE_URL not set"),
        ],
    ),
]


@pytest.fixture(params=DIALECTS)
def empty_database_url(request, tmp_path) -> Iterator[str]:
    """An empty database of each dialect, with no schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'steward-test.db'}"
    else:
        yield from fresh_postgres_database()


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """A migrated database of each dialect."""
    upgrade(empty_database_url)
    return empty_database_url


@pytest.fixture
def engine(database_url: str):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()
