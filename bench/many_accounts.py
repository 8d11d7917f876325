"""Many accounts, several workers: a scan run as per-account jobs on PostgreSQL (prints figures).

    python bench/many_accounts.py [--accounts 40] [--users 20] [--workers 1 2 4]
                                  [--concurrency 4] [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Emulates N accounts in one moto server (ThreadedMotoServer in this process, without
MOTO_ACCOUNT_ID, so each `arn:aws:iam::<id>:role/IAMSteward` of STEWARD_ACCOUNT_ROLES is
its own account), each seeded with --users users (tests/aws.py `seed_iam`: keys, groups,
inline/customer policies, roles) and only the three AWS managed policies the seed attaches
(moto's copies, put into each account's backend: loading all ~1,500 per account costs
seconds and ~30 MB each, and Steward reads only the attached ones).

For each worker count: a fresh PostgreSQL database, that many `steward worker` processes
(each takes jobs from every queue, STEWARD_SCAN_CONCURRENCY at a time), then the scheduler's
path in this process: `ScanService.start` enqueues one job per account, `wait(work=False)`
waits without working. Printed: wall time, CPU per account (the workers' user+system
time, from /proc, over accounts scanned), peak memory per worker (VmHWM), API calls per
account (from the Scan rows), and the estimate for 1,000 and 10,000 accounts at 100 ms per
AWS call (see `estimate`).

The moto server answers every worker from this one process and competes with them for
the machine's cores: on a small machine the emulator, not Steward, limits the speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.pop("MOTO_IAM_LOAD_MANAGED_POLICIES", None)
os.environ.pop("MOTO_ACCOUNT_ID", None)
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_SESSION_TOKEN="testing",
                  AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
    os.environ.pop(_name, None)

from moto.iam.aws_managed_policies import aws_managed_policies_data  # noqa: E402
from moto.iam.models import AWSManagedPolicy  # noqa: E402
from sqlmodel import Session, select  # noqa: E402

from tests.aws import SEED_AWS_POLICIES, iam_backend, running_moto_server, seed_iam  # noqa: E402
from tests.databases import scratch_postgres  # noqa: E402

LATENCY = 0.100  # seconds per AWS call, for the estimate
GOAL_SECONDS_1000_2_WORKERS = 600
CLK_TCK = os.sysconf("SC_CLK_TCK")


def account_ids(n: int) -> list[str]:
    return [f"{100000000000 + i:012d}" for i in range(1, n + 1)]


def install_aws_policies(account_id: str) -> None:
    """Only the AWS managed policies the seed attaches, from moto's own data."""
    data = json.loads(aws_managed_policies_data)
    backend = iam_backend(account_id)
    for arn in SEED_AWS_POLICIES:
        name = arn.rsplit("/", 1)[1]
        policy = AWSManagedPolicy.from_data(name, account_id, "us-east-1", data[name])
        backend.aws_managed_policies.append(policy)
        backend.managed_policies[policy.arn] = policy


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its waited-for children (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12)) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_workers(count: int, env: dict, log_dir: Path) -> list[subprocess.Popen]:
    procs = []
    for i in range(count):
        log = (log_dir / f"worker-{count}-{i}.log").open("w")
        procs.append(subprocess.Popen([sys.executable, "-m", "bot", "worker"], env=env, cwd=log_dir,
                                      stdout=subprocess.DEVNULL, stderr=log))
    # Ready when each has built its runtime and started taking jobs (the log says so).
    deadline = time.time() + 120
    for i, proc in enumerate(procs):
        log = log_dir / f"worker-{count}-{i}.log"
        while "standing by for the scheduler lock" not in log.read_text():
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"worker {i} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
    time.sleep(1.0)
    return procs


def estimate(accounts: int, workers: int, concurrency: int, calls: float, cpu: float) -> float:
    """Seconds for `accounts` at LATENCY per call: each worker keeps `concurrency` accounts
    in flight, an account takes its calls one after another (calls x latency + its CPU),
    and a worker (one core each, on its own host or core) cannot go faster than its CPU."""
    per_account = calls * LATENCY + cpu
    latency_bound = accounts * per_account / (workers * concurrency)
    cpu_bound = accounts * cpu / workers
    return max(latency_bound, cpu_bound)


