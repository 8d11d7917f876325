"""The right-sizing proposal (pure): what goes, what stays, never more than before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from checks.rightsize import UsageView, never_grants_more, propose
from checks.usage import ActionUsage, PrincipalUsage, ServiceUsage

NOW = datetime(2026, 11, 1, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=45)


def used(days):
    return NOW - timedelta(days=days)


def principal(arn="arn:aws:iam::111122223333:role/app", **services):
    return PrincipalUsage(arn, NOW, tuple(ServiceUsage(ns, last_authenticated=v[0] if isinstance(v, tuple) else v,
                                                       actions=v[1] if isinstance(v, tuple) else None)
                                          for ns, v in services.items()))


def doc(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


SIX = doc({"Effect": "Allow", "Action": ["s3:*", "dynamodb:*", "lambda:InvokeFunction", "sqs:*", "sns:Publish",
                                         "kms:Decrypt"], "Resource": "*"})


def test_role_using_two_of_six_services_keeps_those_two():
    usage = principal(s3=None, dynamodb=used(100), sqs=None, sns=None, kms=used(3),
                      **{"lambda": (used(2), (ActionUsage("lambda:InvokeFunction", used(2)),))})
    p = propose(SIX, UsageView((usage,), CUTOFF))
    assert p.document["Statement"] == [{"Effect": "Allow", "Action": ["lambda:InvokeFunction", "kms:Decrypt"],
                                        "Resource": "*"}]
    assert p.removed == ("s3:*", "dynamodb:*", "sqs:*", "sns:Publish")
    assert p.summary() == "removes s3:*, dynamodb:*, sqs:*, sns:Publish; keeps lambda:InvokeFunction, kms:Decrypt"


def test_deny_resource_scoping_and_conditions_are_kept_as_written():
    scoped = {"Sid": "Data", "Effect": "Allow", "Action": ["s3:GetObject", "dynamodb:GetItem"],
              "Resource": ["arn:aws:s3:::bucket/*", "arn:aws:dynamodb:*:*:table/t"],
              "Condition": {"Bool": {"aws:SecureTransport": "true"}}}
    deny = {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}
    usage = principal(s3=(used(1), (ActionUsage("s3:GetObject", used(1)),)), dynamodb=None)
    p = propose(doc(scoped, deny), UsageView((usage,), CUTOFF))
    assert p.document["Statement"] == [{**scoped, "Action": ["s3:GetObject"]}, deny]


def test_an_exact_action_tracked_and_unused_goes_but_a_wildcard_in_a_used_service_stays():
    usage = principal(**{"lambda": (used(1), (ActionUsage("lambda:InvokeFunction", used(1)),
                                               ActionUsage("lambda:DeleteFunction", None)))})
    p = propose(doc({"Effect": "Allow", "Action": ["lambda:DeleteFunction", "lambda:Get*"], "Resource": "*"}),
                UsageView((usage,), CUTOFF))
    assert p.removed == ("lambda:DeleteFunction",) and p.kept == ("lambda:Get*",)


def test_star_and_not_action_become_the_used_services():
    usage = principal(s3=used(1), ec2=None, iam=None)
    star = propose(doc({"Effect": "Allow", "Action": "*", "Resource": "*"}), UsageView((usage,), CUTOFF))
    assert star.document["Statement"][0]["Action"] == "s3:*" and star.narrowed == ("*",)
    na = propose(doc({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}), UsageView((usage,), CUTOFF))
    assert na.document["Statement"] == [{"Effect": "Allow", "Resource": "*", "Action": ["s3:*"]}]
    partly = propose(doc({"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"}),
                     UsageView((usage,), CUTOFF))
    assert partly.document == doc({"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"})
    assert partly.notes


def test_shared_policy_keeps_what_any_holder_used_and_unknown_is_kept():
    a = principal("arn:aws:iam::111122223333:role/a", s3=used(1), sqs=None)
    b = principal("arn:aws:iam::111122223333:role/b", s3=None, sqs=used(2))
    p = propose(doc({"Effect": "Allow", "Action": ["s3:*", "sqs:*", "sns:*"], "Resource": "*"}),
                UsageView((a, b), CUTOFF))
    assert not p.changed  # sns not reported: unknown, kept
    c = principal("arn:aws:iam::111122223333:role/c", s3=None, sqs=None, sns=None)
    p = propose(doc({"Effect": "Allow", "Action": ["s3:*", "sns:*"], "Resource": "*"}),
                UsageView((a, c), CUTOFF))
    assert p.removed == () and p.kept == ("s3:*", "sns:*")  # a did not report sns
    p = propose(doc({"Effect": "Allow", "Action": ["s3:*", "sqs:*"], "Resource": "*"}), UsageView((a, c), CUTOFF))
    assert p.removed == ("sqs:*",)


def test_never_grants_more_catches_a_widened_statement():
    original = doc({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"},
                   {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::secret/*"})
    assert never_grants_more(original, original) == []
    wider = doc({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"})
    problems = never_grants_more(original, wider)
    assert any("Deny" in p for p in problems) and any("s3:*" in p for p in problems)
    moved = doc({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
                {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::secret/*"})
    assert never_grants_more(original, moved)


def test_unreadable_document_is_refused():
    with pytest.raises(ValueError):
        propose("not json", UsageView((), CUTOFF))


def test_the_rule_judges_a_group_by_its_members_and_suggests_a_replacement_for_aws_policies():
    from bot.core.decisions import buttons_for
    from checks.rules.usage import unused_permissions
    from tests.factories import ACCOUNT, ago, ctx, group, managed, ref, snapshot, user
    from tests.factories import allow as grant

    team = managed("TeamPolicy", grant(["s3:*", "sqs:*"]))
    aws = managed("AmazonSQSFullAccess", grant(["sqs:*"]), aws=True)

    def usage_of(name, **services):
        arn = f"arn:aws:iam::{ACCOUNT}:user/{name}"
        return arn, PrincipalUsage(arn, ago(0), tuple(ServiceUsage(ns, last_authenticated=w)
                                                      for ns, w in services.items()))

    snap = snapshot(
        users=[user("ann", groups=("devs",)), user("ben", groups=("devs",), attached_policies=(ref(aws),))],
        groups=[group("devs", attached_policies=(ref(team),))], policies=[team, aws],
        usage=dict([usage_of("ann", s3=ago(2), sqs=None), usage_of("ben", s3=None, sqs=None)]))
    results = {(r.resource.rsplit(":", 1)[1], r.sub_key): r for r in unused_permissions(snap, ctx())}
    on_group = results[("group/devs", team.arn)]
    assert on_group.failed and on_group.details["removes"] == ["sqs:*"] and on_group.owner is None
    on_aws = results[("user/ben", aws.arn)]
    assert on_aws.failed and on_aws.details["policy_kind"] == "aws" and on_aws.details["empty"]
    assert on_aws.details["suggested_name"] == "ben-AmazonSQSFullAccess-rightsized"
    assert [b.label for b in buttons_for("unused-permissions", on_aws.details)] == ["Show policy JSON", "Keep…",
                                                                                   "Not mine"]
    # No usage collected: nothing judged (never "unused" for lack of data).
    assert unused_permissions(snapshot(users=[user("ann")]), ctx()) == []
