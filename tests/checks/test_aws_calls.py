"""checks.aws_calls: the plumbing collection, accounts and remediation share (Stubber, no network)."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from checks import aws_calls, collect
from checks.aws_calls import (
    CollectError,
    aws_client,
    cache_clients,
    caller_account,
    caller_identity,
)


def _session() -> boto3.Session:
    return cache_clients(
        boto3.Session(aws_access_key_id="AKIATEST", aws_secret_access_key="secret", region_name="us-east-1")
    )


def test_caller_identity_reads_the_account_and_partition_in_one_call() -> None:
    session = _session()
    with Stubber(aws_client(session, "sts", 1)) as stub:
        stub.add_response("get_caller_identity", {
            "Account": "210987654321", "UserId": "AIDA", "Arn": "arn:aws-cn:iam::210987654321:user/steward"})
        assert caller_identity(session, 1) == ("210987654321", "aws-cn")
        stub.assert_no_pending_responses()


def test_caller_account_maps_a_refusal_to_one_line_naming_the_action() -> None:
    session = _session()
    with Stubber(aws_client(session, "sts", 1)) as stub:
        stub.add_client_error("get_caller_identity", "ExpiredToken", "The security token has expired")
        with pytest.raises(CollectError) as raised:
            caller_account(session, 1, account="123456789012")
    assert raised.value.account == "123456789012"
    assert raised.value.message == "AWS rejected the credentials on sts:GetCallerIdentity: ExpiredToken"
    assert raised.value.retryable is False


def test_throttling_is_retryable_and_counts_the_attempts() -> None:
    session = _session()
    with Stubber(aws_client(session, "sts", 1)) as stub:
        stub.add_client_error("get_caller_identity", "Throttling", "Rate exceeded", http_status_code=400)
        with pytest.raises(CollectError) as raised:
            caller_account(session, 1)
    assert raised.value.retryable is True
    assert raised.value.message.startswith("throttled on sts:GetCallerIdentity after 1 attempts")


def test_collect_keeps_exporting_the_plumbing_under_its_old_names() -> None:
    """Callers that import the plumbing from `checks.collect` get the same objects."""
    for name in ("CollectError", "ApiCallCounter", "aws_client", "aws_errors", "collect_error",
                 "error_code", "client_config", "observe_throttling", "DEFAULT_MAX_ATTEMPTS"):
        assert getattr(collect, name) is getattr(aws_calls, name), name


def test_client_config_counts_every_attempt_and_names_the_steward() -> None:
    config = aws_calls.client_config(5)
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 5}
    assert "iam-steward" in config.user_agent_extra
