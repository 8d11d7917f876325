"""`steward serve` end to end: a real subprocess, real HTTP, requests signed as Slack signs them.

The server talks to the local Slack fake (SLACK_API_URL) and to a database seeded here
directly (SQLite always, PostgreSQL too when STEWARD_TEST_DATABASE_URL is set); `/iam scan`
runs against a moto server in this process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from slack_bolt import App
from sqlmodel import select

from bot.db.engine import make_engine, session_scope
from bot.db.migrate import upgrade
from bot.db.models import Finding, IamIdentity
from bot.run.web import create_wsgi_app
from bot.slack import grammar
from sandbox import signing
from sandbox.slack_fake import SlackFake
from tests.aws import FAKE_CREDENTIALS, running_moto_server
from tests.conftest import PG_URL
from tests.databases import scratch_postgres

SECRET = "serve-test-signing-secret"
ACCOUNT = "111111111111"
ALICE, BOB, NOBODY, CAROL = "U0ALICE001", "U0BOB00001", "U0NOBODY01", "U0CAROL001"
APPROVERS = (CAROL,)
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
ALICE_CI_KEY = {"slot": 1, "access_key_id": "AKIAALICECIKEY00WXYZ", "active": True,
                "created": "2025-01-01T00:00:00+00:00", "last_used": "2026-01-04T08:00:00+00:00",
                "last_used_service": "s3", "last_used_region": "eu-west-1"}


# ---------------------------------------------------------------------------------------
# Helpers (also used by tests/bot/test_commands_parse.py and bench/ack_latency.py)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def steward_command() -> list[str]:
    """The installed console script next to this Python, else `python -m bot`."""
    script = Path(sys.executable).parent / "steward"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot"]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any STEWARD_/SLACK_/AWS_ setting, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STEWARD_", "SLACK_", "AWS_")) and k not in ("PORT", "WEB_CONCURRENCY")
    }
    env.update(extra)
    return env


def add_people(fake: SlackFake) -> None:
    fake.add_user(ALICE, name="alice", email="alice@example.com")
    fake.add_user(BOB, name="bob", email="Bob@Example.com")
    fake.add_user(NOBODY, name="nobody", email="nobody@example.com")
    fake.add_user(CAROL, name="carol", email="carol@example.com")


def identity(
    name: str, owner: str | None, *, groups=("devs",), account: str = ACCOUNT, keys=()
) -> IamIdentity:
    return IamIdentity(
        account_id=account,
        name=name,
        arn=f"arn:aws:iam::{account}:user/{name}",
        owner=owner,
        facts={"console": False, "keys": list(keys), "groups": list(groups)},
        last_seen=NOW,
    )


def finding(
    user: str, owner: str | None, check: str = "stale-user", account: str = ACCOUNT
) -> Finding:
    resource = f"arn:aws:iam::{account}:user/{user}"
    return Finding(
        fingerprint=f"fp-{account}-{check}-{user}"[:64],
        account_id=account,
        check_id=check,
        resource=resource,
        severity="high",
        title=f"Stale IAM user {user}",
        owner=owner,
        state="open",
        details={},
        first_seen=NOW,
        last_seen=NOW,
        state_changed_at=NOW,
    )


def seed(database_url: str) -> None:
    """alice and bob share the group "devs"; alice owns two users (by email and by Slack
    id), bob one; nobody owns nothing; one user has no owner."""
    upgrade(database_url)
    engine = make_engine(database_url)
    old_key_finding = finding("alice-ci", ALICE, check="old-access-key")
    old_key_finding.sub_key, old_key_finding.title = ALICE_CI_KEY["access_key_id"], "Access key not rotated"
    try:
        with session_scope(engine) as session:
            session.add_all(
                [
                    identity("alice", "alice@example.com"),
                    identity("alice-ci", ALICE, keys=[ALICE_CI_KEY]),
                    identity("bob", "bob@example.com"),
                    identity("orphan", None),
                    finding("alice", "alice@example.com"),
                    finding("bob", "bob@example.com"),
                    old_key_finding,
                    finding("orphan", None),
                ]
            )
    finally:
        engine.dispose()


@dataclass
class Served:
    url: str
    fake: SlackFake
    database_url: str
    process: subprocess.Popen
    log: Path

    @property
    def events_url(self) -> str:
        return self.url + "/slack/events"

    def post(
        self, body: bytes, *, secret: str = SECRET, timestamp: int | None = None
    ) -> signing.SignedResponse:
        return signing.post(self.events_url, body, secret, timestamp=timestamp)

    def command(self, text: str, user: str) -> signing.SignedResponse:
        """`/iam text` typed by `user` in their DM with the bot, signed correctly."""
        channel = self.fake.open_im(user)
        body = signing.slash_command_body(
            text=text,
            user_id=user,
            channel_id=channel,
            response_url=self.fake.response_url(channel, user),
        )
        return self.post(body)

    def reply(self, text: str, user: str) -> dict[str, Any]:
        response = self.command(text, user)
        assert response.status == 200, (response.status, response.text, self.log_tail())
        return response.json()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"steward serve exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"steward serve not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def running_steward(
    fake: SlackFake,
    database_url: str,
    workdir: Path,
    *,
    env: dict[str, str] | None = None,
    workers: int = 1,
    threads: int = 4,
    access_log: bool = True,
    verbose: bool = False,
) -> Iterator[Served]:
    """`steward serve` on 127.0.0.1 and a free port until the block ends (then SIGTERM,
    which must stop it cleanly with exit 0)."""
    port = free_port()
    log = workdir / f"steward-serve-{port}.log"
    full_env = clean_env(
        SLACK_BOT_TOKEN=fake.token,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=fake.base_url,
        STEWARD_DATABASE_URL=database_url,
        **{"STEWARD_SECURITY_APPROVERS": ",".join(APPROVERS), **(env or {})},
    )
    args = [
        *steward_command(),
        *(["--verbose"] if verbose else []),
        "serve",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
    ]
    if not access_log:
        args.append("--no-access-log")
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, cwd=workdir, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        yield Served(url, fake, database_url, process, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert process.returncode == 0, log.read_text()[-3000:]


def blocks_text(reply: dict[str, Any]) -> str:
    """Every text in a reply (top-level text and all blocks), for assertions."""
    return reply.get("text", "") + "\n" + json.dumps(reply.get("blocks", []), ensure_ascii=False)


# ---------------------------------------------------------------------------------------
# Fixtures: one server per database dialect for the whole module


@pytest.fixture(scope="module")
def fake() -> Iterator[SlackFake]:
    with SlackFake() as f:
        add_people(f)
        yield f


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with running_moto_server() as url:
        yield url


@pytest.fixture(
    scope="module",
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(not PG_URL, reason="STEWARD_TEST_DATABASE_URL not set"),
            ],
        ),
    ],
)
def served(request, fake: SlackFake, moto_url: str, tmp_path_factory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp(f"serve-{request.param}")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            database_url = f"sqlite:///{workdir / 'steward.db'}"
        else:
            database_url = stack.enter_context(scratch_postgres(PG_URL))
        seed(database_url)
        aws = {
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
        }
        yield stack.enter_context(running_steward(fake, database_url, workdir, env=aws))


# ---------------------------------------------------------------------------------------
# Signatures, Slack's housekeeping requests, routes


def test_health(served: Served) -> None:
    with urllib.request.urlopen(served.url + "/healthz", timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read())["status"] == "ok"


def test_signed_request_is_accepted(served: Served) -> None:
    assert served.command("help", ALICE).status == 200


def test_wrong_signature_is_refused(served: Served) -> None:
    body = signing.slash_command_body(text="help", user_id=ALICE)
    response = served.post(body, secret="not-the-secret")
    assert response.status == 401
    assert SECRET not in response.text


def test_stale_timestamp_is_refused(served: Served) -> None:
    body = signing.slash_command_body(text="help", user_id=ALICE)
    stale = int(time.time()) - 5 * 60 - 30
    assert served.post(body, timestamp=stale).status == 401
    # the same body signed now is fine: it is the age that counts
    assert served.post(body).status == 200


def test_tampered_body_is_refused(served: Served) -> None:
    body = signing.slash_command_body(text="help", user_id=ALICE)
    tampered = body.replace(b"text=help", b"text=scan")
    # the signature of the original body on the tampered one
    response = signing.post(served.events_url, tampered, SECRET, headers=signing.sign(body, SECRET))
    assert response.status == 401


def test_url_verification_echoes_the_challenge(served: Served) -> None:
    response = served.post(
        signing.url_verification_body("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    )
    assert response.status == 200
    assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


def test_ssl_check(served: Served) -> None:
    assert served.post(signing.ssl_check_body()).status == 200


def test_unknown_routes_and_methods(served: Served) -> None:
    for path, method, status in (
        ("/", "GET", 404),
        ("/slack/events/extra", "POST", 404),
        ("/slack/events", "GET", 405),
        ("/healthz", "POST", 405),
    ):
        request = urllib.request.Request(
            served.url + path, data=b"" if method == "POST" else None, method=method
        )
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(request, timeout=5)
        with excinfo.value as error:  # read and close: gunicorn lingers on unclosed sockets
            assert error.code == status, path
            body = error.read().decode()
        assert "Traceback" not in body and 'File "' not in body


def test_garbage_bodies_never_leak(served: Served) -> None:
    bodies = (
        b"\xff\xfe\xfa",
        b"payload=%7Bnot-json",
        b'{"type": "event_callback"',
        f"command=/iam&user_id={ALICE}&text=%ff%fe".encode(),
    )
    for body in bodies:
        response = served.post(body)
        assert response.status in (200, 400), (body, response.status)
        assert "Traceback" not in response.text
        assert SECRET not in response.text
    # A signed command without the fields Slack always sends is refused before any listener.
    response = served.post(b"command=/iam&text=help")
    assert response.status == 400
    assert response.json() == {"error": "bad request"}


# ---------------------------------------------------------------------------------------
# /iam for everyone


@pytest.mark.parametrize(
    "text", ["", "help", "nonsense", "findings account:123", "whoami please", "scan 12"]
)
def test_help_and_malformed_commands_get_private_usage(served: Served, text: str) -> None:
    reply = served.reply(text, ALICE)
    assert reply["response_type"] == "ephemeral"
    if text in ("", "help"):
        assert "/iam whoami" in reply["text"] and "/iam audit" in reply["text"]  # the usage text
    else:
        assert "`" in reply["text"].split("\n")[0]  # first line says what was wrong
        assert "/iam audit" not in reply["text"] or text.startswith("audit")  # not the whole help


def test_whoami_without_identities_explains(served: Served) -> None:
    reply = served.reply("whoami", NOBODY)
    assert reply["response_type"] == "ephemeral"
    text = blocks_text(reply)
    assert "I don't know of any IAM user that is yours" in text
    assert "user/alice" not in text and "user/bob" not in text and "orphan" not in text


def test_whoami_shows_only_the_callers_identities(served: Served) -> None:
    alice = blocks_text(served.reply("whoami", ALICE))
    bob = blocks_text(served.reply("whoami", BOB))

    assert f"arn:aws:iam::{ACCOUNT}:user/alice" in alice  # owned through the email tag
    assert f"arn:aws:iam::{ACCOUNT}:user/alice-ci" in alice  # owned through the Slack id
    assert "Stale IAM user alice" in alice
    assert "user/bob" not in alice and "Stale IAM user bob" not in alice
    assert "orphan" not in alice

    assert f"arn:aws:iam::{ACCOUNT}:user/bob" in bob  # owner email matched case-insensitively
    assert "Stale IAM user bob" in bob
    assert "user/alice" not in bob and "Stale IAM user alice" not in bob
    assert "orphan" not in bob


def test_own_findings(served: Served) -> None:
    reply = served.reply("findings", BOB)
    text = blocks_text(reply)
    assert reply["response_type"] == "ephemeral"
    assert "Stale IAM user bob" in text and "alice" not in text


def test_keys_shows_only_the_callers_keys_and_their_findings(served: Served) -> None:
    reply = served.reply("keys", ALICE)
    assert reply["response_type"] == "ephemeral" and reply["text"] == "Your access keys: 1"
    text = blocks_text(reply)
    assert "…WXYZ" in text and "AKIAALICECIKEY00WXYZ" not in text
    assert "alice-ci" in text and "active" in text and "days old" in text and "2026-01-04" in text
    assert "open finding: Access key not rotated" in text
    bob = served.reply("keys", BOB)
    assert bob["text"] == "Your access keys: 0" and "WXYZ" not in blocks_text(bob)


# ---------------------------------------------------------------------------------------
# Approver-only commands


def _refusals(database_url: str, actor: str) -> list:
    from bot.db.models import AuditEvent

    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            query = select(AuditEvent).where(
                AuditEvent.action == "refused", AuditEvent.actor == actor
            )
            return list(session.exec(query.order_by(AuditEvent.sequence)).all())
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "text", ["findings account:111111111111", f"findings <@{ALICE}|alice>", "scan"]
)
def test_non_approver_gets_a_private_refusal(served: Served, text: str) -> None:
    before = (
        len(_refusals(served.database_url, NOBODY)) if importlib.util.find_spec("bot.db.audit") else 0
    )
    reply = served.reply(text, NOBODY)
    assert reply["response_type"] == "ephemeral"
    assert "Only security approvers" in reply["text"]
    assert "Stale IAM user" not in blocks_text(reply)
    if importlib.util.find_spec("bot.db.audit"):
        refusals = _refusals(served.database_url, NOBODY)
        assert len(refusals) == before + 1
        assert text.split()[0] in refusals[-1].payload["attempted"]


def test_approver_sees_findings_by_account_person_and_check(served: Served) -> None:
    by_account = blocks_text(served.reply(f"findings account:{ACCOUNT}", CAROL))
    assert "Stale IAM user alice" in by_account and "Stale IAM user bob" in by_account
    by_person = blocks_text(served.reply(f"findings <@{BOB}|bob>", CAROL))
    assert "Stale IAM user bob" in by_person and "Stale IAM user alice" not in by_person
    by_check = blocks_text(served.reply("findings check:stale-user", CAROL))
    assert "Stale IAM user orphan" in by_check


def test_approver_scan_replies_through_the_response_url(served: Served) -> None:
    fake = served.fake
    already = len(fake.calls("response_url"))
    reply = served.reply("scan", CAROL)
    assert reply["response_type"] == "ephemeral"
    assert "Scanning" in reply["text"]

    def summary():
        posts = [
            c
            for c in fake.calls("response_url")[already:]
            if "123456789012" in str(c.params.get("text"))
        ]
        return posts[-1] if posts else None

    call = fake.wait_for(summary, timeout=60)
    assert call.status == 200
    assert call.params.get("response_type") == "ephemeral"
    assert call.params.get("replace_original") is False
    assert ":white_check_mark:" in call.params["text"], call.params["text"]


@pytest.mark.parametrize("verb", grammar.VERBS, ids=lambda v: v.name)
def test_every_registered_verb_answers_over_http(served: Served, verb) -> None:
    """The registry walked through `steward serve`: each verb's example gets its own answer
    (not the usage text), and a restricted one refuses a non-approver, naming what."""
    fake = served.fake
    already = len(fake.calls("response_url"))
    reply = served.reply(verb.example, CAROL)
    assert reply["response_type"] == "ephemeral"
    assert "unknown command" not in reply["text"] and "Only security approvers" not in reply["text"]
    if verb.name != "help":
        assert not reply["text"].startswith("*IAM Steward*"), reply["text"]
    if verb.name == "scan":  # the scan runs after the ack: wait for it, so it ends in this test
        fake.wait_for(lambda: [c for c in fake.calls("response_url")[already:]
                               if "123456789012" in str(c.params.get("text"))], timeout=60)
    if verb.approver_only is not False:
        refused = served.reply(verb.example, NOBODY)["text"]
        assert refused.startswith(f"Only security approvers can {verb.refusal}."), refused


def test_access_log_has_no_bodies_or_secrets(served: Served) -> None:
    served.reply("whoami", ALICE)
    log = served.log_tail(200_000)
    assert '"POST /slack/events" 200' in log
    for secret in (SECRET, served.fake.token, "text=whoami", "response_url", "alice@example.com"):
        assert secret not in log


# ---------------------------------------------------------------------------------------
# Start-up validation (nothing is started) and the WSGI app in-process


@pytest.mark.parametrize(
    ("command", "env", "missing"),
    [
        ("serve", {"SLACK_BOT_TOKEN": "xoxb-x"}, "SLACK_SIGNING_SECRET"),
        ("serve", {"SLACK_SIGNING_SECRET": "x"}, "SLACK_BOT_TOKEN"),
        ("socket", {"SLACK_BOT_TOKEN": "xoxb-x"}, "SLACK_APP_TOKEN"),
        ("socket", {"SLACK_APP_TOKEN": "xapp-x"}, "SLACK_BOT_TOKEN"),
    ],
)
def test_startup_refuses_missing_settings(
    tmp_path: Path, command: str, env: dict[str, str], missing: str
) -> None:
    result = subprocess.run(
        [*steward_command(), command],
        cwd=tmp_path,
        env=clean_env(**env, SLACK_API_URL="http://127.0.0.1:9/api/"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: missing setting: {missing}"], result.stderr
    assert not (tmp_path / "steward.db").exists()  # nothing started, not even the database


def test_startup_refuses_a_token_slack_rejects(tmp_path: Path, fake: SlackFake) -> None:
    result = subprocess.run(
        [*steward_command(), "serve", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=tmp_path,
        env=clean_env(
            SLACK_BOT_TOKEN="xoxb-wrong", SLACK_SIGNING_SECRET="x", SLACK_API_URL=fake.base_url
        ),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "Slack rejected SLACK_BOT_TOKEN: invalid_auth" in result.stderr
    assert "xoxb-wrong" not in result.stderr
    assert not (tmp_path / "steward.db").exists()


def _call(wsgi, method: str, path: str, body: bytes = b"") -> tuple[str, dict[str, str], bytes]:
    import io
    from wsgiref.util import setup_testing_defaults

    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    setup_testing_defaults(environ)
    seen: dict[str, Any] = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    data = b"".join(wsgi(environ, start_response))
    return seen["status"], seen["headers"], data


def _offline_app() -> App:
    return App(token="xoxb-offline", signing_secret=SECRET, token_verification_enabled=False)


def test_healthz_503_without_leaking_the_database_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'secret-name.db'}"
    engine = make_engine(url)
    try:
        status, headers, body = _call(create_wsgi_app(_offline_app(), engine), "GET", "/healthz")
    finally:
        engine.dispose()
    assert status.startswith("503")
    assert json.loads(body) == {"status": "unavailable", "reason": "database unavailable"}
    assert headers["Cache-Control"] == "no-store"


def test_wsgi_refuses_oversized_bodies_before_reading(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        wsgi = create_wsgi_app(_offline_app(), engine)
        status, _, _ = _call(wsgi, "POST", "/slack/events", b"x" * (wsgi.max_body_bytes + 1))
        assert status.startswith("413")
        status, _, body = _call(wsgi, "GET", "/healthz")
        assert status.startswith("200") and json.loads(body) == {"status": "ok"}
    finally:
        engine.dispose()


def test_wsgi_hides_unexpected_errors(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        wsgi = create_wsgi_app(_offline_app(), engine)

        def explode(*_args, **_kwargs):
            raise RuntimeError("secret detail postgresql://user:pw@db")

        wsgi.bolt = explode
        status, _, body = _call(wsgi, "POST", "/slack/events", b"x=1")
    finally:
        engine.dispose()
    assert status.startswith("500")
    assert json.loads(body) == {"error": "internal error"}
