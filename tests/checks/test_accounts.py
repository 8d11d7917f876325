"""checks.accounts: which accounts to scan, and a session for each (moto)."""

from __future__ import annotations

import boto3
import pytest
from moto.sts.models import sts_backends

from checks.accounts import Target, discover_targets, parse_role_arn, restore_target, session_for
from checks.aws_calls import caller_identity
from checks.collect import ApiCallCounter, CollectError, collect_account
from tests import aws
from tests.aws import (
    ACCOUNT_ID,
    inject_error,
)

# Fixtures of tests/aws.py used here.
aws_env = aws.aws_env
moto_session = aws.moto_session

OTHER = "222233334444"
THIRD = "555566667777"


def test_default_is_the_current_credentials_without_any_call(moto_session: boto3.Session) -> None:
    counter = ApiCallCounter()
    with counter.attached(moto_session):
        targets = discover_targets(moto_session)
    assert targets == [Target(None, None, "current credentials")]
    assert counter.calls == 0
    assert session_for(targets[0], moto_session) is moto_session


def test_only_accounts_resolves_the_current_account(moto_session: boto3.Session) -> None:
    (target,) = discover_targets(moto_session, only_accounts={ACCOUNT_ID})
    assert (target.account_id, target.role_arn) == (ACCOUNT_ID, None)


def test_an_account_that_is_not_configured_is_a_clear_error(moto_session: boto3.Session) -> None:
    with pytest.raises(CollectError) as err:
        discover_targets(moto_session, only_accounts={"999999999999"})
    assert err.value.message == (
        f"account 999999999999 is not among the configured accounts ({ACCOUNT_ID})"
    )
    with pytest.raises(CollectError, match="not an AWS account id"):
        discover_targets(moto_session, only_accounts={"prod"})


def test_listed_roles_give_one_target_each(moto_session: boto3.Session) -> None:
    roles = [
        f"arn:aws:iam::{OTHER}:role/steward/Scanner",
        f"arn:aws:iam::{THIRD}:role/Scanner",
        " ",
    ]
    targets = discover_targets(moto_session, account_roles=roles)
    assert [(t.account_id, t.role_arn) for t in targets] == [
        (OTHER, roles[0]),
        (THIRD, roles[1]),
    ]
    assert targets[0].label == f"{OTHER} (role/steward/Scanner)"
    (only,) = discover_targets(moto_session, account_roles=roles, only_accounts={THIRD})
    assert only.account_id == THIRD


def test_a_bad_role_arn_is_refused() -> None:
    assert parse_role_arn(f"arn:aws-us-gov:iam::{OTHER}:role/x") == ("aws-us-gov", OTHER, "x")
    for bad in ("arn:aws:iam::12345:role/x", f"arn:aws:iam::{OTHER}:user/x", "Scanner"):
        with pytest.raises(CollectError, match="not an IAM role ARN"):
            parse_role_arn(bad)


def test_organizations_active_accounts_and_the_management_account(
    moto_session: boto3.Session,
) -> None:
    org = moto_session.client("organizations")
    org.create_organization(FeatureSet="ALL")
    ids = []
    for name in ("prod", "dev", "old"):
        status = org.create_account(AccountName=name, Email=f"{name}@example.com")
        ids.append(status["CreateAccountStatus"]["AccountId"])
    org.close_account(AccountId=ids[2])  # SUSPENDED: not scanned

    targets = discover_targets(moto_session, org_role_name="OrganizationAccountAccessRole")
    by_id = {t.account_id: t for t in targets}
    assert set(by_id) == {ACCOUNT_ID, ids[0], ids[1]}
    # The management account (the current credentials') is scanned with them, no role.
    assert by_id[ACCOUNT_ID].role_arn is None
    assert by_id[ids[0]].role_arn == f"arn:aws:iam::{ids[0]}:role/OrganizationAccountAccessRole"
    assert by_id[ids[0]].label == f"prod ({ids[0]})"

    # An explicit role for an account wins over the Organizations one.
    explicit = f"arn:aws:iam::{ids[1]}:role/Custom"
    targets = discover_targets(
        moto_session,
        org_role_name="OrganizationAccountAccessRole",
        account_roles=[explicit],
        only_accounts={ids[1]},
    )
    assert [(t.account_id, t.role_arn) for t in targets] == [(ids[1], explicit)]
    with pytest.raises(CollectError, match=f"account {ids[2]} is not among"):
        discover_targets(moto_session, org_role_name="Scan", only_accounts={ids[2]})


def test_organizations_access_denied(moto_session: boto3.Session) -> None:
    inject_error(moto_session, "ListAccounts", "AccessDeniedException", service="organizations")
    with pytest.raises(CollectError, match="AccessDenied on organizations:ListAccounts"):
        discover_targets(moto_session, org_role_name="Scan")


