"""The weekly digest: SQL aggregation (both dialects), the pure builders, posting once per
week through the Slack fake, and the chart."""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import func, select

from bot.config import Settings
from bot.db import audit
from bot.db.audit_anchors import anchors_in
from bot.db.engine import session_scope
from bot.db.models import Account, AuditEvent, DigestPost, Finding, Remediation, Scan
from bot.services.digest import (
    AccountPosture,
    Digest,
    DigestService,
    HistoryPoint,
    WeekCounts,
    iso_week,
)
from bot.slack.blocks.digest import digest_blocks, digest_fallback, digest_text
from bot.slack.charts import encode_png, history_chart_png, nice_step
from sandbox.slack_fake import SlackFake

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # a Monday, ISO week 2026-W49
A1, A2, A3 = "111111111111", "222222222222", "333333333333"
_ids = count(1)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def finding(account=A1, check="stale-user", severity="high", state="open", first_seen=30, **kw) -> Finding:
    n = next(_ids)
    first = days_ago(first_seen)
    return Finding(
        fingerprint=f"fp{n:06d}", account_id=account, check_id=check, resource=f"arn:aws:iam::{account}:user/u{n}",
        severity=severity, title=kw.pop("title", f"Finding {n}"), state=state, first_seen=first,
        last_seen=NOW, state_changed_at=first, **kw,
    )


def settings(**kw) -> Settings:
    return Settings(security_channel="C0SECURITY", slack_bot_token="xoxb-test", **kw)


@pytest.fixture
def seeded(engine):
    """A small world whose every digest number is known."""
    with session_scope(engine) as s:
        s.add_all([Account(id=A1, label="prod", first_seen=days_ago(100)),
                   Account(id=A2, label="dev", first_seen=days_ago(100)),
                   Account(id=A3, label="sandbox", first_seen=days_ago(100))])
        # Scans: counts this week (0-7 days) and last week (7-14); the latest of A3 failed.
        for i, (account, finished, status, counts) in enumerate([
            (A1, 1, "succeeded", {"new": 4, "resolved": 2, "reopened": 1}),
            (A2, 2, "succeeded", {"new": 1, "resolved": 1, "reopened": 0}),
            (A1, 9, "succeeded", {"new": 7, "resolved": 0, "reopened": 2}),
            (A2, 20, "succeeded", {"new": 50, "resolved": 50, "reopened": 50}),  # older than both weeks
            (A3, 10, "succeeded", {"new": 1}),
            (A3, 1, "failed", {"error": True}),
            (A2, 3, "failed", {"error": True}),  # not the latest scan of A2
        ]):
            s.add(Scan(run_id=f"r{i}", account_id=account, started_at=days_ago(finished), finished_at=days_ago(finished),
                       status=status, counts=counts, error="AccessDenied: sts:AssumeRole" if status == "failed" else None))
        s.add(Scan(run_id="r-last", account_id=A2, started_at=days_ago(0.5), finished_at=days_ago(0.5),
                   status="succeeded", counts={"new": 0, "resolved": 0, "reopened": 0}))
        # A run in progress says nothing yet: A3 still shows its failure, A1 stays clean.
        s.add(Scan(run_id="r-now", account_id=A3, started_at=days_ago(0.1), status="running"))
        s.add(Scan(run_id="r-now", account_id=A1, started_at=days_ago(0.1), status="queued"))
        open_rows = [
            finding(A1, "root-mfa-disabled", "critical", first_seen=200, title="Root account has no MFA"),
            finding(A1, "stale-user", "high", state="notified", first_seen=40, notified_to="U0ALICE001",
                    notified_at=days_ago(10)),
            finding(A1, "stale-user", "high", state="notified", first_seen=41, notified_to="U0ALICE001",
                    notified_at=days_ago(8)),
            finding(A2, "old-access-key", "medium", state="notified", first_seen=20, notified_to=None,
                    notified_at=days_ago(9)),
            finding(A2, "old-access-key", "medium", state="notified", first_seen=5, notified_to="U0BOB00001",
                    notified_at=days_ago(3)),  # not overdue yet
            finding(A2, "multiple-active-keys", "low", state="reopened", first_seen=60),
        ]
        s.add_all(open_rows)
        # Not open: decided, resolved or remediated.
        kept = finding(A1, "admin-policy", "high", state="excepted", first_seen=90, decision="exception",
                       decided_by="U0ALICE001", decided_at=days_ago(2), decision_until=days_ago(-5),
                       decision_reason="break-glass role", notified_to="U0ALICE001", notified_at=days_ago(12))
        kept_old = finding(A1, "admin-policy", "high", state="excepted", first_seen=90, decision="exception",
                           decided_by="U0BOB00001", decided_at=days_ago(30), decision_until=days_ago(-60),
                           decision_reason="vendor")
        snoozed = finding(A2, "unused-password", "medium", state="snoozed", first_seen=15, decision="snooze",
                          decided_at=days_ago(1), decision_until=days_ago(-3))
        resolved_this = finding(A2, "unused-access-key", "medium", state="resolved", first_seen=12,
                                resolved_at=days_ago(2))  # fixed in 10 days
        resolved_last = finding(A2, "unused-access-key", "medium", state="resolved", first_seen=30,
                                resolved_at=days_ago(10))  # fixed in 20 days
        remediated = finding(A1, "old-access-key", "medium", state="remediated", first_seen=7)
        remediated_then_resolved = finding(A1, "old-access-key", "medium", state="resolved", first_seen=9,
                                           resolved_at=days_ago(0.5))
        s.add_all([kept, kept_old, snoozed, resolved_this, resolved_last, remediated, remediated_then_resolved])
        s.flush()
        for target, finished in ((remediated, 3), (remediated_then_resolved, 5)):  # fixed in 4 days each
            s.add(Remediation(finding_id=target.id, fingerprint=target.fingerprint, action="deactivate-key",
                              account_id=target.account_id, resource=target.resource, status="succeeded",
                              requested_by="U0ALICE001", requested_at=days_ago(finished),
                              finished_at=days_ago(finished)))
        waiting = open_rows[1]
        s.add(Remediation(finding_id=waiting.id, fingerprint=waiting.fingerprint, action="delete-user",
                          account_id=A1, resource=waiting.resource, status="planned",
                          requested_by="U0ALICE001", requested_at=days_ago(2)))
        audit.record(s, actor="system", action=audit.AuditAction.SCAN_SUCCEEDED, account=A1, at=days_ago(1))
    return engine


