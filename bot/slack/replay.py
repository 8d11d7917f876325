"""Replay protection: each inbound Slack request is processed at most once.

A request is known by its keys (bot.slack.listeners.guard picks them: the HTTP signature, the
trigger id and action time of a click, an event id). `claim` records every key in one
transaction before the request is handled; if any was recorded before, the request is a
replay and nothing else happens. The primary key makes two simultaneous copies race
safely: exactly one insert wins, on SQLite as on PostgreSQL. Rows expire after
`KEEP_FOR` (longer than Slack's five-minute window either side of the server's clock).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError

from bot.db.engine import session_scope
from bot.db.models import SeenRequest

KEEP_FOR = timedelta(hours=1)


def claim(engine: Engine, keys: Iterable[str], *, now: datetime) -> bool:
    """True when none of `keys` was seen before (they are recorded now), False for a replay."""
    keys = sorted(set(keys))
    if not keys:
        return True
    try:
        with session_scope(engine) as session:
            session.exec(delete(SeenRequest).where(SeenRequest.expires_at < now))
            for key in keys:
                session.add(SeenRequest(key=key, seen_at=now, expires_at=now + KEEP_FOR))
            session.flush()
    except IntegrityError:
        return False
    return True
