"""Clicks an attacker can send with a valid signature: replays and forged tokens.

Through `steward serve` (signed HTTP), the local Slack fake and moto, as in
tests/test_campaigns.py (whose fixtures are reused).
"""

from __future__ import annotations

import json
import secrets

import pytest

from sandbox import signing
from tests.test_campaigns import BOB, MALLORY, button_value, dm_message, served, world  # noqa: F401


def _signed_click(w, user, message, action_id, value):
    channel = w.fake.im_channel(BOB)  # the DM the message is in (a stranger may forge a click on it)
    hook = w.fake.response_url(channel, user, message["ts"])
    return signing.block_actions_body(user, action_id, value, message=message, channel_id=channel,
                                      response_url=hook, trigger_id=w.fake.trigger_id(user))


def _replies(w, since: int) -> list[str]:
    return [json.dumps(c.params) for c in w.fake.calls("response_url")[since:]]


def test_replaying_a_deactivate_after_undo_does_nothing_and_says_so(world, served) -> None:  # noqa: F811
    world.steward().campaigns.run_cycle()
    message = dm_message(world, BOB)
    token = world.finding("unused-access-key", "bob").token
    deactivate = _signed_click(world, BOB, message, "finding:remediate:deactivate-access-key", token)
    assert served.post(deactivate).status == 200
    world.fake.wait_for(lambda: world.key_status() == "Inactive", timeout=20)

    def undo_offered():
        current = world.fake.message(world.fake.im_channel(BOB), message["ts"])
        return "remediation:undo" in json.dumps(current["blocks"]) and current

    current = world.fake.wait_for(undo_offered, timeout=20)
    undo = _signed_click(world, BOB, current, "remediation:undo", button_value(current, "remediation:undo"))
    assert served.post(undo).status == 200
    world.fake.wait_for(lambda: world.key_status() == "Active", timeout=20)
    actions_before = world.actions()

    since = len(world.fake.calls("response_url"))
    assert served.post(deactivate).status == 200  # the same bytes, inside Slack's five minutes
    world.fake.wait_for(lambda: _replies(world, since) or None, timeout=20)
    assert any("already handled" in r for r in _replies(world, since))
    assert world.key_status() == "Active"
    new = world.actions()[len(actions_before):]
    assert new == ["refused"]


@pytest.mark.parametrize("kind", ["too-long", "random", "wrong-kind", "empty"])
def test_clicks_with_forged_tokens_are_refused_and_audited(world, served, kind) -> None:  # noqa: F811
    world.steward().campaigns.run_cycle()
    message = dm_message(world, BOB)
    finding_token = world.finding("unused-access-key", "bob").token
    token = {"too-long": "x" * 1900, "random": secrets.token_urlsafe(12), "empty": "",
             "wrong-kind": finding_token}[kind]
    action = "remediation:undo" if kind == "wrong-kind" else "finding:remediate:deactivate-access-key"
    before = len(world.actions())
    since = len(world.fake.calls("response_url"))
    assert served.post(_signed_click(world, MALLORY, message, action, token)).status == 200
    world.fake.wait_for(lambda: _replies(world, since) or None, timeout=20)
    assert "no longer exists" in _replies(world, since)[0]
    assert world.actions()[before:] == ["refused"]
    assert world.key_status() == "Active"


def test_keep_reasons_are_limited_and_shown_inert(world, served) -> None:  # noqa: F811
    from datetime import timedelta

    from bot.services.common import utcnow
    from tests.test_campaigns import DAVE, click

    world.steward().campaigns.run_cycle()
    message = dm_message(world, DAVE)
    token = world.finding("stale-user", "dave").token
    click(served, world, DAVE, message, "finding:keep", token)
    world.fake.wait_for(lambda: world.fake.calls("views.open"), timeout=20)
    day = (utcnow() + timedelta(days=30)).date().isoformat()

    def submit(reason: str):
        values = {"reason": {"value": {"type": "plain_text_input", "value": reason}},
                  "until": {"value": {"type": "datepicker", "selected_date": day}}}
        return served.post(signing.view_submission_body(DAVE, "keep_modal", token, values))

    too_long = submit("batch " * 1000)  # 6,000 characters: the modal allows 1,000; a forged form may not
    assert too_long.status == 200 and too_long.json()["response_action"] == "errors"
    assert "1,000 characters" in too_long.json()["errors"]["reason"]
    assert world.finding("stale-user", "dave").state != "excepted"

    hostile = "<!channel> <!here> <http://evil.example|click> & friends"
    assert submit(hostile).status == 200
    assert world.finding("stale-user", "dave").decision_reason == hostile  # stored as typed
    posted = [json.dumps(c.params) for c in world.fake.calls()
              if c.method in ("chat.postMessage", "chat.update", "chat.postEphemeral", "response_url")]
    shown = [p for p in posted if "evil.example" in p]
    assert shown, "the reason is shown somewhere"
    for text in shown:
        assert "<!channel>" not in text and "<!here>" not in text and "<http://evil" not in text
        assert "&lt;!channel&gt;" in text
