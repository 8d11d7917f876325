"""The finding state machine as a pure transition table (docs/architecture.md §4).

open -> notified -> (snoozed | excepted | approved -> remediating -> remediated);
resolved when a successful scan no longer sees it; reopened when it comes back;
failed (with the error kept) when a remediation fails; rerouted (back to open) when its
owner changes or a decision runs out. This module is the only writer of `Finding.state`:
services compute every new state with `next_state`.
"""

from __future__ import annotations

import enum


class State(enum.StrEnum):
    OPEN = "open"
    NOTIFIED = "notified"
    SNOOZED = "snoozed"
    EXCEPTED = "excepted"
    APPROVED = "approved"
    REMEDIATING = "remediating"
    REMEDIATED = "remediated"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    FAILED = "failed"


class Event(enum.StrEnum):
    NOT_SEEN = "not_seen"  # a successful scan of the account no longer reports it
    SEEN = "seen"  # a scan reports it
    NOTIFY = "notify"
    SNOOZE = "snooze"
    EXCEPT = "except"
    WAKE = "wake"  # a snooze or an exception ran out
    APPROVE = "approve"
    START = "start"  # remediation intent written
    SUCCEED = "succeed"
    FAIL = "fail"
    UNDO = "undo"
    REROUTE = "reroute"  # its owner changed (assigned, "Not mine") or a decision ran out: route it again


class InvalidTransition(ValueError):
    def __init__(self, state: State, event: Event):
        super().__init__(f"a finding that is {state} cannot take '{event}'")
        self.state, self.event = state, event


S, E = State, Event
_LIVE = (S.OPEN, S.NOTIFIED, S.SNOOZED, S.EXCEPTED, S.APPROVED, S.REOPENED, S.FAILED)

TRANSITIONS: dict[tuple[State, Event], State] = {
    **{(s, E.NOT_SEEN): S.RESOLVED for s in (*_LIVE, S.REMEDIATED)},
    # A remediation in flight owns the finding; its own completion (or the crash
    # reconciliation) moves it on, not a scan.
    (S.REMEDIATING, E.NOT_SEEN): S.REMEDIATING,
    # Seen again while live: nothing changes; seen after it went away: reopened.
    **{(s, E.SEEN): s for s in (*_LIVE, S.REMEDIATING)},
    (S.RESOLVED, E.SEEN): S.REOPENED,
    (S.REMEDIATED, E.SEEN): S.REOPENED,
    **{(s, E.NOTIFY): S.NOTIFIED for s in (S.OPEN, S.REOPENED, S.NOTIFIED)},
    **{(s, E.SNOOZE): S.SNOOZED for s in (S.OPEN, S.NOTIFIED, S.REOPENED, S.FAILED)},
    **{(s, E.EXCEPT): S.EXCEPTED for s in (S.OPEN, S.NOTIFIED, S.REOPENED, S.FAILED)},
    (S.SNOOZED, E.WAKE): S.OPEN,
    (S.EXCEPTED, E.WAKE): S.OPEN,
    **{(s, E.APPROVE): S.APPROVED for s in (S.OPEN, S.NOTIFIED, S.REOPENED, S.FAILED)},
    **{(s, E.START): S.REMEDIATING for s in (S.OPEN, S.NOTIFIED, S.REOPENED, S.APPROVED, S.FAILED)},
    (S.REMEDIATING, E.SUCCEED): S.REMEDIATED,
    (S.REMEDIATING, E.FAIL): S.FAILED,
    # Approved, then interrupted before it started (settled from its lease): nothing ran.
    (S.APPROVED, E.FAIL): S.FAILED,
    (S.REMEDIATED, E.UNDO): S.OPEN,
    # Routed again (to a new owner, or to triage): back among the findings a cycle sends.
    **{(s, E.REROUTE): S.OPEN for s in (S.OPEN, S.NOTIFIED, S.FAILED)},
    (S.REOPENED, E.REROUTE): S.REOPENED,
}

# States in which a finding still needs somebody's attention.
OPEN_STATES = frozenset({S.OPEN, S.NOTIFIED, S.REOPENED, S.APPROVED, S.REMEDIATING, S.FAILED})
# States counted as "not resolved" (everything a scan may still be tracking).
UNRESOLVED_STATES = frozenset(set(State) - {S.RESOLVED})
# States in which the owner can still decide (snooze, keep, remediate): the buttons work.
ACTIONABLE_STATES = frozenset(state for (state, event) in TRANSITIONS if event is E.SNOOZE)
# States in which a finding is still the scans' to track and its owner's to answer for
# (snoozed and excepted included): "live".
LIVE_STATES = frozenset(_LIVE)
# States of a finding waiting to be sent to its owner (new, or back after it went away).
TO_NOTIFY_STATES = frozenset({S.OPEN, S.REOPENED})
# States shown without a badge in finding lists (the usual ones: nothing to point out).
UNREMARKABLE_STATES = frozenset({S.OPEN, S.NOTIFIED})


def next_state(state: State | str, event: Event | str) -> State:
    state, event = State(state), Event(event)
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(state, event) from None
