"""`/iam audit X`: recent audit events about a resource, user or key, as a readable
timeline (pure): grouped by day, newest first, one sentence per event (who did what, to
what, and the detail that matters), never raw JSON or empty fields."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import Block

from bot.core.audit_names import reads_as
from bot.core.decisions import action_name
from bot.core.report import plural
from bot.slack.blocks.common import chunk_lines, context, escape, mrkdwn_section

# What each audit action reads as ("<who> <verb> <what>"); unknown actions fall back to
# their name with the dots and underscores turned into spaces.
VERBS = {
    "scan.started": "started a scan of", "scan.succeeded": "scanned", "scan.failed": "could not scan",
    "finding.opened": "found a new issue on", "finding.resolved": "saw the issue gone on",
    "finding.reopened": "saw the issue back on", "finding.notified": "sent a message about",
    "finding.notify_failed": "could not send a message about", "finding.reminded": "sent a reminder about",
    "finding.escalated": "escalated to the security channel", "owner.assigned": "assigned an owner to",
    "decision.remediate": "asked to fix", "decision.acknowledge": "acknowledged",
    "decision.rotate_promise": "promised to rotate the key of", "decision.snooze": "snoozed",
    "decision.not_mine": "said it is not theirs:", "approval.requested": "asked the security team to approve a change to",
    "approval.granted": "approved a change to", "approval.rejected": "rejected a change to",
    "exception.granted": "kept as it is", "exception.expired": "saw the exception end on",
    "exception.revoked": "revoked the exception on", "snooze.expired": "saw the snooze end on",
    "remediation.planned": "planned a change to", "remediation.approved": "approved a change to",
    "remediation.started": "started changing", "remediation.succeeded": "changed",
    "remediation.failed": "failed to change", "remediation.reconciled": "settled an interrupted change to",
    "remediation.undo_requested": "asked to undo a change to", "remediation.undone": "undid a change to",
    "remediation.cancelled": "dropped a planned change to", "remediation.undo_failed": "could not undo a change to",
    "refused": "was refused on", "request.failed": "had a request fail on",
    "digest.posted": "posted the digest", "export.securityhub": "exported findings of",
    "export.securityhub_failed": "could not export findings of",
    "review.started": "started an access review", "review.routed": "routed an access review",
    "review.sent": "sent access-review items to review", "review.send_failed": "could not send access-review items",
    "review.details_opened": "opened the access-review details of", "review.decided": "decided in an access review about",
    "review.not_mine": "handed back an access-review item:", "review.delegated": "delegated the access review of",
    "review.reminded": "sent an access-review reminder", "review.escalated": "escalated an access review",
    "review.closed": "closed an access review", "review.exported": "exported the evidence of an access review",
}


def actor_text(actor: str) -> str:
    if actor[:1] in "UW" and actor.isalnum():
        return f"<@{actor}>"
    if actor == "system":
        return "Steward"
    return escape(actor)


def _detail(event) -> str:
    """The one or two facts worth a reader's time, in words."""
    p = event.payload or {}
    parts = []
    if p.get("action"):
        parts.append(action_name(str(p["action"])))
    said_by_the_verb = ("decision.snooze", "decision.not_mine", "decision.rotate_promise", "decision.acknowledge")
    if p.get("decision") and reads_as(event.action, p) not in said_by_the_verb:
        parts.append(str(p["decision"]).replace("_", " "))
    if p.get("until"):
        parts.append(f"until {str(p['until'])[:10]}")
    if p.get("owner"):
        parts.append(f"to {actor_text(str(p['owner']))}")
    if p.get("to") and event.action == "finding.notified":
        parts.append("to security triage" if p["to"] == "security-triage" else f"to {actor_text(str(p['to']))}")
    if p.get("reason"):
        parts.append(f"“{escape(str(p['reason'])[:200])}”")
    if p.get("error"):
        parts.append(f"error: {escape(str(p['error'])[:200])}")
    if p.get("dry_run"):
        parts.append("dry run")
    return f" ({'; '.join(parts)})" if parts else ""


def event_line(event) -> str:
    name = reads_as(event.action, event.payload)  # history reads under today's names
    verb = VERBS.get(name, name.replace(".", " ").replace("_", " "))
    what = escape(event.resource.split(":", 5)[-1]) if event.resource else (
        f"account {event.account}" if event.account else "")
    return f"{event.at:%H:%M} · {actor_text(event.actor)} {verb} {what}".rstrip() + _detail(event) + \
        f" `#{event.sequence}`"


def audit_blocks(needle: str, events: Sequence) -> list[Block]:
    if not events:
        return [mrkdwn_section(f"No audit events mention `{escape(needle)}`.")]
    lines = [f"*What happened to* `{escape(needle)}`: {plural(len(events), 'event')}, newest first"]
    day = None
    for event in events:
        if f"{event.at:%Y-%m-%d}" != day:
            day = f"{event.at:%Y-%m-%d}"
            lines.append(f"*{event.at:%A %d %B %Y}*")
        lines.append(event_line(event))
    blocks: list[Block] = [mrkdwn_section(text) for text in chunk_lines(lines)][:45]
    blocks.append(context("Times in UTC; `#N` is the event's number in the audit log. The full log: "
                          "`steward audit export`. Integrity: `steward audit verify`."))
    return blocks
