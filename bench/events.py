"""Risky-change intake throughput (not a test; prints figures).

    python bench/events.py [--events 20000] [--risky 200] [--postgres URL | --no-postgres]

1. Rule evaluation alone (pure): CloudTrail records of everyday calls (ListUsers, GetRole,
   AssumeRole, sign-ins with MFA, ...) parsed from their EventBridge JSON and judged by the
   rule table.
2. Through the database: the same records in batches of 10 (one SQS receive) through
   `ActivityService.ingest` — parse, judge, the seen-events check and insert — on SQLite (a
   temporary file) and PostgreSQL (a fresh database beside --postgres, default
   $STEWARD_TEST_DATABASE_URL, dropped afterwards). Target: >= 500 events/s.
3. Risky events (access keys created for other users by --risky distinct people), each a
   row, an audit event and a DM through the local Slack fake: Steward's own cost per risky
   event. In production these are bounded by Slack: chat.postMessage allows about one
   message per second per channel (each DM is its own channel) and Slack's workspace-wide
   limits, not by Steward.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slack_sdk import WebClient  # noqa: E402

from bot.config import Settings  # noqa: E402
from bot.db.engine import make_engine  # noqa: E402
from bot.db.migrate import upgrade  # noqa: E402
from bot.services.steward import Steward  # noqa: E402
from bot.slack.owners import OwnerDirectory  # noqa: E402
from checks.activity.events import parse  # noqa: E402
from checks.activity.rules import RuleContext, evaluate  # noqa: E402
from sandbox.slack_fake import SlackFake  # noqa: E402
from tests import cloudtrail_events as ct  # noqa: E402
from tests.databases import scratch_postgres  # noqa: E402

BATCH = 10


def everyday(n: int) -> list[str]:
    """EventBridge bodies of calls no rule cares about, in a realistic mix."""
    kinds = [
        lambda: ct.record("ListUsers", read_only=True),
        lambda: ct.record("GetRole", request={"roleName": "app"}, read_only=True),
        lambda: ct.record("AssumeRole", source="sts.amazonaws.com", identity=ct.role_session("ci"),
                          request={"roleArn": "arn:aws:iam::123456789012:role/deploy", "roleSessionName": "ci"}),
        lambda: ct.console_login(ct.user_identity("bob"), mfa="Yes"),
        lambda: ct.record("CreateAccessKey", response={"accessKey": {"accessKeyId": "AKIAX", "userName": "alice"}}),
        lambda: ct.record("TagRole", request={"roleName": "app", "tags": [{"key": "team", "value": "x"}]}),
        lambda: ct.record("LookupEvents", source="cloudtrail.amazonaws.com", read_only=True),
    ]
    return [ct.body(kinds[i % len(kinds)]()) for i in range(n)]


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f} events/s ({seconds * 1000 / n:.3f} ms each)"


def bench_rules(bodies: list[str]) -> None:
    ctx = RuleContext()
    start = time.perf_counter()
    fired = sum(len(evaluate(parse(b), ctx)) for b in bodies)
    took = time.perf_counter() - start
    print(f"  parse + rules (pure):             {rate(len(bodies), took)}; {fired} fired")


@contextmanager
def steward_on(url: str):
    upgrade(url)
    engine = make_engine(url)
    with SlackFake() as fake:
        people = []
        for i in range(1000):
            uid = f"U{i:09d}"
            fake.add_user(uid, name=f"person{i}", email=f"person{i}@example.com")
            people.append(uid)
        security = fake.add_channel("security", members=[])
        settings = Settings(database_url=url, slack_bot_token=fake.token, slack_api_url=fake.base_url,
                            security_channel=security)
        client = WebClient(token=fake.token, base_url=fake.base_url)
        steward = Steward(settings, engine=engine, directory=OwnerDirectory(client), client=client)
        try:
            yield steward, fake
        finally:
            engine.dispose()


def bench_database(label: str, url: str, bodies: list[str], risky: int) -> None:
    with steward_on(url) as (steward, fake):
        activity = steward.activity
        events = [parse(b) for b in bodies]
        start = time.perf_counter()
        for i in range(0, len(events), BATCH):
            report = activity.ingest(events[i:i + BATCH])
            assert report.asked == report.escalated == 0, report
        took = time.perf_counter() - start
        print(f"  {label}: quiet events, ingest:    {rate(len(events), took)}")
        start = time.perf_counter()
        for i in range(0, len(events), BATCH):
            assert activity.ingest(events[i:i + BATCH]).duplicates == len(events[i:i + BATCH])
        took = time.perf_counter() - start
        print(f"  {label}: duplicates (redelivery): {rate(len(events), took)}")
        # Risky: each person creates a key for someone else, from a role session named like their email.
        risky_events = [parse(ct.body(ct.create_access_key(
            "dave", identity=ct.role_session(f"person{i}@example.com"), key=f"AKIA{i:016d}")))
            for i in range(risky)]
        start = time.perf_counter()
        asked = 0
        for i in range(0, len(risky_events), BATCH):
            asked += activity.ingest(risky_events[i:i + BATCH]).asked
        took = time.perf_counter() - start
        print(f"  {label}: risky events (row, audit, DM via the fake): {rate(risky, took)}; {asked} DMs, "
              f"{len(fake.calls('chat.postMessage'))} chat.postMessage, "
              f"{len(fake.calls('users.lookupByEmail'))} users.lookupByEmail")
        print(f"  {label}: Slack's bound: chat.postMessage ~1 message/s per channel (one DM channel per person), "
              "so a burst of risky changes by one person is paced at ~1/s by Slack, not by Steward")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--risky", type=int, default=200)
    parser.add_argument("--postgres", default=os.environ.get("STEWARD_TEST_DATABASE_URL"))
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    bodies = everyday(args.events)
    print(f"{args.events} everyday CloudTrail events, {args.risky} risky ones")
    bench_rules(bodies)
    with tempfile.TemporaryDirectory() as tmp:
        bench_database("SQLite    ", f"sqlite:///{Path(tmp) / 'events.db'}", bodies, args.risky)
    if args.postgres and not args.no_postgres:
        with scratch_postgres(args.postgres) as url:
            bench_database("PostgreSQL", url, everyday(args.events), args.risky)


if __name__ == "__main__":
    main()
