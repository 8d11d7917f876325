"""DM and triage cards, one per identity (Block Kit structure, snapshot-style on text and
element kinds, not full JSON): sorted worst first, grouped, labelled in words."""

from __future__ import annotations

import json
import re
import secrets
from datetime import timedelta

import pytest

from bot.core.decisions import Choice
from bot.core.report import plural
from bot.db.models import Finding
from bot.slack.blocks import dm
from checks.catalog import BY_ID, CATALOG
from tests.factories import NOW

ACCOUNT = "111122223333"


def finding(check: str, user: str = "alice", *, severity: str | None = None, age: int = 0, **details) -> Finding:
    return Finding(fingerprint=secrets.token_hex(8), account_id=ACCOUNT, check_id=check,
                   resource=f"arn:aws:iam::{ACCOUNT}:user/{user}", severity=severity or BY_ID[check].severity.value,
                   title=BY_ID[check].title, state="notified", details=details, first_seen=NOW - timedelta(days=age),
                   last_seen=NOW, state_changed_at=NOW, token=secrets.token_urlsafe(12))


def payload(blocks) -> list[dict]:
    return [b.to_dict() for b in blocks]  # validates lengths and required fields


def sections(blocks: list[dict]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


def actions(blocks: list[dict]) -> list[dict]:
    return [b for b in blocks if b["type"] == "actions"]


def test_one_card_per_identity_worst_first_then_oldest():
    found = [
        finding("unused-role", "zed", age=400),  # low/medium, oldest
        finding("unused-access-key", "bob", access_key_id="AKIABOB", age=10),
        finding("old-access-key", "bob", access_key_id="AKIABOB", age=5, age_days=200),
        finding("compromised-key-quarantine", "carl", age=1),  # critical: first although newest
        finding("stale-user", "bob", age=30),
    ]
    blocks = payload(dm.owner_dm(found, {}, accounts={ACCOUNT: "prod"}))
    cards = sections(blocks)
    assert [re.search(r"\|(user/[^>]+)>", c)[1] for c in cards] == ["user/carl", "user/bob", "user/zed"]
    bob = cards[1]
    assert "3 findings" in bob and bob.count("• *") == 3  # the key's findings and the user's, together
    listed = re.findall(r"• \*[^*]+\* \((\w+)\)", bob)  # each finding's severity, in order
    ranks = [["Critical", "High", "Medium", "Low"].index(word) for word in listed]
    assert len(ranks) == 3 and ranks == sorted(ranks)
    assert "prod (111122223333)" in bob and "111122223333.signin.aws.amazon.com/console" in bob
    # Severity in words beside the colour, on the card and on each finding.
    assert cards[0].startswith("🔴 Critical ·")
    assert "(High)" in bob or "(Medium)" in bob
    # One actions row per card, each with Not mine.
    rows = actions(blocks)
    assert len(rows) == 3
    assert all(any(e.get("action_id") == "finding:not_mine" for e in row["elements"]) for row in rows)


def test_the_best_action_is_a_button_and_the_rest_are_behind_more():
    found = [finding("unused-access-key", "bob", access_key_id="AKIABOB"),
             finding("stale-user", "bob"),
             finding("user-direct-policy", "bob", policy_name="s3-everything")]
    [row] = actions(payload(dm.owner_dm(found, {})))
    kinds = [e["type"] for e in row["elements"]]
    assert kinds == ["button", "static_select", "button"]  # best, More…, Not mine
    best = row["elements"][0]
    assert best["action_id"] in ("finding:remediate:quarantine-user", "finding:remediate:deactivate-access-key")
    more = row["elements"][1]
    assert more["action_id"] == dm.MORE_ACTION and more["placeholder"]["text"] == "More…"
    labels = [o["text"]["text"] for o in more["options"]]
    assert "Request removal of s3-everything" in labels
    assert any(label.startswith("Snooze 7 days") for label in labels)
    values = [dm.parse_more_value(o["value"]) for o in more["options"]]
    assert {v[0] for v in values} >= {Choice.REQUEST_REMOVAL, Choice.EXCEPTION, Choice.SNOOZE}
    assert all(v[3] in {f.token for f in found} for v in values)


def test_a_removal_requested_once_is_not_offered_again_on_the_same_policy():
    admin = finding("admin-policy", "bob", policy_name="everything")
    wildcard = finding("service-wildcard-policy", "bob", policy_name="everything")
    pending = {admin.token: dm.Outcome(":hourglass: <@U1> asked to *Delete inline policy*", pending=True,
                                       covers=("delete-inline-policy", "everything"))}
    text = json.dumps(payload(dm.owner_dm([admin, wildcard], pending)))
    assert "request_removal" not in text
    assert "taken care of by the removal above" in text
    # Without the pending request it is offered once for the two findings, not twice.
    fresh = json.dumps(payload(dm.owner_dm([admin, wildcard], {})))
    assert fresh.count("request_removal") == 1


def test_decided_findings_show_what_happened_and_undo():
    key = finding("unused-access-key", "bob", access_key_id="AKIABOB")
    done = {key.token: dm.Outcome(":white_check_mark: *Deactivate access key* done by <@U1>.", undo_token="rtok")}
    blocks = payload(dm.owner_dm([key], done))
    assert any(b["type"] == "context" and "Deactivate access key* done" in b["elements"][0]["text"] for b in blocks)
    undo = [e for b in actions(blocks) for e in b["elements"] if e.get("action_id") == "remediation:undo"]
    assert [u["value"] for u in undo] == ["rtok"]


def test_triage_cards_offer_assign_not_not_mine_and_name_who_disowned():
    found = [finding("stale-user", "legacy"), finding("unused-access-key", "legacy", access_key_id="AKIAX")]
    resource = found[0].resource
    blocks = payload(dm.triage_message(found, {}, reason="r", leads={resource: "Not mine (from <@U0TOM>)"}))
    assert blocks[0]["text"]["text"] == "IAM Steward triage: 2 findings"
    assert "Not mine (from <@U0TOM>)" in sections(blocks)[0]
    [row] = actions(blocks)
    ids = [e.get("action_id") for e in row["elements"]]
    assert ids[0] == "finding:assign" and "finding:not_mine" not in ids


def test_assigned_cards_say_who_assigned_them():
    found = [finding("stale-user", "legacy")]
    text = sections(payload(dm.owner_dm(found, {}, leads={found[0].resource: "Assigned to you by <@U0SAM>"})))[0]
    assert "Assigned to you by <@U0SAM>" in text


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.id)
def test_every_family_renders_a_valid_card_with_a_next_step(spec):
    details = {"policy_name": "p", "access_key_id": "AKIAX", "age_days": 200}
    blocks = payload(dm.owner_dm([finding(spec.id, **details)], {}))
    assert len(blocks) <= 50
    [row] = actions(blocks)
    assert row["elements"][0]["type"] in ("button", "static_select")


