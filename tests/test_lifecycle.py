"""The finding state machine: a pure table, walked."""

from __future__ import annotations

import pytest

from bot.core.lifecycle import TRANSITIONS, Event, InvalidTransition, State, next_state


def test_every_state_is_reachable_from_open():
    reached, frontier = {State.OPEN}, [State.OPEN]
    while frontier:
        state = frontier.pop()
        for (source, _event), target in TRANSITIONS.items():
            if source == state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(State)


def test_resolved_finding_that_comes_back_is_reopened():
    assert next_state("resolved", "seen") is State.REOPENED


def test_live_findings_resolve_when_not_seen():
    for state in (State.OPEN, State.NOTIFIED, State.SNOOZED, State.EXCEPTED, State.FAILED):
        assert next_state(state, Event.NOT_SEEN) is State.RESOLVED


def test_remediation_in_flight_is_not_resolved_by_a_scan():
    assert next_state(State.REMEDIATING, Event.NOT_SEEN) is State.REMEDIATING


def test_remediation_cannot_start_on_an_excepted_finding():
    with pytest.raises(InvalidTransition, match="excepted"):
        next_state(State.EXCEPTED, Event.START)


def test_remediated_can_be_undone():
    assert next_state(State.REMEDIATED, Event.UNDO) is State.OPEN


def test_a_rerouted_finding_goes_back_to_be_routed_but_work_in_flight_stays():
    assert next_state(State.NOTIFIED, Event.REROUTE) is State.OPEN
    assert next_state(State.FAILED, Event.REROUTE) is State.OPEN
    assert next_state(State.REOPENED, Event.REROUTE) is State.REOPENED
    for state in (State.REMEDIATING, State.REMEDIATED, State.RESOLVED):
        with pytest.raises(InvalidTransition):
            next_state(state, Event.REROUTE)


def test_only_the_lifecycle_table_decides_a_findings_state():
    """No module assigns a literal state: every change is `next_state(...)` (bot/core/lifecycle.py)."""
    import ast
    from pathlib import Path

    offenders = []
    for path in sorted((Path(__file__).resolve().parents[1] / "bot").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and any(
                    isinstance(t, ast.Attribute) and t.attr == "state" for t in node.targets):
                offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.keyword) and node.arg == "state" and isinstance(node.value, ast.Constant):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
