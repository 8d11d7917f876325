"""Role chains across the accounts of one scan (`checks.chains`): each rule a firing
organization and its quiet twin, the account parts going through JSON as the scan
service stores them."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from checks import chains
from checks import escalation as graph
from checks.model import ManagedPolicy
from checks.rules import policies as p
from tests.factories import (
    ACCOUNT,
    NOW,
    OTHER_ACCOUNT,
    allow,
    ctx,
    deny,
    document,
    inline,
    managed,
    ref,
    role,
    snapshot,
    user,
)

ADMIN = managed("AdministratorAccess", allow("*"), aws=True)
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
DEPLOY = f"arn:aws:iam::{OTHER_ACCOUNT}:role/deploy"
TOP = f"arn:aws:iam::{OTHER_ACCOUNT}:role/admin"


def trust_of(*principals: str) -> dict:
    return document({"Effect": "Allow", "Principal": {"AWS": list(principals)}, "Action": "sts:AssumeRole"})


def other_role(name: str, **kwargs):
    r = role(name, **kwargs)
    return replace(r, arn=r.arn.replace(ACCOUNT, OTHER_ACCOUNT))


HOP = inline("hop", allow("sts:AssumeRole"))
TO_DEPLOY = inline("to-deploy", allow("sts:AssumeRole", DEPLOY))


def mine(*policies, **kwargs):
    return snapshot(users=[user(inline_policies=tuple(policies), **kwargs.pop("user", {}))], **kwargs)


def theirs(deploy_trust=(ALICE,), deploy_policies=(HOP,), extra=()):
    return snapshot(account_id=OTHER_ACCOUNT, roles=[
        other_role("deploy", trust=trust_of(*deploy_trust), inline_policies=deploy_policies),
        other_role("admin", trust=trust_of(f"arn:aws:iam::{OTHER_ACCOUNT}:root"), attached_policies=(ref(ADMIN),)),
        *extra,
    ], policies=[ADMIN])


def parts(*snaps):
    """Each account's part, as the scan service stores it (JSON) and reads it back."""
    return [json.loads(json.dumps(chains.export(s, ctx()))) for s in snaps]


def crossing(*snaps) -> dict:
    return {r.resource: r for r in chains.results(parts(*snaps), NOW)}


BOUNDARY = managed("s3-only", allow("s3:*"))
NO_ASSUME_SCP = ManagedPolicy("no-assume", "p-1", document(allow("*"), deny("sts:AssumeRole")))

# (case, firing accounts, quiet twin accounts): the principal judged is user/alice.
CASES = [
    ("chain of two roles in another account",
     [mine(TO_DEPLOY), theirs()],
     [mine(TO_DEPLOY), theirs(deploy_policies=(inline("x", allow("s3:GetObject")),))]),
    ("trust names someone else",
     [mine(TO_DEPLOY), theirs()],
     [mine(TO_DEPLOY), theirs(deploy_trust=(f"arn:aws:iam::{ACCOUNT}:user/bob",))]),
    ("trust admits the account, the permission is missing",
     [mine(HOP), theirs(deploy_trust=(ACCOUNT,))],
     [mine(inline("x", allow("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/*"))),
      theirs(deploy_trust=(ACCOUNT,))]),
    ("deny elsewhere",
     [mine(TO_DEPLOY, inline("no", deny("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/*"))), theirs()],
     [mine(TO_DEPLOY, inline("no", deny("sts:AssumeRole", f"arn:aws:iam::{OTHER_ACCOUNT}:role/*"))), theirs()]),
    ("boundary",
     [mine(TO_DEPLOY, policies=[BOUNDARY]), theirs()],
     [mine(TO_DEPLOY, policies=[BOUNDARY], user={"permissions_boundary": BOUNDARY.arn}), theirs()]),
    ("SCP on the starting account",
     [mine(TO_DEPLOY, scps=(ManagedPolicy("all", "p-FullAWSAccess", document(allow("*"))),)), theirs()],
     [mine(TO_DEPLOY, scps=(NO_ASSUME_SCP,)), theirs()]),
    ("SCP on the middle account",
     [mine(TO_DEPLOY), theirs()],
     [mine(TO_DEPLOY), replace(theirs(), scps=(NO_ASSUME_SCP,))]),
]


@pytest.mark.parametrize(("case", "firing", "quiet"), CASES, ids=[c[0] for c in CASES])
def test_firing_and_quiet_twin(case, firing, quiet):
    assert ALICE in crossing(*firing), case
    assert ALICE not in crossing(*quiet), case


