"""`steward demo`: IAM Steward end to end on one machine, with no AWS account, no Slack
workspace and no database server.

:class:`Demo` starts, in this process:

1. an IAM sandbox: moto's ``ThreadedMotoServer`` on 127.0.0.1, seeded with
   :mod:`sandbox.demo_data` (two accounts; the second is reached through
   ``sts:AssumeRole`` like a real member account);
2. the local Slack fake (:class:`sandbox.slack_fake.SlackFake`) with the organisation's
   people, a ``#security`` channel and two security approvers;
3. Steward itself: ``bot.run.runtime.build_runtime`` on a SQLite file in a temporary directory,
   and the production WSGI app (``bot.run.web``) on an ephemeral port, so Slack requests take
   the same path as under ``steward serve`` (signature check, Bolt, listeners);
4. what the demo's principals really used, stored through ``UsageService.store`` as a
   usage collection stores Access Advisor's answers (moto has none; :meth:`Demo.store_usage`);
5. one scan and one routing cycle (``steward.campaigns.run_cycle()``): the DMs and the
   security-channel triage are in the fake when the page opens, the weekly digest in
   ``#security``;
6. a risky change made in the IAM sandbox, its CloudTrail record put on an SQS queue of the
   sandbox and taken by one poll of the activity intake (:meth:`Demo.risky_change`): the
   actor's "Did you do this?" DM;
7. the demo page (:mod:`sandbox.page`) on ``--port``: the workspace as each person
   sees it. Clicks, modal submissions and ``/iam`` commands typed there are turned into
   requests built and signed exactly as Slack builds them (:mod:`sandbox.signing`) and
   POSTed to Steward's ``/slack/events``.

AWS settings are process-wide (boto3 reads them from the environment), so :meth:`start`
replaces every ``AWS_*`` variable with the sandbox's and :meth:`stop` puts them back: the
demo can never reach a real AWS account, and it never reads ``.env`` or a developer's
``STEWARD_*``/``SLACK_*`` variables either (:class:`DemoSettings`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socketserver
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from bot.config import Settings
from sandbox import demo_data, signing
from sandbox.slack_fake import DEFAULT_APP_ID, DEFAULT_TEAM_DOMAIN, DEFAULT_TEAM_ID, SlackFake

log = logging.getLogger(__name__)

__all__ = ["Demo", "DemoError", "DemoSettings", "element_state"]

DEFAULT_PORT = 8000
REGION = demo_data.REGION
IAM_CACHE_SECONDS = 1.5
STEWARD_TIMEOUT = 30.0


class DemoError(RuntimeError):
    """The demo cannot start; the message is one line saying what to do."""


class DemoSettings(Settings):
    """Settings from the keyword arguments only: no environment, no ``.env`` file."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **_other_sources):
        return (init_settings,)


