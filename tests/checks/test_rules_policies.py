"""Identity-policy rules: firing, quiet and edge cases, granularity and caching."""

from __future__ import annotations

from dataclasses import replace

import pytest

from checks import policy
from checks.model import PolicyRef, Status
from checks.rules import policies as p
from tests.factories import (
    ACCOUNT,
    allow,
    ctx,
    deny,
    group,
    inline,
    managed,
    ref,
    role,
    snapshot,
    user,
)

ADMIN = managed("AdministratorAccess", allow("*"), aws=True)
DENY_ALL = managed("AWSDenyAll", deny("*"), aws=True)
QUARANTINE_V2 = managed(
    "AWSCompromisedKeyQuarantineV2",
    deny(
        [
            "iam:AttachUserPolicy",
            "iam:CreateAccessKey",
            "iam:PassRole",
            "ec2:RunInstances",
            "lambda:CreateFunction",
        ]
    ),
    aws=True,
)
READ_ONLY = managed(
    "ReadOnlyAccess", allow(["ec2:Describe*", "iam:Get*", "iam:List*", "s3:Get*"]), aws=True
)
EC2_FULL = managed("Ec2Full", allow("ec2:*"))
PASS_ROLE = managed("PassAnyRole", allow("iam:PassRole"))
RUN_INSTANCES = managed("RunInstances", allow("ec2:RunInstances"))

POLICY_RULES = [p.admin_policy, p.service_wildcard_policy, p.privilege_escalation_policy]


def by_key(results):
    """{(resource, sub_key): result}, asserting each pair appears once."""
    out = {}
    for r in results:
        assert (r.resource, r.sub_key) not in out, r
        out[(r.resource, r.sub_key)] = r
    return out


def failed(results):
    return [r for r in results if r.failed]


# user-direct-policy ---------------------------------------------------------------------


def test_user_direct_policy_one_finding_per_policy():
    alice = user(
        "alice",
        attached_policies=(ref(READ_ONLY),),
        inline_policies=(inline("mine", allow("s3:GetObject")),),
    )
    results = by_key(p.user_direct_policy(snapshot(users=[alice], policies=[READ_ONLY]), ctx()))
    managed_finding = results[(alice.arn, READ_ONLY.arn)]
    inline_finding = results[(alice.arn, "inline:mine")]
    assert managed_finding.failed and inline_finding.failed
    assert managed_finding.details == {
        "policy_arn": READ_ONLY.arn,
        "principal_type": "user",
        "principal_name": "alice",
    }
    assert inline_finding.details["policy_name"] == "mine"
    assert (
        "policy_arn" not in inline_finding.details and "policy_name" not in managed_finding.details
    )
    assert len(results) == 2


def test_user_without_policies_gets_one_pass():
    (only,) = p.user_direct_policy(snapshot(users=[user("bob", groups=("devs",))]), ctx())
    assert only.status is Status.PASS and only.sub_key == ""


@pytest.mark.parametrize("quarantine", [DENY_ALL, QUARANTINE_V2])
def test_aws_quarantine_attachments_are_not_direct_policy_findings(quarantine):
    alice = user("alice", attached_policies=(ref(quarantine),))
    (only,) = p.user_direct_policy(snapshot(users=[alice], policies=[quarantine]), ctx())
    assert not only.failed and only.details["reduces_access"]


def test_aws_quarantine_is_recognised_even_without_its_document():
    alice = user("alice", attached_policies=(ref(QUARANTINE_V2),))
    (only,) = p.user_direct_policy(snapshot(users=[alice]), ctx())
    assert not only.failed


def test_deny_only_inline_quarantine_is_not_a_finding_but_a_mixed_one_is():
    alice = user(
        "alice",
        inline_policies=(
            inline("steward-quarantine", deny("*")),
            inline("mixed", deny("iam:*"), allow("s3:GetObject")),
        ),
    )
    results = by_key(p.user_direct_policy(snapshot(users=[alice]), ctx()))
    assert not results[(alice.arn, "inline:steward-quarantine")].failed
    assert results[(alice.arn, "inline:mixed")].failed


def test_direct_attachment_with_missing_document_is_still_reported():
    orphan = PolicyRef(name="Gone", arn=f"arn:aws:iam::{ACCOUNT}:policy/Gone")
    (only,) = p.user_direct_policy(snapshot(users=[user(attached_policies=(orphan,))]), ctx())
    assert only.failed and only.details["policy_arn"] == orphan.arn


def test_user_direct_policy_ignores_groups_and_roles():
    snap = snapshot(
        groups=[group(attached_policies=(ref(ADMIN),))],
        roles=[role(attached_policies=(ref(ADMIN),))],
        policies=[ADMIN],
    )
    assert p.user_direct_policy(snap, ctx()) == []


