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
    one_line_error(result, 1, "cannot reach AWS", "127.0.0.1:9")
    assert (tmp_path / "steward.db").exists()
    assert "alembic" not in result.stderr.lower(), result.stderr
    verbose = run(["--verbose", "events", "--once", "--wait", "0"], tmp_path, **env)
    assert "alembic" in verbose.stderr.lower()


# ---------------------------------------------------------------------------------------
# Operator mistakes: the same exit status everywhere, help that reads cleanly


UNKNOWN_IDS = [["undo", "999"], ["remediate", "999", "deactivate-access-key"], ["remediate", "abcdef123456", "x"],
               ["review", "export", "999", "--format", "csv"], ["review", "close", "999"], ["scan", "--cancel", "999"]]


def test_an_unknown_id_is_bad_usage_everywhere(tmp_path: Path) -> None:
    upgrade(f"sqlite:///{tmp_path / 'steward.db'}")
    for args in UNKNOWN_IDS:
        result = run(args, tmp_path)
        one_line_error(result, 2)
        assert "999" in result.stderr or "abcdef123456" in result.stderr
        assert "not open" not in result.stderr, result.stderr  # an id that does not exist says so


def test_a_wrong_demo_host_names_the_host_not_the_port() -> None:
    pytest.importorskip("moto")
    from typer.testing import CliRunner

    from bot.cli.main import app

    result = CliRunner().invoke(app, ["demo", "--no-browser", "--host", "999.1.1.1"])
    assert result.exit_code == 2, result.output
    assert "--host '999.1.1.1'" in result.stderr and "--port" not in result.stderr


HELP_PAGES = [[], ["scan"], ["events"], ["serve"], ["findings"], ["usage"], ["usage", "collect"], ["review"], ["db"],
              ["audit"], ["demo"]]


@pytest.mark.parametrize("args", HELP_PAGES, ids=lambda a: " ".join(a) or "steward")
def test_help_summaries_are_one_line_each(args: list[str]) -> None:
    import re

    from typer.testing import CliRunner

    from bot.cli.main import app

    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    commands = result.output.split("Commands", 1)[1] if "Commands" in result.output else ""
    continued = [line for line in commands.splitlines() if re.match(r"^│ {5,}\S", line)]
    assert continued == [], continued  # each command's summary is one line
