"""How usage collection (IAM last-accessed data) scales: calls and time (not a test; prints figures).

    python bench/usage_scale.py [--principals 1000] [--concurrency 8 16] [--latency 0 0.05] [--polls 1 3]

For each setting: moto's ThreadedMotoServer in this process with the Access Advisor
emulator (tests/access_advisor.py), seeded straight into the backend with about
--principals users and roles holding policies (tests.aws.seed_iam: users in groups, a
tenth as many roles; seeding is not timed), a random third of them with recorded use of
one to three services. Then, over HTTP:

1. `checks.usage.collect_usage` (the real path): API calls by operation, poll rounds,
   wall seconds. `--polls N`: the emulator answers IN_PROGRESS N times per job before
   COMPLETED (AWS usually needs a few seconds per job); the collector's backoff between
   rounds (1 s, 2 s, 4 s ... 30 s) is real time and is counted in. `--latency S`: every
   emulated Generate/Get call waits S seconds first (AWS's answer time), so the bounded
   concurrency shows.
2. The `unused-permissions` check over the collected account (pure): seconds.

Target: calls ≈ 1 + pages + principals × (1 + polls + 1), never more than one page per
poll; time dominated by AWS's job time, not by the number of principals.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
)
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "MOTO_IAM_LOAD_MANAGED_POLICIES"):
    os.environ.pop(_name, None)

import boto3  # noqa: E402
import pytest  # noqa: E402

from checks import usage  # noqa: E402
from tests import access_advisor  # noqa: E402
from tests.aws import iam_backend, reset_moto, running_moto_server, seed_iam  # noqa: E402

SERVICES = ("s3", "ec2", "lambda", "dynamodb", "sqs", "kms", "logs")


def seed(principals: int, now: datetime) -> int:
    users = round(principals / 1.1)
    seed_iam(users, roles=principals - users, customer_policies=5, aws_policies=(), now=now)
    backend = iam_backend()
    arns = [u.arn for u in backend.users.values()] + [r.arn for r in backend.roles.values()]
    rng = random.Random(11)
    for arn in rng.sample(arns, len(arns) // 3):
        for ns in rng.sample(SERVICES, rng.randint(1, 3)):
            access_advisor.ADVISOR.use(arn, f"{ns}:Get{ns.capitalize()}", rng.uniform(0, 120), now=now)
    return len(arns)


def with_latency(seconds: float) -> None:
    from moto.iam.responses import IamResponse

    generate, get = access_advisor.generate, access_advisor.get

    def slow_generate(self):
        time.sleep(seconds)
        return generate(self)

    def slow_get(self):
        time.sleep(seconds)
        return get(self)

    IamResponse.generate_service_last_accessed_details = slow_generate
    IamResponse.get_service_last_accessed_details = slow_get


def evaluate(session: boto3.Session, run: usage.UsageRun) -> float:
    from dataclasses import replace

    from checks.collect import collect_account
    from checks.context import CheckContext
    from checks.rules.usage import unused_permissions

    snapshot = replace(collect_account(session, sleep=lambda _: None), usage=run.usage)
    began = time.perf_counter()
    results = unused_permissions(snapshot, CheckContext(now=datetime.now(UTC)))
    spent = time.perf_counter() - began
    print(f"  unused-permissions check (pure): {len(results)} principal/policy pairs judged, "
          f"{sum(r.failed for r in results)} findings in {spent:.2f} s")
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--principals", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.05])
    parser.add_argument("--polls", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    now = datetime.now(UTC)
    monkeypatch = pytest.MonkeyPatch()
    with running_moto_server() as url:
        os.environ["AWS_ENDPOINT_URL"] = url
        for latency in args.latency:
            for polls in args.polls:
                for concurrency in args.concurrency:
                    reset_moto(url)
                    access_advisor.install(monkeypatch, polls_before_done=polls)
                    if latency:
                        with_latency(latency)
                    total = seed(args.principals, now)
                    session = boto3.Session(region_name="us-east-1")
                    began = time.perf_counter()
                    run = usage.collect_usage(session, concurrency=concurrency)
                    wall = time.perf_counter() - began
                    ops = ", ".join(f"{k.split(':')[1]} {v}" for k, v in sorted(run.by_operation.items()))
                    print(f"{total} users+roles, latency {latency * 1000:.0f} ms, {polls} poll(s) in progress, "
                          f"concurrency {concurrency}:")
                    print(f"  collected {len(run.usage)} principals, {len(run.failed)} failed, "
                          f"{run.api_calls} calls ({ops}), {run.poll_rounds} poll rounds, {wall:.1f} s wall")
                    if latency == args.latency[0] and concurrency == args.concurrency[0] and polls == args.polls[0]:
                        evaluate(session, run)
    monkeypatch.undo()


if __name__ == "__main__":
    main()