def test_assume_role_with_external_id_then_collect_that_account(
    moto_session: boto3.Session,
) -> None:
    (target,) = discover_targets(moto_session, account_roles=[f"arn:aws:iam::{OTHER}:role/Scanner"])
    session = session_for(target, moto_session, external_id="ext-123", session_name="steward-test")

    assumed = sts_backends[OTHER]["aws"].assumed_roles[-1]
    assert (assumed.role_arn, assumed.external_id, assumed.session_name) == (
        target.role_arn,
        "ext-123",
        "steward-test",
    )
    identity = session.client("sts").get_caller_identity()
    assert identity["Account"] == OTHER
    assert identity["Arn"].startswith(f"arn:aws:sts::{OTHER}:assumed-role/Scanner/")

    session.client("iam").create_user(UserName="only-in-other")
    snap = collect_account(session, expected_account=target.account_id)
    assert snap.account_id == OTHER
    assert [u.name for u in snap.users] == ["only-in-other"]


def test_assume_role_without_external_id_sends_none(moto_session: boto3.Session) -> None:
    target = Target(OTHER, f"arn:aws:iam::{OTHER}:role/Scanner", "x")
    session_for(target, moto_session)
    assert sts_backends[OTHER]["aws"].assumed_roles[-1].external_id is None


def test_assume_role_denied_names_the_role(moto_session: boto3.Session) -> None:
    inject_error(moto_session, "AssumeRole", "AccessDenied", service="sts")
    target = Target(OTHER, f"arn:aws:iam::{OTHER}:role/Scanner", "x")
    with pytest.raises(CollectError) as err:
        session_for(target, moto_session, external_id="ext-123")
    assert err.value.account == OTHER
    assert err.value.message.startswith(
        f"AccessDenied on sts:AssumeRole (role arn:aws:iam::{OTHER}:role/Scanner;"
    )
    assert not err.value.retryable


def test_the_restore_role_of_an_account_by_name():
    target = restore_target("111122223333", "IAMStewardRestore", "aws-us-gov")
    assert target.role_arn == "arn:aws-us-gov:iam::111122223333:role/IAMStewardRestore"
    assert target.account_id == "111122223333"
    with pytest.raises(CollectError, match="not an IAM role name"):
        restore_target("111122223333", "bad name")


# --- cheap per-account sessions (shared loader, refreshing credentials, cached clients) ---


def test_account_sessions_share_one_loader_and_cache_their_clients(aws_env) -> None:
    from moto import mock_aws

    from checks.accounts import shared_loader, shared_session
    from checks.collect import aws_client

    with mock_aws():
        base = shared_session("us-east-1")
        first = session_for(Target(OTHER, f"arn:aws:iam::{OTHER}:role/Scanner", "x"), base, external_id="ext-1")
        second = session_for(Target(THIRD, f"arn:aws:iam::{THIRD}:role/Scanner", "y"), base, external_id="ext-1")
        own = session_for(Target(None, None, "current credentials"), base)
        loaders = {id(s._session.get_component("data_loader")) for s in (base, first, second, own)}
        assert loaders == {id(shared_loader())}
        assert len(shared_loader().search_paths) == len(set(shared_loader().search_paths))  # no growth
        assert own is not base  # its own events: its counter does not count the others' AssumeRole

        iam = aws_client(first, "iam", 3)
        assert aws_client(first, "iam", 3) is iam and aws_client(second, "iam", 3) is not iam
        assert aws_client(base, "sts", 3) is aws_client(base, "sts", 3)  # one STS client assumes every role
        counter = ApiCallCounter()
        with counter.attached(first):  # attached after the client was built: still counted
            iam.list_users()
        iam.list_users()
        assert counter.calls == 1
        assert first.client("sts").get_caller_identity()["Account"] == OTHER
        assert second.client("sts").get_caller_identity()["Account"] == THIRD


def test_assumed_role_credentials_refresh_before_expiry(aws_env) -> None:
    from moto import mock_aws

    from checks.accounts import shared_session

    with mock_aws():
        target = Target(OTHER, f"arn:aws:iam::{OTHER}:role/Scanner", "x")
        session = session_for(target, shared_session("us-east-1"), external_id="ext-9", session_name="steward-r")
        roles = sts_backends[OTHER]["aws"].assumed_roles
        before = len(roles)
        key = session.get_credentials().get_frozen_credentials().access_key
        assert len(roles) == before  # an hour left: no new AssumeRole
        # 15 minutes: already inside botocore's refresh window, so the next use assumes again.
        short = session_for(target, shared_session("us-east-1"), external_id="ext-9",
                            session_name="steward-r", duration_seconds=900)
        assert len(roles) == before + 1
        assert short.get_credentials().get_frozen_credentials().access_key != key
        assert len(roles) == before + 2
        assert (roles[-1].external_id, roles[-1].session_name) == ("ext-9", "steward-r")


def test_caller_account_is_asked_once_and_checked_against_the_expected_account(moto_session: boto3.Session) -> None:
    counter = ApiCallCounter()
    with counter.attached(moto_session):
        assert caller_identity(moto_session) == (ACCOUNT_ID, "aws")
        assert caller_identity(moto_session, expected=ACCOUNT_ID) == (ACCOUNT_ID, "aws")
    assert counter.calls == 2
    with pytest.raises(CollectError, match=f"credentials belong to account {ACCOUNT_ID}, not 999999999999") as excinfo:
        caller_identity(moto_session, expected="999999999999")
    assert excinfo.value.account == "999999999999" and not excinfo.value.retryable
