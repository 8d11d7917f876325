"""`/iam ...`: parse, call the service, render. Replies are ephemeral: they are personal.

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
from bot.slack.blocks.audit import audit_blocks
from bot.slack.blocks.common import escape
from bot.slack.blocks.digest import digest_blocks, digest_fallback
from bot.slack.blocks.findings import findings_blocks
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
        """The reply to one command as ack keywords (text, blocks)."""
        user = command.get("user_id", "")
        parsed = cmd.parse(command.get("text"))
        if isinstance(parsed, cmd.Help):
            return {"text": cmd.USAGE}
        if isinstance(parsed, cmd.Usage):
            return {"text": f"{parsed.problem}.\n\n{cmd.USAGE}"}
        if isinstance(parsed, cmd.WhoAmI):
            text, blocks = steward.whoami_reply(user)
            return {"text": text, "blocks": blocks}
        if isinstance(parsed, cmd.Findings) and not parsed.about_others:
            findings = steward.findings_of(user)
            return {"text": f"Your open findings: {len(findings)}",
                    "blocks": _dicts(findings_blocks(findings, heading="Your open findings"))}
        if not steward.is_approver(user):
            what = {cmd.Scan: "scan accounts", cmd.Audit: "read the audit log",
                    cmd.Digest: "preview the digest"}.get(type(parsed), "look at other people's findings")
            steward.record_refusal(user, f"/iam {command.get('text', '').strip()}", "not a security approver")
            return {"text": REFUSAL.format(what=what)}
        if isinstance(parsed, cmd.Findings):
            findings, heading = steward.search_findings(parsed)
            return {"text": f"{heading}: {len(findings)}",
                    "blocks": _dicts(findings_blocks(findings, heading=heading))}
        if isinstance(parsed, cmd.Digest):
            digest = steward.digest_preview()
            return {"text": digest_fallback(digest), "blocks": _dicts(digest_blocks(digest))}
        if isinstance(parsed, cmd.Audit):
            events = steward.audit_events(parsed.needle)
            return {"text": f"Audit events about {escape(parsed.needle)}: {len(events)}",
                    "blocks": _dicts(audit_blocks(parsed.needle, events))}
        target = f"account {parsed.account}" if parsed.account else "every configured account"
        steward.in_background(scan_and_reply, user, parsed.account, respond, command)
        return {"text": f"Scanning {target}… I'll reply here when it's done."}

    def scan_and_reply(user, account, respond, command):
        try:
            summary = steward.scan_now(user, account)
        except Exception as error:
            summary = failure_text("finish the scan", error, changed="Accounts scanned before it stay saved.")
            log_failure(error, command)
            record_failure(steward.engine, command, error)
        reply_privately(respond, summary)

    return handle


def _dicts(blocks) -> list[dict]:
    return [b if isinstance(b, dict) else b.to_dict() for b in blocks]


def _respond(respond, reply: dict[str, Any]) -> None:
    try:
        response = respond(response_type="ephemeral", replace_original=False, **reply)
        if response.status_code != 200:
            log.warning("a late answer could not be delivered: HTTP %s", response.status_code)
    except Exception as exc:
        log.warning("a late answer could not be delivered: %s", type(exc).__name__)
