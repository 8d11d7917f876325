"""Prometheus metrics for the web process and the worker (prometheus-client).

Two kinds:

* **State**, read from the database at scrape time (open findings by severity, account
  scans by outcome, scan jobs queued and running, remediations in flight, the last
  successful scan): every process shows
  the same numbers, so it does not matter which gunicorn worker answers a scrape.
* **Events counted in this process** (campaign DMs sent, Slack 429 answers, AWS throttling
  answers): module-level counters, as prometheus-client intends. Under gunicorn they use its
  multiprocess mode (`steward serve` sets PROMETHEUS_MULTIPROC_DIR), so a scrape sums all
  workers.

The endpoint shows counts only, never names; it still tells an outsider how many critical
findings are open, so it answers only with `Authorization: Bearer $STEWARD_METRICS_TOKEN`
(no token set: no endpoint).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

log = logging.getLogger(__name__)

DMS_SENT = Counter("steward_campaign_dms", "Campaign DMs and triage messages sent to Slack")
SLACK_RATE_LIMITED = Counter("steward_slack_rate_limited", "Slack Web API answers of 429 (rate limited)")
AWS_THROTTLED = Counter("steward_aws_throttled", "AWS answers that were throttling errors")


class DatabaseCollector(Collector):
    """Gauges and counters computed from Steward's database when scraped."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def collect(self) -> Iterator:
        from bot.core.lifecycle import State
        from bot.db.models import Finding, Remediation, Scan
        from checks.model import Severity

        up = GaugeMetricFamily("steward_database_up", "1 when the database answered this scrape")
        try:
            with self.engine.connect() as db:
                by_severity = dict(db.execute(
                    select(Finding.severity, func.count()).where(Finding.state != State.RESOLVED)
                    .group_by(Finding.severity)).all())
                by_status = dict(db.execute(select(Scan.status, func.count()).group_by(Scan.status)).all())
                in_flight = db.execute(select(func.count()).select_from(Remediation).where(
                    Remediation.status.in_(("approved", "executing", "undoing")))).scalar_one()
                last_ok = db.execute(select(func.max(Scan.finished_at)).where(Scan.status == "succeeded")).scalar_one()
        except Exception as exc:  # a scrape must answer even when the database does not
            log.warning("metrics: database unavailable (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        findings = GaugeMetricFamily("steward_open_findings", "Findings not resolved, by severity", labels=["severity"])
        for severity in Severity:
            findings.add_metric([severity.value], by_severity.get(severity.value, 0))
        yield findings
        # Final outcomes only grow; queued and running come and go (the job queue's depth).
        waiting = {status: by_status.pop(status, 0) for status in ("queued", "running")}
        scans = CounterMetricFamily("steward_account_scans", "Account scans ended, by outcome", labels=["status"])
        for status, count in sorted(by_status.items()):
            scans.add_metric([status], count)
        yield scans
        jobs = GaugeMetricFamily("steward_scan_jobs", "Account scan jobs not ended: the queue's depth",
                                 labels=["state"])
        for state, count in waiting.items():
            jobs.add_metric([state], count)
        yield jobs
        yield GaugeMetricFamily("steward_remediations_in_flight", "Remediations approved, executing or undoing",
                                value=in_flight)
        if last_ok is not None:
            yield GaugeMetricFamily("steward_last_successful_scan_timestamp_seconds",
                                    "When an account scan last succeeded", value=last_ok.timestamp())


def registry_for(engine: Engine) -> CollectorRegistry:
    """This process's counters (or every worker's, in multiprocess mode) plus the database state."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        for metric in (DMS_SENT, SLACK_RATE_LIMITED, AWS_THROTTLED):
            registry.register(metric)
    registry.register(DatabaseCollector(engine))
    return registry


def authorized(header: str | None, token: str | None) -> bool:
    """Bearer-token check in constant time; no token configured means no metrics."""
    if not token or not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].encode(), token.encode())


def render(engine: Engine) -> tuple[bytes, str]:
    return generate_latest(registry_for(engine)), CONTENT_TYPE_LATEST


def metrics_app(engine: Engine, token: str):
    """A WSGI app answering the Prometheus exposition to a scraper that shows the token
    (mounted at /metrics by bot/run/web.py; served alone by `serve_in_background`)."""

    def refuse(start_response, status: str, headers: list[tuple[str, str]]) -> list[bytes]:
        body = json.dumps({"error": status.split(" ", 1)[1].lower()}).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-store"), *headers])
        return [body]

    def app(environ, start_response):
        if environ.get("REQUEST_METHOD", "GET").upper() not in ("GET", "HEAD"):
            return refuse(start_response, "405 Method Not Allowed", [("Allow", "GET, HEAD")])
        if not authorized(environ.get("HTTP_AUTHORIZATION"), token):
            return refuse(start_response, "401 Unauthorized", [("WWW-Authenticate", 'Bearer realm="metrics"')])
        body, content_type = render(engine)
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-store")])
        return [body]

    return app


def serve_in_background(engine: Engine, *, port: int, token: str, host: str = "0.0.0.0"):
    """`GET /metrics` for a process with no web server of its own (the worker), on a daemon
    thread; returns the server (its `shutdown()` stops it)."""
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    metrics = metrics_app(engine, token)

    def app(environ, start_response):
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
            return [b""]
        return metrics(environ, start_response)

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *_args) -> None:  # scrapes every few seconds: no line each
            pass

    server = make_server(host, port, app, handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
