"""Operator errors are one line: `steward` as a subprocess against broken settings.

Each case: the exit status (2 settings, 1 run time), `error: ...` naming the setting or
path, no traceback, and no database file left behind by a command that only reads.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bot.db.migrate import upgrade
from tests.bot.test_serve_http import clean_env, steward_command
from tests.conftest import PG_URL

READERS = [["audit", "verify"], ["audit", "export"], ["findings"], ["remediate", "1", "deactivate-key"], ["undo", "1"],
           ["notify"], ["reconcile"]]
UNREACHABLE_PG = "postgresql+psycopg://steward:secret@127.0.0.1:9/steward"


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full = clean_env(**{"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_API_URL": "http://127.0.0.1:9/api/",
                        "AWS_CONFIG_FILE": str(cwd / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(cwd / "none"),
                        "AWS_EC2_METADATA_DISABLED": "true", **env})
    return subprocess.run([*steward_command(), *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr and 'File "' not in result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert "secret" not in result.stderr  # the password in a URL is never shown


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_readers_never_create_a_database(tmp_path: Path, args: list[str]) -> None:
    result = run(args, tmp_path)
    one_line_error(result, 2, "no database", "STEWARD_DATABASE_URL")
    assert not (tmp_path / "steward.db").exists()


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_readers_refuse_an_empty_database(tmp_path: Path, args: list[str]) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    result = run(args, tmp_path, STEWARD_DATABASE_URL=f"sqlite:///{empty}")
    one_line_error(result, 2, "empty", "steward db upgrade")


def test_verify_of_an_empty_log_proves_nothing(tmp_path: Path) -> None:
    """A migrated database with no audit event: a wiped log looks exactly like this."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(url)
    one_line_error(run(["audit", "verify"], tmp_path, STEWARD_DATABASE_URL=url), 1, "audit log is empty")


@pytest.mark.parametrize("args", [["audit", "verify"], ["notify"]], ids=" ".join)
def test_readers_refuse_a_missing_sqlite_file(tmp_path: Path, args: list[str]) -> None:
    result = run(args, tmp_path, STEWARD_DATABASE_URL=f"sqlite:///{tmp_path / 'nope.db'}")
    one_line_error(result, 2, "no database at", "nope.db")
    assert not (tmp_path / "nope.db").exists()


DATABASE_CASES = [
    ("mysql", "mysql://steward:secret@127.0.0.1/steward", 2, "unsupported database 'mysql'"),
    ("malformed", "not a url at all", 2, "is not a database URL"),
    ("unwritable-sqlite", "sqlite:////nonexistent/dir/steward.db", 2, "SQLite file"),
    ("unreachable", UNREACHABLE_PG, 1, "cannot reach the database"),
]


@pytest.mark.parametrize("args", [["db", "upgrade"], ["audit", "verify"], ["scan", "--account", "123456789012"]],
                         ids=" ".join)
@pytest.mark.parametrize(("url", "code", "needle"), [c[1:] for c in DATABASE_CASES],
                         ids=[c[0] for c in DATABASE_CASES])
def test_database_errors_are_one_line(tmp_path: Path, args, url: str, code: int, needle: str) -> None:
    env = {"STEWARD_DATABASE_URL": url}
    if args[0] == "scan":
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    result = run(args, tmp_path, **env)
    if args[0] == "audit" and url.startswith("sqlite"):
        one_line_error(result, 2, "no database at")  # a reader does not even try to create it
    else:
        one_line_error(result, code, needle)


@pytest.mark.skipif(not PG_URL, reason="STEWARD_TEST_DATABASE_URL not set")
def test_refused_credentials_name_the_setting(tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL).set(username="no_such_role_x", password="secret").render_as_string(hide_password=False)
    one_line_error(run(["audit", "verify"], tmp_path, STEWARD_DATABASE_URL=url), 2, "STEWARD_DATABASE_URL")


@pytest.mark.skipif(not PG_URL, reason="STEWARD_TEST_DATABASE_URL not set")
def test_a_schema_too_old_says_to_upgrade(tmp_path: Path) -> None:
    """(The embedded SQLite default is brought up to date instead.)"""
    from tests.databases import scratch_postgres

    with scratch_postgres(PG_URL) as url:
        upgrade(url, "0001")
        one_line_error(run(["audit", "verify"], tmp_path, STEWARD_DATABASE_URL=url), 2, "steward db upgrade")


def test_unwritable_chart_path(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    upgrade(url)
    result = run(["digest", "--chart", "/nonexistent/x.png"], tmp_path, STEWARD_DATABASE_URL=url)
    one_line_error(result, 2, "/nonexistent/x.png")


def test_no_aws_credentials_is_a_settings_error_without_a_phantom_scan(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    upgrade(url)
    result = run(["scan"], tmp_path, STEWARD_DATABASE_URL=url)
    one_line_error(result, 2, "no AWS credentials")
    assert "scan failed" not in result.stderr
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM scan")).scalar_one() == 0
        assert connection.execute(text("SELECT count(*) FROM audit_event WHERE account = 'unknown'")).scalar_one() == 0
    engine.dispose()


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run(["--debug", "findings"], tmp_path, STEWARD_DATABASE_URL="mysql://u:p@h/d")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_slack_refusing_the_token_is_one_line(tmp_path: Path) -> None:
    from sandbox.slack_fake import SlackFake

    url = f"sqlite:///{tmp_path / 's.db'}"
    upgrade(url)
    with SlackFake() as fake:
        channel = fake.add_channel("security")
        result = run(["digest", "--post"], tmp_path, STEWARD_DATABASE_URL=url, SLACK_BOT_TOKEN="xoxb-wrong",
                     SLACK_API_URL=fake.base_url, STEWARD_SECURITY_CHANNEL=channel)
    one_line_error(result, 2, "SLACK_BOT_TOKEN", "invalid_auth")
