"""`/iam` command text -> a typed command (pure). Anything unexpected is a `Usage` reply.

Slack sends mentions escaped (`<@U123|alice>`) when the manifest sets `should_escape`.
"""

from __future__ import annotations

import difflib
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


#: One usage line per verb: a usage error shows only the line of the verb it is about.
USAGE_LINES = {
    "whoami": "`/iam whoami` — your IAM users, keys, groups and policies, and your open findings",
    "findings": "`/iam findings` — your open findings; approvers: `/iam findings @person | "
                "account:123456789012 | check:stale-user`",
    "help": "`/iam help` — every command",
    "scan": "`/iam scan [123456789012]` — scan every account, or one (security approvers)",
    "audit": "`/iam audit <ARN | user name | access key id>` — what happened to it (security approvers)",
    "digest": "`/iam digest` — preview this week's digest, privately (security approvers)",
}


@dataclass(frozen=True)
class Usage:
    problem: str
    verb: str | None = None  # the command it is about, when known: its usage line is shown

    def reply(self) -> str:
        """The one thing wrong, then only the matching usage line (or the list of commands)."""
        if self.verb in USAGE_LINES:
            return f"{self.problem}.\nUsage: {USAGE_LINES[self.verb]}"
        return (f"{self.problem}. Commands: `/iam whoami`, `/iam findings`, `/iam help` (security approvers "
                "also `scan`, `audit`, `digest`); `/iam help` says what each does.")


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
        return WhoAmI() if not args else Usage("`whoami` takes no arguments", "whoami")
    if verb == "findings":
        return _findings(args)
    if verb == "scan":
        if not args:
            return Scan()
        if len(args) == 1 and re.fullmatch(r"\d{12}", args[0]):
            return Scan(account=args[0])
        if len(args) == 1 and args[0].isdigit():
            return Usage(f"an account id has 12 digits (`{_clip(args[0])}` has {len(args[0])})", "scan")
        return Usage("`scan` takes at most one 12-digit account id", "scan")
    if verb == "digest":
        return Digest() if not args else Usage("`digest` takes no arguments", "digest")
    if verb == "audit":
        if len(args) != 1 or len(args[0]) > 2048:
            return Usage("`audit` takes one ARN, user name or access key id", "audit")
        return Audit(needle=args[0].strip("<>"))
    close = difflib.get_close_matches(verb, [*EVERYONE_VERBS, *APPROVER_VERBS], n=1)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    return Usage(f"unknown command `{_clip(verb)}`{hint}")


def _findings(args: list[str]) -> Command:
    if not args:
        return Findings()
    if len(args) > 1:
        return Usage("`findings` takes one filter: @person, account:ID or check:ID", "findings")
    arg = args[0]
    if m := MENTION.match(arg):
        return Findings(user=m.group(1))
    if m := ACCOUNT.match(arg):
        return Findings(account=m.group(1))
    if arg.lower().startswith("account:"):
        given = arg.split(":", 1)[1]
        digits = f" (`{_clip(given)}` has {len(given)})" if given.isdigit() else ""
        return Usage(f"an account id has 12 digits: `account:123456789012`{digits}", "findings")
    if m := CHECK.match(arg):
        if m.group(1) not in BY_ID:
            close = difflib.get_close_matches(m.group(1), list(BY_ID), n=1)
            hint = f" (did you mean `check:{close[0]}`?)" if close else ""
            return Usage(f"no check called `{_clip(m.group(1))}`{hint}", "findings")
        return Findings(check=m.group(1))
    if arg.startswith("@"):
        return Usage("mention the person with @ so that Slack links their name", "findings")
    return Usage(f"`findings` does not understand `{_clip(arg)}`", "findings")


def _clip(text: str, limit: int = 40) -> str:
    """Echo user input back safely: short, no backticks to break out of code spans, and
    Slack's control characters escaped (no `<!channel>` or `<http://…|link>` gets through)."""
    text = text.replace("`", "'")
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")
