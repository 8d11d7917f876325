"""Knowledge typed once: the severity order (checks.model), the finding state sets
(bot.core.lifecycle), the snooze lengths (bot.core.decisions), the STS account check
(checks.aws_calls.caller_identity) and the SQS queue URL form (bot.core.queue_url). Read from the source text, so a copy cannot hide."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Copies left in files being rewritten elsewhere (issue #13): each names where it goes.
PENDING: dict[str, set[str]] = {}  # file -> copies tolerated while a move is under way (none now)

PATTERNS = {
    # checks.model.Severity lists the members, one per line: a tuple of names is a copy.
    "severity order": (re.compile(r"""["']critical["']\s*,\s*["']high["']"""), set()),
    "state set": (re.compile(r"""\{\s*["']open["']\s*,|\[\s*["']open["']\s*,|\(\s*["']open["']\s*,"""),
                  set()),  # bot.core.lifecycle names its sets with the State enum
    "snooze days": (re.compile(r"\(\s*7\s*,\s*30\s*\)"), {"bot/core/decisions.py"}),
    "sts": (re.compile(r"get_caller_identity\("), {"checks/aws_calls.py"}),
    "account check": (re.compile(r"belong to account"), {"checks/aws_calls.py"}),
    # The form of STEWARD_ACTIVITY_QUEUE_URL: `steward events` and `steward doctor` say the same line.
    "queue URL form": (re.compile(r"sqs\.REGION\.amazonaws|\\d\{12\}/\[\\w"), {"bot/core/queue_url.py"}),
}


def sources():
    for package in ("bot", "checks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text()


def test_each_piece_of_knowledge_has_one_home():
    found: dict[str, set[str]] = {name: set() for name in PATTERNS}
    for rel, text in sources():
        for name, (pattern, _home) in PATTERNS.items():
            if pattern.search(text):
                found[name].add(rel)
    for name, (_pattern, home) in PATTERNS.items():
        allowed = home | {f for f, names in PENDING.items() if name in names}
        assert found[name] <= allowed, f"{name} typed again in {sorted(found[name] - allowed)}"
        assert home <= found[name], f"{name} no longer in {home}: update this test"


def test_severity_order_is_the_enum_order():
    from bot.core.digest_model import SEVERITIES
    from bot.slack import charts
    from checks.model import SEVERITY_ORDER, Severity, severity_rank

    assert tuple(s.value for s in sorted(Severity, key=lambda s: s.rank)) == SEVERITY_ORDER
    assert SEVERITIES == SEVERITY_ORDER and charts.SEVERITIES == SEVERITY_ORDER
    assert [severity_rank(s) for s in SEVERITY_ORDER] == list(range(len(SEVERITY_ORDER)))
    assert severity_rank("unheard-of") == len(SEVERITY_ORDER)
