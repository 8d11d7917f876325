"""Risky IAM changes end to end: CloudTrail-format events on moto's SQS, `steward events`'
intake, the actor's DM and its buttons signed like Slack's over real HTTP to `steward serve`,
containment through the remediation engine on moto's IAM, and the audit log."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest
from sqlmodel import Session, select

from bot.db.models import ActivityEvent, ActivitySeen, AuditEvent
from bot.run.events import Intake
from bot.services.common import utcnow
from sandbox import signing
from tests import cloudtrail_events as ct
from tests import test_campaigns
from tests.aws import FAKE_CREDENTIALS
from tests.bot.test_serve_http import running_steward
from tests.conftest import DIALECTS, PG_URL
from tests.databases import scratch_postgres
from tests.test_campaigns import BOB, CAROL, ERIN, World, button_value, click, make_world

world = test_campaigns.world  # bob (owner bob@example.com), dave, legacy-ci: scanned


@pytest.fixture(params=DIALECTS)
def any_world(request, tmp_path, monkeypatch):
    """The same world on SQLite and (with STEWARD_TEST_DATABASE_URL) PostgreSQL."""
    if request.param == "sqlite":
        with make_world(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'steward.db'}") as w:
            yield w
        return
    with scratch_postgres(PG_URL) as url, make_world(tmp_path, monkeypatch, url) as w:
        yield w


@pytest.fixture
def served(world):
    env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": world.moto, "AWS_CONFIG_FILE": str(world.workdir / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(world.workdir / "none"), "STEWARD_SECURITY_CHANNEL": world.security,
           "STEWARD_SECURITY_APPROVERS": f"{CAROL},{ERIN}"}
    with running_steward(world.fake, world.db, world.workdir, env=env) as s:
        yield s


class Queue:
    """The organisation's queue (and its dead-letter queue after `max_receives`) on moto."""

    def __init__(self, world: World, max_receives: int = 2):
        self.sqs = boto3.client("sqs", endpoint_url=world.moto, region_name="us-east-1")
        self.dlq = self.sqs.create_queue(QueueName="activity-dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=self.dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.url = self.sqs.create_queue(QueueName="activity", Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)})})["QueueUrl"]

    def send(self, *bodies: str) -> None:
        for body in bodies:
            self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def depth(self, url: str | None = None) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=url or self.url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def intake(world: World, queue: Queue, **kwargs) -> Intake:
    steward = world.steward(**kwargs)
    return Intake(steward.activity, queue.sqs, queue.url, wait_seconds=0, visibility_timeout=0)


def rows(world: World) -> list[ActivityEvent]:
    with Session(world.engine) as session:
        return list(session.exec(select(ActivityEvent).order_by(ActivityEvent.id)))


def audited(world: World, action: str) -> list[AuditEvent]:
    with Session(world.engine) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.sequence)))


def asks(world: World, user: str) -> list[dict]:
    return [m for m in world.fake.dm(user) if "Did you do this?" in json.dumps(m.get("blocks"))]


def escalations(world: World) -> list[dict]:
    return [m for m in world.fake.messages(world.security) if "Risky IAM change" in json.dumps(m.get("blocks"))]


def bob_creates_key_for_dave(world: World) -> tuple[dict, str]:
    """bob really creates a key for dave (moto), and CloudTrail's record of it."""
    bob_key = world.iam.list_access_keys(UserName="bob")["AccessKeyMetadata"][0]["AccessKeyId"]
    new = world.iam.create_access_key(UserName="dave")["AccessKey"]["AccessKeyId"]
    return ct.create_access_key("dave", identity=ct.user_identity("bob", key=bob_key), key=new), new


def key_status(world: World, user: str, key: str) -> str:
    return next(k["Status"] for k in world.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
                if k["AccessKeyId"] == key)


