"""A Slack app set up wrong, under the enforcing local Slack: a token without a scope, the
bot not in the security channel, an archived channel, a deactivated approver, a revoked
token. Each gives one clear log line and an audit event, no crash, no duplicate message,
and `GET /healthz` names the degraded part (and stays 200: the process is alive)."""

from __future__ import annotations

import json
import logging
import time
import urllib.request

import pytest
from slack_sdk import WebClient

from bot.db.audit import AuditAction as A
from bot.db.models import AuditEvent
from bot.run.web import create_wsgi_app
from bot.slack.health import SlackHealth
from bot.slack.manifest import needed_scopes
from tests import test_campaigns
from tests.bot.test_serve_http import _call, _offline_app, running_steward
from tests.test_campaigns import BOB, CAROL, FAKE_CREDENTIALS, World, interrupt_first_send

world = test_campaigns.world  # the fixture: moto, the enforcing fake, a scanned database

REFUSED = "Slack refused a post"


def failures(w: World) -> list[dict]:
    from sqlmodel import Session, select

    with Session(w.engine) as session:
        rows = session.exec(select(AuditEvent).where(AuditEvent.action == A.FINDING_NOTIFY_FAILED.value)
                            .order_by(AuditEvent.sequence)).all()
        return [row.payload for row in rows]


def posts_to(w: World, channel: str) -> int:
    return len([c for c in w.fake.calls("chat.postMessage") if c.ok and c.params.get("channel") == channel])


def refused_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if REFUSED in r.getMessage() or "cannot read" in r.getMessage()]


def test_a_token_without_chat_write_stops_the_cycle_after_one_refusal(world: World, caplog) -> None:
    world.fake.set_scopes(sorted(set(needed_scopes()) - {"chat:write"}))
    with caplog.at_level(logging.ERROR):
        report = world.steward().campaigns.run_cycle()
        again = world.steward().campaigns.run_cycle()
    assert (report.dms, report.triaged, again.dms) == (0, 0, 0)
    [line, line2] = refused_lines(caplog)  # one per cycle, not one per owner
    assert "missing_scope (needs chat:write)" in line and "steward doctor" in line and line2 == line
    assert [f["error"] for f in failures(world)] == ["missing_scope (needs chat:write)"] * 2
    world.fake.set_scopes(needed_scopes())  # the app reinstalled with the generated manifest
    fixed = world.steward().campaigns.run_cycle()
    assert fixed.dms == 2 and fixed.failures == []
    assert len([m for m in world.fake.dm(BOB) if m.get("blocks")]) == 1


def test_resuming_without_history_scope_holds_instead_of_sending_twice(world: World, monkeypatch, caplog) -> None:
    """The bug that started #12: a crash between post and record, then a token that cannot
    read the DM's history. Before, the owner got the same DM twice."""
    interrupt_first_send(world, monkeypatch)
    channel = world.fake.calls("chat.postMessage")[0].params["channel"]
    world.fake.set_scopes(sorted(set(needed_scopes()) - {"im:history"}))  # the old manifest
    with caplog.at_level(logging.ERROR):
        report = world.steward().campaigns.run_cycle()
    assert posts_to(world, channel) == 1  # held, not sent again
    assert any("holding" in f for f in report.failures)
    [line] = refused_lines(caplog)
    assert "missing_scope (needs im:history)" in line
    assert failures(world)[-1]["error"] == "history unreadable: missing_scope (needs im:history)"
    world.fake.set_scopes(needed_scopes())
    resumed = world.steward().campaigns.run_cycle()
    assert resumed.resumed >= 1 and posts_to(world, channel) == 1  # adopted from history


