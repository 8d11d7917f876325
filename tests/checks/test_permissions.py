"""The shipped least-privilege policies: generated from declarations, and the declarations
checked against what the code really calls (a real scan and discovery on moto)."""

from __future__ import annotations

import contextlib
import json
import re

import boto3
import pytest
from moto import settings as moto_settings

from checks import permissions
from checks.accounts import Target, discover_targets, restore_target, session_for
from checks.collect import (
    HubScps,
    account_alias,
    aws_client,
    collect_account,
    resolve_access_key_ids,
)
from checks.model import InlinePolicy
from checks.policy import analyse_document
from checks.remediate.base import (
    REDUCE_CONDITIONS,
    REDUCE_PERMISSIONS,
    RESTORE_PERMISSIONS,
    RemediationError,
    access_class,
)
from checks.remediate.keys import DeactivateAccessKey
from checks.remediate.registry import ACTIONS
from checks.remediate.users import QuarantineUser, RemoveUserFromGroup
from checks.rules import policies as rules
from checks.usage import collect_usage
from tests import aws
from tests.access_advisor import access_advisor  # noqa: F401
from tests.aws import ACCOUNT_ID, allow, document
from tests.checks import test_remediate_base as base
from tests.checks.test_remediate_base import DENY_ALL_ARN, answer, recording, user_target
from tests.factories import allow as grant
from tests.factories import ctx, deny, role, snapshot
from tests.factories import document as doc

# Fixtures used here.
aws_env = aws.aws_env
moto_session = aws.moto_session
custom_selectors_reported = aws.custom_selectors_reported
iam = base.iam

TEMPLATE = "deploy/cloudformation/member-account-role.yaml"


# ---------------------------------------------------------------------------------------
# The declarations against the code


def test_scan_and_discovery_use_only_declared_actions(moto_session, iam, access_advisor,  # noqa: F811
                                                       custom_selectors_reported):
    # An account with something for every read path: a key, an attached AWS managed
    # policy (ListPolicies + GetPolicyVersion; GetPolicy when the listing misses it),
    # a customer policy, a group, a role and a password policy.
    iam.create_user(UserName="alice")
    iam.create_access_key(UserName="alice")
    iam.attach_user_policy(UserName="alice", PolicyArn=DENY_ALL_ARN)
    iam.create_group(GroupName="devs")
    iam.put_group_policy(GroupName="devs", PolicyName="p", PolicyDocument=document(allow("s3:*")))
    iam.create_policy(PolicyName="c", PolicyDocument=document(allow("sqs:*")))
    iam.update_account_password_policy(MinimumPasswordLength=12)
    moto_session.client("s3").create_bucket(Bucket="trail-logs")
    moto_session.client("cloudtrail").create_trail(Name="main", S3BucketName="trail-logs", IsMultiRegionTrail=True)
    moto_session.client("cloudtrail").put_event_selectors(  # custom selectors: GetEventSelectors
        TrailName="main", EventSelectors=[{"ReadWriteType": "All", "IncludeManagementEvents": True}])
    org = moto_session.client("organizations")
    org.create_organization(FeatureSet="ALL")
    created = org.create_account(Email="member@example.com", AccountName="member")
    root = org.list_roots()["Roots"][0]["Id"]
    ou = org.create_organizational_unit(ParentId=root, Name="prod")["OrganizationalUnit"]["Id"]
    scp = org.create_policy(Name="no-leave", Type="SERVICE_CONTROL_POLICY", Description="",
                            Content=document(deny("organizations:LeaveOrganization")))
    org.attach_policy(PolicyId=scp["Policy"]["PolicySummary"]["Id"], TargetId=ou)
    org.move_account(AccountId=created["CreateAccountStatus"]["AccountId"],
                     SourceParentId=root, DestinationParentId=ou)

    with recording(moto_session) as scan_calls:
        collect_account(moto_session, sleep=lambda _: None)
        # The listing misses the attached policy once: the GetPolicy fallback.
        answer(moto_session, "ListPolicies", lambda _: {"Policies": [], "IsTruncated": False})
        collect_account(moto_session, sleep=lambda _: None)
        resolve_access_key_ids(moto_session, ["alice"], account=ACCOUNT_ID)
        collect_usage(moto_session, sleep=lambda _: None)
        account_alias(moto_session)
    with recording(moto_session) as hub_calls:
        targets = discover_targets(moto_session, org_role_name="IAMSteward")
        member = next(t for t in targets if t.role_arn)
        session_for(member, moto_session, external_id="shared-secret")
        restore = restore_target(str(member.account_id), permissions.DEFAULT_RESTORE_ROLE_NAME)
        session_for(restore, moto_session, external_id="shared-secret")
        HubScps(aws_client(moto_session, "organizations", 1)).for_account(str(member.account_id))

    assert set(scan_calls) - permissions.SCAN_ACTIONS.keys() == set()
    assert set(hub_calls) - permissions.HUB_ACTIONS.keys() == set()
    # And nothing is declared that no path uses (no silent over-granting).
    assert permissions.SCAN_ACTIONS.keys() - set(scan_calls) == set()
    assert permissions.HUB_ACTIONS.keys() - set(hub_calls) == set()


