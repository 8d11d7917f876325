"""Effective permissions, escalation methods and role chains: each rule with a firing case
and its quiet twin (table-driven), plus the catalogue and the condition decisions."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from cloudsplaining.shared.constants import PRIVILEGE_ESCALATION_METHODS

from checks import escalation as graph
from checks import escalation_methods as catalogue
from checks.conditions import Subject, decide
from checks.model import ManagedPolicy
from checks.policy import Condition
from checks.rules import policies as p
from tests.factories import (
    ACCOUNT,
    NOW,
    OTHER_ACCOUNT,
    allow,
    ctx,
    deny,
    document,
    group,
    inline,
    managed,
    ref,
    role,
    snapshot,
    user,
)

ADMIN = managed("AdministratorAccess", allow("*"), aws=True)
VERSIONS = inline("versions", allow("iam:CreatePolicyVersion"))
TEAM_POLICY = managed("team-tools", allow("s3:GetObject"))
EC2_ROLE = role("app")  # the factory's trust: ec2.amazonaws.com


def trust_of(*principals: str, **condition) -> dict:
    statement = {"Effect": "Allow", "Principal": {"AWS": list(principals)}, "Action": "sts:AssumeRole"}
    if condition:
        statement["Condition"] = condition
    return document(statement)


def escalation(snap, principal_arn: str):
    """The principal's privilege-escalation Result (None when not evaluated)."""
    found = [r for r in p.privilege_escalation_policy(snap, ctx()) if r.resource == principal_arn]
    assert len(found) <= 1
    return found[0] if found else None


def fires(snap, arn) -> bool:
    r = escalation(snap, arn)
    return r is not None and r.failed


