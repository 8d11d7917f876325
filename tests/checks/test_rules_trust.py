"""Role trust rules: public roles and external accounts without an ExternalId."""

from __future__ import annotations

import json

import pytest

from checks.rules import trust as t
from tests.factories import ACCOUNT, OTHER_ACCOUNT, ctx, document, role, snapshot

THIRD_ACCOUNT = "777788889999"


def assume(principal, *, action="sts:AssumeRole", effect="Allow", **extra):
    return {"Effect": effect, "Principal": principal, "Action": action, **extra}


def only(results):
    assert len(results) == 1, results
    return results[0]


def public(*statements, **ctx_kwargs):
    return only(
        t.role_trust_public(
            snapshot(roles=[role("r", trust=document(*statements))]), ctx(**ctx_kwargs)
        )
    )


def external(*statements, **ctx_kwargs):
    snap = snapshot(roles=[role("r", trust=document(*statements))])
    return only(t.role_trust_external_no_external_id(snap, ctx(**ctx_kwargs)))


ORG = {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}
EXTERNAL_ID = {"StringEquals": {"sts:ExternalId": "vendor-7f3a"}}


# role-trust-public ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "principal",
    [
        "*",
        {"AWS": "*"},
        {"AWS": ["arn:aws:iam::111122223333:root", "*"]},
        {"AWS": "arn:aws:iam::*:root"},
    ],
)
def test_public_principal_fires(principal):
    finding = public(assume(principal))
    assert finding.failed
    assert finding.details["statement_index"] == 0
    assert finding.resource == f"arn:aws:iam::{ACCOUNT}:role/r"


@pytest.mark.parametrize("action", ["sts:AssumeRole", "sts:*", "*", "STS:AssumeRoleWith*"])
def test_any_assume_action_counts(action):
    assert public(assume("*", action=action)).failed


def test_tag_session_alone_is_not_an_assume_grant():
    assert not public(assume("*", action="sts:TagSession")).failed


def test_service_principal_is_quiet():
    assert not public(assume({"Service": "ec2.amazonaws.com"})).failed


def test_public_restricted_by_org_id_is_quiet():
    assert not public(assume("*", Condition=ORG)).failed


@pytest.mark.parametrize(
    "condition",
    [
        {"StringEquals": {"aws:PrincipalOrgID": "*"}},
        {"StringLike": {"aws:PrincipalOrgID": "o-*"}},
        {"StringEqualsIfExists": {"aws:PrincipalOrgID": "o-abc123"}},
        {"ForAllValues:StringEquals": {"aws:PrincipalOrgID": "o-abc123"}},
        {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/deployer"}},
        {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}},
    ],
)
def test_public_with_a_condition_that_does_not_restrict_fires(condition):
    assert public(assume("*", Condition=condition)).failed