# admin-policy ---------------------------------------------------------------------------


def test_admin_policy_fires_per_principal_and_policy():
    alice = user("alice", attached_policies=(ref(ADMIN), ref(READ_ONLY)))
    results = by_key(p.admin_policy(snapshot(users=[alice], policies=[ADMIN, READ_ONLY]), ctx()))
    finding = results[(alice.arn, ADMIN.arn)]
    assert finding.failed
    assert finding.details["actions"] == ["*"]
    assert finding.details["policy_arn"] == ADMIN.arn
    assert finding.details["principal_type"] == "user"
    assert not results[(alice.arn, READ_ONLY.arn)].failed


def test_admin_inline_on_role_with_owner_tag():
    app = role(
        "app", tags={"owner": "team@example.com"}, inline_policies=(inline("god", allow("*")),)
    )
    (only,) = p.admin_policy(snapshot(roles=[app]), ctx())
    assert only.failed and only.sub_key == "inline:god"
    assert only.details["policy_name"] == "god" and only.details["principal_type"] == "role"
    assert only.owner == "team@example.com"


def test_deny_in_the_same_policy_cancels_admin():
    alice = user("alice", inline_policies=(inline("nothing", allow("*"), deny("*")),))
    (only,) = p.admin_policy(snapshot(users=[alice]), ctx())
    assert not only.failed


def test_group_policy_is_reported_on_the_group_only():
    devs = group("devs", attached_policies=(ref(ADMIN),))
    alice = user("alice", groups=("devs",))
    snap = snapshot(users=[alice], groups=[devs], policies=[ADMIN])
    for rule in POLICY_RULES:
        results = by_key(rule(snap, ctx()))
        assert (alice.arn, ADMIN.arn) not in results
        assert results[(alice.arn, "")].status is Status.PASS
    (finding,) = failed(p.admin_policy(snap, ctx()))
    assert finding.resource == devs.arn and finding.owner is None
    assert finding.details["principal_type"] == "group"


def test_missing_document_gets_no_result_and_is_listed_as_a_gap():
    orphan = PolicyRef(name="Gone", arn=f"arn:aws:iam::{ACCOUNT}:policy/Gone")
    alice = user("alice", attached_policies=(orphan, ref(READ_ONLY)))
    bob = user("bob", attached_policies=(orphan,))
    snap = snapshot(users=[alice, bob], policies=[READ_ONLY])
    for rule in POLICY_RULES[:2]:
        results = rule(snap, ctx())
        assert {(r.resource, r.sub_key) for r in results} == {(alice.arn, READ_ONLY.arn)}
    # The escalation check judges the principal as a whole: with a document unread it
    # cannot pass anyone (it could still fail them).
    assert p.privilege_escalation_policy(snap, ctx()) == []
    assert {(u.principal_arn, u.reason) for u in policy.unevaluated_policies(snap)} == {
        (alice.arn, "missing document"),
        (bob.arn, "missing document"),
    }


def test_unreadable_inline_document_gets_no_result():
    alice = user("alice", inline_policies=(replace(inline("bad"), document="{not json"),))
    assert p.admin_policy(snapshot(users=[alice]), ctx()) == []


def test_malformed_statements_are_counted_in_details():
    doc = {"Statement": [allow("*"), {"Effect": "Allow"}]}
    alice = user("alice", inline_policies=(replace(inline("x"), document=doc),))
    (only,) = p.admin_policy(snapshot(users=[alice]), ctx())
    assert only.failed and only.details["malformed_statements"] == 1


def test_service_linked_roles_are_not_evaluated():
    slr = role(
        "AWSServiceRoleForSupport",
        path="/aws-service-role/support.amazonaws.com/",
        attached_policies=(ref(ADMIN),),
    )
    snap = snapshot(roles=[slr], policies=[ADMIN])
    for rule in POLICY_RULES:
        assert rule(snap, ctx()) == []


def test_principal_with_no_policies_passes_once_per_check():
    snap = snapshot(users=[user()], groups=[group()], roles=[role()])
    for rule in POLICY_RULES:
        results = rule(snap, ctx())
        assert [(r.sub_key, r.status) for r in results] == [("", Status.PASS)] * 3


# service-wildcard-policy ----------------------------------------------------------------


def test_service_wildcard_fires_with_actions():
    alice = user("alice", attached_policies=(ref(EC2_FULL),))
    (only,) = p.service_wildcard_policy(snapshot(users=[alice], policies=[EC2_FULL]), ctx())
    assert only.failed and only.details["actions"] == ["ec2:*"]


def test_read_only_prefix_wildcards_are_quiet():
    alice = user("alice", attached_policies=(ref(READ_ONLY),))
    snap = snapshot(users=[alice], policies=[READ_ONLY])
    for rule in POLICY_RULES:
        assert failed(rule(snap, ctx())) == []


