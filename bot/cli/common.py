"""What every `steward` subcommand shares: consoles, one-line errors, settings, the database."""

from __future__ import annotations

import getpass
import logging
from pathlib import Path

import typer
from rich.console import Console

from bot.config import Settings, SettingsError, load_settings

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: message` on stderr; raise the returned Exit. 2 = usage/settings."""
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise fail(str(exc)) from None


def require_aws_credentials() -> None:
    """No credentials at all is a settings problem, said once, before anything is tried or
    created (no database, no failed scan of an account nobody could name): exit 2."""
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        credentials = boto3.Session().get_credentials()
    except BotoCoreError as exc:  # a broken profile in ~/.aws/config
        raise fail(f"AWS configuration: {exc}") from None
    if credentials is None:
        from bot.config import NO_AWS_CREDENTIALS

        raise fail(NO_AWS_CREDENTIALS)


#: Libraries whose INFO lines are chatter, not what the process does (Alembic lists every
#: migration step and plugin); `steward --verbose` shows them.
QUIET_LOGGERS = ("alembic",)


def log_what_it_does() -> None:
    """A long-running process (`steward worker`, `steward events`) logs its own steps at INFO;
    the libraries in QUIET_LOGGERS stay at WARNING unless `--verbose` asked for everything."""
    root = logging.getLogger()
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def engine_for(settings: Settings, *, create: bool = False):
    """The database engine, with the schema checked (the embedded SQLite one is migrated).

    Only commands that write what they found (`steward scan`) may create the database
    (`create=True`). Every other command needs one that exists and has Steward's schema:
    an empty or missing store is an error, never a clean answer about nothing (docs/architecture.md §7, invariant 4).
    Other database errors (URL, credentials, reachability) reach `main` and become one line.
    """
    from bot.db.engine import make_engine
    from bot.db.migrate import current_revision, ensure_schema

    url = settings.effective_database_url
    if not create:
        path = sqlite_file(url)
        if path is not None and not path.exists():
            if settings.database_url:
                raise fail(f"no database at {path} (STEWARD_DATABASE_URL); run `steward db upgrade` to create it")
            raise fail("no database: STEWARD_DATABASE_URL is not set and there is no ./steward.db here "
                       "(run `steward scan` first, or set STEWARD_DATABASE_URL)")
    engine = make_engine(url)
    try:
        empty = not create and current_revision(engine) is None
        if not empty:
            ensure_schema(engine, upgrade=settings.uses_embedded_database)
    except RuntimeError as exc:  # a stale schema: the message says to run `steward db upgrade`
        engine.dispose()
        raise fail(str(exc)) from None
    except BaseException:
        engine.dispose()
        raise
    if empty:
        engine.dispose()
        raise fail("the database in STEWARD_DATABASE_URL is empty (no Steward schema): "
                   "run `steward db upgrade`, then `steward scan`")
    return engine


def sqlite_file(url: str) -> Path | None:
    """The file behind a SQLite URL (None for other databases and in-memory ones)."""
    from sqlalchemy.engine import make_url

    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def cli_actor() -> str:
    """Who runs the CLI, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user database entry (some containers)
        return "cli"