@pytest.mark.parametrize(
    "condition",
    [
        {"ForAnyValue:StringEquals": {"aws:PrincipalOrgID": ["o-abc123", "o-def456"]}},
        {"StringEquals": {"AWS:PrincipalAccount": OTHER_ACCOUNT}},
        {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{OTHER_ACCOUNT}:role/*"}},
        {"ArnEquals": {"aws:SourceArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:alerts"}},
    ],
)
def test_public_with_a_restricting_condition_is_quiet(condition):
    assert not public(assume("*", Condition=condition)).failed


def test_external_id_alone_does_not_make_a_public_trust_private():
    finding = public(assume("*", Condition=EXTERNAL_ID))
    assert finding.failed and finding.details["external_id_only"] is True


def test_not_principal_allow_is_public():
    finding = public(
        {
            "Effect": "Allow",
            "NotPrincipal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
            "Action": "sts:AssumeRole",
        }
    )
    assert finding.failed


def test_deny_everyone_outside_the_org_restricts_a_public_allow():
    guard = assume(
        "*", effect="Deny", Condition={"StringNotEquals": {"aws:PrincipalOrgID": "o-abc123"}}
    )
    assert not public(assume("*"), guard).failed


def test_deny_with_an_extra_condition_does_not_restrict():
    guard = assume(
        "*",
        effect="Deny",
        Condition={
            "StringNotEquals": {"aws:PrincipalOrgID": "o-abc123"},
            "Bool": {"aws:SecureTransport": "false"},
        },
    )
    assert public(assume("*"), guard).failed


def test_unconditional_deny_to_everyone_cancels():
    assert not public(assume("*"), assume("*", effect="Deny")).failed


def test_second_statement_index_is_reported():
    finding = public(assume({"Service": "lambda.amazonaws.com"}), assume({"AWS": "*"}))
    assert finding.details["statement_index"] == 1


def test_trust_policy_as_json_text_is_read():
    snap = snapshot(roles=[role("r", trust=json.dumps(document(assume("*"))))])
    assert only(t.role_trust_public(snap, ctx())).failed


@pytest.mark.parametrize("trust", ["garbage", {"Version": "2012-10-17"}])
def test_unreadable_trust_gets_no_result(trust):
    snap = snapshot(roles=[role("r", trust=trust)])
    assert t.role_trust_public(snap, ctx()) == []
    assert t.role_trust_external_no_external_id(snap, ctx()) == []


def test_malformed_trust_statement_is_counted_not_fatal():
    finding = public(assume("*"), {"Effect": "Allow", "Action": "sts:AssumeRole"})  # no principal
    assert finding.failed and finding.details["malformed_statements"] == 1


# role-trust-external-no-external-id -----------------------------------------------------


@pytest.mark.parametrize(
    "principal",
    [
        {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
        {"AWS": OTHER_ACCOUNT},
        {"AWS": [f"arn:aws:iam::{OTHER_ACCOUNT}:role/ci/deployer"]},
        {"AWS": f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/vendor/session"},
    ],
)
def test_other_account_without_external_id_fires(principal):
    finding = external(assume(principal))
    assert finding.failed
    assert finding.details["external_accounts"] == [OTHER_ACCOUNT]
    assert finding.details["statement_index"] == 0


def test_external_accounts_are_sorted_and_deduplicated():
    finding = external(
        assume(
            {
                "AWS": [
                    f"arn:aws:iam::{THIRD_ACCOUNT}:root",
                    OTHER_ACCOUNT,
                    f"arn:aws:iam::{OTHER_ACCOUNT}:user/u",
                ]
            }
        )
    )
    assert finding.details["external_accounts"] == [OTHER_ACCOUNT, THIRD_ACCOUNT]


@pytest.mark.parametrize(
    "condition",
    [
        EXTERNAL_ID,
        {"StringLike": {"sts:ExternalId": "vendor-*"}},
        {"StringEquals": {"STS:EXTERNALID": "vendor-7f3a"}},
        {"StringEquals": {"sts:externalid": ["a1", "b2"]}},
    ],
)
def test_external_id_condition_is_quiet(condition):
    assert not external(assume({"AWS": OTHER_ACCOUNT}, Condition=condition)).failed


@pytest.mark.parametrize(
    "condition",
    [
        {"StringLike": {"sts:ExternalId": "*"}},
        {"StringEqualsIfExists": {"sts:ExternalId": "vendor-7f3a"}},
        {"StringNotEquals": {"sts:ExternalId": "x"}},
        ORG,
    ],
)
def test_condition_that_does_not_pin_an_external_id_fires(condition):
    assert external(assume({"AWS": OTHER_ACCOUNT}, Condition=condition)).failed


def test_own_account_is_not_external():
    assert not external(assume({"AWS": [f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT]})).failed


def test_internal_accounts_are_not_external():
    finding = external(
        assume({"AWS": [OTHER_ACCOUNT, THIRD_ACCOUNT]}),
        internal_accounts=frozenset({OTHER_ACCOUNT}),
    )
    assert finding.failed and finding.details["external_accounts"] == [THIRD_ACCOUNT]
    assert not external(
        assume({"AWS": OTHER_ACCOUNT}), internal_accounts=frozenset({OTHER_ACCOUNT})
    ).failed


@pytest.mark.parametrize(
    "principal",
    [
        {"Service": "ec2.amazonaws.com"},
        {"Federated": f"arn:aws:iam::{OTHER_ACCOUNT}:saml-provider/okta"},
        {"Federated": "cognito-identity.amazonaws.com"},
        "*",
    ],
)
def test_service_federated_and_wildcard_principals_are_not_external_accounts(principal):
    action = "sts:AssumeRoleWithWebIdentity" if "Federated" in principal else "sts:AssumeRole"
    assert not external(assume(principal, action=action)).failed


def test_unresolved_principal_is_noted_not_reported():
    finding = external(assume({"AWS": "AROAEXAMPLEDELETEDROLE"}))
    assert not finding.failed
    assert finding.details["unresolved_principals"] == ["AROAEXAMPLEDELETEDROLE"]


def test_deny_statement_to_an_account_is_not_a_grant():
    assert not external(assume({"AWS": OTHER_ACCOUNT}, effect="Deny")).failed


def test_external_id_in_one_statement_does_not_cover_another():
    finding = external(
        assume({"AWS": OTHER_ACCOUNT}, Condition=EXTERNAL_ID), assume({"AWS": THIRD_ACCOUNT})
    )
    assert finding.failed
    assert finding.details["external_accounts"] == [THIRD_ACCOUNT]
    assert finding.details["statement_index"] == 1
