"""The local Slack's Socket Mode: `apps.connections.open` (app-level token only) hands out a
single-use `ws://.../link/?ticket=...` URL served by the fake's own HTTP server; a client
that connects gets Slack's `hello`, answers pings, and receives the envelopes a test
pushes (slash commands, interactions, events); its acks are recorded with their payloads.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import secrets
import socket
import struct
import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, parse_qsl

# The fake these serve is `sandbox.slack.fake.SlackFake`, typed `Any` here: that module
# puts this one together, so importing it back would be a cycle.
_Fake = Any

_WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def websocket_accept(key: str) -> str:
    """The `Sec-WebSocket-Accept` answer to a client's `Sec-WebSocket-Key` (RFC 6455)."""
    return base64.b64encode(hashlib.sha1((key + _WEBSOCKET_GUID).encode()).digest()).decode()


class SocketMode:
    """Socket Mode connections, envelopes and acks. Mixed into `SlackFake`."""

    def _apps_connections_open(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        return {"url": self.socket_url()}

    def socket_url(self) -> str:
        """Issue a single-use Socket Mode URL, as ``apps.connections.open`` does."""
        with self._lock:
            ticket = secrets.token_urlsafe(18)
            self._tickets[ticket] = self._clock()
            return f"ws://{self._host}:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    def socket_connections(self) -> int:
        """How many Socket Mode clients are connected now."""
        return len(self._live_sockets())

    def wait_for_socket(self, timeout: float = 5.0, *, count: int = 1) -> int:
        """Wait until at least ``count`` Socket Mode clients are connected."""
        return self.wait_for(
            lambda: self.socket_connections() >= count and self.socket_connections(), timeout
        )

    def push_envelope(
        self,
        type: str,
        payload: dict[str, Any],
        *,
        envelope_id: str | None = None,
        accepts_response_payload: bool | None = None,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
    ) -> str:
        """Send one envelope to the newest connected client; returns its ``envelope_id``.

        ``type`` is ``slash_commands``, ``interactive`` or ``events_api``. Like Slack,
        ``events_api`` envelopes carry ``retry_attempt``/``retry_reason`` and do not accept
        a response payload; the others do. Raises ``RuntimeError`` when no client is
        connected.
        """
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id or str(uuid.uuid4()),
            "payload": payload,
            "type": type,
            "accepts_response_payload": (
                type != "events_api"
                if accepts_response_payload is None
                else accepts_response_payload
            ),
        }
        if type == "events_api":
            envelope["retry_attempt"] = retry_attempt or 0
            envelope["retry_reason"] = retry_reason or ""
        live = self._live_sockets()
        if not live:
            raise RuntimeError("no Socket Mode client is connected")
        with self._changed:
            self._envelopes.append(copy.deepcopy(envelope))
            self._notify()
        live[-1].send_json(envelope)
        return str(envelope["envelope_id"])

    def push_slash_command(
        self,
        text: str = "",
        *,
        user_id: str,
        command: str = "/iam",
        channel_id: str | None = None,
    ) -> str:
        """Push a ``slash_commands`` envelope as if ``user_id`` typed ``command text``.

        The channel defaults to the user's DM with the bot; the payload's
        ``response_url`` is a hook on this fake (see :meth:`response_url`). Returns the
        ``envelope_id``.
        """
        from sandbox.signing import slash_command_body

        with self._lock:
            self._user(user_id)
            channel = channel_id or self._open_im_locked(user_id)
        hook = self.response_url(channel, user_id)
        body = slash_command_body(
            command,
            text=text,
            user_id=user_id,
            user_name=self._users[user_id]["name"],
            team_id=self.team_id,
            team_domain=self.team_domain,
            channel_id=channel,
            response_url=hook,
            trigger_id=self.trigger_id(user_id),
            api_app_id=self.app_id,
        )
        payload = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        return self.push_envelope("slash_commands", payload)

    def push_interactive(self, payload: dict[str, Any] | bytes) -> str:
        """Push an ``interactive`` envelope: a payload dict, or a form body built by
        ``sandbox.signing.block_actions_body`` / ``view_submission_body``."""
        if isinstance(payload, bytes):
            payload = json.loads(parse_qs(payload.decode("utf-8"))["payload"][0])
        return self.push_envelope("interactive", dict(payload))

    def push_event(self, event: dict[str, Any] | bytes, **kwargs: Any) -> str:
        """Push an ``events_api`` envelope for an event (``{"type": "app_home_opened",
        ...}``) wrapped like ``sandbox.signing.event_callback_body``, or for such a
        body as bytes. ``kwargs`` go to :meth:`push_envelope`."""
        from sandbox.signing import event_callback_body

        body = (
            event
            if isinstance(event, bytes)
            else event_callback_body(event, team_id=self.team_id, api_app_id=self.app_id)
        )
        return self.push_envelope("events_api", json.loads(body), **kwargs)

    def envelopes(self) -> list[dict[str, Any]]:
        """Envelopes pushed so far, oldest first."""
        with self._lock:
            return copy.deepcopy(self._envelopes)

    def socket_acks(self, envelope_id: str | None = None) -> list[dict[str, Any]]:
        """Acks received, oldest first: ``{"envelope_id", "payload" (if any), "time"}``."""
        with self._lock:
            return copy.deepcopy(
                [a for a in self._acks if envelope_id is None or a["envelope_id"] == envelope_id]
            )

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the ack of ``envelope_id`` and return it."""
        return self.wait_for(lambda: (self.socket_acks(envelope_id) or [None])[0], timeout)

    def socket_messages(self) -> list[Any]:
        """Text frames from clients that were not acks (parsed JSON when possible)."""
        with self._lock:
            return copy.deepcopy(self._socket_messages)

    def disconnect_sockets(self, reason: str = "refresh_requested") -> int:
        """Tell every client to reconnect (Slack's ``disconnect`` message), then close
        their sockets; returns how many there were. Clients call
        ``apps.connections.open`` again for a new URL."""
        live = self._live_sockets()
        for connection in live:
            connection.send_json(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
            )
            connection.close()
        return len(live)

    def _live_sockets(self) -> list[SocketConnection]:
        with self._lock:
            self._sockets = [c for c in self._sockets if c.open]
            return list(self._sockets)

    def _take_ticket(self, ticket: str) -> bool:
        with self._lock:
            return self._tickets.pop(ticket, None) is not None

    def _socket_opened(self, connection: SocketConnection) -> None:
        with self._changed:
            self._sockets.append(connection)
            self._notify()
        connection.send_json(
            {
                "type": "hello",
                "num_connections": len(self._live_sockets()),
                "debug_info": {
                    "host": "applink-fake",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
        )

    def _socket_closed(self, connection: SocketConnection) -> None:
        with self._changed:
            if connection in self._sockets:
                self._sockets.remove(connection)
            self._notify()

    def _socket_text(self, text: str) -> None:
        try:
            message: Any = json.loads(text)
        except ValueError:
            message = text
        with self._changed:
            if isinstance(message, dict) and "envelope_id" in message:
                ack = {"envelope_id": message["envelope_id"], "time": time.time()}
                if "payload" in message:
                    ack["payload"] = message["payload"]
                self._acks.append(ack)
            else:
                self._socket_messages.append(message)
            self._notify()


class SocketConnection:
    """One Socket Mode WebSocket (RFC 6455, server side) on a request handler's socket.

    Only what Slack's side needs: text frames out (unmasked), masked frames in (text,
    continuation, ping -> pong, close), one sender at a time.
    """

    def __init__(self, sock: socket.socket, rfile: Any, fake: _Fake) -> None:
        self.sock = sock
        self.rfile = rfile
        self.fake = fake
        self.open = True
        self._send_lock = threading.Lock()

    def send_json(self, message: Any) -> None:
        self._send(0x1, json.dumps(message).encode("utf-8"))

    def _send(self, opcode: int, payload: bytes) -> None:
        size = len(payload)
        if size < 126:
            head = struct.pack("!BB", 0x80 | opcode, size)
        elif size < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 126, size)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
        with self._send_lock:
            if not self.open and opcode != 0x8:
                raise RuntimeError("the Socket Mode connection is closed")
            self.sock.sendall(head + payload)

    def close(self, code: int = 1000) -> None:
        """Send a close frame and stop reading (the client's answer is not awaited)."""
        if self.open:
            with contextlib.suppress(OSError):
                self._send(0x8, struct.pack("!H", code))
        self.abort()

    def abort(self) -> None:
        self.open = False
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _read_exact(self, size: int) -> bytes:
        data = self.rfile.read(size) if size else b""
        if len(data) < size:
            raise EOFError
        return data

    def _read_frame(self) -> tuple[bool, int, bytes]:
        b1, b2 = self._read_exact(2)
        size = b2 & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._read_exact(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._read_exact(8))
        mask = self._read_exact(4) if b2 & 0x80 else b""
        data = self._read_exact(size)
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return bool(b1 & 0x80), b1 & 0x0F, data

    def run(self) -> None:
        """Read until the client closes or the fake stops."""
        parts: list[bytes] = []
        try:
            while self.open:
                fin, opcode, data = self._read_frame()
                if opcode == 0x9:  # ping
                    self._send(0xA, data)
                elif opcode == 0x8:  # close: echo it
                    self.close(struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1000)
                elif opcode in (0x0, 0x1, 0x2):
                    parts.append(data)
                    if fin:
                        message, parts = b"".join(parts), []
                        self.fake._socket_text(message.decode("utf-8", errors="replace"))
                # pongs (0xA) need no answer
        except (EOFError, OSError, ValueError):
            pass
        finally:
            self.abort()
            self.fake._socket_closed(self)
