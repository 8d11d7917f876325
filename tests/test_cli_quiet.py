"""A command that cannot run says one line and leaves nothing behind; a long-running one
logs its own steps, not Alembic's migration chatter. `steward` as a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.db.migrate import upgrade
from tests.test_cli_errors import one_line_error, run

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/activity"
EVENTS_ENV = {"STEWARD_SECURITY_CHANNEL": "C123", "STEWARD_ACTIVITY_QUEUE_URL": QUEUE}
NO_CREDENTIALS_CASES = {"events --once": (["events", "--once"], EVENTS_ENV),
                        "usage collect": (["usage", "collect"], {}),
                        "scan": (["scan"], {})}


@pytest.mark.parametrize("case", NO_CREDENTIALS_CASES)
def test_no_aws_credentials_is_one_line_and_creates_no_database(tmp_path: Path, case: str) -> None:
    args, env = NO_CREDENTIALS_CASES[case]
    result = run(args, tmp_path, **env)
    one_line_error(result, 2, "no AWS credentials found")
    assert not (tmp_path / "steward.db").exists()
    assert "alembic" not in result.stderr.lower() and " INFO " not in result.stderr


@pytest.mark.parametrize("case", NO_CREDENTIALS_CASES)
def test_no_aws_credentials_with_a_database_is_one_line(tmp_path: Path, case: str) -> None:
    args, env = NO_CREDENTIALS_CASES[case]
    upgrade(f"sqlite:///{tmp_path / 'steward.db'}")
    result = run(args, tmp_path, **env)
    one_line_error(result, 2, "no AWS credentials found")
    assert "alembic" not in result.stderr.lower() and " INFO " not in result.stderr


def test_events_migrates_the_database_without_alembic_chatter(tmp_path: Path) -> None:
    """Credentials present, the queue unreachable: the database is created and migrated in
    silence (its INFO lines are the process's own; `--verbose` shows Alembic's)."""
    env = {**EVENTS_ENV, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    result = run(["events", "--once", "--wait", "0"], tmp_path, **env)
    assert result.returncode == 1, result.stderr
    assert (tmp_path / "steward.db").exists()
    assert "alembic" not in result.stderr.lower(), result.stderr
    verbose = run(["--verbose", "events", "--once", "--wait", "0"], tmp_path, **env)
    assert "alembic" in verbose.stderr.lower()
