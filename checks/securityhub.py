"""Sending findings to AWS Security Hub (`BatchImportFindings`), one account at a time.

Security Hub takes at most 100 findings per call and, for the default product ARN, only
findings about the calling account, so the caller passes that account's session. A finding
Security Hub refuses is reported by id with its error; the rest of the batch still lands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3

from checks.aws_calls import ApiCallCounter, aws_errors, client_config

# The member role's permission for this path (read by checks.permissions).
PERMISSIONS: Mapping[str, str] = {
    "securityhub:BatchImportFindings": "steward export --to securityhub: the account's own findings",
}
BATCH_SIZE = 100  # Security Hub's limit per BatchImportFindings call


@dataclass
class ImportResult:
    account: str
    imported: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)  # Id, ErrorCode, ErrorMessage
    calls: int = 0


def import_findings(session: boto3.Session, account: str, findings: Sequence[Mapping[str, Any]], *,
                    region: str, max_attempts: int) -> ImportResult:
    """Import `findings` (ASFF documents about `account`) in batches of 100.

    Raises `CollectError` when Security Hub cannot be reached or refuses the call as a
    whole (not enabled in the region, access denied); throttling is retried by botocore.
    """
    result = ImportResult(account)
    if not findings:
        return result
    with ApiCallCounter().attached(session) as counter:
        # Security Hub is regional: findings go to the region its aggregation reads.
        client = session.client("securityhub", region_name=region, config=client_config(max_attempts))
        with aws_errors(account, "securityhub", context=f"Security Hub in {region}; is it enabled there?"):
            for start in range(0, len(findings), BATCH_SIZE):
                batch = list(findings[start:start + BATCH_SIZE])
                answer = client.batch_import_findings(Findings=batch)
                result.imported += int(answer.get("SuccessCount", 0))
                result.failed.extend(answer.get("FailedFindings", []))
    result.calls = counter.calls
    return result