def test_duplicates_in_one_batch_and_across_batches_ask_once(any_world):
    world = any_world
    queue = Queue(world)
    detail, _ = bob_creates_key_for_dave(world)
    quiet = ct.record("ListUsers", read_only=True)
    queue.send(ct.body(detail), ct.body(quiet), ct.body(detail), ct.body(quiet))
    first = intake(world, queue).poll_once()
    assert (first.received, first.risky, first.duplicates, first.deleted) == (4, 1, 2, 4)
    queue.send(ct.body(quiet), ct.body(detail))
    again = intake(world, queue).poll_once()
    assert (again.risky, again.duplicates) == (0, 2)
    assert len(asks(world, BOB)) == 1 and len(rows(world)) == 1
    assert len(audited(world, "activity.detected")) == 1


def test_yes_with_a_reason_is_recorded_and_a_duplicate_delivery_asks_once(world, served):
    queue = Queue(world)
    detail, _ = bob_creates_key_for_dave(world)
    queue.send(ct.body(detail), ct.body(detail))  # SQS delivers at least once
    report = intake(world, queue).poll_once()
    assert (report.received, report.risky, report.duplicates, report.deleted) == (2, 1, 1, 2)
    queue.send(ct.body(detail))  # ... even much later
    assert intake(world, queue).poll_once().duplicates == 1
    (ask,) = asks(world, BOB)
    text = json.dumps(ask["blocks"])
    assert "created access key" in text and "IAM user dave" in text and "203.0.113.7" in text and "aws-cli/2.15.0" in text
    (row,) = rows(world)
    assert row.person == BOB and row.state == "asking" and queue.depth() == 0

    # A stranger cannot answer; bob's "Yes" asks why first (a modal), then records it.
    click(served, world, CAROL, ask, "activity:yes", row.token, channel=world.fake.im_channel(BOB))
    world.fake.wait_for(lambda: audited(world, "refused"), timeout=20)
    opened = len(world.fake.calls("views.open"))
    click(served, world, BOB, ask, "activity:yes", row.token)
    world.fake.wait_for(lambda: len(world.fake.calls("views.open")) > opened, timeout=20)
    empty = served.post(signing.view_submission_body(BOB, "activity_yes_modal", row.token, {"reason": {"value": " "}}))
    assert "errors" in empty.text and rows(world)[0].state == "asking"
    done = served.post(signing.view_submission_body(BOB, "activity_yes_modal", row.token,
                                                    {"reason": {"value": "OPS-42: dave's new deploy key"}}))
    assert done.status == 200 and "errors" not in done.text
    (confirmed,) = audited(world, "activity.confirmed")
    assert confirmed.actor == BOB and confirmed.payload["reason"] == "OPS-42: dave's new deploy key"
    assert [e.action for e in audited(world, "activity.detected")] == ["activity.detected"]
    assert audited(world, "activity.asked")[0].payload["person"] == BOB
    assert "Thanks — recorded" in json.dumps(ensure_ascii=False, obj=world.fake.message(world.fake.im_channel(BOB), ask["ts"])["blocks"])
    assert escalations(world) == []