def test_build_aggregates_in_sql(seeded):
    d = DigestService(settings(), seeded).build(NOW)
    assert d.week == "2026-W49" and d.period_start == NOW - timedelta(days=7)
    assert d.open_by_severity == {"critical": 1, "high": 2, "medium": 2, "low": 1}
    assert d.open_total == 6
    assert [(c.check_id, c.count) for c in d.open_by_check] == [
        ("root-mfa-disabled", 1), ("stale-user", 2), ("old-access-key", 2), ("multiple-active-keys", 1)]
    assert d.open_by_check[0].title == "Root account has no MFA"
    # Week over week: successful scans' counts; remediations that succeeded.
    assert (d.this_week.new, d.this_week.resolved, d.this_week.reopened) == (5, 3, 1)
    assert (d.last_week.new, d.last_week.resolved, d.last_week.reopened) == (8, 0, 2)
    assert (d.this_week.remediated, d.last_week.remediated) == (2, 0)
    # Fixed this week: resolved in 10 days, remediated in 4 and 4 days -> median 4.
    assert d.this_week.fixed == 3 and d.this_week.median_fix_days == pytest.approx(4.0)
    assert d.last_week.fixed == 1 and d.last_week.median_fix_days == pytest.approx(20.0)
    # Exceptions: one granted this week (expiring in 5 days), the older one not expiring soon.
    assert d.exceptions_granted == 1 and d.exceptions_granted_recent[0].reason == "break-glass role"
    assert d.exceptions_expiring == 1 and d.exceptions_expiring_soon[0].decided_by == "U0ALICE001"
    # Overdue (notified 7+ days ago, still notified, no decision), grouped by who was told.
    assert d.overdue == 3
    assert [(o.user, o.count) for o in d.overdue_by_owner] == [("U0ALICE001", 2), (None, 1)]
    assert d.overdue_by_owner[0].oldest_notified_at == days_ago(10)
    assert d.oldest_open[0].title == "Root account has no MFA" and len(d.oldest_open) == 6
    assert d.pending_approvals == 1 and d.pending_approvals_oldest[0].action == "delete-user"
    # Only A3's latest scan failed (A2's failure was followed by a success).
    assert [(a.account_id, a.label) for a in d.failed_accounts] == [(A3, "sandbox")]
    assert "AccessDenied" in d.failed_accounts[0].error
    assert [(p.account_id, p.label, p.counts) for p in d.posture] == [
        (A1, "prod", {"critical": 1, "high": 2}), (A2, "dev", {"medium": 2, "low": 1})]
    assert d.accounts_known == 3
    assert d.audit_head is not None and d.audit_head.last_sequence == 1


