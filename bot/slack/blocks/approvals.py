"""The security channel's approval requests (of a change, of an undo), what became of them,
the reason-for-rejection modal, and the DM lines that tell the asker (pure builders).

An approval message is rebuilt from the remediation row after every change, so it always
says the whole story: who asked, who approved, whether it ran, and any undo after it
("re-attached by @X after approval by @Y").
"""

from __future__ import annotations

from collections.abc import Mapping

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    HeaderBlock,
    InputBlock,
    PlainTextInputElement,
    PlainTextObject,
)
from slack_sdk.models.views import View

from bot.core.decisions import action_name, undo_words
from bot.core.report import short_resource
from bot.slack.blocks.common import console_url, context, escape, link, mrkdwn_section
from bot.slack.blocks.common import mention as who
from bot.slack.blocks.dm import finding_section, when

REASON_MAX = 500  # the reject modal's limit, enforced again on submission


def resource_link(finding) -> str:
    return link(console_url(finding.resource), short_resource(finding.resource))


def approval_request(remediation, finding, *, decided: str | None = None,
                     accounts: Mapping[str, str] | None = None) -> list[Block]:
    """Approve / Reject for a security approver; once decided, what happened since."""
    text = (f"{who(remediation.requested_by)} asks to *{escape(action_name(remediation.action))}*.\n"
            f"The plan: {escape(remediation.plan_summary)}")
    if remediation.irreversible_warning:
        text += f"\n:warning: {escape(remediation.irreversible_warning)}"
    if remediation.dry_run:
        text += "\n:test_tube: Dry run: approving changes nothing in AWS."
    return _request("Approval needed", text, finding, decided, remediation.token, False, accounts,
                    ConfirmObject(title="Approve?", text=remediation.plan_summary[:300], confirm="Approve",
                                  deny="Cancel"))


def undo_approval_request(remediation, finding, *, decided: str | None = None,
                          accounts: Mapping[str, str] | None = None) -> list[Block]:
    """An undo gives access back: Approve / Reject for an approver other than the asker."""
    original = f"done {when(remediation.finished_at)}"
    if remediation.approved_by and remediation.approved_by != remediation.requested_by:
        original = f"approved by {who(remediation.approved_by)}, {original}"
    words = undo_words(remediation.action)
    text = (f"{who(remediation.undo_requested_by)} asks to *undo* an earlier change: the request to "
            f"*{escape(action_name(remediation.action))}* (asked by {who(remediation.requested_by)}, {original}). "
            f"Undoing it gives access back (*{escape(words)}*), so it needs a security approver other than the "
            "person asking.")
    return _request("Undo needs approval", text, finding, decided, remediation.token, True, accounts,
                    ConfirmObject(title="Approve the undo?",
                                  text=f"Undo the request to {action_name(remediation.action)}: this gives access "
                                       f"back ({words}).", confirm="Approve", deny="Cancel"))


def _request(header: str, text: str, finding, decided: str | None, token: str, undo: bool,
             accounts: Mapping[str, str] | None, confirm: ConfirmObject) -> list[Block]:
    """Approve / Reject… under the request (`remediation:[undo_]approve|reject`), or what
    was decided."""
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=header)),
        mrkdwn_section(text),
        finding_section(finding, with_rationale=False, accounts=accounts),
    ]
    if decided:
        blocks.append(context(decided))
        return blocks
    action = "remediation:undo_" if undo else "remediation:"
    blocks.append(ActionsBlock(block_id=f"{'u' if undo else 'r'}:{token}", elements=[
        ButtonElement(text="Approve undo" if undo else "Approve", action_id=f"{action}approve", value=token,
                      style="primary", confirm=confirm),
        ButtonElement(text="Reject…", action_id=f"{action}reject", value=token, style="danger"),
    ]))
    return blocks


def approval_status(remediation) -> str | None:
    """What became of an approval request, from the row (None while it waits: the buttons)."""
    r = remediation
    status = r.status
    if status == "planned":
        return None
    if status == "rejected":
        return f":no_entry: Rejected by {who(r.approved_by)} {when(r.finished_at)}" + _reason(r.error)
    if status == "cancelled":
        return f":warning: Not carried out: {escape(r.error or 'cancelled')}."
    approved = f"Approved by {who(r.approved_by)} {when(r.approved_at)}"
    if status in ("approved", "executing"):
        return f":hourglass: {approved}; in progress…"
    if status == "failed":
        return f":x: {approved}; it failed: {escape(r.error or 'unknown error')}."
    done = f":white_check_mark: {approved}; done{' (dry run: nothing changed in AWS)' if r.dry_run else ''}."
    undo = undo_status(r)
    return f"{done}\n{undo}" if undo else done


def undo_status(remediation) -> str | None:
    """The undo part of the story, if anyone asked for one."""
    r = remediation
    if not r.undo_requested_by:
        return None
    asker, words = who(r.undo_requested_by), undo_words(r.action)
    if r.status == "undo_requested":
        return f":hourglass: {asker} asked to undo it ({words}); waiting for a security approver other than them."
    if r.status == "undoing":
        return f":hourglass: Being undone ({words}) for {asker}…"
    after = f" after approval by {who(r.undo_decided_by)}" if r.undo_decided_by else " (no approval needed)"
    if r.status == "undone":
        return f":leftwards_arrow_with_hook: {words.capitalize()} by {asker}{after}, {when(r.undone_at)}."
    error = r.error or ""
    if error.startswith("undo rejected"):
        return (f":no_entry: {asker} asked to undo it; rejected by {who(r.undo_decided_by)}"
                + _reason(error.removeprefix("undo rejected: ")))
    if error.startswith("undo"):
        return f":x: {asker} asked to undo it; not undone: {escape(error)}."
    return None


def settled_line(remediation) -> str:
    """After a restart settled an interrupted step: how it ended, in a sentence."""
    r = remediation
    return {
        "succeeded": "AWS shows the change was made; it stands." if not (r.error or "").startswith("undo")
        else "The undo did not take effect; the change stands.",
        "failed": "Nothing changed in AWS. You can try again from your message.",
        "cancelled": "Nothing changed and nobody was asked. You can try again from your message.",
        "undone": "AWS shows the undo went through.",
    }.get(r.status, f"It is now {r.status}.")


def _reason(reason: str | None) -> str:
    return f": “{escape(reason)}”." if reason else "."


def reject_modal(kind: str, token: str) -> View:
    """Reject asks why: the reason goes to the requester and into the audit log."""
    title = "Reject the undo" if kind == "undo" else "Reject the request"
    return View(
        type="modal",
        callback_id="reject_modal",
        private_metadata=f"{kind}:{token}",
        title=title,
        submit="Reject",
        close="Cancel",
        blocks=[
            context("The person who asked gets your reason in a DM; it is kept in the audit log."),
            InputBlock(block_id="reason", label="Why not?", element=PlainTextInputElement(
                action_id="value", multiline=True, max_length=REASON_MAX, min_length=3)),
        ],
    )


def validate_reason(reason: str | None) -> tuple[str, str | None]:
    """The reason, trimmed, and an error for the modal (limits enforced here too)."""
    text = (reason or "").strip()
    if len(text) < 3:
        return text, "Say in a few words why."
    if len(text) > REASON_MAX:
        return text, f"At most {REASON_MAX} characters."
    return text, None