@pytest.mark.parametrize("breakage", ["not_in_channel", "is_archived"])
def test_a_security_channel_the_bot_cannot_post_in(world: World, caplog, breakage: str) -> None:
    if breakage == "not_in_channel":
        world.fake.set_bot_member(world.security, False)
    else:
        world.fake.archive_channel(world.security)
    with caplog.at_level(logging.ERROR):
        report = world.steward().campaigns.run_cycle()
    assert report.dms == 2 and report.triaged == 0  # owners still get their DMs
    [line] = refused_lines(caplog)
    assert breakage in line and world.security in line
    assert [f["error"] for f in failures(world)] == [breakage]
    again = world.steward().campaigns.run_cycle()
    assert again.dms == 0 and len([m for m in world.fake.dm(BOB) if m.get("blocks")]) == 1
    world.fake.set_bot_member(world.security, True)
    world.fake.archive_channel(world.security, False)
    fixed = world.steward().campaigns.run_cycle()
    assert fixed.triaged >= 1 and posts_to(world, world.security) == 1


def health(w: World) -> tuple[SlackHealth, object]:
    from bot.run.serve import slack_health

    probe = slack_health(w.settings(), WebClient(token=w.fake.token, base_url=w.fake.base_url), w.engine)
    return probe, create_wsgi_app(_offline_app(), w.engine, slack_health=probe)


def setup_events(w: World) -> list[tuple[str, list[str]]]:
    from sqlmodel import Session, select

    with Session(w.engine) as session:
        rows = session.exec(select(AuditEvent).where(AuditEvent.action.like("setup.%"))
                            .order_by(AuditEvent.sequence)).all()
        return [(row.action, row.payload["problems"]) for row in rows]


def healthz(wsgi) -> dict:
    status, _, body = _call(wsgi, "GET", "/healthz")
    assert status.startswith("200")  # liveness: the process serves; Slack's setup needs a person
    return json.loads(body)


def test_healthz_names_the_degraded_part(world: World, caplog) -> None:
    probe, wsgi = health(world)
    probe.refresh()
    assert healthz(wsgi) == {"status": "ok", "slack": "ok"}
    breakages = [
        (lambda: world.fake.set_scopes(sorted(set(needed_scopes()) - {"im:history"})), "scopes"),
        (lambda: world.fake.set_bot_member(world.security, False), "scopes, security channel"),
        (lambda: world.fake.set_user_deleted(CAROL), "scopes, security channel, approvers"),
    ]
    for breakage, parts in breakages:
        breakage()
        with caplog.at_level(logging.WARNING):
            probe.refresh()
        assert healthz(wsgi)["slack"] == f"degraded: {parts} (run `steward doctor`)"
        assert "Slack setup degraded" in caplog.records[-1].getMessage()
    assert CAROL not in json.dumps(healthz(wsgi))  # no people's ids on an open endpoint
    # Each change is an audit event; the deactivated approver is named there, not on /healthz.
    events = setup_events(world)
    assert [action for action, _ in events] == ["setup.degraded"] * 3
    assert any(CAROL in problem and "deactivated" in problem for problem in events[-1][1])
    probe.refresh()  # nothing changed: no new event
    assert len(setup_events(world)) == 3
    world.fake.set_scopes(needed_scopes())
    world.fake.set_bot_member(world.security, True)
    world.fake.set_user_deleted(CAROL, False)
    probe.refresh()
    assert healthz(wsgi)["slack"] == "ok"
    assert setup_events(world)[-1] == ("setup.restored", [])
    world.fake.revoke_token()
    probe.refresh()
    assert healthz(wsgi)["slack"] == "degraded: token (run `steward doctor`)"


def test_steward_serve_reports_slack_health(world: World) -> None:
    world.fake.set_bot_member(world.security, False)
    env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": world.moto, "STEWARD_SECURITY_CHANNEL": world.security}
    with running_steward(world.fake, world.db, world.workdir, env=env) as served:
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(served.url + "/healthz", timeout=5) as response:
                body = json.loads(response.read())
            if not body["slack"].startswith("unknown") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert body == {"status": "ok", "slack": "degraded: security channel (run `steward doctor`)"}
