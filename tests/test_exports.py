"""Findings in other tools' formats: `steward scan --format ocsf` and `steward export --to
securityhub`, end to end against moto's server (Security Hub made as strict as AWS)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.validate import ParamValidator
from py_ocsf_models.events.findings.detection_finding import DetectionFinding
from sqlmodel import Session, select
from typer.testing import CliRunner

from bot.cli.main import app
from bot.db.engine import make_engine
from bot.db.models import AuditEvent
from checks.catalog import CATALOG
from checks.formats import Seen
from checks.formats.asff import MAX_DESCRIPTION, MAX_TITLE, asff_finding
from checks.formats.ocsf import detection_finding
from tests.aws import (
    ACCOUNT_ID,
    REGION,
    aws_env,  # noqa: F401  (fixture)
    backdate_access_key,
    backdate_user,
    moto_server,  # noqa: F401  (fixture)
    strict_security_hub,
)
from tests.factories import NOW


def run_cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def sample(check: str, **details) -> dict:
    spec = next(s for s in CATALOG if s.id == check)
    resource = f"arn:aws:iam::{ACCOUNT_ID}:root" if spec.resource_type.value == "account" \
        else f"arn:aws:iam::{ACCOUNT_ID}:{spec.resource_type.value}/x"
    return {"check": check, "account": ACCOUNT_ID, "resource": resource, "severity": spec.severity.value,
            "title": spec.title, "owner": "alice@example.com", "fingerprint": "f" * 64, "details": details}


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.id)
def test_every_check_exports_valid_ocsf_and_asff(spec):
    """Every catalog entry maps to a schema-valid OCSF object and an ASFF document that
    botocore's own model of BatchImportFindings accepts, open and resolved."""
    finding = sample(spec.id, access_key_id="AKIAEXAMPLEEXAMPLE12", failing=["no-policy"], age_days=120,
                     note="x" * 5000)
    for seen in (Seen(NOW, NOW), Seen(NOW, NOW, resolved_at=NOW)):
        ocsf = detection_finding(finding, seen, now=NOW, version="1.0")
        DetectionFinding.model_validate(ocsf)
        assert ocsf["class_uid"] == 2004 and ocsf["metadata"]["event_code"] == spec.id
        assert ocsf["status"] == ("Resolved" if seen.resolved else "New")

        asff = asff_finding(finding, seen, region=REGION, now=NOW, state="notified")
        shape = boto3.client("securityhub", region_name=REGION).meta.service_model \
            .operation_model("BatchImportFindings").input_shape
        report = ParamValidator().validate({"Findings": [asff]}, shape)
        assert not report.has_errors(), report.generate_report()
        assert len(asff["Title"]) <= MAX_TITLE and len(asff["Description"]) <= MAX_DESCRIPTION
        assert all(len(v) <= 1024 for v in asff["Resources"][0]["Details"]["Other"].values())
        assert asff["RecordState"] == ("ARCHIVED" if seen.resolved else "ACTIVE")
        assert asff["ProductArn"] == f"arn:aws:securityhub:{REGION}:{ACCOUNT_ID}:product/{ACCOUNT_ID}/default"


@pytest.fixture
def account_with_findings(moto_server):  # noqa: F811
    iam = boto3.client("iam", endpoint_url=moto_server)
    iam.create_user(UserName="bob", Tags=[{"Key": "owner", "Value": "bob@example.com"}])
    key = iam.create_access_key(UserName="bob")["AccessKey"]["AccessKeyId"]
    backdate_user("bob", 300)
    backdate_access_key("bob", 1, created=200, last_used=100)
    return {"url": moto_server, "iam": iam, "key": key}


def test_scan_format_ocsf_matches_the_json_contract(account_with_findings):
    as_json = json.loads(run_cli("scan", "--format", "json", "--no-save").stdout)
    result = run_cli("scan", "--format", "ocsf", "--no-save")
    assert result.exit_code == 0
    as_ocsf = json.loads(result.stdout)
    assert sorted(f["finding_info"]["uid"] for f in as_ocsf) == sorted(f["fingerprint"] for f in as_json)
    for event in as_ocsf:
        DetectionFinding.model_validate(event)
        assert event["cloud"]["account"]["uid"] == ACCOUNT_ID
        assert event["status_code"] == "FAIL"


