"""`steward db revision`: Alembic autogenerate against the models, through the CLI.

Against a fully migrated database it finds nothing to do (the models and the migrations
agree, on SQLite and PostgreSQL); a database that drifted from the models is named."""

from __future__ import annotations

import ast
from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from bot.cli.main import app
from bot.db.engine import make_engine
from bot.db.migrate import head_revision, next_revision_id


def steward(*args: str):
    return CliRunner().invoke(app, ["db", *args], catch_exceptions=False)


def functions(path: Path) -> dict[str, list[str]]:
    tree = ast.parse(path.read_text())
    return {node.name: [ast.unparse(s) for s in node.body]
            for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_autogenerate_on_a_migrated_database_is_empty(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("STEWARD_DATABASE_URL", database_url)
    checked = steward("revision", "--check")
    assert checked.exit_code == 0, checked.stderr
    assert "models and migrations agree" in checked.stderr

    result = steward("revision", "-m", "nothing to do", "--directory", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    [written] = tmp_path.glob("*.py")
    assert written.name == f"{next_revision_id()}_nothing_to_do.py" and str(written.name) in result.stderr.replace("\n", "")
    body = functions(written)
    assert body["upgrade"] == ["pass"] and body["downgrade"] == ["pass"]
    text_ = written.read_text()
    assert f"down_revision: str | None = '{head_revision()}'" in text_


def test_drift_is_named_and_becomes_a_migration(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("STEWARD_DATABASE_URL", database_url)
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE account ADD COLUMN nickname VARCHAR(20)"))
    engine.dispose()
    checked = steward("revision", "--check")
    assert checked.exit_code == 1
    assert "models and migrations differ" in checked.stderr and "nickname" in checked.stderr

    result = steward("revision", "-m", "drop nickname", "--directory", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    [written] = tmp_path.glob("*.py")
    upgrade = " ".join(functions(written)["upgrade"])  # batch mode on SQLite, plain ALTER on PostgreSQL
    assert "drop_column('nickname')" in upgrade or "drop_column('account', 'nickname')" in upgrade


def test_a_database_behind_head_is_refused(empty_database_url, tmp_path, monkeypatch):
    from bot.db.migrate import upgrade

    upgrade(empty_database_url, "0010")
    monkeypatch.setenv("STEWARD_DATABASE_URL", empty_database_url)
    result = steward("revision", "-m", "too early", "--directory", str(tmp_path))
    assert result.exit_code == 2
    assert "steward db upgrade" in result.stderr and not list(tmp_path.glob("*.py"))


def test_a_revision_needs_a_message(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("STEWARD_DATABASE_URL", database_url)
    result = steward("revision", "--directory", str(tmp_path))
    assert result.exit_code == 2 and "steward db revision -m" in result.stderr
    assert not list(tmp_path.glob("*.py"))
