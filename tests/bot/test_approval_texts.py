"""Every registered remediation's approval and undo-approval request reads as a sentence:
the decision table's human name after "to" (never a title-case verb or an internal id), the
undo's words as what it gives back (never "it would be <past participle>"), and the
account by its name beside the id."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from slack_sdk.models.blocks import ContextBlock

from bot.core.decisions import ACTION_NAMES, action_name, undo_words
from bot.slack.blocks import approvals
from checks.remediate import registry

ACCOUNT = "123456789012"


def rem(action_id: str) -> SimpleNamespace:
    return SimpleNamespace(
        action=action_id, requested_by="U0MARCO001", approved_by="U0HANNAH01", undo_requested_by="U0MARCO001",
        plan_summary="Do the thing to user/feature-flags.", irreversible_warning=None, dry_run=False, token="t0k",
        finished_at=datetime(2026, 11, 28, 9, 30, tzinfo=UTC), status="planned")


def finding() -> SimpleNamespace:
    return SimpleNamespace(check_id="user-direct-policy", details={}, severity="high", title="Direct policy",
                           resource=f"arn:aws:iam::{ACCOUNT}:user/feature-flags", account_id=ACCOUNT)


def texts(blocks) -> str:
    out = []
    for block in blocks:
        data = block.to_dict()
        out.append(json.dumps(data))
    return "\n".join(out)


def request_text(blocks) -> str:
    return blocks[1].to_dict()["text"]["text"]  # the section under the header: who asks what


@pytest.mark.parametrize("action_id", [a.id for a in registry.ACTIONS])
def test_every_action_s_approval_texts_read_as_sentences(action_id):
    name = action_name(action_id)
    assert action_id in ACTION_NAMES, f"{action_id} has no human name"
    for build in (approvals.approval_request, approvals.undo_approval_request):
        blocks = build(rem(action_id), finding(), accounts={ACCOUNT: "acme-prod"})
        text = request_text(blocks)
        assert f"*{name}*" in text, text
        assert not re.search(r"\bto \*?(undo \*?)?[A-Z]", text), f"title-case verb after 'to': {text}"
        assert not re.search(r"\bwould be\b|\bIt would\b", text), text
        assert registry.action(action_id).title not in text, f"the registry's title, not a sentence: {text}"
        everything = texts(blocks)
        assert f"acme-prod ({ACCOUNT})" in everything and f"in {ACCOUNT}" not in everything
        if build is approvals.undo_approval_request:
            words = undo_words(action_id)
            assert f"gives access back (*{words}*)" in text, text
            confirm = blocks[-1].to_dict()["elements"][0]["confirm"]["text"]["text"]
            assert not re.search(r"\bto [A-Z]", confirm) and "will be undone" not in confirm, confirm
    # Once decided, the request keeps its sentence and the account's name.
    decided = approvals.approval_request(rem(action_id), finding(), decided="done", accounts={ACCOUNT: "acme-prod"})
    assert isinstance(decided[-1], ContextBlock) and "acme-prod" in texts(decided)
