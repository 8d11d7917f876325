"""checks.collect: AWS -> AccountSnapshot, against moto, hand-written reports and Stubber."""

from __future__ import annotations

import json
import typing
import urllib.parse
from datetime import UTC, datetime, timedelta, timezone

import boto3
import pytest
from botocore.stub import Stubber
from moto.iam.models import IAMBackend

from checks import collect
from checks.collect import (
    PRINCIPAL_FILTER,
    ApiCallCounter,
    CollectError,
    CredentialReportPoller,
    collect_account,
    decode_document,
    fetch_authorization_details,
    parse_credential_report,
    resolve_access_key_ids,
)
from checks.keys import AccessKeyMeta, match_key_slot
from checks.model import AccessKeySlot
from tests import aws
from tests.aws import (
    ACCOUNT_ID,
    allow,
    backdate_access_key,
    backdate_role,
    backdate_user,
    document,
    inject_error,
    seed_iam,
    set_password_last_used,
)

# Fixtures of tests/aws.py used here.
aws_env = aws.aws_env
instant_retries = aws.instant_retries
moto_server = aws.moto_server
custom_selectors_reported = aws.custom_selectors_reported
moto_session = aws.moto_session
moto_session_aws_policies = aws.moto_session_aws_policies

TRUST_OTHER_ACCOUNT = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
            "Action": "sts:AssumeRole",
        }
    ],
}
READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def seed_small_account(session: boto3.Session, *, aws_policies: bool = True) -> dict[str, str]:
    """alice: everything; bob: nothing; group devs; role app (cross-account trust)."""
    iam = session.client("iam")
    iam.create_user(UserName="alice", Tags=[{"Key": "owner", "Value": "alice@example.com"}])
    iam.create_user(UserName="bob", Path="/contractors/")
    iam.create_group(GroupName="devs")
    iam.add_user_to_group(GroupName="devs", UserName="alice")
    iam.put_group_policy(
        GroupName="devs", PolicyName="sqs", PolicyDocument=document(allow("sqs:SendMessage"))
    )
    local = iam.create_policy(PolicyName="ec2-all", PolicyDocument=document(allow("ec2:*")))
    local_arn = local["Policy"]["Arn"]
    iam.create_policy(PolicyName="unattached", PolicyDocument=document(allow("s3:GetObject")))
    iam.attach_group_policy(GroupName="devs", PolicyArn=local_arn)
    iam.attach_user_policy(UserName="alice", PolicyArn=local_arn)
    iam.put_user_policy(
        UserName="alice", PolicyName="dynamo", PolicyDocument=document(allow("dynamodb:*"))
    )
    keys = [iam.create_access_key(UserName="alice")["AccessKey"]["AccessKeyId"] for _ in range(2)]
    iam.update_access_key(UserName="alice", AccessKeyId=keys[1], Status="Inactive")
    iam.create_login_profile(UserName="alice", Password="Correct-Horse-1")
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="alice")["VirtualMFADevice"][
        "SerialNumber"
    ]
    iam.enable_mfa_device(
        UserName="alice",
        SerialNumber=serial,
        AuthenticationCode1="123456",
        AuthenticationCode2="654321",
    )
    iam.create_role(
        RoleName="app",
        AssumeRolePolicyDocument=json.dumps(TRUST_OTHER_ACCOUNT),
        Tags=[{"Key": "team", "Value": "payments"}],
    )
    iam.put_role_policy(RoleName="app", PolicyName="star", PolicyDocument=document(allow("*")))
    if aws_policies:
        iam.attach_user_policy(UserName="alice", PolicyArn=READ_ONLY)
        iam.attach_role_policy(RoleName="app", PolicyArn=ADMIN)
    return {"local_arn": local_arn, "key1": keys[0], "key2": keys[1]}


# ---------------------------------------------------------------------------------------
# The snapshot of a seeded moto account


