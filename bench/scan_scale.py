"""How collecting one account scales: API calls, seconds, memory (not a test; prints figures).

    python bench/scan_scale.py [--users 1000 5000] [--repeat 3] [--per-user-limit N]
    python bench/scan_scale.py --analysis-only [--principals 5000 --policies 10000]

For each size: start moto's ThreadedMotoServer on a free port in this process (with the
~1,500 AWS managed policies loaded, as MOTO_IAM_LOAD_MANAGED_POLICIES=true does), seed N
users straight into the backend (keys, groups, inline/customer/AWS managed policies,
console passwords, MFA, N/10 roles; seeding is not timed), then measure over HTTP:

1. `checks.collect.collect_account` (the real path): API calls, wall seconds (first run
   and best of --repeat), peak memory: tracemalloc peak of the collect call (Python
   allocations of *this* process, which includes the moto server's threads building the
   responses), and the max RSS of a child process running only the collect against the
   same server (client side only; the delta over the child's RSS after its imports is the
   collect's own growth).
2. AWS managed policies: the default filtered pass + attached documents ("attached") vs
   one unfiltered pass ("all"), calls and seconds, whole collect and the policy part alone.
3. The per-user way common scanners use: ListUsers, then per user ListAccessKeys,
   GetAccessKeyLastUsed (per key), ListAttachedUserPolicies, ListUserPolicies,
   ListGroupsForUser, ListMFADevices, GetLoginProfile. Calls, seconds, ratios.
4. If `checks.scan.scan_account` exists: evaluation time (pure) and the whole account scan
   (collect + evaluate + key-id resolution for users with key findings).

5. The effective-permission and role-graph pass (`checks.escalation.analyse`, pure, no moto)
   on a synthetic account of --principals principals and --policies customer managed
   policies (fixed seed: read-only and service grants, scoped and wildcard ARNs, denies,
   conditions, boundaries, escalation grants, roles trusting the account, each other and
   services), best of --repeat, target <= 2 s; and the whole escalation check on it.

Every figure is printed next to its target. Moto serves everything from one Python thread
pool in this process, so its own time is inside every "seconds" figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Before moto builds any backend: load the AWS managed policies, as a real account has them.
os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
)
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
    os.environ.pop(_name, None)

import boto3  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from checks import collect  # noqa: E402
from tests.aws import iam_backend, reset_moto, running_moto_server, seed_iam  # noqa: E402

TARGET_CALLS = 10
TARGET_SECONDS = {1000: 3.0, 5000: 10.0}
TARGET_MB = 200

CHILD = """
import json, time
from checks.collect import collect_account
import boto3

def hwm_kb():  # peak RSS of this process image (ru_maxrss would include the forking parent's)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

