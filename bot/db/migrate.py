"""Alembic driven from code: `steward db upgrade`, the embedded default, and tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Percent signs in URLs (encoded passwords) would be read as interpolation.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def ensure_schema(engine, *, upgrade: bool) -> None:
    """Bring the embedded database up to date, or refuse to run on a stale schema.

    Production databases are migrated by `steward db upgrade` (the Procfile's release
    phase), never implicitly by whichever process happens to start first.
    """
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return
    if upgrade:
        config = alembic_config(engine.url.render_as_string(hide_password=False))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        return
    raise RuntimeError(
        f"database schema is at revision {current or 'none'}, this version needs {head}: "
        "run `steward db upgrade`"
    )