def test_snapshot_matches_the_seeded_account(moto_session_aws_policies: boto3.Session) -> None:
    session = moto_session_aws_policies
    seeded = seed_small_account(session)
    session.client("iam").update_account_password_policy(
        MinimumPasswordLength=14, RequireSymbols=True, PasswordReusePrevention=24
    )

    snap = collect_account(session)

    assert snap.account_id == ACCOUNT_ID
    assert abs(snap.collected_at - utcnow()) < timedelta(minutes=1)
    assert [u.name for u in snap.users] == ["alice", "bob"]
    alice, bob = snap.user_by_name["alice"], snap.user_by_name["bob"]
    assert alice.arn == f"arn:aws:iam::{ACCOUNT_ID}:user/alice"
    assert alice.tags == {"owner": "alice@example.com"}
    assert alice.groups == ("devs",)
    assert {p.arn for p in alice.attached_policies} == {seeded["local_arn"], READ_ONLY}
    assert [(p.name, p.document["Statement"][0]["Action"]) for p in alice.inline_policies] == [
        ("dynamo", "dynamodb:*")
    ]
    assert alice.password_enabled and alice.mfa_active and alice.in_credential_report
    assert alice.password_last_used is None  # moto: no_information
    assert [(k.slot, k.active) for k in alice.access_keys] == [(1, True), (2, False)]
    assert all(k.last_rotated and k.last_rotated.tzinfo is UTC for k in alice.access_keys)
    assert bob.path == "/contractors/"
    assert not (bob.password_enabled or bob.mfa_active or bob.access_keys or bob.groups)
    assert bob.password_last_changed is None  # moto fills it in; without a password it is N/A

    (devs,) = snap.groups
    assert devs.name == "devs"
    assert [p.name for p in devs.inline_policies] == ["sqs"]
    assert [p.arn for p in devs.attached_policies] == [seeded["local_arn"]]

    (app,) = snap.roles
    assert app.trust_policy == TRUST_OTHER_ACCOUNT
    assert app.tags == {"team": "payments"}
    assert [p.arn for p in app.attached_policies] == [ADMIN]
    assert app.inline_policies[0].document["Statement"][0]["Action"] == "*"
    assert app.last_used is None and not app.service_linked

    # Customer policies (attached or not) and the *attached* AWS managed ones, with documents.
    assert set(snap.policy_by_arn) == {
        seeded["local_arn"],
        f"arn:aws:iam::{ACCOUNT_ID}:policy/unattached",
        READ_ONLY,
        ADMIN,
    }
    admin = snap.policy_by_arn[ADMIN]
    assert admin.name == "AdministratorAccess" and admin.aws_managed
    assert admin.document["Statement"][0]["Action"] == "*"
    assert admin.attachment_count == 1
    assert snap.policy_by_arn[seeded["local_arn"]].attachment_count == 2

    assert snap.password_policy is not None
    assert snap.password_policy.minimum_length == 14
    assert snap.password_policy.require_symbols and not snap.password_policy.require_numbers
    assert snap.password_policy.reuse_prevention == 24
    assert snap.root is None  # moto's report has no <root_account> row
    assert snap.summary["Users"] == 2 and snap.summary["Roles"] == 1
    # sts, generate, details, list attached AWS policies, 2 x policy version, password
    # policy, summary, cloudtrail:DescribeTrails (no trail: no status), get report
    assert snap.api_calls == 10


def test_unfiltered_pass_gives_the_same_snapshot(moto_session_aws_policies: boto3.Session) -> None:
    session = moto_session_aws_policies
    seed_small_account(session)
    attached = collect_account(session)
    full = collect_account(session, aws_policies="all")
    assert full.policies == attached.policies
    assert (full.users, full.groups, full.roles) == (
        attached.users,
        attached.groups,
        attached.roles,
    )
    assert full.api_calls == 7  # no ListPolicies / GetPolicyVersion, one big page instead

    everything = collect_account(session, include_unattached_aws_policies=True)
    assert len(everything.policies) > 1000  # moto's whole AWS managed catalogue
    assert ADMIN in everything.policy_by_arn


def test_password_policy_absent_is_none(moto_session: boto3.Session) -> None:
    snap = collect_account(moto_session)
    assert snap.password_policy is None
    assert snap.users == () and snap.roles == ()


def test_call_count_is_a_handful_and_flat_in_the_number_of_users(
    moto_session: boto3.Session,
) -> None:
    seed_small_account(moto_session, aws_policies=False)
    small = collect_account(moto_session)
    seed_iam(60, roles=10)  # no AWS managed policies loaded: only customer ones attached
    large = collect_account(moto_session)
    assert len(large.users) == 62
    # sts, generate, details, password policy, summary, describe trails, get report
    assert small.api_calls == large.api_calls == 7