@pytest.mark.parametrize(("durations", "median"), [((1, 2, 10, 30), 6.0), ((3, 1, 2), 2.0), ((5,), 5.0)])
def test_median_time_to_fix_with_even_and_odd_counts(engine, durations, median):
    with session_scope(engine) as s:
        for i, days in enumerate(durations):
            fixed_days_ago = 1 + i * 0.5
            s.add(finding(state="resolved", resolved_at=days_ago(fixed_days_ago), first_seen=fixed_days_ago + days))
        s.add(finding(state="resolved", resolved_at=days_ago(8), first_seen=9))  # last week: 1 day
    d = DigestService(settings(), engine).build(NOW)
    assert d.this_week.fixed == len(durations)
    assert d.this_week.median_fix_days == pytest.approx(median, abs=0.01)
    assert (d.last_week.fixed, d.last_week.median_fix_days) == (1, pytest.approx(1.0))


def test_history_is_derived_from_first_seen_and_resolved_at(seeded):
    d = DigestService(settings(), seeded).build(NOW)
    assert [p.at for p in d.history] == [NOW - timedelta(weeks=k) for k in range(7, -1, -1)]
    latest = d.history[-1].counts
    # Unresolved now: the 6 open + 2 excepted + snoozed + remediated (not resolved yet).
    assert sum(latest.values()) == 10
    one_week_ago = d.history[-2].counts
    # A week ago: the finding first seen 5 days ago did not exist; the one resolved 2 days
    # ago and the one resolved half a day ago were still there; the 7-day-old one was just seen.
    assert sum(one_week_ago.values()) == 10 - 1 + 2
    # 7 weeks before now (49 days): first seen 200, 90, 90 and 60 days ago.
    assert d.history[0].counts == {"critical": 1, "high": 2, "medium": 0, "low": 1}


def test_build_on_an_empty_database(engine):
    d = DigestService(settings(), engine).build(NOW)
    assert d.open_total == 0 and d.this_week == WeekCounts() and d.posture == () and d.audit_head is None
    blocks = digest_blocks(d)
    assert 5 < len(blocks) <= 50
    assert "Nothing open" in str([b.to_dict() for b in blocks])
    assert "0 open findings" in digest_fallback(d)
    assert "Posture by account (0 with open findings)" in digest_text(d)


def test_week_is_iso_week_in_the_configured_time_zone():
    sunday_night_utc = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)
    assert iso_week(sunday_night_utc, "UTC") == "2026-W48"
    assert iso_week(sunday_night_utc, "Europe/Paris") == "2026-W49"  # already Monday there


# --- pure builders ----------------------------------------------------------------------------


def value(**overrides) -> Digest:
    base = Digest(
        generated_at=NOW, week="2026-W49", period_start=NOW - timedelta(days=7), period_end=NOW, timezone="UTC",
        open_by_severity={"critical": 1, "high": 2, "medium": 0, "low": 0}, open_by_check=(),
        this_week=WeekCounts(new=3, resolved=1, remediated=1, reopened=0, fixed=2, median_fix_days=2.5),
        last_week=WeekCounts(new=1), exceptions_granted=0, exceptions_granted_recent=(), exceptions_expiring=0,
        exceptions_expiring_soon=(), escalate_after_days=7, overdue=0, overdue_by_owner=(), oldest_open=(),
        pending_approvals=0, pending_approvals_oldest=(), failed_accounts=(), posture=(), accounts_known=0,
        history=tuple(HistoryPoint(NOW - timedelta(weeks=k), {"high": k}) for k in range(7, -1, -1)),
    )
    return replace(base, **overrides)