def test_admin_policy_is_not_repeated_as_a_service_wildcard():
    both = managed("Both", allow("*"), allow("ec2:*"))
    alice = user("alice", attached_policies=(ref(both),))
    (only,) = p.service_wildcard_policy(snapshot(users=[alice], policies=[both]), ctx())
    assert not only.failed and only.details["covered_by"] == "admin-policy"


def test_not_action_power_user_is_a_wildcard_not_admin():
    power = managed(
        "PowerUserAccess",
        {
            "Effect": "Allow",
            "NotAction": ["iam:*", "organizations:*", "account:*"],
            "Resource": "*",
        },
        aws=True,
    )
    alice = user("alice", attached_policies=(ref(power),))
    snap = snapshot(users=[alice], policies=[power])
    assert failed(p.admin_policy(snap, ctx())) == []
    (wild,) = failed(p.service_wildcard_policy(snap, ctx()))
    assert wild.details["not_action"] and wild.details["excluded"] == [
        "account:*",
        "iam:*",
        "organizations:*",
    ]


def test_deny_all_never_trips_policy_checks():
    alice = user("alice", attached_policies=(ref(DENY_ALL), ref(QUARANTINE_V2)))
    snap = snapshot(users=[alice], policies=[DENY_ALL, QUARANTINE_V2])
    for rule in POLICY_RULES:
        results = rule(snap, ctx())
        assert results and failed(results) == []


# privilege-escalation-policy ------------------------------------------------------------


# Semantics changed by issue 11: the check is principal-level (sub_key ""), judged on the
# principal's effective permissions, so the per-policy and `combined` Results are gone;
# what each old test protected is asserted on the principal's one Result instead.


def test_escalation_in_one_policy():
    alice = user("alice", inline_policies=(inline("versions", allow("iam:CreatePolicyVersion")),))
    (finding,) = p.privilege_escalation_policy(snapshot(users=[alice], policies=[EC2_FULL]), ctx())
    assert (finding.resource, finding.sub_key) == (alice.arn, "")
    assert finding.failed
    assert finding.details["escalation_methods"] == ["CreateNewPolicyVersion"]
    assert finding.details["actions"] == ["iam:createpolicyversion"]
    assert finding.details["conditional"] is False
    assert finding.details["policies"] == ["inline:versions"]
    assert finding.details["policy_name"] == "versions"  # one granting policy: removable


def test_escalation_split_over_two_policies_is_found_on_the_principal():
    alice = user("alice", attached_policies=(ref(PASS_ROLE), ref(RUN_INSTANCES)))
    snap = snapshot(users=[alice], roles=[role()], policies=[PASS_ROLE, RUN_INSTANCES])
    (finding,) = failed(p.privilege_escalation_policy(snap, ctx()))
    assert finding.resource == alice.arn
    assert "CreateEC2WithExistingIP" in finding.details["escalation_methods"]
    assert finding.details["policies"] == [PASS_ROLE.arn, RUN_INSTANCES.arn]
    assert "policy_arn" not in finding.details  # two policies: a person must untangle it


def test_escalation_split_between_user_and_group_is_on_the_user():
    devs = group("devs", attached_policies=(ref(RUN_INSTANCES),))
    alice = user(
        "alice", groups=("devs",), inline_policies=(inline("pass", allow("iam:PassRole")),)
    )
    snap = snapshot(users=[alice], groups=[devs], roles=[role()], policies=[RUN_INSTANCES])
    (finding,) = failed(p.privilege_escalation_policy(snap, ctx()))
    assert finding.resource == alice.arn
    assert finding.details["policies"] == [f"group:devs/{RUN_INSTANCES.arn}", "inline:pass"]


def test_escalation_split_inside_a_group_is_on_the_group_not_its_members():
    devs = group("devs", attached_policies=(ref(PASS_ROLE), ref(RUN_INSTANCES)))
    alice = user(
        "alice", groups=("devs",), inline_policies=(inline("read", allow("s3:GetObject")),)
    )
    snap = snapshot(users=[alice], groups=[devs], roles=[role()], policies=[PASS_ROLE, RUN_INSTANCES])
    results = by_key(p.privilege_escalation_policy(snap, ctx()))
    assert results[(devs.arn, "")].failed
    assert not results[(alice.arn, "")].failed
    assert results[(alice.arn, "")].details["also_via_groups"] == ["group/devs"]
    assert [r.resource for r in failed(results.values())] == [devs.arn]


