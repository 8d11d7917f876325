"""The local Slack's workspace state and the rules every method shares: users, channels and
IMs, membership and posting rights (`not_in_channel`, `is_archived`), message ids (`ts`),
threads, Block Kit checks against `sandbox.block_limits`, storing and deleting messages
and ephemerals. Call the `_locked` helpers and the others with the fake's lock held.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sandbox import block_limits
from sandbox.slack.common import (
    MAX_TEXT_CHARS,
    Budget,
    Call,
    Fault,
    Hook,
    SlackError,
    format_ts,
    now_ts_micros,
)


class Workspace:
    """The in-memory workspace (users, channels, messages, views, files...) and its shared
    helpers. Mixed into `SlackFake`."""

    # ------------------------------------------------------------------ the state

    def _init_workspace(self) -> None:
        self._tokens: dict[str, str] = {self.token: self.bot_user_id}
        self._granted: frozenset[str] = frozenset()  # the scopes of the call being answered
        self._token_scopes: dict[str, frozenset[str]] = {}  # tokens granted other scopes
        self._revoked: set[str] = set()  # tokens of an uninstalled app
        self._app_tokens: set[str] = {self.app_token}
        self._users: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, dict[str, Any]] = {}
        self._ims: dict[str, str] = {}  # user id -> IM channel id
        self._usergroups: dict[str, dict[str, Any]] = {}
        self._profile_fields: dict[str, dict[str, Any]] = {}  # custom profile field id -> definition
        self._add_user_locked(
            self.bot_user_id,
            name=self.bot_name,
            real_name=self.bot_name,
            email=None,
            is_bot=True,
            tz="UTC",
            deleted=False,
            is_admin=False,
        )

    def _init_activity(self) -> None:
        self._calls: list[Call] = []
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._ephemerals: list[dict[str, Any]] = []
        self._views: dict[str, dict[str, Any]] = {}
        self._view_owner: dict[str, str | None] = {}
        self._modal_stacks: dict[str | None, list[str]] = {}
        self._homes: dict[str, str] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self._hooks: dict[str, Hook] = {}
        self._triggers: dict[str, tuple[str, float]] = {}
        self._faults: dict[str, deque[Fault]] = {}
        self._budgets: dict[str, Budget] = {}
        self._tickets: dict[str, float] = {}  # unused Socket Mode tickets -> issued at
        self._envelopes: list[dict[str, Any]] = []  # pushed, in order
        self._acks: list[dict[str, Any]] = []  # received, in order
        self._socket_messages: list[Any] = []  # other text frames from clients

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}0{next(self._ids):08X}"

    def _notify(self) -> None:
        """Wake up wait_for(); call with the lock held."""
        self._version += 1
        self._changed.notify_all()

    def _add_user_locked(
        self,
        uid: str,
        *,
        name: str,
        real_name: str,
        email: str | None,
        is_bot: bool,
        tz: str,
        deleted: bool,
        is_admin: bool,
    ) -> None:
        try:
            offset = datetime.now(ZoneInfo(tz)).utcoffset()
            tz_offset = int(offset.total_seconds()) if offset is not None else 0
            tz_label = datetime.now(ZoneInfo(tz)).tzname() or tz
        except (ZoneInfoNotFoundError, ValueError):
            tz_offset, tz_label = 0, tz
        profile: dict[str, Any] = {
            "real_name": real_name,
            "real_name_normalized": real_name,
            "display_name": name,
            "display_name_normalized": name,
            "team": self.team_id,
        }
        if email:
            profile["email"] = email
        if is_bot and uid == self.bot_user_id:
            profile["bot_id"] = self.bot_id
            profile["api_app_id"] = self.app_id
        self._users[uid] = {
            "id": uid,
            "team_id": self.team_id,
            "name": name,
            "deleted": deleted,
            "real_name": real_name,
            "tz": tz,
            "tz_label": tz_label,
            "tz_offset": tz_offset,
            "is_admin": is_admin,
            "is_owner": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": int(time.time()),
            "profile": profile,
        }

    def _channel_members(self, members: Iterable[str] | None, bot_member: bool) -> set[str] | None:
        if members is None and bot_member:
            return None  # everyone, including users added later
        found = set(self._users if members is None else members)
        if bot_member:
            found.add(self.bot_user_id)
        else:
            found.discard(self.bot_user_id)
        return found

    def _open_im_locked(self, user_id: str) -> str:
        cid = self._ims.get(user_id)
        if cid is None:
            cid = self._new_id("D")
            self._ims[user_id] = cid
            self._channels[cid] = {
                "id": cid,
                "is_channel": False,
                "is_group": False,
                "is_im": True,
                "is_mpim": False,
                "is_private": True,
                "user": user_id,
                "created": int(time.time()),
                "members": {user_id, self.bot_user_id},
            }
            self._messages.setdefault(cid, [])
        return cid

    # ---------------------------------------- helpers the methods share (lock held)

    def _user(self, user_id: str) -> dict[str, Any]:
        user = self._users.get(user_id)
        if user is None:
            raise KeyError(f"unknown user {user_id}")
        return user

    def _resolve_channel(
        self, ref: str | None, *, open_im: bool = True, missing_ok: bool = False
    ) -> Any:
        """Channel id for a channel id, a ``#name``/name, or a user id (their IM)."""
        if ref:
            if ref in self._channels:
                return ref
            name = ref.lstrip("#")
            for cid, ch in self._channels.items():
                if ch.get("name") == name:
                    return cid
            if ref in self._users:
                if ref in self._ims:
                    return self._ims[ref]
                if open_im:
                    return self._open_im_locked(ref)
        if missing_ok:
            return None
        raise SlackError("channel_not_found")

    def _known_channel(self, ref: str) -> str:
        """Like _resolve_channel, for the Python API: unknown channels are a KeyError."""
        try:
            return str(self._resolve_channel(ref))
        except SlackError as exc:
            raise KeyError(f"unknown channel {ref!r}") from exc

    def _check_can_post(self, channel_id: str, actor: str) -> None:
        """Slack's posting rules: not into an archived channel, and only where the bot is a
        member unless it holds ``chat:write.public`` and the channel is public."""
        ch = self._channels[channel_id]
        if ch.get("is_archived"):
            raise SlackError("is_archived")
        if self._is_member(channel_id, actor):
            return
        public = ch["is_channel"] and not ch["is_private"]
        if not (public and "chat:write.public" in self._granted):
            raise SlackError("not_in_channel")

    def _is_member(self, channel_id: str, user_id: str) -> bool:
        members = self._channels[channel_id]["members"]
        return members is None or user_id in members

    def _next_ts(self) -> str:
        micros = max(now_ts_micros(), self._last_ts + 1)
        self._last_ts = micros
        return format_ts(micros)

    def _find_message(self, channel_id: str | None, ts: str | None) -> dict[str, Any] | None:
        if channel_id is None or not ts:
            return None
        for msg in self._messages.get(channel_id, []):
            if msg["ts"] == ts:
                return msg
        return None

    def _find_ephemeral(self, channel_id: str, ts: str | None) -> dict[str, Any] | None:
        for eph in self._ephemerals:
            if eph["channel"] == channel_id and eph["ts"] == ts:
                return eph
        return None

    @staticmethod
    def _is_history_visible(msg: dict[str, Any]) -> bool:
        thread_ts = msg.get("thread_ts")
        return (
            thread_ts is None or thread_ts == msg["ts"] or msg.get("subtype") == "thread_broadcast"
        )

    @staticmethod
    def _json_param(params: dict[str, Any], name: str, error: str) -> Any:
        value = params.get(name)
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                return json.loads(value)
            except ValueError as exc:
                raise SlackError(error) from exc
        return value

    def _blocks(self, params: dict[str, Any]) -> list[dict[str, Any]] | None:
        blocks = self._json_param(params, "blocks", "invalid_blocks_format")
        if blocks is None:
            return None
        self._well_formed(blocks)
        details = block_limits.problems(blocks, "message")
        if details:
            raise SlackError("invalid_blocks", errors=details, messages=[f"[ERROR] {d}" for d in details])
        return self._fill_block_ids(blocks)

    @staticmethod
    def _well_formed(blocks: Any) -> None:
        if not isinstance(blocks, list) or not all(
            isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks
        ):
            raise SlackError("invalid_blocks_format")

    @staticmethod
    def _fill_block_ids(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        filled = copy.deepcopy(blocks)
        for block in filled:
            block.setdefault("block_id", secrets.token_urlsafe(3))
        return filled

    @staticmethod
    def _text(params: dict[str, Any]) -> str | None:
        text = params.get("text")
        if text is None:
            return None
        text = str(text)
        return text[:MAX_TEXT_CHARS]

    def _content(
        self, params: dict[str, Any]
    ) -> tuple[str | None, list[dict[str, Any]] | None, list[Any] | None]:
        text = self._text(params)
        blocks = self._blocks(params)
        attachments = self._json_param(params, "attachments", "invalid_attachments")
        if attachments is not None and not isinstance(attachments, list):
            raise SlackError("invalid_attachments")
        return text, blocks, attachments

    def _bot_fields(self, user_id: str) -> dict[str, Any]:
        if user_id != self.bot_user_id:
            return {}
        return {
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": self.bot_name,
                "team_id": self.team_id,
                "deleted": False,
            },
        }

    def _store_message(
        self,
        channel_id: str,
        user_id: str,
        *,
        text: str | None,
        blocks: list[dict[str, Any]] | None,
        attachments: list[Any] | None,
        thread_ts: str | None,
        reply_broadcast: bool = False,
        metadata: Any = None,
        files: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        ts = self._next_ts()
        msg: dict[str, Any] = {
            "type": "message",
            "ts": ts,
            "user": user_id,
            "text": text or "",
            "team": self.team_id,
            **self._bot_fields(user_id),
        }
        if blocks is not None:
            msg["blocks"] = blocks
        if attachments is not None:
            msg["attachments"] = attachments
        if metadata is not None:
            msg["metadata"] = metadata
        if files:
            msg["files"] = files
            msg["upload"] = True
        if thread_ts:
            parent = self._find_message(channel_id, thread_ts)
            if parent is not None and parent.get("thread_ts") not in (None, parent["ts"]):
                thread_ts = str(parent["thread_ts"])  # a reply to a reply joins the thread
                parent = self._find_message(channel_id, thread_ts)
            msg["thread_ts"] = thread_ts
            if reply_broadcast:
                msg["subtype"] = "thread_broadcast"
            if parent is not None:
                msg["parent_user_id"] = parent.get("user")
                parent["thread_ts"] = parent["ts"]
                parent["reply_count"] = int(parent.get("reply_count", 0)) + 1
                reply_users = list(parent.get("reply_users", []))
                if user_id not in reply_users:
                    reply_users.append(user_id)
                parent["reply_users"] = reply_users
                parent["reply_users_count"] = len(reply_users)
                parent["latest_reply"] = ts
        self._messages.setdefault(channel_id, []).append(msg)
        return msg

    def _add_ephemeral(
        self,
        channel_id: str,
        user_id: str,
        author: str,
        text: str | None,
        blocks: list[dict[str, Any]] | None,
        attachments: list[Any] | None,
        params: dict[str, Any],
    ) -> str:
        ts = self._next_ts()
        eph: dict[str, Any] = {
            "type": "message",
            "subtype": "ephemeral",
            "channel": channel_id,
            "user": user_id,
            "author": author,
            "ts": ts,
            "text": text or "",
        }
        if blocks is not None:
            eph["blocks"] = blocks
        if attachments is not None:
            eph["attachments"] = attachments
        if params.get("thread_ts"):
            eph["thread_ts"] = str(params["thread_ts"])
        self._ephemerals.append(eph)
        return ts

    def _delete_message(self, channel_id: str, msg: dict[str, Any]) -> None:
        if msg.get("reply_count"):
            # Slack keeps a tombstone where a thread parent with replies was deleted.
            for key in ("blocks", "attachments", "files", "bot_profile", "metadata", "edited"):
                msg.pop(key, None)
            msg.update(subtype="tombstone", text="This message was deleted.", hidden=True)
            return
        self._messages[channel_id].remove(msg)
        thread_ts = msg.get("thread_ts")
        if thread_ts and thread_ts != msg["ts"]:
            parent = self._find_message(channel_id, str(thread_ts))
            if parent is not None and parent.get("reply_count"):
                parent["reply_count"] -= 1
                replies = [
                    m
                    for m in self._messages[channel_id]
                    if m.get("thread_ts") == thread_ts and m["ts"] != thread_ts
                ]
                parent["latest_reply"] = replies[-1]["ts"] if replies else parent["ts"]

    def _permalink(self, channel_id: str, msg: dict[str, Any]) -> str:
        link = (
            f"https://{self.team_domain}.slack.com/archives/{channel_id}/"
            f"p{str(msg['ts']).replace('.', '')}"
        )
        thread_ts = msg.get("thread_ts")
        if thread_ts and thread_ts != msg["ts"]:
            link += f"?thread_ts={thread_ts}&cid={channel_id}"
        return link

    def _public_user(self, user: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(user)

    def _channel_object(self, channel_id: str) -> dict[str, Any]:
        ch = self._channels[channel_id]
        obj = {k: v for k, v in ch.items() if k != "members"}
        if ch["is_im"]:
            obj["is_open"] = True
        return copy.deepcopy(obj)
