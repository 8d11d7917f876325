"""What every `steward` subcommand shares: consoles, one-line errors, settings, the database."""

from __future__ import annotations

import getpass

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


def engine_for(settings: Settings):
    """The database engine, with the schema checked (the embedded SQLite one is migrated)."""
    from bot.db.engine import make_engine
    from bot.db.migrate import ensure_schema

    engine = make_engine(settings.effective_database_url)
    try:
        ensure_schema(engine, upgrade=settings.uses_embedded_database)
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    return engine


def cli_actor() -> str:
    """Who runs the CLI, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user database entry (some containers)
        return "cli"
