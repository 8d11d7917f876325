"""Hostile and unlucky requests against `steward serve` (signed HTTP) and `steward socket`.

* form bodies that merely contain the word "payload" are still slash commands;
* malformed requests get 400/401 and change nothing, never 500;
* a replayed request, or one from another workspace or app, does nothing, says so, and
  is audited;
* a failure (Slack's users.info failing or slow, the database locked) gets exactly one
  reply and, where the database can take it, one audit event;
* what people typed comes back escaped.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from bot.db import audit
from bot.db.engine import make_engine, session_scope
from bot.db.models import AuditEvent, Finding
from sandbox import signing
from sandbox.slack_fake import SlackFake
from tests.aws import FAKE_CREDENTIALS
from tests.bot.test_serve_http import (
    ACCOUNT,
    ALICE,
    CAROL,
    NOBODY,
    SECRET,
    Served,
    add_people,
    blocks_text,
    finding,
    identity,
    running_steward,
    seed,
)

ODD = "payload-processor"
ODD_ARN = f"arn:aws:iam::{ACCOUNT}:user/{ODD}"


def seed_more(database_url: str) -> None:
    seed(database_url)
    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            session.add_all([identity(ODD, "alice@example.com"), finding(ODD, "alice@example.com")])
            audit.record(session, actor="system", action=audit.AuditAction.FINDING_OPENED,
                         resource=ODD_ARN, account=ACCOUNT, payload={"reason": "seeded"})
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def fake() -> Iterator[SlackFake]:
    with SlackFake() as f:
        add_people(f)
        yield f


@pytest.fixture(scope="module")
def served(fake: SlackFake, tmp_path_factory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("hostile")
    # A one-second busy timeout so that "locked beyond the busy timeout" is quick to test.
    database_url = f"sqlite:///{workdir / 'steward.db'}?timeout=1"
    seed_more(database_url)
    env = {**FAKE_CREDENTIALS, "AWS_CONFIG_FILE": str(workdir / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "none"),
           # the team is learnt from auth.test; the app id (auth.test does not say) is set
           "STEWARD_SLACK_APP_ID": fake.app_id}
    with running_steward(fake, database_url, workdir, env=env) as server:
        # Once up, the server checks its Slack setup in the background and audits what is
        # missing (no security channel here): let that land before tests count audit rows.
        deadline = time.monotonic() + 30
        while not events_in(database_url, action="setup.degraded") and time.monotonic() < deadline:
            time.sleep(0.05)
        yield server


def events(served: Served, **where) -> list[AuditEvent]:
    return events_in(served.database_url, **where)


def events_in(database_url: str, **where) -> list[AuditEvent]:
    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            query = select(AuditEvent)
            for field, value in where.items():
                query = query.where(getattr(AuditEvent, field) == value)
            return list(session.exec(query.order_by(AuditEvent.sequence)).all())
    finally:
        engine.dispose()


def command_body(served: Served, text: str, user: str, **fields) -> bytes:
    channel = served.fake.open_im(user)
    return signing.slash_command_body(text=text, user_id=user, channel_id=channel,
                                      response_url=served.fake.response_url(channel, user), **fields)


def hook_posts(fake: SlackFake, since: int) -> list:
    return fake.calls("response_url")[since:]


# ---------------------------------------------------------------------------------------
# "payload" in a slash command


def test_audit_of_a_user_called_payload_something_over_http(served: Served) -> None:
    reply = served.reply(f"audit {ODD}", CAROL)
    assert reply["response_type"] == "ephemeral"
    assert f"Audit events about {ODD}: 1" in reply["text"]
    assert "found a new issue on" in blocks_text(reply)


def test_payload_in_channel_or_user_name_is_still_a_command(served: Served) -> None:
    body = command_body(served, "whoami", ALICE, channel_name="payload-team", user_name="payloadpal")
    response = served.post(body)
    assert response.status == 200, response.text
    assert f"{ACCOUNT}:user/{ODD}" in blocks_text(response.json())


def test_a_tampered_payload_command_is_still_refused(served: Served) -> None:
    body = command_body(served, f"audit {ODD}", CAROL)
    tampered = body.replace(b"payload-processor", b"payload-processor2")
    response = signing.post(served.events_url, tampered, SECRET, headers=signing.sign(body, SECRET))
    assert response.status == 401


def test_audit_of_a_payload_user_over_socket_mode(fake: SlackFake, tmp_path: Path) -> None:
    from tests.bot.test_socket_mode import running_socket

    database_url = f"sqlite:///{tmp_path / 'steward.db'}"
    seed_more(database_url)
    with running_socket(fake, database_url, tmp_path, STEWARD_SECURITY_APPROVERS=CAROL) as log:
        ack = fake.wait_for_ack(fake.push_slash_command(f"audit {ODD}", user_id=CAROL), timeout=10)
        assert f"Audit events about {ODD}: 1" in ack["payload"]["text"], log.read_text()[-2000:]


def test_socket_mode_refuses_replays_and_other_workspaces(fake: SlackFake, tmp_path: Path) -> None:
    from tests.bot.test_socket_mode import running_socket

    database_url = f"sqlite:///{tmp_path / 'steward.db'}"
    seed_more(database_url)
    with running_socket(fake, database_url, tmp_path) as log:
        channel = fake.open_im(ALICE)
        hook = fake.response_url(channel, ALICE)
        click = signing.block_actions_body(ALICE, "finding:ack", value="no-such-token", channel_id=channel,
                                           response_url=hook)
        since = len(fake.calls("response_url"))
        fake.wait_for_ack(fake.push_interactive(click), timeout=10)
        fake.wait_for(lambda: hook_posts(fake, since) or None, timeout=15)
        fake.wait_for_ack(fake.push_interactive(click), timeout=10)  # the same envelope payload again
        posts = fake.wait_for(lambda: len(hook_posts(fake, since)) == 2 and hook_posts(fake, since), timeout=15)
        assert "no longer exists" in posts[0].params["text"]
        assert "already handled" in posts[1].params["text"], log.read_text()[-2000:]

        foreign = dict(urllib.parse.parse_qsl(command_body_for(fake, "whoami", ALICE).decode()))
        foreign["team_id"] = "T0ELSEWHERE"
        ack = fake.wait_for_ack(fake.push_envelope("slash_commands", foreign), timeout=10)
        assert "another Slack workspace" in ack["payload"]["text"]
    reasons = [e.payload["reason"] for e in events_in(database_url, action="refused", actor=ALICE)]
    assert reasons == ["unknown token", "replayed request", "request from another workspace"]


def command_body_for(fake: SlackFake, text: str, user: str) -> bytes:
    channel = fake.open_im(user)
    return signing.slash_command_body(text=text, user_id=user, channel_id=channel,
                                      response_url=fake.response_url(channel, user), team_id=fake.team_id,
                                      api_app_id=fake.app_id)


# ---------------------------------------------------------------------------------------
# Malformed requests: 400 or 401, nothing changed, never 500


def _payload(payload) -> bytes:
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def _click(**changes) -> dict:
    body = json.loads(urllib.parse.parse_qs(signing.block_actions_body(ALICE, "finding:ack", value="x").decode())
                      ["payload"][0])
    body.update(changes)
    return body


def _form(**fields) -> bytes:
    return urllib.parse.urlencode(fields).encode()


BODY = signing.slash_command_body(text="help", user_id=ALICE)
GOOD_TS = None  # signed now

# (id, body, header overrides, expected status)
MALFORMED = [
    ("non-ascii-signature", BODY, {"X-Slack-Signature": "v0=é" + "0" * 63}, 401),
    ("signature-without-v0", BODY, {"X-Slack-Signature": "0" * 64}, 401),
    ("signature-too-short", BODY, {"X-Slack-Signature": "v0=abc"}, 401),
    ("signature-uppercase-garbage", BODY, {"X-Slack-Signature": "v0=" + "Z" * 64}, 401),
    ("empty-signature", BODY, {"X-Slack-Signature": ""}, 401),
    ("timestamp-not-a-number", BODY, {"X-Slack-Request-Timestamp": "yesterday"}, 401),
    ("timestamp-negative", BODY, {"X-Slack-Request-Timestamp": "-1"}, 401),
    ("timestamp-float", BODY, {"X-Slack-Request-Timestamp": "1700000000.5"}, 401),
    ("timestamp-huge", BODY, {"X-Slack-Request-Timestamp": "9" * 40}, 401),
    ("timestamp-empty", BODY, {"X-Slack-Request-Timestamp": ""}, 401),
    ("payload-is-a-list", _payload([1, 2]), {}, 400),
    ("payload-is-null", _payload(None), {}, 400),
    ("payload-is-a-number", _payload(42), {}, 400),
    ("payload-is-a-string", _payload("hello"), {}, 400),
    ("payload-not-json", b"payload=%7Bnot-json", {}, 400),
    ("json-body-is-a-list", b"[1, 2, 3]", {"Content-Type": "application/json"}, 400),
    ("json-truncated", b'{"type": "event_callback"', {}, 400),
    ("not-utf8", b"\xff\xfe\xfa", {}, 400),
    ("actions-missing", _payload(_click(actions=None)), {}, 400),
    ("actions-empty", _payload(_click(actions=[])), {}, 400),
    ("actions-not-a-list", _payload(_click(actions={"action_id": "finding:ack"})), {}, 400),
    ("action-not-an-object", _payload(_click(actions=["finding:ack"])), {}, 400),
    ("action-without-action-id", _payload(_click(actions=[{"value": "x"}])), {}, 400),
    ("action-id-a-number", _payload(_click(actions=[{"action_id": 7}])), {}, 400),
    ("action-value-an-object", _payload(_click(actions=[{"action_id": "finding:ack", "value": {}}])), {}, 400),
    ("click-without-user", _payload(_click(user=None)), {}, 400),
    ("click-user-a-string", _payload(_click(user=ALICE)), {}, 400),
    ("click-team-a-string", _payload(_click(team="T1")), {}, 400),
    ("type-a-number", _payload(_click(type=5)), {}, 400),
    ("no-type", _payload({"user": {"id": ALICE}}), {}, 400),
    ("command-without-user-id", _form(command="/iam", text="help", team_id="T0SANDBOX1"), {}, 400),
    ("command-without-team-id", _form(command="/iam", text="help", user_id=ALICE), {}, 400),
    ("command-empty-user-id", _form(command="/iam", text="help", user_id="", team_id="T1"), {}, 400),
    ("view-submission-as-json", json.dumps({"type": "view_submission", "user": {"id": ALICE},
                                            "view": "keep_modal"}).encode(), {}, 400),
    ("view-submission-without-view", _payload({"type": "view_submission", "user": {"id": ALICE}}), {}, 400),
    ("view-state-a-list", _payload({"type": "view_submission", "user": {"id": ALICE},
                                    "view": {"callback_id": "keep_modal", "state": []}}), {}, 400),
    ("event-callback-without-event", json.dumps({"type": "event_callback"}).encode(), {}, 400),
]


def _signed_headers(body: bytes, overrides: dict[str, str]) -> dict[str, str]:
    headers = signing.headers_for(body, SECRET)
    headers.update(overrides)
    return headers


@pytest.mark.parametrize(("body", "overrides", "status"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_requests_are_refused_and_change_nothing(
    served: Served, body: bytes, overrides: dict[str, str], status: int
) -> None:
    before = len(events(served))
    response = signing.post(served.events_url, body, SECRET, headers=_signed_headers(body, overrides))
    assert response.status == status, response.text
    assert "Traceback" not in response.text and SECRET not in response.text
    assert len(events(served)) == before


def test_a_repeated_timestamp_header_is_refused(served: Served) -> None:
    """Two X-Slack-Request-Timestamp headers (the server joins them with a comma)."""
    import http.client

    headers = signing.headers_for(BODY, SECRET)
    url = urllib.parse.urlsplit(served.events_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.putrequest("POST", url.path)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("X-Slack-Request-Timestamp", headers["X-Slack-Request-Timestamp"])
        connection.putheader("Content-Length", str(len(BODY)))
        connection.endheaders(BODY)
        assert connection.getresponse().status == 401
    finally:
        connection.close()


# ---------------------------------------------------------------------------------------
# Replays and foreign workspaces


def _ack_click(served: Served, user: str, token: str, **fields) -> tuple[bytes, str]:
    channel = served.fake.open_im(user)
    hook = served.fake.response_url(channel, user)
    return signing.block_actions_body(user, "finding:ack", value=token, channel_id=channel,
                                      response_url=hook, **fields), hook


def _token(served: Served, user_name: str) -> str:
    engine = make_engine(served.database_url)
    try:
        with session_scope(engine) as session:
            return session.exec(select(Finding.token).where(Finding.resource.endswith(f"user/{user_name}"))).one()
    finally:
        engine.dispose()


def test_a_replayed_click_does_nothing_and_says_so(served: Served) -> None:
    fake = served.fake
    body, _hook = _ack_click(served, ALICE, _token(served, "alice"))
    since = len(fake.calls("response_url"))
    assert served.post(body).status == 200
    first = fake.wait_for(lambda: hook_posts(fake, since) or None, timeout=15)[0]
    assert "Acknowledged" in first.params["text"] or "acknowledg" in first.params["text"].lower()
    decisions = len(events(served, action="decision.ack")) + len(events(served, actor=ALICE))

    since = len(fake.calls("response_url"))
    assert served.post(body).status == 200  # the same bytes, same signature, inside the window
    second = fake.wait_for(lambda: hook_posts(fake, since) or None, timeout=15)[0]
    assert "already handled" in second.params["text"]
    refused = events(served, action="refused", actor=ALICE)
    assert refused[-1].payload["reason"] == "replayed request"
    assert len(events(served, action="decision.ack")) + len(events(served, actor=ALICE)) == decisions + 1


def test_a_replayed_command_is_not_run_twice(served: Served) -> None:
    body = command_body(served, "scan", NOBODY)
    before = len(events(served, action="refused", actor=NOBODY))
    assert "Only security approvers" in served.post(body).json()["text"]
    again = served.post(body)
    assert "already handled" in again.json()["text"]
    reasons = [e.payload["reason"] for e in events(served, action="refused", actor=NOBODY)[before:]]
    assert reasons == ["not a security approver", "replayed request"]


@pytest.mark.parametrize("field", [{"team_id": "T0ELSEWHERE"}, {"api_app_id": "A0OTHERAPP1"}])
def test_requests_from_another_workspace_or_app_are_refused(served: Served, field) -> None:
    token = _token(served, "bob")
    body, _hook = _ack_click(served, ALICE, token, **field)
    since = len(served.fake.calls("response_url"))
    assert served.post(body).status == 200
    post = served.fake.wait_for(lambda: hook_posts(served.fake, since) or None, timeout=15)[0]
    assert "another Slack workspace" in post.params["text"]
    expected = "request from another workspace" if "team_id" in field else "request for another app"
    assert events(served, action="refused", actor=ALICE)[-1].payload["reason"] == expected
    command = command_body(served, "whoami", ALICE, **field)
    assert "another Slack workspace" in served.post(command).json()["text"]


# ---------------------------------------------------------------------------------------
# Failures get one answer


def _new_person(fake: SlackFake, name: str) -> str:
    user = "U0" + name.upper().ljust(8, "0")[:8]
    fake.add_user(user, name=name, email=f"{name}@example.com")
    return user


def test_whoami_when_users_info_fails_answers_once_and_is_audited(served: Served) -> None:
    fake = served.fake
    user = _new_person(fake, "dana")
    fake.fail("users.info", "fatal_error", times=None)
    try:
        since = len(fake.calls("response_url"))
        reply = served.reply("whoami", user)
    finally:
        fake.clear_faults("users.info")
    assert reply["response_type"] == "ephemeral"
    assert reply["text"].startswith(":warning: I couldn't answer `/iam whoami`")
    assert "Slack refused" in reply["text"] and "Nothing was changed" in reply["text"]
    failed = events(served, action="request.failed", actor=user)
    assert len(failed) == 1 and failed[0].payload["error"] == "SlackApiError"
    time.sleep(0.5)  # nothing else follows
    assert hook_posts(fake, since) == []


def test_whoami_when_users_info_is_slow_acks_at_once_and_follows_up(served: Served) -> None:
    fake = served.fake
    user = _new_person(fake, "erin")
    fake.fail("users.info", "internal_error", status=500, times=None)  # the client retries, slowly
    since = len(fake.calls("response_url"))
    try:
        response = served.command("whoami", user)
        assert response.status == 200
        assert response.body == b""  # an empty ack: Slack shows nothing yet
        post = fake.wait_for(lambda: hook_posts(fake, since) or None, timeout=30)
    finally:
        fake.clear_faults("users.info")
    assert len(post) == 1
    assert post[0].params["text"].startswith(":warning: I couldn't answer `/iam whoami`")
    assert post[0].params["response_type"] == "ephemeral"
    assert len(events(served, action="request.failed", actor=user)) == 1


@pytest.mark.parametrize("what", ["refused command", "click"])
def test_a_locked_database_gets_one_reply_not_a_500(served: Served, what: str) -> None:
    fake = served.fake
    path = served.database_url.removeprefix("sqlite:///").split("?")[0]
    if what == "click":
        body, _hook = _ack_click(served, ALICE, _token(served, "orphan"))
    else:
        body = command_body(served, "scan", NOBODY)  # the refusal must be written: it cannot be
    locker = sqlite3.connect(path, timeout=5)
    since = len(fake.calls("response_url"))
    try:
        locker.execute("BEGIN EXCLUSIVE")
        response = served.post(body)
        assert response.status == 200
        in_ack = [response.json()["text"]] if response.body else []
        if not in_ack:
            fake.wait_for(lambda: hook_posts(fake, since) or None, timeout=30)
    finally:
        locker.rollback()
        locker.close()
    with contextlib.suppress(TimeoutError):  # give a second reply the chance to show up
        fake.wait_for(lambda: len(in_ack) + len(hook_posts(fake, since)) > 1 or None, timeout=2)
    replies = in_ack + [c.params["text"] for c in hook_posts(fake, since)]
    assert len(replies) == 1, replies
    assert "the database is busy" in replies[0] and "Nothing was changed" in replies[0]


# ---------------------------------------------------------------------------------------
# Hostile text is inert


@pytest.mark.parametrize("text", ["<!channel>", "findings <!here>", "findings <http://evil|click>",
                                  "nonsense&<b>"])
def test_typed_text_comes_back_escaped(served: Served, text: str) -> None:
    reply = served.reply(text, ALICE)
    first = reply["text"].split("\n")[0]
    assert "<!" not in first and "<http" not in first and "<b>" not in first
    assert "&lt;" in first


# ---------------------------------------------------------------------------------------
# Logs


def test_verbose_logs_hold_no_bodies_tokens_or_response_urls(fake: SlackFake, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'steward.db'}"
    seed_more(database_url)
    secret_text = "audit payload-processor-secret-words"
    with running_steward(fake, database_url, tmp_path, verbose=True) as server:
        channel = fake.open_im(NOBODY)
        hook = fake.response_url(channel, NOBODY)
        body = signing.slash_command_body(text=secret_text, user_id=NOBODY, channel_id=channel, response_url=hook)
        assert server.post(body).status == 200
        click = signing.block_actions_body(ALICE, "finding:ack", value="forged-token-value",
                                           channel_id=fake.open_im(ALICE),
                                           response_url=fake.response_url(fake.open_im(ALICE), ALICE))
        assert server.post(click).status == 200
        fake.wait_for(lambda: any("no longer exists" in json.dumps(c.params) for c in fake.calls("response_url"))
                      or None, timeout=15)
        unhandled = signing.event_callback_body({"type": "reaction_added", "user": ALICE})
        assert server.post(unhandled).status in (200, 404)
        log = server.log_tail(1_000_000)
    assert "DEBUG" in log or "INFO" in log  # verbose really was on
    for needle in ("secret-words", hook.rsplit("/", 1)[-1], "/hooks/response/", "forged-token-value",
                   fake.token, SECRET, "sandbox-verification-token", "reaction_added"):
        assert needle not in log, needle
