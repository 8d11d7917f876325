"""The owner's and the security team's day, end to end over HTTP (signed like Slack, against
the local Slack and moto): Not mine tells triage who disowned what, an assignment routes every
open finding of the identity and says who assigned it; the "More…" select carries the same
choices as the buttons."""

from __future__ import annotations

import json

from sqlmodel import Session, select

from bot.db.models import Finding
from bot.slack.blocks import dm
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


def test_an_assignment_closes_the_triage_card_for_everyone_in_the_channel(world, served):  # noqa: F811
    """The triage card an approver assigned from says, in the channel, who got it and who
    assigned it, and offers nothing more about that identity (no second live card later)."""
    world.steward().campaigns.run_cycle()
    message = dm_message(world, BOB)
    click(served, world, BOB, message, "finding:not_mine", button_value(message, "finding:not_mine"))
    triage = world.fake.wait_for(lambda: triage_with(world, f"Not mine (from <@{BOB}>)"), timeout=20)
    mine = bob_findings(world)
    [row] = [b for b in triage["blocks"] if b["type"] == "actions"
             and any(e.get("action_id") == "finding:assign" for e in b["elements"])]
    click(served, world, CAROL, triage, "finding:assign", None, channel=world.security, block_id=row["block_id"],
          action={"type": "users_select", "action_id": "finding:assign", "block_id": row["block_id"],
                  "selected_user": DAVE})
    world.fake.wait_for(lambda: all(f.notified_to == DAVE for f in bob_findings(world)), timeout=20)
    card = world.fake.wait_for(lambda: "Assigned to" in json.dumps(
        world.fake.message(world.security, triage["ts"])["blocks"]) and world.fake.message(world.security,
                                                                                           triage["ts"]), timeout=20)
    text = json.dumps(card["blocks"])
    assert f"Assigned to <@{DAVE}> by <@{CAROL}>" in text and "user/bob" in text
    assert "Not mine (from" not in text and "pick the right owner" not in text
    live = json.dumps([b for b in card["blocks"] if b["type"] == "actions"])
    assert not any(f.token in live for f in mine), "no live button is left for bob's user"
    assert "finding:assign" not in live


def name_accounts(w, name: str) -> str:
    """Give every scanned account a name (an alias); returns the account id."""
    from bot.db.models import Account

    with Session(w.engine) as session:
        accounts = list(session.exec(select(Account)))
        for account in accounts:
            account.label = name
            session.add(account)
        session.commit()
        return accounts[0].id


def test_the_home_tab_names_the_account_as_dms_do(world, served):  # noqa: F811
    """Over HTTP (app_home_opened): the Home tab lists bob's findings "in acme-prod (id)", the
    same label as his DM, not the bare account id."""
    from sandbox import signing

    account_id = name_accounts(world, "acme-prod")
    world.steward().campaigns.run_cycle()
    assert f"acme-prod ({account_id})" in json.dumps(dm_message(world, BOB)["blocks"])
    response = served.post(signing.event_callback_body({"type": "app_home_opened", "user": BOB, "tab": "home"}))
    assert response.status == 200, response.text
    call = world.fake.wait_for(lambda: world.fake.last_call("views.publish"), timeout=20)
    view = call.params["view"]
    text = view if isinstance(view, str) else json.dumps(view)
    assert "user/bob" in text and f"acme-prod ({account_id})" in text
    assert f"in {account_id}" not in text


def test_the_digest_mentions_an_owner_who_is_a_workspace_member(world, served):  # noqa: F811
    """Over HTTP (`/iam digest`): bob's user is owned by bob@example.com, not DMed yet; the
    oldest open problems name him as @bob, like the DMed rows, not as the tag's email.
    legacy-ci (no owner) still says so."""
    reply = served.reply("digest", CAROL)
    text = json.dumps(reply["blocks"])
    oldest = text[text.index("Oldest open problems"):]
    assert "bob@example.com" not in oldest and f"owner <@{BOB}>" in oldest
    assert "legacy-ci" not in oldest or "_no owner_" in oldest


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