def test_export_to_security_hub_sends_then_archives_resolved(account_with_findings, tmp_path, monkeypatch):
    strict_security_hub(monkeypatch)
    url = account_with_findings["url"]
    hub = boto3.client("securityhub", endpoint_url=url, region_name=REGION)
    env = {"STEWARD_DATABASE_URL": f"sqlite:///{tmp_path / 'export.db'}"}

    # Security Hub not enabled: one line naming the account, exit 1, nothing recorded as clean.
    assert run_cli("scan", env=env).exit_code == 0
    refused = run_cli("export", "--to", "securityhub", env=env)
    assert refused.exit_code == 1
    assert "InvalidAccessException" in refused.stderr and ACCOUNT_ID in refused.stderr

    hub.enable_security_hub()
    first = run_cli("export", "--to", "securityhub", env=env)
    assert first.exit_code == 0, first.stderr
    stored = {f["Id"]: f for f in hub.get_findings()["Findings"]}
    checks = {f["GeneratorId"] for f in stored.values()}
    assert {"iam-steward/unused-access-key", "iam-steward/old-access-key", "iam-steward/stale-user"} <= checks
    assert {f["RecordState"] for f in stored.values()} == {"ACTIVE"}
    assert "archived" in first.stdout and "0 resolved findings archived" in first.stdout

    # The key goes; the rescan resolves its findings; the next export archives exactly those.
    account_with_findings["iam"].delete_access_key(UserName="bob", AccessKeyId=account_with_findings["key"])
    assert run_cli("scan", env=env).exit_code == 0
    second = run_cli("export", "--to", "securityhub", env=env)
    assert second.exit_code == 0, second.stderr
    assert "2 resolved findings archived" in second.stdout
    stored = {f["Id"]: f for f in hub.get_findings()["Findings"]}
    archived = {f["GeneratorId"] for f in stored.values() if f["RecordState"] == "ARCHIVED"}
    assert archived == {"iam-steward/unused-access-key", "iam-steward/old-access-key"}
    assert all(f["Compliance"]["Status"] == "PASSED" for f in stored.values() if f["RecordState"] == "ARCHIVED")

    # Archived once: a third export sends only what is still open.
    third = run_cli("export", "--to", "securityhub", env=env)
    assert "0 resolved findings archived" in third.stdout

    with Session(make_engine(env["STEWARD_DATABASE_URL"])) as session:
        actions = [e.action for e in session.exec(select(AuditEvent).where(AuditEvent.action.like("export.%"))
                                                  .order_by(AuditEvent.sequence))]
    assert actions == ["export.securityhub_failed", "export.securityhub", "export.securityhub", "export.securityhub"]


def test_export_rejects_a_bad_account_id(tmp_path):
    result = run_cli("export", "--to", "securityhub", "--account", "999",
                     env={"STEWARD_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert result.exit_code == 2
    assert "12-digit" in result.stderr


def test_a_finding_resolved_in_the_second_of_the_last_export_is_archived_once(
        account_with_findings, tmp_path, monkeypatch):
    """Times are whole seconds: a scan that resolves a finding in the same second as the
    previous export must still get it archived, and only once."""
    from datetime import timedelta

    from sqlmodel import Session as DbSession

    from bot.config import Settings
    from bot.db.models import Finding
    from bot.services.exports import SecurityHubExport

    strict_security_hub(monkeypatch)
    boto3.client("securityhub", endpoint_url=account_with_findings["url"], region_name=REGION).enable_security_hub()
    url = f"sqlite:///{tmp_path / 'same-second.db'}"
    assert run_cli("scan", env={"STEWARD_DATABASE_URL": url}).exit_code == 0
    engine = make_engine(url)
    moment = NOW + timedelta(days=400)
    service = SecurityHubExport(Settings(database_url=url), engine=engine, clock=lambda: moment)
    assert [a.archived for a in service.run().accounts] == [0]
    with DbSession(engine) as session:
        row = session.exec(select(Finding).where(Finding.check_id == "old-access-key")).one()
        row.state, row.resolved_at = "resolved", moment  # resolved in the export's second
        session.add(row)
        session.commit()
    assert [a.archived for a in service.run().accounts] == [1]
    assert [a.archived for a in service.run().accounts] == [0]