def test_no_escalates_with_containment_through_the_engine_and_undo_needs_a_second_approver(world, served):
    queue = Queue(world)
    detail, new_key = bob_creates_key_for_dave(world)
    queue.send(ct.body(detail))
    intake(world, queue).poll_once()
    (ask,) = asks(world, BOB)
    (row,) = rows(world)
    click(served, world, BOB, ask, "activity:no", row.token)
    message = world.fake.wait_for(lambda: escalations(world) and escalations(world)[-1], timeout=20)
    text = json.dumps(message["blocks"])
    assert "wasn't them" in text and f"Deactivate the new key {new_key}" in text and "Quarantine bob" in text
    assert audited(world, "activity.denied")[0].actor == BOB

    # Only an approver may contain; carol deactivates dave's new key at once.
    click(served, world, BOB, message, "activity:contain:0", row.token, channel=world.security)
    world.fake.wait_for(lambda: [e for e in audited(world, "refused") if "contain" in json.dumps(e.payload)],
                        timeout=20)
    assert key_status(world, "dave", new_key) == "Active"
    click(served, world, CAROL, message, "activity:contain:0", row.token, channel=world.security)
    world.fake.wait_for(lambda: key_status(world, "dave", new_key) == "Inactive", timeout=20)
    updated = world.fake.wait_for(lambda: "remediation:undo:0" in json.dumps(
        (m := world.fake.message(world.security, message["ts"]))["blocks"]) and m, timeout=20)
    assert "done by <@U0CAROL001>" in json.dumps(updated["blocks"])
    succeeded = audited(world, "remediation.succeeded")[-1]
    assert succeeded.actor == CAROL and succeeded.resource.endswith(":user/dave")

    # Undoing it gives access back: carol asks, erin (another approver) approves.
    click(served, world, CAROL, updated, "remediation:undo:0", button_value(updated, "remediation:undo:0"),
          channel=world.security)
    request = world.fake.wait_for(lambda: [m for m in world.fake.messages(world.security)
                                           if "Undo needs approval" in json.dumps(m.get("blocks"))], timeout=20)[-1]
    assert key_status(world, "dave", new_key) == "Inactive"
    click(served, world, ERIN, request, "remediation:undo_approve",
          button_value(request, "remediation:undo_approve"), channel=world.security)
    world.fake.wait_for(lambda: key_status(world, "dave", new_key) == "Active", timeout=20)
    assert audited(world, "remediation.undone")[-1].actor == ERIN
    world.fake.wait_for(lambda: "Undone" in json.dumps(world.fake.message(world.security, message["ts"])["blocks"]),
                        timeout=20)


def security_now(world: World, message: dict) -> dict:
    return world.fake.message(world.security, message["ts"])


def action_ids(message: dict) -> list[str]:
    return [e["action_id"] for b in message["blocks"] if b.get("type") == "actions" for e in b["elements"]]


def test_each_undo_undoes_its_own_containment_which_is_then_offered_again(world, served):
    """Deactivate the new key, quarantine the actor, then undo the quarantine: the undo is the
    quarantine's (each Undo has its own action id), the line says who asked and who approved,
    and the quarantine is offered again. The actor's own key, inactive while quarantined, is
    not offered meanwhile (a stale click is told "Already done")."""
    queue = Queue(world)
    detail, new_key = bob_creates_key_for_dave(world)
    bob_key = world.iam.list_access_keys(UserName="bob")["AccessKeyMetadata"][0]["AccessKeyId"]
    queue.send(ct.body(detail))
    intake(world, queue).poll_once()
    (ask,) = asks(world, BOB)
    (row,) = rows(world)
    assert [c["action"] for c in row.containment] == ["deactivate-access-key", "deactivate-access-key",
                                                      "quarantine-user"]
    click(served, world, BOB, ask, "activity:no", row.token)
    message = world.fake.wait_for(lambda: escalations(world) and escalations(world)[-1], timeout=20)
    assert f"Deactivate the key bob used ({bob_key})" in json.dumps(message["blocks"])

    click(served, world, CAROL, message, "activity:contain:0", row.token, channel=world.security)
    world.fake.wait_for(lambda: "remediation:undo:0" in json.dumps(security_now(world, message)["blocks"]),
                        timeout=20)
    click(served, world, CAROL, message, "activity:contain:2", row.token, channel=world.security)
    world.fake.wait_for(lambda: key_status(world, "bob", bob_key) == "Inactive", timeout=20)
    both = world.fake.wait_for(lambda: "remediation:undo:2" in json.dumps(
        (m := security_now(world, message))["blocks"]) and m, timeout=20)
    ids = action_ids(both)
    assert len(ids) == len(set(ids)) and {"remediation:undo:0", "remediation:undo:2"} <= set(ids)
    # bob's key went with the quarantine: not offered as if it still needed doing.
    assert "activity:contain:1" not in ids
    assert "the quarantine of bob" in json.dumps(both["blocks"])

    # A click on the stale message's button: told so, and nothing is requested.
    click(served, world, CAROL, message, "activity:contain:1", row.token, channel=world.security)
    said = world.fake.wait_for(lambda: [e for e in world.fake.ephemerals(CAROL)
                                        if "Already done" in e.get("text", "")], timeout=20)[-1]
    assert "quarantine of bob" in said["text"]
    assert len(audited(world, "remediation.succeeded")) == 2

    # "Ask to undo: Quarantine bob" asks to undo the quarantine, not the key deactivation.
    click(served, world, CAROL, both, "remediation:undo:2", button_value(both, "remediation:undo:2"),
          channel=world.security)
    request = world.fake.wait_for(lambda: [m for m in world.fake.messages(world.security)
                                           if "Undo needs approval" in json.dumps(m.get("blocks"))], timeout=20)[-1]
    assert "uarantine" in json.dumps(request["blocks"])
    click(served, world, ERIN, request, "remediation:undo_approve",
          button_value(request, "remediation:undo_approve"), channel=world.security)
    world.fake.wait_for(lambda: key_status(world, "bob", bob_key) == "Active", timeout=20)
    assert key_status(world, "dave", new_key) == "Inactive"  # the other containment stands

    # The line says who asked and who approved; the quarantine (and bob's key) are offered again.
    again = world.fake.wait_for(lambda: "Undone" in json.dumps(
        (m := security_now(world, message))["blocks"]) and m, timeout=20)
    text = json.dumps(again["blocks"])
    assert f"asked by <@{CAROL}>, approved by <@{ERIN}>" in text
    ids = action_ids(again)
    assert {"activity:contain:1", "activity:contain:2", "remediation:undo:0"} <= set(ids)
    assert "remediation:undo:2" not in ids
    click(served, world, CAROL, again, "activity:contain:2", row.token, channel=world.security)
    world.fake.wait_for(lambda: key_status(world, "bob", bob_key) == "Inactive", timeout=20)


