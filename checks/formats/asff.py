"""AWS Security Finding Format (ASFF) for Security Hub's `BatchImportFindings`.

Findings are imported with the account's default product ARN, which Security Hub accepts
only from the account the finding is about (`AwsAccountId` must be the caller's account),
so each account's findings are sent with that account's credentials. A finding's `Id` is
stable (account + fingerprint): a later import updates it, and a finding Steward saw
resolved is sent once more with `RecordState: ARCHIVED` and compliance PASSED.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from checks.catalog import BY_ID
from checks.formats import AWS_RESOURCE_TYPE, Seen, partition_of
from checks.formats.ocsf import remediation_text

SCHEMA_VERSION = "2018-10-08"
# Security Hub's documented limits on the fields we fill.
MAX_TITLE, MAX_DESCRIPTION, MAX_RECOMMENDATION = 256, 1024, 512
MAX_OTHER_FIELDS, MAX_FIELD_KEY, MAX_FIELD_VALUE = 50, 128, 1024
CIS_TYPE = "Software and Configuration Checks/Industry and Regulatory Standards/CIS AWS Foundations Benchmark"
BEST_PRACTICE_TYPE = "Software and Configuration Checks/AWS Security Best Practices"


def finding_id(account: str, fingerprint: str) -> str:
    return f"iam-steward/{account}/{fingerprint}"


def product_arn(partition: str, region: str, account: str) -> str:
    """The default product ARN every account has for its own custom findings."""
    return f"arn:{partition}:securityhub:{region}:{account}:product/{account}/default"


def asff_finding(finding: Mapping[str, Any], seen: Seen, *, region: str, now: datetime,
                 state: str | None = None) -> dict[str, Any]:
    """One finding (the JSON contract) as an ASFF document for `BatchImportFindings`.

    `state`: Steward's lifecycle state (snoozed, excepted…), shown as a product field:
    Security Hub lets only its users, not a provider, change a finding's workflow status.
    """
    spec = BY_ID[finding["check"]]
    account = finding["account"]
    partition = partition_of(finding["resource"])
    severity = {"Label": finding["severity"].upper(), "Original": finding["severity"]}
    types = [CIS_TYPE if spec.reference.startswith("CIS") else BEST_PRACTICE_TYPE]
    product_fields = {"iam-steward/check": spec.id, "iam-steward/reference": spec.reference}
    if finding.get("owner"):
        product_fields["iam-steward/owner"] = finding["owner"]
    if state:
        product_fields["iam-steward/state"] = state
    return {
        "SchemaVersion": SCHEMA_VERSION,
        "Id": finding_id(account, finding["fingerprint"]),
        "ProductArn": product_arn(partition, region, account),
        "ProductName": "IAM Steward",
        "CompanyName": "IAM Steward",
        "GeneratorId": f"iam-steward/{spec.id}",
        "AwsAccountId": account,
        "Types": types,
        "FirstObservedAt": _iso(seen.first),
        "LastObservedAt": _iso(seen.last),
        "CreatedAt": _iso(seen.first),
        # Security Hub applies an update only when UpdatedAt moves forward.
        "UpdatedAt": _iso(now),
        "Severity": severity,
        "FindingProviderFields": {"Severity": severity, "Types": types},
        "Title": _cut(finding["title"], MAX_TITLE),
        "Description": _cut(spec.rationale, MAX_DESCRIPTION),
        "Remediation": {"Recommendation": {"Text": _cut(remediation_text(spec), MAX_RECOMMENDATION)}},
        "ProductFields": product_fields,
        "Resources": [
            {
                "Type": AWS_RESOURCE_TYPE[spec.resource_type.value],
                "Id": finding["resource"],
                "Partition": partition,
                "Region": region,
                "Details": {"Other": _other(finding.get("details") or {})},
            }
        ],
        "Compliance": {"Status": "PASSED" if seen.resolved else "FAILED"},
        "RecordState": "ARCHIVED" if seen.resolved else "ACTIVE",
    }


def _other(details: Mapping[str, Any]) -> dict[str, str]:
    """`Details.Other` holds at most 50 string pairs: flatten, stringify, cut."""
    flat: dict[str, str] = {}
    for key in sorted(details)[:MAX_OTHER_FIELDS]:
        value = details[key]
        if isinstance(value, list | tuple):
            text = ", ".join(str(v) for v in value)
        elif isinstance(value, Mapping):
            text = ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
        else:
            text = "" if value is None else str(value)
        if text:
            flat[_cut(str(key), MAX_FIELD_KEY)] = _cut(text, MAX_FIELD_VALUE)
    return flat


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

