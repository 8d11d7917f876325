"""What Slack's Web API requires of each method IAM Steward (or the local fake) uses.

One table, kept as data, from Slack's method reference (docs.slack.dev/reference/methods/…):
the bot-token scopes a method needs, its rate-limit tier and the errors it documents. Two
readers: ``bot.slack.manifest`` derives the app's scopes from the methods the code calls, and the
local Slack (``sandbox.slack_fake``) refuses a call whose token lacks them, exactly as
Slack does (``missing_scope`` with ``needed`` and ``provided``). ``tests/test_slack_manifest.py``
fails when the code calls a method that is not in this table.

Methods that act on a conversation need the scope of that conversation's kind
(``conversations.history`` in a DM needs ``im:history``, in a public channel
``channels:history``): they carry ``by_kind`` instead of ``scopes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: Conversation kinds as Slack's scopes split them (public channel, private channel, DM, group DM).
KINDS = ("public", "private", "im", "mpim")

#: Calls per minute of Slack's rate-limit tiers (the documented minimum of each tier).
TIER_PER_MINUTE = {1: 1, 2: 20, 3: 50, 4: 100}

#: Errors every method can answer (Slack's "common errors").
COMMON_ERRORS = frozenset({
    "not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired",
    "no_permission", "missing_scope", "not_allowed_token_type", "ratelimited",
    "invalid_arguments", "internal_error", "fatal_error", "request_timeout", "service_unavailable",
})


@dataclass(frozen=True)
class MethodFacts:
    """One Web API method: what its bot token needs and how often it may be called.

    ``scopes``: any one of them is enough (Slack lists alternatives); empty means none.
    ``by_kind``: for conversation methods, the scope needed per conversation kind.
    ``tier``: 1–4, or ``None`` for Slack's "special" limits (see ``per_minute``).
    ``per_channel``: the limit is kept per channel (chat.postMessage: about 1 a second each).
    """

    scopes: tuple[str, ...] = ()
    by_kind: Mapping[str, str] = field(default_factory=dict)
    tier: int | None = 3
    per_minute: int | None = None
    per_channel: bool = False
    errors: frozenset[str] = frozenset()
    app_token: bool = False  # takes an app-level (xapp-) token instead of a bot token

    @property
    def limit_per_minute(self) -> int:
        return self.per_minute if self.per_minute is not None else TIER_PER_MINUTE[self.tier or 4]

    def needed(self, kind: str | None = None) -> tuple[str, ...]:
        """The scopes of which one is needed (for ``kind`` when the method is per conversation)."""
        if self.by_kind:
            return (self.by_kind[kind],) if kind in self.by_kind else tuple(self.by_kind.values())
        return self.scopes


def _kinds(read: str) -> dict[str, str]:
    prefixes = {"public": "channels", "private": "groups", "im": "im", "mpim": "mpim"}
    return {kind: f"{prefixes[kind]}:{read}" for kind in KINDS}


def _errors(*names: str) -> frozenset[str]:
    return frozenset(names) | COMMON_ERRORS


_CHANNEL = ("channel_not_found", "not_in_channel", "is_archived")
_VIEW = ("invalid_arguments", "not_found", "hash_conflict", "duplicate_external_id", "view_too_large")

METHODS: dict[str, MethodFacts] = {
    "auth.test": MethodFacts(tier=None, per_minute=600, errors=_errors()),
    "apps.connections.open": MethodFacts(scopes=("connections:write",), tier=1, app_token=True,
                                         errors=_errors()),
    "chat.postMessage": MethodFacts(
        scopes=("chat:write",), tier=None, per_minute=60, per_channel=True,
        errors=_errors(*_CHANNEL, "msg_too_long", "no_text", "invalid_blocks", "invalid_blocks_format",
                       "invalid_metadata_format", "restricted_action", "too_many_attachments")),
    "chat.update": MethodFacts(scopes=("chat:write",), errors=_errors(
        *_CHANNEL, "message_not_found", "cant_update_message", "edit_window_closed", "msg_too_long",
        "no_text", "invalid_blocks", "invalid_blocks_format")),
    "chat.postEphemeral": MethodFacts(scopes=("chat:write",), tier=4, errors=_errors(
        *_CHANNEL, "user_not_in_channel", "user_not_found", "no_text", "invalid_blocks", "msg_too_long")),
    "chat.delete": MethodFacts(scopes=("chat:write",), errors=_errors(
        "channel_not_found", "message_not_found", "cant_delete_message")),
    "chat.getPermalink": MethodFacts(tier=None, per_minute=600, errors=_errors(
        "channel_not_found", "message_not_found")),
    "conversations.open": MethodFacts(
        by_kind={"public": "channels:manage", "private": "groups:write", "im": "im:write",
                 "mpim": "mpim:write"},
        errors=_errors("channel_not_found", "user_not_found", "user_disabled", "cannot_dm_bot",
                       "users_list_not_supplied", "too_many_users", "not_enough_users",
                       "method_not_supported_for_channel_type", "invalid_user_combination")),
    "conversations.history": MethodFacts(by_kind=_kinds("history"), errors=_errors(
        "channel_not_found", "not_in_channel", "invalid_cursor", "invalid_metadata_filter_keys")),
    "conversations.replies": MethodFacts(by_kind=_kinds("history"), errors=_errors(
        "channel_not_found", "thread_not_found", "invalid_cursor")),
    "conversations.info": MethodFacts(by_kind=_kinds("read"), errors=_errors("channel_not_found")),
    "users.info": MethodFacts(scopes=("users:read",), tier=4, errors=_errors("user_not_found", "user_not_visible")),
    "users.list": MethodFacts(scopes=("users:read",), tier=2, errors=_errors("invalid_cursor")),
    "users.lookupByEmail": MethodFacts(scopes=("users:read.email",), errors=_errors("users_not_found")),
    # A person's profile with the workspace's custom fields (values by field id), and those
    # fields' definitions (labels, types): an access review reads the "Manager" field.
    "users.profile.get": MethodFacts(scopes=("users.profile:read",), tier=4, errors=_errors("user_not_found")),
    "team.profile.get": MethodFacts(scopes=("users.profile:read",), errors=_errors()),
    "usergroups.users.list": MethodFacts(scopes=("usergroups:read",), tier=2, errors=_errors(
        "no_such_subteam", "plan_upgrade_required")),
    "views.open": MethodFacts(tier=4, errors=_errors(*_VIEW, "expired_trigger_id", "invalid_trigger_id")),
    "views.push": MethodFacts(tier=4, errors=_errors(*_VIEW, "expired_trigger_id", "invalid_trigger_id",
                                                     "push_limit_reached")),
    "views.update": MethodFacts(tier=4, errors=_errors(*_VIEW)),
    "views.publish": MethodFacts(tier=4, errors=_errors(*_VIEW, "user_not_found")),
    "files.getUploadURLExternal": MethodFacts(scopes=("files:write",), tier=4, errors=_errors()),
    "files.completeUploadExternal": MethodFacts(scopes=("files:write",), tier=4, errors=_errors(
        "channel_not_found", "not_in_channel", "is_archived", "file_not_found")),
    "files.upload": MethodFacts(scopes=("files:write",), tier=2, errors=_errors("method_deprecated")),
}


def scopes_for(methods: Iterable[str], kinds: Iterable[str] = KINDS) -> set[str]:
    """The bot scopes a set of methods needs, for conversations of ``kinds``.

    Methods with alternatives (``scopes``) contribute their first, the one Slack names first.
    App-token methods need an app-level token, not a bot scope, and contribute nothing.
    """
    wanted = tuple(kinds)
    needed: set[str] = set()
    for name in methods:
        facts = METHODS[name]
        if facts.app_token:
            continue
        if facts.by_kind:
            needed.update(facts.by_kind[k] for k in wanted)
        elif facts.scopes:
            needed.add(facts.scopes[0])
    return needed