def test_deactivating_a_key_already_inactive_says_already_done_and_offers_no_undo(world, served):
    queue = Queue(world)
    detail, _ = bob_creates_key_for_dave(world)
    bob_key = world.iam.list_access_keys(UserName="bob")["AccessKeyMetadata"][0]["AccessKeyId"]
    queue.send(ct.body(detail))
    intake(world, queue).poll_once()
    (ask,) = asks(world, BOB)
    (row,) = rows(world)
    click(served, world, BOB, ask, "activity:no", row.token)
    message = world.fake.wait_for(lambda: escalations(world) and escalations(world)[-1], timeout=20)
    world.iam.update_access_key(UserName="bob", AccessKeyId=bob_key, Status="Inactive")  # by hand, meanwhile
    click(served, world, CAROL, message, "activity:contain:1", row.token, channel=world.security)
    said = world.fake.wait_for(lambda: [e for e in world.fake.ephemerals(CAROL)
                                        if "Already done" in e.get("text", "")], timeout=20)[-1]
    assert "is inactive" in said["text"] and "Nothing changed in AWS" in said["text"]
    shown = world.fake.wait_for(lambda: "nothing changed" in json.dumps(
        (m := security_now(world, message))["blocks"]) and m, timeout=20)
    ids = action_ids(shown)
    assert "remediation:undo:1" not in ids and "activity:contain:1" not in ids  # no Undo of nothing


