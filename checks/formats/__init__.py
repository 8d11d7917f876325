"""Findings in the formats other tools read (pure: no AWS, no database).

Both take the JSON contract of a finding (`bot.core.report.finding_json`: check, account,
resource, severity, title, owner, fingerprint, details) plus when it was seen, so a finding
fresh from a scan and one read back from the database export the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Seen:
    """When a finding was first and last seen, and whether it is still open."""

    first: datetime
    last: datetime
    resolved_at: datetime | None = None

    @property
    def resolved(self) -> bool:
        return self.resolved_at is not None


# What kind of IAM object a finding is about, by AWS's own resource type names (both
# Security Hub and OCSF's cloud profile use them).
AWS_RESOURCE_TYPE = {
    "account": "AwsAccount",
    "user": "AwsIamUser",
    "key": "AwsIamAccessKey",
    "group": "AwsIamGroup",
    "role": "AwsIamRole",
}


def partition_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[1] if len(parts) > 1 and parts[0] == "arn" else "aws"