def test_undo_says_what_it_undid_and_the_card_shows_it_with_the_buttons_back(world, served):  # noqa: F811
    world.steward().campaigns.run_cycle()
    message = dm_message(world, BOB)
    token = world.finding("unused-access-key", "bob").token
    click(served, world, BOB, message, "finding:remediate:deactivate-access-key", token)
    world.fake.wait_for(lambda: world.key_status() == "Inactive", timeout=20)
    channel = world.fake.im_channel(BOB)
    card = world.fake.wait_for(lambda: "remediation:undo" in json.dumps(
        world.fake.message(channel, message["ts"])["blocks"]) and world.fake.message(channel, message["ts"]), timeout=20)
    click(served, world, BOB, card, "remediation:undo", button_value(card, "remediation:undo"))
    world.fake.wait_for(lambda: world.key_status() == "Active", timeout=20)
    key_id = world.iam.list_access_keys(UserName="bob")["AccessKeyMetadata"][0]["AccessKeyId"]
    said = world.fake.wait_for(lambda: [r for r in replies(world) if r.startswith(":leftwards_arrow_with_hook: Undone")],
                               timeout=20)
    assert "deactivate access key on" in said[0] and "user/bob" in said[0] and key_id in said[0]
    assert "(reactivated)" in said[0]
    shown = world.fake.wait_for(lambda: "was undone" in json.dumps(world.fake.message(channel, message["ts"])["blocks"])
                                and world.fake.message(channel, message["ts"]), timeout=20)
    text = json.dumps(shown["blocks"])
    assert f"undone (reactivated) by <@{BOB}>" in text
    assert "finding:remediate:deactivate-access-key" in text or "remediate:deactivate-access-key|" in text


def notify(world, **env):  # noqa: F811
    from typer.testing import CliRunner

    from bot.cli.main import app

    base = {"STEWARD_DATABASE_URL": world.db, "SLACK_BOT_TOKEN": world.fake.token,
            "SLACK_API_URL": world.fake.base_url, "STEWARD_SECURITY_CHANNEL": world.security}
    result = CliRunner().invoke(app, ["notify"], env={**base, **env})
    assert result.exit_code == 0, result.output
    return result.stdout


def posts(world) -> list[dict]:  # noqa: F811
    return [c.params for c in world.fake.calls("chat.postMessage")]


def test_observe_mode_sends_nothing_at_all(world):  # noqa: F811
    out = notify(world, STEWARD_MODE="observe")
    assert "STEWARD_MODE=observe: nothing sent" in out and "findings waiting to be routed" in out
    assert posts(world) == []
    with Session(world.engine) as session:
        assert all(f.notify_ts is None for f in session.exec(select(Finding)))


def test_triage_mode_sends_everything_to_the_security_channel_and_dms_nobody(world):  # noqa: F811
    out = notify(world, STEWARD_MODE="triage")
    assert "no owner was DMed" in out
    sent = posts(world)
    assert sent and {p["channel"] for p in sent} == {world.security}
    assert world.fake.dm(BOB) == [] and world.fake.dm(DAVE) == []


def test_pilot_owners_are_dmed_and_everyone_else_goes_to_triage(world):  # noqa: F811
    out = " ".join(notify(world, STEWARD_PILOT_OWNERS="bob@example.com").split())
    assert "1 DM to owners" in out and "outside the pilot went to security triage" in out
    assert [m for m in world.fake.dm(BOB) if m.get("blocks")]
    assert world.fake.dm(DAVE) == []
    assert {p["channel"] for p in posts(world)} <= {BOB, world.security}
    triage = json.dumps([m.get("blocks") for m in world.fake.messages(world.security)])
    assert "user/dave" in triage
    # By Slack user id too; a malformed entry is one clear error.
    from bot.config import Settings
    assert Settings(pilot_owners=f"{DAVE}, Priya@Example.com").pilot_owners == [DAVE, "priya@example.com"]
    import pydantic
    try:
        Settings(pilot_owners="not-a-person")
    except pydantic.ValidationError as exc:
        assert "not a Slack user id (U0…) or an email: not-a-person" in str(exc)
    else:
        raise AssertionError("a malformed pilot entry was accepted")