def test_no_answer_in_time_escalates_once(world):
    queue = Queue(world)
    detail, _ = bob_creates_key_for_dave(world)
    queue.send(ct.body(detail))
    intake(world, queue).poll_once()
    steward = world.steward(clock=lambda: utcnow() + timedelta(minutes=29))
    assert steward.activity.sweep() == 0 and escalations(world) == []
    later = world.steward(clock=lambda: utcnow() + timedelta(minutes=31))
    assert later.activity.sweep() == 1
    assert later.activity.sweep() == 0  # once
    (message,) = escalations(world)
    assert "did not answer within 30 minutes" in json.dumps(message["blocks"])
    assert rows(world)[0].state == "unanswered" and len(audited(world, "activity.unanswered")) == 1
    from bot.services.digest import DigestService
    from bot.slack.blocks.digest import digest_blocks, digest_text

    digest = DigestService(world.settings(), world.engine).build()
    assert digest.risky_changes == {"unanswered": 1}
    assert "Risky changes this week: 1 (0 confirmed, 0 denied, 1 unanswered)" in digest_text(digest)
    assert "*Risky changes this week*: 1 (0 confirmed, 0 denied, 1 unanswered)" in json.dumps(
        [b.to_dict() for b in digest_blocks(digest)])
    (ask,) = asks(world, BOB)
    assert "No answer in time" in json.dumps(world.fake.message(world.fake.im_channel(BOB), ask["ts"])["blocks"])


