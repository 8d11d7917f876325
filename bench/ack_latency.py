"""Ack latency of `/iam whoami` over HTTP (not a test; prints figures).

    python bench/ack_latency.py [--requests 200] [--concurrency 20] [--users 1000]
                                [--slack-users 20] [--workers N] [--threads N]
                                [--warmup N] [--postgres ADMIN_URL]

Starts the local Slack fake and `steward serve` as a subprocess (the real console script,
gunicorn + gthread, on 127.0.0.1), seeds the database directly with `--users` IAM users
(every other one owned by one of `--slack-users` people, by email, with a finding on every
fourth one), then sends `--requests` signed `/iam whoami` slash commands, `--concurrency`
at a time, each on a new connection as Slack does, spread over the Slack users. Prints
p50/p95/p99/max of the HTTP response time (request sent -> whole ack body read), the
error count (non-200, or an ack without blocks), throughput, and how many users.info
calls reached Slack (the owner directory caches them per worker process).

Target: p99 <= 100 ms with 0 errors. Slack gives an app 3 s to ack.
`--warmup N` sends N requests first (not measured) to fill the per-worker caches.
The database is a temporary SQLite file, or with `--postgres ADMIN_URL` (for example
postgresql+psycopg://postgres@127.0.0.1:5432/test) a fresh PostgreSQL database created
through that connection and dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.db.engine import make_engine, session_scope  # noqa: E402
from bot.db.migrate import upgrade  # noqa: E402
from bot.db.models import Finding, IamIdentity  # noqa: E402
from sandbox import signing  # noqa: E402
from sandbox.slack_fake import SlackFake  # noqa: E402
from tests.bot.test_serve_http import free_port, steward_command  # noqa: E402
from tests.databases import scratch_postgres  # noqa: E402

SECRET = "bench-signing-secret"
TARGET_P99_MS = 100.0
ACCOUNTS = ("111111111111", "222222222222", "333333333333", "444444444444")


def seed(database_url: str, users: int, people: list[tuple[str, str]]) -> tuple[int, int]:
    """IAM users across a few accounts; every other one owned by a person (by email)."""
    upgrade(database_url)
    now = datetime.now(UTC).replace(microsecond=0)
    identities = findings = 0
    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            for i in range(users):
                account = ACCOUNTS[i % len(ACCOUNTS)]
                name = f"bench-user-{i:05d}"
                arn = f"arn:aws:iam::{account}:user/{name}"
                owner = (
                    people[(i // 2) % len(people)][1]
                    if i % 2 == 0
                    else f"{name}@contractors.example"
                )
                keys = [
                    {
                        "slot": 1,
                        "access_key_id": f"AKIABENCH{i:011d}",
                        "active": True,
                        "created": "2025-01-01T00:00:00Z",
                        "last_used": None,
                    }
                ]
                facts = {
                    "console": i % 3 == 0,
                    "mfa": i % 6 == 0,
                    "keys": keys,
                    "groups": ["devs", f"team-{i % 7}"],
                }
                session.add(
                    IamIdentity(
                        account_id=account,
                        name=name,
                        arn=arn,
                        owner=owner,
                        facts=facts,
                        last_seen=now,
                    )
                )
                identities += 1
                if i % 4 == 0:
                    session.add(
                        Finding(
                            fingerprint=f"bench-{i:05d}",
                            account_id=account,
                            check_id="old-access-key",
                            resource=arn,
                            sub_key=keys[0]["access_key_id"],
                            severity="medium",
                            title="Access key older than 90 days",
                            owner=owner,
                            state="open",
                            details={"access_key_id": keys[0]["access_key_id"]},
                            first_seen=now,
                            last_seen=now,
                            state_changed_at=now,
                        )
                    )
                    findings += 1
    finally:
        engine.dispose()
    return identities, findings


def start_server(
    fake: SlackFake, database_url: str, workdir: Path, args
) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEWARD_", "SLACK_", "AWS_"))}
    env.update(
        SLACK_BOT_TOKEN=fake.token,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=fake.base_url,
        STEWARD_DATABASE_URL=database_url,
    )
    command = [
        *steward_command(),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]
    if args.workers:
        command += ["--workers", str(args.workers)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    log = workdir / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"steward serve exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return process, url, log
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    raise SystemExit("steward serve did not become healthy")


def process_tree_cpu(pid: int) -> float | None:
    """User+system CPU seconds of a process and its children so far (Linux /proc)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        pids, total = [pid], 0.0
        while pids:
            current = pids.pop()
            with open(f"/proc/{current}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pids.extend(int(c) for c in children)
        return total
    except (OSError, ValueError, IndexError):
        return None


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(pct / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def run(fake: SlackFake, url: str, people: list[tuple[str, str]], count: int, concurrency: int):
    channels = {uid: fake.open_im(uid) for uid, _ in people}
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        uid = people[i % len(people)][0]
        body = signing.slash_command_body(
            text="whoami",
            user_id=uid,
            channel_id=channels[uid],
            response_url=fake.response_url(channels[uid], uid),
        )
        started = time.perf_counter()
        try:
            response = signing.post(url + "/slack/events", body, SECRET, timeout=10)
            elapsed = time.perf_counter() - started
            problem = None
            if response.status != 200:
                problem = f"HTTP {response.status}"
            elif not response.json().get("blocks"):
                problem = "ack without blocks"
        except Exception as exc:  # a bench counts every failure as an error
            elapsed, problem = time.perf_counter() - started, f"{type(exc).__name__}: {exc}"
        with lock:
            times.append(elapsed * 1000)
            if problem:
                errors.append(problem)

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(count)))
    wall = time.perf_counter() - began
    return sorted(times), errors, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--users", type=int, default=1000, help="IAM users in the database")
    parser.add_argument("--slack-users", type=int, default=20)
    parser.add_argument("--workers", type=int, default=None, help="default: steward serve's")
    parser.add_argument("--threads", type=int, default=None, help="default: steward serve's")
    parser.add_argument("--warmup", type=int, default=0, help="unmeasured requests first")
    parser.add_argument(
        "--postgres", metavar="ADMIN_URL", default=None, help="use a fresh PostgreSQL database"
    )
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="steward-bench-")))
        fake = stack.enter_context(SlackFake())
        if args.postgres:
            database_url = stack.enter_context(scratch_postgres(args.postgres, prefix="steward_bench"))
        else:
            database_url = f"sqlite:///{workdir / 'steward.db'}"
        people = [
            (
                fake.add_user(f"U0BENCH{i:03d}", name=f"person{i}", email=f"person{i}@example.com"),
                f"person{i}@example.com",
            )
            for i in range(args.slack_users)
        ]
        identities, findings = seed(database_url, args.users, people)
        process, url, log = start_server(fake, database_url, workdir, args)
        try:
            if args.warmup:
                run(fake, url, people, args.warmup, args.concurrency)
            info_before = len(fake.calls("users.info"))
            server_cpu_before, bench_cpu_before = process_tree_cpu(process.pid), time.process_time()
            times, errors, wall = run(fake, url, people, args.requests, args.concurrency)
            server_cpu_after, bench_cpu = (
                process_tree_cpu(process.pid),
                time.process_time() - bench_cpu_before,
            )
            info_calls = len(fake.calls("users.info")) - info_before
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

        dialect = database_url.split(":", 1)[0]
        p50, p95, p99 = (percentile(times, p) for p in (50, 95, 99))
        print(
            f"ack latency: /iam whoami over HTTP, steward serve ({dialect}), {identities} IAM users "
            f"({identities // 2} owned by {args.slack_users} Slack users), {findings} findings"
        )
        print(
            f"  requests {len(times)}  concurrency {args.concurrency}  warm-up {args.warmup}  "
            f"workers {args.workers or 'default'}  threads {args.threads or 'default'}"
        )
        print(f"  p50 {p50:7.1f} ms")
        print(f"  p95 {p95:7.1f} ms")
        print(
            f"  p99 {p99:7.1f} ms   (target <= {TARGET_P99_MS:.0f} ms: {'met' if p99 <= TARGET_P99_MS else 'MISSED'})"
        )
        print(f"  max {times[-1]:7.1f} ms   mean {sum(times) / len(times):.1f} ms")
        print(f"  errors {len(errors)}   (target 0: {'met' if not errors else 'MISSED'})")
        for problem in sorted(set(errors))[:5]:
            print(f"    {errors.count(problem)} x {problem}")
        print(f"  throughput {len(times) / wall:.0f} requests/s over {wall:.2f} s")
        print(f"  users.info calls to Slack during the run: {info_calls}")
        if server_cpu_before is not None and server_cpu_after is not None:
            server_ms = (server_cpu_after - server_cpu_before) / len(times) * 1000
            print(
                f"  CPU per request: steward serve {server_ms:.1f} ms, this process (load generator "
                f"+ Slack fake) {bench_cpu / len(times) * 1000:.1f} ms; {os.cpu_count()} CPUs, "
                f"load average {os.getloadavg()[0]:.1f}"
            )
        if process.returncode not in (0, None):
            print(
                f"  steward serve exited with {process.returncode}; log tail:\n{log.read_text()[-2000:]}"
            )


if __name__ == "__main__":
    main()
