"""`steward serve`: the WSGI app (bot/run/web.py) under gunicorn, started from Python.

Process model — per-worker app creation, no preload
----------------------------------------------------
The master process *checks* everything before it forks, then each worker *builds* its own
runtime after the fork:

* master, before binding the port (``check_startup``): the settings are complete, Slack
  accepts the bot token (``auth.test``), and the database answers with its schema at head
  (the embedded SQLite default is migrated here, once, so that workers never race each
  other through Alembic). A problem ends the command with one clear line and a non-zero
  exit *before* anything listens. The engine and client used for this are thrown away.
* each worker, after the fork (``StewardServer.load``): ``build_runtime`` makes its own
  SQLAlchemy engine (connection pool), Slack ``WebClient``, owner cache and Bolt ``App``
  (whose constructor calls ``auth.test`` once per worker).

Why not ``preload_app``: a preloaded app would share across ``fork()`` the engine's pooled
connections (two processes on one PostgreSQL socket corrupt each other's protocol state;
SQLite handles must never cross a fork), the owner cache's lock, and Bolt's listener
thread pool. Each of these can be repaired after the fork (``engine.dispose(close=False)``
and so on), but one forgotten object is a heisenbug in production; building everything
per worker costs one ``auth.test`` and a few MB per worker and has no such trap.

Concurrency: the ``gthread`` worker, ``workers`` processes (default ``$WEB_CONCURRENCY``
or 2) with ``threads`` threads each (default ``$STEWARD_WEB_THREADS`` or 8). Slash
command handlers are I/O bound (database, Slack lookups) and Bolt runs listeners in its
own thread pool, so threads are the cheap way to overlap them; processes add CPU and
isolation. The worker's main thread keeps heart-beating while a long ``/iam scan`` runs
in Bolt's pool, so gunicorn's ``timeout`` does not kill it.

Shutdown: gunicorn's arbiter handles ``SIGTERM`` as a graceful stop — it stops
accepting, lets in-flight requests finish for up to ``graceful_timeout`` seconds, then
exits 0 (``SIGINT``/``SIGQUIT`` stop at once).

Logs: the access log (stderr) records client address, method, *path without the query
string*, status, size and duration — never headers (the signature, any Authorization),
the query string, or the body (slash command text, interaction payloads). Gunicorn's
control socket is disabled (it would be one shared path in ``$HOME`` for every instance).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from gunicorn.app.base import BaseApplication

from bot.config import Settings, SettingsError

log = logging.getLogger(__name__)

DEFAULT_PORT = 3000
DEFAULT_HOST = "0.0.0.0"  # a platform router (Heroku, ECS) connects from outside the container
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
SERVE_SETTINGS = ("slack_bot_token", "slack_signing_secret")


class StartupError(RuntimeError):
    """The server cannot start; the message is one line naming what is wrong."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise StartupError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 1:
        raise StartupError(f"{name} must be at least 1")
    return value


@dataclass(frozen=True)
class ServeOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int | None = None  # None: $WEB_CONCURRENCY or 2
    threads: int | None = None  # None: $STEWARD_WEB_THREADS or 8
    timeout: int = 60
    graceful_timeout: int = 30
    access_log: bool = True

    def gunicorn_config(self) -> dict[str, Any]:
        return {
            "bind": [f"{self.host}:{self.port}"],
            "workers": self.workers or _env_int("WEB_CONCURRENCY", 2),
            "worker_class": "gthread",
            "threads": self.threads or _env_int("STEWARD_WEB_THREADS", 8),
            "timeout": self.timeout,
            "graceful_timeout": self.graceful_timeout,
            "keepalive": 5,
            "preload_app": False,
            "accesslog": "-" if self.access_log else None,
            "access_log_format": ACCESS_LOG_FORMAT,
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": "steward-serve",
            "control_socket_disable": True,
            "child_exit": _metrics_child_exit,
        }