def _actions(policy: dict) -> set[str]:
    return {a for s in policy["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}


def test_reduce_and_restore_together_are_every_action_s_declarations():
    declared = set().union(*(a.permissions | a.undo_permissions for a in ACTIONS))
    reduce, restore = permissions.reduce_policy(), permissions.restore_policy()
    assert _actions(reduce) | _actions(restore) == declared
    assert all(a.startswith("iam:") for a in declared)
    for policy in (reduce, restore):
        assert all(s["Action"] == sorted(s["Action"]) for s in policy["Statement"])
    # Every apply runs under the reduce policy, except right-sizing (its writes could grant,
    # so apply and undo run under the restore role); every undo under one of the two, whole.
    for act in ACTIONS:
        assert act.permissions <= _actions(restore if act.apply_needs_restore else reduce), act.id
        assert act.undo_permissions <= _actions(restore if act.undo_needs_restore else reduce)
    assert [a.id for a in ACTIONS if a.apply_needs_restore] == ["rightsize-policy", "restore-trust-policy"]
    assert not {"iam:CreatePolicyVersion", "iam:PutRolePolicy", "iam:SetDefaultPolicyVersion",
                "iam:UpdateAssumeRolePolicy"} & _actions(reduce)
    assert "iam:UpdateAssumeRolePolicy" in _actions(restore)


def test_every_declared_permission_is_classed_and_applies_never_need_restore():
    for act in ACTIONS:
        for permission in act.permissions | act.undo_permissions:
            access_class(permission)  # KeyError names an unclassed write
        restoring = {p for p in act.permissions if access_class(p) == "restore"}
        assert restoring <= REDUCE_CONDITIONS.keys() or act.apply_needs_restore, (act.id, restoring)
    assert REDUCE_PERMISSIONS.isdisjoint(RESTORE_PERMISSIONS)
    with pytest.raises(KeyError, match="iam:CreateUser is not classed"):
        access_class("iam:CreateUser")


def test_which_undos_need_the_restore_role():
    assert {a.id for a in ACTIONS if a.undo_needs_restore} == {
        "detach-managed-policy", "delete-inline-policy", "remove-user-from-group",
        "apply-cis-password-policy", "delete-role", "rightsize-policy", "restore-trust-policy",
    }
    # The owner's own reversible actions undo under the default role, except right-sizing,
    # which runs wholly under the restore role (a new policy version could grant anything).
    assert {a.id for a in ACTIONS if a.undo_needs_restore and a.owner_may_apply_alone} == {"rightsize-policy"}


def test_the_reduce_policy_grants_nothing_without_the_quarantine_condition():
    """Read the shipped JSON: no Attach/Put/Add/Create/Set/Pass unless confined to AWSDenyAll."""
    shipped = json.loads((permissions.ROOT / "deploy/iam/steward-reduce-policy.json").read_text())
    granting = re.compile(r"^iam:(Attach|Put|Add|Create|Set|Pass|Upload|Tag)")
    for s in shipped["Statement"]:
        assert s["Effect"] == "Allow" and not any("*" in a for a in s["Action"])
        grants = [a for a in s["Action"] if granting.match(a)]
        if grants:
            assert grants == s["Action"] == ["iam:AttachUserPolicy"], s
            assert s["Condition"] == {"ArnEquals": {"iam:PolicyARN": [DENY_ALL_ARN]}}
    assert "iam:AttachUserPolicy" in _actions(shipped)  # quarantine still possible


def test_an_apply_that_would_need_restore_stops_the_generator(monkeypatch):
    class Greedy(DeactivateAccessKey):
        id = "greedy"
        permissions = frozenset({"iam:AddUserToGroup"})

    monkeypatch.setattr(permissions, "ACTIONS", (*ACTIONS, Greedy()))
    with pytest.raises(ValueError, match=r"iam:AddUserToGroup \(for greedy\) would let the default role"):
        permissions.reduce_policy()


def test_the_scan_policy_only_reads():
    (statement,) = permissions.scan_policy()["Statement"]
    verbs = {re.match(r"^\w+:([A-Z][a-z]+)", a)[1] for a in statement["Action"]}
    assert verbs <= {"Get", "List", "Generate", "Describe"}


# ---------------------------------------------------------------------------------------
# The committed files


@pytest.mark.parametrize("path", sorted(permissions.generated()))
def test_committed_files_are_what_the_declarations_generate(path):
    committed = permissions.ROOT / path
    assert committed.is_file(), f"{path} missing: run python -m checks.permissions --write"
    assert committed.read_text() == permissions.generated()[path], (
        f"{path} is stale: run python -m checks.permissions --write"
    )


def test_json_files_have_sorted_keys_and_two_space_indent():
    for path, text in permissions.generated().items():
        if path.endswith(".json"):
            assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_the_script_writes_and_checks(tmp_path, capsys):
    assert permissions.main(["--check", "--root", str(tmp_path)]) == 1
    assert "stale" in capsys.readouterr().err
    assert permissions.main(["--write", "--root", str(tmp_path)]) == 0
    assert permissions.main(["--root", str(tmp_path)]) == 0
    assert permissions.main([]) == 0  # the repository itself is up to date


# ---------------------------------------------------------------------------------------
# The CloudFormation template


def test_the_role_trusts_only_steward_with_the_external_id():
    template = permissions.member_role_template()
    assert template["Parameters"]["ExternalId"]["NoEcho"] is True
    role = template["Resources"]["StewardRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}
    assert trust["Principal"]["AWS"]["Fn::If"][1:] == [
        {"Ref": "StewardRoleArn"}, {"Ref": "StewardAccountId"}]
    scan, remediate, export = role["Policies"]
    assert scan["PolicyDocument"] == permissions.scan_policy()
    # Security Hub export: off by default, and only the account's own default product.
    when, policy, _ = export["Fn::If"]
    assert template["Conditions"][when] == {"Fn::Equals": [{"Ref": "EnableSecurityHubExport"}, "true"]}
    assert template["Parameters"]["EnableSecurityHubExport"]["Default"] == "false"
    (grant,) = policy["PolicyDocument"]["Statement"]
    assert grant["Action"] == ["securityhub:BatchImportFindings"]
    assert "${AWS::AccountId}:product/${AWS::AccountId}/default" in grant["Resource"]["Fn::Sub"]
    condition, policy, otherwise = remediate["Fn::If"]
    assert template["Conditions"][condition] == {
        "Fn::Equals": [{"Ref": "EnableRemediation"}, "true"]}
    assert otherwise == {"Ref": "AWS::NoValue"}
    *allows, deny_stmt = policy["PolicyDocument"]["Statement"]
    assert _actions({"Statement": allows}) == _actions(permissions.reduce_policy())
    (attach,) = [s for s in allows if "Condition" in s]
    assert attach["Condition"] == {"ArnEquals": {"iam:PolicyARN": [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSDenyAll"}]}}
    assert deny_stmt["Effect"] == "Deny" and "iam:PutRolePolicy" in deny_stmt["Action"]


def test_the_restore_role_is_separate_and_off_by_default():
    template = permissions.member_role_template()
    assert template["Parameters"]["EnableRestore"]["Default"] == "false"
    assert template["Conditions"]["Restore"] == {"Fn::Equals": [{"Ref": "EnableRestore"}, "true"]}
    restore = template["Resources"]["StewardRestoreRole"]
    assert restore["Condition"] == "Restore"
    assert template["Outputs"]["RestoreRoleArn"]["Condition"] == "Restore"
    props = restore["Properties"]
    main = template["Resources"]["StewardRole"]["Properties"]
    assert props["AssumeRolePolicyDocument"] == main["AssumeRolePolicyDocument"]
    (policy,) = props["Policies"]
    allow_stmt, deny_stmt = policy["PolicyDocument"]["Statement"]
    assert allow_stmt == permissions.restore_policy()["Statement"][0]
    # Neither role can change either role's policies, the restore role included.
    assert deny_stmt["Effect"] == "Deny" and {"iam:AttachRolePolicy", "iam:PutRolePolicy"} <= set(
        deny_stmt["Action"])
    assert [r["Fn::Sub"].rsplit("/", 1)[1] for r in deny_stmt["Resource"]] == [
        "${RoleName}", "${RestoreRoleName}"]
    rule = template["Rules"]["RestoreNeedsRemediation"]
    assert rule["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "EnableRemediation"}, "true"]}


def test_the_hub_may_assume_both_roles_and_nothing_else():
    (_, assume, scps) = permissions.hub_policy()["Statement"]
    assert assume["Action"] == ["sts:AssumeRole"]
    # Reading the SCPs is read-only: lists and describes, nothing that changes a policy.
    assert all(re.match(r"organizations:(List|Describe)", a) for a in scps["Action"])
    assert assume["Resource"] == ["arn:*:iam::*:role/IAMSteward", "arn:*:iam::*:role/IAMStewardRestore",
                                  "arn:*:iam::*:role/IAMStewardRotate"]


def test_the_rotation_role_is_separate_and_off_by_default():
    """Creating keys and secrets is not reduce-only: its own role, never in the reduce one."""
    template = permissions.member_role_template()
    assert template["Parameters"]["EnableRotation"]["Default"] == "false"
    rotation = template["Resources"]["StewardRotationRole"]
    assert rotation["Condition"] == "Rotation" and template["Outputs"]["RotationRoleArn"]["Condition"] == "Rotation"
    (policy,) = rotation["Properties"]["Policies"]
    iam_stmt, secrets_stmt = policy["PolicyDocument"]["Statement"]
    assert "iam:CreateAccessKey" in iam_stmt["Action"] and secrets_stmt["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:*:${AWS::AccountId}:secret:iam-steward/rotation/*"}
    assert not _actions(permissions.reduce_policy()) & {"iam:CreateAccessKey", "secretsmanager:CreateSecret"}


def test_inline_policies_fit_iam_s_size_limit():
    resources = permissions.member_role_template()["Resources"]
    role = resources["StewardRole"]["Properties"]
    scan = role["Policies"][0]["PolicyDocument"]
    remediate = role["Policies"][1]["Fn::If"][1]["PolicyDocument"]
    size = sum(len(json.dumps(doc, separators=(",", ":"))) for doc in (scan, remediate))
    assert size < 10_240  # aggregate inline policy size per role, whitespace excluded
    restore = resources["StewardRestoreRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    assert len(json.dumps(restore, separators=(",", ":"))) < 10_240


def test_the_yaml_reads_back_as_the_template():
    yaml = pytest.importorskip("yaml")
    text = (permissions.ROOT / TEMPLATE).read_text()
    assert yaml.safe_load(text) == permissions.member_role_template()


def test_cfn_lint_is_clean():
    api = pytest.importorskip("cfnlint.api")
    matches = api.lint((permissions.ROOT / TEMPLATE).read_text())
    assert [str(m) for m in matches] == []


# ---------------------------------------------------------------------------------------
# Dogfooding: Steward's own escalation analysis over Steward's own roles


def _shipped(name: str) -> dict:
    return json.loads((permissions.ROOT / f"deploy/iam/steward-{name}-policy.json").read_text())


def _judged(**roles: tuple[str, ...]) -> dict[str, list]:
    """Role name -> the failed admin-policy and privilege-escalation-policy results of a
    role holding the named shipped policies inline, as a scan would report them."""
    snap = snapshot(roles=[
        role(name, inline_policies=tuple(InlinePolicy(p, _shipped(p)) for p in policies))
        for name, policies in roles.items()
    ])
    results = rules.admin_policy(snap, ctx()) + rules.privilege_escalation_policy(snap, ctx())
    assert {r.resource.rsplit("/", 1)[1] for r in results} == set(roles)  # each was judged
    return {name: [r for r in results if r.failed and r.resource.endswith(f"/{name}")]
            for name in roles}


def test_steward_s_default_roles_are_not_flagged_by_its_own_checks():
    # The Steward role in its own account holds all three (hub, scan, reduce) together;
    # the member role holds scan and reduce.
    # The export policy rides along where Security Hub export is enabled.
    judged = _judged(IAMStewardHub=("hub", "scan", "reduce", "export"), IAMSteward=("scan", "reduce", "export"))
    assert judged == {"IAMStewardHub": [], "IAMSteward": []}


def test_the_restore_role_is_flagged_which_is_why_it_is_off_by_default():
    (finding,) = _judged(IAMStewardRestore=("restore",))["IAMStewardRestore"]
    assert finding.check == rules.PRIVILEGE_ESCALATION_POLICY
    assert {"AttachUserPolicy", "PutUserPolicy", "AddUserToGroup"} <= set(
        finding.details["escalation_methods"])


@pytest.mark.parametrize(
    ("condition", "flagged"),
    [
        ({"ArnEquals": {"iam:PolicyARN": DENY_ALL_ARN}}, False),
        ({"ArnLike": {"iam:PolicyARN": ["arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"]}},
         False),
        ({"ArnEquals": {"iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess"}}, True),
        ({"ArnLike": {"iam:PolicyARN": "arn:aws:iam::aws:policy/AWSDenyAll*"}}, True),
        ({"ArnEqualsIfExists": {"iam:PolicyARN": DENY_ALL_ARN}}, True),
        ({"ForAllValues:ArnEquals": {"iam:PolicyARN": DENY_ALL_ARN}}, True),
        ({"ArnNotEquals": {"iam:PolicyARN": DENY_ALL_ARN}}, True),
        ({"Bool": {"aws:MultiFactorAuthPresent": "true"}}, True),
    ],
)
def test_an_attach_is_harmless_only_when_confined_to_a_deny_policy(condition, flagged):
    analysis = analyse_document(doc(grant("iam:AttachUserPolicy", Condition=condition)))
    assert bool(analysis.escalation_methods) is flagged
    # Other actions in the same statement are judged as before.
    both = analyse_document(doc(grant(["iam:AttachUserPolicy", "iam:PutUserPolicy"],
                                      Condition=condition)))
    assert "PutUserPolicy" in both.escalation_methods


# ---------------------------------------------------------------------------------------
# The shipped policies enforced (moto evaluates identity policies once auth is on; it
# ignores conditions, so the AWSDenyAll-only attach is checked on the JSON above)


@contextlib.contextmanager
def enforced():
    """Moto checks every request against the caller's IAM policies inside the block."""
    saved = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    try:
        yield
    finally:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = saved


def _role_session(session, iam, name: str) -> boto3.Session:
    """A session in a role holding exactly the shipped `name` policy."""
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}}]}
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(_shipped(name)))
    target = Target(ACCOUNT_ID, f"arn:aws:iam::{ACCOUNT_ID}:role/{name}", name)
    return session_for(target, session)


def test_quarantine_works_under_the_reduce_policy_alone(moto_session, iam):
    reduce = _role_session(moto_session, iam, "reduce")
    iam.create_user(UserName="alice")
    key = iam.create_access_key(UserName="alice")["AccessKey"]["AccessKeyId"]
    alice = user_target("alice")
    with enforced():
        applied = QuarantineUser().apply(reduce, alice)
        assert applied.after["deny_all_attached"]
        assert [k["status"] for k in applied.after["access_keys"]] == ["Inactive"]
        undone = QuarantineUser().undo(reduce, alice, applied.before)  # one click for the owner
    assert not undone.after["deny_all_attached"]
    assert iam.list_access_keys(UserName="alice")["AccessKeyMetadata"][0]["Status"] == "Active"
    assert key == applied.before["access_keys"][0]["access_key_id"]


def test_an_undo_that_gives_access_back_needs_the_restore_role(moto_session, iam):
    reduce = _role_session(moto_session, iam, "reduce")
    restore = _role_session(moto_session, iam, "restore")
    iam.create_user(UserName="alice")
    iam.create_group(GroupName="admins")
    iam.add_user_to_group(UserName="alice", GroupName="admins")
    leave = RemoveUserFromGroup()
    target = user_target("alice", group_name="admins")
    with enforced():
        applied = leave.apply(reduce, target)  # reducing: the default role can
        with pytest.raises(RemediationError, match="AccessDenied on iam:AddUserToGroup"):
            leave.undo(reduce, target, applied.before)
        undone = leave.undo(restore, target, applied.before)
        with pytest.raises(RemediationError, match="AccessDenied on iam:RemoveUserFromGroup"):
            leave.apply(restore, target)  # and the restore role only restores
    assert undone.after["member"] and not undone.already_done
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName="alice")["Groups"]] == ["admins"]


def test_restoring_a_trust_policy_runs_only_under_the_restore_role(moto_session, iam):
    """UpdateAssumeRolePolicy can let anyone in: the default role is refused it, the restore
    role has it, and neither may use it on Steward's own roles (the template's Deny)."""
    from checks.remediate.base import Target as RemediationTarget
    from checks.remediate.trust import RestoreTrustPolicy, same

    reduce = _role_session(moto_session, iam, "reduce")
    restore = _role_session(moto_session, iam, "restore")
    mine = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                   "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}}]}
    opened = {**mine, "Statement": [{**mine["Statement"][0], "Principal": {"AWS": "*"}}]}
    iam.create_role(RoleName="app", AssumeRolePolicyDocument=json.dumps(opened))
    target = RemediationTarget.from_finding("activity:role-trust-opened", f"arn:aws:iam::{ACCOUNT_ID}:role/app",
                                            {"previous_trust_policy": mine})
    act = RestoreTrustPolicy()
    with enforced():
        with pytest.raises(RemediationError, match=r"AccessDenied on iam:UpdateAssumeRolePolicy .*restore-policy"):
            act.apply(reduce, target)
        applied = act.apply(restore, target)
        act.undo(restore, target, applied.before)
    assert same(iam.get_role(RoleName="app")["Role"]["AssumeRolePolicyDocument"], opened)
    deny_stmt = permissions.member_role_template()["Resources"]["StewardRestoreRole"]["Properties"][
        "Policies"][0]["PolicyDocument"]["Statement"][1]
    assert deny_stmt["Effect"] == "Deny" and "iam:UpdateAssumeRolePolicy" in deny_stmt["Action"]
