"""OCSF Detection Finding objects (class 2004), the format Prowler and Security Lake read.

Built with py-ocsf-models (Prowler's maintained OCSF model package), so the objects are
validated against the schema version that package implements; we only map fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from py_ocsf_models.events.base_event import SeverityID, StatusID
from py_ocsf_models.events.findings.detection_finding import DetectionFinding
from py_ocsf_models.events.findings.detection_finding_type_id import DetectionFindingTypeID
from py_ocsf_models.events.findings.finding import ActivityID
from py_ocsf_models.objects.account import Account, TypeID
from py_ocsf_models.objects.cloud import Cloud
from py_ocsf_models.objects.finding_info import FindingInformation
from py_ocsf_models.objects.metadata import Metadata
from py_ocsf_models.objects.product import Product
from py_ocsf_models.objects.remediation import Remediation
from py_ocsf_models.objects.resource_details import ResourceDetails

from checks.catalog import BY_ID
from checks.formats import AWS_RESOURCE_TYPE, Seen, partition_of
from checks.remediate import registry

PRODUCT_UID = "iam-steward"
SEVERITY = {
    "critical": SeverityID.Critical,
    "high": SeverityID.High,
    "medium": SeverityID.Medium,
    "low": SeverityID.Low,
}


def detection_finding(finding: Mapping[str, Any], seen: Seen, *, now: datetime, version: str,
                      account_name: str | None = None) -> dict[str, Any]:
    """One finding (the JSON contract) as an OCSF Detection Finding, ready for JSON."""
    spec = BY_ID[finding["check"]]
    closed = seen.resolved
    activity = ActivityID.Close if closed else ActivityID.Create
    status = StatusID.Resolved if closed else StatusID.New
    event = DetectionFinding(
        metadata=Metadata(
            event_code=spec.id,
            uid=finding["fingerprint"],
            product=Product(name="IAM Steward", vendor_name="IAM Steward", uid=PRODUCT_UID, version=version),
            profiles=["cloud", "datetime"],
            tenant_uid=finding["account"],
        ),
        activity_id=activity,
        activity_name=activity.name,
        type_uid=DetectionFindingTypeID.Close if closed else DetectionFindingTypeID.Create,
        type_name=f"Detection Finding: {activity.name}",
        severity_id=SEVERITY[finding["severity"]],
        severity=SEVERITY[finding["severity"]].name,
        status_id=status,
        status=status.name,
        status_code="PASS" if closed else "FAIL",
        status_detail=spec.rationale,
        message=finding["title"],
        finding_info=FindingInformation(
            uid=finding["fingerprint"],
            title=finding["title"],
            desc=spec.rationale,
            types=[spec.reference] if spec.reference else None,
            created_time=_epoch(seen.first),
            created_time_dt=seen.first,
            first_seen_time=_epoch(seen.first),
            first_seen_time_dt=seen.first,
            last_seen_time=_epoch(seen.last),
            last_seen_time_dt=seen.last,
            modified_time=_epoch(seen.resolved_at or seen.last),
            modified_time_dt=seen.resolved_at or seen.last,
        ),
        resources=[
            ResourceDetails(
                uid=finding["resource"],
                name=finding["resource"].rsplit("/", 1)[-1].rsplit(":", 1)[-1],
                type=AWS_RESOURCE_TYPE[spec.resource_type.value],
                cloud_partition=partition_of(finding["resource"]),
                region="global",  # IAM is a global service
                data={"details": dict(finding.get("details") or {})},
                labels=[f"owner:{finding['owner']}"] if finding.get("owner") else None,
            )
        ],
        cloud=Cloud(
            provider="aws",
            region="global",
            account=Account(
                uid=finding["account"],
                name=account_name or finding["account"],
                type_id=TypeID.AWS_Account,
                type="AWS Account",
            ),
        ),
        remediation=Remediation(
            desc=remediation_text(spec),
            references=[spec.reference] if spec.reference else None,
        ),
        time=_epoch(now),
        time_dt=now,
        unmapped={"check": spec.id, "owner": finding.get("owner")},
    )
    return event.model_dump(mode="json", exclude_none=True)


def remediation_text(spec) -> str:
    """The rationale, and the fixes Steward offers for this check by their human names."""
    if not spec.remediations:
        return spec.rationale
    names = ", ".join(registry.action(action_id).title for action_id in spec.remediations)
    return f"{spec.rationale} IAM Steward can fix it in Slack: {names}."


def _epoch(value: datetime) -> int:
    """OCSF times are milliseconds since the epoch."""
    return int(value.timestamp() * 1000)