def _metrics_child_exit(_server, worker) -> None:
    """A finished worker's live gauges leave the metrics (its counters stay summed)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


class StewardServer(BaseApplication):
    """gunicorn driven from code: no config file, no command-line parsing."""

    def __init__(self, settings: Settings, options: ServeOptions):
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        known = self.cfg.settings
        for key, value in self.options.gunicorn_config().items():
            if key in known and value is not None:
                self.cfg.set(key, value)

    def load(self):
        """Called in each worker after the fork (``preload_app`` is off)."""
        return build_wsgi_app(self.settings)


def build_wsgi_app(settings: Settings):
    from bot.run.runtime import build_runtime
    from bot.run.web import create_wsgi_app

    runtime = build_runtime(settings)
    return create_wsgi_app(runtime.app(), runtime.engine,
                           slack_health=slack_health(settings, runtime.client, runtime.engine),
                           metrics_token=settings.metrics_token)


def slack_health(settings: Settings, client, engine=None):
    """The Slack part of /healthz: the doctor's Slack checks, refreshed in the background;
    each change (broken, or whole again) is also an audit event when `engine` is given."""
    from bot.slack.health import SlackChecks, SlackHealth
    from bot.slack.manifest import needed_scopes

    checks = SlackChecks(settings, client, needed_scopes())
    return SlackHealth(lambda: checks.run(delivery=False),
                       on_change=(lambda failed: record_setup_change(engine, failed)) if engine else None)


def record_setup_change(engine, failed) -> None:
    from bot.db import audit
    from bot.db.engine import session_scope

    with session_scope(engine) as session:
        audit.record(session, actor="system",
                     action=audit.AuditAction.SETUP_DEGRADED if failed else audit.AuditAction.SETUP_RESTORED,
                     payload={"problems": [f"{c.name}: {c.detail}" for c in failed]})


def check_startup(settings: Settings, *, required: tuple[str, ...] = SERVE_SETTINGS) -> None:
    """Fail fast, in the master, with one line: settings, Slack token, database (in that
    order, so a wrong token does not leave a freshly created SQLite file behind)."""
    try:
        settings.require(*required)
    except SettingsError as exc:
        raise StartupError(str(exc)) from None
    check_slack(settings)
    check_database(settings)


def check_database(settings: Settings) -> None:
    from bot.db.engine import make_engine
    from bot.db.migrate import ensure_schema

    engine = make_engine(settings.effective_database_url)
    try:
        ensure_schema(engine, upgrade=settings.uses_embedded_database)
    except RuntimeError as exc:  # stale schema: the message says to run `steward db upgrade`
        raise StartupError(str(exc)) from None
    except Exception as exc:
        # Not the exception text: it may contain the URL with its password.
        raise StartupError(
            f"cannot use the database in STEWARD_DATABASE_URL ({type(exc).__name__})"
        ) from None
    finally:
        engine.dispose()


def check_slack(settings: Settings) -> None:
    from slack_sdk.errors import SlackApiError

    from bot.slack.client import make_web_client

    client = make_web_client(settings, timeout=10)
    try:
        client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else "unknown_error"
        raise StartupError(f"Slack rejected SLACK_BOT_TOKEN: {error}") from None
    except Exception as exc:
        raise StartupError(
            f"cannot reach Slack at SLACK_API_URL ({settings.slack_api_url}): {type(exc).__name__}"
        ) from None


def serve(
    settings: Settings, port: int = DEFAULT_PORT, *, host: str = DEFAULT_HOST, **options: Any
) -> None:
    """Check, then serve until SIGTERM. Raises StartupError before binding the port."""
    if settings.metrics_token and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Before anything imports prometheus_client (it picks its value class then): counters
        # live in files every worker writes, and a scrape answered by any one worker sums them.
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="steward-metrics-")
    check_startup(settings)
    StewardServer(settings, ServeOptions(host=host, port=port, **options)).run()
