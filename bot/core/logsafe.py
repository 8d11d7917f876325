"""Keep request bodies, tokens and response URLs out of the logs, at every level.

Slack's libraries log what they send and receive: slack_sdk logs every Web API call and
webhook (a ``response_url`` is a bearer credential for replying) at DEBUG, Bolt logs the
whole request body when a request is unhandled or unacknowledged (WARNING), and the Socket
Mode client logs envelopes; botocore logs signed AWS requests (access key id, signature)
and urllib3 the URLs it calls. :func:`install` puts a filter on the root handlers: records from
those libraries below WARNING are dropped, and the text of the others is cut before the
first bracket or brace, where the data starts ("Unhandled request ({...})" -> "Unhandled
request").
"""

from __future__ import annotations

import logging
import re

NOISY = ("slack_sdk", "slack_bolt", "slack", "botocore", "boto3", "urllib3", "s3transfer")
DATA_START = re.compile(r"[({\[]|https?://")


class SlackDataFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(NOISY):
            return True
        if record.levelno < logging.WARNING:
            return False
        message = record.getMessage()
        cut = DATA_START.search(message)
        record.msg = (message[: cut.start()].rstrip(" :-") + " (details withheld)") if cut else message
        record.args = None
        record.exc_info = record.exc_text = None  # exception texts can carry the body too
        return True


def install(root: logging.Logger | None = None) -> None:
    """Add the filter to every handler of the root logger (once)."""
    root = root or logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, SlackDataFilter) for f in handler.filters):
            handler.addFilter(SlackDataFilter())
