"""Accuracy on BishopFox's iam-vulnerable must not get worse (`bench/escalation_accuracy.py`
prints the figures; `tests/checks/iam_vulnerable.py` says what counts as right).

Every case Steward judges right today must stay right: each escalation path still found
by its method (or its chain of roles), each harmless principal still quiet, each
administrator still flagged. The cases it judges wrong today are listed in `KNOWN_WRONG`
with the reason, as data: should one become right, its test fails and says to move it
out of the list (so the README's figures get updated too).
"""

from __future__ import annotations

import pytest

from checks import escalation_methods as catalogue
from tests.checks.iam_vulnerable import ADMIN, CHAIN, ESCALATION, HARMLESS, Measure, load, measure

# principal -> why Steward gets it wrong (one line each; keep the README's list in step).
KNOWN_WRONG: dict[str, str] = {
    "user/fp2-allow-and-deny-multiple-policies-user": (
        "admin-policy judges each document alone (CIS 1.16): fp2-allow-all is `*` on `*`, and the "
        "deny-all that cancels it is another policy (privilege-escalation-policy stays quiet)"
    ),
    "role/fp2-allow-and-deny-multiple-policies-role": (
        "admin-policy judges each document alone (CIS 1.16): fp2-allow-all is `*` on `*`, and the "
        "deny-all that cancels it is another policy (privilege-escalation-policy stays quiet)"
    ),
}

DATA = load()
CASES = [c["principal"] for c in DATA["cases"]]


@pytest.fixture(scope="module")
def measured() -> Measure:
    return measure(DATA)


@pytest.mark.parametrize("principal", CASES)
def test_case_is_judged_as_recorded(measured: Measure, principal: str) -> None:
    outcome = next(o for o in measured.outcomes if o.principal == principal)
    if principal in KNOWN_WRONG:
        assert not outcome.right, (
            f"{principal} is now judged right ({outcome.got}): remove it from KNOWN_WRONG "
            f"and update the figures in the README (python bench/escalation_accuracy.py)"
        )
    else:
        assert outcome.right, (
            f"accuracy regression on {principal}: expected {outcome.expected}"
            f"{' (' + ' | '.join(outcome.methods) + ')' if outcome.methods else ''}, got {outcome.got}"
        )


def test_known_wrong_names_cases() -> None:
    assert set(KNOWN_WRONG) <= set(CASES)


def test_fixture_is_consistent() -> None:
    """Every expected method is in the catalogue, every case is a declared principal, and
    the account has what iam-vulnerable has: its 31 paths plus the SRE and fn1-fn4 cases,
    and the 14 harmless principals."""
    declared = ({f"user/{u['name']}" for u in DATA["users"]}
                | {f"group/{g['name']}" for g in DATA["groups"]}
                | {f"role/{r['name']}" for r in DATA["roles"]})
    assert set(CASES) <= declared
    assert len(CASES) == len(set(CASES))
    for case in DATA["cases"]:
        assert case["expected"] in (ESCALATION, CHAIN, HARMLESS, ADMIN)
        for name in case.get("methods", ()):
            assert name in catalogue.BY_NAME, name
    path_modules = {c["module"] for c in DATA["cases"] if c["expected"] in (ESCALATION, CHAIN)}
    assert len(path_modules) == 31 + 1 + 4
    assert sum(c["expected"] == HARMLESS for c in DATA["cases"]) == 14
