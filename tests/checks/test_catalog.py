"""The check catalog, walked: stable ids and severities (docs/architecture.md §3-§4), and for every check a
fixture that fires and one that stays quiet, evaluated through the catalog itself."""

from __future__ import annotations

from collections import Counter

import pytest

from checks.catalog import BY_ID, CATALOG, RAISED_BY_PEOPLE
from checks.model import PasswordPolicy, ResourceType, RootAccount, Severity, Trail
from checks.scan import evaluate
from tests.factories import (
    ACCOUNT,
    OTHER_ACCOUNT,
    ago,
    allow,
    ctx,
    inline,
    key,
    managed,
    ref,
    role,
    snapshot,
    user,
)

CATALOG_TABLE = {
    "root-access-key": "critical", "root-mfa-disabled": "critical", "root-recently-used": "high",
    "password-policy-weak": "medium", "console-user-without-mfa": "high", "unused-password": "medium",
    "unused-access-key": "medium", "old-access-key": "medium", "multiple-active-keys": "low",
    "inactive-access-key": "low", "stale-user": "high", "user-direct-policy": "low", "admin-policy": "high",
    "service-wildcard-policy": "medium", "privilege-escalation-policy": "high",
    "role-trust-external-no-external-id": "high", "role-trust-public": "critical",
    "compromised-key-quarantine": "critical", "unused-role": "low",
    "cloudtrail-no-multi-region-trail": "high", "cloudtrail-log-validation-off": "medium",
    "cloudtrail-management-events-off": "high", "cloudtrail-bucket-public": "critical",
    "unused-permissions": "medium",
}
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
STRONG = PasswordPolicy(minimum_length=14, require_symbols=True, require_numbers=True, require_uppercase=True,
                        require_lowercase=True, reuse_prevention=24)
QUARANTINE = managed("AWSCompromisedKeyQuarantineV2", {"Effect": "Deny", "Action": "*", "Resource": "*"}, aws=True)
ADMIN = managed("Everything", allow("*"))
EC2_ALL = managed("Ec2All", allow("ec2:*"))
ESCALATE = managed("Escalate", allow(["iam:PassRole", "ec2:RunInstances"]))
READ_S3 = managed("ReadS3", allow(["s3:GetObject"], "arn:aws:s3:::bucket/*"))
TRUST_OTHER = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]}
TRUST_OTHER_WITH_ID = {"Version": "2012-10-17", "Statement": [
    {**TRUST_OTHER["Statement"][0], "Condition": {"StringEquals": {"sts:ExternalId": "s3cret-id"}}}]}
