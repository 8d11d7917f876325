"""`steward socket`: the same Bolt app over Socket Mode (no public HTTP endpoint).

Slack hands out the WebSocket URL through the Web API method ``apps.connections.open``
called with the app-level token (``xapp-...``). slack_sdk's builtin ``SocketModeClient``
calls it through its ``web_client`` (``issue_new_wss_url``), so the URL comes from
wherever that client's ``base_url`` points: we pass the runtime's client, built from
``SLACK_API_URL`` (the local fake in tests and the demo), rather than letting the handler
fall back to a default ``WebClient()`` on slack.com. The returned URL is used as is, so a
``ws://127.0.0.1:...`` URL from the fake works (the builtin client skips TLS off port 443).

The builtin client has no dependency beyond slack_sdk, reconnects by itself (on a
``disconnect`` message, a closed socket, or missed pongs) and fetches a fresh URL each
time. Envelopes are not signed — the socket itself is authenticated by the app token — so
the Bolt app is built with request verification off (``create_app(socket_mode=True)``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket as stdlib_socket
import threading

from bot.config import Settings, SettingsError
from bot.run.serve import StartupError, check_database, check_slack

log = logging.getLogger(__name__)

SOCKET_SETTINGS = ("slack_bot_token", "slack_app_token")


def check_socket_startup(settings: Settings) -> None:
    """Settings first (one line naming what is missing), then the bot token and the database."""
    try:
        settings.require(*SOCKET_SETTINGS)
    except SettingsError as exc:
        raise StartupError(str(exc)) from None
    if not (settings.slack_app_token or "").startswith("xapp-"):
        raise StartupError("SLACK_APP_TOKEN must be an app-level token (xapp-...)")
    check_slack(settings)
    check_database(settings)


def run_socket_mode(
    settings: Settings,
    *,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
    handle_signals: bool | None = None,
) -> None:
    """Connect and serve until ``stop`` is set (or SIGTERM/SIGINT in the main thread).

    ``ready`` is set once the first connection attempt is over. Raises ``bot.run.serve.StartupError``
    when the settings are incomplete, the database or Slack is not usable, or Slack refuses
    the app token.
    """
    check_socket_startup(settings)

    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_sdk.errors import SlackApiError

    from bot.run.runtime import build_runtime

    stop = stop or threading.Event()
    runtime = build_runtime(settings)
    try:
        app = runtime.app(socket_mode=True)
        handler = SocketModeHandler(
            app,
            app_token=settings.slack_app_token,
            web_client=runtime.client,  # apps.connections.open goes to SLACK_API_URL
        )
        try:
            handler.connect()
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else "unknown_error"
            handler.close()
            raise StartupError(f"Slack refused Socket Mode for SLACK_APP_TOKEN: {error}") from None
        if not handler.client.is_connected():
            # The URL was issued but the WebSocket failed: the client retries on its own.
            log.warning("Socket Mode connection not established yet; the client keeps retrying")
        if handle_signals is None:
            handle_signals = threading.current_thread() is threading.main_thread()
        previous = _install_signal_handlers(stop) if handle_signals else {}
        try:
            log.info("Socket Mode running")
            if ready is not None:
                ready.set()
            stop.wait()
        finally:
            for signum, handler_before in previous.items():
                signal.signal(signum, handler_before)
            _close(handler)
    finally:
        runtime.engine.dispose()


def _close(handler) -> None:
    """Close the handler promptly.

    The builtin client closes its socket while its reader thread sits in a ``recv`` with
    a 3 s timeout, and ``close()`` joins that thread: shutting the socket down first wakes
    the reader at once (best effort: it reaches into the client's current connection).
    """
    session = getattr(handler.client, "current_session", None)
    sock = getattr(session, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(stdlib_socket.SHUT_RDWR)
    handler.close()


def _install_signal_handlers(stop: threading.Event) -> dict:
    def on_signal(signum, _frame):
        log.info("received %s: closing the Socket Mode connection", signal.Signals(signum).name)
        stop.set()

    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, on_signal)
    return previous
