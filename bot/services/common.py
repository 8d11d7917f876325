"""What every service shares: the clock and the error a use case raises when it cannot start."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class ServiceError(RuntimeError):
    """A use case cannot start (no credentials, endpoint unreachable); the message says why."""