def assert_valid_message(blocks) -> list[dict]:
    assert len(blocks) <= 50
    payload = []
    for block in blocks:
        block.validate_json()  # slack_sdk's own limits (lengths, field counts)
        payload.append(block.to_dict())
    return payload


def test_blocks_from_the_database_value_mention_owners(seeded):
    d = DigestService(settings(), seeded).build(NOW)
    payload = assert_valid_message(digest_blocks(d))
    text = str(payload)
    assert payload[0]["type"] == "header" and "2026-W49" in payload[0]["text"]["text"]
    assert "<@U0ALICE001> — *2*" in text  # overdue owner mentioned
    assert "security triage" in text  # the unassigned overdue one
    assert "break-glass role" in text and "delete the user" in text and "sandbox" in text
    assert "*6 open findings*" in text and "▲" in text
    assert anchors_in(text) == [(1, d.audit_head.last_hash)]  # the published head, parseable
    fallback = digest_fallback(d)
    assert fallback.startswith("IAM weekly digest 2026-W49: 6 open findings (1 critical, 2 high, 2 medium, 1 low)")
    plain = digest_text(d)
    for heading in ("Week over week", "Open findings by check", "Overdue", "Oldest open problems", "Exceptions",
                    "Waiting for a security approver", "Accounts whose last scan failed", "Posture by account",
                    "Unresolved findings, last 8 weeks"):
        assert heading in plain
    assert "U0ALICE001, waiting since" in plain and "<@" not in plain and "*" not in plain


def test_two_hundred_accounts_fit_in_fifty_blocks():
    posture = tuple(AccountPosture(f"{i:012d}", f"account-{i}", {"critical": i % 3, "high": 5, "low": i})
                    for i in range(200))
    d = value(posture=tuple(sorted(posture, key=AccountPosture.sort_key)), accounts_known=260)
    blocks = digest_blocks(d)
    payload = assert_valid_message(blocks)
    text = str(payload)
    assert "200 with open findings, 60 clean" in text
    assert "more accounts with open findings" in text
    assert payload[-1]["type"] == "context"  # the footer always survives
    # The worst account (most critical, then high...) is listed first.
    first = next(b for b in payload if "Posture by account" in str(b))
    worst = d.posture[0]
    assert first["text"]["text"].splitlines()[1].startswith(f"{worst.label} (`{worst.account_id}`)")  # name and id
    # The terminal lists every account.
    assert digest_text(d).count("account-") == 200
    # And a tighter limit is still respected.
    assert len(digest_blocks(d, max_blocks=20)) <= 20


def test_long_lists_are_cut_per_section():
    from bot.services.digest import CheckCount, OverdueOwner

    checks = tuple(CheckCount(f"check-{i}", "T" * 150, "high", 1000 + i) for i in range(40))
    owners = tuple(OverdueOwner(f"U{i:09d}", 3, NOW) for i in range(15))
    d = value(open_by_check=checks, overdue=200, overdue_by_owner=owners)
    text = str(assert_valid_message(digest_blocks(d)))
    assert "30 other checks" in text and "…and 155 more" in text


# --- posting ----------------------------------------------------------------------------------


@pytest.fixture
def fake():
    with SlackFake() as f:
        yield f


def client_for(fake: SlackFake) -> WebClient:
    return WebClient(base_url=fake.base_url, token=fake.token, timeout=5)