def test_unknown_actor_and_root_go_straight_to_security(world):
    queue = Queue(world)
    by_ci = ct.record("AttachRolePolicy", identity=ct.role_session("ci-run-17"),
                      request={"roleName": "deploy", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"})
    root = ct.console_login(ct.root_identity(), mfa="No")
    queue.send(ct.body(by_ci), ct.body(root))
    report = intake(world, queue).poll_once()
    assert report.risky == 2 and asks(world, BOB) == []
    texts = [json.dumps(m["blocks"]) for m in escalations(world)]
    assert len(texts) == 2
    ci = next(t for t in texts if "AdministratorAccess" in t)
    assert "could not tell which person" in ci and "Detach AdministratorAccess" in ci
    root_text = next(t for t in texts if "root" in t)
    assert "Root's activity always comes here" in root_text and "WITHOUT MFA" in root_text
    assert {r.state for r in rows(world)} == {"escalated"}
    assert len(audited(world, "activity.escalated")) == 2


def test_quiet_events_cost_one_row_unreadable_bodies_are_recorded_and_poison_dead_letters(any_world, monkeypatch):
    world = any_world
    queue = Queue(world, max_receives=2)
    quiet = ct.record("ListUsers", read_only=True)
    poison = ct.record("CreateLoginProfile", request={"userName": "dave"})
    queue.send(ct.body(quiet), "this is not JSON {", ct.body(poison))
    from checks.activity import rules

    real = rules.evaluate

    def crashing(event, ctx=None):  # a rule with a bug that this one event trips, every time
        if event.event_id == poison["eventID"]:
            raise RuntimeError("rule bug")
        return real(event, ctx)

    monkeypatch.setattr(rules, "evaluate", crashing)
    taker = intake(world, queue)
    calls: list[str] = []
    queue.sqs.meta.events.register("before-call", lambda model=None, **_: calls.append(model.name),
                                   unique_id="record-intake")
    first = taker.poll_once()
    assert (first.received, first.unreadable, first.failed, first.deleted) == (3, 1, 1, 2)
    with Session(world.engine) as session:
        seen = session.exec(select(ActivitySeen)).all()
    assert [s.event_id for s in seen] == [quiet["eventID"]] and rows(world) == []
    (unreadable,) = audited(world, "activity.unreadable")
    assert unreadable.payload["excerpt"] == "this is not JSON {" and "not JSON" in unreadable.payload["error"]
    for _ in range(3):  # redelivered, fails again, then SQS moves it to the dead-letter queue
        taker.poll_once()
    queue.sqs.meta.events.unregister("before-call", unique_id="record-intake")
    assert queue.depth() == 0 and queue.depth(queue.dlq) == 1
    # What the hub role's activity policy grants is what the intake calls (DeleteMessageBatch
    # is authorised as sqs:DeleteMessage).
    from checks.permissions import ACTIVITY_ACTIONS

    called = {f"sqs:{'DeleteMessage' if c == 'DeleteMessageBatch' else c}" for c in calls}
    assert called | {"sqs:GetQueueAttributes"} == set(ACTIVITY_ACTIONS)  # (that one is steward doctor's)
    dead = queue.sqs.receive_message(QueueUrl=queue.dlq)["Messages"][0]
    assert json.loads(dead["Body"])["detail"]["eventID"] == poison["eventID"]


def test_a_dm_that_cannot_be_delivered_goes_to_security(world):
    from bot.db.models import OwnerOverride

    with Session(world.engine) as session:  # bob's user is assigned to someone no longer in Slack
        session.add(OwnerOverride(resource="arn:aws:iam::123456789012:user/bob", slack_user_id="U0GONE0001",
                                  assigned_by=CAROL, assigned_at=utcnow()))
        session.commit()
    queue = Queue(world)
    detail, _ = bob_creates_key_for_dave(world)
    queue.send(ct.body(detail))
    assert intake(world, queue).poll_once().risky == 1
    (message,) = escalations(world)
    assert "could not be delivered" in json.dumps(message["blocks"])
    (row,) = rows(world)
    assert row.state == "escalated" and row.person == "U0GONE0001" and row.dm_ts is None
    (escalated,) = audited(world, "activity.escalated")
    assert escalated.actor == "system"


def test_steward_events_cli_checks_its_settings_and_takes_one_batch(world):
    from typer.testing import CliRunner

    from bot.cli.main import app

    queue = Queue(world)
    detail, _ = bob_creates_key_for_dave(world)
    queue.send(ct.body(detail), "garbage")
    env = {"STEWARD_DATABASE_URL": world.db, "SLACK_BOT_TOKEN": world.fake.token,
           "SLACK_API_URL": world.fake.base_url, "STEWARD_SECURITY_CHANNEL": world.security}
    missing = CliRunner().invoke(app, ["events", "--once"], env=env)
    assert missing.exit_code == 2 and "STEWARD_ACTIVITY_QUEUE_URL" in missing.stderr
    bad = CliRunner().invoke(app, ["events", "--once"], env={**env, "STEWARD_ACTIVITY_QUEUE_URL": "activity"})
    assert bad.exit_code == 2 and "not an SQS queue URL" in bad.stderr
    result = CliRunner().invoke(app, ["events", "--once", "--wait", "0"],
                                env={**env, "STEWARD_ACTIVITY_QUEUE_URL": queue.url})
    assert result.exit_code == 0, result.output
    assert "2 received, 1 risky, 0 duplicate, 1 unreadable, 0 failed" in result.stdout
    assert len(asks(world, BOB)) == 1 and queue.depth() == 0


def test_steward_events_stops_cleanly_on_sigterm(world):
    import signal
    import subprocess
    import time

    from tests.bot.test_serve_http import clean_env, steward_command

    queue = Queue(world)
    env = clean_env(STEWARD_DATABASE_URL=world.db, SLACK_BOT_TOKEN=world.fake.token,
                    SLACK_API_URL=world.fake.base_url, STEWARD_SECURITY_CHANNEL=world.security,
                    STEWARD_ACTIVITY_QUEUE_URL=queue.url, AWS_ENDPOINT_URL=world.moto, **FAKE_CREDENTIALS)
    log = world.workdir / "events.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*steward_command(), "events", "--wait", "1"], cwd=world.workdir, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
        try:
            detail, _ = bob_creates_key_for_dave(world)
            queue.send(ct.body(detail))
            world.fake.wait_for(lambda: asks(world, BOB), timeout=30)
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert process.wait(timeout=15) == 0, log.read_text()
            assert time.monotonic() - started < 5  # within one long poll
        finally:
            if process.poll() is None:
                process.kill()
    assert "stopped taking events" in log.read_text() and queue.depth() == 0


# ---------------------------------------------------------------------------------------
# An opened trust: the previous one put back (restore role, two approvers), and undone

RESTORE_ROLE = "IAMStewardRestore"
OWN_TRUST = json.loads(ct.trust({"AWS": f"arn:aws:iam::{ct.ACCOUNT}:root"}))
OPENED_TRUST = json.loads(ct.trust({"AWS": f"arn:aws:iam::{ct.OTHER}:root"}))


@pytest.fixture
def served_with_restore(world):
    """`steward serve` with the opt-in restore role (and the role in moto's account)."""
    world.iam.create_role(RoleName=RESTORE_ROLE, AssumeRolePolicyDocument=json.dumps(OWN_TRUST))
    env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": world.moto, "AWS_CONFIG_FILE": str(world.workdir / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(world.workdir / "none"), "STEWARD_SECURITY_CHANNEL": world.security,
           "STEWARD_SECURITY_APPROVERS": f"{CAROL},{ERIN}", "STEWARD_RESTORE_ROLE_NAME": RESTORE_ROLE}
    with running_steward(world.fake, world.db, world.workdir, env=env) as s:
        yield s


def assumed_roles() -> list[str]:
    """The roles assumed on the moto server (it runs in this process)."""
    from moto.sts.models import sts_backends

    return [r.role_arn for r in sts_backends[ct.ACCOUNT]["global"].assumed_roles]


def restore_role_arn() -> str:
    return f"arn:aws:iam::{ct.ACCOUNT}:role/{RESTORE_ROLE}"


def app_trust(world: World) -> dict:
    return world.iam.get_role(RoleName="app")["Role"]["AssumeRolePolicyDocument"]


def same_trust(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def bob_opens_the_trust_of_app(world: World) -> dict:
    """A scan saw role `app` trusting its own account; then bob really opened it to an outside
    account (moto), and this is CloudTrail's record of it."""
    from bot.services.scans import ScanService

    world.iam.create_role(RoleName="app", AssumeRolePolicyDocument=json.dumps(OWN_TRUST))
    ScanService(world.settings(), engine=world.engine).run(actor="test")
    world.iam.update_assume_role_policy(RoleName="app", PolicyDocument=json.dumps(OPENED_TRUST))
    bob_key = world.iam.list_access_keys(UserName="bob")["AccessKeyMetadata"][0]["AccessKeyId"]
    return ct.record("UpdateAssumeRolePolicy", identity=ct.user_identity("bob", key=bob_key),
                     request={"roleName": "app", "policyDocument": json.dumps(OPENED_TRUST)})


def denied_by_bob(world: World, served, detail: dict) -> tuple[dict, ActivityEvent]:
    queue = Queue(world)
    queue.send(ct.body(detail))
    intake(world, queue).poll_once()
    (ask,) = asks(world, BOB)
    (row,) = rows(world)
    click(served, world, BOB, ask, "activity:no", row.token)
    message = world.fake.wait_for(lambda: escalations(world) and escalations(world)[-1], timeout=20)
    return message, row


def test_no_on_an_opened_trust_restores_the_previous_one_with_two_approvers_and_undo_opens_it_again(
        world, served_with_restore):
    served = served_with_restore
    message, row = denied_by_bob(world, served, bob_opens_the_trust_of_app(world))
    text = json.dumps(message["blocks"])
    assert f"let account(s) {ct.OTHER} assume role app" in text and "Restore the previous trust policy" in text
    assert row.containment[0]["action"] == "restore-trust-policy"
    assert row.containment[0]["details"]["previous_trust_policy"] == OWN_TRUST

    # carol asks for the restore: never one click, a second approver decides.
    click(served, world, CAROL, message, "activity:contain:0", row.token, channel=world.security)
    request = world.fake.wait_for(lambda: [m for m in world.fake.messages(world.security)
                                           if "Approval needed" in json.dumps(m.get("blocks"))], timeout=20)[-1]
    asked = json.dumps(request["blocks"])
    assert "previous trust policy of the role app" in asked and f"(now: arn:aws:iam::{ct.OTHER}:root)" in asked
    assert same_trust(app_trust(world), OPENED_TRUST)
    approve = button_value(request, "remediation:approve")
    click(served, world, CAROL, request, "remediation:approve", approve, channel=world.security)  # her own request
    world.fake.wait_for(lambda: [e for e in audited(world, "refused") if "own request" in json.dumps(e.payload)],
                        timeout=20)
    assert same_trust(app_trust(world), OPENED_TRUST)
    click(served, world, ERIN, request, "remediation:approve", approve, channel=world.security)
    world.fake.wait_for(lambda: same_trust(app_trust(world), OWN_TRUST), timeout=20)
    succeeded = audited(world, "remediation.succeeded")[-1]
    assert succeeded.actor == ERIN and succeeded.resource.endswith(":role/app")
    assert same_trust(succeeded.payload["before"]["trust_policy"], OPENED_TRUST)
    assert restore_role_arn() in assumed_roles()  # written by the restore role
    updated = world.fake.wait_for(lambda: "remediation:undo:0" in json.dumps(
        (m := world.fake.message(world.security, message["ts"]))["blocks"]) and m, timeout=20)

    # Undo opens the trust again: that gives access back, so a second approver again.
    click(served, world, ERIN, updated, "remediation:undo:0", button_value(updated, "remediation:undo:0"),
          channel=world.security)
    undo_request = world.fake.wait_for(lambda: [m for m in world.fake.messages(world.security)
                                                if "Undo needs approval" in json.dumps(m.get("blocks"))], timeout=20)[-1]
    assert same_trust(app_trust(world), OWN_TRUST)
    click(served, world, CAROL, undo_request, "remediation:undo_approve",
          button_value(undo_request, "remediation:undo_approve"), channel=world.security)
    world.fake.wait_for(lambda: same_trust(app_trust(world), OPENED_TRUST), timeout=20)
    assert audited(world, "remediation.undone")[-1].actor == CAROL


def test_with_the_restore_role_off_the_restore_is_refused_with_the_command_and_nothing_changes(world, served):
    message, row = denied_by_bob(world, served, bob_opens_the_trust_of_app(world))
    assert "Restore the previous trust policy" in json.dumps(message["blocks"])
    click(served, world, CAROL, message, "activity:contain:0", row.token, channel=world.security)
    reply = world.fake.wait_for(lambda: [e for e in world.fake.ephemerals(CAROL)
                                         if "restore role is not enabled" in e.get("text", "")], timeout=20)[-1]
    said = reply["text"]
    assert "writing a trust policy needs it" in said and "nothing was changed" in said
    assert "aws iam update-assume-role-policy --role-name app --policy-document" in said
    assert f"arn:aws:iam::{ct.ACCOUNT}:root" in said  # the document to put back, in the command
    assert "Before-state (JSON)" in said and ct.OTHER in said  # and the opened one, to keep
    # Nobody was asked to approve, and nothing changed in AWS.
    assert not [m for m in world.fake.messages(world.security) if "Approval needed" in json.dumps(m.get("blocks"))]
    assert same_trust(app_trust(world), OPENED_TRUST) and restore_role_arn() not in assumed_roles()
    refusal = [e for e in audited(world, "refused") if "restore role is not enabled" in json.dumps(e.payload)]
    assert refusal and audited(world, "remediation.succeeded") == []


def test_the_inventory_keeps_each_role_s_trust_policy_which_reviews_never_offer_to_remove():
    from types import SimpleNamespace

    from bot.services.reviews import entitlements_of
    from checks.inventory import principal_entitlements
    from tests.factories import ctx, role, snapshot

    (entry,) = principal_entitlements(snapshot(roles=[role("app", trust=OPENED_TRUST)]), ctx())
    assert entry["entitlements"]["trust_policy"] == OPENED_TRUST
    json.dumps(entry)  # JSON-ready, as the inventory column stores it
    listed = entitlements_of(SimpleNamespace(entitlements=entry["entitlements"]))
    # A reviewer reads who may assume it; the document itself is no entitlement, and trust
    # is never a "Remove access" option.
    assert [(e["kind"], e["label"], e["removable"]) for e in listed] == [
        ("trust", f"assumable by arn:aws:iam::{ct.OTHER}:root", False)]