def arn_of(kind: str, name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:{kind}/{name}"


ALICE = arn_of("user", "alice")
PAST, FUTURE = "2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z"

# (id, firing snapshot, quiet twin): the principal judged is always user/alice.
CASES = [
    (
        "deny elsewhere",
        snapshot(users=[user(inline_policies=(VERSIONS,))], policies=[TEAM_POLICY]),
        snapshot(
            users=[user(inline_policies=(VERSIONS, inline("no-iam", deny("iam:*")))),],
            policies=[TEAM_POLICY],
        ),
    ),
    (
        "deny elsewhere in a group",
        snapshot(users=[user(groups=("devs",), inline_policies=(VERSIONS,))],
                 groups=[group("devs")], policies=[TEAM_POLICY]),
        snapshot(users=[user(groups=("devs",), inline_policies=(VERSIONS,))],
                 groups=[group("devs", inline_policies=(inline("x", deny("iam:Create*")),))],
                 policies=[TEAM_POLICY]),
    ),
    (
        "impossible date condition",
        snapshot(users=[user(inline_policies=(inline("v", allow(
            "iam:CreatePolicyVersion", Condition={"DateGreaterThan": {"aws:CurrentTime": PAST}})),))],
            policies=[TEAM_POLICY]),
        snapshot(users=[user(inline_policies=(inline("v", allow(
            "iam:CreatePolicyVersion", Condition={"DateLessThan": {"aws:CurrentTime": PAST}})),))],
            policies=[TEAM_POLICY]),
    ),
    (
        "token issued before a past date",
        snapshot(users=[user(inline_policies=(inline("v", allow(
            "iam:CreatePolicyVersion", Condition={"DateGreaterThan": {"aws:TokenIssueTime": PAST}})),))],
            policies=[TEAM_POLICY]),
        snapshot(users=[user(inline_policies=(inline("v", allow(
            "iam:CreatePolicyVersion", Condition={"DateLessThan": {"aws:TokenIssueTime": PAST}})),))],
            policies=[TEAM_POLICY]),
    ),
    (
        "principal ARN that is someone else",
        snapshot(users=[user(inline_policies=(inline("v", allow(
            "iam:CreatePolicyVersion", Condition={"ArnEquals": {"aws:PrincipalArn": ALICE}})),))],
            policies=[TEAM_POLICY]),
        snapshot(users=[user(inline_policies=(inline("v", allow(
            "iam:CreatePolicyVersion", Condition={"StringEquals": {"aws:username": "bob"}})),))],
            policies=[TEAM_POLICY]),
    ),
    (
        "insecure transport only",
        snapshot(users=[user(inline_policies=(inline("v", allow(
            "iam:CreatePolicyVersion", Condition={"Bool": {"aws:SecureTransport": "true"}})),))],
            policies=[TEAM_POLICY]),
        snapshot(users=[user(inline_policies=(inline("v", allow(
            "iam:CreatePolicyVersion", Condition={"Bool": {"aws:SecureTransport": "false"}})),))],
            policies=[TEAM_POLICY]),
    ),
    (
        "wildcard ARN inside the account vs the AWS namespace",
        snapshot(users=[user(inline_policies=(inline("v", allow(
            "iam:CreatePolicyVersion", "arn:aws:iam::*:policy/team-*")),))], policies=[TEAM_POLICY]),
        snapshot(users=[user(inline_policies=(inline("v", allow(
            "iam:CreatePolicyVersion", "arn:aws:iam::aws:policy/team-*")),))], policies=[TEAM_POLICY]),
    ),
    (
        "boundary",
        snapshot(users=[user(attached_policies=(ref(ADMIN),))], policies=[ADMIN]),
        snapshot(
            users=[user(attached_policies=(ref(ADMIN),),
                        permissions_boundary=arn_of("policy", "s3-only"))],
            policies=[ADMIN, managed("s3-only", allow("s3:*"))],
        ),
    ),
    (
        "SCP",
        snapshot(users=[user(attached_policies=(ref(ADMIN),))], policies=[ADMIN],
                 scps=(ManagedPolicy("FullAWSAccess", "p-FullAWSAccess", document(allow("*"))),)),
        snapshot(users=[user(attached_policies=(ref(ADMIN),))], policies=[ADMIN],
                 scps=(ManagedPolicy("FullAWSAccess", "p-FullAWSAccess", document(allow("*"))),
                       ManagedPolicy("no-iam", "p-1", document(deny(["iam:*", "sts:*", "ec2:*",
                             "lambda:*", "cloudformation:*", "glue:*", "ecs:*", "sagemaker:*",
                             "codebuild:*", "ssm:*", "ec2-instance-connect:*", "datapipeline:*",
                             "apprunner:*", "bedrock-agentcore:*", "autoscaling:*",
                             "dynamodb:*"]))))),
    ),
    (
        "chain of two roles",
        snapshot(
            users=[user(inline_policies=(inline("hop", allow("sts:AssumeRole", arn_of("role", "deploy"))),))],
            roles=[
                role("deploy", trust=trust_of(ALICE),
                     inline_policies=(inline("hop", allow("sts:AssumeRole")),)),
                role("admin", trust=trust_of(ACCOUNT), attached_policies=(ref(ADMIN),)),
            ],
            policies=[ADMIN],
        ),
        snapshot(
            users=[user(inline_policies=(inline("hop", allow("sts:AssumeRole", arn_of("role", "deploy"))),))],
            roles=[
                role("deploy", trust=trust_of(ALICE),
                     inline_policies=(inline("hop", allow("s3:GetObject")),)),
                role("admin", trust=trust_of(ACCOUNT), attached_policies=(ref(ADMIN),)),
            ],
            policies=[ADMIN],
        ),
    ),
    (
        "passing a role to EC2 vs passing one named role",
        snapshot(users=[user(inline_policies=(inline("run", allow(["iam:PassRole", "ec2:RunInstances"])),))],
                 roles=[EC2_ROLE]),
        snapshot(users=[user(inline_policies=(inline("run", allow("ec2:RunInstances"),
                                                     allow("iam:PassRole", arn_of("role", "other"))),))],
                 roles=[EC2_ROLE, role("other", trust=trust_of(ACCOUNT))]),
    ),
    (
        "own access keys only (policy variable)",
        snapshot(users=[user(inline_policies=(inline("keys", allow("iam:CreateAccessKey", "arn:aws:iam::*:user/*")),)),
                        user("bob")]),
        snapshot(users=[user(inline_policies=(inline("keys", allow("iam:CreateAccessKey", "arn:aws:iam::*:user/${aws:username}")),)),
                        user("bob")]),
    ),
]


@pytest.mark.parametrize(("case", "firing", "quiet"), CASES, ids=[c[0] for c in CASES])
def test_firing_and_quiet_twin(case, firing, quiet):
    assert fires(firing, ALICE), case
    found = escalation(quiet, ALICE)
    assert found is not None and not found.failed, (case, found and found.details)


# The quiet twins say what took the grant away (`blocked_by`), by name.
BLOCKED_BY = [
    ("deny elsewhere", "inline:no-iam", "iam:createpolicyversion"),
    ("boundary", "boundary:" + arn_of("policy", "s3-only"), "*"),
    ("SCP", "scp:no-iam", "*"),
]


@pytest.mark.parametrize(("case", "source", "action"), BLOCKED_BY, ids=[b[0] for b in BLOCKED_BY])
def test_the_quiet_twin_names_what_removed_the_grant(case, source, action):
    firing, quiet = next((f, q) for c, f, q in CASES if c == case)
    assert "blocked_by" not in escalation(firing, ALICE).details
    blocked = {b["policy"]: b["actions"] for b in escalation(quiet, ALICE).details["blocked_by"]}
    assert action in blocked[source], blocked


def test_a_scoped_scp_deny_on_the_only_passable_role_makes_the_method_latent():
    grant = inline("run", allow(["iam:PassRole", "ec2:RunInstances"]))
    scp = ManagedPolicy("x", "p-2", document(allow("*"), deny("iam:PassRole", EC2_ROLE.arn)))
    snap = snapshot(users=[user(inline_policies=(grant,))], roles=[EC2_ROLE])
    assert escalation(snap, ALICE).details["status"] == "exploitable"
    latent = escalation(replace(snap, scps=(scp,)), ALICE)
    assert latent.failed and latent.details["status"] == "latent"
    assert latent.details["scps_applied"] is True


def test_deny_elsewhere_is_named_as_evidence_when_it_removes_part():
    scoped = inline("not-team", deny("iam:CreatePolicyVersion", TEAM_POLICY.arn))
    other = managed("other", allow("s3:GetObject"))
    snap = snapshot(users=[user(inline_policies=(VERSIONS, scoped))], policies=[TEAM_POLICY, other])
    finding = escalation(snap, ALICE)
    assert finding.failed
    (method,) = finding.details["methods"]
    assert method["targets"] == ["policy/other"]  # the denied policy is not a target
    assert finding.details["removed_by"] == [
        {"policy": "inline:not-team", "statement_index": 0, "actions": ["iam:CreatePolicyVersion"]}
    ]


def test_wildcard_arn_reaches_the_principals_own_policy_and_names_it():
    own = managed("team-alice", allow("iam:CreatePolicyVersion", "arn:aws:iam::*:policy/team-*"))
    snap = snapshot(users=[user(attached_policies=(ref(own),))], policies=[own])
    finding = escalation(snap, ALICE)
    assert finding.failed and finding.details["status"] == "exploitable"
    assert finding.details["methods"][0]["targets"] == ["policy/team-alice"]
    assert finding.details["policy_arn"] == own.arn  # one granting policy: removable
    assert "policy/team-alice" in finding.details["explanation"]


def test_wildcard_arn_matching_nothing_yet_is_latent_at_lower_severity():
    snap = snapshot(users=[user(inline_policies=(inline("v", allow(
        "iam:CreatePolicyVersion", "arn:aws:iam::*:policy/team-*")),))])
    finding = escalation(snap, ALICE)
    assert finding.failed
    assert finding.details["status"] == "latent" and finding.details["severity"] == "medium"
    assert finding.details["explanation"].startswith("user/alice could write a new default")


def test_mfa_condition_stays_reported_as_conditional():
    snap = snapshot(users=[user(inline_policies=(inline("v", allow(
        "iam:CreatePolicyVersion", Condition={"Bool": {"aws:MultiFactorAuthPresent": "true"}})),))],
        policies=[TEAM_POLICY])
    finding = escalation(snap, ALICE)
    assert finding.failed and finding.details["conditional"] is True
    assert finding.details["methods"][0]["conditional"] == ["needs MFA"]
    assert finding.details["explanation"].endswith("conditional: needs MFA")


def test_deny_unless_mfa_leaves_the_grant_conditional():
    snap = snapshot(users=[user(inline_policies=(VERSIONS, inline("mfa", deny(
        "*", Condition={"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}))))],
        policies=[TEAM_POLICY])
    finding = escalation(snap, ALICE)
    assert finding.failed
    assert finding.details["methods"][0]["conditional"] == ["unless without MFA"]


def test_chain_is_in_the_finding_and_the_sentence():
    snap = CASES[9][1]
    finding = escalation(snap, ALICE)
    assert finding.details["path"] == ["user/alice", "role/deploy", "role/admin"]
    assert finding.details["path_reaches"] == "administrator"
    assert finding.details["explanation"] == (
        "user/alice can become administrator by assuming roles: "
        "user/alice → role/deploy → role/admin"
    )
    deploy = escalation(snap, arn_of("role", "deploy"))
    assert deploy.failed and deploy.details["path"] == ["role/deploy", "role/admin"]


def test_explicit_same_account_trust_needs_no_identity_permission():
    # iam-vulnerable's AssumeRole path: no policies on the starting roles at all.
    snap = snapshot(roles=[
        role("start", trust=trust_of(OTHER_ACCOUNT)),
        role("middle", trust=trust_of(arn_of("role", "start"))),
        role("end", trust=trust_of(arn_of("role", "middle")), attached_policies=(ref(ADMIN),)),
    ], policies=[ADMIN])
    finding = escalation(snap, arn_of("role", "start"))
    assert finding.failed
    assert finding.details["path"] == ["role/start", "role/middle", "role/end"]


def test_account_wide_trust_needs_an_identity_permission():
    snap = snapshot(users=[user()], roles=[
        role("admin", trust=trust_of(f"arn:aws:iam::{ACCOUNT}:root"), attached_policies=(ref(ADMIN),)),
    ], policies=[ADMIN])
    assert not fires(snap, ALICE)
    allowed = replace(snap, users=(user(inline_policies=(inline("any", allow("sts:AssumeRole")),)),))
    assert fires(allowed, ALICE)


def test_cycles_terminate_and_an_exit_is_found():
    a, b = arn_of("role", "a"), arn_of("role", "b")
    hop = (inline("hop", allow("sts:AssumeRole")),)
    cycle = [role("a", trust=trust_of(b), inline_policies=hop), role("b", trust=trust_of(a), inline_policies=hop)]
    snap = snapshot(roles=cycle)
    assert not fires(snap, a) and not fires(snap, b)
    exit_ = role("admin", trust=trust_of(b), attached_policies=(ref(ADMIN),))
    snap = snapshot(roles=[*cycle, exit_], policies=[ADMIN])
    assert escalation(snap, a).details["path"] == ["role/a", "role/b", "role/admin"]


def test_long_chains_stop_at_the_limit():
    n = graph.MAX_CHAIN + 3
    hop = (inline("hop", allow("sts:AssumeRole")),)
    roles = [role(f"r{i}", trust=trust_of(arn_of("role", f"r{i - 1}")), inline_policies=hop) for i in range(1, n)]
    roles.insert(0, role("r0", inline_policies=hop))
    roles.append(role("top", trust=trust_of(arn_of("role", f"r{n - 1}")), attached_policies=(ref(ADMIN),)))
    snap = snapshot(roles=roles, policies=[ADMIN])
    assert fires(snap, arn_of("role", f"r{n - 1}"))
    assert not fires(snap, arn_of("role", "r0"))


def test_cross_account_chain_needs_both_trust_and_permission():
    other = snapshot(account_id=OTHER_ACCOUNT, roles=[
        replace(role("admin", trust=trust_of(ALICE), attached_policies=(ref(ADMIN),)),
                arn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/admin"),
    ], policies=[ADMIN])
    mine = snapshot(users=[user()])
    analysis = graph.analyse([mine, other], NOW)
    assert ALICE not in analysis.chains  # named in the trust, but no sts:AssumeRole
    mine = snapshot(users=[user(inline_policies=(inline("x", allow("sts:AssumeRole")),))])
    analysis = graph.analyse([mine, other], NOW)
    assert analysis.chains[ALICE].path == (ALICE, f"arn:aws:iam::{OTHER_ACCOUNT}:role/admin")


def test_service_paths_need_their_prerequisite():
    send = inline("ssm", allow("ssm:SendCommand"))
    with_profile = snapshot(users=[user(inline_policies=(send,))],
                            roles=[replace(EC2_ROLE, instance_profiles=("app",))],
                            instance_profiles_known=True)
    finding = escalation(with_profile, ALICE)
    assert finding.details["status"] == "exploitable"
    assert "SSMSendCommandToInstanceWithProfile" in finding.details["escalation_methods"]
    without = replace(with_profile, roles=(EC2_ROLE,))
    assert escalation(without, ALICE).details["status"] == "latent"
    unknown = replace(with_profile, instance_profiles_known=False, roles=(EC2_ROLE,))
    method = escalation(unknown, ALICE).details["methods"][0]
    assert method["status"] == "exploitable" and "not inventoried" in method["note"]


def test_stack_update_with_a_cloudformation_role():
    cfn_role = role("stack", trust=document({"Effect": "Allow", "Principal": {"Service": "cloudformation.amazonaws.com"},
                                             "Action": "sts:AssumeRole"}))
    update = inline("cfn", allow("cloudformation:UpdateStack"))
    finding = escalation(snapshot(users=[user(inline_policies=(update,))], roles=[cfn_role]), ALICE)
    assert finding.details["escalation_methods"] == ["UpdateExistingCloudFormationStack"]
    assert finding.details["status"] == "exploitable"
    assert escalation(snapshot(users=[user(inline_policies=(update,))]), ALICE).details["status"] == "latent"


def test_not_action_grants_are_judged_by_what_they_leave():
    fn4 = managed("fn4", {"Effect": "Allow", "NotAction": ["iam:Update*", "iam:Create*", "iam:Attach*"], "Resource": "*"})
    snap = snapshot(users=[user(attached_policies=(ref(fn4),)), user("bob")], policies=[fn4])
    methods = escalation(snap, ALICE).details["escalation_methods"]
    assert "PutUserPolicy" in methods and "CreateAccessKey" not in methods


def test_group_methods_are_reported_on_the_group_not_the_member():
    devs = group("devs", inline_policies=(VERSIONS,))
    snap = snapshot(users=[user(groups=("devs",))], groups=[devs], policies=[TEAM_POLICY])
    assert fires(snap, devs.arn)
    member = escalation(snap, ALICE)
    assert not member.failed and member.details["also_via_groups"] == ["group/devs"]


def test_rescan_of_an_unchanged_account_is_identical():
    snap = CASES[9][1]
    again = replace(snap)  # a new snapshot object: nothing cached carries over
    first = p.privilege_escalation_policy(snap, ctx())
    second = p.privilege_escalation_policy(again, ctx())
    assert [(r.fingerprint, r.status, r.details) for r in first] == [
        (r.fingerprint, r.status, r.details) for r in second
    ]


# The catalogue --------------------------------------------------------------------------


def test_catalogue_has_every_cloudsplaining_method_with_its_actions():
    for name, actions in PRIVILEGE_ESCALATION_METHODS.items():
        assert catalogue.BY_NAME[name].actions == {a.lower() for a in actions}, name


def test_catalogue_entries_are_complete():
    kinds = {"other-user", "user", "group", "policy", "role", "bounded-user", "bounded-role"}
    assert len(catalogue.BY_NAME) == len(catalogue.METHODS)
    for m in catalogue.METHODS:
        assert m.target in m.actions, m.name
        assert m.requires in kinds or m.requires.partition(":")[0] in ("pass", "runs-as"), m.name
        assert m.explanation and m.reference, m.name
    beyond = {m.name for m in catalogue.METHODS if m.source != "cloudsplaining"}
    assert {"UpdateExistingCloudFormationStack", "SSMSendCommandToInstanceWithProfile",
            "SSMStartSessionOnInstanceWithProfile"} <= beyond


@pytest.mark.parametrize("name", sorted(PRIVILEGE_ESCALATION_METHODS))
def test_agrees_with_cloudsplaining_on_plain_documents(name):
    """A document granting exactly a method's actions on `*` is found (exploitable or latent)."""
    actions = sorted(PRIVILEGE_ESCALATION_METHODS[name])
    snap = snapshot(users=[user(inline_policies=(inline("m", allow(actions)),))])
    assert name in escalation(snap, ALICE).details["escalation_methods"]


# Conditions -----------------------------------------------------------------------------

ME = Subject(ALICE, ACCOUNT, "user", "alice")


@pytest.mark.parametrize(
    ("operator", "key", "value", "expected"),
    [
        ("DateLessThan", "aws:CurrentTime", PAST, False),
        ("DateLessThan", "aws:CurrentTime", FUTURE, True),
        ("DateGreaterThan", "aws:CurrentTime", FUTURE, False),
        ("NumericLessThan", "aws:EpochTime", str(int((NOW - timedelta(days=1)).timestamp())), False),
        ("DateLessThan", "aws:TokenIssueTime", PAST, False),
        ("DateLessThan", "aws:TokenIssueTime", (NOW - timedelta(hours=1)).isoformat(), None),
        ("DateGreaterThan", "aws:TokenIssueTime", PAST, True),
        ("ArnLike", "aws:PrincipalArn", f"arn:aws:iam::{ACCOUNT}:user/al*", True),
        ("ArnNotEquals", "aws:PrincipalArn", ALICE, False),
        ("StringEquals", "aws:username", "bob", False),
        ("Bool", "aws:SecureTransport", "false", False),
        ("Bool", "aws:MultiFactorAuthPresent", "true", None),
        ("IpAddress", "aws:SourceIp", "10.0.0.0/8", None),
    ],
)
def test_decide(operator, key, value, expected):
    assert decide(Condition(operator, key.lower(), (value,)), now=NOW, subject=ME) is expected


def test_username_is_absent_for_a_role():
    role_subject = Subject(arn_of("role", "app"), ACCOUNT, "role", "app")
    assert decide(Condition("StringEquals", "aws:username", ("app",)), now=NOW, subject=role_subject) is False


def test_passing_one_named_role_is_the_deploy_pattern_but_a_wildcard_reaches_roles():
    named = inline("run", allow("ec2:RunInstances"), allow("iam:PassRole", EC2_ROLE.arn))
    snap = snapshot(users=[user(inline_policies=(named,))], roles=[EC2_ROLE])
    assert not fires(snap, ALICE)
    pattern = inline("run", allow("ec2:RunInstances"), allow("iam:PassRole", "arn:aws:iam::*:role/ap*"))
    finding = escalation(snapshot(users=[user(inline_policies=(pattern,))], roles=[EC2_ROLE]), ALICE)
    assert finding.details["methods"][0]["targets"] == ["role/app"]


def test_the_analysis_modules_never_import_boto3():
    from tests.test_architecture import imported_modules, python_files, top

    modules = ["effective.py", "escalation.py", "conditions.py", "escalation_methods.py"]
    pure = [p for name in modules for p in python_files("checks", name)]
    assert len(pure) == len(modules)
    assert [str(p) for p in pure if top(imported_modules(p)) & {"boto3", "botocore"}] == []


def test_removing_a_boundary_needs_a_bounded_role():
    grant = inline("b", allow("iam:DeleteRolePermissionsBoundary"))
    plain = snapshot(users=[user(inline_policies=(grant,))], roles=[EC2_ROLE])
    assert escalation(plain, ALICE).details["status"] == "latent"
    bounded = replace(EC2_ROLE, permissions_boundary=TEAM_POLICY.arn)
    finding = escalation(replace(plain, roles=(bounded,), policies=(TEAM_POLICY,)), ALICE)
    assert finding.details["status"] == "exploitable"
    assert finding.details["methods"][0]["targets"] == ["role/app"]
