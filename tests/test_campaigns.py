"""Owner campaigns end to end: DMs from a routing cycle, clicks signed like Slack's over real
HTTP to `steward serve`, AWS changes on moto, messages updated in place, Undo, approvals."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
from slack_sdk import WebClient
from sqlmodel import Session, select

from bot.config import Settings
from bot.core.decisions import Choice
from bot.db.engine import make_engine
from bot.db.migrate import upgrade
from bot.db.models import AuditEvent, Finding, Remediation
from bot.services.campaigns import Pacer
from bot.services.common import utcnow
from bot.services.scans import ScanService
from bot.services.steward import Steward
from bot.slack.owners import OwnerDirectory
from sandbox import signing
from sandbox.slack_fake import SlackFake
from tests.aws import (
    FAKE_CREDENTIALS,
    backdate_access_key,
    backdate_user,
    document,
    running_moto_server,
)
from tests.bot.test_serve_http import running_steward
from tests.checks.test_remediate_base import install_deny_all

BOB, DAVE, CAROL, ERIN, MALLORY = "U0BOB00001", "U0DAVE0001", "U0CAROL001", "U0ERIN0001", "U0MALLORY1"
APPROVERS = CAROL


class World:
    def __init__(self, fake: SlackFake, moto: str, db: str, workdir: Path):
        self.fake, self.moto, self.db, self.workdir = fake, moto, db, workdir
        self.iam = boto3.client("iam", endpoint_url=moto, region_name="us-east-1")
        self.security = fake.add_channel("security", members=[CAROL, ERIN])
        self.engine = make_engine(db)

    def settings(self, **overrides) -> Settings:
        return Settings(database_url=self.db, slack_bot_token=self.fake.token, slack_api_url=self.fake.base_url,
                        security_channel=self.security, security_approvers=APPROVERS.split(","), **overrides)

    def steward(self, clock=utcnow, **overrides) -> Steward:
        settings = self.settings(**overrides)
        client = WebClient(token=self.fake.token, base_url=self.fake.base_url)
        directory = OwnerDirectory(client, approvers=settings.security_approvers)
        steward = Steward(settings, engine=self.engine, directory=directory, client=client, clock=clock)
        steward.campaigns.pacer = Pacer(interval=0)
        return steward

    def finding(self, check: str, user: str) -> Finding:
        with Session(self.engine) as session:
            return session.exec(select(Finding).where(
                Finding.check_id == check, Finding.resource.endswith(f":user/{user}"))).one()

    def actions(self) -> list[str]:
        with Session(self.engine) as session:
            return [e.action for e in session.exec(select(AuditEvent).order_by(AuditEvent.sequence))]

    def key_status(self, user: str = "bob") -> str:
        return self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"][0]["Status"]


@contextlib.contextmanager
def make_world(tmp_path: Path, monkeypatch, db: str) -> Iterator[World]:
    """bob (an unused key, an inline s3:* policy), dave (a stale user with an old key) and
    legacy-ci (no owner), scanned into the database at `db`."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    with running_moto_server() as moto, SlackFake() as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
        for uid, name in ((BOB, "bob"), (DAVE, "dave"), (CAROL, "carol"), (ERIN, "erin"), (MALLORY, "mallory")):
            fake.add_user(uid, name=name, email=f"{name}@example.com")
        upgrade(db)
        w = World(fake, moto, db, tmp_path)
        iam = w.iam
        iam.create_user(UserName="bob", Tags=[{"Key": "owner", "Value": "bob@example.com"}])
        iam.create_access_key(UserName="bob")
        backdate_user("bob", 300)
        backdate_access_key("bob", 1, created=60, last_used=50)
        iam.put_user_policy(UserName="bob", PolicyName="s3-everything",
                            PolicyDocument=document({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}))
        iam.create_user(UserName="dave", Tags=[{"Key": "owner", "Value": "dave@example.com"}])
        iam.create_access_key(UserName="dave")
        backdate_user("dave", 400)
        backdate_access_key("dave", 1, created=300, last_used=200)
        iam.create_user(UserName="legacy-ci")
        iam.create_access_key(UserName="legacy-ci")
        backdate_access_key("legacy-ci", 1, created=100, last_used=60)
        install_deny_all()
        ScanService(w.settings(), engine=w.engine).run(actor="test")
        try:
            yield w
        finally:
            w.engine.dispose()


