"""The owner's and the security team's day, end to end over HTTP (signed like Slack, against
the local Slack and moto): Not mine tells triage who disowned what, an assignment routes every
open finding of the identity and says who assigned it; the "More…" select carries the same
choices as the buttons."""

from __future__ import annotations

import json

from sqlmodel import Session, select

from bot.blocks import dm
from bot.db.models import Finding
from tests.test_campaigns import BOB, CAROL, DAVE, button_value, click, dm_message, served, world  # noqa: F401


def bob_findings(w) -> list[Finding]:
    with Session(w.engine) as session:
        return list(session.exec(select(Finding).where(Finding.resource.endswith(":user/bob"))))


def replies(w) -> list[str]:
    return [c.params.get("text", "") for c in w.fake.calls("response_url")]


def triage_with(w, needle: str):
    for message in reversed(w.fake.messages(w.security)):
        if needle in json.dumps(message.get("blocks") or []):
            return message
    return None


def test_not_mine_goes_to_triage_naming_who_and_an_assignment_routes_the_whole_identity(world, served):  # noqa: F811
    world.steward().campaigns.run_cycle()
    message = dm_message(world, BOB)
    mine = bob_findings(world)
    assert len(mine) >= 2 and all(f.notified_to == BOB for f in mine)
    # One card for bob's user: its findings together, one Not mine for all of them.
    assert len([b for b in message["blocks"] if b["type"] == "actions" and b["block_id"].startswith("f:")]) == 1
    not_mine = button_value(message, "finding:not_mine")
    click(served, world, BOB, message, "finding:not_mine", not_mine)

    triage = world.fake.wait_for(lambda: triage_with(world, f"Not mine (from <@{BOB}>)"), timeout=20)
    text = json.dumps(triage["blocks"])
    assert all(f.title in text for f in mine), "every finding of bob's user went to triage"
    assert f"IAM Steward triage: {len(mine)} findings" in text
    world.fake.wait_for(lambda: any("to the security team" in r and "they see it came from you" in r
                                    for r in replies(world)), timeout=20)
    assert all(f.notified_to is None and f.notify_channel == world.security for f in bob_findings(world))
    # Bob's DM no longer offers anything about it.
    bob_now = world.fake.message(world.fake.im_channel(BOB), message["ts"])
    assert "finding:not_mine" not in json.dumps(bob_now["blocks"])

    # Carol assigns the identity to Dave from the triage card: all its findings go to Dave.
    [assign_row] = [b for b in triage["blocks"] if b["type"] == "actions"
                    and any(e.get("action_id") == "finding:assign" for e in b["elements"])]
    click(served, world, CAROL, triage, "finding:assign", None, channel=world.security,
          block_id=assign_row["block_id"], action={"type": "users_select", "action_id": "finding:assign",
                                                   "block_id": assign_row["block_id"], "selected_user": DAVE})

    def dave_card():
        for m in world.fake.dm(DAVE):
            if "user/bob" in json.dumps(m.get("blocks") or []):
                return m
        return None

    card = world.fake.wait_for(dave_card, timeout=20)
    text = json.dumps(card["blocks"])
    assert f"Assigned to you by <@{CAROL}>" in text
    assert all(f.title in text for f in mine) and "finding:not_mine" in text  # Not mine to send it back
    world.fake.wait_for(lambda: all(f.notified_to == DAVE for f in bob_findings(world)), timeout=20)
    world.fake.wait_for(lambda: any(f"({len(mine)} findings) to <@{DAVE}>" in r for r in replies(world)), timeout=20)


def test_the_more_select_snoozes_the_finding_it_names(world, served):  # noqa: F811
    world.steward().campaigns.run_cycle()
    message = dm_message(world, BOB)
    options = [o for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
               if e.get("action_id") == dm.MORE_ACTION for o in e["options"]]
    [snooze] = [o for o in options if o["text"]["text"].startswith("Snooze 30 days")][:1]
    token = dm.parse_more_value(snooze["value"])[3]
    click(served, world, BOB, message, dm.MORE_ACTION, None,
          action={"type": "static_select", "action_id": dm.MORE_ACTION, "selected_option": snooze})
    world.fake.wait_for(lambda: any(r.startswith("Snoozed") for r in replies(world)), timeout=20)
    with Session(world.engine) as session:
        snoozed = session.exec(select(Finding).where(Finding.token == token)).one()
    assert snoozed.decision == "snooze" and snoozed.state == "snoozed"
    # A forged option value changes nothing and says so.
    click(served, world, BOB, message, dm.MORE_ACTION, None,
          action={"type": "static_select", "action_id": dm.MORE_ACTION,
                  "selected_option": {"text": {"type": "plain_text", "text": "x"}, "value": "drop-tables|x"}})
    world.fake.wait_for(lambda: any("not one Steward offered" in r for r in replies(world)), timeout=20)
