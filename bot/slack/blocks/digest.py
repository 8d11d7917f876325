"""The weekly digest as Block Kit (for the security channel and `/iam digest`) and as plain
text (for `steward digest --print`). Pure: a `Digest` value in, blocks or text out.

A Slack message holds at most 50 blocks: the fixed sections use about a dozen, and the
per-account posture gets what is left, worst accounts first (at most POSTURE_LIMIT of them;
the terminal text lists every account).
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import Block, DividerBlock, HeaderBlock, PlainTextObject, SectionBlock
from slack_sdk.models.blocks.basic_components import MarkdownTextObject

from bot.core.decisions import action_name
from bot.core.digest_model import SEVERITIES, AccountPosture, Digest, WeekCounts
from bot.core.report import account_name, plural, short_resource
from bot.db.audit_anchors import anchor_text
from bot.slack.blocks.common import (
    MESSAGE_BLOCK_LIMIT,
    SECTION_LIMIT,
    SEVERITY_MARK,
    chunk_lines,
    context,
    escape,
    mrkdwn_section,
)

POSTURE_LIMIT = 60  # accounts listed in Slack; the terminal lists them all
CHECKS_LIMIT = 10
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")


# --- shared wording --------------------------------------------------------------------------


def _local(digest: Digest, moment: datetime | None, fmt: str = "%Y-%m-%d") -> str:
    if moment is None:
        return "—"
    return moment.astimezone(ZoneInfo(digest.timezone)).strftime(fmt)


def _days(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} days" if value < 10 else f"{value:.0f} days"


def _age_days(digest: Digest, since: datetime) -> int:
    return max(0, (digest.generated_at - since).days)


def _change(this: int, last: int) -> str:
    if this == last:
        return "same as last week"
    arrow = "▲" if this > last else "▼"
    return f"{arrow}{abs(this - last)} vs {last} last week"


def _plural(n: int, word: str) -> str:
    return plural(n, word)


def _account(digest: Digest, account_id: str, *, slack: bool, label: str | None = None) -> str:
    """`prod (123456789012)`, or the id alone for an account without a name."""
    name = digest.account_names.get(account_id) or account_name(label, account_id)
    if slack:
        return f"{escape(name)} (`{account_id}`)" if name else f"`{account_id}`"
    return f"{name} ({account_id})" if name else account_id


def _owned(value: str | None, *, slack: bool) -> str:
    """"owner @x", or "no owner" (never "owner no owner")."""
    if not value:
        return "_no owner_" if slack else "no owner"
    return f"owner {_who(value, slack=slack)}"


def _who(value: str | None, *, slack: bool) -> str:
    if not value:
        return "_nobody_" if slack else "nobody"
    if slack and _SLACK_USER.match(value):
        return f"<@{value}>"
    return escape(value) if slack else value


def _severity_counts(counts: dict[str, int], *, slack: bool, zeros: bool = True) -> str:
    parts = []
    for severity in SEVERITIES:
        n = counts.get(severity, 0)
        if n or zeros:
            parts.append(f"{SEVERITY_MARK[severity]} *{n}* {severity}" if slack else f"{severity} {n}")
    return (" · " if slack else ", ").join(parts) or ("none" if not slack else "_none_")


def _posture_line(p: AccountPosture, *, slack: bool, names: dict[str, str] | None = None) -> str:
    name = (names or {}).get(p.account_id) or account_name(p.label, p.account_id)
    if slack:
        shown = f"{escape(name)} (`{p.account_id}`)" if name else f"`{p.account_id}`"
        return f"{shown} — {_severity_counts(p.counts, slack=True, zeros=False)} (*{p.total}*)"
    shown = f"{name} ({p.account_id})" if name else p.account_id
    return f"{shown}: {p.total} open ({_severity_counts(p.counts, slack=False, zeros=False)})"


def digest_fallback(digest: Digest) -> str:
    """The notification text (and what clients without Block Kit show)."""
    sev = ", ".join(f"{digest.open_by_severity.get(s, 0)} {s}" for s in SEVERITIES if digest.open_by_severity.get(s))
    w = digest.this_week
    return (
        f"IAM weekly digest {digest.week}: {digest.open_total} open findings"
        + (f" ({sev})" if sev else "")
        + f"; this week {w.new} new, {w.resolved} resolved, {w.remediated} remediated, {w.reopened} reopened; "
        f"{digest.overdue} overdue, {digest.pending_approvals} awaiting approval, "
        f"{_plural(len(digest.failed_accounts), 'account')} failed to scan."
    )


# --- Block Kit -------------------------------------------------------------------------------


def _week_fields(digest: Digest) -> list[MarkdownTextObject]:
    w, p = digest.this_week, digest.last_week

    def field(title: str, this: int, last: int) -> MarkdownTextObject:
        return MarkdownTextObject(text=f"*{title}*\n*{this}* ({_change(this, last)})")

    fix = f"*Median time to fix*\n*{_days(w.median_fix_days)}* ({w.fixed} fixed; last week {_days(p.median_fix_days)})"
    return [
        field("New", w.new, p.new),
        field("Resolved", w.resolved, p.resolved),
        field("Remediated", w.remediated, p.remediated),
        field("Reopened", w.reopened, p.reopened),
        MarkdownTextObject(text=fix),
        MarkdownTextObject(
            text=f"*Exceptions granted*\n*{digest.exceptions_granted}* ({digest.exceptions_expiring} expiring in 7 days)"
        ),
    ]


def _lines_or(empty: str, heading: str, lines: list[str]) -> list[str]:
    return [heading, *lines] if lines else [f"{heading}\n{empty}"]


def _checks_lines(digest: Digest) -> list[str]:
    shown = digest.open_by_check[:CHECKS_LIMIT]
    lines = [f"{SEVERITY_MARK.get(c.severity, '•')} *{c.count}* {escape(c.title)} (`{c.check_id}`)" for c in shown]
    if len(digest.open_by_check) > len(shown):
        rest = sum(c.count for c in digest.open_by_check[CHECKS_LIMIT:])
        lines.append(f"…and {rest} more across {len(digest.open_by_check) - len(shown)} other checks")
    return _lines_or("Nothing open. :white_check_mark:", "*Open findings by check*", lines)


def _overdue_lines(digest: Digest) -> list[str]:
    heading = f"*Overdue: no decision {digest.escalate_after_days}+ days after the DM* ({digest.overdue})"
    lines = []
    for o in digest.overdue_by_owner:
        who = f"<@{o.user}>" if o.user else "_security triage (no owner found)_"
        lines.append(f"• {who} — *{o.count}*, waiting since {_local(digest, o.oldest_notified_at)}")
    listed = sum(o.count for o in digest.overdue_by_owner)
    if digest.overdue > listed:
        lines.append(f"…and {digest.overdue - listed} more")
    return _lines_or("Nothing overdue. :white_check_mark:", heading, lines)


def _oldest_lines(digest: Digest) -> list[str]:
    lines = [
        f"{SEVERITY_MARK.get(f.severity, '•')} *{escape(f.title)}* — `{escape(short_resource(f.resource))}` in "
        f"{_account(digest, f.account_id, slack=True)}, open {_age_days(digest, f.first_seen)} days, "
        f"{_owned(f.notified_to or f.owner, slack=True)}"
        for f in digest.oldest_open
    ]
    return _lines_or("Nothing open.", "*Oldest open problems*", lines)


def _exception_lines(digest: Digest) -> list[str]:
    heading = (f"*Exceptions*: {digest.exceptions_granted} granted this week, "
               f"{digest.exceptions_expiring} expiring in the next 7 days")
    lines = [
        f":hourglass: until {_local(digest, e.until)}: {escape(e.title)} — `{escape(short_resource(e.resource))}` "
        f"in {_account(digest, e.account_id, slack=True)}, kept by {_who(e.decided_by, slack=True)}: “{escape((e.reason or '')[:150])}”"
        for e in digest.exceptions_expiring_soon
    ]
    lines += [
        f":pushpin: granted {_local(digest, e.decided_at)}: {escape(e.title)} — "
        f"`{escape(short_resource(e.resource))}` in {_account(digest, e.account_id, slack=True)} by {_who(e.decided_by, slack=True)} "
        f"until {_local(digest, e.until)}: “{escape((e.reason or '')[:150])}”"
        for e in _granted_not_expiring(digest)
    ]
    return _lines_or("None.", heading, lines)


def _granted_not_expiring(digest: Digest) -> list:
    """Granted this week, minus those already listed as expiring soon."""
    expiring = set(digest.exceptions_expiring_soon)
    return [e for e in digest.exceptions_granted_recent if e not in expiring]


def _approval_lines(digest: Digest) -> list[str]:
    lines = [
        f"{SEVERITY_MARK.get(a.severity, '•')} {escape(action_name(a.action))} on `{escape(short_resource(a.resource))}` in "
        f"{_account(digest, a.account_id, slack=True)} ({escape(a.title)}), requested by {_who(a.requested_by, slack=True)} "
        f"{_age_days(digest, a.requested_at)} days ago"
        for a in digest.pending_approvals_oldest
    ]
    if digest.pending_approvals > len(lines):
        lines.append(f"…and {digest.pending_approvals - len(lines)} more")
    return _lines_or("None waiting.", f"*Waiting for a security approver* ({digest.pending_approvals})", lines)


def _failed_lines(digest: Digest) -> list[str]:
    lines = [
        f":x: {_account(digest, a.account_id, slack=True, label=a.label)}"
        + f", {_local(digest, a.at, '%Y-%m-%d %H:%M')}: {escape((a.error or 'no error recorded')[:200])}"
        for a in digest.failed_accounts
    ]
    return _lines_or("Every account's last scan succeeded. :white_check_mark:",
                     f"*Accounts whose last scan failed* ({len(digest.failed_accounts)})", lines)


RISKY_STATES = (("confirmed", "confirmed"), ("denied", "denied"), ("unanswered", "unanswered"),
                ("escalated", "straight to security"), ("asking", "waiting for an answer"))


def risky_line(digest: Digest) -> str:
    """Risky changes this week: confirmed / denied / unanswered (and the rest)."""
    counts = digest.risky_changes or {}
    total = sum(counts.values())
    parts = [f"{counts.get('confirmed', 0)} confirmed", f"{counts.get('denied', 0)} denied",
             f"{counts.get('unanswered', 0)} unanswered"]
    parts += [f"{counts[state]} {words}" for state, words in RISKY_STATES[3:] if counts.get(state)]
    return f"Risky changes this week: {total} ({', '.join(parts)})"


def _risky_lines(digest: Digest) -> list[str]:
    heading, _, counts = risky_line(digest).partition(": ")
    counts_by_state = digest.risky_changes or {}
    alarm = ":rotating_light: " if counts_by_state.get("denied") or counts_by_state.get("unanswered") else ""
    return [f"{alarm}*{heading}*: {counts}"]


def _sections(lines: list[str]) -> list[SectionBlock]:
    return [mrkdwn_section(text) for text in chunk_lines(lines, SECTION_LIMIT)]


def digest_blocks(digest: Digest, *, max_blocks: int = MESSAGE_BLOCK_LIMIT) -> list[Block]:
    """The digest message: never more than `max_blocks` (Slack's limit is 50)."""
    head: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=f"IAM weekly digest · {digest.week}"[:150])),
        context(
            f"{_local(digest, digest.period_start, '%a %Y-%m-%d %H:%M')} → "
            f"{_local(digest, digest.period_end, '%a %Y-%m-%d %H:%M')} ({digest.timezone}) · "
            f"{plural(digest.accounts_known, 'account')} known"
        ),
        mrkdwn_section(
            f"*{digest.open_total} open findings*   {_severity_counts(digest.open_by_severity, slack=True)}"
        ),
        SectionBlock(fields=_week_fields(digest)),
        DividerBlock(),
    ]
    body: list[Block] = []
    for lines in (_checks_lines(digest), _overdue_lines(digest), _oldest_lines(digest),
                  _exception_lines(digest), _approval_lines(digest), _failed_lines(digest), _risky_lines(digest)):
        body.extend(_sections(lines)[:2])
    footer = [context(f"Chart of the last {len(digest.history)} weeks in the thread · "
                      "`steward digest --print` shows everything")]
    if digest.audit_head:  # the published anchor: always kept, whatever is cut
        h = digest.audit_head
        footer.append(context(anchor_text(h.last_sequence, h.last_hash, h.key_id)))

    room = max_blocks - len(head) - len(body) - 1 - len(footer)  # divider + footer
    posture = _posture_blocks(digest, room)
    blocks = [*head, *body, DividerBlock(), *posture] if posture else [*head, *body]
    return [*blocks[:max_blocks - len(footer)], *footer]


