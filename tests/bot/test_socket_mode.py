"""Socket Mode: the fake's `apps.connections.open` + WebSocket, and `steward socket` on it."""

from __future__ import annotations

import contextlib
import http.client
import logging
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.config import Settings
from bot.run.serve import StartupError
from bot.run.socket import run_socket_mode
from sandbox import signing
from sandbox.slack_fake import SlackFake
from tests.bot.test_serve_http import (
    ACCOUNT,
    ALICE,
    BOB,
    NOBODY,
    add_people,
    blocks_text,
    clean_env,
    seed,
    steward_command,
)


@pytest.fixture
def fake() -> Iterator[SlackFake]:
    with SlackFake() as f:
        add_people(f)
        yield f


def sdk_client(fake: SlackFake, received: list) -> SocketModeClient:
    client = SocketModeClient(
        app_token=fake.app_token,
        web_client=WebClient(base_url=fake.base_url),
        auto_reconnect_enabled=False,
        logger=logging.getLogger("test-socket-client"),
    )
    client.message_listeners.append(lambda _client, message, _raw: received.append(message))
    return client


def poll(predicate, timeout: float = 5.0):
    """Wait for something the fake is not told about (wait_for wakes on the fake's changes)."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)
    return result


# ---------------------------------------------------------------------------------------
# The fake


def test_apps_connections_open_needs_an_app_token(fake: SlackFake) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        WebClient(base_url=fake.base_url, token=fake.token).apps_connections_open(
            app_token=fake.token
        )
    assert excinfo.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as excinfo:
        WebClient(base_url=fake.base_url, token=fake.app_token).auth_test()
    assert excinfo.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as excinfo:
        WebClient(base_url=fake.base_url).apps_connections_open(app_token="xapp-1-unknown")
    assert excinfo.value.response["error"] == "invalid_auth"

    url = WebClient(base_url=fake.base_url).apps_connections_open(app_token=fake.app_token)["url"]
    assert url.startswith(f"ws://127.0.0.1:{fake.port}/link/?ticket=")
    assert url.endswith(f"&app_id={fake.app_id}")


def test_sdk_client_gets_hello_envelopes_and_its_acks_are_recorded(fake: SlackFake) -> None:
    received: list = []
    client = sdk_client(fake, received)
    client.socket_mode_request_listeners.append(
        lambda c, req: c.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload={"text": f"got {req.type}"})
        )
    )
    try:
        client.connect()
        fake.wait_for_socket()
        poll(lambda: received)
        assert received[0]["type"] == "hello"
        assert received[0]["connection_info"] == {"app_id": fake.app_id}

        slash = fake.push_slash_command("help", user_id=ALICE)
        event = fake.push_event({"type": "app_home_opened", "user": ALICE, "tab": "home"})
        assert fake.wait_for_ack(slash)["payload"] == {"text": "got slash_commands"}
        assert fake.wait_for_ack(event)["payload"] == {"text": "got events_api"}
        click = fake.push_interactive(signing.block_actions_body(ALICE, "keep", value="42"))
        assert fake.wait_for_ack(click)["payload"] == {"text": "got interactive"}

        pushed = {e["envelope_id"]: e for e in fake.envelopes()}
        assert pushed[slash]["accepts_response_payload"] is True
        assert pushed[slash]["payload"]["command"] == "/iam"
        assert pushed[slash]["payload"]["user_id"] == ALICE
        assert pushed[slash]["payload"]["response_url"].startswith(
            fake.root_url + "hooks/response/"
        )
        assert pushed[event]["accepts_response_payload"] is False
        assert pushed[event]["retry_attempt"] == 0
        assert pushed[event]["payload"]["event"]["type"] == "app_home_opened"
        assert pushed[click]["payload"]["actions"][0]["value"] == "42"
        assert [m["envelope_id"] for m in received[1:]] == [slash, event, click]
    finally:
        # wake the client's reader (3 s recv timeout) so that close() does not wait for it
        client.current_session.sock.shutdown(socket.SHUT_RDWR)
        client.close()
    fake.wait_for(lambda: fake.socket_connections() == 0)


def test_tickets_are_single_use_and_pushing_needs_a_client(fake: SlackFake) -> None:
    url = urllib.parse.urlsplit(fake.socket_url())
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }

    def upgrade() -> int:
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
        try:
            connection.request("GET", f"{url.path}?{url.query}", headers=headers)
            response = connection.getresponse()
            if response.status == 101:
                assert response.getheader("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
                assert fake.wait_for_socket() == 1
            return response.status
        finally:
            connection.close()

    assert upgrade() == 101
    fake.wait_for(lambda: fake.socket_connections() == 0)
    assert upgrade() == 401  # the ticket was used
    with pytest.raises(RuntimeError, match="no Socket Mode client"):
        fake.push_slash_command("help", user_id=ALICE)


# ---------------------------------------------------------------------------------------
# steward socket


@contextlib.contextmanager
def running_socket(fake: SlackFake, database_url: str, workdir: Path, **env: str) -> Iterator[Path]:
    """`steward socket` connected to the fake until the block ends (then SIGTERM, which must
    stop it with exit 0); yields the path of its log."""
    full_env = clean_env(
        SLACK_BOT_TOKEN=fake.token,
        SLACK_APP_TOKEN=fake.app_token,
        SLACK_API_URL=fake.base_url,
        STEWARD_DATABASE_URL=database_url,
        **env,
    )
    log = workdir / "socket.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*steward_command(), "socket"], cwd=workdir, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        fake.wait_for_socket(timeout=30)
        yield log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text()


def test_steward_socket_subprocess_answers_slash_commands(fake: SlackFake, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'steward.db'}"
    seed(database_url)
    with running_socket(fake, database_url, tmp_path) as log:
        help_ack = fake.wait_for_ack(fake.push_slash_command("help", user_id=ALICE), timeout=10)
        assert help_ack["payload"]["response_type"] == "ephemeral"
        assert "/iam whoami" in help_ack["payload"]["text"]

        alice = blocks_text(
            fake.wait_for_ack(fake.push_slash_command("whoami", user_id=ALICE))["payload"]
        )
        assert f"arn:aws:iam::{ACCOUNT}:user/alice" in alice and "user/bob" not in alice
    assert fake.calls("apps.connections.open")[0].token == fake.app_token
    assert fake.token not in log.read_text() and fake.app_token not in log.read_text()


def _settings(fake: SlackFake, tmp_path: Path, **overrides) -> Settings:
    values = {
        "SLACK_BOT_TOKEN": fake.token,
        "SLACK_APP_TOKEN": fake.app_token,
        "SLACK_API_URL": fake.base_url,
        "STEWARD_DATABASE_URL": f"sqlite:///{tmp_path / 'steward.db'}",
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def socket_thread(fake: SlackFake, tmp_path: Path):
    """run_socket_mode in a thread; yields a function that starts it."""
    stop = threading.Event()
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []

    def start(settings: Settings) -> threading.Event:
        ready = threading.Event()

        def target():
            try:
                run_socket_mode(settings, stop=stop, ready=ready)
            except BaseException as exc:
                errors.append(exc)
                ready.set()

        thread = threading.Thread(target=target, daemon=True)
        threads.append(thread)
        thread.start()
        assert ready.wait(30)
        if errors:
            raise errors[0]
        return stop

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
        assert not thread.is_alive()


def test_reconnects_after_slack_asks_it_to(fake: SlackFake, tmp_path: Path, socket_thread) -> None:
    seed(f"sqlite:///{tmp_path / 'steward.db'}")
    socket_thread(_settings(fake, tmp_path))
    fake.wait_for_socket()
    bob = blocks_text(fake.wait_for_ack(fake.push_slash_command("whoami", user_id=BOB))["payload"])
    assert "user/bob" in bob and "user/alice" not in bob

    assert fake.disconnect_sockets() == 1
    fake.wait_for(
        lambda: len(fake.calls("apps.connections.open")) == 2 and fake.socket_connections() == 1,
        timeout=15,
    )
    nobody = blocks_text(
        fake.wait_for_ack(fake.push_slash_command("whoami", user_id=NOBODY))["payload"]
    )
    assert "I don't know of any IAM user that is yours" in nobody


def test_startup_errors(fake: SlackFake, tmp_path: Path, socket_thread) -> None:
    with pytest.raises(StartupError, match="missing setting: SLACK_APP_TOKEN"):
        run_socket_mode(_settings(fake, tmp_path, SLACK_APP_TOKEN=None))
    with pytest.raises(StartupError, match=r"app-level token \(xapp-"):
        run_socket_mode(_settings(fake, tmp_path, SLACK_APP_TOKEN=fake.token))
    with pytest.raises(StartupError, match="Slack rejected SLACK_BOT_TOKEN: invalid_auth"):
        run_socket_mode(_settings(fake, tmp_path, SLACK_BOT_TOKEN="xoxb-wrong"))
    with pytest.raises(
        StartupError, match="Slack refused Socket Mode for SLACK_APP_TOKEN: invalid_auth"
    ):
        socket_thread(_settings(fake, tmp_path, SLACK_APP_TOKEN="xapp-1-wrong"))
    assert fake.socket_connections() == 0
