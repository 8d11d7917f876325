"""The worker's jobs: triggers computed from settings (no sleeping), the job store in
Steward's database, and the job functions over a dependency-injected runtime."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import ValidationError
from slack_sdk import WebClient
from sqlalchemy import func, insert, select

from bot.config import Settings
from bot.core import cron
from bot.db.engine import session_scope
from bot.db.models import AuditEvent, DigestPost, SchedulerJob
from bot.run import scheduler as sched
from sandbox.slack_fake import SlackFake

# Monday 2026-11-30 10:17 UTC
NOW = datetime(2026, 11, 30, 10, 17, 23, tzinfo=UTC)


def settings(**kw) -> Settings:
    return Settings(slack_bot_token="xoxb-test", security_channel="C0SECURITY", **kw)


def next_fires(s: Settings, now: datetime = NOW) -> dict[str, datetime]:
    return {spec.id: spec.trigger.get_next_fire_time(None, now) for spec in sched.job_specs(s)}


def test_default_jobs_and_their_next_runs():
    specs = {spec.id: spec for spec in sched.job_specs(settings())}
    assert list(specs) == ["scan", "route", "expire", "digest", "audit-verify", "usage", "rotations", "reconcile",
                           "review-cycle"]
    assert all(spec.func == f"bot.run.scheduler:run_{spec.id.replace('-', '_')}" for spec in specs.values())
    assert specs["digest"].misfire_grace_time == 24 * 3600 and specs["scan"].misfire_grace_time == 3600
    fires = next_fires(settings())
    assert fires["scan"] == datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # every 6 h from midnight UTC
    assert fires["route"] == datetime(2026, 11, 30, 10, 30, tzinfo=UTC)  # hourly at half past
    assert fires["expire"] == datetime(2026, 12, 1, 7, 45, tzinfo=UTC)
    assert fires["digest"] == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # next Monday 09:00
    assert fires["audit-verify"] == datetime(2026, 12, 1, 6, 15, tzinfo=UTC)
    assert fires["reconcile"] == datetime(2026, 11, 30, 10, 18, tzinfo=UTC)  # every minute
    assert fires["usage"] == datetime(2026, 12, 1, 5, 30, tzinfo=UTC)  # daily (STEWARD_USAGE_CRON)
    assert fires["rotations"] == datetime(2026, 11, 30, 10, 30, tzinfo=UTC)  # hourly
    assert fires["review-cycle"] == datetime(2026, 11, 30, 10, 45, tzinfo=UTC)  # hourly at a quarter to


def test_a_quarterly_access_review_is_scheduled_only_when_asked_for():
    s = settings(review_cron="0 9 1 1,4,7,10 *")
    specs = {spec.id: spec for spec in sched.job_specs(s)}
    assert specs["review-start"].func == "bot.run.scheduler:run_review_start"
    assert next_fires(s)["review-start"] == datetime(2027, 1, 1, 9, 0, tzinfo=UTC)
    with pytest.raises(ValidationError):
        settings(review_cron="every quarter")


def test_the_review_jobs_call_the_review_service(engine, runtime_calls):
    runtime = fake_runtime(engine, runtime_calls)
    runtime.steward.reviews = SimpleNamespace(
        run_cycle=lambda: runtime_calls.append(("review-cycle",)) or "ok",
        start=lambda **kw: runtime_calls.append(("review-start", kw)) or SimpleNamespace(
            campaign=SimpleNamespace(id=1, population=3), reviewers=2, sent=2))
    sched.install_runtime(runtime)
    sched.run_review_cycle()
    sched.run_review_start()
    assert runtime_calls == [("review-cycle",), ("review-start", {"actor": "system:schedule", "scope": "all"})]


def test_intervals_do_not_move_with_restarts():
    trigger = sched.job_specs(settings(scan_interval_hours=6))[0].trigger
    later = NOW + timedelta(minutes=97)  # a restart later in the same slot
    assert trigger.get_next_fire_time(None, NOW) == trigger.get_next_fire_time(None, later)
    previous = trigger.get_next_fire_time(None, NOW)
    assert trigger.get_next_fire_time(previous, previous) == previous + timedelta(hours=6)


def test_scan_cron_wins_over_the_interval_and_uses_the_time_zone():
    s = settings(scan_interval_hours=1, scan_cron="30 2 * * *", timezone="Europe/Paris")
    scan = sched.job_specs(s)[0].trigger
    assert isinstance(scan, CronTrigger)
    assert scan.get_next_fire_time(None, NOW) == datetime(2026, 12, 1, 1, 30, tzinfo=UTC)  # 02:30 CET
    fires = next_fires(s)
    assert fires["digest"] == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # Monday 09:00 in Paris
    summer = datetime(2026, 6, 2, tzinfo=UTC)
    assert next_fires(s, summer)["digest"] == datetime(2026, 6, 8, 7, 0, tzinfo=UTC)  # CEST


def test_crontab_weekdays_are_standard_not_apscheduler_3():
    def digest_day(expr: str) -> str:
        return next_fires(settings(digest_cron=expr))["digest"].strftime("%a")

    assert digest_day("0 9 * * 1") == "Mon"
    assert digest_day("0 9 * * 0") == "Sun"
    assert digest_day("0 9 * * 7") == "Sun"
    assert digest_day("0 9 * * fri") == "Fri"
    days = set()
    fire, trigger = None, cron.cron_trigger("0 9 * * 0-2", "UTC")
    for _ in range(6):
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1) if fire else NOW)
        days.add(fire.strftime("%a"))
    assert days == {"Sun", "Mon", "Tue"}
    assert cron._standard_day_of_week("*/2") == "sun,tue,thu,sat"


def test_fractional_hours_for_tests_and_small_setups():
    scan = sched.job_specs(settings(scan_interval_hours=0.001))[0].trigger
    assert isinstance(scan, IntervalTrigger) and scan.interval == timedelta(seconds=4)


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("STEWARD_DIGEST_CRON", "0 9 * *", "5 fields"),
        ("STEWARD_SCAN_CRON", "0 25 * * *", "hour"),
        ("STEWARD_DIGEST_CRON", "0 9 * * 8", "day of week 8"),
        ("STEWARD_TIMEZONE", "Mars/Olympus", "unknown time zone"),
        ("STEWARD_SCAN_INTERVAL_HOURS", "0", "greater than 0"),
    ],
)
def test_bad_schedule_settings_name_the_variable(monkeypatch, env, value, message):
    from bot.config import SettingsError, load_settings

    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    assert env in str(excinfo.value) and message in str(excinfo.value)


def test_empty_scan_cron_means_the_interval(monkeypatch):
    monkeypatch.setenv("STEWARD_SCAN_CRON", " ")
    assert Settings().scan_cron is None
    with pytest.raises(ValidationError):
        Settings(digest_cron="")


# --- job store ------------------------------------------------------------------------------


@pytest.fixture
def runtime_calls():
    calls: list[tuple] = []
    yield calls
    sched.install_runtime(None)


def fake_runtime(engine, calls, *, client=None, s: Settings | None = None):
    def scans_run(**kw):
        calls.append(("scan", kw))
        return SimpleNamespace(run_id="r1", outcomes=[], failed=[], resolved=["fp-gone"])

    campaigns = SimpleNamespace(
        refresh_resolved=lambda fingerprints: calls.append(("refresh", list(fingerprints))) or 1,
        run_cycle=lambda: calls.append(("route",)) or "cycle",
        expire_decisions=lambda: calls.append(("expire",)) or 0,
    )
    steward = SimpleNamespace(scans=SimpleNamespace(run=scans_run), campaigns=campaigns)
    return SimpleNamespace(settings=s or settings(), engine=engine, client=client, steward=steward)


def start(s: Settings, engine) -> tuple:
    scheduler = sched.build_scheduler(s, engine)
    scheduler.start(paused=True)
    return scheduler, sched.sync_jobs(scheduler, sched.job_specs(s))


def test_jobs_persist_in_the_migrated_table_and_survive_restarts(engine, runtime_calls):
    s = settings()
    scheduler, outcome = start(s, engine)
    assert outcome == dict.fromkeys(["scan", "route", "expire", "digest", "audit-verify", "usage", "rotations",
                                     "reconcile", "review-cycle"], "added")
    stored = {job.id: job.next_run_time for job in scheduler.get_jobs()}
    scheduler.add_job("bot.run.scheduler:run_route", "interval", hours=3, id="legacy-job")
    scheduler.shutdown()
    with session_scope(engine) as session:
        assert session.execute(select(func.count()).select_from(SchedulerJob)).scalar_one() == 10  # nine jobs and the legacy one

    # Same settings: kept, with their stored times; an unknown job is removed.
    scheduler, outcome = start(s, engine)
    assert outcome == {**dict.fromkeys(stored, "kept"), "legacy-job": "removed"}
    assert {job.id: job.next_run_time for job in scheduler.get_jobs()} == stored
    assert scheduler.get_job("scan").func is sched.run_scan
    scheduler.shutdown()

    # New schedule: replaced.
    scheduler, outcome = start(settings(scan_cron="0 3 * * *", digest_cron="0 8 * * fri"), engine)
    assert outcome["scan"] == outcome["digest"] == "replaced" and outcome["route"] == "kept"
    assert str(scheduler.get_job("digest").trigger) == "cron[month='*', day='*', day_of_week='fri', hour='8', minute='0']"
    scheduler.shutdown()


def test_a_run_missed_while_no_worker_was_up_runs_once_on_start(engine, runtime_calls):
    sched.install_runtime(fake_runtime(engine, runtime_calls))
    s = settings()
    scheduler, _ = start(s, engine)
    scheduler.shutdown()
    # While no worker ran, the route job fell due 70 and 10 minutes ago (coalesced: one run).
    store = SQLAlchemyJobStore(engine=engine, tablename=sched.JOB_TABLE)
    store.start(scheduler, "default")
    job = store.lookup_job("route")
    job.next_run_time = datetime.now(UTC) - timedelta(minutes=70)
    store.update_job(job)

    done = threading.Event()
    scheduler, outcome = start(s, engine)
    assert outcome["route"] == "kept"
    scheduler.add_listener(lambda event: done.set() if event.job_id == "route" else None,
                           EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.resume()
    assert done.wait(10)
    scheduler.shutdown(wait=True)
    assert runtime_calls == [("route",)]


# --- the job functions ----------------------------------------------------------------------


def test_scan_job_scans_as_system_then_routes(engine, runtime_calls):
    sched.install_runtime(fake_runtime(engine, runtime_calls))
    sched.run_scan()
    sched.run_expire()
    # The scheduler enqueues and waits; the workers (this one included) take the jobs.
    assert runtime_calls == [("scan", {"actor": "system", "work": False}), ("refresh", ["fp-gone"]), ("route",), ("expire",)]


def test_runtime_factory_is_called_once(runtime_calls):
    built = []
    sched.install_runtime(factory=lambda: built.append(1) or SimpleNamespace(name="rt"))
    assert sched.current_runtime() is sched.current_runtime()
    assert built == [1]


@pytest.fixture
def fake():
    with SlackFake() as f:
        yield f


def test_digest_job_posts_once(engine, fake, runtime_calls):
    channel = fake.add_channel("security")
    client = WebClient(base_url=fake.base_url, token=fake.token, timeout=5)
    sched.install_runtime(fake_runtime(engine, runtime_calls, client=client, s=settings_for(channel)))
    sched.run_digest()
    sched.run_digest()
    assert len(fake.messages(channel, replies=False)) == 1
    with session_scope(engine) as session:
        assert session.execute(select(func.count()).select_from(DigestPost)).scalar_one() == 1


def settings_for(channel: str) -> Settings:
    return Settings(slack_bot_token="xoxb-test", security_channel=channel)


def test_audit_verify_alerts_the_security_channel_only_when_broken(engine, fake, runtime_calls, caplog):
    from bot.db import audit
    channel = fake.add_channel("security")
    client = WebClient(base_url=fake.base_url, token=fake.token, timeout=5)
    sched.install_runtime(fake_runtime(engine, runtime_calls, client=client, s=settings_for(channel)))
    with session_scope(engine) as session:
        audit.record(session, actor="system", action=audit.AuditAction.SCAN_STARTED)
    sched.run_audit_verify()
    assert fake.messages(channel) == []

    # Inserting at the head is the one thing the triggers allow: a forged event linked to it.
    with engine.begin() as conn:
        head_hash = conn.execute(select(AuditEvent.hash).where(AuditEvent.sequence == 1)).scalar_one()
        conn.execute(insert(AuditEvent.__table__).values(
            sequence=2, at=datetime.now(UTC), actor="mallory", action="refused", payload={},
            prev_hash=head_hash, hash="f" * 64))
    sched.run_audit_verify()
    (alert,) = fake.messages(channel)
    assert "hash chain is broken at event 2" in alert["text"]
    assert any("audit chain BROKEN" in r.getMessage() for r in caplog.records)


def test_audit_verify_without_the_key_says_so_rather_than_broken(engine, fake, runtime_calls, caplog):
    """A worker that lacks the key of a keyed chain cannot prove anything: it asks for the
    key, it does not cry tampering."""
    from bot.db import audit
    from bot.db.audit_key import resolve, set_process_keyring

    channel = fake.add_channel("security")
    client = WebClient(base_url=fake.base_url, token=fake.token, timeout=5)
    sched.install_runtime(fake_runtime(engine, runtime_calls, client=client, s=settings_for(channel)))
    set_process_keyring(resolve("scheduler-test-key-with-enough-characters-01"))
    try:
        with session_scope(engine) as session:
            audit.record(session, actor="system", action=audit.AuditAction.SCAN_STARTED)
        set_process_keyring(None)
        sched.run_audit_verify()
    finally:
        set_process_keyring(None)
    (alert,) = fake.messages(channel)
    assert "could not be verified" in alert["text"] and "STEWARD_AUDIT_KEY" in alert["text"]
    assert "broken" not in alert["text"]