def test_keep_from_more_names_the_finding_and_is_confirmed_privately(world, served):  # noqa: F811
    from datetime import timedelta

    from bot.services.common import utcnow
    from sandbox import signing

    world.steward().campaigns.run_cycle()
    message = dm_message(world, DAVE)
    options = [o for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
               if e.get("action_id") == dm.MORE_ACTION for o in e["options"]]
    keep = next(o for o in options if o["value"].startswith("keep|"))
    token = dm.parse_more_value(keep["value"])[3]
    click(served, world, DAVE, message, dm.MORE_ACTION, None,
          action={"type": "static_select", "action_id": dm.MORE_ACTION, "selected_option": keep})
    [opened] = world.fake.wait_for(lambda: world.fake.calls("views.open"), timeout=20)
    modal = json.dumps(opened.params)
    with Session(world.engine) as session:
        finding = session.exec(select(Finding).where(Finding.token == token)).one()
    assert "user/dave" in modal and finding.title in modal  # what it is about

    day = (utcnow() + timedelta(days=30)).date().isoformat()
    values = {"reason": {"value": {"type": "plain_text_input", "value": "Needed by the nightly batch"}},
              "until": {"value": {"type": "datepicker", "selected_date": day}}}
    assert served.post(signing.view_submission_body(DAVE, "keep_modal", token, values)).status == 200
    ephemeral = world.fake.wait_for(lambda: [c.params for c in world.fake.calls("chat.postEphemeral")
                                             if "Kept until" in c.params.get("text", "")], timeout=20)
    assert ephemeral[0]["user"] == DAVE and ephemeral[0]["channel"] == world.fake.im_channel(DAVE)
    assert not [c for c in world.fake.calls("chat.postMessage") if "Kept until" in json.dumps(c.params)]
    card = world.fake.wait_for(lambda: "Kept until" in json.dumps(world.fake.message(
        world.fake.im_channel(DAVE), message["ts"])["blocks"]), timeout=20)
    assert card


def test_in_a_pilot_an_assignment_outside_it_dms_nobody_and_says_so(world):  # noqa: F811
    """Over HTTP against `steward serve` with STEWARD_PILOT_OWNERS: triage assigns dave's user
    to Dave, who is not in the pilot: no DM goes out, the reply and the card say why."""
    from tests.bot.test_serve_http import running_steward
    from tests.test_approvals_flow import aws_env

    notify(world, STEWARD_PILOT_OWNERS="bob@example.com")
    triage = triage_with(world, "user/dave")
    assert triage is not None and world.fake.dm(DAVE) == []
    blocks = triage["blocks"]
    card = next(i for i, b in enumerate(blocks) if b["type"] == "section" and "user/dave" in b["text"]["text"])
    row = next(b for b in blocks[card:] if b["type"] == "actions")  # that card's own actions
    assert any(e.get("action_id") == "finding:assign" for e in row["elements"])
    env = {**aws_env(world), "STEWARD_PILOT_OWNERS": "bob@example.com"}
    with running_steward(world.fake, world.db, world.workdir, env=env) as served_:
        click(served_, world, CAROL, triage, "finding:assign", None, channel=world.security, block_id=row["block_id"],
              action={"type": "users_select", "action_id": "finding:assign", "block_id": row["block_id"],
                      "selected_user": DAVE})
        said = world.fake.wait_for(lambda: [r for r in replies(world) if r.startswith("Assigned")], timeout=20)
    assert "They are not DMed (they are not among STEWARD_PILOT_OWNERS)" in said[0]
    assert world.fake.dm(DAVE) == []
    assert {c.params["channel"] for c in world.fake.calls("chat.postMessage")} <= {BOB, world.security}
    with Session(world.engine) as session:  # the override is stored: Dave owns it once the pilot grows
        dave = session.exec(select(Finding).where(Finding.resource.endswith(":user/dave"))).all()
    assert dave and all(f.notified_to is None for f in dave)
