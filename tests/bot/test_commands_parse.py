"""`/iam` text parsing: any text -> a Command, never an exception; and over real HTTP,
fuzzed text gets a private usage or normal reply from `steward serve`, never an error."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.slack import grammar as cmd
from checks.catalog import BY_ID
from sandbox.slack_fake import SlackFake
from tests.bot.test_serve_http import (
    ALICE,
    CAROL,
    NOBODY,
    Served,
    add_people,
    running_steward,
    seed,
)

#: Every command the registry can produce, and every verb it knows (with its aliases and
#: shouting), plus one it does not: the fuzzing walks the registry, so a new verb is fuzzed.
COMMAND_TYPES = (cmd.Usage, *cmd.BY_COMMAND)
VERBS = [w for v in cmd.VERBS for w in (v.name, v.name.upper(), v.name.title(), *v.aliases)] + ["nonsense"]

user_ids = st.from_regex(r"[UW][A-Z0-9]{2,12}", fullmatch=True)
argument = st.one_of(
    st.text(max_size=30),
    user_ids.map(lambda u: f"<@{u}>"),
    st.tuples(user_ids, st.text(max_size=12)).map(lambda t: f"<@{t[0]}|{t[1]}>"),
    st.from_regex(r"account:\d{0,14}", fullmatch=True),
    st.from_regex(r"\d{10,14}", fullmatch=True),
    st.sampled_from(sorted(BY_ID)).map(lambda c: f"check:{c}"),
    st.from_regex(r"check:[a-z0-9`-]{0,20}", fullmatch=True),
    st.from_regex(r"@[a-z.]{0,10}", fullmatch=True),
    st.just("`"),
    st.from_regex(r"arn:aws:iam::\d{12}:user/[a-z]{1,8}", fullmatch=True),
    st.from_regex(r"<arn:aws:iam::\d{12}:user/[a-z]{1,8}>", fullmatch=True),
    st.from_regex(r"AKIA[A-Z0-9]{16}", fullmatch=True),
)
whitespace = st.sampled_from([" ", "  ", "\t", "\n", "\u00a0", "\u2003", " \r\n "])


@st.composite
def command_texts(draw) -> str:
    """Mostly shaped like real commands (a verb and arguments), sometimes anything at all."""
    if draw(st.booleans()) and draw(st.booleans()):
        return draw(st.text(max_size=200))
    words = [
        draw(st.sampled_from(VERBS) | st.text(min_size=1, max_size=15)),
        *draw(st.lists(argument, max_size=4)),
    ]
    gaps = draw(st.lists(whitespace, min_size=len(words) + 1, max_size=len(words) + 1))
    return gaps[0] + "".join(w + g for w, g in zip(words, gaps[1:], strict=True))


# ---------------------------------------------------------------------------------------
# Pure parsing


@given(st.one_of(st.none(), st.text(), command_texts()))
@settings(max_examples=300, deadline=None)
def test_any_text_parses_to_a_command(text: str | None) -> None:
    parsed = cmd.parse(text)
    assert isinstance(parsed, COMMAND_TYPES)
    if isinstance(parsed, cmd.Usage):
        # Echoed user input is clipped and cannot break out of its code span.
        assert parsed.problem.count("`") % 2 == 0, parsed.problem
        assert len(parsed.problem) < 200
    if isinstance(parsed, cmd.Findings):
        assert sum(x is not None for x in (parsed.user, parsed.account, parsed.check)) <= 1
        if parsed.account is not None:
            assert re.fullmatch(r"\d{12}", parsed.account)
        if parsed.check is not None:
            assert parsed.check in BY_ID
        if parsed.user is not None:
            assert re.fullmatch(r"[UW][A-Z0-9]+", parsed.user)
    if isinstance(parsed, cmd.Scan) and parsed.account is not None:
        assert re.fullmatch(r"\d{12}", parsed.account)
    if isinstance(parsed, cmd.Audit):
        assert parsed.needle and not parsed.needle.startswith("<") and not parsed.needle.endswith(">")
        assert len(parsed.needle.split()) == 1
    if not isinstance(parsed, cmd.Usage):  # a valid command came from its verb's row
        assert (text or "").split() == [] or cmd.BY_WORD[(text or "").split()[0].lower()].command is type(parsed)


@given(st.lists(whitespace, min_size=1, max_size=3).map("".join))
def test_blank_text_is_help(text: str) -> None:
    assert cmd.parse(text) == cmd.Help()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("whoami", cmd.WhoAmI()),
        ("  WHOAMI ", cmd.WhoAmI()),
        ("findings", cmd.Findings()),
        ("findings account:123456789012", cmd.Findings(account="123456789012")),
        ("findings <@U0BOB00001|bob>", cmd.Findings(user="U0BOB00001")),
        ("findings <@W0BOB00001>", cmd.Findings(user="W0BOB00001")),
        ("findings check:stale-user", cmd.Findings(check="stale-user")),
        ("scan", cmd.Scan()),
        ("scan 123456789012", cmd.Scan(account="123456789012")),
        ("audit AKIAEXAMPLEKEY123456", cmd.Audit(needle="AKIAEXAMPLEKEY123456")),
        ("Audit <arn:aws:iam::123456789012:user/bob>", cmd.Audit(needle="arn:aws:iam::123456789012:user/bob")),
        ("digest", cmd.Digest()),
        ("DIGEST ", cmd.Digest()),
        ("help me", cmd.Help()),
    ],
)
def test_known_commands(text: str, expected) -> None:
    assert cmd.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "nonsense",
        "whoami please",
        "findings account:123",
        "findings account:1234567890123",
        "findings check:no-such-check",
        "findings @bob",
        "findings a b",
        "scan 12",
        "scan 123456789012 123456789012",
        "findings `; rm -rf /`",
        "audit",
        "audit alice bob",
        "audit " + "a" * 2049,
        "digest now",
    ],
)
def test_malformed_commands_are_usage(text: str) -> None:
    parsed = cmd.parse(text)
    assert isinstance(parsed, cmd.Usage)
    assert parsed.problem.count("`") % 2 == 0


# ---------------------------------------------------------------------------------------
# Through steward serve


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    workdir: Path = tmp_path_factory.mktemp("fuzz-serve")
    database_url = f"sqlite:///{workdir / 'steward.db'}"
    seed(database_url)
    with (
        SlackFake() as fake,
        running_steward(fake, database_url, workdir, threads=8, access_log=False) as served,
    ):
        add_people(fake)
        yield served


@given(text=command_texts(), approver=st.booleans(), owner=st.booleans())
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
def test_fuzzed_commands_over_http_get_a_private_reply(
    served: Served, text: str, approver: bool, owner: bool
) -> None:
    # Approvers' scans would really scan; everything else runs for real.
    assume(not (approver and isinstance(cmd.parse(text), cmd.Scan)))
    user = CAROL if approver else ALICE if owner else NOBODY
    response = served.command(text, user)
    assert response.status == 200, (text, response.status, response.text, served.log_tail())
    reply = response.json()
    assert reply.get("response_type") == "ephemeral"
    assert reply.get("text")
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "text",
    ["findings \x00", "\u202e whoami", "scan \ud7ff", "findings <@U0ALICE001|\u0000>", "x" * 3000],
)
def test_odd_characters_over_http(served: Served, text: str) -> None:
    response = served.command(text, NOBODY)
    assert response.status == 200, served.log_tail()
    assert response.json()["response_type"] == "ephemeral"
