"""The two-person rule end to end, through signed HTTP to `steward serve`, the Slack fake and
moto: undo judged like the action it reverses, Reject asks why, the requester always hears
the outcome, a lost approval request gives the finding back, simultaneous clicks and a slow
AWS change once, two `steward notify` never DM twice, and a SIGKILLed server's work is
settled at the next start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from moto.iam.models import IAMBackend
from sqlmodel import Session, select

from bot.db.models import AuditEvent, Remediation
from sandbox import signing
from tests import test_campaigns
from tests.aws import FAKE_CREDENTIALS
from tests.bot.test_serve_http import (
    SECRET,
    clean_env,
    free_port,
    running_steward,
    steward_command,
    wait_healthy,
)
from tests.conftest import DIALECTS, PG_URL
from tests.databases import scratch_postgres
from tests.test_campaigns import BOB, CAROL, World, button_value, click, dm_message, make_world

world, served = test_campaigns.world, test_campaigns.served  # the same fixtures

IN_FLIGHT = ("planned", "approved", "executing", "undo_requested", "undoing")


def aws_env(world: World, channel: str | None = None) -> dict[str, str]:
    return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": world.moto, "AWS_CONFIG_FILE": str(world.workdir / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(world.workdir / "none"),
            "STEWARD_SECURITY_CHANNEL": channel or world.security}


def security_message(world: World, header: str, *, after: int = 0) -> dict | None:
    found = [m for m in world.fake.messages(world.security)[after:] if header in json.dumps(m.get("blocks"))]
    return found[-1] if found else None


def current(world: World, message: dict, channel: str) -> dict:
    return world.fake.message(channel, message["ts"])


def dm_lines(world: World, user: str) -> list[str]:
    """Plain DM lines (not the finding cards) Steward sent `user`."""
    return [m.get("text", "") for m in world.fake.dm(user) if not m.get("blocks")]


def events(world: World, action: str) -> list[AuditEvent]:
    with Session(world.engine) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)
                                 .order_by(AuditEvent.sequence)))


def remediations(world: World) -> list[Remediation]:
    with Session(world.engine) as session:
        return list(session.exec(select(Remediation).order_by(Remediation.id)))


def bob_policies(world: World) -> list[str]:
    return world.iam.list_user_policies(UserName="bob")["PolicyNames"]


def reject_with_reason(served, world: World, user: str, message: dict, action_id: str, token: str,
                       reason: str) -> None:
    """Reject… opens a modal; submitting it with a reason does the rejecting."""
    opened = len(world.fake.calls("views.open"))
    click(served, world, user, message, action_id, token, channel=world.security)
    world.fake.wait_for(lambda: len(world.fake.calls("views.open")) > opened, timeout=20)
    view = world.fake.calls("views.open")[-1].params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == "reject_modal"
    response = served.post(signing.view_submission_body(user, "reject_modal", view["private_metadata"],
                                                        {"reason": {"value": reason}}))
    assert response.status == 200 and "errors" not in response.text, response.text


def test_undo_of_an_approved_removal_needs_a_second_person_and_everyone_is_told(world, served):
    world.steward().campaigns.run_cycle()
    token = world.finding("user-direct-policy", "bob").token

    # 1. Reject asks why; bob hears it in a new DM line, and the reason is audited.
    click(served, world, BOB, dm_message(world, BOB), "finding:request_removal", token)
    request = world.fake.wait_for(lambda: security_message(world, "Approval needed"), timeout=20)
    reject_with_reason(served, world, CAROL, request, "remediation:reject",
                       button_value(request, "remediation:approve"), "Needed for the <!channel> export job")
    line = world.fake.wait_for(lambda: [t for t in dm_lines(world, BOB) if "rejected your request" in t], timeout=20)
    assert "Needed for the &lt;!channel&gt; export job" in line[0] and "<@U0CAROL001>" in line[0]
    assert events(world, "approval.rejected")[-1].payload["reason"] == "Needed for the <!channel> export job"
    assert "Rejected by <@U0CAROL001>" in json.dumps(current(world, request, world.security)["blocks"])
    assert bob_policies(world) == ["s3-everything"]

    # 2. Asked again and approved: the policy goes; bob is told (a new message, not an edit).
    world.fake.wait_for(lambda: "request_removal" in json.dumps(dm_message(world, BOB)["blocks"]),
                        timeout=20)
    click(served, world, BOB, dm_message(world, BOB), "finding:request_removal", token)
    request = world.fake.wait_for(lambda: (m := security_message(world, "Approval needed")) and
                                  m["ts"] != request["ts"] and m, timeout=20)
    click(served, world, CAROL, request, "remediation:approve", button_value(request, "remediation:approve"),
          channel=world.security)
    world.fake.wait_for(lambda: bob_policies(world) == [], timeout=20)
    world.fake.wait_for(lambda: [t for t in dm_lines(world, BOB) if "approved your request" in t], timeout=20)

    # 3. bob's Undo gives access back: it goes to the security channel, AWS is untouched.
    card = world.fake.wait_for(lambda: "Ask to undo" in json.dumps(dm_message(world, BOB)["blocks"])
                               and dm_message(world, BOB), timeout=20)
    click(served, world, BOB, card, "remediation:undo", button_value(card, "remediation:undo"))
    undo_request = world.fake.wait_for(lambda: security_message(world, "Undo needs approval"), timeout=20)
    assert bob_policies(world) == []
    world.fake.wait_for(lambda: "asked to undo it" in json.dumps(current(world, request, world.security)["blocks"]),
                        timeout=20)
    # The asker cannot approve their own undo (nor can anyone who is not an approver).
    refused = len(events(world, "refused"))
    click(served, world, BOB, undo_request, "remediation:undo_approve",
          button_value(undo_request, "remediation:undo_approve"), channel=world.security)
    world.fake.wait_for(lambda: len(events(world, "refused")) > refused, timeout=20)
    assert bob_policies(world) == []

    # 4. An approver rejects the undo, with a reason: bob is told, the original message says so.
    reject_with_reason(served, world, CAROL, undo_request, "remediation:undo_reject",
                       button_value(undo_request, "remediation:undo_approve"), "keep it removed")
    world.fake.wait_for(lambda: [t for t in dm_lines(world, BOB) if "rejected your request to undo" in t
                                 and "keep it removed" in t], timeout=20)
    world.fake.wait_for(lambda: "rejected by <@U0CAROL001>" in json.dumps(
        current(world, request, world.security)["blocks"]), timeout=20)
    assert bob_policies(world) == []

    # 5. Asked again and approved: put back; the original approval message tells the story.
    card = world.fake.wait_for(lambda: "Ask to undo" in json.dumps(dm_message(world, BOB)["blocks"])
                               and dm_message(world, BOB), timeout=20)
    click(served, world, BOB, card, "remediation:undo", button_value(card, "remediation:undo"))
    undo_request = world.fake.wait_for(lambda: (m := security_message(world, "Undo needs approval")) and
                                       m["ts"] != undo_request["ts"] and m, timeout=20)
    click(served, world, CAROL, undo_request, "remediation:undo_approve",
          button_value(undo_request, "remediation:undo_approve"), channel=world.security)
    world.fake.wait_for(lambda: bob_policies(world) == ["s3-everything"], timeout=20)
    story = world.fake.wait_for(lambda: (text := json.dumps(current(world, request, world.security)["blocks"]))
                                and "Put back by <@U0BOB00001> after approval by <@U0CAROL001>" in text and text,
                                timeout=20)
    assert "Approved by <@U0CAROL001>" in story
    world.fake.wait_for(lambda: [t for t in dm_lines(world, BOB) if "approved your request to undo" in t],
                        timeout=20)
    [rem] = [r for r in remediations(world) if r.status == "undone"]
    assert (rem.undo_requested_by, rem.undo_decided_by, rem.lease_owner) == (BOB, CAROL, None)
    undone = events(world, "remediation.undone")[-1]
    assert (undone.payload["requester"], undone.payload["approver"]) == (BOB, CAROL)


def test_approval_requests_read_as_sentences_and_name_the_account(world, served):
    """Over HTTP: the approval and undo-approval posts, the asker's card and the DM lines use
    the decision table's names ("asks to *delete the inline policy*", never the registry's
    title-case "Delete inline policy") and show the account by name, as DMs do."""
    from bot.db.models import Account

    with Session(world.engine) as session:
        accounts = list(session.exec(select(Account)))
        for account in accounts:
            account.label = "acme-prod"
            session.add(account)
        session.commit()
        account_id = accounts[0].id
    world.steward().campaigns.run_cycle()
    token = world.finding("user-direct-policy", "bob").token
    click(served, world, BOB, dm_message(world, BOB), "finding:request_removal", token)
    request = world.fake.wait_for(lambda: security_message(world, "Approval needed"), timeout=20)
    text = json.dumps(request["blocks"])
    assert "asks to *delete the inline policy*" in text and "Delete inline policy" not in text
    assert f"acme-prod ({account_id})" in text and f"in {account_id}" not in text
    card = world.fake.wait_for(lambda: "waiting for a security approver" in json.dumps(dm_message(world, BOB)["blocks"])
                               and dm_message(world, BOB), timeout=20)
    assert "asked to *delete the inline policy*" in json.dumps(card["blocks"])

    click(served, world, CAROL, request, "remediation:approve", button_value(request, "remediation:approve"),
          channel=world.security)
    world.fake.wait_for(lambda: bob_policies(world) == [], timeout=20)
    line = world.fake.wait_for(lambda: [t for t in dm_lines(world, BOB) if "approved your request" in t], timeout=20)
    assert "your request to delete the inline policy on" in line[0]
    card = world.fake.wait_for(lambda: "Ask to undo" in json.dumps(dm_message(world, BOB)["blocks"])
                               and dm_message(world, BOB), timeout=20)
    click(served, world, BOB, card, "remediation:undo", button_value(card, "remediation:undo"))
    undo = world.fake.wait_for(lambda: security_message(world, "Undo needs approval"), timeout=20)
    text = json.dumps(undo["blocks"])
    assert "the request to *delete the inline policy*" in text and "gives access back (*put back*)" in text
    assert "would be" not in text and "Delete inline policy" not in text
    assert f"acme-prod ({account_id})" in text


def test_a_lost_approval_request_gives_the_finding_back_and_says_why(world):
    """Steward is not in the security channel: chat.postMessage answers not_in_channel."""
    world.steward().campaigns.run_cycle()
    closed = world.fake.add_channel("security-closed", members=[CAROL], bot_member=False)
    with running_steward(world.fake, world.db, world.workdir, env=aws_env(world, closed)) as served_closed:
        token = world.finding("user-direct-policy", "bob").token
        for attempt in (1, 2):  # never "Already in hand": the plan was dropped
            click(served_closed, world, BOB, dm_message(world, BOB), "finding:request_removal", token)
            world.fake.wait_for(lambda n=attempt: len(events(world, "remediation.cancelled")) == n, timeout=20)
            reply = world.fake.wait_for(lambda n=attempt: len(
                [c for c in world.fake.calls("response_url") if "could not ask" in json.dumps(c.params)]) == n,
                timeout=20)
            assert reply
    replies = [c.params["text"] for c in world.fake.calls("response_url") if "could not ask" in json.dumps(c.params)]
    assert "not_in_channel" in replies[-1] and "nothing changed" in replies[-1] and "/invite" in replies[-1]
    assert [r.status for r in remediations(world)] == ["cancelled", "cancelled"]
    assert bob_policies(world) == ["s3-everything"]
    assert "request_removal" in json.dumps(dm_message(world, BOB)["blocks"])  # buttons are back


@pytest.fixture(params=DIALECTS)
def any_world(request, tmp_path, monkeypatch):
    if request.param == "sqlite":
        with make_world(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'steward.db'}") as w:
            yield w
        return
    with scratch_postgres(PG_URL) as url, make_world(tmp_path, monkeypatch, url) as w:
        yield w


def count_calls(monkeypatch, name: str, *, slow_first: float = 0.0) -> list[int]:
    """Count (and optionally slow down the first of) one moto IAM operation, in this
    process, where the moto server runs."""
    calls: list[int] = []
    original = getattr(IAMBackend, name)

    def wrapper(self, *args, **kwargs):
        calls.append(1)
        if slow_first and len(calls) == 1:
            time.sleep(slow_first)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(IAMBackend, name, wrapper)
    return calls


def at_once(n: int, fn) -> None:
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def go():
        barrier.wait()
        try:
            fn()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def settled(world: World) -> bool:
    return not [r for r in remediations(world) if r.status in IN_FLIGHT]


@pytest.mark.parametrize(("clicks", "slow_first"), [(20, 0.0), (2, 3.0)], ids=["20-at-once", "slow-first-read"])
def test_simultaneous_deactivate_and_undo_clicks_change_aws_once(any_world, monkeypatch, clicks, slow_first):
    world = any_world
    world.steward().campaigns.run_cycle()
    writes = count_calls(monkeypatch, "update_access_key")
    count_calls(monkeypatch, "list_access_keys", slow_first=slow_first)
    with running_steward(world.fake, world.db, world.workdir, env=aws_env(world), threads=8) as served_:
        message, token = dm_message(world, BOB), world.finding("unused-access-key", "bob").token
        replies = len(world.fake.calls("response_url"))
        at_once(clicks, lambda: click(served_, world, BOB, message, "finding:remediate:deactivate-access-key", token))
        world.fake.wait_for(lambda: len(world.fake.calls("response_url")) >= replies + clicks, timeout=60)
        world.fake.wait_for(lambda: settled(world) and world.key_status() == "Inactive", timeout=30)
        assert len(writes) == 1 and len(events(world, "remediation.started")) == 1
        told = [c.params.get("text", "") for c in world.fake.calls("response_url")[replies:]]
        assert sum("Deactivate access key* done" in t for t in told) == 1, told  # the owner is told, once
        assert all("already" in t.lower() or "done" in t for t in told), told

        card = world.fake.wait_for(lambda: "remediation:undo" in json.dumps(dm_message(world, BOB)["blocks"])
                                   and dm_message(world, BOB), timeout=20)
        undo_token = button_value(card, "remediation:undo")
        at_once(clicks, lambda: click(served_, world, BOB, card, "remediation:undo", undo_token))
        world.fake.wait_for(lambda: settled(world) and world.key_status() == "Active", timeout=60)
        world.fake.wait_for(lambda: len(world.fake.calls("response_url")) >= replies + 2 * clicks, timeout=60)
        assert len(writes) == 2 and len(events(world, "remediation.undone")) == 1
        assert [r.status for r in remediations(world)] == ["undone"]
        told = [c.params.get("text", "") for c in world.fake.calls("response_url")[replies + clicks:]]
        assert sum(t.startswith(":leftwards_arrow_with_hook: Undone: deactivate access key") for t in told) == 1, told


def test_two_notify_runs_at_once_send_each_dm_once(any_world):
    world = any_world
    env = clean_env(STEWARD_DATABASE_URL=world.db, SLACK_BOT_TOKEN=world.fake.token,
                    SLACK_API_URL=world.fake.base_url, STEWARD_SECURITY_CHANNEL=world.security)
    procs = [subprocess.Popen([*steward_command(), "notify"], cwd=world.workdir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    cards = [c for c in world.fake.calls("chat.postMessage") if c.params.get("blocks")]
    channels = [c.params["channel"] for c in cards]
    assert sorted(channels) == sorted(set(channels)), channels  # nobody twice
    assert {BOB, "U0DAVE0001"} <= set(channels)
    assert "2 DMs to owners" in "".join(o[0] for o in outputs) and "0 DMs to owners" in "".join(
        o[0] for o in outputs)


def test_a_sigkilled_server_with_a_remediation_in_flight_is_settled_at_the_next_start(world, monkeypatch):
    world.steward().campaigns.run_cycle()
    stuck, killed = threading.Event(), threading.Event()
    original = IAMBackend.update_access_key

    def hang(self, *args, **kwargs):  # the AWS write never answers, and never lands
        stuck.set()
        killed.wait(60)
        raise RuntimeError("connection lost")

    monkeypatch.setattr(IAMBackend, "update_access_key", hang)
    port = free_port()
    env = clean_env(SLACK_BOT_TOKEN=world.fake.token, SLACK_SIGNING_SECRET=SECRET, SLACK_API_URL=world.fake.base_url,
                    STEWARD_DATABASE_URL=world.db, STEWARD_SECURITY_APPROVERS=CAROL, **aws_env(world))
    args = [*steward_command(), "serve", "--port", str(port), "--host", "127.0.0.1", "--workers", "1"]
    log = Path(world.workdir) / "killed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=world.workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        served_ = _Served(f"http://127.0.0.1:{port}")
        message, token = dm_message(world, BOB), world.finding("unused-access-key", "bob").token
        click(served_, world, BOB, message, "finding:remediate:deactivate-access-key", token)
        assert stuck.wait(30)
        [rem] = remediations(world)
        assert rem.status == "executing" and rem.lease_owner
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # master and workers, as an OOM kill or a crash would
        proc.wait(timeout=30)
        killed.set()
    monkeypatch.setattr(IAMBackend, "update_access_key", original)

    with running_steward(world.fake, world.db, world.workdir, env=aws_env(world)):
        world.fake.wait_for(lambda: settled(world), timeout=20)  # at start-up, not after a timeout
        [rem] = remediations(world)
        assert rem.status == "failed" and "interrupted" in rem.error and rem.lease_owner is None
        assert world.key_status() == "Active"  # the hung write never reached AWS
        card = world.fake.wait_for(lambda: "remediate:deactivate-access-key" in json.dumps(
            dm_message(world, BOB)["blocks"]) and dm_message(world, BOB), timeout=20)  # buttons back
        assert "in progress" not in json.dumps(card["blocks"])
        world.fake.wait_for(lambda: [t for t in dm_lines(world, BOB) if "interrupted" in t and "Nothing changed" in t],
                            timeout=20)
        assert events(world, "remediation.failed")[-1].payload["reconciled"] is True


class _Served:
    """Enough of tests.bot.test_serve_http.Served for `click` against a server we kill."""

    def __init__(self, url: str):
        self.events_url = url + "/slack/events"

    def post(self, body: bytes):
        return signing.post(self.events_url, body, SECRET)



def test_steward_reconcile_settles_a_dead_process_row_and_updates_slack(world):
    """`steward reconcile` with Slack configured: the DM card and a DM line, at once."""
    from typer.testing import CliRunner

    from bot.cli.main import app
    from bot.db.engine import session_scope

    steward = world.steward()
    steward.campaigns.run_cycle()
    finding = world.finding("unused-access-key", "bob")
    rem = steward.remediations.request(finding.id, "deactivate-access-key", actor=BOB)
    steward.remediations.approve(rem.id, approver=BOB)
    gone = subprocess.Popen(["true"])
    gone.wait()
    with session_scope(world.engine) as session:  # as a process killed after its intent
        row = session.get(Remediation, rem.id)
        row.status = "executing"
        row.lease_owner = steward.remediations.holder.rsplit(":", 2)[0] + f":{gone.pid}:deadbeef"
    steward.remediations.keeper.drop(rem.id)
    env = {"STEWARD_DATABASE_URL": world.db, "SLACK_BOT_TOKEN": world.fake.token,
           "SLACK_API_URL": world.fake.base_url, "STEWARD_SECURITY_CHANNEL": world.security}
    result = CliRunner().invoke(app, ["reconcile"], env=env)
    assert result.exit_code == 0, result.output
    assert "reconciled 1" in result.stderr and f"#{rem.id} deactivate-access-key: failed" in result.stdout
    assert "remediate:deactivate-access-key" in json.dumps(dm_message(world, BOB)["blocks"])
    assert [t for t in dm_lines(world, BOB) if "interrupted" in t]
    assert world.key_status() == "Active"