def test_counter_counts_operations_once_and_retries_as_attempts(
    moto_session: boto3.Session, instant_retries: None
) -> None:
    inject_error(moto_session, "GetAccountSummary", "Throttling", status=400, times=2)
    counter = ApiCallCounter()
    with counter.attached(moto_session):
        snap = collect_account(moto_session, max_attempts=3)
    assert snap.api_calls == 7  # the throttled call counts once
    assert counter.calls == 7
    assert counter.attempts == 9  # ... and its two retries are attempts
    assert counter.by_operation["iam:GetAccountSummary"] == 1


# ---------------------------------------------------------------------------------------
# Backdating through moto's backend objects


def test_backdated_data_shows_in_the_snapshot(moto_session: boto3.Session) -> None:
    iam = moto_session.client("iam")
    iam.create_user(UserName="old")
    iam.create_login_profile(UserName="old", Password="Correct-Horse-1")
    key_id = iam.create_access_key(UserName="old")["AccessKey"]["AccessKeyId"]
    iam.create_role(RoleName="idle", AssumeRolePolicyDocument=json.dumps(TRUST_OTHER_ACCOUNT))
    now = utcnow()

    backdate_user("old", 200, now=now)
    set_password_last_used("old", 150, now=now)
    key = backdate_access_key("old", 1, created=120, last_used=60, now=now)
    backdate_role("idle", created=300, last_used=100, region="eu-west-1", now=now)
    assert key.access_key_id == key_id

    snap = collect_account(moto_session)
    old = snap.user_by_name["old"]
    assert old.created == now - timedelta(days=200)
    assert old.password_last_used == now - timedelta(days=150)
    (slot,) = old.access_keys
    assert slot.last_rotated == now - timedelta(days=120)
    assert slot.last_used == now - timedelta(days=60)
    idle = snap.role_by_name["idle"]
    assert idle.created == now - timedelta(days=300)
    assert idle.last_used == now - timedelta(days=100)
    assert idle.last_used_region == "eu-west-1"


# ---------------------------------------------------------------------------------------
# Credential report parsing

HEADER = ",".join(collect.REPORT_COLUMNS)
REPORT = "\n".join(
    [
        HEADER,
        # root: password used, MFA on, an active key in slot 1 that was used
        "<root_account>,arn:aws:iam::111122223333:root,2015-01-01T00:00:00+00:00,not_supported,"
        "2026-11-01T10:00:00+00:00,not_supported,not_supported,true,"
        "true,2020-05-05T05:05:05+00:00,2026-10-30T00:00:00+00:00,us-east-1,iam,"
        "false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
        # a console user who never logged in, with a never-used key and an inactive one
        "carol,arn:aws:iam::111122223333:user/carol,2026-01-02T03:04:05+00:00,TRUE,no_information,"
        "2026-01-02T03:04:05+00:00,2026-04-02T03:04:05+00:00,false,"
        "true,2026-02-01T00:00:00Z,N/A,N/A,N/A,"
        "false,2025-12-31T23:59:59+00:00,2026-03-01T12:00:00+00:00,eu-west-1,s3,"
        "false,N/A,false,N/A",
        # no password (not_supported), no keys, odd values, a row with MORE fields
        "dave,arn:aws:iam::111122223333:user/dave,2026-02-02T00:00:00+00:00,false,not_supported,"
        "N/A,N/A,maybe,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A,extra,cells",
        # a row with FEWER fields than the header (moto-style short row)
        "erin,arn:aws:iam::111122223333:user/erin,2026-03-03T00:00:00+00:00,true,yesterday",
        # an active key whose creation time is unreadable still exists
        "frank,arn:aws:iam::111122223333:user/frank,2026-04-04T00:00:00+00:00,false,N/A,N/A,N/A,"
        "false,true,garbage,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A",
        "",
    ]
)