TRUST_PUBLIC = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
TRUST_ORG = {"Version": "2012-10-17", "Statement": [
    {**TRUST_PUBLIC["Statement"][0], "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}}]}


S3_SQS = managed("S3Sqs", allow(["s3:*", "sqs:*"]))


def usage_of(resource, **services):
    """Stored last-accessed data of one principal: service -> last use (None: never)."""
    from checks.usage import PrincipalUsage, ServiceUsage

    arn = f"arn:aws:iam::{ACCOUNT}:{resource}"
    return {arn: PrincipalUsage(arn, ago(0), tuple(ServiceUsage(ns, last_authenticated=when)
                                                   for ns, when in services.items()))}


def with_policy(policy, **kwargs):
    return snapshot(users=[user("dev", attached_policies=(ref(policy),), **kwargs)], policies=[policy])


def role_with(policy=None, **kwargs):
    attached = (ref(policy),) if policy else ()
    return snapshot(roles=[role("app", attached_policies=attached, last_used=ago(1), **kwargs)],
                    policies=[policy] if policy else [])


TRAIL_ARN = f"arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/main"


def trail(**kwargs):
    values = {"name": "main", "arn": TRAIL_ARN, "home_region": "us-east-1", "multi_region": True,
              "log_file_validation": True, "s3_bucket": "trail-logs", "is_logging": True,
              "management_events": True, "bucket_public": False, **kwargs}
    return snapshot(trails=(Trail(**values),))


FIXTURES = {
    "root-access-key": (snapshot(root=RootAccount(ROOT, access_keys=(key(1, used=400),), mfa_active=True)),
                        snapshot(root=RootAccount(ROOT, mfa_active=True))),
    "root-mfa-disabled": (snapshot(root=RootAccount(ROOT)), snapshot(root=RootAccount(ROOT, mfa_active=True))),
    "root-recently-used": (snapshot(root=RootAccount(ROOT, password_last_used=ago(3))),
                           snapshot(root=RootAccount(ROOT, password_last_used=ago(300)))),
    "password-policy-weak": (snapshot(), snapshot(password_policy=STRONG)),
    "console-user-without-mfa": (snapshot(users=[user(password_enabled=True)]),
                                 snapshot(users=[user(password_enabled=True, mfa_active=True)])),
    "unused-password": (snapshot(users=[user(password_enabled=True, password_last_used=ago(60))]),
                        snapshot(users=[user(password_enabled=True, password_last_used=ago(2))])),
    "unused-access-key": (snapshot(users=[user(access_keys=(key(1, age=100, used=50),))]),
                          snapshot(users=[user(access_keys=(key(1, age=100, used=5),))])),
    "old-access-key": (snapshot(users=[user(access_keys=(key(1, age=100),))]),
                       snapshot(users=[user(access_keys=(key(1, age=30),))])),
    "multiple-active-keys": (snapshot(users=[user(access_keys=(key(1), key(2)))]),
                             snapshot(users=[user(access_keys=(key(1),))])),
    "inactive-access-key": (snapshot(users=[user(access_keys=(key(1, active=False),))]),
                            snapshot(users=[user(access_keys=(key(1),))])),
    "stale-user": (snapshot(users=[user(age=200)]),
                   snapshot(users=[user(age=200, access_keys=(key(1, used=1),))])),
    "user-direct-policy": (with_policy(READ_S3), snapshot(users=[user("dev", groups=("devs",))])),
    "admin-policy": (with_policy(ADMIN), with_policy(READ_S3)),
    "service-wildcard-policy": (with_policy(EC2_ALL), with_policy(READ_S3)),
    "privilege-escalation-policy": (
        snapshot(users=[user("dev", inline_policies=(inline("esc", allow(["iam:PassRole", "ec2:RunInstances"])),))]),
        with_policy(READ_S3)),
    "role-trust-external-no-external-id": (role_with(trust=TRUST_OTHER), role_with(trust=TRUST_OTHER_WITH_ID)),
    "role-trust-public": (role_with(trust=TRUST_PUBLIC), role_with(trust=TRUST_ORG)),
    "compromised-key-quarantine": (with_policy(QUARANTINE), with_policy(READ_S3)),
    "unused-role": (snapshot(roles=[role("old", age=200)]), snapshot(roles=[role("busy", age=200, last_used=ago(2))])),
    "cloudtrail-no-multi-region-trail": (trail(is_logging=False), trail()),
    "cloudtrail-log-validation-off": (trail(log_file_validation=False), trail()),
    "cloudtrail-management-events-off": (trail(management_events=False), trail()),
    "cloudtrail-bucket-public": (trail(bucket_public=True), trail()),
    "unused-permissions": (
        snapshot(roles=[role("app", attached_policies=(ref(S3_SQS),))], policies=[S3_SQS],
                 usage=usage_of("role/app", s3=ago(2), sqs=None)),
        snapshot(roles=[role("app", attached_policies=(ref(S3_SQS),))], policies=[S3_SQS],
                 usage=usage_of("role/app", s3=ago(2), sqs=ago(9)))),
}


def test_ids_are_unique_and_match_the_catalog_table():
    ids = [spec.id for spec in CATALOG]
    assert len(ids) == len(set(ids))
    assert {spec.id: spec.severity.value for spec in CATALOG} == CATALOG_TABLE


def test_every_spec_is_complete():
    for spec in CATALOG:
        assert isinstance(spec.severity, Severity) and isinstance(spec.resource_type, ResourceType)
        assert spec.title and spec.rationale and spec.reference, spec.id
        assert len(spec.rationale) < 120, f"{spec.id}: rationale is a one-liner for a DM"


def test_every_check_has_a_firing_and_a_quiet_fixture():
    # Checks raised by people (an access review's revocations) are never evaluated by a scan.
    assert set(FIXTURES) == set(BY_ID) - RAISED_BY_PEOPLE
    assert not RAISED_BY_PEOPLE & {spec.id for spec in CATALOG}


@pytest.mark.parametrize("check", sorted(CATALOG_TABLE))
def test_fixture_fires_and_stays_quiet_through_the_catalog(check):
    firing, quiet = FIXTURES[check]
    spec = BY_ID[check]
    fired = [r for r in spec.evaluate(firing, ctx()) if r.failed]
    assert fired and all(r.check == check and r.account == ACCOUNT for r in fired)
    calm = spec.evaluate(quiet, ctx())
    assert calm, f"{check} evaluated nothing on its quiet fixture"
    assert not [r for r in calm if r.failed]


def test_a_whole_catalog_run_reports_coverage_for_every_check():
    merged = snapshot(
        users=[user("dev", attached_policies=(ref(ESCALATE),), password_enabled=True, access_keys=(key(1, age=200),))],
        roles=[role("app", trust=TRUST_OTHER)],
        policies=[ESCALATE],
        root=RootAccount(ROOT),
        trails=trail().trails,
        usage=usage_of("user/dev", iam=ago(1), ec2=None),
    )
    results = evaluate(merged, ctx())
    evaluated = Counter(r.check for r in results)
    assert set(evaluated) == set(BY_ID) - RAISED_BY_PEOPLE


def test_a_finding_s_evidence_may_lower_its_severity_and_every_output_shows_it():
    """A latent escalation path (prerequisites absent) is medium, not the check's high."""
    from bot.core.report import finding_json
    from checks.catalog import severity_of
    from checks.model import Result, Severity, Status

    assert severity_of("privilege-escalation-policy") is Severity.HIGH
    assert severity_of("privilege-escalation-policy", {"severity": "medium"}) is Severity.MEDIUM
    assert severity_of("privilege-escalation-policy", {"severity": "bogus"}) is Severity.HIGH
    result = Result("privilege-escalation-policy", "123456789012", "arn:aws:iam::123456789012:user/ci",
                    Status.FAIL, details={"severity": "medium", "status": "latent"})
    assert finding_json(result, None)["severity"] == "medium"


def test_coverage_checks_never_read_an_unread_value_as_fine():
    """No trails at all fails CIS 3.1; trails not read, a status not read, custom selectors
    not read or a bucket not visible evaluate nothing (coverage shows it), never a pass."""
    from checks.rules import cloudtrail

    (none,) = cloudtrail.no_multi_region_trail(snapshot(trails=()), ctx())
    assert none.failed and none.resource == ROOT
    single = trail(multi_region=False)
    assert [r.failed for r in cloudtrail.no_multi_region_trail(single, ctx())] == [True]
    for rule in (cloudtrail.no_multi_region_trail, cloudtrail.management_events_off, cloudtrail.bucket_public,
                 cloudtrail.log_validation_off):
        assert rule(snapshot(), ctx()) == []
    assert cloudtrail.no_multi_region_trail(trail(is_logging=None), ctx()) == []
    assert cloudtrail.management_events_off(trail(management_events=None), ctx()) == []
    assert cloudtrail.bucket_public(trail(bucket_public=None), ctx()) == []
