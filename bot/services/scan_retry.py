"""How often, and how long apart, an account's scan is tried when AWS throttles or fails
transiently (the SDK's own adaptive retries come first, inside each attempt)."""

from __future__ import annotations

MAX_ATTEMPTS = 4
BASE_SECONDS = 2
CAP_SECONDS = 300


class RetryLater(Exception):
    """This attempt failed in a way another attempt may not (`CollectError.retryable`)."""


def backoff_seconds(previous_attempts: int) -> int:
    """2, 4, 8, ... seconds after the 1st, 2nd, 3rd ... failed attempt, at most 5 minutes."""
    return min(CAP_SECONDS, BASE_SECONDS * 2 ** max(0, previous_attempts))
