"""What an SQS queue URL in STEWARD_ACTIVITY_QUEUE_URL must look like (pure).

One home for the form: `steward events` refuses a malformed URL with this message before
it polls, and `steward doctor` reports the same line instead of a botocore error.
"""

from __future__ import annotations

import re

SETTING = "STEWARD_ACTIVITY_QUEUE_URL"
FORM = "https://sqs.REGION.amazonaws.com/ACCOUNT/NAME"
# Any host (a VPC endpoint or a local SQS double), then the account id and the queue name.
_QUEUE_URL = re.compile(r"^https?://[^/\s]+/\d{12}/[\w-]{1,80}$")
_REGION = re.compile(r"^https?://sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")


def queue_url_problem(url: str) -> str | None:
    """None for a queue URL of the right form; else the one line that says what is wrong."""
    if _QUEUE_URL.match(url):
        return None
    return f"{SETTING} is not an SQS queue URL: {url!r} ({FORM})"


def queue_region(url: str) -> str | None:
    """The region in an `sqs.REGION.amazonaws.com` URL (None for other hosts)."""
    match = _REGION.match(url)
    return match.group(1) if match else None