def test_parse_report_root_row_and_odd_values() -> None:
    report = parse_credential_report(("\ufeff" + REPORT).encode())
    root = report.root
    assert root is not None
    assert root.arn == "arn:aws:iam::111122223333:root"
    assert root.created == datetime(2015, 1, 1, tzinfo=UTC)
    assert root.password_last_used == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert root.mfa_active
    (key,) = root.access_keys
    assert (key.slot, key.active, key.last_used_region, key.last_used_service) == (
        1,
        True,
        "us-east-1",
        "iam",
    )
    assert key.last_rotated == datetime(2020, 5, 5, 5, 5, 5, tzinfo=UTC)
    assert "<root_account>" not in report.users

    carol = report.users["carol"]
    assert carol.password_enabled and carol.password_last_used is None  # no_information
    assert carol.password_last_changed == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert not carol.mfa_active
    k1, k2 = carol.access_keys
    assert (k1.slot, k1.active, k1.last_used, k1.last_used_region) == (1, True, None, None)
    assert k1.last_rotated == datetime(2026, 2, 1, tzinfo=UTC)  # "Z" suffix
    assert (k2.slot, k2.active, k2.last_used_service) == (2, False, "s3")
    assert k2.last_used == datetime(2026, 3, 1, 12, tzinfo=UTC)

    dave = report.users["dave"]
    assert not dave.password_enabled and dave.password_last_used is None
    assert not dave.mfa_active  # "maybe" is not "true"
    assert dave.access_keys == ()

    erin = report.users["erin"]  # short row: the rest reads as "no value"
    assert erin.password_enabled and erin.password_last_used is None  # "yesterday" unreadable
    assert erin.access_keys == () and not erin.mfa_active

    (frank_key,) = report.users["frank"].access_keys
    assert frank_key.active and frank_key.last_rotated == datetime(2026, 4, 4, tzinfo=UTC)


