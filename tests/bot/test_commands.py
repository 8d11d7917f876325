"""`/iam` text parsing (pure), and the command registry walked: every verb has a usage
line, a parser case here and (tests/bot/test_serve_http.py) an answer over HTTP."""

from __future__ import annotations

import json
from datetime import date

import pytest

from bot.slack import grammar as c

VALID = [
        ("", c.Help()),
        ("  help ", c.Help()),
        ("whoami", c.WhoAmI()),
        ("WHOAMI", c.WhoAmI()),
        ("findings", c.Findings()),
        ("findings <@U0ABC123|alice>", c.Findings(user="U0ABC123")),
        ("findings <@W0ABC123>", c.Findings(user="W0ABC123")),
        ("findings account:123456789012", c.Findings(account="123456789012")),
        ("findings check:stale-user", c.Findings(check="stale-user")),
        ("scan", c.Scan()),
        ("scan 123456789012", c.Scan(account="123456789012")),
        ("audit AKIAEXAMPLEKEY123456", c.Audit(needle="AKIAEXAMPLEKEY123456")),
        ("digest", c.Digest()),
        ("audit <arn:aws:iam::1:user/bob>", c.Audit(needle="arn:aws:iam::1:user/bob")),
        ("keys", c.Keys()),
        (" KEYS ", c.Keys()),
        ("?", c.Help()),
        ("-h", c.Help()),
        ("--help", c.Help()),
        ("review", c.Review("status")),
        ("review status", c.Review("status")),
        ("review start", c.Review("start")),
        ("review start --account 123456789012 --account 210987654321 --due 2027-01-31 --scope users",
         c.Review("start", accounts=("123456789012", "210987654321"), due=date(2027, 1, 31),
                  scope="users")),
        ("review start \u2014scope roles", c.Review("start", scope="roles")),  # Slack's dash for --
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_valid_commands(text, expected):
    assert c.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("whoami now", "takes no arguments"),
        ("findings account:123", "an account id has 12 digits: `account:123456789012` (`123` has 3)"),
        ("findings account:999", "has 12 digits"),
        ("findings check:stale-usr", "did you mean `check:stale-user`?"),
        ("whoamii", "did you mean `whoami`?"),
        ("findings check:nope", "no check called"),
        ("findings @alice", "mention the person"),
        ("findings a b", "one filter"),
        ("scan 12", "an account id has 12 digits (`12` has 2)"),
        ("scan prod", "12-digit"),
        ("deploy", "unknown command `deploy`"),
        ("audit", "takes one ARN"),
        ("audit a b", "takes one ARN"),
        ("digest please", "`digest` takes no arguments"),
        ("keys AKIAEXAMPLE", "`keys` takes no arguments"),
        ("`rm` -rf", "unknown command `'rm'`"),
        ("review stop", "use `review start"),
        ("review start --scope everything", "`--scope` is users, roles or all"),
        ("review start --due soon", "is not a date"),
        ("review start --account 12", "an account id has 12 digits"),
        ("review start --account", "does not understand"),
    ],
)
def test_bad_commands_explain_themselves(text, problem):
    parsed = c.parse(text)
    assert isinstance(parsed, c.Usage)
    assert problem in parsed.problem


def test_echoed_input_is_clipped():
    parsed = c.parse("x" * 500)
    assert isinstance(parsed, c.Usage) and len(parsed.problem) < 80


# --- The registry, walked -------------------------------------------------------------------


@pytest.mark.parametrize("verb", c.VERBS, ids=lambda v: v.name)
def test_every_verb_has_a_usage_line(verb):
    assert verb.usage.startswith(f"`/iam {verb.name}")
    assert verb.usage in c.USAGE
    assert (verb.name in c.USAGE_HINT.split(" | ")) is verb.for_everyone


@pytest.mark.parametrize("verb", c.VERBS, ids=lambda v: v.name)
def test_every_verb_and_alias_has_a_parser_case(verb):
    cased = {text.split()[0].lower() for text, _ in VALID if text.strip()}
    assert {verb.name, *verb.aliases} <= cased, f"add a case for `/iam {verb.name}` to VALID"
    assert any(type(expected) is verb.command for _, expected in VALID)
    assert type(c.parse(verb.example)) is verb.command


@pytest.mark.parametrize("verb", c.VERBS, ids=lambda v: v.name)
def test_every_restricted_verb_says_what_was_refused(verb):
    assert bool(verb.refusal) is (verb.approver_only is not False)
    assert c.BY_COMMAND[verb.command] is verb


def test_words_are_unique():
    words = [w for v in c.VERBS for w in (v.name, *v.aliases)]
    assert len(words) == len(set(words)) and all(w == w.lower() for w in words)


def test_findings_of_others_are_for_approvers_only():
    verb = c.BY_COMMAND[c.Findings]
    assert not verb.restricted(c.parse("findings"))
    assert verb.restricted(c.parse("findings account:123456789012"))


@pytest.mark.parametrize(("text", "line"), [("findings account:999", "`/iam findings`"),
                                            ("whoami please", "`/iam whoami`"), ("scan 12", "`/iam scan"),
                                            ("audit", "`/iam audit"), ("digest now", "`/iam digest`")])
def test_a_usage_error_shows_only_its_own_usage_line(text, line):
    reply = c.parse(text).reply()
    _first, usage = reply.split("\n", 1)
    verb = c.BY_WORD[text.split()[0]]
    assert usage == "Usage: " + "\n".join(filter(None, [verb.usage, verb.approver_usage])) and line in usage
    assert reply.count("/iam") == usage.count("/iam")  # the other commands' lines are not repeated


def test_findings_replies_name_the_accounts():
    """`/iam findings` shows an account's alias (or Organizations name) beside its id."""
    from types import SimpleNamespace

    finding = SimpleNamespace(severity="high", check_id="stale-user", details={}, title="Stale IAM user bob",
                              resource="arn:aws:iam::111122223333:user/bob", account_id="111122223333",
                              state="notified", first_seen=None, id=1)
    asked: list[set[str]] = []

    def account_names(ids):
        asked.append(set(ids))
        return {"111122223333": "payments-prod"}

    steward = SimpleNamespace(findings_of=lambda user: [finding], account_names=account_names)
    verb = c.BY_COMMAND[c.Findings]
    reply = verb.handle(c.parse("findings"), c.Request(user="U0BOB00001", steward=steward, later=None))
    text = json.dumps(reply["blocks"])
    assert asked == [{"111122223333"}] and "payments-prod (111122223333)" in text
