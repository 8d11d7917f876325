"""Every interaction ends with an answer: what went wrong, what changed, what to do.

A listener that raises anything but a refusal (the database locked beyond its busy
timeout, Slack failing a lookup, a bug) used to leave the person with silence or Slack's
own error. Here every such failure gets exactly one reply and one audit event:

* acked listeners (slash commands, modal submissions): the global Bolt error handler
  (:func:`error_handler`) turns the 500 into a 200 whose body is the reply;
* work that runs after the ack (clicks, scans): :func:`answered` wraps it and replies
  through the request's ``response_url``.

Replies never contain the exception text (it can hold SQL, tokens or people's data);
the log gets the exception type, the traceback only at debug level.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

NEXT_STEP = "Try again in a minute; if it keeps happening, tell the Steward operators (the log has the details)."


def describe(error: BaseException) -> str:
    """What went wrong, in words a Slack user can act on (never the exception's text)."""
    from slack_sdk.errors import SlackApiError
    from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

    if isinstance(error, OperationalError):
        if "locked" in str(error.orig).lower() or "busy" in str(error.orig).lower():
            return "the database is busy (another change holds it)"
        return "the database is not reachable"
    if isinstance(error, IntegrityError):
        return "someone else changed the same thing at the same moment"
    if isinstance(error, DBAPIError):
        return "the database refused the change"
    if isinstance(error, SlackApiError):
        code = error.response.get("error") if error.response is not None else None
        return f"Slack refused a call Steward needed ({code or 'no reason given'})"
    if isinstance(error, OSError):  # timeouts, refused connections, unreachable hosts
        return "a service Steward needs did not answer in time"
    return f"something unexpected went wrong ({type(error).__name__})"


def failure_text(what: str, error: BaseException, *, changed: str = "Nothing was changed.") -> str:
    return f":warning: I couldn't {what}: {describe(error)}. {changed} {NEXT_STEP}"


def attempted(body: Mapping[str, Any]) -> str:
    """A short label of the request for the audit log and the reply (no tokens, no URLs)."""
    from bot.slack.blocks.common import escape

    if "command" in body:
        text = " ".join(str(body.get("text") or "").split())
        return escape(f"{body.get('command')} {text}".strip()[:120])
    kind = body.get("type") or "request"
    if kind == "block_actions":
        actions = body.get("actions") or [{}]
        return escape(f"click {str(actions[0].get('action_id') or '?')[:60]}")
    if kind in ("view_submission", "view_closed"):
        return escape(f"form {str((body.get('view') or {}).get('callback_id') or '?')[:60]}")
    if kind == "event_callback":
        return escape(f"event {str((body.get('event') or {}).get('type') or '?')[:60]}")
    return escape(str(kind)[:60])


def actor_of(body: Mapping[str, Any]) -> str:
    user = body.get("user")
    user_id = user.get("id") if isinstance(user, dict) else body.get("user_id")
    if not user_id and isinstance(body.get("event"), dict):
        user_id = body["event"].get("user")
    return str(user_id)[:200] if user_id else "unknown"


def record_failure(engine, body: Mapping[str, Any], error: BaseException) -> None:
    """One audit event per failed request; if the database is the problem, the log has it."""
    from bot.db import audit
    from bot.db.engine import session_scope

    try:
        with session_scope(engine) as session:
            audit.record(session, actor=actor_of(body), action=audit.AuditAction.REQUEST_FAILED,
                         payload={"attempted": attempted(body), "error": type(error).__name__,
                                  "reason": describe(error)})
    except Exception as exc:
        log.error("could not audit a failed request (%s) either: %s", type(error).__name__,
                  type(exc).__name__)


def log_failure(error: BaseException, body: Mapping[str, Any]) -> None:
    # The traceback only at debug level: exception texts can hold SQL and its parameters.
    log.error("%s failed: %s", attempted(body), type(error).__name__,
              exc_info=error if log.isEnabledFor(logging.DEBUG) else None)


def _what(body: Mapping[str, Any]) -> str:
    if "command" in body:
        return f"run `{attempted(body)}`"
    if body.get("type") == "block_actions":
        return "handle your click"
    if body.get("type") == "view_submission":
        return "save your form"
    return "handle that"


def error_handler(engine) -> Callable[..., None]:
    """The global Bolt error handler: an acked listener raised before answering."""

    def handle(error, body, response) -> None:
        log_failure(error, body)
        record_failure(engine, body, error)
        if response is None:
            return
        text = failure_text(_what(body), error)
        if body.get("type") == "view_submission":
            block = _first_input_block(body.get("view") or {})
            reply: dict[str, Any] = ({"response_action": "errors", "errors": {block: text[:150]}}
                                     if block else {})
        else:
            reply = {"response_type": "ephemeral", "text": text}
        response.status = 200
        response.body = json.dumps(reply) if reply else ""
        response.headers["content-type"] = ["application/json;charset=utf-8"]

    return handle


def _first_input_block(view: Mapping[str, Any]) -> str | None:
    for block in view.get("blocks") or []:
        if isinstance(block, dict) and block.get("type") == "input" and block.get("block_id"):
            return block["block_id"]
    return None


def reply_privately(respond, text: str) -> None:
    """An ephemeral line through the response URL; a failure to deliver is only logged."""
    if respond is None:
        log.warning("no response URL to tell the person what happened")
        return
    try:
        response = respond(text=text, response_type="ephemeral", replace_original=False)
        if response.status_code != 200:
            log.warning("could not reply through the response URL: HTTP %s", response.status_code)
    except Exception as exc:
        log.warning("could not reply through the response URL: %s", type(exc).__name__)


def answered(work: Callable[..., None], engine) -> Callable[..., None]:
    """Wrap work that runs after the ack (a lazy listener): if it raises, the person is told
    through the response URL and the failure is audited.

    Bolt passes a listener the arguments it names; the wrapper asks for all of them at once
    (Bolt's ``args``) and hands ``work`` the ones it names.
    """
    names = list(inspect.signature(work).parameters)

    def run(args) -> None:
        try:
            work(**{name: getattr(args, name) for name in names})
        except Exception as error:
            log_failure(error, args.body)
            record_failure(engine, args.body, error)
            if args.body.get("response_url") or args.body.get("command"):
                reply_privately(args.respond, failure_text(
                    _what(args.body), error,
                    changed="Steward did not record a change from this; the message shows the current state."))

    run.__name__ = run.__qualname__ = f"answered_{work.__name__}"
    return run