session = boto3.Session(region_name="us-east-1")
before = hwm_kb()
t = time.perf_counter()
snap = collect_account(session)
seconds = time.perf_counter() - t
print(json.dumps({"calls": snap.api_calls, "seconds": seconds, "before_kb": before, "after_kb": hwm_kb()}))
"""


def mark(ok: bool) -> str:
    return "ok" if ok else "OVER"


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - t


def per_user_scan(session: boto3.Session, limit: int | None) -> tuple[int, float, int]:
    """The N+1 way; returns (calls, seconds, users covered)."""
    counter = collect.ApiCallCounter()
    start = time.perf_counter()
    with counter.attached(session):
        iam = collect.aws_client(session, "iam", collect.DEFAULT_MAX_ATTEMPTS)
        names = [
            u["UserName"]
            for page in iam.get_paginator("list_users").paginate()
            for u in page["Users"]
        ][:limit]
        for name in names:
            for key in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
                iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"])
            iam.list_attached_user_policies(UserName=name)
            iam.list_user_policies(UserName=name)
            iam.list_groups_for_user(UserName=name)
            iam.list_mfa_devices(UserName=name)
            try:
                iam.get_login_profile(UserName=name)
            except ClientError as exc:
                if collect.error_code(exc) != "NoSuchEntity":
                    raise
    return counter.calls, time.perf_counter() - start, len(names)


def policy_part(session: boto3.Session, mode: str) -> tuple[int, float]:
    """Only the authorization details + managed policy documents, as collect does them."""
    counter = collect.ApiCallCounter()
    start = time.perf_counter()
    with counter.attached(session):
        iam = collect.aws_client(session, "iam", collect.DEFAULT_MAX_ATTEMPTS)
        if mode == "all":
            collect.fetch_authorization_details(iam, entity_filter=None)
        else:
            details = collect.fetch_authorization_details(iam)
            attached = {
                p["PolicyArn"]
                for kind in ("UserDetailList", "GroupDetailList", "RoleDetailList")
                for item in details[kind]
                for p in item.get("AttachedManagedPolicies") or ()
                if collect.AWS_MANAGED_ARN.match(p["PolicyArn"])
            }
            collect.fetch_policy_documents(iam, attached)
    return counter.calls, time.perf_counter() - start


def child_collect(url: str) -> dict:
    env = {**os.environ, "AWS_ENDPOINT_URL": url, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def evaluation(session: boto3.Session, snapshot) -> None:
    try:
        from checks.context import CheckContext
        from checks.scan import evaluate, scan_account
    except ImportError as exc:
        print(f"  evaluation: skipped ({exc})")
        return
    ctx = CheckContext(now=datetime.now(UTC))
    results, seconds = timed(evaluate, snapshot, ctx)
    failed = sum(1 for r in results if r.failed)
    print(f"  evaluate (pure):            {seconds:7.3f} s   {len(results)} results, {failed} FAIL")
    scan, seconds = timed(scan_account, session, ctx)
    keyed = scan.api_calls - snapshot.api_calls
    print(
        f"  scan_account (collect+evaluate+key ids): {seconds:.3f} s, {scan.api_calls} API calls = "
        f"{snapshot.api_calls} collect + {keyed} ListAccessKeys for users with key findings "
        f"({len(scan.findings)} findings)"
    )
    # A rescan remembers the key ids the first scan resolved (Steward keeps them with the
    # identities), so it lists keys only for users whose keys are new since.
    from checks.keys import AccessKeyMeta

    remembered = {
        i["name"]: [
            AccessKeyMeta(k["access_key_id"], "Active" if k["active"] else "Inactive", datetime.fromisoformat(k["created"]))
            for k in i["facts"]["keys"]
            if k["access_key_id"]
        ]
        for i in scan.identities
    }
    rescan, seconds = timed(scan_account, session, ctx, known_keys=lambda _account: remembered)
    print(
        f"  rescan with remembered key ids:          {seconds:.3f} s, {rescan.api_calls} API calls "
        f"(target <= 10 up to 1,000 principals; same findings: {rescan.findings == scan.findings})"
    )


def run_size(url: str, users: int, repeat: int, per_user_limit: int | None) -> None:
    reset_moto(url)
    backend = iam_backend()  # builds the account (and loads the AWS managed policies)
    seeded, seed_seconds = timed(seed_iam, users)
    print(
        f"\n== {users} users, {seeded.roles} roles, {seeded.groups} groups, {seeded.keys} keys, "
        f"{len(seeded.aws_policies)} attached AWS managed policies "
        f"(moto holds {len(backend.aws_managed_policies)}); seeded in {seed_seconds:.2f} s (not timed)"
    )
    principals = seeded.principals
    session = boto3.Session(region_name="us-east-1")

    runs = [timed(collect.collect_account, session) for _ in range(repeat)]
    snapshot, first = runs[0]
    best = min(s for _, s in runs)
    target_s = TARGET_SECONDS.get(users)
    target = f"target <= {target_s:g} s: {mark(best <= target_s)}" if target_s else "no target"
    print(
        f"  collect ('attached'):       {first:7.3f} s first (one-off warm-up: botocore models, moto's "
        f"lazy imports), {best:.3f} s best of {repeat}  ({target})"
    )
    print(
        f"  API calls:                  {snapshot.api_calls:7d}   (target <= {TARGET_CALLS} up to 1,000 "
        f"principals: {mark(snapshot.api_calls <= TARGET_CALLS)}; {principals} principals here)"
    )
    print(f"  by operation:               {dict(sorted(_by_operation(session).items()))}")

    tracemalloc.start()
    timed(collect.collect_account, session)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    child = child_collect(url)
    grown = (child["after_kb"] - child["before_kb"]) / 1024
    print(
        f"  peak memory:                {peak / 2**20:7.1f} MB tracemalloc peak (this process: client "
        f"+ moto building the answers)  (target < {TARGET_MB} MB: {mark(peak / 2**20 < TARGET_MB)})"
    )
    print(
        f"                              {child['after_kb'] / 1024:7.1f} MB peak RSS (VmHWM) of a child "
        f"running only the collect, +{grown:.1f} MB over its peak after imports (collect there "
        f"{child['seconds']:.3f} s, {child['calls']} calls)"
    )

    all_snap, all_seconds = timed(collect.collect_account, session, aws_policies="all")
    print(
        f"  AWS managed policies: 'attached' {snapshot.api_calls} calls {best:.3f} s  vs  'all' "
        f"{all_snap.api_calls} calls {all_seconds:.3f} s  (whole collect; same "
        f"{len(all_snap.policies)} policies in the snapshot: {len(snapshot.policies) == len(all_snap.policies)})"
    )
    (f_calls, f_seconds), (u_calls, u_seconds) = (
        policy_part(session, "attached"),
        policy_part(session, "all"),
    )
    print(
        f"    policy part alone:        filtered+attached {f_calls} calls {f_seconds:.3f} s  vs  "
        f"unfiltered {u_calls} calls {u_seconds:.3f} s"
    )

    calls, seconds, covered = per_user_scan(session, per_user_limit)
    note = "" if covered == users else f" (first {covered} users; x{users / covered:.1f} for all)"
    print(
        f"  per-user way:               {seconds:7.3f} s, {calls} calls{note}\n"
        f"    ratio per-user / collect: {calls / snapshot.api_calls * users / covered:.0f}x calls, "
        f"{seconds / best * users / covered:.1f}x seconds"
    )
    evaluation(session, snapshot)


TARGET_ANALYSIS_SECONDS = 2.0


def synthetic_account(principals: int, policies: int, seed: int = 11):
    """An account shaped like a large real one, for the pure analysis pass."""
    import random

    from checks.model import (
        AccountSnapshot,
        Group,
        InlinePolicy,
        ManagedPolicy,
        PolicyRef,
        Role,
        User,
    )

    rng = random.Random(seed)
    account = "111122223333"
    now = datetime(2026, 11, 28, tzinfo=UTC)
    services = ["s3", "ec2", "lambda", "dynamodb", "sqs", "sns", "logs", "cloudwatch", "kms", "ssm"]

    def statement() -> dict:
        kind = rng.random()
        service = rng.choice(services)
        if kind < 0.35:
            return {"Effect": "Allow", "Action": [f"{service}:Get*", f"{service}:List*", f"{service}:Describe*"], "Resource": "*"}
        if kind < 0.55:
            return {"Effect": "Allow", "Action": [f"{service}:Put*", f"{service}:Create*"],
                    "Resource": f"arn:aws:{service}:*:{account}:team-{rng.randrange(200)}-*"}
        if kind < 0.65:
            return {"Effect": "Allow", "Action": f"{service}:*", "Resource": "*"}
        if kind < 0.72:
            return {"Effect": "Allow", "Action": ["iam:PassRole"], "Resource": f"arn:aws:iam::{account}:role/app-{rng.randrange(300)}"}
        if kind < 0.78:
            return {"Effect": "Allow", "Action": ["iam:CreateAccessKey", "iam:UpdateLoginProfile"],
                    "Resource": "arn:aws:iam::*:user/${aws:username}"}
        if kind < 0.82:
            return {"Effect": "Allow", "Action": "iam:CreatePolicyVersion", "Resource": f"arn:aws:iam::*:policy/team-{rng.randrange(200)}-*"}
        if kind < 0.86:
            return {"Effect": "Deny", "Action": f"{service}:Delete*", "Resource": "*",
                    "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}}
        if kind < 0.90:
            return {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{account}:role/app-{rng.randrange(300)}"}
        if kind < 0.93:
            return {"Effect": "Allow", "Action": ["lambda:UpdateFunctionCode", "ssm:SendCommand"], "Resource": "*",
                    "Condition": {"DateLessThan": {"aws:CurrentTime": "2024-01-01T00:00:00Z"}}}
        if kind < 0.95:
            return {"Effect": "Deny", "Action": "iam:*", "Resource": "*"}
        return {"Effect": "Allow", "NotAction": ["iam:*", "organizations:*"], "Resource": "*"}

    def doc(n: int) -> dict:
        return {"Version": "2012-10-17", "Statement": [statement() for _ in range(n)]}

    managed = tuple(
        ManagedPolicy(name=f"team-{i % 200}-p{i}", arn=f"arn:aws:iam::{account}:policy/team-{i % 200}-p{i}",
                      document=doc(rng.randint(1, 4)), attachment_count=1)
        for i in range(policies)
    )
    refs = [PolicyRef(p.name, p.arn) for p in managed]
    admin = ManagedPolicy("AdministratorAccess", "arn:aws:iam::aws:policy/AdministratorAccess",
                          {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    n_groups, n_roles = principals // 20, principals // 4
    n_users = principals - n_groups - n_roles
    groups = tuple(
        Group(f"g{i}", f"arn:aws:iam::{account}:group/g{i}", now, tuple(rng.sample(refs, 2)))
        for i in range(n_groups)
    )

    def trust(i: int) -> dict:
        r = rng.random()
        if r < 0.4:
            principal: dict = {"Service": rng.choice(["ec2.amazonaws.com", "lambda.amazonaws.com", "ecs-tasks.amazonaws.com"])}
        elif r < 0.7:
            principal = {"AWS": f"arn:aws:iam::{account}:root"}
        else:
            principal = {"AWS": f"arn:aws:iam::{account}:role/app-{rng.randrange(n_roles)}"}
        return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}]}

    roles = tuple(
        Role(f"app-{i}", f"arn:aws:iam::{account}:role/app-{i}", now, trust(i),
             attached_policies=(PolicyRef(admin.name, admin.arn),) if i % 97 == 0 else tuple(rng.sample(refs, 2)),
             inline_policies=(InlinePolicy("hop", doc(1)),) if i % 5 == 0 else (),
             permissions_boundary=managed[i].arn if i % 13 == 0 else None,
             instance_profiles=(f"app-{i}",) if i % 3 == 0 else ())
        for i in range(n_roles)
    )
    users = tuple(
        User(f"u{i}", f"arn:aws:iam::{account}:user/u{i}", now,
             groups=tuple(f"g{rng.randrange(n_groups)}" for _ in range(rng.randint(0, 2))),
             attached_policies=tuple(rng.sample(refs, rng.randint(0, 2))),
             inline_policies=(InlinePolicy("own", doc(2)),) if i % 4 == 0 else ())
        for i in range(n_users)
    )
    return AccountSnapshot(account, now, users, groups, roles, (*managed, admin), instance_profiles_known=True), now


def analysis_pass(principals: int, policies: int, repeat: int) -> None:
    from dataclasses import replace

    from checks import effective, escalation
    from checks.context import CheckContext
    from checks.rules.policies import privilege_escalation_policy

    snapshot, now = synthetic_account(principals, policies)
    runs, cpu = [], []
    for _ in range(max(1, repeat)):
        fresh = replace(snapshot)  # a new snapshot object: nothing cached carries over
        effective._FACTS.clear()  # nor the statement facts shared across documents
        started = time.process_time()
        analysis, seconds = timed(escalation.analyse, [fresh], now)
        cpu.append(time.process_time() - started)
        runs.append(seconds)
    best = min(runs)
    load = os.getloadavg()[0]
    edges = sum(len(v) for v in analysis.edges.values())
    exploitable = sum(1 for v in analysis.verdicts.values() if v.exploitable)
    print(
        f"\n== effective permissions + role graph: {principals} principals "
        f"({len(snapshot.users)} users, {len(snapshot.groups)} groups, {len(snapshot.roles)} roles), "
        f"{len(snapshot.policies)} managed policies\n"
        f"  analyse (pure):             {best:7.3f} s best of {len(runs)} (first {runs[0]:.3f} s), "
        f"{min(cpu):.3f} s CPU, load average {load:.1f} on {os.cpu_count()} cores  "
        f"(target <= {TARGET_ANALYSIS_SECONDS:g} s: {mark(best <= TARGET_ANALYSIS_SECONDS)}; "
        f"CPU {mark(min(cpu) <= TARGET_ANALYSIS_SECONDS)})\n"
        f"    {exploitable} principals with an exploitable method or admin, {edges} assume edges, "
        f"{len(analysis.chains)} chains"
    )
    fresh = replace(snapshot)
    results, seconds = timed(privilege_escalation_policy, fresh, CheckContext(now=now))
    failed = sum(1 for r in results if r.failed)
    print(f"  privilege-escalation-policy (analyse + findings): {seconds:.3f} s, {failed} FAIL of {len(results)}")
    # The account's part of the scan-wide role graph (stored on its scan row), and the
    # run's join of two such accounts (the second one the same account under another id).
    from checks import chains

    part, seconds = timed(chains.export, fresh, CheckContext(now=now))
    size = len(json.dumps(part))
    twin = json.loads(json.dumps(part).replace(snapshot.account_id, "444455556666"))
    crossing, join_seconds = timed(chains.results, [part, twin], now)
    print(f"  cross-account part: {seconds:.3f} s, {size / 1e6:.1f} MB of JSON "
          f"({len(part['principals'])} principals with sts:AssumeRole grants, {len(part['trusts'])} "
          f"roles open to other accounts); join of two such accounts: {join_seconds:.3f} s, "
          f"{len(crossing)} crossing chains")


def _by_operation(session: boto3.Session) -> dict[str, int]:
    counter = collect.ApiCallCounter()
    with counter.attached(session):
        collect.collect_account(session)
    return dict(counter.by_operation)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--per-user-limit",
        type=int,
        default=1000,
        help="scan only the first N users the per-user way and extrapolate (0: all; ~5 ms a call)",
    )
    parser.add_argument("--principals", type=int, default=5000)
    parser.add_argument("--policies", type=int, default=10000)
    parser.add_argument("--analysis-only", action="store_true", help="only the pure analysis pass")
    args = parser.parse_args(argv)
    analysis_pass(args.principals, args.policies, args.repeat)
    if args.analysis_only:
        return 0
    with running_moto_server() as url:
        os.environ["AWS_ENDPOINT_URL"] = url
        print(f"moto server {url}; python {sys.version.split()[0]}; boto3 {boto3.__version__}")
        for users in args.users:
            run_size(url, users, max(1, args.repeat), args.per_user_limit or None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
