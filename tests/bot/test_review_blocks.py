"""Access-review Block Kit (pure): the button table walked, and Slack's limits kept for the
largest pages, modals and messages a campaign can produce (checked with the local Slack's
own rules)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from bot.core.decisions import (
    REVIEW_BUTTONS,
    REVIEW_ITEM_BUTTONS,
    REVIEW_REMOVAL_ACTIONS,
    ReviewChoice,
    parse_review_action_id,
)
from bot.slack.blocks import reviews as rb
from bot.slack.listeners.reviews import REVIEW_ACTION
from checks.catalog import ACCESS_REVIEW_REVOCATION
from checks.remediate import registry
from sandbox.block_limits import problems, view_problems

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def campaign(**kw):
    return SimpleNamespace(id=7, name="2026 Q4 users and roles " + "x" * 200, due_at=NOW + timedelta(days=14),
                           started_at=NOW, started_by="U0SAMOK001", status="open", closed_at=None,
                           scans={"123456789012": {"scan_id": 3}}, **kw)


def item(n: int, decision=None):
    long = "p" * 120
    ents = [{"id": f"group:g{i}", "kind": "group", "name": f"g{i}-{long}", "label": f"member of group g{i}-{long}",
             "removable": True, "details": {}} for i in range(10)]
    ents += [{"id": f"inline:{i}", "kind": "inline", "name": long, "label": f"inline policy {long}{i}",
              "removable": True, "details": {}} for i in range(120)]
    return SimpleNamespace(
        token=f"tok{n}", kind="user", name=f"user-{n}-" + "n" * 100, arn=f"arn:aws:iam::123456789012:user/u{n}",
        account_id="123456789012", owner="someone@example.com", reviewer="U0PRIYA001", routed_by="owner",
        delegated_from="U0TOMBE001", delegation_reason="r" * 900, decision=decision, decided_by="U0PRIYA001",
        decided_at=NOW, decision_reason="=1+1 " * 200 if decision else None, details_seen_at=NOW,
        snapshot={"entitlements": ents, "console": True, "mfa": False, "last_used": "2026-11-01",
                  "effective": {"summary": "Can escalate privileges: " + "iam:* " * 200, "findings": ["admin-policy"]}})


def test_every_review_button_is_rendered_handled_and_round_trips():
    view = rb.MessagePage(token="m", reviewer="U0PRIYA001", items=[item(1)], page=1, pages=3, total=25, undecided=20,
                          details_seen=1, outcomes={})
    rendered = json.dumps([b.to_dict() for b in rb.review_message(campaign(), view)])
    for choice, button in REVIEW_BUTTONS.items():
        assert parse_review_action_id(button.action_id) is choice
        assert REVIEW_ACTION.match(button.action_id), button.action_id
        assert f'"action_id": "{button.action_id}' in rendered, button.action_id  # page: `:previous`, `:next`
    # Every id rendered is routed; Previous and Next, in one block, have ids of their own.
    ids = re.findall(r'"action_id": "(review:[^"]+)"', rendered)
    assert all(REVIEW_ACTION.match(i) for i in ids), ids
    assert {"review:page:previous", "review:page:next"} <= set(ids)
    assert [b.choice for b in REVIEW_ITEM_BUTTONS] == [ReviewChoice.STILL_NEEDED, ReviewChoice.REMOVE,
                                                        ReviewChoice.NOT_MINE, ReviewChoice.DELEGATE]
    with pytest.raises(ValueError):
        parse_review_action_id("finding:ack")
    # Every removal goes through an action the revocation check offers (the remediation engine).
    for action in REVIEW_REMOVAL_ACTIONS.values():
        assert action in ACCESS_REVIEW_REVOCATION.remediations and action in registry.BY_ID


def test_no_bulk_button_before_the_details_are_opened():
    view = rb.MessagePage(token="m", reviewer="U0PRIYA001", items=[item(1)], page=0, pages=1, total=1, undecided=1,
                          details_seen=0, outcomes={})
    rendered = json.dumps([b.to_dict() for b in rb.review_message(campaign(), view)])
    assert "review:all_still_needed" not in rendered and "review:details" in rendered


@pytest.mark.parametrize("decided", [None, "still_needed"])
def test_a_full_page_and_the_modals_stay_within_slack_limits(decided):
    page = [item(n, decided) for n in range(rb.ITEMS_PER_PAGE)]
    view = rb.MessagePage(token="m", reviewer="security", items=page, page=1, pages=3, total=30, undecided=10,
                          details_seen=10, outcomes={i.token: "detach-managed-policy #1: planned " * 50 for i in page})
    blocks = [b.to_dict() for b in rb.review_message(campaign(), view)]
    assert len(blocks) <= 50 and problems(blocks) == []
    for modal in (rb.details_modal(campaign(), page), rb.remove_modal(page[0], private_metadata="t"),
                  rb.delegate_modal(page[0], private_metadata="t")):
        assert view_problems(modal.to_dict()) == []
    options = rb.remove_modal(page[0], private_metadata="t").to_dict()["blocks"][1]["element"]["options"]
    assert len(options) == rb.OPTIONS_MAX  # 130 removable entitlements: the first 100 are offered
    progress = rb.Progress(population=5000, decided=10, still_needed=8, removed=2, overdue=0, reviewers=1000,
                           late_reviewers=[(f"U{n:09d}", 5) for n in range(500)], unsent=3)
    assert problems([b.to_dict() for b in rb.progress_message(campaign(), progress, now=NOW)]) == []


def test_the_local_slack_serves_profile_fields_only_with_users_profile_read():
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    from sandbox.slack_fake import SlackFake

    with SlackFake() as fake:
        fake.add_user("U0ANNA0001", name="anna", email="anna@example.com")
        field = fake.set_profile_field("U0ANNA0001", "Manager", "U0BOSS0001")
        client = WebClient(token=fake.token, base_url=fake.base_url)
        assert [f["label"] for f in client.team_profile_get()["profile"]["fields"]] == ["Manager"]
        fields = client.users_profile_get(user="U0ANNA0001")["profile"]["fields"]
        assert fields[field]["value"] == "U0BOSS0001"
        fake.set_scopes(fake.scopes - {"users.profile:read"})
        with pytest.raises(SlackApiError) as refused:
            client.users_profile_get(user="U0ANNA0001")
        assert refused.value.response["error"] == "missing_scope"
        assert refused.value.response["needed"] == "users.profile:read"