def _posture_blocks(digest: Digest, room: int) -> list[Block]:
    if room <= 0:
        return []
    postures = list(digest.posture)
    quiet = max(0, digest.accounts_known - len(postures))
    heading = f"*Posture by account* ({len(postures)} with open findings" + (
        f", {quiet} clean)" if quiet else ")")
    if not postures:
        return [mrkdwn_section(f"{heading}\nNo account has open findings. :white_check_mark:")]
    limit = min(len(postures), POSTURE_LIMIT)
    while True:
        lines = [heading, *(_posture_line(p, slack=True, names=digest.account_names) for p in postures[:limit])]
        if limit < len(postures):
            lines.append(f"…and {len(postures) - limit} more accounts with open findings")
        sections = _sections(lines)
        if len(sections) <= room or limit == 0:
            return sections[:room]
        limit = max(0, limit - max(1, (len(sections) - room) * 10))


# --- plain text (terminal) -------------------------------------------------------------------


def _plain_counts(title: str, w: WeekCounts, p: WeekCounts) -> list[str]:
    rows = [("New", w.new, p.new), ("Resolved", w.resolved, p.resolved),
            ("Remediated", w.remediated, p.remediated), ("Reopened", w.reopened, p.reopened)]
    lines = [title, f"  {'':<22}{'this week':>10}{'last week':>12}"]
    lines += [f"  {name:<22}{this:>10}{last:>12}" for name, this, last in rows]
    lines.append(f"  {'Median time to fix':<22}{_days(w.median_fix_days):>10}{_days(p.median_fix_days):>12}")
    lines.append(f"  {'Findings fixed':<22}{w.fixed:>10}{p.fixed:>12}")
    return lines