def test_the_chain_is_in_the_finding_with_accounts_and_one_line():
    (found,) = crossing(mine(TO_DEPLOY), theirs()).values()
    assert (found.check, found.account, found.resource, found.sub_key, found.failed) == (
        p.PRIVILEGE_ESCALATION_POLICY, ACCOUNT, ALICE, chains.CROSS_ACCOUNT, True)
    assert found.details["path"] == ["user/alice", "role/deploy", "role/admin"]
    assert found.details["path_arns"] == [ALICE, DEPLOY, TOP]
    assert found.details["path_accounts"] == [ACCOUNT, OTHER_ACCOUNT]
    assert found.details["explanation"] == (
        f"user/alice can become administrator by assuming roles across accounts: "
        f"user/alice ({ACCOUNT}) → role/deploy ({OTHER_ACCOUNT}) → role/admin ({OTHER_ACCOUNT})"
    )


def test_a_chain_inside_one_account_is_left_to_that_account():
    # deploy -> admin is inside the other account: its own finding, not a cross-account one.
    found = crossing(mine(TO_DEPLOY), theirs())
    assert DEPLOY not in found
    deploy = [r for r in p.privilege_escalation_policy(theirs(), ctx()) if r.resource == DEPLOY]
    assert deploy[0].failed and deploy[0].details["path"] == ["role/deploy", "role/admin"]


def test_cycles_across_accounts_terminate_and_an_exit_is_found():
    a = role("a", trust=trust_of(f"arn:aws:iam::{OTHER_ACCOUNT}:role/b"), inline_policies=(HOP,))
    b = other_role("b", trust=trust_of(a.arn), inline_policies=(HOP,))
    assert crossing(snapshot(roles=[a]), snapshot(account_id=OTHER_ACCOUNT, roles=[b])) == {}
    exit_ = other_role("admin", trust=trust_of(a.arn), attached_policies=(ref(ADMIN),))
    other = snapshot(account_id=OTHER_ACCOUNT, roles=[b, exit_], policies=[ADMIN])
    found = crossing(snapshot(roles=[a]), other)
    assert found[a.arn].details["path_arns"] == [a.arn, exit_.arn]
    # b reaches the exit through a: back and forth across the accounts.
    assert found[b.arn].details["path_arns"] == [b.arn, a.arn, exit_.arn]


def test_long_chains_across_accounts_stop_at_the_limit():
    n = graph.MAX_CHAIN + 2
    accounts = [ACCOUNT, OTHER_ACCOUNT]
    arns = [f"arn:aws:iam::{accounts[i % 2]}:role/r{i}" for i in range(n + 1)]
    roles = {a: [] for a in accounts}
    for i, arn in enumerate(arns):
        r = replace(role(f"r{i}", trust=trust_of(arns[i - 1]) if i else None,
                         inline_policies=(HOP,) if i < n else (),
                         attached_policies=(ref(ADMIN),) if i == n else ()), arn=arn)
        roles[accounts[i % 2]].append(r)
    snaps = [snapshot(account_id=a, roles=rs, policies=[ADMIN]) for a, rs in roles.items()]
    found = crossing(*snaps)
    assert arns[n - 2] in found and arns[0] not in found


def test_rescan_of_an_unchanged_organization_is_identical():
    first = chains.results(parts(mine(TO_DEPLOY), theirs()), NOW)
    again = chains.results(parts(theirs(), mine(TO_DEPLOY)), NOW)  # any order of accounts
    assert first == again and [r.fingerprint for r in first] == [r.fingerprint for r in again]


def test_a_principal_already_reported_in_its_account_gets_no_second_chain():
    admin_alice = mine(TO_DEPLOY, policies=[ADMIN], user={"attached_policies": (ref(ADMIN),)})
    assert crossing(admin_alice, theirs()) == {}


def test_parts_hold_only_what_another_account_can_need():
    part = chains.export(mine(inline("mixed", allow("s3:*"), allow("sts:AssumeRole", DEPLOY)),
                              inline("other", allow("ec2:*"))), ctx())
    (principal,) = part["principals"]
    assert [part["documents"][i]["document"]["Statement"] for i in principal["docs"]] == [
        [allow("sts:AssumeRole", DEPLOY)], []]
    assert part["trusts"] == []  # nothing in it admits another account
    assert [t["arn"] for t in chains.export(theirs(), ctx())["trusts"]] == [DEPLOY]