def test_post_is_idempotent_per_week_and_channel(engine, fake):
    channel = fake.add_channel("security")
    with session_scope(engine) as s:  # 200 accounts: the real message must pass the fake's 50-block rule
        for i in range(200):
            s.add(finding(f"{i:012d}", "old-access-key", "medium", first_seen=10 + i % 50))
    service = DigestService(settings(), engine)
    client = client_for(fake)

    first = service.post(client, now=NOW, channel=channel, actor="U0ADMIN001")
    second = service.post(client, now=NOW + timedelta(hours=2), channel=channel)

    assert first.posted and first.ts and first.file_id
    assert not second.posted and second.ts == first.ts and "already posted" in second.note
    top_level = fake.messages(channel, replies=False)
    assert len(top_level) == 1 and len(top_level[0]["blocks"]) <= 50
    assert top_level[0]["text"].startswith("IAM weekly digest 2026-W49: 200 open findings")
    (chart_reply,) = [m for m in fake.thread(channel, first.ts) if m["ts"] != first.ts]
    (stored,) = fake.files()
    assert chart_reply["files"][0]["id"] == stored["id"] == first.file_id
    assert stored["content"].startswith(b"\x89PNG\r\n\x1a\n")
    with session_scope(engine) as s:
        rows = s.execute(select(DigestPost)).scalars().all()
        assert [(r.week, r.channel, r.ts, r.file_id) for r in rows] == [("2026-W49", channel, first.ts, first.file_id)]
        assert rows[0].summary["open"] == 200
        events = s.execute(select(AuditEvent).where(AuditEvent.action == "digest.posted")).scalars().all()
        assert len(events) == 1 and events[0].actor == "U0ADMIN001" and events[0].payload["ts"] == first.ts
    assert audit.verify(engine).ok
    # Next week is a new digest.
    assert service.post(client, now=NOW + timedelta(days=7), channel=channel).posted
    assert len(fake.messages(channel, replies=False)) == 2


def test_a_failed_post_releases_the_claim(engine, fake):
    channel = fake.add_channel("security")
    service = DigestService(settings(), engine)
    fake.fail("chat.postMessage", "channel_not_found")
    with pytest.raises(SlackApiError):
        service.post(client_for(fake), now=NOW, channel=channel)
    with session_scope(engine) as s:
        assert s.execute(select(func.count()).select_from(DigestPost)).scalar_one() == 0
    assert service.post(client_for(fake), now=NOW, channel=channel).posted


def test_a_chart_upload_failure_does_not_undo_the_post(engine, fake):
    channel = fake.add_channel("security")
    fake.fail("files.getUploadURLExternal", "internal_error")
    result = DigestService(settings(), engine).post(client_for(fake), now=NOW, channel=channel)
    assert result.posted and result.file_id is None
    assert len(fake.messages(channel)) == 1


def test_a_fresh_claim_blocks_and_a_stale_one_is_taken_over(engine, fake):
    channel = fake.add_channel("security")
    with session_scope(engine) as s:
        s.add(DigestPost(week="2026-W49", channel=channel, claimed_by="other-worker", claimed_at=NOW))
    service = DigestService(settings(), engine)
    busy = service.post(client_for(fake), now=NOW + timedelta(minutes=5), channel=channel)
    assert not busy.posted and "being posted by other-worker" in busy.note
    assert fake.messages(channel) == []
    taken = service.post(client_for(fake), now=NOW + timedelta(minutes=30), channel=channel)
    assert taken.posted and len(fake.messages(channel, replies=False)) == 1


# --- chart --------------------------------------------------------------------------------------