@dataclass
class _Overlay:
    """What Slack's client would know about a user's modals that the fake does not:
    views closed by a submission or the Close button, views replaced or pushed by a
    ``response_action``, and validation errors shown in a form."""

    closed: set[str] = field(default_factory=set)
    replaced: dict[str, dict[str, Any]] = field(default_factory=dict)
    pushed: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    # What was typed into a view whose submission came back with errors: Slack keeps it.
    values: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (getfqdn): slow on some machines.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        from sandbox.page import client_gone

        if not client_gone():  # a client that hung up is not an error
            super().handle_error(request, client_address)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class Demo:
    """Everything `steward demo` runs; ``with Demo(port=0) as demo: ...`` in tests.

    Args:
        host, port: where the demo page listens (``port=0``: any free port).
        seed: the demo data seed (:func:`sandbox.demo_data.build`).
        run_cycle: run the routing cycle after the scan (DMs and triage).
        workdir: where the SQLite database goes (default: a new temporary directory,
            removed by :meth:`stop`).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        seed: int = demo_data.DEFAULT_SEED,
        run_cycle: bool = True,
        workdir: str | Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.seed = seed
        self.run_cycle_on_start = run_cycle
        self._workdir_arg = Path(workdir) if workdir else None
        self.workdir: Path | None = None
        self.org = demo_data.build(seed)
        self.secret = secrets.token_hex(16)
        self.warnings: list[str] = []
        self.timings: dict[str, float] = {}
        self.summary: dict[str, Any] = {}
        self.fake: SlackFake | None = None
        self.runtime: Any = None
        self.security_channel: str | None = None
        self._moto: Any = None
        self._moto_url: str | None = None
        self._steward_server: _ThreadingWSGIServer | None = None
        self._page_server: Any = None
        self._threads: list[threading.Thread] = []
        self._serving: list[Any] = []
        self._saved_env: dict[str, str | None] | None = None
        self._overlays: dict[str, _Overlay] = {}
        self._lock = threading.RLock()
        self._iam_cache: tuple[float, list[dict[str, Any]]] | None = None
        self._iam_lock = threading.Lock()
        self._sessions: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Demo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._page_server is None:
            raise RuntimeError("the demo is not started")
        host, port = self._page_server.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{port}/"

    @property
    def steward_url(self) -> str:
        if self._steward_server is None:
            raise RuntimeError("the demo is not started")
        host, port = self._steward_server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, progress=None) -> Demo:
        """Start everything; ``progress(message)`` is called before each phase. Raises
        :class:`DemoError` with a one-line reason (and leaves nothing running)."""
        say = progress or (lambda _message: None)
        began = time.perf_counter()
        try:
            self._start(say)
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.perf_counter() - began
        return self

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - began

    def _start(self, say) -> None:
        # The page's port first: a busy port should fail before anything else starts.
        from sandbox.page import make_page_server

        try:
            self._page_server = make_page_server(self, self.host, self.port)
        except OSError as exc:
            raise DemoError(
                f"cannot listen on {self.host}:{self.port} ({exc.strerror or exc}); "
                "choose another port with --port"
            ) from None
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            raise DemoError(
                "the IAM sandbox needs moto's server: pip install 'iam-steward[demo]'"
            ) from None

        self.workdir = self._workdir_arg or Path(tempfile.mkdtemp(prefix="steward-demo-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._set_env()

        say("Starting the IAM sandbox (moto) and seeding two accounts")
        with self._phase("iam_sandbox"):
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._moto.start()
            host, port = self._moto.get_host_and_port()
            self._moto_url = f"http://{host}:{port}"
            os.environ["AWS_ENDPOINT_URL"] = self._moto_url
            _reset_moto(self._moto_url)
            seeded = demo_data.apply(self.org)
            self.summary["seeded"] = seeded

        say("Starting the Slack sandbox")
        with self._phase("slack_sandbox"):
            self.fake = SlackFake().start()
            self._add_people()

        say("Starting Steward (SQLite database, HTTP app)")
        with self._phase("steward"):
            self._start_steward()

        say("Storing what the principals really used (Access Advisor's answers)")
        with self._phase("usage"):
            self.store_usage()

        say("Scanning both accounts")
        with self._phase("scan"):
            report = self.runtime.steward.scans.run(actor="demo")
            self.summary["scan"] = [
                {
                    "account": o.account_id,
                    "status": o.status,
                    "findings": len(o.findings),
                    "error": o.error,
                    "seconds": round(o.seconds, 2),
                }
                for o in report.outcomes
            ]
            for outcome in report.failed:
                self.warnings.append(f"The scan of {outcome.label} failed: {outcome.error}")

        if self.run_cycle_on_start:
            say("Routing findings to their owners")
            with self._phase("routing"):
                self.run_cycle()
            say("Posting the weekly digest to #security")
            with self._phase("digest"):
                self.post_digest()
            say("A risky change arrives from CloudTrail (activity queue)")
            with self._phase("activity"):
                self.risky_change()

        with self._phase("page"):
            self._serve(self._page_server, "demo-page")

    def stop(self) -> None:
        """Stop everything that runs and put the environment back. Idempotent."""
        for server in (self._page_server, self._steward_server):
            if server is None:
                continue
            if server in self._serving:  # shutdown() waits for serve_forever() to end
                with contextlib.suppress(Exception):
                    server.shutdown()
            with contextlib.suppress(Exception):
                server.server_close()
        self._serving.clear()
        self._page_server = self._steward_server = None
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        if self.runtime is not None:
            with contextlib.suppress(Exception):
                self.runtime.engine.dispose()
            self.runtime = None
        if self.fake is not None:
            self.fake.stop()
        # The environment first: a reset rebuilds moto's IAM backends at once, which takes
        # seconds while MOTO_IAM_LOAD_MANAGED_POLICIES is set.
        self._restore_env()
        if self._moto is not None:
            with contextlib.suppress(Exception):
                if self._moto_url:
                    _reset_moto(self._moto_url)  # moto's state is this process's
            with contextlib.suppress(Exception):
                self._moto.stop()
            self._moto = None
        if self.workdir is not None and self._workdir_arg is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _serve(self, server, name: str) -> None:
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True
        )
        thread.start()
        self._threads.append(thread)
        self._serving.append(server)

    # ------------------------------------------------------------------ environment

    def _set_env(self) -> None:
        """Only the sandbox's AWS settings: no profile, no config file, fake keys."""
        assert self.workdir is not None
        ours = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": str(self.workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.workdir / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
        }
        # Everything the demo talks to is on loopback: never through a proxy.
        for name in ("NO_PROXY", "no_proxy"):
            kept = [h for h in (os.environ.get(name) or "").split(",") if h.strip()]
            ours[name] = ",".join(dict.fromkeys([*kept, "127.0.0.1", "localhost"]))
        names = {k for k in os.environ if k.startswith("AWS_")} | set(ours)
        self._saved_env = {name: os.environ.get(name) for name in names}
        for name in names:
            os.environ.pop(name, None)
        os.environ.update(ours)

    def _restore_env(self) -> None:
        if self._saved_env is None:
            return
        for name in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[name]
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = None

    # ------------------------------------------------------------------ setup

    def _add_people(self) -> None:
        assert self.fake is not None
        for person in self.org.slack_people:
            self.fake.add_user(
                person.slack_id,
                name=person.handle,
                real_name=person.real_name,
                email=person.email,
                tz=person.tz,
                deleted=not person.active,
            )
        approvers = [p.slack_id for p in self.org.approvers]
        self.security_channel = self.fake.add_channel(
            self.org.security_channel, channel_id="C0SECURITY", members=approvers
        )

    def settings(self) -> Settings:
        assert self.fake is not None and self.workdir is not None
        return DemoSettings(
            database_url=f"sqlite:///{self.workdir / 'steward.db'}",
            slack_bot_token=self.fake.token,
            slack_signing_secret=self.secret,
            slack_api_url=self.fake.base_url,
            security_channel=self.security_channel,
            security_approvers=[p.slack_id for p in self.org.approvers],
            account_roles=[a.steward_role_arn for a in self.org.accounts],
            external_id=demo_data.EXTERNAL_ID,
            restore_role_name=demo_data.RESTORE_ROLE,
            dry_run=False,
        )

    def _start_steward(self) -> None:
        from bot.run.runtime import build_runtime
        from bot.run.web import create_wsgi_app

        self.runtime = build_runtime(self.settings())
        wsgi = create_wsgi_app(self.runtime.app(), self.runtime.engine)
        self._steward_server = make_server(
            "127.0.0.1", 0, wsgi, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self._serve(self._steward_server, "steward-http")

    def run_cycle(self) -> Any:
        """One routing cycle, as `steward notify` runs it; a warning on the page when
        this build of Steward has none."""
        campaigns = getattr(self.runtime.steward, "campaigns", None)
        run = getattr(campaigns, "run_cycle", None)
        if run is None:
            self.warnings.append(
                "This build of Steward has no routing cycle (steward.campaigns.run_cycle): "
                "no DMs or triage messages were sent."
            )
            return None
        report = run()
        self.summary["routing"] = _plain(report)
        for failure in getattr(report, "failures", None) or ():
            self.warnings.append(f"Routing: {failure}")
        return report

    def post_digest(self) -> Any:
        """This week's digest in #security, as `steward digest --post` posts it."""
        try:
            from bot.services.digest import DigestService
        except ImportError:
            self.warnings.append("This build of Steward has no digest (bot.services.digest).")
            return None
        try:
            result = DigestService(self.runtime.settings, self.runtime.engine).post(
                self.runtime.client, actor="demo"
            )
        except Exception as exc:  # shown on the page: the demo goes on without a digest
            log.exception("the demo could not post the digest")
            self.warnings.append(f"The weekly digest could not be posted: {type(exc).__name__}: {exc}")
            return None
        self.summary["digest"] = {"week": result.week, "posted": result.posted}
        return result

    def store_usage(self) -> None:
        """What the demo's principals really used, stored as the usage collection stores
        Access Advisor's answers (``UsageService.store``); the scan's ``unused-permissions``
        check reads it. moto has no Access Advisor, so the answers come from
        :data:`sandbox.demo_data.USAGE` instead of ``UsageService.collect``."""
        from bot.services.usage import UsageService

        service = UsageService(self.runtime.settings, engine=self.runtime.engine)
        runs = demo_data.usage_runs(self.org)
        for account_id, run in runs.items():
            service.store(account_id, run, actor="demo")
        self.summary["usage"] = {a: len(r.usage) for a, r in runs.items()}

    def risky_change(self) -> Any:
        """:data:`sandbox.demo_data.RISKY_CHANGE`, made in the IAM sandbox; CloudTrail's
        record of it goes on an SQS queue of the sandbox as EventBridge puts it there, and one
        poll of the activity intake takes it, as ``steward events --once`` does: the
        actor's owner is asked "Did you do this?"."""
        import uuid
        from datetime import UTC, datetime

        from bot.run.events import Intake

        change = demo_data.RISKY_CHANGE
        session = self._aws(self.org.account(change.account))
        iam = session.client("iam")
        keys = iam.list_access_keys(UserName=change.actor)["AccessKeyMetadata"]
        actor_key = max(keys, key=lambda k: k["CreateDate"])["AccessKeyId"]  # the one in use
        new_key = iam.create_access_key(UserName=change.target)["AccessKey"]["AccessKeyId"]
        self.invalidate_iam()
        envelope = demo_data.cloudtrail_envelope(
            change, actor_key=actor_key, new_key=new_key, event_id=str(uuid.uuid4()),
            when=datetime.now(UTC),
        )
        sqs = session.client("sqs")
        queue = sqs.create_queue(QueueName="iam-steward-activity")["QueueUrl"]
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(envelope))
        report = Intake(self.runtime.steward.activity, sqs, queue, wait_seconds=0).poll_once()
        self.summary["activity"] = _plain(report)
        if report.risky != 1 or report.failed:
            self.warnings.append(
                f"The risky change was not taken as one: {report.received} received, "
                f"{report.risky} risky, {report.failed} failed {report.failures}"
            )
        return report

    # ------------------------------------------------------------------ people and places

    def person(self, user_id: str) -> demo_data.Person:
        for person in self.org.slack_people:
            if person.slack_id == user_id:
                return person
        raise KeyError(user_id)

    def viewers(self) -> list[demo_data.Person]:
        """The people one can "view as": everyone in Slack who can still sign in."""
        return [p for p in self.org.slack_people if p.active]

    def is_approver(self, user_id: str) -> bool:
        return any(p.slack_id == user_id for p in self.org.approvers)

    def dm_channel(self, user_id: str) -> str:
        assert self.fake is not None
        return self.fake.im_channel(user_id) or self.fake.open_im(user_id)

    def channels_for(self, user_id: str) -> list[dict[str, Any]]:
        """Channels the user is in (not IMs)."""
        assert self.fake is not None
        found = []
        for channel in self.fake.snapshot()["channels"]:
            if channel.get("is_im") or channel.get("is_mpim"):
                continue
            members = channel.get("members")
            if members is None or user_id in members:
                found.append(channel)
        return found

    def default_channel(self, user_id: str) -> str:
        if self.is_approver(user_id) and self.security_channel:
            return self.security_channel
        return self.dm_channel(user_id)

    def file(self, user_id: str, file_id: str) -> tuple[bytes, str] | None:
        """An uploaded file's bytes and name, if shared in a channel the user can see."""
        assert self.fake is not None
        for record in self.fake.files():
            if record["id"] == file_id and any(self.can_see(user_id, c) for c in record["channels"]):
                return bytes(record.get("content") or b""), str(record.get("name") or file_id)
        return None

    def can_see(self, user_id: str, channel_id: str) -> bool:
        if channel_id == self.dm_channel(user_id):
            return True
        return any(c["id"] == channel_id for c in self.channels_for(user_id))

    # ------------------------------------------------------------------ talking to Steward

    def _post(self, body: bytes) -> signing.SignedResponse:
        return signing.post(
            f"{self.steward_url}/slack/events", body, self.secret, timeout=STEWARD_TIMEOUT
        )

    def _handle(self, user_id: str) -> str:
        return self.person(user_id).handle

    def _channel_name(self, channel_id: str) -> str:
        if channel_id.startswith("D"):
            return "directmessage"
        assert self.fake is not None
        for channel in self.fake.snapshot()["channels"]:
            if channel["id"] == channel_id:
                return str(channel.get("name") or channel_id)
        return channel_id

    def slash_command(self, user_id: str, channel_id: str, line: str) -> dict[str, Any]:
        """Type ``line`` (``/iam whoami``) in a channel: Slack's signed slash command
        request. The immediate reply (the ack's body) is shown to the user as an ephemeral
        message, as Slack does, by posting it to the command's response URL."""
        assert self.fake is not None
        command, _, text = line.strip().partition(" ")
        if command != "/iam":
            return {
                "ok": False,
                "error": f"{command or 'That'} is not a valid command here. Try /iam help.",
            }
        response_url = self.fake.response_url(channel_id, user_id)
        body = signing.slash_command_body(
            "/iam",
            text=text.strip(),
            user_id=user_id,
            user_name=self._handle(user_id),
            channel_id=channel_id,
            channel_name=self._channel_name(channel_id),
            response_url=response_url,
            trigger_id=self.fake.trigger_id(user_id),
        )
        answer = self._post(body)
        if answer.status != 200:
            return {"ok": False, "error": f"Steward answered HTTP {answer.status}", "status": answer.status}
        reply = _json_or_text(answer.body)
        if reply:
            _post_json(response_url, reply)
        return {"ok": True, "status": answer.status}

    def _container(
        self, user_id: str, source: str, channel: str | None, ts: str | None, view_id: str | None
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(message or ephemeral, view) the action comes from."""
        assert self.fake is not None
        if source == "view":
            view = self.current_view(user_id, view_id or "")
            if view is None:
                raise LookupError("that view is no longer open")
            return None, view
        if source == "home":
            home = self.fake.home(user_id)
            if home is None:
                raise LookupError("no Home tab")
            return None, home
        if not channel or not ts:
            raise LookupError("message not found")
        if source == "ephemeral":
            for eph in self.fake.ephemerals(user_id, channel):
                if eph["ts"] == ts:
                    return eph, None
            raise LookupError("that ephemeral message is gone")
        message = self.fake.message(channel, ts)
        if message is None:
            raise LookupError("that message is gone")
        return message, None

    def block_action(
        self,
        user_id: str,
        *,
        source: str,
        block_id: str,
        action_id: str,
        channel: str | None = None,
        ts: str | None = None,
        view_id: str | None = None,
        selected: Any = None,
        state: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A click (or a selection) on an interactive element: Slack's signed
        ``block_actions`` request, with the message, container, channel, response URL and
        a trigger id as Slack sends them."""
        assert self.fake is not None
        message, view = self._container(user_id, source, channel, ts, view_id)
        blocks = (view or message or {}).get("blocks") or []
        element = find_element(blocks, block_id, action_id)
        if element is None:
            return {"ok": False, "error": "that element is no longer there"}
        action = action_payload(element, selected)
        state_values = state_from(blocks, state or {})
        trigger_id = self.fake.trigger_id(user_id)
        if view is not None:
            view = {**view, "state": {"values": state_values}}
            body = signing.block_actions_body(
                user_id,
                action_id,
                value=element.get("value"),
                view=view,
                block_id=block_id,
                action=action,
                state_values=state_values,
                user_name=self._handle(user_id),
                trigger_id=trigger_id,
            )
        else:
            assert channel is not None and ts is not None and message is not None
            is_ephemeral = source == "ephemeral"
            body = signing.block_actions_body(
                user_id,
                action_id,
                value=element.get("value"),
                message=None if is_ephemeral else message,
                channel_id=channel,
                response_url=self.fake.response_url(channel, user_id, ts),
                is_ephemeral=is_ephemeral,
                container={
                    "type": "message",
                    "message_ts": ts,
                    "channel_id": channel,
                    "is_ephemeral": is_ephemeral,
                },
                block_id=block_id,
                action=action,
                state_values=state_values,
                user_name=self._handle(user_id),
                trigger_id=trigger_id,
            )
        body = _fix_action(body, element, self._channel_name(channel) if channel else None)
        answer = self._post(body)
        if answer.status != 200:
            return {"ok": False, "error": f"Steward answered HTTP {answer.status}", "status": answer.status}
        return {"ok": True, "status": answer.status}

    # ------------------------------------------------------------------ modals

    def _overlay(self, user_id: str) -> _Overlay:
        with self._lock:
            return self._overlays.setdefault(user_id, _Overlay())

    def modal_stack(self, user_id: str) -> list[dict[str, Any]]:
        """The modals open for the user, bottom first, as Slack's client would show them."""
        assert self.fake is not None
        overlay = self._overlay(user_id)
        with self._lock:
            stack = []
            for view in self.fake.modals(user_id):
                if view["id"] in overlay.closed:
                    continue
                replaced = overlay.replaced.get(view["id"])
                stack.append(replaced if replaced is not None else view)
            stack.extend(v for v in overlay.pushed if v["id"] not in overlay.closed)
            return stack

    def current_view(self, user_id: str, view_id: str) -> dict[str, Any] | None:
        for view in self.modal_stack(user_id):
            if view["id"] == view_id:
                return view
        return None

    def view_values(self, view_id: str) -> dict[str, dict[str, Any]]:
        """The input state of a view as last submitted with errors (empty otherwise)."""
        with self._lock:
            for overlay in self._overlays.values():
                if view_id in overlay.values:
                    return dict(overlay.values[view_id])
        return {}

    def view_errors(self, view_id: str) -> dict[str, str]:
        with self._lock:
            for overlay in self._overlays.values():
                if view_id in overlay.errors:
                    return dict(overlay.errors[view_id])
        return {}

    def submit_view(
        self, user_id: str, view_id: str, values: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Any]:
        """Submit a modal: Slack's signed ``view_submission``; then do what the app's
        ``response_action`` says (close, errors, update, push, clear)."""
        assert self.fake is not None
        view = self.current_view(user_id, view_id)
        if view is None:
            return {"ok": False, "error": "that view is no longer open"}
        state = state_from(view.get("blocks") or [], values, inputs_only=True)
        body = signing.view_submission_body(
            user_id,
            str(view.get("callback_id") or ""),
            str(view.get("private_metadata") or ""),
            state,
            view=view,
            user_name=self._handle(user_id),
            trigger_id=self.fake.trigger_id(user_id),
        )
        answer = self._post(body)
        if answer.status != 200:
            return {"ok": False, "error": f"Steward answered HTTP {answer.status}", "status": answer.status}
        reply = _json_or_text(answer.body)
        action = reply.get("response_action") if isinstance(reply, dict) else None
        overlay = self._overlay(user_id)
        with self._lock:
            overlay.errors.pop(view_id, None)
            if action == "errors":
                overlay.errors[view_id] = {str(k): str(v) for k, v in (reply.get("errors") or {}).items()}
                overlay.values[view_id] = state  # the form shows what was typed, as Slack's does
                return {"ok": False, "errors": overlay.errors[view_id]}
            overlay.values.pop(view_id, None)
            if action == "update" and isinstance(reply.get("view"), dict):
                overlay.replaced[view_id] = {**view, **reply["view"], "id": view_id}
                return {"ok": True, "updated": True}
            if action == "push" and isinstance(reply.get("view"), dict):
                pushed = {**reply["view"], "id": f"V0DEMO{secrets.token_hex(3).upper()}"}
                pushed.setdefault("state", {"values": {}})
                overlay.pushed.append(pushed)
                return {"ok": True, "pushed": True}
            if action == "clear":
                overlay.closed.update(v["id"] for v in self.modal_stack(user_id))
            else:
                overlay.closed.add(view_id)
        return {"ok": True, "closed": True}

    def close_view(self, user_id: str, view_id: str) -> dict[str, Any]:
        """The Close button: gone on the client; ``view_closed`` sent when the app asked."""
        view = self.current_view(user_id, view_id)
        overlay = self._overlay(user_id)
        with self._lock:
            overlay.closed.add(view_id)
            overlay.errors.pop(view_id, None)
        if view is not None and view.get("notify_on_close"):
            payload = {
                "type": "view_closed",
                "team": {"id": DEFAULT_TEAM_ID, "domain": DEFAULT_TEAM_DOMAIN},
                "user": {"id": user_id, "username": self._handle(user_id),
                         "name": self._handle(user_id), "team_id": DEFAULT_TEAM_ID},
                "api_app_id": DEFAULT_APP_ID,
                "token": signing.DEFAULT_VERIFICATION_TOKEN,
                "view": view,
                "is_cleared": False,
                "is_enterprise_install": False,
                "enterprise": None,
            }
            self._post(urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode())
        return {"ok": True}

    def open_home(self, user_id: str) -> dict[str, Any]:
        """The user opens the app's Home tab: the ``app_home_opened`` event."""
        event = {
            "type": "app_home_opened",
            "user": user_id,
            "channel": self.dm_channel(user_id),
            "tab": "home",
            "event_ts": f"{time.time():.6f}",
        }
        answer = self._post(signing.event_callback_body(event))
        return {"ok": answer.status == 200, "status": answer.status}

    # ------------------------------------------------------------------ the IAM sandbox, live

    def _aws(self, account: demo_data.Account):
        import boto3

        with self._lock:
            session = self._sessions.get(account.id)
            if session is not None:
                return session
        base = boto3.Session(region_name=REGION)
        if account.id == demo_data.PROD_ACCOUNT:
            session = base
        else:
            credentials = base.client("sts").assume_role(
                RoleArn=account.steward_role_arn,
                RoleSessionName="steward-demo-page",
                ExternalId=demo_data.EXTERNAL_ID,
            )["Credentials"]
            session = boto3.Session(
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
                region_name=REGION,
            )
        with self._lock:
            self._sessions[account.id] = session
        return session

    def iam_state(self, *, max_age: float = IAM_CACHE_SECONDS) -> list[dict[str, Any]]:
        """Users and access keys of each sandbox account, read live through the IAM API
        (one authorization-details call, one credential report and one ListAccessKeys
        per user with keys), cached for ``max_age`` seconds."""
        with self._iam_lock:
            cached = self._iam_cache
            if cached is not None and time.monotonic() - cached[0] < max_age:
                return cached[1]
            state = [self._read_account(account) for account in self.org.accounts]
            self._iam_cache = (time.monotonic(), state)
            return state

    def invalidate_iam(self) -> None:
        with self._iam_lock:
            self._iam_cache = None

    def _read_account(self, account: demo_data.Account) -> dict[str, Any]:
        try:
            iam = self._aws(account).client("iam")
            details = iam.get_account_authorization_details(Filter=["User", "Role"])
            users = list(details.get("UserDetailList") or [])
            roles = list(details.get("RoleDetailList") or [])
            while details.get("IsTruncated"):
                details = iam.get_account_authorization_details(
                    Filter=["User", "Role"], Marker=details["Marker"]
                )
                users += details.get("UserDetailList") or []
                roles += details.get("RoleDetailList") or []
            report = _credential_report(iam)
        except Exception as exc:  # shown on the page, never hidden
            return {"id": account.id, "alias": account.alias, "error": f"{type(exc).__name__}: {exc}",
                    "users": []}
        rows = []
        for user in sorted(users, key=lambda u: u["UserName"]):
            name = user["UserName"]
            line = report.get(name, {})
            keys = []
            if any(line.get(f"access_key_{i}_last_rotated") not in (None, "N/A") for i in (1, 2)):
                listed = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
                for slot, key in enumerate(listed, start=1):
                    used = line.get(f"access_key_{slot}_last_used_date")
                    keys.append(
                        {
                            "id": key["AccessKeyId"],
                            "status": key["Status"],
                            "created": key["CreateDate"].isoformat(),
                            "last_used": used if used not in (None, "N/A", "no_information") else None,
                        }
                    )
            tags = {t["Key"]: t["Value"] for t in user.get("Tags") or []}
            policies = [p["PolicyName"] for p in user.get("AttachedManagedPolicies") or []]
            inline = [p["PolicyName"] for p in user.get("UserPolicyList") or []]
            rows.append(
                {
                    "name": name,
                    "owner": next(
                        (tags[k] for k in ("owner", "Owner", "email", "contact") if tags.get(k)), None
                    ),
                    "console": line.get("password_enabled") == "true",
                    "mfa": line.get("mfa_active") == "true",
                    "groups": list(user.get("GroupList") or []),
                    "policies": policies,
                    "inline_policies": inline,
                    "quarantined": any(
                        p == "AWSDenyAll" or p.startswith("AWSCompromisedKeyQuarantine")
                        for p in policies
                    ),
                    "keys": keys,
                }
            )
        return {"id": account.id, "alias": account.alias, "users": rows, "error": None,
                "roles": [_role_row(role) for role in sorted(roles, key=lambda r: r["RoleName"])]}


# ---------------------------------------------------------------------------------------
# Block Kit helpers (pure)

STATEFUL = {
    "static_select": "selected_option",
    "external_select": "selected_option",
    "users_select": "selected_user",
    "conversations_select": "selected_conversation",
    "channels_select": "selected_channel",
    "multi_static_select": "selected_options",
    "multi_external_select": "selected_options",
    "multi_users_select": "selected_users",
    "multi_conversations_select": "selected_conversations",
    "multi_channels_select": "selected_channels",
    "datepicker": "selected_date",
    "timepicker": "selected_time",
    "datetimepicker": "selected_date_time",
    "checkboxes": "selected_options",
    "radio_buttons": "selected_option",
    "plain_text_input": "value",
    "number_input": "value",
    "email_text_input": "value",
    "url_text_input": "value",
    "rich_text_input": "rich_text_value",
}


def _elements(block: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for element in block.get("elements") or ():
        if isinstance(element, dict) and element.get("action_id"):
            yield element
    for key in ("accessory", "element"):
        element = block.get(key)
        if isinstance(element, dict) and element.get("action_id"):
            yield element


def find_element(
    blocks: list[dict[str, Any]], block_id: str, action_id: str
) -> dict[str, Any] | None:
    """The element a click names, by (block_id, action_id) as Slack names it. That pair is
    unique: the local Slack refuses a message or view that repeats a block_id, or an
    action_id within a block (``sandbox.block_limits``), as Slack does."""
    for block in blocks:
        if block.get("block_id") != block_id:
            continue
        for element in _elements(block):
            if element.get("action_id") == action_id:
                return element
    return None


def _options(element: Mapping[str, Any]) -> list[dict[str, Any]]:
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or ():
        options += list(group.get("options") or [])
    return options


def _option(element: Mapping[str, Any], value: Any) -> dict[str, Any] | None:
    for option in _options(element):
        if option.get("value") == value:
            return dict(option)
    return None


def element_state(element: Mapping[str, Any], raw: Any) -> dict[str, Any]:
    """A form value from the page (a string, or a list for multi-selects) as the element's
    entry in Slack's ``state.values``."""
    kind = str(element.get("type"))
    key = STATEFUL.get(kind, "value")
    value: Any
    if kind in ("static_select", "external_select", "radio_buttons"):
        value = _option(element, raw) if raw not in (None, "") else None
    elif kind in ("multi_static_select", "multi_external_select", "checkboxes"):
        chosen = raw if isinstance(raw, list) else ([raw] if raw not in (None, "") else [])
        value = [o for o in (_option(element, v) for v in chosen) if o is not None]
    elif kind.startswith("multi_"):
        value = raw if isinstance(raw, list) else ([raw] if raw not in (None, "") else [])
    else:
        value = raw if raw not in (None, "") else None
    return {"type": kind, key: value}


def state_from(
    blocks: list[dict[str, Any]],
    values: Mapping[str, Mapping[str, Any]],
    *,
    inputs_only: bool = False,
) -> dict[str, dict[str, Any]]:
    """``state.values`` for the stateful elements of ``blocks``: the page's current
    values where it sent them, else the elements' initial values."""
    state: dict[str, dict[str, Any]] = {}
    for block in blocks:
        if inputs_only and block.get("type") != "input":
            continue
        block_id = str(block.get("block_id") or "")
        for element in _elements(block):
            kind = element.get("type")
            if kind not in STATEFUL:
                continue
            action_id = str(element["action_id"])
            sent = values.get(block_id, {})
            if action_id in sent:
                entry = element_state(element, sent[action_id])
            else:
                entry = _initial_state(element)
            state.setdefault(block_id, {})[action_id] = entry
    return state


def _initial_state(element: Mapping[str, Any]) -> dict[str, Any]:
    kind = str(element.get("type"))
    key = STATEFUL[kind]
    initial: Any = None
    for name in ("initial_option", "initial_options", "initial_user", "initial_users",
                 "initial_conversation", "initial_conversations", "initial_channel",
                 "initial_channels", "initial_date", "initial_time", "initial_date_time",
                 "initial_value"):
        if name in element:
            initial = element[name]
            break
    if initial is None and key.endswith("s") and kind.startswith(("multi_", "checkboxes")):
        initial = []
    return {"type": kind, key: initial}


def action_payload(element: Mapping[str, Any], selected: Any) -> dict[str, Any]:
    """The ``actions[0]`` Slack sends for ``element`` (without ids and ``action_ts``)."""
    kind = str(element.get("type"))
    action: dict[str, Any] = {"type": kind}
    if kind == "button":
        action["text"] = element.get("text")
        for key in ("value", "style", "url"):
            if element.get(key) is not None:
                action[key] = element[key]
        return action
    if kind == "overflow":
        action["selected_option"] = _option(element, selected)
        return action
    entry = element_state(element, selected)
    action.update({k: v for k, v in entry.items() if k != "type"})
    selects = ("static_select", "external_select", "users_select", "conversations_select",
               "channels_select")
    if (kind in selects or kind.startswith("multi_")) and element.get("placeholder"):
        action["placeholder"] = element["placeholder"]
    if kind == "datepicker" and element.get("initial_date"):
        action["initial_date"] = element["initial_date"]
    return action


def _fix_action(body: bytes, element: Mapping[str, Any], channel_name: str | None) -> bytes:
    """signing.block_actions_body starts from a button; other elements carry no
    ``text``. Also name the channel as Slack does (the fake's channel names)."""
    fields = dict(parse_qsl(body.decode("utf-8")))
    payload = json.loads(fields["payload"])
    if element.get("type") != "button":
        for action in payload.get("actions") or ():
            action.pop("text", None)
            action.pop("value", None)
    if channel_name and isinstance(payload.get("channel"), dict):
        payload["channel"]["name"] = channel_name
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode("utf-8")


# ---------------------------------------------------------------------------------------
# Small I/O helpers


def _direct_open(request: urllib.request.Request, timeout: float = 10):
    """urlopen without proxies: every address the demo uses is on loopback."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=timeout)


def _reset_moto(url: str) -> None:
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST", data=b"")
    with _direct_open(request) as response:
        response.read()


def _role_row(role: Mapping[str, Any]) -> dict[str, Any]:
    """A role for the IAM panel: owner, policies, and the services each inline policy allows
    (what a right-sized policy changes)."""
    tags = {t["Key"]: t["Value"] for t in role.get("Tags") or []}
    inline = {}
    for policy in role.get("RolePolicyList") or ():
        document = policy.get("PolicyDocument") or {}
        if isinstance(document, str):
            document = json.loads(urllib.parse.unquote(document))
        statements = document.get("Statement") or []
        services: set[str] = set()
        for statement in [statements] if isinstance(statements, dict) else statements:
            if statement.get("Effect") != "Allow":
                continue
            actions = statement.get("Action") or []
            for action in [actions] if isinstance(actions, str) else actions:
                services.add(action.split(":", 1)[0] if ":" in action else action)
        inline[policy["PolicyName"]] = sorted(services)
    return {
        "name": role["RoleName"],
        "owner": next((tags[k] for k in ("owner", "Owner", "email", "contact") if tags.get(k)), None),
        "policies": [p["PolicyName"] for p in role.get("AttachedManagedPolicies") or []],
        "inline": inline,
    }


def _credential_report(iam) -> dict[str, dict[str, str]]:
    import csv
    import io

    for _ in range(20):
        if iam.generate_credential_report().get("State") == "COMPLETE":
            break
        time.sleep(0.1)
    content = iam.get_credential_report()["Content"]
    text = content.decode("utf-8") if isinstance(content, bytes) else str(content)
    return {row["user"]: row for row in csv.DictReader(io.StringIO(text))}


def _json_or_text(body: bytes) -> Any:
    """An app's HTTP answer to Slack: JSON, plain text (a message) or nothing."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"text": text}


def _post_json(url: str, payload: Any) -> None:
    data = json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    with contextlib.suppress(urllib.error.HTTPError), _direct_open(request) as r:
        r.read()


def _plain(value: Any) -> Any:
    """A dataclass report as JSON-friendly data (best effort)."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value if isinstance(value, dict | list | str | int | float | type(None)) else repr(value)

