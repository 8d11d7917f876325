"""Which access key sits in a credential-report slot (pure: no boto3, no clock).

The credential report names no access key ids, only each slot's `last_rotated`, which is
the key's creation time truncated to whole seconds. `checks.collect.resolve_access_key_ids`
fetches `AccessKeyMeta` with one ListAccessKeys per user; `match_key_slot` pairs them.
Moto's API dates carry microseconds and no time zone, so both sides go through `utc()`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from checks.model import AccessKeySlot, utc


@dataclass(frozen=True)
class AccessKeyMeta:
    """One access key as ListAccessKeys describes it. `created` is normalised to aware UTC,
    whole seconds, whatever was passed in (naive datetimes are taken to be UTC)."""

    access_key_id: str
    status: str  # "Active" or "Inactive"
    created: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "created", utc(self.created))

    @property
    def active(self) -> bool:
        return self.status.lower() == "active"


def match_key_slot(slot: AccessKeySlot, metas: Iterable[AccessKeyMeta]) -> AccessKeyMeta | None:
    """The key in `slot`, or None when no key, or more than one, fits.

    A key fits when its creation time equals the slot's `last_rotated` (both in whole UTC
    seconds). Two keys created in the same second are told apart by status; if that still
    leaves two, the answer is None: naming the wrong key would send a remediation to it.
    """
    if slot.last_rotated is None:
        return None
    rotated = utc(slot.last_rotated)
    candidates = [m for m in metas if m.created == rotated]
    if len(candidates) > 1:
        candidates = [m for m in candidates if m.active == slot.active]
    return candidates[0] if len(candidates) == 1 else None
