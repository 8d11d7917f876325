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
