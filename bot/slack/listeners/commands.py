"""`/iam ...`: parse, check who may, and hand over to the verb's handler in the registry
(bot/slack/grammar.py: a service call and a block builder). Replies are ephemeral: they are personal.

Slack waits three seconds for the ack. The answer is computed on a small thread pool and
sent in the ack when it is ready within ``ACK_BUDGET``; otherwise (a slow Slack lookup
behind `/iam whoami`, a database waiting on a lock) the ack is empty — Slack shows
nothing — and the answer follows through the response URL when it is ready. Either way
the person gets exactly one reply: the answer, or what went wrong (bot/slack/listeners/errors.py).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from bot.slack import grammar as cmd
from bot.slack.blocks.common import escape
from bot.slack.listeners.errors import failure_text, log_failure, record_failure, reply_privately

log = logging.getLogger(__name__)

REFUSAL = "Only security approvers can {what}. You can see your own findings with `/iam findings`."
#: Seconds an answer may take before the ack goes out empty (Slack gives up at 3 s).
ACK_BUDGET = 2.0


def register(app, steward) -> None:
    # The ack carries the answer (fast, from the database); only a scan runs after it, in
    # the background, replying through the response URL.
    app.command(cmd.SLASH_COMMAND)(iam_command(steward))


def iam_command(steward, *, budget: float = ACK_BUDGET, workers: int = 8):
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="steward-cmd")

    def handle(ack, body, command, respond):
        future = pool.submit(answer, command, respond)
        try:
            reply = future.result(timeout=budget)
        except FutureTimeout:
            ack()  # an empty ack: the answer (or what went wrong) follows through the response URL
            future.add_done_callback(lambda done: deliver_later(done, body, respond))
            return
        except Exception as error:
            ack(response_type="ephemeral", text=failed(body, error))
            return
        ack(response_type="ephemeral", **reply)

    def failed(body, error: BaseException) -> str:
        log_failure(error, body)
        record_failure(steward.engine, body, error)
        text = " ".join(str(body.get("text") or "").split())
        return failure_text(f"answer `/iam {escape(text[:60])}`", error)

    def deliver_later(done: Future, body, respond) -> None:
        error = done.exception()
        if error is not None:
            reply_privately(respond, failed(body, error))
        else:
            _respond(respond, done.result())

    def answer(command, respond) -> dict[str, Any]:
        """The reply to one command as ack keywords (text, blocks), from the verb's row in
        the registry (bot/slack/grammar.py)."""
        user = command.get("user_id", "")
        parsed = cmd.parse(command.get("text"))
        if isinstance(parsed, cmd.Usage):
            return {"text": parsed.reply()}
        verb = cmd.BY_COMMAND[type(parsed)]
        if verb.restricted(parsed) and not steward.is_approver(user):
            steward.record_refusal(user, f"/iam {command.get('text', '').strip()}", "not a security approver")
            return {"text": REFUSAL.format(what=verb.refusal)}

        def later(work, what: str, changed: str | None = None) -> None:
            steward.in_background(run_and_reply, work, what, changed, respond, command)

        return verb.handle(parsed, cmd.Request(user=user, steward=steward, later=later))

    def run_and_reply(work, what, changed, respond, command):
        try:
            text = work()
        except Exception as error:
            text = failure_text(what, error, **({"changed": changed} if changed else {}))
            log_failure(error, command)
            record_failure(steward.engine, command, error)
        reply_privately(respond, text)

    return handle


def _respond(respond, reply: dict[str, Any]) -> None:
    try:
        response = respond(response_type="ephemeral", replace_original=False, **reply)
        if response.status_code != 200:
            log.warning("a late answer could not be delivered: HTTP %s", response.status_code)
    except Exception as exc:
        log.warning("a late answer could not be delivered: %s", type(exc).__name__)
