"""SCPs read from the hub (`checks.collect.HubScps`) intersect effective permissions: each
case a firing scan and its quiet twin, against moto's Organizations and a member account."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import boto3
import pytest

from checks import scan
from checks.accounts import Target, session_for
from checks.collect import ApiCallCounter, HubScps, aws_client
from checks.context import CheckContext
from tests import aws
from tests.aws import ACCOUNT_ID, allow, document, inject_error
from tests.factories import deny

aws_env = aws.aws_env
moto_session = aws.moto_session

CHECK = "privilege-escalation-policy"
DENY_VERSIONS = document(deny("iam:CreatePolicyVersion"))
ONLY_S3 = document(allow("s3:*"))
ONLY_S3_AND_IAM = document(allow(["s3:*", "iam:*"]))


class Org:
    """An organization in moto: the management account (the hub's credentials), a member
    account with `alice`, who may rewrite any customer policy (one exists), and an OU."""

    def __init__(self, hub: boto3.Session) -> None:
        self.hub = hub
        self.org = hub.client("organizations")
        self.org.create_organization(FeatureSet="ALL")
        self.root = self.org.list_roots()["Roots"][0]["Id"]
        self.ou = self.org.create_organizational_unit(ParentId=self.root, Name="prod")[
            "OrganizationalUnit"]["Id"]
        self.member = self.org.create_account(Email="m@example.com", AccountName="member")[
            "CreateAccountStatus"]["AccountId"]
        self.other = self.org.create_account(Email="o@example.com", AccountName="other")[
            "CreateAccountStatus"]["AccountId"]
        self.session = session_for(
            Target(self.member, f"arn:aws:iam::{self.member}:role/Scan", "member"), hub)
        for session in (self.session, hub):
            iam = session.client("iam")
            iam.create_user(UserName="alice")
            iam.put_user_policy(UserName="alice", PolicyName="versions",
                                PolicyDocument=document(allow("iam:CreatePolicyVersion")))
            iam.create_policy(PolicyName="team-tools", PolicyDocument=document(allow("s3:GetObject")))

    def scp(self, name: str, content: str, target: str) -> None:
        policy = self.org.create_policy(Name=name, Type="SERVICE_CONTROL_POLICY",
                                        Description="", Content=content)
        self.org.attach_policy(PolicyId=policy["Policy"]["PolicySummary"]["Id"], TargetId=target)

    def into_ou(self) -> None:
        self.org.move_account(AccountId=self.member, SourceParentId=self.root,
                              DestinationParentId=self.ou)

    def without_full_access(self, target: str) -> None:
        self.org.detach_policy(PolicyId="p-FullAWSAccess", TargetId=target)

    def scan(self, session: boto3.Session | None = None) -> scan.AccountScan:
        hub = HubScps(aws_client(self.hub, "organizations", 1))
        ctx = CheckContext(now=datetime.now(UTC))
        return scan.scan_account(session or self.session, ctx, scps=hub,
                                 checks=[s for s in scan.CATALOG if s.id == CHECK])


def alice(result: scan.AccountScan):
    (found,) = [r for r in result.results if r.resource.endswith(":user/alice")]
    return found


def nothing(_org: Org) -> None:
    pass


# (case, arrange the firing organization, arrange the quiet twin, the SCP the quiet one names)
Arrange = Callable[[Org], None]
CASES: list[tuple[str, Arrange, Arrange, str]] = [
    ("deny on the account",
     lambda o: o.scp("deny-versions", DENY_VERSIONS, o.other),
     lambda o: o.scp("deny-versions", DENY_VERSIONS, o.member),
     "scp:deny-versions"),
    ("deny on the OU above",
     lambda o: (o.scp("deny-versions", DENY_VERSIONS, o.ou)),
     lambda o: (o.into_ou(), o.scp("deny-versions", DENY_VERSIONS, o.ou)),
     "scp:deny-versions"),
    ("deny at the root",
     nothing,
     lambda o: o.scp("deny-versions", DENY_VERSIONS, o.root),
     "scp:deny-versions"),
    ("allow-list without the action",
     lambda o: (o.scp("s3-and-iam", ONLY_S3_AND_IAM, o.member), o.without_full_access(o.member)),
     lambda o: (o.scp("s3-only", ONLY_S3, o.member), o.without_full_access(o.member)),
     "scp:s3-only"),
    ("allow-list on the OU without the action",
     lambda o: (o.into_ou(), o.scp("s3-and-iam", ONLY_S3_AND_IAM, o.ou), o.without_full_access(o.ou)),
     lambda o: (o.into_ou(), o.scp("s3-only", ONLY_S3, o.ou), o.without_full_access(o.ou)),
     "scp:s3-only"),
]


# Twins run as two tests: one organization per moto account set.
@pytest.mark.parametrize(("case", "firing", "quiet", "names"), CASES, ids=[c[0] for c in CASES])
def test_scp_firing_twin(moto_session, case, firing, quiet, names):
    org = Org(moto_session)
    firing(org)
    found = alice(org.scan())
    assert found.failed, case
    assert found.details["scps_applied"] is True
    assert "blocked_by" not in found.details


@pytest.mark.parametrize(("case", "firing", "quiet", "names"), CASES, ids=[c[0] for c in CASES])
def test_scp_quiet_twin_names_the_scp(moto_session, case, firing, quiet, names):
    org = Org(moto_session)
    quiet(org)
    result = org.scan()
    found = alice(result)
    assert not found.failed, (case, found.details)
    assert {"policy": names, "actions": ["iam:createpolicyversion"]} in found.details["blocked_by"]
    assert result.notes == ()


def test_scps_do_not_limit_the_management_account(moto_session):
    org = Org(moto_session)
    org.scp("deny-versions", DENY_VERSIONS, org.root)
    assert not alice(org.scan()).failed  # the member account: denied at the root
    found = alice(org.scan(moto_session))  # the management account (ACCOUNT_ID)
    assert found.account == ACCOUNT_ID and found.failed
    assert "scps_applied" not in found.details


@pytest.mark.parametrize("code", ["AccessDeniedException", "AWSOrganizationsNotInUseException"])
def test_scps_not_visible_from_the_hub_is_a_note_not_a_failure(moto_session, code):
    org = Org(moto_session)
    org.scp("deny-versions", DENY_VERSIONS, org.member)
    inject_error(moto_session, "DescribeOrganization", code, service="organizations", status=400)
    result = org.scan()
    assert alice(result).failed  # judged without SCPs: more alarming, never hidden
    assert result.notes == (f"SCPs not visible: {code}",)
    assert alice(result).details["scps_not_applied"] == f"SCPs not visible: {code}"


def test_call_budget_one_call_per_account_and_the_rest_shared(moto_session):
    org = Org(moto_session)
    org.into_ou()
    org.scp("deny-versions", DENY_VERSIONS, org.ou)
    org.scp("deny-leave", document(deny("organizations:LeaveOrganization")), org.member)
    counter = ApiCallCounter()
    with counter.attached(moto_session):
        hub = HubScps(aws_client(moto_session, "organizations", 1))
        first = hub.for_account(org.member)
        second = hub.for_account(org.member)
        third = hub.for_account(org.other)
    assert [len(level) for level in first.above] == [1, 2]  # root: FullAWSAccess; OU: + deny
    assert first.above == second.above and second.calls == 1
    # Each later account: only its own ListPoliciesForTarget (its root is known already).
    assert third.calls == 1
    assert counter.by_operation["organizations:DescribePolicy"] == 2  # once per custom SCP
    assert counter.by_operation["organizations:ListPoliciesForTarget"] == 3 + 2  # 3 accounts, OU, root
    assert first.calls + second.calls + third.calls == counter.calls  # every call is counted once