def test_many_identities_are_packed_in_messages_under_slack_s_block_limit():
    found = [finding("stale-user", f"u{i}") for i in range(40)] + [
        finding("unused-access-key", f"u{i}", access_key_id=f"AKIA{i}") for i in range(40)]
    messages = dm.pack_cards(dm.identity_cards(found))
    assert sum(len(m) for m in messages) == 40  # whole cards: each identity in one message
    for cards in messages:
        flat = [f for card in cards for f in card]
        assert len(payload(dm.owner_dm(flat, {}))) <= 50


def test_fallback_text_and_plurals():
    one = [finding("stale-user")]
    assert dm.dm_fallback_text(one) == "IAM Steward: 1 finding about 1 IAM identity you own need a decision."
    assert plural(0, "DM") == "0 DMs" and plural(1, "account") == "1 account" and plural(2, "policy") == "2 policies"
    assert plural(2, "finding") == "2 findings" and plural(1, "finding") == "1 finding"
    assert "1 finding above has been" in dm.reminder_text(1, 3) and "2 findings above have" in dm.reminder_text(2, 3)


def test_the_keep_modal_names_the_identity_and_the_finding():
    f = finding("unused-role", "deploy")
    view = dm.keep_modal(f.token, max_days=90, default_end="2026-12-30", private_metadata=f.token, finding=f,
                         accounts={ACCOUNT: "prod"}).to_dict()
    first = view["blocks"][0]["text"]["text"]
    assert "user/deploy" in first and BY_ID["unused-role"].title in first and "prod (111122223333)" in first


def test_a_rejected_request_is_shown_on_the_card_with_its_buttons_back():
    from bot.db.models import Remediation
    from bot.services.campaign_messages import outcome_of

    f = finding("user-direct-policy", "bob", policy_name="s3-everything")
    rem = Remediation(finding_id=1, action="delete-inline-policy", status="rejected", requested_by="U0BOB",
                      approved_by="U0CAROL", error="Needed for the export job", requested_at=NOW, finished_at=NOW,
                      target={"policy_name": "s3-everything"}, plan_summary="x")
    outcome = outcome_of(f, rem)
    assert outcome.reopened and "rejected by <@U0CAROL>" in outcome.text and "Needed for the export job" in outcome.text
    text = json.dumps(payload(dm.owner_dm([f], {f.token: outcome})))
    assert "rejected by" in text and "request_removal" in text  # said, and the buttons are back


def test_every_remediation_has_a_human_name():
    from bot.core.decisions import ACTION_NAMES, action_name
    from checks.remediate import registry

    assert set(registry.BY_ID) <= set(ACTION_NAMES)
    assert all("-" not in action_name(a) for a in registry.BY_ID)


def test_rotate_it_for_me_is_offered_only_where_the_rotation_role_is_on():
    """Without the opt-in rotation role the click could only be refused: the card leads
    with "I'll rotate it" instead, and nowhere offers Steward's rotation."""
    from bot.core.decisions import unavailable_choices

    old_key = [finding("old-access-key", "bob", access_key_id="AKIABOB", age_days=200)]

    def offered(unavailable):
        text = json.dumps(payload(dm.owner_dm(old_key, {}, unavailable=unavailable)))
        first = actions(payload(dm.owner_dm(old_key, {}, unavailable=unavailable)))[0]["elements"][0]
        return first["action_id"], "rotate_for_me" in text

    assert offered(unavailable_choices(rotation_role=True)) == ("finding:rotate_for_me", True)
    assert offered(unavailable_choices(rotation_role=False)) == ("finding:rotate", False)
    triage = json.dumps(payload(dm.triage_message(old_key, {}, reason="r",
                                                  unavailable=unavailable_choices(rotation_role=False))))
    assert "rotate_for_me" not in triage
