"""Block Kit builders: valid Slack payloads within Slack's limits, saying the right things."""

from __future__ import annotations

import json

from bot.db.models import Finding, IamIdentity
from bot.slack.blocks.common import chunk_lines, console_url
from bot.slack.blocks.findings import findings_blocks
from bot.slack.blocks.keys import keys_blocks
from bot.slack.blocks.whoami import whoami_blocks
from tests.factories import NOW


def identity(name="alice", account="111122223333", **facts):
    base = {"console": True, "mfa": False, "password_last_used": None, "keys": [], "groups": ["devs"],
            "attached_policies": [], "inline_policies": []}
    return IamIdentity(account_id=account, name=name, arn=f"arn:aws:iam::{account}:user/{name}",
                       owner=f"{name}@example.com", facts={**base, **facts}, last_seen=NOW)


def finding(i=0, severity="high", check="stale-user", **details):
    return Finding(fingerprint=f"fp{i}", account_id="111122223333", check_id=check,
                   resource=f"arn:aws:iam::111122223333:user/u{i}", severity=severity,
                   title="IAM user not used", state="open", details=details, first_seen=NOW,
                   last_seen=NOW, state_changed_at=NOW)


def payload(blocks):
    return [b.to_dict() for b in blocks]  # to_dict validates lengths and required fields


def test_whoami_shows_keys_groups_and_console_links():
    key = {"slot": 1, "access_key_id": "AKIAEXAMPLE", "active": True, "created": "2026-01-02T00:00:00+00:00",
           "last_used": "2026-11-20T10:00:00+00:00", "last_used_service": "s3", "last_used_region": "eu-west-1"}
    blocks = payload(whoami_blocks([identity(keys=[key], attached_policies=["Billing"])],
                                   [finding(last_activity=None)]))
    text = str(blocks)
    assert "AKIAEXAMPLE" in text and "s3, eu-west-1" in text and "2026-11-20" in text
    assert "*no MFA*" in text and "devs" in text and "Billing" in text
    assert "https://console.aws.amazon.com/iam/home#/users/details/alice" in text
    assert "IAM user not used" in text


def test_whoami_without_identities_explains_ownership():
    text = str(payload(whoami_blocks([], [], owner_tags=["owner", "email"])))
    assert "`owner`, `email`" in text and "email address" in text
    assert "Nothing open" in text


def test_many_identities_and_findings_stay_within_limits():
    blocks = payload(whoami_blocks([identity(f"user{i}") for i in range(40)],
                                   [finding(i, check="admin-policy", policy_name="p" * 60) for i in range(300)]))
    assert len(blocks) <= 50
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in blocks)
    assert "and 32 more identities" in str(blocks)


def test_findings_are_ordered_by_severity_and_truncated():
    found = [finding(1, "low"), finding(2, "critical"), finding(3, "medium")] + [finding(i, "low") for i in range(10, 50)]
    blocks = payload(findings_blocks(found, heading="Open", limit=5))
    text = blocks[0]["text"]["text"]
    assert text.index("🔴") < text.index("🟡") < text.index("🔵")
    assert "and 38 more" in str(blocks)


def test_console_urls_for_each_kind():
    assert console_url("arn:aws:iam::1:role/path/app").endswith("#/roles/details/app")
    assert console_url("arn:aws:iam::1:group/devs").endswith("#/groups/details/devs")
    assert console_url("arn:aws:iam::1:policy/x").endswith("policies/details/arn%3Aaws%3Aiam%3A%3A1%3Apolicy%2Fx")
    assert console_url("arn:aws:iam::1:root").endswith("#/account_settings")


def test_chunk_lines_respects_limit():
    chunks = chunk_lines(["a" * 1000] * 7, limit=3000)
    assert all(len(c) <= 3000 for c in chunks) and sum(c.count("a") for c in chunks) == 7000


def test_escalation_dm_shows_the_path_in_one_line():
    from bot.slack.blocks.dm import finding_section

    sentence = "user/ci → role/deploy → role/admin: user/ci can assume its way to the last role"
    block = finding_section(finding(check="privilege-escalation-policy", explanation=sentence))
    assert sentence in block.to_dict()["text"]["text"]
    plain = finding_section(finding()).to_dict()["text"]["text"]
    assert "→" not in plain


def test_the_approval_message_tells_the_whole_story():
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from bot.slack.blocks.approvals import approval_status, validate_reason

    at = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    rem = SimpleNamespace(action="detach-managed-policy", status="succeeded", approved_by="U0CAROL001",
                          approved_at=at, finished_at=at, dry_run=False, error=None, requested_by="U0AISHA01",
                          undo_requested_by=None, undo_decided_by=None, undone_at=None)
    assert approval_status(rem).startswith(":white_check_mark: Approved by <@U0CAROL001>")
    rem.status, rem.undo_requested_by = "undo_requested", "U0AISHA01"
    assert "asked to undo it (re-attached); waiting" in approval_status(rem)
    rem.status, rem.undo_decided_by, rem.error = "succeeded", "U0SAM00001", "undo rejected: <!here> no"
    assert "rejected by <@U0SAM00001>: “&lt;!here&gt; no”" in approval_status(rem)
    rem.status, rem.undone_at, rem.error = "undone", at, None
    assert "Re-attached by <@U0AISHA01> after approval by <@U0SAM00001>" in approval_status(rem)
    rem.undo_requested_by, rem.undo_decided_by = "cli:root", None
    assert "Re-attached by cli:root (no approval needed)" in approval_status(rem)
    rem.status, rem.approved_by, rem.error = "rejected", "U0SAM00001", "<b>not now</b>"
    assert approval_status(rem).endswith(": “&lt;b&gt;not now&lt;/b&gt;”.")
    assert validate_reason("  ok  ") == ("ok", "Say in a few words why.")
    assert validate_reason("x" * 501)[1] == "At most 500 characters."
    assert validate_reason(" fine reason ") == ("fine reason", None)


