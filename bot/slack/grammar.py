"""`/iam` command text -> a typed command (pure). Anything unexpected is a `Usage` reply.

Slack sends mentions escaped (`<@U123|alice>`) when the manifest sets `should_escape`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from bot.slack.blocks.common import escape
from checks.catalog import BY_ID

MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
ACCOUNT = re.compile(r"^account:(\d{12})$")
CHECK = re.compile(r"^check:([a-z0-9-]+)$")

#: The slash command as registered in Slack (the manifest is generated from these).
SLASH_COMMAND = "/iam"
DESCRIPTION = "Your IAM identities and findings; security tools"
#: Verbs everyone has, shown by Slack as the command's usage hint; approvers have more.
EVERYONE_VERBS = ("whoami", "findings", "help")
APPROVER_VERBS = ("scan", "audit", "digest", "review")
USAGE_HINT = " | ".join(EVERYONE_VERBS)

USAGE = """*IAM Steward* — `/iam <command>`
• `/iam whoami` — your IAM users, keys, groups and policies across accounts, and your open findings
• `/iam findings` — your open findings
• `/iam help` — this text
Security approvers also have:
• `/iam findings @person` · `/iam findings account:123456789012` · `/iam findings check:stale-user`
• `/iam scan [123456789012]` — scan now (all accounts, or one); replies here when done
• `/iam audit <ARN | user name | access key id>` — recent audit events about it
• `/iam digest` — preview this week's digest, privately
• `/iam review start [--account ID …] [--due YYYY-MM-DD] [--scope users|roles|all]` — start an access review
• `/iam review status` — how the access reviews are going (everyone: what waits for you)"""


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Usage:
    problem: str


@dataclass(frozen=True)
class WhoAmI:
    pass


@dataclass(frozen=True)
class Findings:
    """Own findings when every filter is None."""

    user: str | None = None
    account: str | None = None
    check: str | None = None

    @property
    def about_others(self) -> bool:
        return any((self.user, self.account, self.check))


@dataclass(frozen=True)
class Scan:
    account: str | None = None


@dataclass(frozen=True)
class Audit:
    needle: str


@dataclass(frozen=True)
class Digest:
    pass


@dataclass(frozen=True)
class ReviewStart:
    accounts: tuple[str, ...] = ()
    due: date | None = None
    scope: str = "all"


@dataclass(frozen=True)
class ReviewStatus:
    pass


Command = Help | Usage | WhoAmI | Findings | Scan | Audit | Digest | ReviewStart | ReviewStatus



def parse(text: str | None) -> Command:
    words = (text or "").split()
    if not words:
        return Help()
    verb, args = words[0].lower(), words[1:]
    if verb in ("help", "-h", "--help", "?"):
        return Help()
    if verb == "whoami":
        return WhoAmI() if not args else Usage("`whoami` takes no arguments")
    if verb == "findings":
        return _findings(args)
    if verb == "scan":
        if not args:
            return Scan()
        if len(args) == 1 and re.fullmatch(r"\d{12}", args[0]):
            return Scan(account=args[0])
        return Usage("`scan` takes at most one 12-digit account id")
    if verb == "digest":
        return Digest() if not args else Usage("`digest` takes no arguments")
    if verb == "review":
        return _review(args)
    if verb == "audit":
        if len(args) != 1 or len(args[0]) > 2048:
            return Usage("`audit` takes one ARN, user name or access key id")
        return Audit(needle=args[0].strip("<>"))
    return Usage(f"unknown command `{_clip(verb)}`")


REVIEW_USAGE = "`review start [--account ID …] [--due YYYY-MM-DD] [--scope users|roles|all]` or `review status`"


def _review(args: list[str]) -> Command:
    # Slack clients may turn a typed `--` into a dash: accept both.
    args = ["--" + a.lstrip("—–") if a[:1] in "—–" else a for a in args]
    if args == ["status"]:
        return ReviewStatus()
    if not args or args[0] != "start":
        return Usage(f"use {REVIEW_USAGE}")
    accounts: list[str] = []
    due, scope = None, "all"
    rest = args[1:]
    while rest:
        flag, value = rest[0], rest[1] if len(rest) > 1 else None
        if flag not in ("--account", "--due", "--scope") or value is None:
            return Usage(f"`review start` does not understand `{_clip(flag)}`: {REVIEW_USAGE}")
        if flag == "--account":
            if not re.fullmatch(r"\d{12}", value):
                return Usage(f"`{_clip(value)}` is not a 12-digit account id")
            accounts.append(value)
        elif flag == "--due":
            try:
                due = date.fromisoformat(value)
            except ValueError:
                return Usage(f"`{_clip(value)}` is not a date (YYYY-MM-DD)")
        else:
            if value not in ("users", "roles", "all"):
                return Usage("`--scope` is users, roles or all")
            scope = value
        rest = rest[2:]
    return ReviewStart(accounts=tuple(dict.fromkeys(accounts)), due=due, scope=scope)


def _findings(args: list[str]) -> Command:
    if not args:
        return Findings()
    if len(args) > 1:
        return Usage("`findings` takes one filter: @person, account:ID or check:ID")
    arg = args[0]
    if m := MENTION.match(arg):
        return Findings(user=m.group(1))
    if m := ACCOUNT.match(arg):
        return Findings(account=m.group(1))
    if m := CHECK.match(arg):
        if m.group(1) not in BY_ID:
            return Usage(f"no check called `{_clip(m.group(1))}`")
        return Findings(check=m.group(1))
    if arg.startswith("@"):
        return Usage("mention the person with @ so that Slack links their name")
    return Usage(f"`findings` does not understand `{_clip(arg)}`")


def _clip(text: str, limit: int = 40) -> str:
    """Echo user input back safely: short, no backticks to break out of code spans, and
    Slack's control characters escaped (no `<!channel>` or `<http://…|link>` gets through)."""
    text = text.replace("`", "'")
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")
