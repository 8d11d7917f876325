"""How long the weekly digest takes to build over a large database (not a test; prints figures).

    python bench/digest.py [--findings 100000] [--audit 1000000] [--accounts 200] [--repeat 5]
                           [--postgres URL | --no-postgres]

For SQLite (a temporary file) and PostgreSQL (a fresh database created next to the one in
--postgres, default $STEWARD_TEST_DATABASE_URL, dropped afterwards): migrate, bulk insert
(SQLAlchemy core executemany, not timed) N findings spread over 6 months in every state,
remediations, four scans a day per account for four weeks, and M raw audit rows (the chain
is not valid; the append-only triggers only refuse UPDATE and DELETE), then time
`DigestService.build(now)`: the first (cold) build and the best of --repeat, the slowest
SQL statements of one build, and the pure parts (Block Kit, text, PNG chart).

Target: build under 1 s. Everything is aggregated in SQL; Python only pivots grouped rows.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import event, insert, text  # noqa: E402

from bot.config import Settings  # noqa: E402
from bot.db.engine import make_engine  # noqa: E402
from bot.db.migrate import upgrade  # noqa: E402
from bot.db.models import Account, AuditEvent, Finding, Remediation, Scan  # noqa: E402
from bot.services.digest import DigestService  # noqa: E402
from bot.slack.blocks.digest import digest_blocks, digest_text  # noqa: E402
from bot.slack.charts import history_chart_png  # noqa: E402
from checks.catalog import CATALOG  # noqa: E402
from tests.databases import scratch_postgres  # noqa: E402

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
BATCH = 10_000
STATES = [("open", 20), ("notified", 25), ("reopened", 2), ("approved", 1), ("failed", 1), ("snoozed", 3),
          ("excepted", 5), ("remediated", 3), ("resolved", 40)]


def seed(engine, *, findings: int, audit_rows: int, accounts: int, rng: random.Random) -> None:
    account_ids = [f"{100000000000 + i:012d}" for i in range(accounts)]
    users = [f"U{i:09d}" for i in range(max(10, findings // 200))]
    states = [s for s, weight in STATES for _ in range(weight)]
    with engine.begin() as conn:
        conn.execute(insert(Account.__table__), [
            {"id": a, "label": f"acct-{i}", "first_seen": NOW - timedelta(days=400)} for i, a in enumerate(account_ids)])
        rows = []
        for i in range(findings):
            spec = rng.choice(CATALOG)
            state = rng.choice(states)
            first = NOW - timedelta(days=rng.uniform(0, 180))
            row = {
                "fingerprint": uuid.UUID(int=rng.getrandbits(128)).hex + uuid.UUID(int=i).hex[:32],
                "account_id": rng.choice(account_ids), "check_id": spec.id, "severity": spec.severity.value,
                "resource": f"arn:aws:iam::{rng.choice(account_ids)}:user/u{i}", "sub_key": "",
                "title": spec.title, "owner": None, "state": state, "details": {}, "first_seen": first,
                "last_seen": NOW, "resolved_at": None, "state_changed_at": first, "times_reopened": 0,
                "token": uuid.UUID(int=rng.getrandbits(128)).hex[:24], "notified_to": None, "notified_at": None,
                "decision": None, "decision_until": None, "decided_by": None, "decided_at": None,
            }
            if state == "resolved":
                row["resolved_at"] = first + (NOW - first) * rng.random()
            if state in ("notified", "excepted", "snoozed", "approved", "failed"):
                row["notified_to"] = rng.choice(users) if rng.random() < 0.9 else None
                row["notified_at"] = first + (NOW - first) * rng.random()
            if state in ("excepted", "snoozed"):
                row["decision"] = "exception" if state == "excepted" else "snooze"
                row["decided_by"] = row["notified_to"] or users[0]
                row["decided_at"] = row["notified_at"]
                row["decision_until"] = NOW + timedelta(days=rng.uniform(-2, 90))
            rows.append(row)
            if len(rows) == BATCH:
                conn.execute(insert(Finding.__table__), rows)
                rows = []
        if rows:
            conn.execute(insert(Finding.__table__), rows)

        ids = [r[0] for r in conn.execute(text("SELECT id, account_id, resource FROM finding WHERE state IN "
                                               "('remediated', 'resolved', 'approved') ORDER BY id"))]
        rems = []
        for finding_id in rng.sample(ids, min(len(ids), findings // 10)):
            done = NOW - timedelta(days=rng.uniform(0, 60))
            status = rng.choice(["succeeded"] * 6 + ["planned", "failed", "undone"])
            rems.append({"finding_id": finding_id, "fingerprint": "x", "action": "deactivate-key",
                         "account_id": account_ids[0], "resource": "arn", "target": {}, "status": status,
                         "dry_run": False, "plan_summary": "", "requested_by": rng.choice(users),
                         "requested_at": done - timedelta(hours=2), "finished_at": None if status == "planned" else done,
                         "request_ids": [], "token": uuid.uuid4().hex[:24]})
        if rems:
            conn.execute(insert(Remediation.__table__), rems)

        scans = []
        for account in account_ids:
            for k in range(4 * 28):
                at = NOW - timedelta(hours=6 * k)
                failed = rng.random() < 0.02
                scans.append({"run_id": f"bench-{k}", "account_id": account, "started_at": at, "finished_at": at,
                              "status": "failed" if failed else "succeeded", "api_calls": 10, "actor": "system",
                              "error": "AccessDenied" if failed else None,
                              "counts": {"error": True} if failed else
                              {"new": rng.randint(0, 5), "resolved": rng.randint(0, 5), "reopened": rng.randint(0, 1)}})
        for start in range(0, len(scans), BATCH):
            conn.execute(insert(Scan.__table__), scans[start:start + BATCH])

    audit_table = AuditEvent.__table__
    with engine.begin() as conn:  # raw rows, not a chain: lift migration 0009's insert-at-head guard
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER IF EXISTS audit_event_insert_guard ON audit_event"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS audit_event_insert_at_head"))
    for start in range(0, audit_rows, BATCH):
        with engine.begin() as conn:
            conn.execute(insert(audit_table), [
                {"sequence": n, "at": NOW - timedelta(seconds=audit_rows - n), "actor": "system",
                 "action": "scan.succeeded", "account": account_ids[n % accounts], "payload": {"n": n},
                 "prev_hash": "0" * 64, "hash": f"{n:064x}"}
                for n in range(start + 1, min(audit_rows, start + BATCH) + 1)])
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


@contextmanager
def statement_timer(engine):
    totals: dict[str, list[float]] = defaultdict(list)

    def before(conn, cursor, statement, params, context, executemany):
        conn.info.setdefault("bench_t0", []).append(time.perf_counter())

    def after(conn, cursor, statement, params, context, executemany):
        totals[" ".join(statement.split())[:110]].append(time.perf_counter() - conn.info["bench_t0"].pop())

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield totals
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def bench(label: str, url: str, args) -> None:
    print(f"\n== {label}: {args.findings:,} findings, {args.audit:,} audit rows, {args.accounts} accounts")
    upgrade(url)
    engine = make_engine(url)
    began = time.perf_counter()
    seed(engine, findings=args.findings, audit_rows=args.audit, accounts=args.accounts, rng=random.Random(7))
    print(f"  seeding (not the figure):     {time.perf_counter() - began:7.1f} s")
    service = DigestService(Settings(), engine)

    began = time.perf_counter()
    digest = service.build(NOW)
    cold = time.perf_counter() - began
    times = []
    for _ in range(args.repeat):
        began = time.perf_counter()
        service.build(NOW)
        times.append(time.perf_counter() - began)
    with statement_timer(engine) as totals:
        service.build(NOW)
    print(f"  build, first:                 {cold:7.3f} s   (target < 1 s)")
    print(f"  build, best of {args.repeat}:            {min(times):7.3f} s   (median {sorted(times)[len(times) // 2]:.3f} s)")
    print(f"  SQL statements per build:     {sum(len(v) for v in totals.values()):7d}")
    for statement, spent in sorted(totals.items(), key=lambda kv: -sum(kv[1]))[:4]:
        print(f"    {sum(spent) * 1000:7.1f} ms  {statement}")
    began = time.perf_counter()
    blocks = digest_blocks(digest)
    text_out = digest_text(digest)
    png = history_chart_png(digest.history)
    print(f"  blocks + text + PNG chart:    {time.perf_counter() - began:7.3f} s   "
          f"({len(blocks)} blocks, {len(text_out):,} chars, {len(png):,} bytes PNG)")
    print(f"  digest: {digest.open_total:,} open, {len(digest.posture)} accounts with open findings, "
          f"{digest.overdue:,} overdue, {digest.pending_approvals:,} pending approvals, "
          f"{len(digest.failed_accounts)} failed accounts, median fix {digest.this_week.median_fix_days} days")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--findings", type=int, default=100_000)
    parser.add_argument("--audit", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", default=os.environ.get("STEWARD_TEST_DATABASE_URL"),
                        help="an existing PostgreSQL database to create the bench database next to")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        bench("SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}", args)
    if args.postgres and not args.no_postgres:
        with scratch_postgres(args.postgres, prefix="steward_bench") as url:
            bench("PostgreSQL", url, args)
    else:
        print("\n(PostgreSQL skipped: give --postgres or set STEWARD_TEST_DATABASE_URL)")


if __name__ == "__main__":
    main()
