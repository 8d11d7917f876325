"""The local Slack's transport: the HTTP server and its routes, and what happens to a Web
API call before its method runs -- the token (unknown, revoked, app-level or not), the
scopes it was granted (`missing_scope`), injected faults and rate budgets (`429` with
`Retry-After`), and the record of every call. Fault injection (`fail`, `rate_limit`,
`set_rate`) lives here too.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import json
import math
import socketserver
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, parse_qsl, urlsplit

from bot.slack.methods import METHODS, TIER_PER_MINUTE
from sandbox.slack.common import APP_TOKEN_METHODS, Budget, Call, Fault, Reply, SlackError
from sandbox.slack.socket_mode import SocketConnection, websocket_accept

# The fake these serve is `sandbox.slack.fake.SlackFake`, typed `Any` here: that module
# puts this one together, so importing it back would be a cycle.
_Fake = Any


class Transport:
    """Serving (start, stop, URLs), the checks every Web API call goes through, fault
    injection. Mixed into `SlackFake`; the state it reads is set up in `state.Workspace`."""

    # ------------------------------------------------------------------ serving

    def start(self) -> Self:
        """Start serving in a daemon thread; returns ``self``. Idempotent."""
        with self._lock:
            if self._server is not None:
                return self
            server = Server((self._host, self._port), Handler)
            server.fake = self
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"slack-fake:{server.server_address[1]}",
                daemon=True,
            )
            self._thread.start()
            return self

    def stop(self) -> None:
        """Stop the server and close its socket. Idempotent; the state is kept."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        for connection in self._live_sockets():
            connection.abort()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SlackFake is not started")
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>/`` (with the trailing slash)."""
        return f"http://{self._host}:{self.port}/"

    @property
    def base_url(self) -> str:
        """The Web API base URL, ending with ``/api/``: ``WebClient(base_url=...)``
        joins it with the method name (``urljoin``), so the trailing slash matters."""
        return f"{self.root_url}api/"

    # ------------------------------------ each Web API call: token, scopes, faults, budgets

    def _record(
        self,
        method: str,
        params: dict[str, Any],
        reply: Reply,
        token: str | None,
        headers: dict[str, str],
    ) -> None:
        self._calls.append(
            Call(
                method=method,
                params=copy.deepcopy(params),
                time=time.time(),
                status=reply.status,
                response=copy.deepcopy(reply.body),
                token=token,
                headers=dict(headers),
            )
        )
        self._notify()

    def _take_fault(self, method: str) -> Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.popleft()
        return fault

    @staticmethod
    def _fault_reply(fault: Fault) -> Reply:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        return Reply(fault.status, {"ok": False, "error": fault.error}, headers)

    def _check_budget(self, method: str, params: dict[str, Any]) -> Reply | None:
        budget = self._budgets.get(method)
        if budget is None and self.rate_limits and method in METHODS:
            facts = METHODS[method]
            budget = self._budgets[method] = Budget(facts.limit_per_minute, 60.0, facts.per_channel)
        if budget is None:
            return None
        key = str(params.get("channel", "")) if budget.per_channel else ""
        hits = budget.hits.setdefault(key, deque())
        now = self._clock()
        while hits and hits[0] <= now - budget.window:
            hits.popleft()
        if len(hits) >= budget.per_minute:
            retry_after = max(1, math.ceil(hits[0] + budget.window - now))
            return Reply(
                429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}
            )
        hits.append(now)
        return None

    def handle_api(
        self,
        method: str,
        params: dict[str, Any],
        token: str | None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Answer one Web API call without HTTP: ``(status, body, headers)``.

        The HTTP server calls this; it is public so a demo can drive the fake in-process.
        """
        with self._changed:
            reply = self._dispatch(method, params, token)
            self._record(method, params, reply, token, headers or {})
            return reply.status, reply.body, reply.headers

    def _dispatch(self, method: str, params: dict[str, Any], token: str | None) -> Reply:
        handler = self._methods.get(method)
        if handler is None:
            return Reply(404, {"ok": False, "error": "unknown_method", "req_method": method})
        if not token:
            return Reply(200, {"ok": False, "error": "not_authed"})
        actor = self._tokens.get(token)
        is_app_token = token in self._app_tokens
        if actor is None and not is_app_token:
            return Reply(200, {"ok": False, "error": "invalid_auth"})
        if (method in APP_TOKEN_METHODS) != is_app_token:
            # Slack: app-level tokens only work with apps.connections.*, and those need one.
            return Reply(200, {"ok": False, "error": "not_allowed_token_type"})
        if token in self._revoked:
            # Slack: a bot token of an uninstalled app (or a deactivated bot) is inactive.
            return Reply(200, {"ok": False, "error": "account_inactive"})
        actor = actor or self.app_id
        granted = self._token_scopes.get(token, self.scopes)
        headers = {} if is_app_token else {"x-oauth-scopes": ",".join(sorted(granted))}
        reply = self._authorised_dispatch(method, handler, params, actor, granted, is_app_token)
        reply.headers = {**headers, **reply.headers}
        return reply

    def _authorised_dispatch(
        self,
        method: str,
        handler: Callable[[dict[str, Any], str], dict[str, Any]],
        params: dict[str, Any],
        actor: str,
        granted: frozenset[str],
        is_app_token: bool,
    ) -> Reply:
        fault = self._take_fault(method)
        if fault is not None:
            return self._fault_reply(fault)
        if not is_app_token:
            refusal = self._scope_refusal(method, params, granted)
            if refusal is not None:
                return refusal
        limited = self._check_budget(method, params)
        if limited is not None:
            return limited
        self._granted = granted  # for handlers whose rules depend on scopes (chat:write.public)
        try:
            body = handler(params, actor)
        except SlackError as exc:
            return Reply(200, {"ok": False, "error": exc.error, **exc.extra})
        return Reply(200, {"ok": True, **body})

    def _conversation_kind(self, method: str, params: dict[str, Any]) -> str | None:
        """The kind of conversation a call acts on (for per-kind scopes), if known."""
        if method == "conversations.open" and not params.get("channel"):
            users = params.get("users")
            count = len(users) if isinstance(users, list) else len(
                [u for u in str(users or "").split(",") if u.strip()])
            return "im" if count <= 1 else "mpim"
        cid = self._resolve_channel(str(params.get("channel") or ""), open_im=False, missing_ok=True)
        if cid is None:
            return None
        ch = self._channels[cid]
        if ch["is_im"]:
            return "im"
        if ch["is_mpim"]:
            return "mpim"
        return "private" if ch["is_private"] else "public"

    def _scope_refusal(self, method: str, params: dict[str, Any], granted: frozenset[str]) -> Reply | None:
        facts = METHODS.get(method)
        if facts is None:
            return None
        needed = facts.needed(self._conversation_kind(method, params) if facts.by_kind else None)
        if not needed or granted.intersection(needed):
            return None
        return Reply(200, {
            "ok": False,
            "error": "missing_scope",
            "needed": ",".join(needed),
            "provided": ",".join(sorted(granted)),
        }, {"x-accepted-oauth-scopes": ",".join(needed)})

    # ------------------------------------------------------------------ fault injection

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with HTTP 429 + ``Retry-After``."""
        self._add_fault(
            method,
            Fault(status=429, error="ratelimited", remaining=times, retry_after=retry_after),
        )

    def fail(
        self, method: str, error: str = "internal_error", status: int = 200, times: int | None = 1
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (``None``: all, until
        :meth:`clear_faults`) with ``{"ok": false, "error": error}`` and HTTP ``status``.

        ``method`` may also be ``"response_url"`` or ``"files.upload_url"``.
        """
        self._add_fault(method, Fault(status=status, error=error, remaining=times))

    def _add_fault(self, method: str, fault: Fault) -> None:
        if fault.remaining is not None and fault.remaining < 1:
            return
        with self._lock:
            self._faults.setdefault(method, deque()).append(fault)

    def clear_faults(self, method: str | None = None) -> None:
        with self._lock:
            if method is None:
                self._faults.clear()
            else:
                self._faults.pop(method, None)

    def set_rate(
        self,
        method: str,
        per_minute: int | None = None,
        *,
        tier: int | None = None,
        per_channel: bool = False,
        window: float = 60.0,
    ) -> None:
        """Simulate a rate budget for ``method``: at most ``per_minute`` calls in any
        sliding ``window`` seconds; calls over it answer 429 with ``Retry-After`` set to
        the seconds until a slot frees. ``tier=1..4`` uses Slack's tier minimum
        (1, 20, 50, 100 per minute). ``per_channel=True`` keeps one budget per
        ``channel`` parameter (``chat.postMessage`` is limited per channel, about one
        message per second: ``set_rate("chat.postMessage", 60, per_channel=True)``).
        ``per_minute=None`` and ``tier=None`` remove the budget. Rejected calls do not
        use the budget.
        """
        if tier is not None:
            per_minute = TIER_PER_MINUTE[tier]
        with self._lock:
            if per_minute is None:
                self._budgets.pop(method, None)
            else:
                if per_minute < 1:
                    raise ValueError("per_minute must be >= 1")
                self._budgets[method] = Budget(per_minute, window, per_channel)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: _Fake

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), slow on some hosts.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class Handler(BaseHTTPRequestHandler):
    server_version = "SlackFake/1.0"

    @property
    def fake(self) -> _Fake:
        assert isinstance(self.server, Server)
        return self.server.fake

    def log_message(self, format: str, *args: Any) -> None:
        return  # keep test output quiet

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        self._send(status, data, "application/json; charset=utf-8", headers or {})

    def _send_text(self, status: int, text: str) -> None:
        self._send(status, text.encode("utf-8"), "text/html; charset=utf-8", {})

    def do_GET(self) -> None:
        self._route(b"")

    def do_POST(self) -> None:
        self._route(self._read_body())

    def _route(self, raw: bytes) -> None:
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        if len(parts) == 2 and parts[0] == "api":
            self._api(parts[1], url.query, raw)
        elif len(parts) == 3 and parts[:2] == ["hooks", "response"] and self.command == "POST":
            self._send_text(*self.fake.handle_response_url(parts[2], raw))
        elif len(parts) == 3 and parts[:2] == ["upload", "v1"] and self.command == "POST":
            self._send_text(*self.fake.handle_upload(parts[2], raw))
        elif parts == ["link"] and self.command == "GET":
            self._websocket(url.query)
        elif parts == ["_fake", "state"]:
            self._send_json(200, self.fake.snapshot())
        else:
            self._send_text(404, "not_found")

    def _websocket(self, query: str) -> None:
        """The Socket Mode endpoint: check the ticket, upgrade, then hold the socket."""
        key = self.headers.get("Sec-WebSocket-Key")
        upgrade = (self.headers.get("Upgrade") or "").lower()
        ticket = (parse_qs(query).get("ticket") or [""])[0]
        if upgrade != "websocket" or not key:
            self._send_text(400, "websocket_upgrade_required")
            return
        if not self.fake._take_ticket(ticket):
            self._send_text(401, "invalid_ticket")
            return
        accept = websocket_accept(key)
        self.wfile.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\n"
                "Upgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode("ascii")
        )
        self.wfile.flush()
        self.close_connection = True
        connection = SocketConnection(self.connection, self.rfile, self.fake)
        self.fake._socket_opened(connection)
        connection.run()

    def _api(self, method: str, query: str, raw: bytes) -> None:
        params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        content_type = (self.headers.get("Content-Type") or "").lower()
        token_allowed_in_body = True
        try:
            if content_type.startswith("application/json"):
                token_allowed_in_body = False  # Slack ignores a token inside a JSON body
                parsed = json.loads(raw.decode("utf-8") or "{}")
                if not isinstance(parsed, dict):
                    raise ValueError("JSON body must be an object")
                body_params = dict(parsed)
                body_params.pop("token", None)
                params.update(body_params)
            elif content_type.startswith("multipart/form-data"):
                params.update(_parse_multipart(content_type, raw))
            elif raw:
                params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except (ValueError, UnicodeDecodeError):
            self._send_json(200, {"ok": False, "error": "invalid_json"})
            return
        token = None
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        form_token = params.pop("token", None)
        if token is None and token_allowed_in_body and isinstance(form_token, str):
            token = form_token
        headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        status, body, extra = self.fake.handle_api(method, params, token, headers)
        self._send_json(status, body, extra)


def _parse_multipart(content_type: str, raw: bytes) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    params: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        data = part.get_payload(decode=True) or b""
        if part.get_filename():
            params[str(name)] = data
        else:
            params[str(name)] = data.decode("utf-8")
    return params
