"""Leader election: one scheduling worker at a time, on PostgreSQL and SQLite.

The process tests start real worker processes (the real lock, scheduler, job store and job
functions; only the runtime's services are stand-ins that append to a file), make the scan
interval about a second through the settings, and watch the file: who scans, and when.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine, text

from bot.config import Settings
from bot.run import scheduler as sched
from bot.run.leader import FileLock, PostgresAdvisoryLock, ProcessLock, advisory_key, leader_lock

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("STEWARD_TEST_DATABASE_URL")
pg_only = pytest.mark.skipif(not PG_URL, reason="STEWARD_TEST_DATABASE_URL not set")


def worker_main() -> None:
    """A worker process whose services record what they are asked to do (see module doc)."""
    import logging

    from bot.config import load_settings
    from bot.db.engine import make_engine

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=f"{os.getpid()} %(name)s: %(message)s")
    settings = load_settings()
    log_path = Path(os.environ["TEST_WORKER_LOG"])

    def record(what: str) -> None:
        with log_path.open("a") as f:  # O_APPEND: whole lines from every process
            f.write(f"{os.getpid()} {what} {time.time():.3f}\n")

    def scan(**_kw):
        record("scan")
        return SimpleNamespace(run_id="test", outcomes=[], failed=[])

    runtime = SimpleNamespace(
        settings=settings, engine=make_engine(settings.effective_database_url), client=None,
        steward=SimpleNamespace(scans=SimpleNamespace(run=scan),
                                campaigns=SimpleNamespace(run_cycle=lambda: None, expire_decisions=lambda: 0)),
    )
    record("start")
    code = sched.run_worker(settings, runtime_factory=lambda: runtime, lock_check_seconds=0.5)
    record(f"exit{code}")
    sys.exit(code)


class Workers:
    def __init__(self, database_url: str, tmp_path: Path):
        self.log = tmp_path / "workers.log"
        self.log.touch()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "STEWARD_DATABASE_URL": database_url,
            "STEWARD_SCAN_INTERVAL_HOURS": "0.0003",  # about a second
            "STEWARD_LEADER_POLL_SECONDS": "0.2",
            "TEST_WORKER_LOG": str(self.log),
        }
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        command = args or ("-c", "from tests.bot.test_leader import worker_main; worker_main()")
        err_path = self.tmp_path / f"worker-{len(self.procs)}.err"
        with err_path.open("w") as err:  # a file, not a pipe nobody drains
            proc = subprocess.Popen([sys.executable, *command], cwd=self.tmp_path, env=self.env,
                                    stdout=subprocess.DEVNULL, stderr=err)
        proc.err_path = err_path
        self.procs.append(proc)
        return proc

    @staticmethod
    def stderr(proc: subprocess.Popen) -> str:
        return proc.err_path.read_text()

    def wait_for_stderr(self, proc: subprocess.Popen, needle: str, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if needle in self.stderr(proc):
                return
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not in the worker's stderr:\n{self.stderr(proc)}")

    def events(self, pid: int | None = None, what: str | None = None) -> list[float]:
        found = []
        for line in self.log.read_text().splitlines():
            p, w, at = line.split()
            if (pid is None or int(p) == pid) and (what is None or w == what):
                found.append(float(at))
        return found

    def wait_for(self, pid: int, what: str, count: int = 1, timeout: float = 30) -> float:
        deadline = time.time() + timeout
        while time.time() < deadline:
            seen = self.events(pid, what)
            if len(seen) >= count:
                return seen[count - 1]
            time.sleep(0.05)
        raise AssertionError(f"{pid} did not {what} x{count} in {timeout}s; log:\n{self.log.read_text()}"
                             + "".join(f"\n--- {p.pid} stderr:\n{self.stderr(p)}" for p in self.procs))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture
def workers(database_url, tmp_path):
    group = Workers(database_url, tmp_path)
    yield group
    group.stop_all()


def wait_for_any(workers, procs, what: str, timeout: float = 30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for proc in procs:
            if workers.events(proc.pid, what):
                return proc
        time.sleep(0.05)
    raise AssertionError(f"none of {[p.pid for p in procs]} did {what}:\n{workers.log.read_text()}")


def test_a_standby_takes_over_when_the_leader_is_killed(workers):
    leader = workers.start()
    workers.wait_for(leader.pid, "scan")
    standbys = [workers.start(), workers.start()]
    for proc in standbys:
        workers.wait_for(proc.pid, "start")
    workers.wait_for(leader.pid, "scan", count=len(workers.events(leader.pid, "scan")) + 2)
    assert all(workers.events(p.pid, "scan") == [] for p in standbys)  # only the leader schedules

    leader.send_signal(signal.SIGKILL)
    killed_at = time.time()
    assert leader.wait(10) == -signal.SIGKILL
    new_leader = wait_for_any(workers, standbys, "scan")
    assert workers.events(new_leader.pid, "scan")[0] - killed_at < 60  # in practice ~1-2 s
    (still_standby,) = [p for p in standbys if p is not new_leader]
    workers.wait_for(new_leader.pid, "scan", count=3)  # keeps scheduling, alone
    assert workers.events(still_standby.pid, "scan") == []

    still_standby.send_signal(signal.SIGTERM)  # a standby stops at once, exit 0
    assert still_standby.wait(10) == 0
    assert "stopped while standing by" in workers.stderr(still_standby)
    new_leader.send_signal(signal.SIGTERM)
    assert new_leader.wait(15) == 0


def test_sigterm_shuts_down_cleanly_and_hands_over_at_once(workers):
    first = workers.start()
    workers.wait_for(first.pid, "scan")
    second = workers.start()
    workers.wait_for(second.pid, "start")

    first.send_signal(signal.SIGTERM)
    assert first.wait(15) == 0
    workers.wait_for(first.pid, "exit0")
    stopped_at = time.time()
    workers.wait_for(second.pid, "scan")
    assert time.time() - stopped_at < 10
    assert "released the scheduler lock" in workers.stderr(first)

    second.send_signal(signal.SIGTERM)  # also exits 0 from a standby that became leader
    assert second.wait(15) == 0


def test_steward_worker_command_starts_and_stops_on_sigterm(workers):
    """The real `steward worker`: settings checked, runtime built, leader, exit 0 on SIGTERM."""
    workers.env.update(SLACK_BOT_TOKEN="xoxb-test", STEWARD_SECURITY_CHANNEL="C0SECURITY",
                       SLACK_API_URL="http://127.0.0.1:9/api/", STEWARD_SCAN_INTERVAL_HOURS="168")
    proc = workers.start("-m", "bot", "worker")
    workers.wait_for_stderr(proc, "is the scheduler leader")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, workers.stderr(proc)
    assert "released the scheduler lock" in workers.stderr(proc)


def test_steward_worker_names_missing_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "STEWARD_"))}
    result = subprocess.run([sys.executable, "-m", "bot", "worker"], cwd=tmp_path, capture_output=True, text=True,
                            env={**env, "PYTHONPATH": str(ROOT), "SLACK_BOT_TOKEN": "xoxb-x"}, timeout=60)
    assert result.returncode == 2
    assert "missing setting: STEWARD_SECURITY_CHANNEL" in result.stderr
    assert "SLACK_BOT_TOKEN" not in result.stderr.split("(")[0]


# --- the locks themselves, in one process -------------------------------------------------------


def test_file_lock_is_exclusive_and_released(tmp_path):
    url = f"sqlite:///{tmp_path / 'steward.db'}"
    first, second = leader_lock(url, holder="one"), leader_lock(url, holder="two")
    assert isinstance(first, FileLock) and first.path == tmp_path / "steward.db-scheduler.lock"
    assert first.try_acquire() and first.try_acquire()  # idempotent for the holder
    assert not second.try_acquire()
    assert first.current_holder() == "one"
    first.release()
    first.release()
    assert second.try_acquire() and second.still_held()
    second.release()
    assert not second.still_held()


def test_in_memory_sqlite_uses_a_process_lock():
    first, second = leader_lock("sqlite://", name="test-mem"), leader_lock("sqlite://", name="test-mem")
    assert isinstance(first, ProcessLock)
    assert first.try_acquire() and not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()


@pg_only
def test_advisory_lock_is_exclusive_and_visible_in_pg_locks():
    first = PostgresAdvisoryLock(PG_URL, name="test-exclusive", holder="one")
    second = PostgresAdvisoryLock(PG_URL, name="test-exclusive", holder="two")
    try:
        assert first.try_acquire() and not second.try_acquire()
        key = advisory_key("test-exclusive")
        admin = create_engine(PG_URL)
        with admin.connect() as conn:
            holders = conn.execute(text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :hi AND l.objid = :lo"
            ), {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}).scalars().all()
        admin.dispose()
        assert holders == ["steward-worker one"]
        first.release()
        assert second.try_acquire()
    finally:
        first.release()
        second.release()


@pytest.fixture
def pg_database_url():
    from bot.db.migrate import upgrade
    from tests.conftest import PG_URL
    from tests.databases import scratch_postgres

    with scratch_postgres(PG_URL) as url:
        upgrade(url)
        yield url


@pg_only
def test_a_leader_that_loses_its_database_session_steps_down(pg_database_url):
    s = Settings(database_url=pg_database_url, leader_poll_seconds=0.1)
    lock = PostgresAdvisoryLock(pg_database_url, name="test-lost", holder="doomed")
    runtime = SimpleNamespace(settings=s, engine=create_engine(pg_database_url), client=None, steward=None)
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(sched.run_worker(
        s, runtime_factory=lambda: runtime, lock=lock, stop=threading.Event(), handle_signals=False,
        lock_check_seconds=0.2)))
    try:
        worker.start()
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        deadline = time.time() + 20
        killed = 0
        with admin.connect() as conn:
            while not killed and time.time() < deadline:
                killed = conn.execute(text(  # the session holding the advisory lock
                    "SELECT count(pg_terminate_backend(a.pid)) FROM pg_stat_activity a JOIN pg_locks l"
                    " ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted"
                    " WHERE a.application_name = 'steward-worker doomed'")).scalar()
                time.sleep(0.05)
        admin.dispose()
        assert killed == 1
        worker.join(20)
        assert result == [1]  # exit code 1: the supervisor restarts it as a standby
    finally:
        lock.release()
        sched.install_runtime(None)
        runtime.engine.dispose()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_zombie_lease_holder_is_gone():
    """A killed worker nobody has reaped yet still answers signal 0: it must count as gone,
    or its remediation waits for the lease to expire instead of being settled at start-up."""
    import socket

    from bot.run.leader import _pid_namespace, holder_gone

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child did not end"
            time.sleep(0.01)
        os.kill(child.pid, 0)  # a zombie still answers signal 0...
        holder = f"{socket.gethostname()}:{_pid_namespace()}:{child.pid}:cafe0001"
        assert holder_gone(holder)  # ...but runs nothing
        assert not holder_gone(f"{socket.gethostname()}:{_pid_namespace()}:{os.getppid()}:cafe0002")
    finally:
        child.wait()
