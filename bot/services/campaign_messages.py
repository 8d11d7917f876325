"""Campaign messages: rebuild a DM or triage message from the database, and what each
finding shows instead of buttons once something happened (a mixin of
`bot.services.campaigns.Campaigns`; `outcome_of` is pure)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from slack_sdk.errors import SlackApiError

from bot.core.decisions import UndoRule, action_name, unavailable_choices, undo_rule, undo_words
from bot.core.report import plural
from bot.db import queries
from bot.db.engine import session_scope
from bot.db.models import Finding, Remediation
from bot.slack.blocks import dm
from bot.slack.blocks.approvals import who as mention
from bot.slack.blocks.common import escape
from checks.remediate import registry

log = logging.getLogger(__name__)


class CampaignMessages:
    """Needs from its host: settings, engine, client, and `auto_deadlines`."""

    def _finding(self, finding_id: int) -> Finding:
        with session_scope(self.engine) as session:
            return session.get(Finding, finding_id)

    # Set by bot.services.activity: a containment's finding has no DM of its own; its event's
    # security message is rebuilt instead.
    on_activity_change = None

    def _refresh_finding(self, finding: Finding) -> None:
        if finding.check_id.startswith("activity:"):
            if self.on_activity_change is not None:
                self.on_activity_change(finding)
            return
        if finding.notify_channel and finding.notify_ts:
            self.refresh_message(finding.notify_channel, finding.notify_ts)

    def refresh_message(self, channel: str, ts: str, *, emptied: str | None = None,
                        closed: str | None = None) -> None:
        """Rebuild one DM or triage message from the database and replace it in place;
        `emptied`: the text to leave when no finding is listed in it any more; `closed`: a
        line about an identity that just left it ("Assigned to @Sam by @Ann"), shown below
        what stays, or alone when nothing stays."""
        with session_scope(self.engine) as session:
            findings = queries.findings_in_message(session=session, channel=channel, ts=ts)
        if not findings:
            if emptied or closed:
                last = "\n".join(line for line in (closed, emptied) if line)
                with contextlib.suppress(SlackApiError):
                    self.client.chat_update(channel=channel, ts=ts, text=last, blocks=[dm.context(last)])
            return
        owner = findings[0].notified_to
        blocks, text = self._render(findings, owner)
        if closed:  # the identity that left closes its loop where it was shown
            blocks = [*blocks[:49], dm.context(closed)]
        try:
            self.client.chat_update(channel=channel, ts=ts, blocks=blocks, text=text)
        except SlackApiError as exc:
            log.warning("could not update message %s/%s: %s", channel, ts, exc.response.get("error"))

    def _render(self, findings: list[Finding], owner: str | None, part=(1, 1)):
        outcomes = self.outcomes(findings)
        resources = [f.resource for f in findings]
        with session_scope(self.engine) as session:
            accounts = queries.account_names(session=session, account_ids=[f.account_id for f in findings])
            changes = queries.owner_changes(session=session, resources=resources)
            overrides = queries.overrides_with_assigner(session=session, resources=resources)
        unavailable = unavailable_choices(rotation_role=bool(self.settings.rotation_role_name))
        if owner:
            leads = {r: f"Assigned to you by {mention(o.assigned_by)} (security triage)."
                     for r, o in overrides.items() if o.slack_user_id == owner and o.assigned_by}
            blocks = dm.owner_dm(findings, outcomes, dry_run=self.settings.dry_run, part=part,
                                 deadlines=self.auto_deadlines(findings), accounts=accounts, leads=leads,
                                 unavailable=unavailable)
            return blocks, dm.dm_fallback_text(findings)
        leads = {r: f"Not mine (from {mention(actor)}): pick the right owner." for r, (action, actor) in changes.items()
                 if action == "decision.not_mine" and r not in overrides}
        if leads and len(leads) == len(set(resources)):
            reason = "Their owners said these are not theirs. Assign the right owner (it covers the whole identity)."
        else:
            reason = ("Nobody could be matched to these (owner tags, email user names), or their owner said they "
                      "are not theirs. Assign an owner (it covers the whole identity), or act on account-level "
                      "findings here.")
        return (dm.triage_message(findings, outcomes, reason=reason, accounts=accounts, leads=leads,
                                  unavailable=unavailable),
                f"IAM Steward triage: {plural(len(findings), 'finding')}")

    def outcomes(self, findings: Iterable[Finding]) -> dict[str, dm.Outcome]:
        findings = list(findings)
        with session_scope(self.engine) as session:
            latest = queries.latest_remediations(session=session, finding_ids=[f.id for f in findings])
        result = {}
        for finding in findings:
            outcome = outcome_of(finding, latest.get(finding.id))
            if outcome is not None:
                result[finding.token] = outcome
        return result

    def _outcome_line(self, rem: Remediation) -> str:
        return outcome_of(None, rem).text


def outcome_of(finding: Finding | None, rem: Remediation | None) -> dm.Outcome | None:
    """What to show instead of buttons: a remediation's state, or the owner's decision (pure)."""
    outcome = _outcome(finding, rem)
    key = dm.removal_key(finding) if finding is not None else None
    if outcome is not None and key and rem is not None and rem.action == key[0] and (
            outcome.pending or rem.status == "succeeded"):  # the same policy on other findings: covered
        outcome = dm.Outcome(outcome.text, outcome.undo_token, outcome.pending, outcome.undo_label, covers=key)
    return outcome


def _outcome(finding: Finding | None, rem: Remediation | None) -> dm.Outcome | None:
    if rem is not None and rem.status not in ("rejected", "undone", "failed", "cancelled"):
        title = registry.action(rem.action).title
        dry = " (dry run: nothing changed in AWS)" if rem.dry_run else ""
        if rem.status == "planned":
            return dm.Outcome(f":hourglass: {mention(rem.requested_by)} asked to *{action_name(rem.action)}*; "
                              "waiting for a security approver.", pending=True)
        if rem.status == "undo_requested":
            return dm.Outcome(f":hourglass: *{title}* done; {mention(rem.undo_requested_by)} asked to undo it "
                              "(it gives access back): waiting for a security approver.", pending=True)
        if rem.status in ("approved", "executing", "undoing"):
            return dm.Outcome(f":hourglass: {title}: in progress…", pending=True)
        action = registry.action(rem.action)
        undo, label = None, "Undo"
        if action.reversible and not rem.dry_run:
            undo = rem.token
            owner = finding.notified_to if finding is not None else None
            if undo_rule(action, requested_by=rem.requested_by, undoer=owner or "",
                         undoer_is_owner=bool(owner)) is not UndoRule.ONE_CLICK:
                label = "Ask to undo"
        text = (f":white_check_mark: *{title}* done by {mention(rem.approved_by or rem.requested_by)} "
                f"{dm.when(rem.finished_at)}{dry}.")
        if rem.error and rem.error.startswith("undo"):  # the last undo attempt, and why it did not happen
            text += f" ({dm.escape(rem.error)})"
        return dm.Outcome(text, undo_token=undo, undo_label=label)
    if finding is None:
        assert rem is not None
        word = {"rejected": ":no_entry: Rejected", "undone": ":leftwards_arrow_with_hook: Undone",
                "failed": ":x: Failed", "cancelled": ":warning: Not carried out"}[rem.status]
        who = rem.undone_by or rem.approved_by or rem.requested_by
        why = f": {dm.escape(rem.error)}" if rem.error else ""
        return dm.Outcome(f"{word}: {registry.action(rem.action).title.lower()} ({mention(who)}){why}.")
    if finding.state == "resolved":
        return dm.Outcome(f":white_check_mark: Resolved: the scan of {dm.when(finding.resolved_at)} no longer sees it.")
    if finding.decision:
        until = f" until {finding.decision_until:%Y-%m-%d}" if finding.decision_until else ""
        who = mention(finding.decided_by)
        text = {
            "snooze": f":zzz: Snoozed{until} by {who}.",
            "exception": f":pushpin: Kept{until} by {who}: “{escape(finding.decision_reason or '')}”",
            "rotate": f":repeat: {who} will rotate it{until.replace(' until', ' by')}; the scans will check.",
            "ack": f":eyes: Acknowledged by {who} {dm.when(finding.decided_at)}.",
            "not_mine": f":leftwards_arrow_with_hook: {who} says this is not theirs; sent to security triage.",
        }.get(finding.decision, f"{finding.decision} by {who}")
        return dm.Outcome(text)
    if rem is not None and rem.status in ("rejected", "undone", "failed", "cancelled"):
        # The buttons come back, with what happened last so the card never goes back silently.
        title = registry.action(rem.action).title
        if rem.status == "rejected":
            why = f": “{escape(rem.error)}”" if rem.error and rem.error != "rejected in Slack" else ""
            text = (f":no_entry: {mention(rem.requested_by)}'s request to *{action_name(rem.action)}* was rejected by "
                    f"{mention(rem.approved_by)} {dm.when(rem.finished_at)}{why}.")
        elif rem.status == "undone":
            text = (f":leftwards_arrow_with_hook: *{title}* was undone ({undo_words(rem.action)}) by "
                    f"{mention(rem.undone_by)} {dm.when(rem.undone_at)}.")
        elif rem.status == "failed":
            text = f":x: *{title}* failed: {escape(rem.error or 'unknown error')}. Nothing changed; you can try again."
        else:
            text = f":warning: *{title}* was not carried out: {escape(rem.error or 'cancelled')}."
        return dm.Outcome(text, reopened=True)
    return None
