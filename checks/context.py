"""What a rule may know besides the snapshot: the time, the thresholds, who is internal.

Rules never read the clock or settings; the caller builds a `CheckContext` once per scan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

# Tag keys that override a threshold for one principal, e.g. `steward:key-max-age-days=180`.
TAG_PREFIX = "steward:"


@dataclass(frozen=True)
class Thresholds:
    key_max_age_days: int = 90
    unused_days: int = 45
    stale_user_days: int = 90
    never_used_grace_days: int = 7
    root_recent_days: int = 30
    unused_role_days: int = 90
    password_min_length: int = 14
    password_reuse_prevention: int = 24

    @classmethod
    def tag_keys(cls) -> dict[str, str]:
        """`steward:key-max-age-days` -> `key_max_age_days`, for every threshold."""
        return {
            TAG_PREFIX + f.name.replace("_", "-"): f.name for f in dataclasses.fields(cls)
        }

    def for_tags(self, tags: Mapping[str, str]) -> Thresholds:
        """These thresholds with the principal's `steward:*` tag overrides applied.

        A tag whose value is not a non-negative whole number is ignored (the scan should
        not fail because somebody typed `steward:unused-days=soon`).
        """
        overrides: dict[str, int] = {}
        for tag, attr in self.tag_keys().items():
            value = tags.get(tag)
            if value is not None and value.strip().isdigit():
                overrides[attr] = int(value.strip())
        return dataclasses.replace(self, **overrides) if overrides else self


@dataclass(frozen=True)
class CheckContext:
    now: datetime
    thresholds: Thresholds = field(default_factory=Thresholds)
    # Accounts Steward scans itself: trusting them is not "external".
    internal_accounts: frozenset[str] = frozenset()
    owner_tags: tuple[str, ...] = ("owner", "Owner", "email", "contact")

    def days_since(self, moment: datetime | None) -> float | None:
        if moment is None:
            return None
        return (self.now - moment) / timedelta(days=1)