def _key(slot=1, key_id="AKIAEXAMPLEKEY0WXYZ", findings=(), **overrides):
    from bot.services.steward import KeyView

    values = dict(account_id="111122223333", user="alice", arn="arn:aws:iam::111122223333:user/alice",
                  slot=slot, key_id=key_id, active=True, age_days=412, last_used="2026-01-02T10:00:00+00:00",
                  last_used_service="s3", last_used_region="eu-west-1", findings=list(findings))
    return KeyView(**{**values, **overrides})


def test_keys_show_the_id_suffix_status_age_use_and_findings():
    old = finding(1, check="old-access-key")
    old.title = "Access key not rotated"
    keys = [_key(findings=[old]), _key(slot=2, key_id=None, active=False, age_days=None, last_used=None)]
    blocks = payload(keys_blocks(keys))
    text = str(blocks)
    assert "`…WXYZ`" in text and "AKIAEXAMPLEKEY0WXYZ" not in text  # the suffix, never the whole id
    assert "active, 412 days old, last used 2026-01-02 (s3, eu-west-1)" in text
    assert "open finding: Access key not rotated" in text
    assert "key 2 of *alice* in `111122223333`: inactive, age unknown, last used never" in text
    assert "1 of 2 keys have open findings" in text


def test_no_keys_says_so():
    text = str(payload(keys_blocks([])))
    assert "no access keys" in text and "/iam whoami" in text


def test_many_keys_stay_within_slack_limits():
    blocks = payload(keys_blocks([_key(slot=i % 2 + 1, user=f"user-{i:03}") for i in range(60)]))
    assert len(blocks) <= 50 and "…and 20 more keys." in str(blocks)


def test_audit_and_home_read_old_decision_names_as_today():
    from types import SimpleNamespace

    from bot.slack.blocks.audit import event_line
    from bot.slack.blocks.home import words

    old = SimpleNamespace(sequence=7, at=NOW, actor="U0DAVE0001", action="decision.remediate",
                          resource="arn:aws:iam::111122223333:user/dave",
                          payload={"decision": "rotate", "until": "2026-01-20"})
    line = event_line(old)
    assert "<@U0DAVE0001> promised to rotate the key of user/dave (until 2026-01-20)" in line
    assert words(old) == "promised to rotate"
    ack = SimpleNamespace(**{**vars(old), "action": "decision.keep", "payload": {"decision": "ack"}})
    assert words(ack) == "acknowledged" and " acknowledged user/dave `#7`" in event_line(ack)
    request = SimpleNamespace(**{**vars(old), "payload": {"action": "quarantine-user"}})
    assert words(request) == "asked for a cleanup" and "asked to fix user/dave (quarantine the user)" in event_line(request)


def test_the_audit_timeline_reads_as_sentences_not_json():
    from datetime import timedelta

    from bot.db.models import AuditEvent
    from bot.slack.blocks.audit import audit_blocks

    def event(seq, kind, at, actor="U0BOB00001", **payload):
        return AuditEvent(sequence=seq, at=at, actor=actor, action=kind, payload=payload, prev_hash="", hash="",
                          resource="arn:aws:iam::111122223333:user/bob", account="111122223333")

    events = [event(3, "remediation.undone", NOW, action="deactivate-access-key", error=None),
              event(2, "decision.remediate", NOW - timedelta(hours=1), action="deactivate-access-key"),
              event(1, "finding.notified", NOW - timedelta(days=1), actor="system", to="U0BOB00001")]
    text = "\n".join(b["text"]["text"] for b in payload(audit_blocks("bob", events)) if b["type"] == "section")
    assert "null" not in text and "{" not in text and '"' not in text
    assert "<@U0BOB00001> undid a change to user/bob (deactivate the access key) `#3`" in text
    assert "Steward sent a message about user/bob (to <@U0BOB00001>)" in text
    assert "3 events, newest first" in text
    assert text.count(f"*{NOW:%A}") == 1  # grouped by day


def test_whoami_names_the_account_of_each_identity():
    from types import SimpleNamespace

    from bot.slack.blocks.whoami import whoami_blocks

    me = SimpleNamespace(name="bob", arn="arn:aws:iam::111122223333:user/bob", account_id="111122223333", facts={})
    text = json.dumps(payload(whoami_blocks([me], [], accounts={"111122223333": "payments-prod"})))
    assert "payments-prod (111122223333)" in text
    assert "payments-prod" not in json.dumps(payload(whoami_blocks([me], [])))  # no name known: the bare id
