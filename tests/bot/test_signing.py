"""Signed inbound requests: verified by slack_sdk, dispatched by a slack_bolt App."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from slack_sdk.signature import Clock, SignatureVerifier

from sandbox.signing import (
    FORM_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    block_actions_body,
    event_callback_body,
    headers_for,
    post,
    sign,
    slash_command_body,
    ssl_check_body,
    url_verification_body,
    view_submission_body,
)
from sandbox.slack_fake import SlackFake

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}


def payload(body: bytes) -> dict[str, Any]:
    fields = form(body)
    assert list(fields) == ["payload"]
    return json.loads(fields["payload"])


# --------------------------------------------------------------------------- signatures


def test_sign_round_trips_through_the_sdk_verifier() -> None:
    body = slash_command_body(text="scan")
    headers = sign(body, SECRET)
    assert set(headers) == {"X-Slack-Request-Timestamp", "X-Slack-Signature"}
    assert headers["X-Slack-Signature"].startswith("v0=")
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid_request(body, headers)
    assert verifier.is_valid_request(body.decode(), headers)


secrets_ = st.text(min_size=1, max_size=64).filter(str.strip)


@settings(max_examples=60, deadline=None)
@given(body=st.text(max_size=1024), secret=secrets_, timestamp=st.integers(0, 2**33))
def test_sign_matches_the_sdk_verifier(body: str, secret: str, timestamp: int) -> None:
    headers = sign(body.encode(), secret, timestamp)
    verifier = SignatureVerifier(secret, clock=FixedClock(timestamp))
    assert verifier.is_valid_request(body.encode(), headers)
    assert verifier.is_valid_request(body, headers)


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=1024), secret=secrets_)
def test_sign_is_hmac_sha256_of_the_raw_bytes(body: bytes, secret: str) -> None:
    headers = sign(body, secret, 1_700_000_000)
    expected = hmac.new(secret.encode(), b"v0:1700000000:" + body, hashlib.sha256).hexdigest()
    assert headers["X-Slack-Signature"] == f"v0={expected}"


def test_stale_timestamp_fails_verification() -> None:
    body = slash_command_body(text="scan")
    stale = sign(body, SECRET, timestamp=int(time.time()) - 6 * 60)
    assert not SignatureVerifier(SECRET).is_valid_request(body, stale)
    recent = sign(body, SECRET, timestamp=int(time.time()) - 4 * 60)
    assert SignatureVerifier(SECRET).is_valid_request(body, recent)


def test_tampered_body_or_wrong_secret_fails() -> None:
    body = slash_command_body(text="scan")
    headers = sign(body, SECRET)
    assert not SignatureVerifier(SECRET).is_valid_request(body + b"&x=1", headers)
    assert not SignatureVerifier("another-secret").is_valid_request(body, headers)


def test_headers_for_sets_slacks_content_type() -> None:
    assert headers_for(slash_command_body(), SECRET)["Content-Type"] == FORM_CONTENT_TYPE
    assert headers_for(block_actions_body("U1", "a", "v"), SECRET)["Content-Type"] == (
        FORM_CONTENT_TYPE
    )
    assert headers_for(url_verification_body("c"), SECRET)["Content-Type"] == JSON_CONTENT_TYPE


# --------------------------------------------------------------------------- bodies


def test_slash_command_body_fields() -> None:
    body = slash_command_body(
        "/iam",
        text="keep F-12 until 2025-01-01",
        user_id="U0ALICE001",
        user_name="alice",
        channel_id="D0ALICE001",
        response_url="http://127.0.0.1:1/hooks/response/x",
        trigger_id="1.2.abc",
    )
    fields = form(body)
    assert fields["command"] == "/iam"
    assert fields["text"] == "keep F-12 until 2025-01-01"
    assert fields["user_id"] == "U0ALICE001" and fields["user_name"] == "alice"
    assert fields["channel_id"] == "D0ALICE001" and fields["channel_name"] == "directmessage"
    assert fields["response_url"] == "http://127.0.0.1:1/hooks/response/x"
    assert fields["trigger_id"] == "1.2.abc"
    assert {"token", "team_id", "team_domain", "api_app_id"} <= set(fields)


def test_slash_command_body_defaults_are_fresh() -> None:
    first, second = form(slash_command_body()), form(slash_command_body())
    assert first["text"] == ""
    assert first["trigger_id"] != second["trigger_id"]
    assert first["response_url"].startswith("https://hooks.slack.com/commands/")


def test_block_actions_body_from_a_message() -> None:
    message = {
        "type": "message",
        "ts": "1732800000.000100",
        "text": "Old key",
        "blocks": [
            {
                "type": "actions",
                "block_id": "decide",
                "elements": [{"type": "button", "action_id": "deactivate", "value": "opaque-1"}],
            }
        ],
    }
    body = block_actions_body(
        "U0ALICE001",
        "deactivate",
        "opaque-1",
        message=message,
        channel_id="D0ALICE001",
        response_url="http://127.0.0.1:1/hooks/response/y",
    )
    data = payload(body)
    assert data["type"] == "block_actions"
    assert data["user"]["id"] == "U0ALICE001"
    assert data["actions"][0]["action_id"] == "deactivate"
    assert data["actions"][0]["value"] == "opaque-1"
    assert data["actions"][0]["block_id"] == "decide"  # found in the message
    assert data["message"]["ts"] == "1732800000.000100"
    assert data["channel"]["id"] == "D0ALICE001"
    assert data["container"] == {
        "type": "message",
        "message_ts": "1732800000.000100",
        "channel_id": "D0ALICE001",
        "is_ephemeral": False,
    }
    assert data["response_url"] == "http://127.0.0.1:1/hooks/response/y"


def test_block_actions_body_minimal_has_message_and_channel() -> None:
    data = payload(block_actions_body("U1", "x", "v"))
    assert data["message"]["ts"] and data["channel"]["id"]
    assert data["container"]["message_ts"] == data["message"]["ts"]


def test_block_actions_body_from_an_ephemeral_has_no_message() -> None:
    data = payload(
        block_actions_body(
            "U1", "x", "v", message={"ts": "1.000002"}, channel_id="C1", is_ephemeral=True
        )
    )
    assert "message" not in data
    assert data["container"]["is_ephemeral"] is True
    assert data["container"]["message_ts"] == "1.000002"


def test_block_actions_body_from_a_view() -> None:
    view = {"id": "V0HOME0001", "type": "home", "blocks": []}
    data = payload(block_actions_body("U1", "refresh", "r", view=view))
    assert data["container"] == {"type": "view", "view_id": "V0HOME0001"}
    assert data["view"]["id"] == "V0HOME0001"
    assert "channel" not in data and "message" not in data and "response_url" not in data


def test_view_submission_body() -> None:
    data = payload(
        view_submission_body(
            "U0ALICE001",
            "keep_exception",
            private_metadata="finding-7",
            state_values={
                "reason": {"reason_input": "break-glass account"},
                "expiry": {"expiry_pick": {"type": "datepicker", "selected_date": "2025-06-30"}},
            },
        )
    )
    assert data["type"] == "view_submission"
    assert data["user"]["id"] == "U0ALICE001"
    view = data["view"]
    assert view["callback_id"] == "keep_exception"
    assert view["private_metadata"] == "finding-7"
    assert view["state"]["values"]["reason"]["reason_input"] == {
        "type": "plain_text_input",
        "value": "break-glass account",
    }
    assert view["state"]["values"]["expiry"]["expiry_pick"]["selected_date"] == "2025-06-30"
    assert view["id"] == view["root_view_id"]


def test_url_verification_and_ssl_check_bodies() -> None:
    assert json.loads(url_verification_body("abc")) == {
        "token": "sandbox-verification-token",
        "challenge": "abc",
        "type": "url_verification",
    }
    assert form(ssl_check_body()) == {"ssl_check": "1", "token": "sandbox-verification-token"}


# --------------------------------------------------------------------------- bolt


@pytest.fixture
def fake() -> Iterator[SlackFake]:
    with SlackFake() as f:
        yield f


@pytest.fixture
def alice(fake: SlackFake) -> str:
    return fake.add_user("U0ALICE001", name="alice", email="alice@example.com")


@pytest.fixture
def app(fake: SlackFake) -> App:
    client = WebClient(base_url=fake.base_url, token=fake.token)
    return App(client=client, signing_secret=SECRET)


def dispatch(app: App, body: bytes, secret: str = SECRET, timestamp: int | None = None) -> Any:
    return app.dispatch(
        BoltRequest(body=body.decode(), headers=headers_for(body, secret, timestamp))
    )


def test_app_construction_calls_auth_test_on_the_fake(fake: SlackFake, app: App) -> None:
    assert [c.method for c in fake.calls()] == ["auth.test"]
    assert fake.calls()[0].ok


def test_slash_command_dispatches_to_the_command_handler(
    fake: SlackFake, app: App, alice: str
) -> None:
    seen: list[dict[str, Any]] = []
    channel = fake.open_im(alice)

    @app.command("/iam")
    def handle(ack: Any, command: dict[str, Any], say: Any) -> None:
        ack()
        seen.append(command)
        say(f"scanning for <@{command['user_id']}>")

    body = slash_command_body(
        "/iam",
        text="scan",
        user_id=alice,
        channel_id=channel,
        response_url=fake.response_url(channel, alice),
    )
    response = dispatch(app, body)
    assert response.status == 200
    messages = fake.wait_for(lambda: fake.dm(alice))
    assert messages[0]["text"] == f"scanning for <@{alice}>"
    assert seen[0]["text"] == "scan" and seen[0]["user_id"] == alice


def test_block_action_dispatches_to_the_action_handler(
    fake: SlackFake, app: App, alice: str
) -> None:
    client = WebClient(base_url=fake.base_url, token=fake.token)
    posted = client.chat_postMessage(
        channel=alice,
        text="Deactivate key?",
        blocks=[
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "x",
                        "value": "opaque-42",
                        "text": {"type": "plain_text", "text": "Deactivate"},
                    }
                ],
            }
        ],
    )
    values: list[str] = []
    done = threading.Event()

    @app.action("x")
    def handle(ack: Any, body: dict[str, Any], respond: Any) -> None:
        ack()
        values.append(body["actions"][0]["value"])
        assert body["message"]["ts"] == posted["ts"]
        assert body["channel"]["id"] == posted["channel"]
        respond(text="Only the owner can do this.", replace_original=False)
        done.set()

    message = posted["message"]
    body = block_actions_body(
        alice,
        "x",
        "opaque-42",
        message=message,
        channel_id=posted["channel"],
        response_url=fake.response_url(posted["channel"], alice, message_ts=posted["ts"]),
    )
    assert dispatch(app, body).status == 200
    assert done.wait(5)
    assert values == ["opaque-42"]
    refusals = fake.wait_for(lambda: fake.ephemerals(alice))
    assert refusals[0]["text"] == "Only the owner can do this."
    assert fake.dm(alice)[0]["text"] == "Deactivate key?"  # the original is untouched


def test_view_submission_dispatches_to_the_view_handler(app: App) -> None:
    got: list[dict[str, Any]] = []

    @app.view("keep_exception")
    def handle(ack: Any, view: dict[str, Any]) -> None:
        ack()
        got.append(view)

    body = view_submission_body(
        "U0ALICE001", "keep_exception", "finding-7", {"reason": {"r": "needed"}}
    )
    assert dispatch(app, body).status == 200
    assert got[0]["private_metadata"] == "finding-7"
    assert got[0]["state"]["values"]["reason"]["r"]["value"] == "needed"


def test_url_verification_and_ssl_check_through_bolt(app: App) -> None:
    response = dispatch(app, url_verification_body("c-123"))
    assert response.status == 200 and json.loads(response.body) == {"challenge": "c-123"}
    assert dispatch(app, ssl_check_body()).status == 200


def test_app_rejects_bad_or_stale_signatures(app: App) -> None:
    @app.command("/iam")
    def handle(ack: Any) -> None:  # pragma: no cover - must not run
        ack()
        raise AssertionError("dispatched an unsigned request")

    body = slash_command_body(text="scan")
    assert dispatch(app, body, secret="wrong").status == 401
    assert dispatch(app, body, timestamp=int(time.time()) - 10 * 60).status == 401


def test_event_callback_dispatches(app: App) -> None:
    opened: list[str] = []

    @app.event("app_home_opened")
    def handle(event: dict[str, Any]) -> None:
        opened.append(event["user"])

    body = event_callback_body({"type": "app_home_opened", "user": "U0ALICE001", "tab": "home"})
    assert dispatch(app, body).status == 200
    deadline = time.monotonic() + 5
    while not opened and time.monotonic() < deadline:
        time.sleep(0.01)
    assert opened == ["U0ALICE001"]


# --------------------------------------------------------------------------- over HTTP


class _VerifyingHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        ok = SignatureVerifier(SECRET).is_valid_request(raw, dict(self.headers.items()))
        reply = json.dumps({"content_type": self.headers["Content-Type"]}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


@pytest.fixture
def verifying_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _VerifyingHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/slack/events"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_post_sends_a_signed_request_over_http(verifying_server: str) -> None:
    response = post(verifying_server, slash_command_body(text="scan"), SECRET)
    assert response.status == 200
    assert response.json() == {"content_type": FORM_CONTENT_TYPE}
    rejected = post(verifying_server, slash_command_body(), "wrong-secret")
    assert rejected.status == 401
