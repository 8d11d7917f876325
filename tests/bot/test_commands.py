"""`/iam` text parsing (pure)."""

from __future__ import annotations

import pytest

from bot.slack import grammar as c


@pytest.mark.parametrize(
    ("text", "expected"),
    [
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
    ],
)
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
        ("`rm` -rf", "unknown command `'rm'`"),
    ],
)
def test_bad_commands_explain_themselves(text, problem):
    parsed = c.parse(text)
    assert isinstance(parsed, c.Usage)
    assert problem in parsed.problem


def test_echoed_input_is_clipped():
    parsed = c.parse("x" * 500)
    assert isinstance(parsed, c.Usage) and len(parsed.problem) < 80


@pytest.mark.parametrize(("text", "line"), [("findings account:999", "`/iam findings`"),
                                            ("whoami please", "`/iam whoami`"), ("scan 12", "`/iam scan"),
                                            ("audit", "`/iam audit"), ("digest now", "`/iam digest`")])
def test_a_usage_error_shows_only_its_own_usage_line(text, line):
    reply = c.parse(text).reply()
    _first, usage = reply.split("\n")
    assert usage == f"Usage: {c.USAGE_LINES[text.split()[0]]}" and line in usage
    assert reply.count("/iam") == usage.count("/iam")  # the other commands' lines are not repeated
