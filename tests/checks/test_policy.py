"""Policy-document analysis: matcher, normalisation, admin/wildcard/escalation, trust parts."""

from __future__ import annotations

import json
import string
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checks.policy import (
    ESCALATION_METHODS,
    Condition,
    analyse_document,
    condition_restricts,
    load_document,
    normalise,
    pattern_covers,
    principal_account,
    requires_external_id,
    wildcard_match,
)
from tests.factories import allow, deny, document

# Documents shaped like the AWS managed policies the design notes warn about.
READ_ONLY_LIKE = document(
    allow(
        [
            "ec2:Describe*",
            "iam:Get*",
            "iam:List*",
            "s3:Get*",
            "s3:List*",
            "lambda:List*",
            "cloudformation:Describe*",
            "sts:GetCallerIdentity",
        ]
    )
)
POWER_USER_LIKE = document(
    {"Effect": "Allow", "NotAction": ["iam:*", "organizations:*", "account:*"], "Resource": "*"},
    allow(["iam:CreateServiceLinkedRole", "iam:ListRoles", "organizations:DescribeOrganization"]),
)
DENY_ALL = document(deny("*"))
QUARANTINE_LIKE = document(
    deny(
        [
            "iam:AttachRolePolicy",
            "iam:AttachUserPolicy",
            "iam:CreateAccessKey",
            "iam:CreatePolicyVersion",
            "iam:PassRole",
            "iam:PutUserPolicy",
            "ec2:RunInstances",
            "lambda:CreateFunction",
            "lambda:UpdateFunctionCode",
            "s3:PutBucketPolicy",
        ]
    )
)
MFA_GUARD = deny("*", Condition={"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}})


def analyse(*statements):
    result = analyse_document(document(*statements))
    assert result is not None
    return result


# Wildcard matcher -----------------------------------------------------------------------

literal_text = st.text(alphabet=st.characters(blacklist_characters="*?"), max_size=30)
ascii_literal = st.text(
    alphabet=string.ascii_letters + string.digits + ":-_/.[]()+$^\\", max_size=20
)


@given(literal_text, st.text(max_size=30))
def test_pattern_without_wildcards_matches_only_itself_ignoring_case(pattern, value):
    assert wildcard_match(pattern, value) == (pattern.lower() == value.lower())


@given(ascii_literal)
def test_pattern_without_wildcards_matches_its_own_other_case(pattern):
    # IAM action names are ASCII; beyond ASCII, upper() and lower() do not round-trip.
    assert wildcard_match(pattern, pattern.upper())
    assert wildcard_match(pattern.swapcase(), pattern)


@given(st.text(max_size=40), st.integers(min_value=1, max_value=3))
def test_star_matches_everything(value, stars):
    assert wildcard_match("*" * stars, value)


@given(st.text(max_size=30))
def test_every_pattern_matches_its_own_text(pattern):
    assert wildcard_match(pattern, pattern)


@given(ascii_literal)
def test_question_mark_matches_exactly_one_character(value):
    assert wildcard_match("?" * len(value), value)
    assert not wildcard_match("?" * (len(value) + 1), value)
    if value:
        assert not wildcard_match("?" * (len(value) - 1), value)


@given(ascii_literal, ascii_literal, ascii_literal)
def test_prefix_star_matches_exactly_the_strings_with_that_prefix(prefix, rest, other):
    assert wildcard_match(prefix + "*", prefix + rest)
    assert wildcard_match(prefix + "*", other) == other.lower().startswith(prefix.lower())


def test_arns_can_match_case_sensitively():
    assert wildcard_match("arn:aws:iam::*:role/App", "arn:aws:iam::1:role/app")
    assert not wildcard_match(
        "arn:aws:iam::*:role/App", "arn:aws:iam::1:role/app", ignore_case=False
    )


def test_regex_metacharacters_are_literal():
    assert not wildcard_match("s3:Get.bject", "s3:GetObject")
    assert wildcard_match("s3:Get?bject", "s3:GetObject")
    assert not wildcard_match("[a-z]*", "abc")


cover_text = st.text(alphabet="ab:*?", max_size=6)


@settings(max_examples=500)
@given(cover_text, cover_text, st.data())
def test_pattern_covers_is_sound(general, specific, data):
    """If `general` covers `specific`, it matches every concrete action `specific` matches."""
    if not pattern_covers(general, specific):
        return
    fill = st.text(alphabet="ab:", max_size=3)
    concrete = "".join(
        data.draw(fill) if ch == "*" else data.draw(st.sampled_from("ab:")) if ch == "?" else ch
        for ch in specific
    )
    assert wildcard_match(specific, concrete)
    assert wildcard_match(general, concrete)


def test_pattern_covers_common_cases():
    assert pattern_covers("*", "ec2:*")
    assert pattern_covers("ec2:*", "EC2:RunInstances")
    assert pattern_covers("iam:*", "iam:Create*")
    assert not pattern_covers("iam:Create*", "iam:*")
    assert not pattern_covers("iam:CreateUser", "iam:Create*")
    assert not pattern_covers("iam:?", "iam:*")  # `?` matches `*` as text, not as a set


# Loading and normalising ----------------------------------------------------------------


def test_statement_may_be_a_single_object():
    doc = {"Version": "2012-10-17", "Statement": allow("*")}
    assert analyse_document(doc).is_admin


def test_string_and_list_forms_and_effect_case():
    a = analyse({"Effect": "allow", "Action": ["iam:CreatePolicyVersion"], "Resource": ["*"]})
    b = analyse({"Effect": "ALLOW", "Action": "iam:createpolicyversion", "Resource": "*"})
    assert a.escalation_methods == b.escalation_methods == ("CreateNewPolicyVersion",)


def test_json_text_documents_are_decoded_url_encoded_or_not():
    text = json.dumps(document(allow("*")))
    assert load_document(text) == document(allow("*"))
    assert load_document(urllib.parse.quote(text)) == document(allow("*"))
    assert analyse_document(urllib.parse.quote(text)).is_admin


@pytest.mark.parametrize(
    "junk", [None, 42, "not json", "[1, 2]", ["Statement"], {"Version": "x"}, {"Statement": "nope"}]
)
def test_unreadable_documents_are_none_not_a_crash(junk):
    assert normalise(junk) is None
    assert analyse_document(junk) is None


def test_malformed_statements_are_skipped_and_counted():
    doc = document(
        allow("ec2:*"),
        "junk",
        {"Effect": "Maybe", "Action": "*", "Resource": "*"},
        {"Effect": "Allow", "Action": "*", "NotAction": "iam:*", "Resource": "*"},
        {"Effect": "Allow", "Action": 7, "Resource": "*"},
        {"Effect": "Allow", "Action": "*"},  # identity statement without a resource
        {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": ["x"]},
    )
    analysis = analyse_document(doc)
    assert analysis.malformed == 6
    assert analysis.statements == 7
    assert not analysis.is_admin
    assert [g.actions for g in analysis.service_wildcards] == [("ec2:*",)]


def test_condition_values_of_any_json_scalar_are_read():
    normalised = normalise(
        document(
            allow(
                "s3:*",
                Condition={
                    "Bool": {"aws:SecureTransport": True},
                    "NumericLessThan": {"s3:max-keys": 10},
                },
            )
        )
    )
    assert normalised.malformed == 0
    assert {c.values for c in normalised.statements[0].conditions} == {("true",), ("10",)}


# Admin ----------------------------------------------------------------------------------


def test_allow_star_on_star_is_admin():
    assert analyse(allow("*")).is_admin


def test_deny_star_cancels_allow_star():
    a = analyse(allow("*"), deny("*"))
    assert not a.is_admin
    assert a.service_wildcards == ()
    assert a.escalation_methods == ()


def test_deny_of_iam_turns_admin_into_a_wildcard_grant():
    a = analyse(allow("*"), deny("iam:*"))
    assert not a.is_admin
    assert [(g.actions, g.excluded) for g in a.service_wildcards] == [(("*",), ("iam:*",))]
    assert not {m for m in a.escalation_methods if "iam:passrole" in ESCALATION_METHODS[m]}


def test_carve_out_outside_iam_is_still_admin():
    a = analyse(allow("*"), deny(["aws-portal:*", "ce:*"]))
    assert a.is_admin
    assert a.admin[0].excluded == ("aws-portal:*", "ce:*")


def test_conditional_or_resource_scoped_deny_does_not_cancel():
    assert analyse(allow("*"), MFA_GUARD).is_admin
    assert analyse(allow("*"), deny("*", "arn:aws:s3:::secrets/*")).is_admin


def test_conditioned_allow_of_star_is_admin_marked_conditional():
    a = analyse(allow("*", Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    assert a.is_admin and a.admin[0].conditional


def test_star_on_a_scoped_resource_is_not_admin_but_a_wildcard():
    a = analyse(allow("*", "arn:aws:s3:::bucket/*"))
    assert not a.is_admin
    assert [g.actions for g in a.service_wildcards] == [("*",)]


def test_not_action_that_leaves_iam_whole_is_admin():
    a = analyse({"Effect": "Allow", "NotAction": "s3:DeleteBucket", "Resource": "*"})
    assert a.is_admin and a.admin[0].not_action


def test_power_user_is_not_admin_but_a_wildcard_with_some_escalation():
    a = analyse_document(POWER_USER_LIKE)
    assert not a.is_admin
    (grant,) = a.service_wildcards
    assert grant.not_action and grant.excluded == ("account:*", "iam:*", "organizations:*")
    methods = set(a.escalation_methods)
    assert "EditExistingLambdaFunctionWithRole" in methods
    assert not {m for m in methods if any(x.startswith("iam:") for x in ESCALATION_METHODS[m])}


def test_read_only_prefix_wildcards_are_nothing():
    a = analyse_document(READ_ONLY_LIKE)
    assert not a.is_admin
    assert a.service_wildcards == ()
    assert a.escalation_methods == ()


@pytest.mark.parametrize("doc", [DENY_ALL, QUARANTINE_LIKE])
def test_deny_lists_never_trip_anything(doc):
    a = analyse_document(doc)
    assert a.deny_only
    assert (a.is_admin, a.service_wildcards, a.escalation_methods) == (False, (), ())


# Service wildcards ----------------------------------------------------------------------


def test_service_wildcards_any_case_any_resource():
    a = analyse(allow(["EC2:*", "s3:GetObject"]), allow("iam:*", "arn:aws:iam::1:role/x"))
    assert sorted(g.actions[0] for g in a.service_wildcards) == ["EC2:*", "iam:*"]


def test_partial_carve_out_leaves_the_service_wildcard():
    a = analyse(allow("ec2:*"), deny("ec2:TerminateInstances"))
    assert [g.actions for g in a.service_wildcards] == [("ec2:*",)]


def test_deny_of_the_whole_service_cancels_its_wildcard():
    a = analyse(allow(["ec2:*", "s3:*"]), deny("EC2:*"))
    assert [g.actions for g in a.service_wildcards] == [("s3:*",)]


def test_deny_not_action_leaves_only_what_it_names():
    a = analyse(allow("*"), {"Effect": "Deny", "NotAction": ["s3:*", "sqs:Send*"], "Resource": "*"})
    assert not a.is_admin
    assert [g.actions for g in a.service_wildcards] == [("s3:*",)]
    assert a.escalation_methods == ()


# Escalation -----------------------------------------------------------------------------


def test_single_action_escalation():
    assert analyse(allow("iam:CreatePolicyVersion")).escalation_methods == (
        "CreateNewPolicyVersion",
    )


def test_question_mark_wildcard_in_actions():
    assert "CreateNewPolicyVersion" in analyse(allow("iam:?reatePolicyVersion")).escalation_methods


def test_passrole_with_runinstances_in_one_document():
    a = analyse(allow(["iam:PassRole", "ec2:RunInstances"]))
    assert "CreateEC2WithExistingIP" in a.escalation_methods


def test_passrole_to_a_named_role_is_not_escalation_but_to_every_role_is():
    named = analyse(
        allow("iam:PassRole", "arn:aws:iam::111122223333:role/app"), allow("ec2:RunInstances")
    )
    every = analyse(
        allow("iam:PassRole", "arn:aws:iam::111122223333:role/*"), allow("ec2:RunInstances")
    )
    assert named.escalation_methods == ()
    assert "CreateEC2WithExistingIP" in every.escalation_methods


def test_deny_cancels_an_escalation_action():
    assert analyse(allow("iam:*"), deny("iam:*")).escalation_methods == ()
    a = analyse(allow(["iam:PassRole", "ec2:RunInstances"]), deny("ec2:Run*"))
    assert "CreateEC2WithExistingIP" not in a.escalation_methods


def test_iam_star_allows_every_iam_only_method():
    a = analyse(allow("iam:*"))
    iam_only = [
        m for m, acts in ESCALATION_METHODS.items() if all(x.startswith("iam:") for x in acts)
    ]
    assert set(iam_only) <= set(a.escalation_methods)
    assert "CreateEC2WithExistingIP" not in a.escalation_methods


def test_conditioned_escalation_is_reported_and_marked():
    a = analyse(
        allow("iam:CreatePolicyVersion", Condition={"Bool": {"aws:MultiFactorAuthPresent": "true"}})
    )
    assert a.escalation_methods == ("CreateNewPolicyVersion",)
    assert a.escalation_conditional
    assert not analyse(allow("iam:CreatePolicyVersion")).escalation_conditional


# Cloudsplaining: the data agrees on plain documents; its matcher is why we use our own.

cloudsplaining = pytest.importorskip("cloudsplaining.scan.policy_document")


def cs_methods(doc):
    return {e["type"] for e in cloudsplaining.PolicyDocument(doc).allows_privilege_escalation}


@pytest.mark.parametrize(
    "doc",
    [
        document(allow("iam:*")),
        document(
            allow(
                [
                    "iam:PassRole",
                    "ec2:RunInstances",
                    "lambda:CreateFunction",
                    "lambda:InvokeFunction",
                ]
            )
        ),
        document(allow("iam:Create*")),
        document(allow(["glue:UpdateDevEndpoint", "iam:UpdateAssumeRolePolicy"])),
    ],
)
def test_same_methods_as_cloudsplaining_on_plain_documents(doc):
    assert set(analyse_document(doc).escalation_methods) == cs_methods(doc)


def test_cloudsplaining_pin_still_mishandles_deny_and_wildcards():
    """Why the matcher is ours (cloudsplaining 0.9.1). If this fails after an upgrade,
    reconsider delegating to `PolicyDocument.allows_privilege_escalation`."""
    scoped_deny = document(allow("iam:*"), deny("iam:*", "arn:aws:iam::1:role/x"))
    deny_not_action = document(
        allow("iam:*"), {"Effect": "Deny", "NotAction": "s3:*", "Resource": "*"}
    )
    question_mark = document(allow("iam:?reatePolicyVersion"))
    assert cs_methods(scoped_deny) == set()  # the scoped Deny cancelled iam:* everywhere
    assert cs_methods(deny_not_action) != set()  # the Deny NotAction cancelled nothing
    assert cs_methods(question_mark) == set()  # `?` not understood
    assert analyse_document(scoped_deny).escalation_methods != ()
    assert analyse_document(deny_not_action).escalation_methods == ()
    assert analyse_document(question_mark).escalation_methods == ("CreateNewPolicyVersion",)


# Trust building blocks ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "account"),
    [
        ("444455556666", "444455556666"),
        ("arn:aws:iam::444455556666:root", "444455556666"),
        ("arn:aws:iam::444455556666:role/path/deployer", "444455556666"),
        ("arn:aws:sts::444455556666:assumed-role/r/s", "444455556666"),
        ("arn:aws-us-gov:iam::444455556666:user/u", "444455556666"),
        ("*", "*"),
        ("arn:aws:iam::*:root", "*"),
        ("AROAEXAMPLEDELETEDROLE", None),
    ],
)
def test_principal_account(value, account):
    assert principal_account(value) == account


@pytest.mark.parametrize(
    ("operator", "key", "values", "restricts"),
    [
        ("StringEquals", "aws:principalorgid", ("o-abc123",), True),
        ("ForAnyValue:StringLike", "aws:principalorgpaths", ("o-abc/r-1/*",), True),
        ("ArnLike", "aws:principalarn", ("arn:aws:iam::111122223333:role/*",), True),
        ("StringEquals", "aws:principalorgid", ("*",), False),
        ("StringLike", "aws:principalorgid", ("o-*",), False),
        ("ArnLike", "aws:principalarn", ("arn:aws:iam::*:role/admin",), False),
        ("StringLike", "aws:principalarn", ("*:role/admin",), False),
        ("StringEqualsIfExists", "aws:principalorgid", ("o-abc123",), False),
        ("ForAllValues:StringEquals", "aws:principalorgid", ("o-abc123",), False),
        ("StringNotEquals", "aws:principalorgid", ("o-abc123",), False),
        ("StringEquals", "aws:principalorgid", ("o-abc123", "*"), False),
        ("IpAddress", "aws:sourceip", ("10.0.0.0/8",), False),
        ("StringEquals", "sts:externalid", ("secret",), False),
    ],
)
def test_condition_restricts(operator, key, values, restricts):
    assert condition_restricts(Condition(operator, key, values)) is restricts


@pytest.mark.parametrize(
    ("operator", "values", "required"),
    [
        ("StringEquals", ("abc",), True),
        ("StringLike", ("abc-*",), True),
        ("StringLike", ("*",), False),
        ("StringEqualsIfExists", ("abc",), False),
        ("StringNotEquals", ("abc",), False),
    ],
)
def test_requires_external_id(operator, values, required):
    assert requires_external_id([Condition(operator, "sts:externalid", values)]) is required