def digest_text(digest: Digest) -> str:
    """The same content for a terminal: plain text, every account listed."""
    out: list[str] = []
    add = out.append
    add(f"IAM weekly digest {digest.week}")
    add(f"{_local(digest, digest.period_start, '%Y-%m-%d %H:%M')} -> "
        f"{_local(digest, digest.period_end, '%Y-%m-%d %H:%M')} ({digest.timezone}), "
        f"{plural(digest.accounts_known, 'account')} known")
    add("")
    add(f"Open findings: {digest.open_total} ({_severity_counts(digest.open_by_severity, slack=False)})")
    add("")
    out += _plain_counts("Week over week", digest.this_week, digest.last_week)
    add("")
    add("Open findings by check")
    out += [f"  {c.count:>6}  {c.severity:<8}  {c.check_id}  {c.title}" for c in digest.open_by_check] or ["  none"]
    add("")
    add(f"Overdue: no decision {digest.escalate_after_days}+ days after the DM ({digest.overdue})")
    listed = sum(o.count for o in digest.overdue_by_owner)
    out += [f"  {o.count:>6}  {o.user or 'security triage (no owner)'}, waiting since "
            f"{_local(digest, o.oldest_notified_at)}" for o in digest.overdue_by_owner] or ["  none"]
    if digest.overdue > listed:
        add(f"  ...and {digest.overdue - listed} more")
    add("")
    add("Oldest open problems")
    out += [f"  {f.severity:<8}  {f.title}: {short_resource(f.resource)} in {f.account_id}, open "
            f"{_age_days(digest, f.first_seen)} days, {_owned(f.notified_to or f.owner, slack=False)}"
            for f in digest.oldest_open] or ["  none"]
    add("")
    add(f"Exceptions: {digest.exceptions_granted} granted this week, "
        f"{digest.exceptions_expiring} expiring in the next 7 days")
    out += [f"  expires {_local(digest, e.until)}: {e.title}: {short_resource(e.resource)} in {e.account_id}, "
            f"kept by {e.decided_by or '?'}: {e.reason or ''}" for e in digest.exceptions_expiring_soon]
    out += [f"  granted {_local(digest, e.decided_at)}: {e.title}: {short_resource(e.resource)} in "
            f"{e.account_id} by {e.decided_by or '?'} until {_local(digest, e.until)}: {e.reason or ''}"
            for e in _granted_not_expiring(digest)]
    if not (digest.exceptions_expiring_soon or digest.exceptions_granted_recent):
        add("  none")
    add("")
    add(f"Waiting for a security approver ({digest.pending_approvals})")
    out += [f"  #{a.id} {action_name(a.action)} on {short_resource(a.resource)} in {a.account_id} ({a.title}), requested by "
            f"{a.requested_by} {_age_days(digest, a.requested_at)} days ago"
            for a in digest.pending_approvals_oldest] or ["  none"]
    if digest.pending_approvals > len(digest.pending_approvals_oldest):
        add(f"  ...and {digest.pending_approvals - len(digest.pending_approvals_oldest)} more")
    add("")
    add(f"Accounts whose last scan failed ({len(digest.failed_accounts)})")
    out += [f"  {_account(digest, a.account_id, slack=False, label=a.label)}"
            + f", {_local(digest, a.at, '%Y-%m-%d %H:%M')}: {a.error or 'no error recorded'}"
            for a in digest.failed_accounts] or ["  none"]
    add("")
    add(risky_line(digest))
    add("")
    add(f"Posture by account ({len(digest.posture)} with open findings)")
    out += [f"  {_posture_line(p, slack=False, names=digest.account_names)}" for p in digest.posture] or ["  none"]
    add("")
    add(f"Unresolved findings, last {len(digest.history)} weeks")
    for point in digest.history:
        add(f"  {_local(digest, point.at)}  {sum(point.counts.values()):>6}  "
            f"({_severity_counts(point.counts, slack=False)})")
    if digest.audit_head:
        h = digest.audit_head
        add("")
        add(anchor_text(h.last_sequence, h.last_hash, h.key_id).replace("`", ""))
    return "\n".join(out) + "\n"
