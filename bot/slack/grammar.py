"""The `/iam` command registry: one row per verb — its parser, who may use it, its usage
line, its refusal text and its handler (a service call and a block builder).

Everything else about the slash command is read from `VERBS`: the listener dispatches on
it (bot/slack/listeners/commands.py), the usage text and the manifest's usage hint are
generated from it (bot/slack/manifest.py), and the tests walk it
(tests/bot/test_commands.py). Adding a verb is one `Verb(...)` row here, one service
function (bot/services/steward.py) and one block builder (bot/slack/blocks/).

Parsing is pure: any text becomes a `Command`; anything unexpected is a `Usage` reply.
Slack sends mentions escaped (`<@U123|alice>`) when the manifest sets `should_escape`.
Handlers get the parsed command and a `Request` (the caller, the `Steward` whose
use cases they call, and `later` for slow work) and return the reply as ack keywords.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from bot.slack.blocks.audit import audit_blocks
from bot.slack.blocks.common import escape
from bot.slack.blocks.digest import digest_blocks, digest_fallback
from bot.slack.blocks.findings import findings_blocks
from bot.slack.blocks.keys import keys_blocks
from checks.catalog import BY_ID

MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
ACCOUNT = re.compile(r"^account:(\d{12})$")
CHECK = re.compile(r"^check:([a-z0-9-]+)$")

#: The slash command as registered in Slack (the manifest is generated from these).
SLASH_COMMAND = "/iam"
DESCRIPTION = "Your IAM identities and findings; security tools"


# --- Commands (what a text means) --------------------------------------------------------


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Usage:
    problem: str
    verb: str | None = None  # the command it is about, when known: its usage line is shown

    def reply(self) -> str:
        """The one thing wrong, then only the matching usage line (or the list of commands)."""
        verb = BY_WORD.get(self.verb or "")
        if verb is not None:
            lines = [verb.usage, verb.approver_usage] if verb.approver_usage else [verb.usage]
            return f"{self.problem}.\nUsage: " + "\n".join(lines)
        everyone = ", ".join(f"`{SLASH_COMMAND} {name}`" for name in EVERYONE_VERBS)
        approvers = ", ".join(f"`{name}`" for name in APPROVER_VERBS)
        return (f"{self.problem}. Commands: {everyone} (security approvers also {approvers}); "
                f"`{SLASH_COMMAND} help` says what each does.")


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
class Keys:
    pass


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
class Review:
    """`review status` (everyone) or `review start …` (security approvers)."""

    action: str  # status | start
    accounts: tuple[str, ...] = ()
    due: date | None = None
    scope: str = "all"


Command = Help | Usage | WhoAmI | Findings | Keys | Scan | Audit | Digest | Review
#: A reply as keyword arguments of the ack / response URL: `text`, and `blocks` as dicts.
Reply = dict[str, Any]


@dataclass(frozen=True)
class Request:
    """One `/iam` call as a handler sees it."""

    user: str
    steward: Any  # bot.services.steward.Steward: the use cases (bot.slack never imports services)
    #: `later(work, what, changed)`: run `work()` after the ack and send the text it returns
    #: privately through the response URL; if it fails, say we could not `what` (and `changed`).
    later: Callable[..., None]


@dataclass(frozen=True)
class Verb:
    """One `/iam` verb: everything the listener, the usage text, the manifest and the tests
    need to know about it."""

    name: str
    command: type  # the Command class its parser returns when the text is valid
    parse: Callable[[list[str]], Command]  # the words after the verb -> a Command
    handle: Callable[[Any, Request], Reply]  # (parsed command, request) -> the reply
    usage: str  # the usage line, e.g. "`/iam whoami` — …"
    #: Security approvers only: True, or a test on the parsed command (`findings @person`).
    approver_only: bool | Callable[[Any], bool] = False
    #: "Only security approvers can {refusal}." (the refusal names what was asked for)
    refusal: str = ""
    #: An extra usage line shown to approvers only (the approver-only forms of the verb).
    approver_usage: str = ""
    aliases: tuple[str, ...] = ()
    #: A valid text for this verb (the tests send it over HTTP).
    example: str = ""

    def restricted(self, parsed: Command) -> bool:
        only = self.approver_only
        return bool(only(parsed) if callable(only) else only)

    @property
    def for_everyone(self) -> bool:
        """Everyone can use the verb in some form (it is in the manifest's usage hint)."""
        return self.approver_only is not True


# --- Parsers -------------------------------------------------------------------------------


def no_arguments(command: type, verb: str) -> Callable[[list[str]], Command]:
    return lambda args: command() if not args else Usage(f"`{verb}` takes no arguments", verb)


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


def _scan(args: list[str]) -> Command:
    if not args:
        return Scan()
    if len(args) == 1 and re.fullmatch(r"\d{12}", args[0]):
        return Scan(account=args[0])
    if len(args) == 1 and args[0].isdigit():
        return Usage(f"an account id has 12 digits (`{_clip(args[0])}` has {len(args[0])})", "scan")
    return Usage("`scan` takes at most one 12-digit account id", "scan")


def _audit(args: list[str]) -> Command:
    if len(args) != 1 or len(args[0]) > 2048:
        return Usage("`audit` takes one ARN, user name or access key id", "audit")
    return Audit(needle=args[0].strip("<>"))


REVIEW_USAGE = "`review start [--account ID …] [--due YYYY-MM-DD] [--scope users|roles|all]` or `review status`"


def _review(args: list[str]) -> Command:
    # Slack clients may turn a typed `--` into a dash: accept both.
    args = ["--" + a.lstrip("—–") if a[:1] in "—–" else a for a in args]
    if not args or args == ["status"]:
        return Review("status")
    if not args or args[0] != "start":
        return Usage(f"use {REVIEW_USAGE}", "review")
    accounts: list[str] = []
    due, scope = None, "all"
    rest = args[1:]
    while rest:
        flag, value = rest[0], rest[1] if len(rest) > 1 else None
        if flag not in ("--account", "--due", "--scope") or value is None:
            return Usage(f"`review start` does not understand `{_clip(flag)}`", "review")
        if flag == "--account":
            if not re.fullmatch(r"\d{12}", value):
                return Usage(f"an account id has 12 digits (`{_clip(value)}`)", "review")
            accounts.append(value)
        elif flag == "--due":
            try:
                due = date.fromisoformat(value)
            except ValueError:
                return Usage(f"`{_clip(value)}` is not a date (YYYY-MM-DD)", "review")
        else:
            if value not in ("users", "roles", "all"):
                return Usage("`--scope` is users, roles or all", "review")
            scope = value
        rest = rest[2:]
    return Review("start", accounts=tuple(dict.fromkeys(accounts)), due=due, scope=scope)


# --- Handlers (a service call and a block builder) ------------------------------------------


def _dicts(blocks) -> list[dict]:
    return [b if isinstance(b, dict) else b.to_dict() for b in blocks]


def _help(parsed: Help, request: Request) -> Reply:
    return {"text": USAGE}


def _whoami(parsed: WhoAmI, request: Request) -> Reply:
    text, blocks = request.steward.whoami_reply(request.user)  # cached, rendered by the service
    return {"text": text, "blocks": blocks}


def _show_findings(parsed: Findings, request: Request) -> Reply:
    if parsed.about_others:
        findings, heading = request.steward.search_findings(parsed)
    else:
        findings, heading = request.steward.findings_of(request.user), "Your open findings"
    accounts = request.steward.account_names({f.account_id for f in findings}) if findings else {}
    return {"text": f"{heading}: {len(findings)}",
            "blocks": _dicts(findings_blocks(findings, heading=heading, accounts=accounts))}


def _keys(parsed: Keys, request: Request) -> Reply:
    keys = request.steward.keys_of(request.user)
    return {"text": f"Your access keys: {len(keys)}", "blocks": _dicts(keys_blocks(keys))}


def _start_scan(parsed: Scan, request: Request) -> Reply:
    target = f"account {parsed.account}" if parsed.account else "every configured account"
    request.later(lambda: request.steward.scan_now(request.user, parsed.account),
                  "finish the scan", "Accounts scanned before it stay saved.")
    return {"text": f"Scanning {target}… I'll reply here when it's done."}


def _audit_events(parsed: Audit, request: Request) -> Reply:
    events = request.steward.audit_events(parsed.needle)
    return {"text": f"Audit events about {escape(parsed.needle)}: {len(events)}",
            "blocks": _dicts(audit_blocks(parsed.needle, events))}


def _digest(parsed: Digest, request: Request) -> Reply:
    digest = request.steward.digest_preview()
    return {"text": digest_fallback(digest), "blocks": _dicts(digest_blocks(digest))}


def _review_reply(parsed: Review, request: Request) -> Reply:
    reviews = request.steward.reviews
    if parsed.action == "status":
        return {"text": reviews.status_text(request.user)}
    request.later(lambda: reviews.start_text(request.user, accounts=parsed.accounts, due=parsed.due,
                                             scope=parsed.scope),
                  "start the access review", "Nothing was started unless the security channel says so.")
    return {"text": "Starting the access review… I'll reply here when the reviewers have their messages."}


# --- The registry --------------------------------------------------------------------------

VERBS: tuple[Verb, ...] = (
    Verb("whoami", WhoAmI, no_arguments(WhoAmI, "whoami"), _whoami,
         usage="`/iam whoami` — your IAM users, keys, groups and policies across accounts, and your open findings",
         example="whoami"),
    Verb("findings", Findings, _findings, _show_findings,
         usage="`/iam findings` — your open findings",
         approver_only=lambda parsed: parsed.about_others,
         refusal="look at other people's findings",
         approver_usage="`/iam findings @person` · `/iam findings account:123456789012` · `/iam findings check:stale-user`",
         example="findings check:stale-user"),
    Verb("keys", Keys, no_arguments(Keys, "keys"), _keys,
         usage="`/iam keys` — your access keys across accounts: status, age, last use and open findings",
         example="keys"),
    Verb("help", Help, lambda args: Help(), _help,
         usage="`/iam help` — this text", aliases=("-h", "--help", "?"), example="help"),
    Verb("scan", Scan, _scan, _start_scan,
         usage="`/iam scan [123456789012]` — scan now (all accounts, or one); replies here when done",
         approver_only=True, refusal="scan accounts", example="scan"),
    Verb("audit", Audit, _audit, _audit_events,
         usage="`/iam audit <ARN | user name | access key id>` — recent audit events about it",
         approver_only=True, refusal="read the audit log", example="audit alice"),
    Verb("digest", Digest, no_arguments(Digest, "digest"), _digest,
         usage="`/iam digest` — preview this week's digest, privately",
         approver_only=True, refusal="preview the digest", example="digest"),
    Verb("review", Review, _review, _review_reply,
         usage="`/iam review status` — the access reviews: what waits for you (approvers: every campaign's progress)",
         approver_only=lambda parsed: parsed.action == "start", refusal="start an access review",
         approver_usage="`/iam review start [--account ID …] [--due YYYY-MM-DD] [--scope users|roles|all]` — "
                        "start an access review",
         example="review start --scope users"),
)

BY_WORD: dict[str, Verb] = {word: v for v in VERBS for word in (v.name, *v.aliases)}
BY_COMMAND: dict[type, Verb] = {v.command: v for v in VERBS}

#: Verbs everyone has, shown by Slack as the command's usage hint; approvers have more.
EVERYONE_VERBS = tuple(v.name for v in VERBS if v.for_everyone)
APPROVER_VERBS = tuple(v.name for v in VERBS if not v.for_everyone)
USAGE_HINT = " | ".join(EVERYONE_VERBS)

USAGE = "\n".join([
    f"*IAM Steward* — `{SLASH_COMMAND} <command>`",
    *(f"• {v.usage}" for v in VERBS if v.for_everyone),
    "Security approvers also have:",
    *(f"• {v.approver_usage}" for v in VERBS if v.approver_usage),
    *(f"• {v.usage}" for v in VERBS if not v.for_everyone),
])


def parse(text: str | None) -> Command:
    words = (text or "").split()
    if not words:
        return Help()
    word, args = words[0].lower(), words[1:]
    verb = BY_WORD.get(word)
    if verb is None:
        close = difflib.get_close_matches(word, [v.name for v in VERBS], n=1)
        hint = f" (did you mean `{close[0]}`?)" if close else ""
        return Usage(f"unknown command `{_clip(word)}`{hint}")
    return verb.parse(args)


def _clip(text: str, limit: int = 40) -> str:
    """Echo user input back safely: short, no backticks to break out of code spans, and
    Slack's control characters escaped (no `<!channel>` or `<http://…|link>` gets through)."""
    text = text.replace("`", "'")
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")
