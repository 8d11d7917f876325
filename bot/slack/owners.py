"""Who is who in Slack: owner values (emails, user ids) <-> Slack users, and approvers.

Answers are cached with an expiry (Slack rate-limits users.* and usergroups.*; a DM
campaign asks about the same people again and again). Negative answers are cached for a
shorter time so a newly invited colleague is found soon. Owner *overrides* (a security
approver assigning a finding) live in the database and win over everything here; the
service layer applies them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from cachetools import LRUCache, TTLCache
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from checks.ownership import EMAIL, SLACK_USER_ID

log = logging.getLogger(__name__)

NOT_FOUND_ERRORS = {"users_not_found", "user_not_found", "no_such_subteam", "subteam_not_found"}


class OwnerDirectory:
    def __init__(
        self,
        client: WebClient,
        *,
        approvers: Iterable[str] = (),
        approver_usergroup: str | None = None,
        ttl_seconds: float = 3600,
        negative_ttl_seconds: float = 300,
        timer: Callable[[], float] | None = None,
    ):
        self.client = client
        self.static_approvers = frozenset(approvers)
        self.approver_usergroup = approver_usergroup
        kwargs = {"timer": timer} if timer else {}
        self._found = TTLCache(maxsize=50_000, ttl=ttl_seconds, **kwargs)
        self._missing = TTLCache(maxsize=50_000, ttl=negative_ttl_seconds, **kwargs)
        # The last answer for each key, kept past its expiry: when Slack fails or is slow,
        # an hour-old email beats no answer (a person's email rarely changes).
        self._last_known = LRUCache(maxsize=50_000)
        self._lock = threading.Lock()

    def _cached(self, key: tuple, fetch: Callable[[], object]):
        with self._lock:
            if key in self._found:
                return self._found[key]
            if key in self._missing:
                return None
        try:
            value = fetch()  # outside the lock: a slow Slack call must not block other lookups
        except Exception as exc:
            with self._lock:
                if key in self._last_known:
                    log.warning("Slack lookup failed (%s): using the last known answer", type(exc).__name__)
                    return self._last_known[key]
            raise
        with self._lock:
            if value is None:
                self._missing[key] = True
                self._last_known.pop(key, None)
            else:
                self._found[key] = value
                self._last_known[key] = value
        return value

    def email_of(self, user_id: str) -> str | None:
        """The Slack user's email (needs `users:read.email`), lower-cased."""

        def fetch():
            try:
                user = self.client.users_info(user=user_id)["user"]
            except SlackApiError as exc:
                if exc.response.get("error") in NOT_FOUND_ERRORS:
                    return None
                raise
            email = (user.get("profile") or {}).get("email")
            return email.lower() if email else None

        return self._cached(("email", user_id), fetch)

    def user_for(self, owner: str | None) -> str | None:
        """The Slack user id for an owner value: a user id as is, an email looked up."""
        if not owner:
            return None
        owner = owner.strip()
        if SLACK_USER_ID.match(owner):
            return owner
        if not EMAIL.match(owner):
            return None

        def fetch():
            try:
                return self.client.users_lookupByEmail(email=owner)["user"]["id"]
            except SlackApiError as exc:
                if exc.response.get("error") in NOT_FOUND_ERRORS:
                    return None
                raise

        return self._cached(("user", owner.lower()), fetch)

    def prime(self, owners: Iterable[str | None], *, threshold: int = 20, page_size: int = 500) -> int:
        """Resolve many emails at once: one `users.list` page per `page_size` people instead
        of one `users.lookupByEmail` (Tier 3, ~50 a minute) per owner. Used by a DM campaign
        before it resolves its owners; below `threshold` unknown emails it does nothing."""
        with self._lock:
            unknown = {
                o.strip().lower() for o in owners
                if o and EMAIL.match(o.strip())
                and ("user", o.strip().lower()) not in self._found
                and ("user", o.strip().lower()) not in self._missing
            }
        if len(unknown) < threshold:
            return 0
        found: dict[str, str] = {}
        cursor = None
        while True:
            page = self.client.users_list(limit=page_size, cursor=cursor) if cursor else \
                self.client.users_list(limit=page_size)
            for member in page.get("members", []):
                email = ((member.get("profile") or {}).get("email") or "").lower()
                if email and not member.get("deleted") and not member.get("is_bot"):
                    found[email] = member["id"]
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        with self._lock:
            for email in unknown:
                if email in found:
                    self._found[("user", email)] = found[email]
                else:
                    self._missing[("user", email)] = True
        return len(unknown)

    def owner_values(self, user_id: str) -> set[str]:
        """Every owner value that means this Slack user: the id and the email."""
        values = {user_id}
        email = self.email_of(user_id)
        if email:
            values.add(email)
        return values

    def approvers(self) -> frozenset[str]:
        members: frozenset[str] = frozenset()
        if self.approver_usergroup:
            group = self.approver_usergroup

            def fetch():
                try:
                    return frozenset(self.client.usergroups_users_list(usergroup=group)["users"])
                except SlackApiError as exc:
                    if exc.response.get("error") in NOT_FOUND_ERRORS:
                        log.warning("security usergroup %s not found", group)
                        return None
                    raise

            members = self._cached(("usergroup", group), fetch) or frozenset()
        return self.static_approvers | members

    def is_approver(self, user_id: str) -> bool:
        return user_id in self.static_approvers or user_id in self.approvers()
