"""Replay protection (bot/slack/replay.py): each request key is claimed once, on both databases."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlmodel import Session, select

from bot.db.models import SeenRequest
from bot.slack import replay
from bot.slack.listeners.guard import request_keys

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def test_a_key_is_claimed_once_and_expires(engine) -> None:
    assert replay.claim(engine, ["sig:a", "act:b"], now=NOW)
    assert not replay.claim(engine, ["sig:a"], now=NOW)
    assert not replay.claim(engine, ["sig:new", "act:b"], now=NOW)  # any key seen: a replay
    with Session(engine) as session:  # and the refused claim recorded nothing
        assert session.exec(select(SeenRequest.key).where(SeenRequest.key == "sig:new")).first() is None
    later = NOW + replay.KEEP_FOR + replay.KEEP_FOR
    assert replay.claim(engine, ["sig:other"], now=later)  # expired rows are swept ...
    assert replay.claim(engine, ["sig:a"], now=later)  # ... so an old key may come back


def test_twenty_simultaneous_copies_are_processed_once(engine) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: replay.claim(engine, ["sig:same"], now=NOW), range(20)))
    assert results.count(True) == 1


def test_request_keys() -> None:
    click = {"type": "block_actions", "trigger_id": "t1", "actions": [{"action_ts": "1.2"}]}
    headers = {"x-slack-signature": ["v0=abc"]}
    keys = request_keys(click, headers)
    assert [k.split(":")[0] for k in keys] == ["sig", "act"]
    assert request_keys(click, {}) == keys[1:]  # Socket Mode: no signature
    assert request_keys({**click, "actions": [{"action_ts": "1.3"}]}, {}) != keys[1:]
    assert [k.split(":")[0] for k in request_keys({"command": "/iam", "trigger_id": "t"}, {})] == ["trg"]
    assert [k.split(":")[0] for k in request_keys({"type": "event_callback", "event_id": "Ev1"}, {})] == ["evt"]