def run_once(url: str, base_url: str, workers: int, args, roles: str, log_dir: Path) -> dict:
    from bot.config import load_settings
    from bot.db.engine import make_engine
    from bot.db.migrate import upgrade
    from bot.db.models import Scan
    from bot.services.scans import ScanService

    with scratch_postgres(base_url, prefix="bench") as db:
        upgrade(db)
        env = {**os.environ, "AWS_ENDPOINT_URL": url, "STEWARD_DATABASE_URL": db, "STEWARD_ACCOUNT_ROLES": roles,
               "STEWARD_SCAN_CONCURRENCY": str(args.concurrency), "PYTHONPATH": str(ROOT),
               "SLACK_BOT_TOKEN": "xoxb-bench", "STEWARD_SECURITY_CHANNEL": "C0BENCH",
               "SLACK_API_URL": "http://127.0.0.1:9/api/", "STEWARD_SCAN_INTERVAL_HOURS": "168"}
        procs = start_workers(workers, env, log_dir)
        try:
            cpu_before = [cpu_seconds(p.pid) for p in procs]
            os.environ.update(STEWARD_DATABASE_URL=db, STEWARD_ACCOUNT_ROLES=roles, AWS_ENDPOINT_URL=url)
            engine = make_engine(db)
            service = ScanService(load_settings(), engine=engine)
            began = time.perf_counter()
            run = service.start(actor="bench")
            report = service.wait(run, work=False)
            wall = time.perf_counter() - began
            cpu = [cpu_seconds(p.pid) - b for p, b in zip(procs, cpu_before, strict=True)]
            peaks = [peak_rss_mb(p.pid) for p in procs]
            with Session(engine) as session:
                rows = list(session.exec(select(Scan).where(Scan.run_id == run.run_id)))
            engine.dispose()
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(60)
    failed = [o for o in report.outcomes if o.failed]
    calls = [r.api_calls for r in rows if r.status == "succeeded"]
    return {"workers": workers, "wall": wall, "cpu": cpu, "peaks": peaks, "failed": failed,
            "calls": statistics.mean(calls) if calls else 0.0, "accounts": len(rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=40)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=4, help="STEWARD_SCAN_CONCURRENCY of each worker")
    parser.add_argument("--database-url", default=os.environ.get(
        "STEWARD_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args(argv)
    ids = account_ids(args.accounts)
    roles = " ".join(f"arn:aws:iam::{a}:role/IAMSteward" for a in ids)
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"steward-bench-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"{args.accounts} accounts x {args.users} users; workers {args.workers}, concurrency "
          f"{args.concurrency} each; {os.cpu_count()} CPUs (shared machine: other jobs may run)")
    with running_moto_server() as url:
        t = time.perf_counter()
        for account in ids:
            install_aws_policies(account)
            seed_iam(args.users, account_id=account)
        print(f"seeded in {time.perf_counter() - t:.1f} s (not timed)\n")
        results = []
        for workers in args.workers:
            r = run_once(url, args.database_url, workers, args, roles, log_dir)
            results.append(r)
            per_account_cpu = sum(r["cpu"]) / max(1, r["accounts"])
            r["cpu_per_account"] = per_account_cpu
            print(f"{workers} worker(s): {r['wall']:6.1f} s wall, {r['accounts'] / r['wall']:5.2f} accounts/s, "
                  f"CPU {per_account_cpu:.3f} s/account (target <= 0.25), "
                  f"peak RSS per worker {', '.join(f'{p:.0f}' for p in r['peaks'])} MB, "
                  f"{r['calls']:.1f} calls/account, {len(r['failed'])} failed")
            for outcome in r["failed"][:3]:
                print(f"   failed: {outcome.label}: {outcome.error}")
        base = results[0]["wall"]
        print("\nspeed-up over 1 worker (emulator in the same 2-core box): "
              + ", ".join(f"{r['workers']}: x{base / r['wall']:.2f}" for r in results))
        cpu = max(statistics.median([r["cpu_per_account"] for r in results]), 0.001)
        calls = statistics.mean(r["calls"] for r in results)
        print(f"\nestimate at {LATENCY * 1000:.0f} ms per AWS call ({calls:.1f} calls, {cpu:.3f} s CPU per account, "
              f"concurrency {args.concurrency} per worker, one core per worker):")
        for workers in (1, 2, 4, 8):
            cells = []
            for n in (1000, 10000):
                seconds = estimate(n, workers, args.concurrency, calls, cpu)
                cells.append(f"{n:>6,} accounts {seconds / 60:6.1f} min")
            goal = ""
            if workers == 2:
                ok = estimate(1000, 2, args.concurrency, calls, cpu) <= GOAL_SECONDS_1000_2_WORKERS
                goal = f"   (goal 1,000 <= 10 min with 2 workers: {'ok' if ok else 'OVER'})"
            print(f"  {workers} worker(s): " + " | ".join(cells) + goal)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
