"""`steward events`: the intake loop taking CloudTrail events from SQS (EventBridge's target).

SQS delivers at least once and in no particular order; the service is idempotent on the
event id, so this loop only has to be careful about deleting:

* a batch is deleted once the service has handled it (its transaction committed);
* a body that is not a CloudTrail record is recorded in the audit log, then deleted;
* a message whose handling fails stays on the queue: it comes back after the queue's
  visibility timeout, and after the redrive policy's `maxReceiveCount` receives SQS moves it
  to the dead-letter queue (deploy/cloudformation/hub-role.yaml sets both). A failing
  batch is retried one message at a time, so one poison message never holds up the rest.

Long polling (20 s). SIGTERM or SIGINT: the batch in hand is finished and deleted, then
the loop exits 0. Between polls `sweep` escalates questions nobody answered in time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from checks.activity.events import CloudTrailEvent, EventError, parse

log = logging.getLogger(__name__)

MAX_BATCH = 10  # SQS's most per ReceiveMessage
LONG_POLL_SECONDS = 20  # SQS's longest wait
SWEEP_EVERY = 30.0  # seconds between sweeps for unanswered questions


@dataclass
class PollReport:
    received: int = 0
    deleted: int = 0
    unreadable: int = 0
    failed: int = 0  # left on the queue (redelivered, then dead-lettered)
    duplicates: int = 0
    risky: int = 0
    failures: list[str] = field(default_factory=list)


class Intake:
    def __init__(self, service, sqs, queue_url: str, *, wait_seconds: int = LONG_POLL_SECONDS,
                 visibility_timeout: int | None = None, sweep_every: float = SWEEP_EVERY,
                 monotonic: Callable[[], float] = time.monotonic):
        self.service = service
        self.sqs = sqs
        self.queue_url = queue_url
        self.wait_seconds = wait_seconds
        self.visibility_timeout = visibility_timeout
        self.sweep_every = sweep_every
        self.monotonic = monotonic
        self.stop = threading.Event()
        self._last_sweep: float | None = None

    def poll_once(self) -> PollReport:
        """One ReceiveMessage (long poll) and everything it brought."""
        kwargs = {"QueueUrl": self.queue_url, "MaxNumberOfMessages": MAX_BATCH, "WaitTimeSeconds": self.wait_seconds,
                  "MessageSystemAttributeNames": ["ApproximateReceiveCount"]}
        if self.visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = self.visibility_timeout
        messages = self.sqs.receive_message(**kwargs).get("Messages") or []
        report = PollReport(received=len(messages))
        parsed: list[tuple[dict, CloudTrailEvent]] = []
        done: list[dict] = []
        for message in messages:
            body = message.get("Body") or ""
            try:
                parsed.append((message, parse(body)))
            except EventError as exc:
                try:
                    self.service.record_unreadable(message_id=message.get("MessageId", "?"), body=body, error=str(exc))
                except Exception as failure:  # not recorded: not deleted (it comes back, then dead-letters)
                    log.error("could not record an unreadable message: %s", failure)
                    report.failed += 1
                    continue
                log.warning("dropped an unreadable message %s: %s", message.get("MessageId"), exc)
                report.unreadable += 1
                done.append(message)
        if parsed:
            try:
                outcome = self.service.ingest([event for _, event in parsed])
                done.extend(message for message, _ in parsed)
                report.duplicates += outcome.duplicates
                report.risky += outcome.asked + outcome.escalated
            except Exception as exc:
                log.warning("a batch of %d events failed (%s): one at a time", len(parsed), exc)
                for message, event in parsed:
                    try:
                        outcome = self.service.ingest([event])
                        done.append(message)
                        report.duplicates += outcome.duplicates
                        report.risky += outcome.asked + outcome.escalated
                    except Exception as failure:
                        count = (message.get("Attributes") or {}).get("ApproximateReceiveCount", "?")
                        log.error("event %s failed (receive %s; left for redelivery, then the dead-letter "
                                  "queue): %s", event.event_id, count, failure)
                        report.failed += 1
                        report.failures.append(event.event_id)
        report.deleted = self._delete(done)
        return report

    def _delete(self, messages: list[dict]) -> int:
        if not messages:
            return 0
        response = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
        for failure in response.get("Failed") or []:  # handled already: a redelivery is a duplicate
            log.warning("could not delete message %s: %s", failure.get("Id"), failure.get("Message"))
        return len(response.get("Successful") or [])

    def sweep_if_due(self) -> None:
        now = self.monotonic()
        if self._last_sweep is not None and now - self._last_sweep < self.sweep_every:
            return
        self._last_sweep = now
        try:
            self.service.sweep()
        except Exception:
            log.exception("the sweep for unanswered questions failed; trying again later")

    def run(self) -> int:
        """Poll until `stop` is set (SIGTERM); exit code 0."""
        log.info("taking CloudTrail events from %s", self.queue_url)
        while not self.stop.is_set():
            self.sweep_if_due()
            try:
                report = self.poll_once()
            except (ClientError, BotoCoreError) as exc:  # SQS unreachable or refusing: wait, try again
                log.warning("SQS receive failed: %s", exc)
                self.stop.wait(5)
                continue
            if report.received:
                log.info("%d message(s): %d risky, %d duplicate, %d unreadable, %d failed", report.received,
                         report.risky, report.duplicates, report.unreadable, report.failed)
        log.info("stopped taking events")
        return 0
