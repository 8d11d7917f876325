"""Activity buttons, walked like the finding buttons: every button the builders make is
parsed by `bot.core.decisions`, matched by a registered listener, and named in the table of who
may press it; values are the event's opaque token."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bot.core.decisions import ACTIVITY_BUTTONS, Answer, activity_action_id, parse_activity_action
from bot.db.models import ActivityEvent
from bot.slack.blocks import activity as blocks
from bot.slack.listeners.activity import ACTIVITY_BUTTON
from sandbox.block_limits import problems, view_problems

NOW = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)


def row(**kwargs) -> ActivityEvent:
    values = dict(event_id="e-1", token="tok-123", account_id="123456789012", rule_id="access-key-for-another-user",
                  severity="high", summary="created access key AKIA… for IAM user dave",
                  target="arn:aws:iam::123456789012:user/dave", actor_kind="user", state="asking", person="U0BOB00001",
                  facts={"event": "iam:CreateAccessKey", "actor": "IAM user bob", "ip": "203.0.113.7",
                         "user_agent": "aws-cli/2", "time": NOW.isoformat(), "region": "us-east-1"},
                  containment=[{"action": "deactivate-access-key", "resource": "arn:aws:iam::123456789012:user/dave",
                                "label": "Deactivate the new key", "details": {}},
                               {"action": "quarantine-user", "resource": "arn:aws:iam::123456789012:user/bob",
                                "label": "Quarantine bob", "details": {}}],
                  event_time=NOW, received_at=NOW)
    values.update(kwargs)
    return ActivityEvent(**values)


def buttons(message) -> list[dict]:
    out = []
    for block in message:
        block = block.to_dict() if hasattr(block, "to_dict") else block
        out.extend(e for e in block.get("elements", []) if e.get("type") == "button")
    return out


def every_message():
    yield blocks.ask_dm(row(), minutes=30)
    for state in ("denied", "unanswered", "escalated", "confirmed"):
        options = blocks.option_views(row().containment, {})
        yield blocks.security_message(row(state=state), options, minutes=30)


def test_every_button_parses_is_listened_to_and_carries_only_the_token():
    seen = set()
    for message in every_message():
        for button in buttons(message):
            answer, _index = parse_activity_action(button["action_id"])
            assert ACTIVITY_BUTTON.match(button["action_id"]), button["action_id"]
            assert button["value"] == "tok-123"
            assert answer in ACTIVITY_BUTTONS
            seen.add(answer)
    assert seen == set(Answer)  # every kind of button is made somewhere
    assert set(ACTIVITY_BUTTONS) == set(Answer) and set(ACTIVITY_BUTTONS.values()) == {"asked", "approver"}


@pytest.mark.parametrize("answer", list(Answer))
def test_action_ids_round_trip(answer):
    index = 3 if answer is Answer.CONTAIN else None
    assert parse_activity_action(activity_action_id(answer, index)) == (answer, index)


@pytest.mark.parametrize("bad", ["activity:contain", "activity:contain:x", "activity:maybe", "finding:ack",
                                 "activity:yes:1"])
def test_bad_action_ids_are_refused(bad):
    with pytest.raises(ValueError):
        parse_activity_action(bad)


def test_messages_fit_slack_s_limits_and_escape_what_was_typed():
    hostile = row(summary="<!channel> *bold* & <http://x|y>", state="confirmed", reason="<!here> ok")
    for message in (*every_message(), blocks.security_message(hostile, [], minutes=30),
                    blocks.answered_dm(hostile)):
        assert problems([b.to_dict() for b in message]) == []
    text = json.dumps([b.to_dict() for b in blocks.security_message(hostile, [], minutes=30)])
    assert "<!channel>" not in text and "<!here>" not in text and "&lt;!channel&gt;" in text
    assert blocks.validate_reason("  ")[1] and blocks.validate_reason("x" * 1001)[1]
    assert blocks.validate_reason(" OPS-1 ") == ("OPS-1", None)


def test_the_reason_modal_is_a_valid_view():
    view = blocks.yes_modal("tok-123").to_dict()
    assert view_problems(view) == [] and view["private_metadata"] == "tok-123"
    assert view["callback_id"] == blocks.YES_MODAL


def test_each_undo_has_its_own_action_id_which_the_undo_listener_routes():
    from bot.slack.listeners.actions import UNDO_BUTTON

    done = {i: blocks.ContainmentView(label=f"option {i}", outcome=f"option {i}: done", undo_token=f"u{i}",
                                      undo_label="Ask to undo") for i in (0, 1)}
    message = [b.to_dict() for b in blocks.security_message(row(state="denied"),
                                                             blocks.option_views(row().containment, done), minutes=30)]
    assert problems(message) == []  # Slack refuses an actions block that repeats an action id
    undo = [b for b in buttons(message) if b["action_id"].startswith("remediation:")]
    assert [(b["action_id"], b["value"]) for b in undo] == [("remediation:undo:0", "u0"), ("remediation:undo:1", "u1")]
    assert all(UNDO_BUTTON.match(b["action_id"]) for b in undo) and UNDO_BUTTON.match("remediation:undo")
    assert not UNDO_BUTTON.match("remediation:undo_approve")
    # Undone: the line stays, and the containment's button is back beside it.
    again = {0: blocks.ContainmentView(label="option 0", outcome="option 0: undone", again=True)}
    message = [b.to_dict() for b in blocks.security_message(row(state="denied"),
                                                            blocks.option_views(row().containment, again), minutes=30)]
    assert "activity:contain:0" in [b["action_id"] for b in buttons(message)]
    assert "option 0: undone" in json.dumps(message)
