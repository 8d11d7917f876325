"""The local Slack's test API: what tests and the demo call on the fake directly (not over
HTTP) to set the workspace up (users, channels, usergroups, tokens and scopes, trigger
ids, messages from people) and to look at what the bot did (calls, messages, threads,
DMs, ephemerals, views, files; `wait_for`, `reset`, `snapshot`).
"""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from sandbox.slack.common import Call, T


class Controls:
    """Set-up and inspection, thread-safe (each takes the fake's lock). Mixed into `SlackFake`."""

    # ------------------------------------------------------------------ set-up: tokens and scopes

    def add_app_token(self, token: str) -> None:
        """Accept another app-level token for ``apps.connections.open``."""
        with self._lock:
            self._app_tokens.add(token)

    def add_token(self, token: str, user_id: str, scopes: Iterable[str] | None = None) -> None:
        """Accept another token, acting as ``user_id`` (for example a user token), granted
        ``scopes`` (default: the app's)."""
        with self._lock:
            if user_id not in self._users:
                raise KeyError(f"unknown user {user_id}")
            self._tokens[token] = user_id
            if scopes is not None:
                self._token_scopes[token] = frozenset(scopes)

    def set_scopes(self, scopes: Iterable[str], token: str | None = None) -> None:
        """Grant ``token`` (default: the bot token) exactly ``scopes``, as a reinstall would."""
        with self._lock:
            if token is None:
                self.scopes = frozenset(scopes)
            else:
                self._token_scopes[token] = frozenset(scopes)

    def revoke_token(self, token: str | None = None) -> None:
        """Revoke a token (the app was uninstalled): its calls answer ``account_inactive``."""
        with self._lock:
            self._revoked.add(token or self.token)

    # -------------------------------------------- set-up: users, channels, usergroups

    def add_user(
        self,
        user_id: str | None = None,
        *,
        name: str,
        real_name: str | None = None,
        email: str | None = None,
        is_bot: bool = False,
        tz: str = "Europe/London",
        deleted: bool = False,
        is_admin: bool = False,
    ) -> str:
        """Add (or replace) a user; returns its id (``U...``, generated if not given)."""
        with self._changed:
            uid = user_id or self._new_id("U")
            self._add_user_locked(
                uid,
                name=name,
                real_name=real_name if real_name is not None else name,
                email=email,
                is_bot=is_bot,
                tz=tz,
                deleted=deleted,
                is_admin=is_admin,
            )
            self._notify()
            return uid

    def set_profile_field(self, user_id: str, label: str, value: str, *, field_type: str = "user") -> str:
        """Set a custom profile field (defined once for the workspace, e.g. "Manager" of
        type user, whose value is a user id); returns the field's id (``Xf...``)."""
        with self._changed:
            field = next((f for f in self._profile_fields.values() if f["label"] == label), None)
            if field is None:
                fid = self._new_id("Xf")
                field = {"id": fid, "ordering": len(self._profile_fields), "label": label, "hint": "",
                         "type": field_type, "possible_values": None, "options": None, "is_hidden": False}
                self._profile_fields[fid] = field
            profile = self._user(user_id)["profile"]
            profile.setdefault("fields", {})[field["id"]] = {"value": value, "alt": ""}
            self._notify()
            return field["id"]

    def set_user_deleted(self, user_id: str, deleted: bool = True) -> None:
        """Deactivate (or reactivate) a user, as an admin would."""
        with self._changed:
            self._user(user_id)["deleted"] = deleted
            self._notify()

    def add_channel(
        self,
        name: str,
        *,
        channel_id: str | None = None,
        members: Iterable[str] | None = None,
        is_private: bool = False,
        bot_member: bool = True,
        is_archived: bool = False,
    ) -> str:
        """Add a channel named ``name`` (without ``#``); returns its id (``C...``, or
        ``G...`` when private).

        ``members=None`` means every user is a member. The bot is a member unless
        ``bot_member=False`` (then posting there answers ``not_in_channel``). An archived
        channel answers ``is_archived`` to posts.
        """
        with self._changed:
            cid = channel_id or self._new_id("G" if is_private else "C")
            self._channels[cid] = {
                "id": cid,
                "name": name.lstrip("#"),
                "is_channel": not is_private,
                "is_group": is_private,
                "is_im": False,
                "is_mpim": False,
                "is_private": is_private,
                "is_archived": is_archived,
                "created": int(time.time()),
                "members": self._channel_members(members, bot_member),
            }
            self._messages.setdefault(cid, [])
            self._notify()
            return cid

    def archive_channel(self, channel: str, archived: bool = True) -> None:
        """Archive (or unarchive) a channel, as a member of the workspace would."""
        with self._changed:
            self._channels[self._known_channel(channel)]["is_archived"] = archived
            self._notify()

    def set_bot_member(self, channel: str, member: bool = True) -> None:
        """Invite the bot to a channel (``/invite @app``) or remove it."""
        with self._changed:
            ch = self._channels[self._known_channel(channel)]
            if ch["members"] is None:
                ch["members"] = set(self._users)
            (ch["members"].add if member else ch["members"].discard)(self.bot_user_id)
            self._notify()

    def add_usergroup(
        self,
        handle: str,
        members: Iterable[str] = (),
        *,
        usergroup_id: str | None = None,
        name: str | None = None,
        disabled: bool = False,
    ) -> str:
        """Add a usergroup (``@handle``); returns its id (``S...``)."""
        with self._changed:
            sid = usergroup_id or self._new_id("S")
            self._usergroups[sid] = {
                "id": sid,
                "team_id": self.team_id,
                "handle": handle.lstrip("@"),
                "name": name or handle.lstrip("@"),
                "is_usergroup": True,
                "date_delete": int(time.time()) if disabled else 0,
                "users": list(dict.fromkeys(members)),
            }
            self._notify()
            return sid

    def set_usergroup_members(self, usergroup_id: str, members: Iterable[str]) -> None:
        with self._changed:
            self._usergroups[usergroup_id]["users"] = list(dict.fromkeys(members))
            self._notify()

    def open_im(self, user_id: str) -> str:
        """The id of the bot's IM channel with ``user_id`` (created if needed)."""
        with self._changed:
            self._user(user_id)
            cid = self._open_im_locked(user_id)
            self._notify()
            return cid

    def trigger_id(self, user_id: str) -> str:
        """Issue a trigger id for ``user_id``, as Slack puts in an interaction payload.

        ``views.open``/``views.push`` with it attribute the modal to that user.
        """
        with self._lock:
            self._user(user_id)
            trigger = f"{next(self._ids)}.{int(time.time())}.{secrets.token_hex(16)}"
            self._triggers[trigger] = (user_id, self._clock())
            return trigger

    def post_as_user(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str:
        """Put a message from a human user in a channel (not recorded as a call)."""
        with self._changed:
            cid = self._known_channel(channel)
            self._user(user)
            msg = self._store_message(
                cid, user, text=text, blocks=blocks, attachments=None, thread_ts=thread_ts
            )
            self._notify()
            return str(msg["ts"])

    # ------------------------------------------------------------------ inspection

    def calls(self, method: str | None = None) -> list[Call]:
        """Recorded calls in order, optionally of one method."""
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def last_call(self, method: str | None = None) -> Call | None:
        found = self.calls(method)
        return found[-1] if found else None

    def messages(self, channel: str, *, replies: bool = True) -> list[dict[str, Any]]:
        """Messages of a channel (id, name, ``#name``, or a user id for the bot's IM with
        that user), oldest first.

        With ``replies=False`` only what ``conversations.history`` shows (top-level
        messages, thread parents and broadcast replies).
        """
        with self._lock:
            cid = self._resolve_channel(channel, open_im=False, missing_ok=True)
            if cid is None:
                return []
            msgs = self._messages.get(cid, [])
            if not replies:
                msgs = [m for m in msgs if self._is_history_visible(m)]
            return copy.deepcopy(msgs)

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The parent and the replies of a thread, oldest first."""
        with self._lock:
            cid = self._resolve_channel(channel, open_im=False, missing_ok=True)
            if cid is None:
                return []
            return copy.deepcopy(
                [
                    m
                    for m in self._messages.get(cid, [])
                    if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts
                ]
            )

    def dm(self, user_id: str) -> list[dict[str, Any]]:
        """Messages of the bot's IM with ``user_id`` (empty if never opened)."""
        with self._lock:
            cid = self._ims.get(user_id)
            return copy.deepcopy(self._messages.get(cid, [])) if cid else []

    def im_channel(self, user_id: str) -> str | None:
        """The IM channel id with ``user_id`` if one was opened."""
        with self._lock:
            return self._ims.get(user_id)

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self._lock:
            cid = self._resolve_channel(channel, open_im=False, missing_ok=True)
            found = self._find_message(cid, ts) if cid else None
            return copy.deepcopy(found)

    def ephemerals(self, user: str, channel: str | None = None) -> list[dict[str, Any]]:
        """Ephemeral messages shown to ``user`` (each has ``channel``, ``user``, ``ts``)."""
        with self._lock:
            cid = (
                self._resolve_channel(channel, open_im=False, missing_ok=True)
                if channel is not None
                else None
            )
            return copy.deepcopy(
                [
                    e
                    for e in self._ephemerals
                    if e["user"] == user and (channel is None or e["channel"] == cid)
                ]
            )

    def home(self, user_id: str) -> dict[str, Any] | None:
        """The Home tab view last published for ``user_id``."""
        with self._lock:
            vid = self._homes.get(user_id)
            return copy.deepcopy(self._views[vid]) if vid else None

    def modals(self, user_id: str | None) -> list[dict[str, Any]]:
        """The modal stack open for ``user_id``, bottom first (``None``: modals opened
        with a trigger id the fake did not issue)."""
        with self._lock:
            return copy.deepcopy([self._views[v] for v in self._modal_stacks.get(user_id, [])])

    def view(self, view_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._views.get(view_id)
            return copy.deepcopy(found)

    def files(self) -> list[dict[str, Any]]:
        """Uploaded files, each with its ``content`` bytes."""
        with self._lock:
            return [copy.deepcopy(f) for f in self._files.values()]

    def users(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._users.values()))

    def wait_for(
        self, predicate: Callable[[], T], timeout: float = 5.0, *, interval: float = 0.01
    ) -> T:
        """Wait until ``predicate()`` returns something truthy and return it.

        The predicate is called now and again after changes to the fake, at most once per
        ``interval`` seconds, outside the fake's lock (so it may use the query helpers or
        even call the fake over HTTP). Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = self._version
            started = time.monotonic()
            result = predicate()
            if result:
                return result
            with self._changed:
                while self._version == seen:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(f"condition not met within {timeout} s")
                    self._changed.wait(remaining)
            pause = started + interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    def reset(self, *, workspace: bool = False) -> None:
        """Forget recorded calls, messages, ephemerals, views, files, response URLs,
        faults and rate budgets. With ``workspace=True`` also users (except the bot),
        channels, IMs, usergroups and extra tokens."""
        with self._changed:
            if workspace:
                self._init_workspace()
            self._init_activity()
            for cid in self._channels:
                self._messages[cid] = []
            self._notify()

    def snapshot(self) -> dict[str, Any]:
        """A JSON-serialisable picture of the workspace and its activity."""
        with self._lock:
            channels = []
            for ch in self._channels.values():
                entry = {k: v for k, v in ch.items() if k != "members"}
                if ch["members"] is not None:
                    entry["members"] = sorted(ch["members"])
                entry["messages"] = copy.deepcopy(self._messages.get(ch["id"], []))
                channels.append(entry)
            return {
                "team": {"id": self.team_id, "domain": self.team_domain, "name": self.team_name},
                "bot": {"user_id": self.bot_user_id, "bot_id": self.bot_id, "app_id": self.app_id},
                "users": copy.deepcopy(list(self._users.values())),
                "usergroups": copy.deepcopy(list(self._usergroups.values())),
                "channels": channels,
                "ephemerals": copy.deepcopy(self._ephemerals),
                "homes": {u: copy.deepcopy(self._views[v]) for u, v in self._homes.items()},
                "modals": {
                    (u or ""): [copy.deepcopy(self._views[v]) for v in stack]
                    for u, stack in self._modal_stacks.items()
                },
                "files": [
                    {k: v for k, v in f.items() if k != "content"} for f in self._files.values()
                ],
                "calls": [
                    {"method": c.method, "time": c.time, "status": c.status, "ok": c.ok}
                    for c in self._calls
                ],
                "socket_mode": {
                    "connections": sum(1 for c in self._sockets if c.open),
                    "envelopes": copy.deepcopy(self._envelopes),
                    "acks": copy.deepcopy(self._acks),
                },
            }
