"""The HTTP face of `steward serve`: one small WSGI application.

Routes:

* ``POST /slack/events`` -> Bolt (slash commands, interactivity and the Events API, all on
  one request URL). The signature and the five-minute window are checked here over the
  raw bytes first (401), then the body's shape (400: bot/slack/inbound.py), then Bolt checks the
  signature again and parses the body with bot.slack.inbound.parse_body (``SlackRequest``).
* ``GET /healthz`` -> ``200 {"status": "ok"}`` after a real ``SELECT 1`` on the database,
  ``503 {"status": "unavailable", "reason": ...}`` otherwise. With a Slack health source it
  also says ``"slack": "ok"`` or ``"degraded: scopes, security channel (run `steward doctor`)"``
  and stays 200: the process is alive and serving; the Slack app's setup needs a person.
* ``GET /metrics`` -> Prometheus metrics (bot/run/metrics.py), only with
  ``Authorization: Bearer $STEWARD_METRICS_TOKEN``; ``404`` when no token is configured.
* anything else -> ``404``.

Error answers are short fixed JSON: never an exception text, a stack trace, a database URL
or anything from the request (bodies carry tokens and people's data). Details go to the log
as the exception type only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.response import BoltResponse
from sqlalchemy import Engine, text

from bot.slack.inbound import Malformed, SlackRequest, check_shape, check_signature, parse_body

log = logging.getLogger(__name__)

SLACK_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"  # served by bot.run.metrics.metrics_app
#: Slack's payloads are a few KiB (a modal submission with its whole view is the largest);
#: anything bigger is not from Slack and is refused before it is read.
MAX_BODY_BYTES = 1024 * 1024

StartResponse = Callable[..., Any]


def _json(
    start_response: StartResponse,
    status: str,
    body: dict[str, Any],
    extra_headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    data = json.dumps(body).encode("utf-8")
    headers = [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Content-Length", str(len(data))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        *extra_headers,
    ]
    start_response(status, headers)
    return [data]


def _refusal(status: int, error: str) -> BoltResponse:
    return BoltResponse(status=status, body=json.dumps({"error": error}),
                        headers={"content-type": "application/json; charset=utf-8"})


class CheckedSlackHandler(SlackRequestHandler):
    """Bolt's WSGI handler with the checks of bot/slack/inbound.py in front of ``app.dispatch``."""

    def __init__(self, app: App, signing_secret: str, path: str = SLACK_PATH):
        super().__init__(app, path=path)
        self.signing_secret = signing_secret

    def dispatch(self, request) -> BoltResponse:
        environ = request.environ
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        if not check_signature(self.signing_secret, raw, environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP"),
                               environ.get("HTTP_X_SLACK_SIGNATURE")):
            return _refusal(401, "invalid request")
        try:
            text = raw.decode("utf-8")
            check_shape(parse_body(text, environ.get("CONTENT_TYPE")))
        except (UnicodeDecodeError, Malformed) as exc:
            log.info("refused a malformed Slack request: %s", exc)
            return _refusal(400, "bad request")
        return self.app.dispatch(SlackRequest(body=text, query=request.query_string,
                                              headers=request.get_headers()))


class StewardWSGI:
    """The WSGI callable. ``bolt_app`` handles Slack; ``engine`` answers the health check."""

    def __init__(self, bolt_app: App, engine: Engine, *, signing_secret: str | None = None,
                 max_body_bytes: int = MAX_BODY_BYTES, slack_health: Callable[[], str] | None = None,
                 metrics_token: str | None = None):
        # Bolt keeps the secret it verifies with; the same one is checked here first.
        secret = signing_secret or bolt_app._signing_secret
        self.bolt = CheckedSlackHandler(bolt_app, secret, path=SLACK_PATH)
        self.engine = engine
        self.slack_health = slack_health
        self.max_body_bytes = max_body_bytes
        self.metrics_token = metrics_token

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET").upper()
        try:
            if path == SLACK_PATH:
                return self._slack(environ, start_response, method)
            if path == HEALTH_PATH:
                return self._health(start_response, method)
            if path == METRICS_PATH and self.metrics_token:
                from bot.run.metrics import metrics_app

                return metrics_app(self.engine, self.metrics_token)(environ, start_response)
            return _json(start_response, "404 Not Found", {"error": "not found"})
        except Exception as exc:  # last line of defence: log the type, answer nothing useful
            log.error(
                "request to %s failed: %s",
                path,
                type(exc).__name__,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            return _json(start_response, "500 Internal Server Error", {"error": "internal error"})

    # ---------------------------------------------------------------------------------

    def _slack(
        self, environ: dict[str, Any], start_response: StartResponse, method: str
    ) -> Iterable[bytes]:
        if method != "POST":
            return _json(
                start_response,
                "405 Method Not Allowed",
                {"error": "method not allowed"},
                [("Allow", "POST")],
            )
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _json(start_response, "400 Bad Request", {"error": "bad request"})
        if length > self.max_body_bytes:
            return _json(start_response, "413 Content Too Large", {"error": "request too large"})
        return self.bolt(environ, start_response)

    def _health(self, start_response: StartResponse, method: str) -> Iterable[bytes]:
        if method not in ("GET", "HEAD"):
            return _json(
                start_response,
                "405 Method Not Allowed",
                {"error": "method not allowed"},
                [("Allow", "GET, HEAD")],
            )
        reason = database_problem(self.engine)
        if reason is not None:
            return _json(
                start_response,
                "503 Service Unavailable",
                {"status": "unavailable", "reason": reason},
            )
        body = {"status": "ok"}
        if self.slack_health is not None:
            body["slack"] = self.slack_health()
        return _json(start_response, "200 OK", body)


def database_problem(engine: Engine) -> str | None:
    """None when ``SELECT 1`` works; otherwise a reason safe to show to anyone."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1")).scalar_one()
    except Exception as exc:
        # The exception text can contain the URL, user name or host: log only its type.
        log.warning("health check: database unavailable (%s)", type(exc).__name__)
        return "database unavailable"
    return None


def create_wsgi_app(bolt_app: App, engine: Engine, slack_health: Callable[[], str] | None = None, *,
                    signing_secret: str | None = None, metrics_token: str | None = None) -> StewardWSGI:
    return StewardWSGI(bolt_app, engine, signing_secret=signing_secret, slack_health=slack_health,
                       metrics_token=metrics_token)
