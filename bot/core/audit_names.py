"""How audit events read today, whatever name they were written under (pure).

The audit log is hash-chained: a stored row is never rewritten, not even to rename its
action. Two owner decisions were once written under names that said something else:

* "I'll rotate it" as `decision.remediate` (with `payload.decision == "rotate"`) — it is
  a promise to rotate, checked by the next scans, not a remediation request;
* Acknowledge as `decision.keep` — it is an acknowledgement (account-level findings seen
  by security), not an exception ("Keep…" is an exception: `exception.granted`).

They are written as `decision.rotate_promise` and `decision.acknowledge` now.
`reads_as` gives every event its current name; `steward audit export` (a `reads_as`
field beside the stored `action`), `/iam audit` and the App Home read through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ROTATE_PROMISE = "decision.rotate_promise"
ACKNOWLEDGE = "decision.acknowledge"

#: Old names still found in stored rows, and the names they read as.
LEGACY_NAMES = {"decision.keep": ACKNOWLEDGE, "decision.remediate": ROTATE_PROMISE}


def reads_as(action: str, payload: Mapping[str, Any] | None) -> str:
    """The current name of an event stored as `action` with `payload`."""
    decision = (payload or {}).get("decision")
    if action == "decision.keep":  # only ever written for Acknowledge
        return ACKNOWLEDGE
    if action == "decision.remediate" and decision == "rotate":  # a real request names its action
        return ROTATE_PROMISE
    return action