def test_root_row_and_users_missing_from_the_report_flow_into_the_snapshot(
    moto_session: boto3.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS reuses a report for up to 4 hours: a newer user is not in it. Moto has no root
    row; patch its report to have one."""
    moto_session.client("iam").create_user(UserName="newcomer")
    root_line = REPORT.splitlines()[1]
    monkeypatch.setattr(
        IAMBackend, "get_credential_report", lambda self: f"{HEADER}\n{root_line}\n"
    )
    snap = collect_account(moto_session)
    (newcomer,) = snap.users
    assert not newcomer.in_credential_report
    assert newcomer.access_keys == () and not newcomer.password_enabled
    assert snap.root is not None and snap.root.mfa_active
    assert [(k.slot, k.active) for k in snap.root.access_keys] == [(1, True)]


def test_parse_report_without_header_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a credential report"):
        parse_credential_report(b"<html>nope</html>\n")


def test_report_with_only_a_header_has_no_users() -> None:
    report = parse_credential_report(HEADER + "\n")
    assert report.users == {} and report.root is None


# ---------------------------------------------------------------------------------------
# Polling the credential report (Stubber)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def iam_stub(aws_env: dict[str, str]):
    client = boto3.client("iam", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def poller(client, clock: FakeClock, timeout: float = 60.0) -> CredentialReportPoller:
    return CredentialReportPoller(client, timeout=timeout, sleep=clock.sleep, clock=clock.clock)


CSV = (HEADER + "\n").encode()


def test_poll_in_progress_then_complete(iam_stub) -> None:
    client, stub = iam_stub
    clock = FakeClock()
    stub.add_response("generate_credential_report", {"State": "STARTED"})
    stub.add_client_error("get_credential_report", "ReportInProgress", http_status_code=404)
    stub.add_client_error("get_credential_report", "ReportInProgress", http_status_code=404)
    stub.add_response("get_credential_report", {"Content": CSV, "ReportFormat": "text/csv"})
    assert poller(client, clock).fetch() == CSV
    assert clock.sleeps == [1.0, 2.0]  # exponential backoff


def test_poll_limit_exceeded_backs_off_and_generates_again(iam_stub) -> None:
    client, stub = iam_stub
    clock = FakeClock()
    stub.add_client_error("generate_credential_report", "LimitExceeded", http_status_code=409)
    stub.add_response("generate_credential_report", {"State": "COMPLETE"})
    stub.add_response("get_credential_report", {"Content": CSV})
    assert poller(client, clock).fetch() == CSV
    assert clock.sleeps == [1.0]


@pytest.mark.parametrize("code", ["ReportExpired", "ReportNotPresent"])
def test_poll_expired_or_missing_report_is_regenerated(iam_stub, code: str) -> None:
    client, stub = iam_stub
    clock = FakeClock()
    stub.add_response("generate_credential_report", {"State": "COMPLETE"})
    stub.add_client_error("get_credential_report", code, http_status_code=410)
    stub.add_response("generate_credential_report", {"State": "STARTED"})
    stub.add_response("get_credential_report", {"Content": CSV})
    assert poller(client, clock).fetch() == CSV


def test_poll_gives_up_with_a_clear_retryable_error(iam_stub) -> None:
    client, stub = iam_stub
    clock = FakeClock()
    stub.add_response("generate_credential_report", {"State": "STARTED"})
    for _ in range(5):
        stub.add_client_error("get_credential_report", "ReportInProgress", http_status_code=404)
    with pytest.raises(CollectError) as err:
        poller(client, clock, timeout=20).fetch()
    assert err.value.retryable
    assert "credential report not ready after 20 s (last state: ReportInProgress)" in str(err.value)
    assert sum(clock.sleeps) <= 20


def test_poll_other_errors_propagate(iam_stub) -> None:
    client, stub = iam_stub
    stub.add_client_error("generate_credential_report", "AccessDenied", http_status_code=403)
    with pytest.raises(Exception, match="AccessDenied"):
        poller(client, FakeClock()).fetch()


# ---------------------------------------------------------------------------------------
# Authorization details: pagination and documents (Stubber)


def test_authorization_details_pages_are_merged(iam_stub) -> None:
    client, stub = iam_stub
    created = datetime(2024, 1, 1, tzinfo=UTC)
    user = {"UserName": "u1", "Arn": "arn:aws:iam::111122223333:user/u1", "UserId": "AIDA" + "1" * 16,
            "Path": "/", "CreateDate": created}  # fmt: skip
    role = {"RoleName": "r1", "Arn": "arn:aws:iam::111122223333:role/r1", "RoleId": "AROA" + "1" * 16,
            "Path": "/", "CreateDate": created,
            "AssumeRolePolicyDocument": urllib.parse.quote(json.dumps(TRUST_OTHER_ACCOUNT))}  # fmt: skip
    stub.add_response(
        "get_account_authorization_details",
        {
            "UserDetailList": [user],
            "GroupDetailList": [],
            "RoleDetailList": [],
            "Policies": [],
            "IsTruncated": True,
            "Marker": "page-2",
        },
        {"Filter": list(PRINCIPAL_FILTER), "MaxItems": 1000},
    )
    stub.add_response(
        "get_account_authorization_details",
        {
            "UserDetailList": [{**user, "UserName": "u2", "Arn": user["Arn"][:-1] + "2"}],
            "RoleDetailList": [role],
            "IsTruncated": False,
        },
        {"Filter": list(PRINCIPAL_FILTER), "MaxItems": 1000, "Marker": "page-2"},
    )
    details = fetch_authorization_details(client)
    assert [u["UserName"] for u in details["UserDetailList"]] == ["u1", "u2"]
    assert [r["RoleName"] for r in details["RoleDetailList"]] == ["r1"]
    # botocore decodes URL-encoded documents itself; decode_document accepts either form
    assert decode_document(details["RoleDetailList"][0]["AssumeRolePolicyDocument"]) == (
        TRUST_OTHER_ACCOUNT
    )


@pytest.mark.parametrize(
    "raw",
    [
        {"Version": "2012-10-17", "Statement": []},
        '{"Version": "2012-10-17", "Statement": []}',
        urllib.parse.quote('{"Version": "2012-10-17", "Statement": []}'),
        b'{"Version": "2012-10-17", "Statement": []}',
    ],
)
def test_decode_document_forms(raw) -> None:
    assert decode_document(raw) == {"Version": "2012-10-17", "Statement": []}


@pytest.mark.parametrize("raw", [None, "", "not json", "[1, 2]", 42])
def test_unreadable_document_is_an_error_not_an_empty_policy(raw) -> None:
    with pytest.raises(ValueError, match="unreadable document"):
        decode_document(raw)


# ---------------------------------------------------------------------------------------
# Key ids


def test_resolve_and_match_key_ids_against_moto(moto_session: boto3.Session) -> None:
    seeded = seed_small_account(moto_session, aws_policies=False)
    now = utcnow()
    backdate_access_key("alice", 1, created=30, now=now)
    backdate_access_key("alice", 2, created=10, now=now)
    snap = collect_account(moto_session)
    counter = ApiCallCounter()
    with counter.attached(moto_session):
        metas = resolve_access_key_ids(moto_session, ["alice", "bob", "alice", "ghost"])
    assert counter.calls == 3  # one per distinct user
    assert metas["bob"] == [] and metas["ghost"] == []  # ghost: deleted since the scan
    slot1, slot2 = snap.user_by_name["alice"].access_keys
    assert match_key_slot(slot1, metas["alice"]).access_key_id == seeded["key1"]
    assert match_key_slot(slot2, metas["alice"]).access_key_id == seeded["key2"]
    assert all(m.created.tzinfo is UTC and m.created.microsecond == 0 for m in metas["alice"])


def test_match_key_slot_microseconds_and_naive_datetimes() -> None:
    rotated = datetime(2026, 5, 1, 12, 30, 15, tzinfo=UTC)
    slot = AccessKeySlot(slot=1, active=True, last_rotated=rotated)
    naive_with_micro = AccessKeyMeta("AKIA1", "Active", datetime(2026, 5, 1, 12, 30, 15, 987654))
    other_zone = AccessKeyMeta(
        "AKIA2", "Active", datetime(2026, 5, 1, 14, 30, 16, 5, tzinfo=timezone(timedelta(hours=2)))
    )
    assert naive_with_micro.created == rotated
    assert match_key_slot(slot, [other_zone, naive_with_micro]) == naive_with_micro
    assert match_key_slot(slot, [other_zone]) is None
    assert (
        match_key_slot(AccessKeySlot(slot=2, active=False, last_rotated=None), [naive_with_micro])
        is None
    )


def test_match_key_slot_same_second_uses_status_else_refuses_to_guess() -> None:
    when = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
    active = AccessKeyMeta("AKIAACTIVE", "Active", when.replace(microsecond=100))
    inactive = AccessKeyMeta("AKIAINACTIVE", "Inactive", when.replace(microsecond=900))
    assert match_key_slot(AccessKeySlot(1, True, when), [active, inactive]) == active
    assert match_key_slot(AccessKeySlot(2, False, when), [active, inactive]) == inactive
    twin = AccessKeyMeta("AKIATWIN", "Active", when)
    assert match_key_slot(AccessKeySlot(1, True, when), [active, twin]) is None


# ---------------------------------------------------------------------------------------
# Errors: never an empty snapshot


def test_access_denied_is_a_collect_error(moto_session: boto3.Session) -> None:
    inject_error(moto_session, "GenerateCredentialReport", "AccessDenied")
    with pytest.raises(CollectError) as err:
        collect_account(moto_session)
    assert err.value.account == ACCOUNT_ID
    assert err.value.message == "AccessDenied on iam:GenerateCredentialReport"
    assert not err.value.retryable


def test_access_denied_on_sts_before_the_account_is_known(moto_session: boto3.Session) -> None:
    inject_error(moto_session, "GetCallerIdentity", "AccessDenied", service="sts")
    with pytest.raises(
        CollectError, match=r"unknown account: AccessDenied on sts:GetCallerIdentity"
    ):
        collect_account(moto_session)


def test_throttling_exhausted_is_retryable(
    moto_session: boto3.Session, instant_retries: None
) -> None:
    inject_error(moto_session, "GetAccountAuthorizationDetails", "Throttling", status=400)
    with pytest.raises(CollectError) as err:
        collect_account(moto_session, max_attempts=2)
    assert err.value.retryable
    assert err.value.message == (
        "throttled on iam:GetAccountAuthorizationDetails after 2 attempts (Throttling)"
    )


def test_unexpected_account_is_refused(moto_session: boto3.Session) -> None:
    with pytest.raises(CollectError, match="the credentials belong to account 123456789012"):
        collect_account(moto_session, expected_account="111122223333")


def test_no_credentials(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(CollectError) as err:
        collect_account(boto3.Session(region_name="us-east-1"))
    assert err.value.message.startswith("no AWS credentials found (set AWS_PROFILE")
    assert not err.value.retryable


def test_unreachable_endpoint(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: refused
    with pytest.raises(CollectError) as err:
        collect_account(boto3.Session(region_name="us-east-1"), max_attempts=1)
    assert err.value.retryable
    assert "cannot reach the AWS endpoint http://127.0.0.1:9" in err.value.message


def test_unknown_aws_policies_mode_is_rejected(moto_session: boto3.Session) -> None:
    with pytest.raises(ValueError, match="aws_policies"):
        collect_account(moto_session, aws_policies="some")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# End to end through AWS_ENDPOINT_URL (ThreadedMotoServer in this process)


def test_collect_over_http_honours_aws_endpoint_url(moto_server: str) -> None:
    session = boto3.Session(region_name="us-east-1")
    iam = session.client("iam")
    assert iam.meta.endpoint_url == moto_server
    iam.create_user(UserName="remote")
    backdate_user("remote", 200)
    snap = collect_account(session)
    (user,) = snap.users
    assert user.name == "remote"
    assert abs((utcnow() - user.created) - timedelta(days=200)) < timedelta(minutes=1)
    assert snap.api_calls == 7


# ---------------------------------------------------------------------------------------
# What the effective-permission pass needs: boundaries, instance profiles, SCPs


def test_boundaries_and_instance_profiles_come_with_the_details(
    moto_session_aws_policies: boto3.Session,
) -> None:
    iam = moto_session_aws_policies.client("iam")
    iam.create_role(RoleName="web", AssumeRolePolicyDocument=json.dumps(TRUST_OTHER_ACCOUNT),
                    PermissionsBoundary=READ_ONLY)
    iam.create_instance_profile(InstanceProfileName="web-profile")
    iam.add_role_to_instance_profile(InstanceProfileName="web-profile", RoleName="web")
    snap = collect_account(moto_session_aws_policies)
    assert snap.role_by_name["web"].permissions_boundary == READ_ONLY
    # An AWS managed boundary's document is fetched like an attached policy's.
    assert READ_ONLY in snap.policy_by_arn
    assert snap.role_by_name["web"].instance_profiles == ("web-profile",)
    assert snap.instance_profiles_known and snap.scps is None  # SCPs are opt-in


def test_user_boundary_is_read_from_the_user_detail() -> None:
    # AWS puts it in UserDetailList; moto leaves it out, so the parser is tested directly.
    item = {"UserName": "u", "Arn": "arn:aws:iam::123456789012:user/u", "CreateDate": datetime.now(UTC),
            "PermissionsBoundary": {"PermissionsBoundaryType": "PermissionsBoundaryPolicy",
                                    "PermissionsBoundaryArn": READ_ONLY}}
    assert collect._user(item, None).permissions_boundary == READ_ONLY


def test_scps_attached_to_the_account_are_read_when_asked(moto_session: boto3.Session) -> None:
    org = moto_session.client("organizations")
    org.create_organization(FeatureSet="ALL")
    content = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Action": "iam:*", "Resource": "*"}]})
    policy = org.create_policy(Content=content, Description="", Name="no-iam",
                               Type="SERVICE_CONTROL_POLICY")["Policy"]["PolicySummary"]
    org.attach_policy(PolicyId=policy["Id"], TargetId=ACCOUNT_ID)
    with ApiCallCounter().attached(moto_session) as counter:
        snap = collect_account(moto_session, scps=True)
    names = {p.name for p in snap.scps}
    assert "no-iam" in names
    (mine,) = [p for p in snap.scps if p.name == "no-iam"]
    assert mine.document["Statement"][0]["Effect"] == "Deny"
    custom = len([p for p in snap.scps if p.arn.rpartition("/")[2] != collect.FULL_AWS_ACCESS])
    assert counter.by_operation["organizations:ListPoliciesForTarget"] == 1
    assert counter.by_operation["organizations:DescribePolicy"] == custom


@pytest.mark.parametrize("code", ["AccessDeniedException", "AWSOrganizationsNotInUseException"])
def test_scps_not_visible_is_not_a_failure(moto_session: boto3.Session, code: str) -> None:
    inject_error(moto_session, "ListPoliciesForTarget", code, service="organizations", status=400)
    snap = collect_account(moto_session, scps=True)
    assert snap.scps is None  # judged without SCPs, and the scan still succeeds


def test_other_scp_errors_fail_the_scan(moto_session: boto3.Session) -> None:
    inject_error(moto_session, "ListPoliciesForTarget", "ServiceException",
                 service="organizations", status=500)
    with pytest.raises(CollectError, match="organizations:ListPoliciesForTarget"):
        collect_account(moto_session, scps=True, max_attempts=1)


# ---------------------------------------------------------------------------------------
# CloudTrail coverage


class _Http200:
    status_code = 200
    headers: typing.ClassVar[dict] = {}


def _trail(session: boto3.Session, name: str, *, multi: bool = True, validation: bool = True,
           public: bool = False, logging: bool = True) -> str:
    s3 = session.client("s3")
    bucket = f"{name}-logs"
    s3.create_bucket(Bucket=bucket)
    if public:
        # moto 5.2 routes GetBucketPolicyStatus from a second client as ListObjects: answered here,
        # as AWS answers for a bucket whose policy allows "*".
        def status(**_):
            return _Http200(), {"PolicyStatus": {"IsPublic": True}, "ResponseMetadata": {"HTTPStatusCode": 200}}

        session.events.register_last("before-call.s3.GetBucketPolicyStatus", status)
    ct = session.client("cloudtrail")
    arn = ct.create_trail(Name=name, S3BucketName=bucket, IsMultiRegionTrail=multi,
                          EnableLogFileValidation=validation)["TrailARN"]
    if logging:
        ct.start_logging(Name=name)
    return arn


def test_trails_cost_at_most_two_cloudtrail_calls_and_one_bucket_call(moto_session: boto3.Session) -> None:
    _trail(moto_session, "regional", multi=False, validation=False)
    main = _trail(moto_session, "main", public=True)
    counter = ApiCallCounter()
    with counter.attached(moto_session):
        snap = collect_account(moto_session)
    assert counter.by_operation["cloudtrail:DescribeTrails"] == 1
    assert counter.by_operation["cloudtrail:GetTrailStatus"] == 1
    assert "cloudtrail:GetEventSelectors" not in counter.by_operation  # default selectors: nothing to ask
    # (the bucket call is answered by the test ahead of the counter: bucket_public below proves it)
    by_name = {t.name: t for t in snap.trails}
    assert by_name["main"].arn == main and by_name["main"].multi_region and by_name["main"].is_logging
    assert by_name["main"].management_events is True and by_name["main"].bucket_public is True
    assert by_name["regional"].is_logging is None and not by_name["regional"].log_file_validation

    from checks.catalog import BY_ID
    from tests.factories import ctx

    fired = {c: [r.resource for r in BY_ID[c].evaluate(snap, ctx()) if r.failed] for c in (
        "cloudtrail-no-multi-region-trail", "cloudtrail-log-validation-off", "cloudtrail-bucket-public",
        "cloudtrail-management-events-off")}
    assert fired == {"cloudtrail-no-multi-region-trail": [], "cloudtrail-management-events-off": [],
                     "cloudtrail-log-validation-off": [by_name["regional"].arn],
                     "cloudtrail-bucket-public": [main]}


@pytest.mark.parametrize(("selectors", "recorded"), [
    ({"EventSelectors": [{"ReadWriteType": "ReadOnly", "IncludeManagementEvents": True}]}, False),
    ({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": False}]}, False),
    ({"EventSelectors": [{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True}]}, True),
    ({"AdvancedEventSelectors": [{"Name": "data only", "FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}]}]},
     False),
    ({"AdvancedEventSelectors": [{"Name": "reads", "FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "readOnly", "Equals": ["true"]}]}]}, False),
    ({"AdvancedEventSelectors": [{"Name": "management", "FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Management"]}]}]}, True),
], ids=["read-only", "no-management", "write-only", "data-only", "advanced-reads", "advanced-management"])
def test_custom_event_selectors_are_read_once_and_judged(moto_session: boto3.Session, custom_selectors_reported,
                                                         selectors, recorded) -> None:
    """CIS: management events must be recorded. A trail with custom selectors is asked
    (one GetEventSelectors); one without them records every management event (not asked)."""
    main = _trail(moto_session, "main")
    moto_session.client("cloudtrail").put_event_selectors(TrailName="main", **selectors)
    counter = ApiCallCounter()
    with counter.attached(moto_session):
        snap = collect_account(moto_session)
    assert counter.by_operation["cloudtrail:GetEventSelectors"] == 1
    (trail,) = snap.trails
    assert trail.custom_event_selectors and trail.management_events is recorded
    from checks.rules import cloudtrail
    from tests.factories import ctx

    (verdict,) = cloudtrail.management_events_off(snap, ctx())
    assert (verdict.resource, verdict.failed) == (main, not recorded)


def test_a_stopped_trail_fails_cis_3_1_and_a_denied_cloudtrail_is_not_evaluated(moto_session: boto3.Session) -> None:
    _trail(moto_session, "main", logging=False)
    snap = collect_account(moto_session)
    from checks.rules import cloudtrail
    from tests.factories import ctx

    (verdict,) = cloudtrail.no_multi_region_trail(snap, ctx())
    assert verdict.failed and verdict.details["logging"] is False

    inject_error(moto_session, "DescribeTrails", "AccessDeniedException", service="cloudtrail", status=400, times=1)
    denied = collect_account(moto_session)
    assert denied.trails is None
    assert cloudtrail.no_multi_region_trail(denied, ctx()) == []
