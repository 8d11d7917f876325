"""`/iam ...`: ack, parse, call the service, render. Replies are ephemeral: they are personal."""

from __future__ import annotations

import logging

from bot import commands as cmd
from bot.blocks.audit import audit_blocks
from bot.blocks.digest import digest_blocks, digest_fallback
from bot.blocks.findings import findings_blocks

log = logging.getLogger(__name__)

REFUSAL = "Only security approvers can {what}. You can see your own findings with `/iam findings`."


def register(app, steward) -> None:
    # The ack carries the answer (fast, from the database); only a scan runs after it, in
    # the background, replying through the response URL.
    app.command(cmd.SLASH_COMMAND)(iam_command(steward))


def iam_command(steward):
    def handle(ack, command, respond):
        user = command.get("user_id", "")
        parsed = cmd.parse(command.get("text"))

        if isinstance(parsed, cmd.Help):
            ack(response_type="ephemeral", text=cmd.USAGE)
        elif isinstance(parsed, cmd.Usage):
            ack(response_type="ephemeral", text=f"{parsed.problem}.\n\n{cmd.USAGE}")
        elif isinstance(parsed, cmd.WhoAmI):
            text, blocks = steward.whoami_reply(user)
            ack(response_type="ephemeral", text=text, blocks=blocks)
        elif isinstance(parsed, cmd.Findings) and not parsed.about_others:
            findings = steward.findings_of(user)
            ack(
                response_type="ephemeral",
                text=f"Your open findings: {len(findings)}",
                blocks=findings_blocks(findings, heading="Your open findings"),
            )
        elif not steward.is_approver(user):
            what = {cmd.Scan: "scan accounts", cmd.Audit: "read the audit log",
                    cmd.Digest: "preview the digest"}.get(
                type(parsed), "look at other people's findings")
            steward.record_refusal(user, f"/iam {command.get('text', '').strip()}", "not a security approver")
            ack(response_type="ephemeral", text=REFUSAL.format(what=what))
        elif isinstance(parsed, cmd.Findings):
            findings, heading = steward.search_findings(parsed)
            ack(response_type="ephemeral", text=f"{heading}: {len(findings)}",
                blocks=findings_blocks(findings, heading=heading))
        elif isinstance(parsed, cmd.Digest):
            digest = steward.digest_preview()
            ack(response_type="ephemeral", text=digest_fallback(digest), blocks=digest_blocks(digest))
        elif isinstance(parsed, cmd.Audit):
            events = steward.audit_events(parsed.needle)
            ack(response_type="ephemeral", text=f"Audit events about {parsed.needle}: {len(events)}",
                blocks=audit_blocks(parsed.needle, events))
        elif isinstance(parsed, cmd.Scan):
            target = f"account {parsed.account}" if parsed.account else "every configured account"
            ack(response_type="ephemeral", text=f"Scanning {target}… I'll reply here when it's done.")
            steward.in_background(scan_and_reply, user, parsed.account, respond)

    def scan_and_reply(user, account, respond):
        summary = steward.scan_now(user, account)
        response = respond(response_type="ephemeral", replace_original=False, text=summary)
        if response.status_code != 200:
            log.warning("scan summary could not be delivered: HTTP %s", response.status_code)

    return handle
