"""Approvals and undo, for the campaign service (a mixin of `Campaigns`).

Every decision closes its loop (docs/architecture.md §7, invariant 3): whoever asked for a change or an undo gets
a DM line when an approver decides (a new message: Slack does not notify on edits), and the
security channel's approval message is rebuilt from the database after every later change,
undo included. An approval request that cannot be posted drops the plan and says so. An
undo is judged like the action it reverses (bot.core.decisions.undo_rule). Remediations whose
process is gone are settled here too, with their messages brought up to date.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from slack_sdk.errors import SlackApiError

from bot.core.decisions import UndoRule, action_name, undo_words
from bot.core.report import short_resource
from bot.db import audit, queries
from bot.db.audit import AuditAction as A
from bot.db.engine import session_scope
from bot.db.models import Finding, Remediation
from bot.services.common import ServiceError
from bot.services.remediation import RemediationRefused
from bot.slack.blocks import approvals
from bot.slack.blocks.approvals import who
from bot.slack.blocks.common import escape
from checks.remediate import registry

log = logging.getLogger(__name__)


class Refusal(ServiceError):
    """A click that changes nothing: shown privately to the person who clicked."""


class ApprovalFlow:
    """Needs from its host: settings, engine, client, directory, remediations, clock, and
    `_finding`, `_refresh_finding`, `_is_owner`, `_refuse`, `_unknown`, `_outcome_line`, `account_names`."""

    def approval(self, user: str, token: str, approve: bool, *, reason: str = "") -> str:
        """Approve (and carry out) or reject a remediation request from the security channel.
        The approval message is updated, and the requester gets a DM line either way."""
        rem = self._remediation(token, user=user, attempted="approve" if approve else "reject")
        try:
            if approve:
                self.remediations.approve(rem.id, approver=user)
                rem = self.remediations.execute(rem.id, actor=user)
            else:
                rem = self.remediations.reject(rem.id, approver=user, reason=reason or "rejected in Slack")
        except RemediationRefused as exc:
            raise Refusal(str(exc)) from None
        finding = self._finding(rem.finding_id)
        self._refresh_finding(finding)
        self.refresh_approval(rem)
        line = self._outcome_line(rem)
        if user != rem.requested_by:
            verb = "approved" if approve else "rejected"
            self._tell(rem.requested_by, f"{approvals.who(user)} {verb} your request to {action_name(rem.action)} on "
                                         f"{approvals.resource_link(finding)}. {line}")
        return line

    def check_can_reject(self, user: str, token: str, *, undo: bool) -> None:
        """Before the reason modal opens: refuse (audited) who could not reject anyway."""
        rem = self._remediation(token, user=user, attempted="reject")
        asker = rem.undo_requested_by if undo else rem.requested_by
        expected = "undo_requested" if undo else "planned"
        if not (self.directory.is_approver(user) or user == asker):
            self._refuse(user, self._finding(rem.finding_id), f"reject {rem.action}: not allowed", self.clock())
            raise Refusal("Only a security approver or the person who asked can reject this.")
        if rem.status != expected:
            raise Refusal(self.remediations.handled_message(rem))

    def undo(self, user: str, token: str) -> str:
        """Undo, judged like the action it reverses (bot.core.decisions.undo_rule): one click for
        an owner's own access-reducing action, otherwise a request to the security channel."""
        now = self.clock()
        rem = self._remediation(token, user=user, attempted="undo")
        if rem.status in ("approved", "executing", "undoing", "undo_requested"):
            rem = self._settle_if_stale(rem)
        finding = self._finding(rem.finding_id)
        owner = self._is_owner(user, finding)
        if not (owner or self.directory.is_approver(user)):
            self._refuse(user, finding, f"undo {rem.action}: not the owner or a security approver", now)
            raise Refusal("Only the owner or a security approver can undo this.")
        rule = self.remediations.undo_rule(rem, user, undoer_is_owner=owner)
        try:
            if rule is UndoRule.ONE_CLICK:
                rem = self.remediations.undo(rem.id, actor=user, undoer_is_owner=owner)
                text = (f":leftwards_arrow_with_hook: Undone: {registry.action(rem.action).title.lower()} on "
                        f"{approvals.resource_link(finding)}{_target_words(rem)} ({undo_words(rem.action)}).")
            else:
                rem = self.remediations.request_undo(rem.id, actor=user)
                self._post_approval(rem, finding, undo=True)
                text = ("Undoing this gives access back, so a security approver other than you must approve it. "
                        "Sent to the security team; you'll get a message here when someone decides.")
        except RemediationRefused as exc:
            raise Refusal(str(exc)) from None
        finally:
            self._refresh_finding(self._finding(rem.finding_id))
            self.refresh_approval(self._remediation(token, user=user, attempted="undo"))
        return text

    def undo_approval(self, user: str, token: str, approve: bool, *, reason: str = "") -> str:
        """An approver decides about an undo request; the asker gets a DM line either way."""
        rem = self._remediation(token, user=user, attempted="approve undo" if approve else "reject undo")
        try:
            if approve:
                rem = self.remediations.approve_undo(rem.id, approver=user)
                line = (f":leftwards_arrow_with_hook: Undone: {registry.action(rem.action).title.lower()}"
                        f"{_target_words(rem)} ({undo_words(rem.action)}).")
            else:
                rem = self.remediations.reject_undo(rem.id, approver=user, reason=reason or "rejected in Slack")
                line = f":no_entry: Undo rejected: “{escape(reason)}”. Nothing changed."
        except RemediationRefused as exc:
            rem = self._remediation(token, user=user, attempted="approve undo" if approve else "reject undo")
            if approve and rem.status == "succeeded" and (rem.error or "").startswith("undo failed"):
                line = f":x: {rem.error}. Nothing changed."  # the undo itself failed in AWS
            else:
                raise Refusal(str(exc)) from None
        finding = self._finding(rem.finding_id)
        self._refresh_finding(finding)
        self.refresh_approval(rem)
        asker = rem.undo_requested_by
        if asker and user != asker:
            verb = "approved" if approve else "rejected"
            self._tell(asker, f"{approvals.who(user)} {verb} your request to undo the change on "
                              f"{approvals.resource_link(finding)} (the request to {action_name(rem.action)}). {line}")
        return line

    def _post_approval(self, rem: Remediation, finding: Finding, *, undo: bool = False) -> None:
        """Ask the security channel; if that fails, drop the plan (or the undo request) and
        say plainly why, so the finding is never left waiting for a message nobody got."""
        channel = self.settings.security_channel
        error = "STEWARD_SECURITY_CHANNEL is not set" if not channel else None
        response = None
        if channel:
            accounts = self.account_names([finding.account_id])
            blocks = (approvals.undo_approval_request(rem, finding, accounts=accounts) if undo
                      else approvals.approval_request(rem, finding, accounts=accounts))
            what = (f"undo the request to {action_name(rem.action)}" if undo else action_name(rem.action))
            try:
                response = self.client.chat_postMessage(
                    channel=channel, blocks=blocks,
                    text=f"Approval needed: {who(rem.undo_requested_by if undo else rem.requested_by)} asks to "
                         f"{what} on {short_resource(finding.resource)}")
            except SlackApiError as exc:
                error = exc.response.get("error", str(exc))
            except Exception as exc:  # Slack unreachable: the same, the plan must not hang on
                log.warning("could not post an approval request: %s", exc)
                error = f"Slack unreachable: {type(exc).__name__}"
        if response is None:
            reason = f"the approval request could not be posted to the security channel ({error})"
            if undo:
                self.remediations.withdraw_undo_request(rem.id, actor="system", reason=reason)
            else:
                self.remediations.cancel(rem.id, actor="system", reason=reason)
            hint = ("ask a Slack admin to invite Steward to the security channel (`/invite @IAM Steward`)"
                    if error in ("not_in_channel", "channel_not_found", "is_archived")
                    else "ask the security team to check Steward's Slack settings")
            raise Refusal(f"Steward could not ask the security team for approval ({error}), so nothing changed "
                          f"and nobody was asked. Please {hint}, then click again.")
        self.remediations.approval_posted(rem.id, channel=response["channel"], ts=response["ts"], undo=undo)
        with session_scope(self.engine) as session:
            audit.record(session, actor=rem.undo_requested_by if undo else rem.requested_by,
                         action=A.APPROVAL_REQUESTED, subject_fingerprint=finding.fingerprint,
                         resource=finding.resource, account=finding.account_id, at=self.clock(),
                         payload={"remediation_id": rem.id, "action": rem.action, "undo": undo,
                                  "channel": response["channel"], "ts": response["ts"]})

    def refresh_approval(self, rem: Remediation) -> None:
        """Rebuild the security channel's approval message(s) of `rem` from the database."""
        if not rem.approval_channel:
            return
        finding = self._finding(rem.finding_id)
        updates = []
        accounts = self.account_names([finding.account_id])
        if rem.approval_ts:
            updates.append((rem.approval_ts, approvals.approval_request(
                rem, finding, decided=approvals.approval_status(rem), accounts=accounts)))
        if rem.undo_approval_ts:
            decided = None if rem.status == "undo_requested" else approvals.undo_status(rem)
            updates.append((rem.undo_approval_ts, approvals.undo_approval_request(
                rem, finding, decided=decided, accounts=accounts)))
        for ts, blocks in updates:
            try:
                self.client.chat_update(channel=rem.approval_channel, ts=ts, blocks=blocks,
                                        text=f"Approval request: {action_name(rem.action)} on "
                                             f"{short_resource(finding.resource)}")
            except SlackApiError as exc:
                log.warning("could not update approval message %s: %s", ts, exc.response.get("error"))

    def refresh_remediation(self, remediation_id: int) -> None:
        """Bring the DM and approval messages of one remediation up to date (after the CLI)."""
        with session_scope(self.engine) as session:
            rem = session.get(Remediation, remediation_id)
        if rem is not None:
            self._refresh_finding(self._finding(rem.finding_id))
            self.refresh_approval(rem)

    def settle_interrupted(self, *, actor: str = "system", only: Iterable[int] | None = None) -> list[Remediation]:
        """Settle remediations whose process is gone (RemediationService.reconcile) and
        bring their Slack messages up to date: the DM card, the approval messages, and a DM
        line to whoever asked, so they know how it ended."""
        settled = self.remediations.reconcile(actor=actor, only=only)
        for rem in settled:
            try:
                finding = self._finding(rem.finding_id)
                self._refresh_finding(finding)
                self.refresh_approval(rem)
                asker = rem.undo_requested_by if rem.status in ("undone",) or (rem.error or "").startswith(
                    ("undo interrupted", "undo not requested")) else rem.requested_by
                self._tell(asker, f":warning: Steward was interrupted (a restart) while handling the request to "
                                  f"{action_name(rem.action)} on {approvals.resource_link(finding)}. "
                                  f"{approvals.settled_line(rem)}")
            except Exception:  # the database is settled; a message we could not send is logged
                log.exception("could not update Slack about settled remediation #%s", rem.id)
        return settled

    def _settle_if_stale(self, rem: Remediation) -> Remediation:
        if self.remediations.stale(rem):
            self.settle_interrupted(only=[rem.id])
        return self._remediation(rem.token, user="system", attempted="settle")

    def _carry_out(self, rem: Remediation, user: str) -> Remediation:
        """Approve (alone) and execute a planned remediation; a refused approval drops the plan."""
        try:
            self.remediations.approve(rem.id, approver=user)
        except RemediationRefused:
            self.remediations.cancel(rem.id, actor=user, reason="not approved")
            raise
        return self.remediations.execute(rem.id, actor=user)

    def _remediation(self, token: str, *, user: str, attempted: str) -> Remediation:
        with session_scope(self.engine) as session:
            rem = queries.remediation_by_token(session=session, token=token)
        if rem is None:
            raise self._unknown(user, attempted, "This remediation no longer exists.")
        return rem

    def _tell(self, user: str | None, text: str) -> None:
        """A DM line (a new message, so Slack notifies): to Slack users only."""
        if not user or not (user[0] in "UW" and user.isalnum()):
            return
        try:
            self.client.chat_postMessage(channel=user, text=text, unfurl_links=False)
        except SlackApiError as exc:
            log.warning("could not tell %s: %s", user, exc.response.get("error"))


def _target_words(rem: Remediation) -> str:
    """` (key AKIA…)`, ` (policy s3-everything)`: which thing the action was about."""
    target = rem.target or {}
    if target.get("access_key_id"):
        return f", key {target['access_key_id']}"
    if target.get("policy_name") or target.get("policy_arn"):
        return f", policy {escape(str(target.get('policy_name') or short_resource(target['policy_arn'])))}"
    if rem.action == "remove-user-from-group" and target.get("group_name"):
        return f", group {escape(str(target['group_name']))}"
    return ""