@pytest.fixture
def world(tmp_path, monkeypatch) -> Iterator[World]:
    with make_world(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'steward.db'}") as w:
        yield w


def dm_message(world: World, user: str) -> dict:
    [message] = [m for m in world.fake.dm(user) if m.get("blocks")][:1]
    return message


def click(served, world: World, user: str, message: dict, action_id: str, value: str,
          channel: str | None = None, **kwargs):
    channel = channel or world.fake.im_channel(user)
    body = signing.block_actions_body(
        user, action_id, value, message=message, channel_id=channel,
        response_url=world.fake.response_url(channel, user, message["ts"]),
        trigger_id=world.fake.trigger_id(user), **kwargs,
    )
    response = served.post(body)
    assert response.status == 200, response.text
    return response


def button_value(message: dict, action_id: str, *, contains: str = "") -> str:
    for block in message["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id and contains in json.dumps(message["blocks"]):
                return element["value"]
    raise AssertionError(f"no {action_id} button in {json.dumps(message['blocks'])[:2000]}")


def block_value(message: dict, token: str, action_id: str) -> str:
    for block in message["blocks"]:
        if block.get("block_id") == f"f:{token}":
            for element in block["elements"]:
                if element.get("action_id") == action_id:
                    return element.get("value", "")
    raise AssertionError(f"no {action_id} for {token}")


@pytest.fixture
def served(world):
    aws = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": world.moto,
           "AWS_CONFIG_FILE": str(world.workdir / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(world.workdir / "none"),
           "STEWARD_SECURITY_CHANNEL": world.security,
           # moto lets any role be assumed: undos that give access back can run (after approval).
           "STEWARD_RESTORE_ROLE_NAME": "IAMStewardRestore"}
    # running_steward makes CAROL the security approver, as APPROVERS here does.
    with running_steward(world.fake, world.db, world.workdir, env=aws) as s:
        yield s


def test_routing_cycle_sends_one_dm_per_owner_and_triages_the_rest(world):
    report = world.steward().campaigns.run_cycle()
    assert report.dms == 2 and report.failures == []
    bob_dms = [m for m in world.fake.dm(BOB) if m.get("blocks")]
    assert len(bob_dms) == 1
    text = json.dumps(bob_dms[0]["blocks"])
    assert "Deactivate key" in text and "Request removal" in text and "console.aws.amazon.com" in text
    triage = world.fake.messages(world.security)
    assert any("legacy-ci" in json.dumps(m.get("blocks")) and "Assign owner" in json.dumps(m.get("blocks"))
               for m in triage)
    assert world.finding("unused-access-key", "bob").state == "notified"
    # A second cycle sends nothing new.
    again = world.steward().campaigns.run_cycle()
    assert (again.dms, again.triaged) == (0, 0)
    assert len([m for m in world.fake.dm(BOB) if m.get("blocks")]) == 1


def test_deactivate_click_updates_message_and_undo_restores(world, served):
    world.steward().campaigns.run_cycle()
    message = dm_message(world, BOB)
    token = world.finding("unused-access-key", "bob").token
    click(served, world, BOB, message, "finding:remediate:deactivate-access-key", token)
    world.fake.wait_for(lambda: world.key_status() == "Inactive", timeout=20)

    def updated():
        current = world.fake.message(message["channel"] if "channel" in message else world.fake.im_channel(BOB),
                                     message["ts"])
        return "remediation:undo" in json.dumps(current["blocks"]) and current

    current = world.fake.wait_for(updated, timeout=20)
    assert "done by <@U0BOB00001>" in json.dumps(current["blocks"])
    undo_token = button_value(current, "remediation:undo")
    click(served, world, BOB, current, "remediation:undo", undo_token)
    world.fake.wait_for(lambda: world.key_status() == "Active", timeout=20)
    assert "remediation.undone" in world.actions()


def test_strangers_and_stale_clicks_change_nothing(world, served):
    world.steward().campaigns.run_cycle()
    message = dm_message(world, BOB)
    token = world.finding("unused-access-key", "bob").token
    click(served, world, MALLORY, message, "finding:remediate:deactivate-access-key", token,
          channel=world.fake.im_channel(BOB))
    world.fake.wait_for(lambda: "refused" in world.actions(), timeout=20)
    assert world.key_status() == "Active"
    replies = [c for c in world.fake.calls("response_url") if "Only the owner" in json.dumps(c.params)]
    assert replies and replies[0].params.get("replace_original") in (False, "false")

    click(served, world, BOB, message, "finding:remediate:deactivate-access-key", token)
    world.fake.wait_for(lambda: world.key_status() == "Inactive", timeout=20)
    click(served, world, BOB, message, "finding:remediate:deactivate-access-key", token)  # stale
    world.fake.wait_for(lambda: any("Already handled" in json.dumps(c.params)
                                    for c in world.fake.calls("response_url")), timeout=20)
    with Session(world.engine) as session:
        assert len(session.exec(select(Remediation)).all()) == 1


def test_double_click_from_two_threads_runs_once(world, served):
    world.steward().campaigns.run_cycle()
    message = dm_message(world, BOB)
    token = world.finding("unused-access-key", "bob").token
    barrier = threading.Barrier(2)

    def go():
        barrier.wait()
        click(served, world, BOB, message, "finding:remediate:deactivate-access-key", token)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    world.fake.wait_for(lambda: len([c for c in world.fake.calls("response_url")]) >= 2, timeout=20)
    world.fake.wait_for(lambda: world.key_status() == "Inactive", timeout=20)
    assert world.actions().count("remediation.started") == 1


def test_two_person_rule_for_policy_removal(world, served):
    world.steward().campaigns.run_cycle()
    message = dm_message(world, BOB)
    token = world.finding("user-direct-policy", "bob").token
    click(served, world, BOB, message, "finding:request_removal", token)

    def approval():
        found = [m for m in world.fake.messages(world.security) if "Approval needed" in json.dumps(m.get("blocks"))]
        return found[-1] if found else None

    request = world.fake.wait_for(approval, timeout=20)
    rem_token = button_value(request, "remediation:approve")
    click(served, world, BOB, request, "remediation:approve", rem_token, channel=world.security)  # the requester
    click(served, world, MALLORY, request, "remediation:approve", rem_token, channel=world.security)
    world.fake.wait_for(lambda: world.actions().count("refused") >= 2, timeout=20)
    assert world.iam.list_user_policies(UserName="bob")["PolicyNames"] == ["s3-everything"]

    click(served, world, CAROL, request, "remediation:approve", rem_token, channel=world.security)
    world.fake.wait_for(lambda: world.iam.list_user_policies(UserName="bob")["PolicyNames"] == [], timeout=20)
    world.fake.wait_for(lambda: "Approved by <@U0CAROL001>" in json.dumps(
        world.fake.message(world.security, request["ts"])["blocks"]), timeout=20)
    world.fake.wait_for(lambda: "delete-inline-policy" in json.dumps(dm_message(world, BOB)["blocks"]) or
                        "Delete inline policy" in json.dumps(dm_message(world, BOB)["blocks"]), timeout=20)


def test_keep_modal_validates_the_date(world, served):
    world.steward().campaigns.run_cycle()
    message = dm_message(world, DAVE)
    token = world.finding("stale-user", "dave").token
    click(served, world, DAVE, message, "finding:keep", token)
    world.fake.wait_for(lambda: world.fake.calls("views.open"), timeout=20)
    values = {"reason": {"value": {"type": "plain_text_input", "value": "service account for the nightly batch"}},
              "until": {"value": {"type": "datepicker", "selected_date": "2020-01-01"}}}
    bad = served.post(signing.view_submission_body(DAVE, "keep_modal", token, values))
    assert bad.status == 200 and bad.json()["response_action"] == "errors"
    assert "future" in bad.json()["errors"]["until"]
    good_day = (utcnow() + timedelta(days=30)).date().isoformat()
    values["until"]["value"]["selected_date"] = good_day
    good = served.post(signing.view_submission_body(DAVE, "keep_modal", token, values))
    assert good.status == 200 and not good.text.strip().startswith('{"response_action"')
    finding = world.finding("stale-user", "dave")
    assert (finding.state, finding.decision, finding.decision_reason) == (
        "excepted", "exception", "service account for the nightly batch")
    assert finding.decision_until.date().isoformat() == good_day
    assert "exception.granted" in world.actions()


def test_reminders_escalation_and_expiry_with_a_controlled_clock(world):
    now = utcnow()
    world.steward(clock=lambda: now).campaigns.run_cycle()
    later = world.steward(clock=lambda: now + timedelta(days=4)).campaigns.run_cycle()
    assert (later.reminders, later.escalations) == (2, 0)
    bob = dm_message(world, BOB)
    assert world.fake.thread(world.fake.im_channel(BOB), bob["ts"])[-1]["text"].startswith(":wave:")
    much_later = world.steward(clock=lambda: now + timedelta(days=8)).campaigns.run_cycle()
    assert (much_later.reminders, much_later.escalations) == (0, 2)
    escalations = [m for m in world.fake.messages(world.security) if "<@U0BOB00001> has" in json.dumps(m)]
    assert escalations

    steward = world.steward(clock=lambda: now)
    token = world.finding("unused-access-key", "bob").token
    steward.campaigns.click(BOB, Choice.SNOOZE, token, days=7)
    assert world.finding("unused-access-key", "bob").state == "snoozed"
    assert world.steward(clock=lambda: now + timedelta(days=8)).campaigns.expire_decisions() == 1
    assert world.finding("unused-access-key", "bob").state == "open"
    again = world.steward(clock=lambda: now + timedelta(days=8)).campaigns.run_cycle()
    assert again.notified == 1  # asked again


def interrupt_first_send(world, monkeypatch) -> None:
    """A routing cycle killed after its first chat.postMessage, before the ts was stored."""
    steward = world.steward()
    original = steward.campaigns._mark_sent
    calls = {"n": 0}

    def crash_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise SystemExit("killed after chat.postMessage, before the ts was stored")
        return original(*args, **kwargs)

    monkeypatch.setattr(steward.campaigns, "_mark_sent", crash_once)
    with pytest.raises(SystemExit):
        steward.campaigns.run_cycle()


def test_campaign_interrupted_after_sending_resumes_without_resending(world, monkeypatch):
    interrupt_first_send(world, monkeypatch)
    first = [m for m in world.fake.calls("chat.postMessage")]
    report = world.steward().campaigns.run_cycle()
    assert report.resumed >= 1
    sent_to_first_owner = [c for c in world.fake.calls("chat.postMessage") if c.params.get("channel") == first[0].params["channel"]]
    assert len(sent_to_first_owner) == 1  # adopted from history, not sent twice
    assert world.finding("unused-access-key", "bob").notify_ts or world.finding("stale-user", "dave").notify_ts


def test_iam_audit_shows_events_to_approvers_only(world, served):
    world.steward().campaigns.run_cycle()
    message = dm_message(world, BOB)
    finding = world.finding("unused-access-key", "bob")
    click(served, world, BOB, message, "finding:remediate:deactivate-access-key", finding.token)
    world.fake.wait_for(lambda: "remediation.succeeded" in world.actions(), timeout=20)
    key_id = finding.details["access_key_id"]
    reply = served.reply(f"audit {key_id}", CAROL)
    text = json.dumps(reply)
    # A timeline in words: who did what to what, never the raw event names or JSON.
    assert "started changing user/bob (deactivate the access key)" in text
    assert "<@U0BOB00001> changed user/bob (deactivate the access key)" in text
    assert "remediation.succeeded" not in text and "null" not in text
    by_name = json.dumps(served.reply("audit bob", CAROL))
    assert "changed user/bob" in by_name and "Steward scanned" not in by_name
    refused = served.reply(f"audit {key_id}", BOB)
    assert "Only security approvers can read the audit log" in refused["text"]


def test_steward_notify_cli_runs_one_cycle(world, monkeypatch):
    from typer.testing import CliRunner

    from bot.cli.main import app

    env = {"STEWARD_DATABASE_URL": world.db, "SLACK_BOT_TOKEN": world.fake.token,
           "SLACK_API_URL": world.fake.base_url, "STEWARD_SECURITY_CHANNEL": world.security}
    result = CliRunner().invoke(app, ["notify"], env=env)
    assert result.exit_code == 0, result.output
    assert "2 DMs to owners" in result.stdout
    assert [m for m in world.fake.dm(BOB) if m.get("blocks")]
    missing = CliRunner().invoke(app, ["notify"], env={"STEWARD_DATABASE_URL": world.db})
    assert missing.exit_code == 2 and "SLACK_BOT_TOKEN" in missing.stderr


def test_iam_digest_previews_privately_for_approvers(world, served):
    world.steward().campaigns.run_cycle()
    reply = served.reply("digest", CAROL)
    assert reply["response_type"] == "ephemeral"
    assert len(reply["blocks"]) <= 50 and "open" in json.dumps(reply).lower()
    assert not [m for m in world.fake.messages(world.security) if "digest" in json.dumps(m).lower()
                and "Weekly" in json.dumps(m)]  # nothing posted to the channel
    assert "Only security approvers can preview the digest" in served.reply("digest", BOB)["text"]


def test_auto_remediation_is_announced_then_taken_at_the_deadline(world):
    now = utcnow()
    world.steward(clock=lambda: now, auto_remediate=["unused-access-key"]).campaigns.run_cycle()
    dm_text = json.dumps(dm_message(world, BOB)["blocks"])
    deadline = (now + timedelta(days=7)).strftime("%Y-%m-%d")
    assert f"Unless you decide by *{deadline}*" in dm_text and "deactivate access key" in dm_text.lower()
    early = world.steward(clock=lambda: now + timedelta(days=6), auto_remediate=["unused-access-key"])
    assert early.campaigns.run_cycle().auto_remediated == 0
    assert world.key_status() == "Active"
    late = world.steward(clock=lambda: now + timedelta(days=7, minutes=1), auto_remediate=["unused-access-key"])
    assert late.campaigns.run_cycle().auto_remediated == 2  # bob's and dave's unused keys
    assert world.key_status() == "Inactive" and world.key_status("dave") == "Inactive"
    assert world.finding("unused-access-key", "bob").state == "remediated"
    assert "remediation:undo" in json.dumps(dm_message(world, BOB)["blocks"])  # the owner can undo it
    with Session(world.engine) as session:
        rems = session.exec(select(Remediation)).all()
    assert {(r.requested_by, r.approved_by, r.action) for r in rems} == {
        ("system:auto-remediate", "system:auto-remediate", "deactivate-access-key")}
    # Findings of other checks were left alone.
    assert world.finding("stale-user", "dave").state == "notified"


def test_a_scan_that_resolves_findings_updates_their_dm(world):
    steward = world.steward()
    steward.campaigns.run_cycle()
    key_id = world.finding("unused-access-key", "bob").details["access_key_id"]
    world.iam.delete_access_key(UserName="bob", AccessKeyId=key_id)
    report = steward.scans.run(actor="test")
    assert world.finding("unused-access-key", "bob").fingerprint in report.resolved
    assert steward.campaigns.refresh_resolved(report.resolved) == 1
    blocks = json.dumps(dm_message(world, BOB)["blocks"])
    assert "Resolved: the scan of" in blocks
    token = world.finding("unused-access-key", "bob").token
    assert f'"f:{token}"' not in blocks  # its buttons are gone


def test_rotate_promise_is_audited_under_its_own_name(world, served):
    world.steward().campaigns.run_cycle()
    message = dm_message(world, DAVE)
    finding = world.finding("old-access-key", "dave")
    click(served, world, DAVE, message, "finding:rotate", finding.token)
    world.fake.wait_for(lambda: "decision.rotate_promise" in world.actions(), timeout=20)
    assert "decision.remediate" not in world.actions()  # no remediation was asked for
    history = json.dumps(served.reply("audit dave", CAROL))
    assert "promised to rotate the key of" in history and "asked to fix" not in history