def test_deny_in_another_policy_cancels_what_it_denies_only():
    alice = user(
        "alice",
        attached_policies=(ref(PASS_ROLE), ref(RUN_INSTANCES), ref(QUARANTINE_V2)),
        inline_policies=(inline("versions", allow("iam:CreatePolicyVersion")),),
    )
    snap = snapshot(users=[alice], roles=[role()], policies=[PASS_ROLE, RUN_INSTANCES, QUARANTINE_V2, EC2_FULL])
    (finding,) = failed(p.privilege_escalation_policy(snap, ctx()))
    assert finding.resource == alice.arn
    # PassRole/RunInstances are denied by the quarantine policy; CreatePolicyVersion is not.
    assert finding.details["escalation_methods"] == ["CreateNewPolicyVersion"]


def test_deny_all_elsewhere_cancels_the_escalation():
    alice = user("alice", attached_policies=(ref(DENY_ALL),),
                 inline_policies=(inline("versions", allow("iam:CreatePolicyVersion")),))
    (finding,) = p.privilege_escalation_policy(snapshot(users=[alice], policies=[DENY_ALL]), ctx())
    assert not finding.failed


def test_unreadable_policy_does_not_claim_a_pass_but_can_fail():
    orphan = PolicyRef(name="Gone", arn=f"arn:aws:iam::{ACCOUNT}:policy/Gone")
    alice = user("alice", attached_policies=(ref(READ_ONLY), ref(PASS_ROLE), orphan))
    bob = user("bob", attached_policies=(ref(PASS_ROLE), ref(RUN_INSTANCES), orphan))
    snap = snapshot(users=[alice, bob], roles=[role(path="/svc/")],
                    policies=[READ_ONLY, EC2_FULL, PASS_ROLE, RUN_INSTANCES])
    results = by_key(p.privilege_escalation_policy(snap, ctx()))
    assert (alice.arn, "") not in results
    assert results[(bob.arn, "")].failed
    assert results[(bob.arn, "")].details["unevaluated_policies"] == [orphan.arn]


def test_conditioned_escalation_still_fires_marked_conditional():
    guarded = inline(
        "guarded",
        allow("iam:AttachUserPolicy", Condition={"Bool": {"aws:MultiFactorAuthPresent": "true"}}),
    )
    (only,) = p.privilege_escalation_policy(
        snapshot(users=[user(inline_policies=(guarded,))]), ctx()
    )
    assert only.failed and only.details["conditional"] is True


# compromised-key-quarantine -------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "AWSCompromisedKeyQuarantine",
        "AWSCompromisedKeyQuarantineV2",
        "AWSCompromisedKeyQuarantineV3",
    ],
)
def test_compromised_key_quarantine_fires(name):
    quarantine = managed(name, deny("iam:CreateAccessKey"), aws=True)
    alice = user("alice", attached_policies=(ref(READ_ONLY), ref(quarantine)))
    (only,) = p.compromised_key_quarantine(snapshot(users=[alice], policies=[quarantine]), ctx())
    assert only.failed and only.resource == alice.arn
    assert only.details["policy_arn"] == f"arn:aws:iam::aws:policy/{name}"


def test_compromised_key_quarantine_quiet_for_deny_all():
    alice = user("alice", attached_policies=(ref(DENY_ALL),))
    (only,) = p.compromised_key_quarantine(snapshot(users=[alice], policies=[DENY_ALL]), ctx())
    assert not only.failed


# caching --------------------------------------------------------------------------------


def test_each_document_is_analysed_once_per_snapshot(monkeypatch):
    calls = []
    real = policy.analyse_document

    def counting(document):
        calls.append(document)
        return real(document)

    monkeypatch.setattr(policy, "analyse_document", counting)
    same_inline = inline("same", allow("s3:GetObject"))
    users = [
        user(f"u{i}", attached_policies=(ref(ADMIN),), inline_policies=(same_inline,))
        for i in range(2)
    ]
    snap = snapshot(users=users, roles=[role(attached_policies=(ref(ADMIN),))], policies=[ADMIN])
    for rule in [p.user_direct_policy, *POLICY_RULES, p.compromised_key_quarantine]:
        rule(snap, ctx())
    assert calls.count(ADMIN.document) == 1
    assert calls.count(same_inline.document) == 1
    assert len(calls) == 2

    fresh = snapshot(users=users, policies=[ADMIN])  # a new scan analyses afresh
    p.admin_policy(fresh, ctx())
    assert len(calls) == 4


def test_an_administrator_s_escalation_says_star_not_a_list_of_service_actions():
    boss = user("boss", attached_policies=(ref(ADMIN),))
    [finding] = [r for r in p.privilege_escalation_policy(snapshot(users=[boss], policies=[ADMIN]), ctx()) if r.failed]
    assert finding.details["actions"] == ["*"]
    assert "administrator (`*` on `*`)" in finding.details["explanation"]
