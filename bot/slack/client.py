"""Slack Web API clients: every one honours SLACK_API_URL and retries what is retryable."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.config import Settings


class CountingRateLimitHandler(RateLimitErrorRetryHandler):
    """Waits out Retry-After like the SDK's handler, and counts every 429 (bot/run/metrics.py)."""

    def can_retry(self, *, state, request, response=None, error=None) -> bool:
        if response is not None and response.status_code == 429:
            from bot.run.metrics import SLACK_RATE_LIMITED

            SLACK_RATE_LIMITED.inc()
        return super().can_retry(state=state, request=request, response=response, error=error)


def retry_handlers(max_retry_count: int = 3) -> list:
    # 429 waits Retry-After; 5xx and dropped connections back off. None of these sit on
    # the ack path: acks are HTTP responses (or Socket Mode envelopes), not Web API calls.
    return [
        CountingRateLimitHandler(max_retry_count=max_retry_count),
        ServerErrorRetryHandler(max_retry_count=max_retry_count),
        ConnectionErrorRetryHandler(max_retry_count=max_retry_count),
    ]


def make_web_client(settings: Settings, *, timeout: int = 30) -> WebClient:
    return WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=timeout,
        retry_handlers=retry_handlers(),
    )
