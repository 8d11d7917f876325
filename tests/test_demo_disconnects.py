"""A browser that hangs up mid-answer ("View as" reloads the page) is not an error: the
demo's page server prints nothing and keeps serving."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import urllib.request

import pytest

from sandbox.page import make_page_server

BIG = "x" * 4_000_000  # more than any socket buffer: the answer cannot be written in one go


class SlowDemo:
    """Just enough of the demo for GET /demo/iam and POST /demo/home."""

    def __init__(self) -> None:
        self.calls = 0

    def iam_state(self, max_age: float = 0) -> dict:
        self.calls += 1
        time.sleep(0.3)  # the client hangs up meanwhile
        return {"blob": BIG}

    def viewers(self):
        class Person:
            slack_id = "U1"
        return [Person()]

    def open_home(self, viewer: str) -> dict:
        time.sleep(0.3)
        return {"blob": BIG}

    def invalidate_iam(self) -> None:
        return None


@pytest.fixture
def served():
    demo = SlowDemo()
    server = make_page_server(demo, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield demo, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def hang_up(port: int, request: bytes, wait: float = 0.05) -> None:
    """Send the request, then reset the connection without reading the answer."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.sendall(request)
    time.sleep(wait)
    sock.close()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_client_hanging_up_prints_nothing(served, capfd, method: str) -> None:
    _demo, port = served
    body = json.dumps({"as": "U1"}).encode()
    request = (b"GET /demo/iam HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" if method == "GET" else
               b"POST /demo/home HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    for _ in range(3):
        hang_up(port, request)
    time.sleep(1.2)  # the handlers finish writing into the closed sockets
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/demo/iam", timeout=30) as response:
        assert response.status == 200  # still serving
    captured = capfd.readouterr()
    for noise in ("Traceback", "BrokenPipe", "ConnectionReset", "Exception occurred"):
        assert noise not in captured.err, captured.err