def read_png(data: bytes) -> tuple[int, int, bytes]:
    """A strict little PNG reader: signature, chunk CRCs, IHDR, IDAT size, IEND."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF, tag
        chunks.append((tag, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, color, interlace) == (8, 2, 0)
    raw = zlib.decompress(b"".join(body for tag, body in chunks if tag == b"IDAT"))
    assert len(raw) == height * (1 + width * 3)
    return width, height, raw


def test_chart_is_a_valid_png_with_the_severity_colours():
    d = value(history=tuple(HistoryPoint(NOW - timedelta(weeks=k), {"critical": 2, "high": 10 + k, "low": 40})
                            for k in range(7, -1, -1)))
    png = history_chart_png(d.history)
    width, height, raw = read_png(png)
    assert (width, height) == (960, 480)
    pixels = {raw[i:i + 3] for y in range(height) for i in range(y * (1 + width * 3) + 1, (y + 1) * (1 + width * 3), 3)}
    assert {b"\xc6\x28\x28", b"\xef\x6c\x00", b"\x1e\x88\xe5"} <= pixels  # critical, high, low bars
    assert history_chart_png(d.history) == png  # deterministic


def test_chart_of_nothing_and_the_png_encoder():
    width, height, _ = read_png(history_chart_png(value(history=()).history, width=200, height=120))
    assert (width, height) == (200, 120)
    assert read_png(encode_png(2, 1, b"\xff\x00\x00\x00\xff\x00"))[2] == b"\x00\xff\x00\x00\x00\xff\x00"
    with pytest.raises(ValueError):
        encode_png(2, 2, b"\x00")
    assert [nice_step(n) for n in (0, 5, 7, 40, 93, 1234)] == [1, 1, 2, 10, 20, 500]


@pytest.fixture
def audit_keys():
    """This process writes with a key (as STEWARD_AUDIT_KEY would make it), for one test."""
    from bot.db.audit_key import resolve, set_process_keyring

    keys = resolve("digest-test-audit-key-0123456789abcdef012345")
    set_process_keyring(keys)
    yield keys
    set_process_keyring(None)


def test_the_digest_publishes_the_chain_head_and_it_reads_back(seeded, fake, audit_keys):
    from bot.db.audit_anchors import anchors_from_slack

    keys = audit_keys
    with session_scope(seeded) as s:  # a keyed chain: the head names its key id
        audit.record(s, actor="system", action=audit.AuditAction.SCAN_STARTED)
    channel = fake.add_channel("security")
    client = client_for(fake)
    service = DigestService(settings(), seeded)
    d = service.build(NOW)
    assert d.audit_head.key_id == keys.current.key_id and d.audit_head.last_sequence == 3
    result = service.post(client, now=NOW, channel=channel)
    (message,) = fake.messages(channel, replies=False)
    footer = message["blocks"][-1]
    assert footer["type"] == "context" and f"key id {keys.current.key_id}" in footer["elements"][0]["text"]
    with session_scope(seeded) as s:
        posted = s.execute(select(AuditEvent).where(AuditEvent.action == "digest.posted")).scalar_one()
    assert posted.payload["audit_head"] == {"sequence": 3, "hash": d.audit_head.last_hash}
    assert posted.payload["ts"] == result.ts
    # Read back through conversations.history, a page at a time; only Steward's own count.
    fake.post_as_user(channel, fake.add_user(name="eve"), f"Audit chain head #1 `{'0' * 64}`")
    found, read = anchors_from_slack(client, channel, page_size=1)
    assert found == {(3, d.audit_head.last_hash)} and read == 2
    assert "digest-test-audit-key" not in str(fake.messages(channel))  # the key id only, never the key
    # The same head survives the 50-block cut of a huge digest.
    many = tuple(AccountPosture(f"{i:012d}", f"a{i}", {"high": 1}) for i in range(300))
    blocks = digest_blocks(replace(d, posture=many, accounts_known=300))
    assert len(blocks) <= 50 and d.audit_head.last_hash in str(blocks[-1].to_dict())


def test_digest_wording_has_no_doubled_words_or_numbers():
    from bot.slack.blocks.digest import _account, _change, _owned

    assert _change(0, 0) == "same as last week"
    assert _owned(None, slack=False) == "no owner" and _owned("U0ALICE001", slack=True) == "owner <@U0ALICE001>"
    d = value(account_names={"123456789012": "prod"})
    assert _account(d, "123456789012", slack=False) == "prod (123456789012)"
    # Labels written before names were stored never repeat the id.
    assert _account(value(), "123456789012", slack=False, label="123456789012 (role/StewardAudit)") == "123456789012"
    assert _account(value(), "123456789012", slack=False, label="prod (123456789012), current credentials") == \
        "prod (123456789012)"
    text = str(assert_valid_message(digest_blocks(value(accounts_known=1))))
    assert "1 account known" in text
