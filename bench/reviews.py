"""An access review at scale (prints figures): 5,000 principals, 1,000 reviewers.

    python bench/reviews.py [--principals 5000] [--reviewers 1000] [--speedup 20] [--database-url URL]

Seeds one account's latest scan (4/5 users, 1/5 roles, entitlements like a real estate's:
groups, policies, keys, console) straight into the database, one Slack user per reviewer in
the local Slack with Slack's documented limits (users.list Tier 2, chat.postMessage about
one message per second per channel, chat.update Tier 3) compressed --speedup times, then
starts a campaign with the real service and client (429 + Retry-After honoured) and prints:
the time to freeze the population (one transaction), to route it, to send one DM per
reviewer, the pacing the limits impose, 429s met, and the time to export the evidence.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slack_sdk import WebClient  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from bot.config import Settings  # noqa: E402
from bot.db.engine import make_engine  # noqa: E402
from bot.db.migrate import upgrade  # noqa: E402
from bot.db.models import PrincipalInventory, Scan  # noqa: E402
from bot.services.campaigns import Pacer  # noqa: E402
from bot.services.reviews import CycleResult, to_csv  # noqa: E402
from bot.services.steward import Steward  # noqa: E402
from bot.slack.client import retry_handlers  # noqa: E402
from bot.slack.owners import OwnerDirectory  # noqa: E402
from sandbox.slack_fake import SlackFake  # noqa: E402

ACCOUNT = "111122223333"


def seed(engine, principals: int, reviewers: int) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    users = principals * 4 // 5
    roles = principals - users
    with engine.begin() as conn:
        scan_id = conn.execute(insert(Scan).returning(Scan.id), [{
            "run_id": str(uuid.uuid4()), "account_id": ACCOUNT, "started_at": now, "finished_at": now,
            "status": "succeeded", "attempts": 1, "api_calls": 10, "actor": "bench",
            "counts": {"inventory": {"users": users, "roles": roles, "groups": 50, "policies": 200}},
        }]).scalar_one()
        rows = []
        for i in range(principals):
            owner = f"person{i % reviewers:05d}@example.com"
            if i < users:
                ents = {"groups": [f"team-{i % 50}"], "attached_policies": [
                    {"name": f"app-{i % 200}", "arn": f"arn:aws:iam::{ACCOUNT}:policy/app-{i % 200}"}],
                    "inline_policies": [f"inline-{i}"] if i % 4 == 0 else [],
                    "keys": [{"slot": 1, "access_key_id": f"AKIA{i:016d}", "active": True,
                              "created": "2026-01-01T00:00:00+00:00", "last_used": "2026-11-01T00:00:00+00:00"}],
                    "console": i % 3 == 0, "mfa": i % 6 == 0}
                kind, name = "user", f"svc-{i:05d}"
            else:
                ents = {"attached_policies": [{"name": f"app-{i % 200}",
                                               "arn": f"arn:aws:iam::{ACCOUNT}:policy/app-{i % 200}"}],
                        "inline_policies": [], "service_linked": False,
                        "trusted_by": [f"arn:aws:iam::{ACCOUNT}:root"]}
                kind, name = "role", f"role-{i:05d}"
            rows.append({"account_id": ACCOUNT, "scan_id": scan_id, "kind": kind, "name": name,
                         "arn": f"arn:aws:iam::{ACCOUNT}:{kind}/{name}", "owner": owner, "entitlements": ents,
                         "created": "2025-01-01T00:00:00+00:00", "last_used": "2026-11-01T00:00:00+00:00"})
        conn.execute(insert(PrincipalInventory), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--principals", type=int, default=5000)
    parser.add_argument("--reviewers", type=int, default=1000)
    parser.add_argument("--speedup", type=float, default=20.0)
    parser.add_argument("--database-url", default=None, help="an empty database (default: SQLite in a temp dir)")
    args = parser.parse_args()
    window = 60.0 / args.speedup
    limits = {"users.list": 20, "chat.update": 50}

    with tempfile.TemporaryDirectory() as tmp, SlackFake() as fake:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        engine = make_engine(url)
        seed(engine, args.principals, args.reviewers)
        for i in range(args.reviewers):
            fake.add_user(name=f"person{i:05d}", email=f"person{i:05d}@example.com")
        security = fake.add_channel("security")
        for method, per_minute in limits.items():
            fake.set_rate(method, per_minute, window=window)
        fake.set_rate("chat.postMessage", 60, per_channel=True, window=window)

        client = WebClient(token=fake.token, base_url=fake.base_url, retry_handlers=retry_handlers(10))
        settings = Settings(database_url=url, slack_bot_token=fake.token, slack_api_url=fake.base_url,
                            security_channel=security)
        steward = Steward(settings, engine=engine, directory=OwnerDirectory(client), client=client)
        steward.campaigns.pacer = steward.reviews.pacer = Pacer(interval=window / 60)  # 1/s per channel, compressed
        reviews = steward.reviews

        began = time.perf_counter()
        now = reviews.clock()
        campaign = reviews.freeze(actor="bench", accounts=(), due_at=now.replace(year=now.year + 1), scope="all",
                                  name="bench", now=now)
        freeze = time.perf_counter() - began
        began = time.perf_counter()
        routed = reviews.route(campaign.id)
        route = time.perf_counter() - began
        began = time.perf_counter()
        result = CycleResult()
        reviews.send_all(campaign.id, result)
        reviews.update_progress(campaign.id, force=True)
        send = time.perf_counter() - began
        again = CycleResult()
        reviews.send_all(campaign.id, again)
        began = time.perf_counter()
        _header, rows, _summary = reviews.export(campaign.id, actor="bench")
        csv_text = to_csv(rows)
        export = time.perf_counter() - began

        posts = [c for c in fake.calls("chat.postMessage") if c.status == 200 and c.response.get("ok")]
        per_channel = Counter(c.params.get("channel") for c in posts)
        limited = Counter(c.method for c in fake.calls() if c.status == 429)
        calls = Counter(c.method for c in fake.calls() if c.status == 200)
        dms = len(per_channel) - (1 if security in per_channel else 0)
        busiest = max(per_channel.values())
        # Slack: chat.postMessage ~1/s per channel (each DM is its own channel); users.list Tier 2.
        real_post_wait = (busiest - 1) * 1.0
        real_lookup = (math.ceil(calls["users.list"] / 20) - 1) * 60 if calls["users.list"] else 0
        print(f"Access review: {campaign.population} principals ({campaign.inventory_count} in the scan's inventory), "
              f"{routed} reviewers; Slack limits simulated {args.speedup:g}x faster; {engine.dialect.name}")
        print(f"  freeze (one transaction)   {freeze:.2f} s  ({campaign.population / freeze:,.0f} items/s)")
        print(f"  route (owners -> reviewers) {route:.2f} s  ({calls['users.list']} users.list pages, "
              f"0 users.lookupByEmail)")
        print(f"  send                        {send:.2f} s  for {dms} DMs + {len(posts) - dms} security-channel "
              f"message(s); failures {len(result.failures)}; second pass sent {again.sent} (target 0)")
        print(f"  pacing                      one message per channel: at most {busiest} post(s) to one channel, "
              f"so Slack's ~1/s per channel needs {real_post_wait:.0f} s of waiting; users.list needs "
              f"{real_lookup:.0f} s; the send is bound by round trips "
              f"({len(posts)} posts, {send / max(1, len(posts)) * 1000:.1f} ms each here)")
        print(f"  429s met                    {dict(limited) or 0}")
        print(f"  at 100 ms per Slack call    ~{(len(posts) + calls['users.list']) * 0.1:.0f} s for the whole send")
        print(f"  export (rows x entitlements) {export:.2f} s for {len(rows):,} rows ({len(csv_text) / 1e6:.1f} MB CSV)")
        engine.dispose()


if __name__ == "__main__":
    main()
