"""`/iam` command text -> a typed command (pure). Anything unexpected is a `Usage` reply.

Slack sends mentions escaped (`<@U123|alice>`) when the manifest sets `should_escape`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
APPROVER_VERBS = ("scan", "audit", "digest")
USAGE_HINT = " | ".join(EVERYONE_VERBS)

USAGE = """*IAM Steward* — `/iam <command>`
• `/iam whoami` — your IAM users, keys, groups and policies across accounts, and your open findings
• `/iam findings` — your open findings
• `/iam help` — this text
Security approvers also have:
• `/iam findings @person` · `/iam findings account:123456789012` · `/iam findings check:stale-user`
• `/iam scan [123456789012]` — scan now (all accounts, or one); replies here when done
• `/iam audit <ARN | user name | access key id>` — recent audit events about it
• `/iam digest` — preview this week's digest, privately"""


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


Command = Help | Usage | WhoAmI | Findings | Scan | Audit | Digest



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
    if verb == "audit":
        if len(args) != 1 or len(args[0]) > 2048:
            return Usage("`audit` takes one ARN, user name or access key id")
        return Audit(needle=args[0].strip("<>"))
    return Usage(f"unknown command `{_clip(verb)}`")


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
