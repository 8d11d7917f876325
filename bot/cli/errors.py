"""Exceptions that escape a `steward` command -> one line and an exit status (pure).

2: the settings or the command line are wrong (a malformed or unsupported database URL,
credentials the database or Slack refuse, a path that cannot be written) — fix them and run
again. 1: something failed at run time (the database or Slack unreachable, a query failed).
Messages name the setting or the path; never the URL itself (it can hold a password), never
a traceback (`steward --debug ...` shows it).
"""

from __future__ import annotations

SETTINGS, RUNTIME = 2, 1
DB = "STEWARD_DATABASE_URL"
SUPPORTED = "postgresql+psycopg://… or sqlite:///path"


def describe(exc: BaseException) -> tuple[str, int]:
    for kind, explain in _EXPLAINERS:
        if _is(exc, kind):
            return explain(exc)
    return f"unexpected {type(exc).__name__}: {_first_line(exc)} (run with --debug for the traceback)", RUNTIME


def _is(exc: BaseException, dotted: str) -> bool:
    return any(f"{c.__module__}.{c.__qualname__}" == dotted for c in type(exc).__mro__)


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]


def _no_module(exc) -> tuple[str, int]:
    dialect = _first_line(exc).rsplit(":", 1)[-1].strip()
    return f"{DB}: unsupported database {dialect!r} (use {SUPPORTED})", SETTINGS


def _argument(exc) -> tuple[str, int]:
    return f"{DB} is not a database URL SQLAlchemy can read (use {SUPPORTED})", SETTINGS


def _operational(exc) -> tuple[str, int]:
    text = str(getattr(exc, "orig", exc)).lower()
    if ("authentication failed" in text or "no password" in text
            or ("role" in text and "does not exist" in text)):
        return f"the database in {DB} refused the user name or password", SETTINGS
    if "does not exist" in text and "database" in text:
        return f"the database named in {DB} does not exist on that server", SETTINGS
    if "unable to open database file" in text:
        return f"cannot open the SQLite file in {DB} (does its directory exist, and may Steward write there?)", SETTINGS
    if "readonly database" in text or "read-only" in text:
        return f"the SQLite file in {DB} is read-only", SETTINGS
    if "locked" in text:
        return "the database is locked by another process; try again in a minute", RUNTIME
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return f"the database in {DB} has no Steward schema: run `steward db upgrade`", SETTINGS
    return f"cannot reach the database in {DB} ({type(getattr(exc, 'orig', exc)).__name__})", RUNTIME


def _sqlalchemy(exc) -> tuple[str, int]:
    return f"database error ({type(exc).__name__}) with the database in {DB}", RUNTIME


def _slack(exc) -> tuple[str, int]:
    code = exc.response.get("error") if getattr(exc, "response", None) is not None else None
    if code in ("invalid_auth", "not_authed", "token_revoked", "account_inactive", "not_allowed_token_type"):
        return f"Slack rejected SLACK_BOT_TOKEN: {code}", SETTINGS
    if code in ("channel_not_found", "not_in_channel"):
        return f"Slack refused to post: {code} (check STEWARD_SECURITY_CHANNEL and invite the bot)", SETTINGS
    return f"Slack refused a call: {code or 'unknown error'}", RUNTIME


def _no_credentials(exc) -> tuple[str, int]:
    from bot.config import NO_AWS_CREDENTIALS

    return NO_AWS_CREDENTIALS, SETTINGS


def _aws_unreachable(exc) -> tuple[str, int]:
    return f"cannot reach AWS: {_first_line(exc)}", RUNTIME


def _os_error(exc: OSError) -> tuple[str, int]:
    if exc.filename:
        return f"{exc.filename}: {exc.strerror or type(exc).__name__}", SETTINGS
    return f"{type(exc).__name__}: {exc.strerror or _first_line(exc)}", RUNTIME


def _url_error(exc) -> tuple[str, int]:
    return f"cannot reach Slack at SLACK_API_URL ({type(getattr(exc, 'reason', exc)).__name__})", RUNTIME


def _url(exc) -> tuple[str, int]:
    return str(exc), SETTINGS


_EXPLAINERS = (
    ("bot.db.engine.DatabaseURLError", _url),
    ("sqlalchemy.exc.NoSuchModuleError", _no_module),
    ("sqlalchemy.exc.ArgumentError", _argument),
    ("sqlalchemy.exc.OperationalError", _operational),
    ("sqlalchemy.exc.SQLAlchemyError", _sqlalchemy),
    ("slack_sdk.errors.SlackApiError", _slack),
    ("botocore.exceptions.NoCredentialsError", _no_credentials),
    ("botocore.exceptions.EndpointConnectionError", _aws_unreachable),
    ("urllib.error.URLError", _url_error),
    ("builtins.OSError", _os_error),
)
