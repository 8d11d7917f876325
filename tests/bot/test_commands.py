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
        ("findings account:123", "does not understand"),
        ("findings check:nope", "no check called"),
        ("findings @alice", "mention the person"),
        ("findings a b", "one filter"),
        ("scan 12", "12-digit"),
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
