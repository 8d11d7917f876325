"""Prometheus metrics: `GET /metrics` on `steward serve` (two gunicorn workers, summed),
the database collector, and the counters the Slack client and campaigns feed."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bot.db.engine import make_engine
from bot.run.metrics import DatabaseCollector, authorized, registry_for
from sandbox.slack_fake import SlackFake
from tests.aws import aws_env, instant_retries  # noqa: F401  (fixtures)
from tests.bot.test_serve_http import add_people, running_steward, seed

TOKEN = "metrics-test-token"


def scrape(url: str, token: str | None = TOKEN) -> tuple[int, str]:
    request = urllib.request.Request(url + "/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_over_http_need_the_token_and_show_the_database_state(database_url, tmp_path):
    seed(database_url)  # four open high-severity findings
    with SlackFake() as fake:
        add_people(fake)
        with running_steward(fake, database_url, tmp_path, workers=2,
                             env={"STEWARD_METRICS_TOKEN": TOKEN}) as served:
            assert scrape(served.url, token=None)[0] == 401
            assert scrape(served.url, token="wrong")[0] == 401
            status, text = scrape(served.url)
    assert status == 200
    values = samples(text)
    assert values[("steward_open_findings", (("severity", "high"),))] == 4
    assert values[("steward_open_findings", (("severity", "critical"),))] == 0
    assert values[("steward_database_up", ())] == 1
    assert values[("steward_scan_jobs", (("state", "queued"),))] == 0
    assert ("steward_slack_rate_limited_total", ()) in values  # multiprocess counters summed


def test_no_token_no_metrics_endpoint(tmp_path):
    database_url = f"sqlite:///{tmp_path / 'metrics.db'}"
    seed(database_url)
    with SlackFake() as fake:
        add_people(fake)
        with running_steward(fake, database_url, tmp_path) as served:
            assert scrape(served.url)[0] == 404


def test_an_unreachable_database_is_reported_not_raised():
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    families = {f.name: f for f in DatabaseCollector(engine).collect()}
    assert [s.value for s in families["steward_database_up"].samples] == [0]


def test_slack_429s_are_counted(tmp_path):
    from bot.config import Settings
    from bot.run.metrics import SLACK_RATE_LIMITED
    from bot.slack.client import make_web_client

    database_url = f"sqlite:///{tmp_path / 'metrics.db'}"
    seed(database_url)
    with SlackFake() as fake:
        fake.rate_limit("auth.test", times=1, retry_after=0)
        before = SLACK_RATE_LIMITED._value.get()
        client = make_web_client(Settings(slack_bot_token=fake.token, slack_api_url=fake.base_url))
        assert client.auth_test()["ok"]
    assert SLACK_RATE_LIMITED._value.get() == before + 1
    values = samples(generate_latest(registry_for(make_engine(database_url))).decode())
    assert values[("steward_slack_rate_limited_total", ())] >= 1


@pytest.mark.parametrize(("header", "ok"), [
    (f"Bearer {TOKEN}", True), ("Bearer nope", False), (TOKEN, False), (None, False), ("", False)])
def test_authorized(header, ok):
    assert authorized(header, TOKEN) is ok
    assert authorized(header, None) is False


def test_the_worker_serves_metrics_on_its_own_port(tmp_path):
    from bot.run.metrics import serve_in_background
    from tests.bot.test_serve_http import free_port

    database_url = f"sqlite:///{tmp_path / 'metrics.db'}"
    seed(database_url)
    port = free_port()
    server = serve_in_background(make_engine(database_url), port=port, token=TOKEN, host="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{port}"
        assert scrape(url, token=None)[0] == 401
        status, text = scrape(url)
        assert status == 200
        assert samples(text)[("steward_open_findings", (("severity", "high"),))] == 4
    finally:
        server.shutdown()


def test_aws_throttling_answers_are_counted(aws_env, instant_retries):  # noqa: F811
    """A throttled call on a session Steward builds is counted, retried or not."""
    from moto import mock_aws

    from bot.run.metrics import AWS_THROTTLED
    from bot.services.scans import count_aws_throttles
    from checks.accounts import shared_session
    from checks.collect import aws_client
    from tests.aws import inject_error

    count_aws_throttles()
    count_aws_throttles()  # idempotent: one count per answer
    with mock_aws():
        session = shared_session("us-east-1")
        inject_error(session, "GetAccountSummary", "Throttling", status=400, times=2)
        before = AWS_THROTTLED._value.get()
        aws_client(session, "iam", 5).get_account_summary()
    assert AWS_THROTTLED._value.get() == before + 2
