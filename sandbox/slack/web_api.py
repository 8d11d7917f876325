"""The local Slack's Web API methods for users and messages: `auth.test`, `users.*`,
`usergroups.users.list`, `conversations.*` and `chat.*`, with Slack's error names.
Views, files and Socket Mode have modules of their own.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from sandbox.slack.common import (
    SlackError,
    as_bool,
    decode_cursor,
    encode_cursor,
    missing_fields,
    ts_key,
)


class WebApi:
    """One `_method_name(params, actor)` per Web API method; the table is in `SlackFake`.
    Mixed into `SlackFake`."""

    # ------------------------------------------------------------------ auth, users

    def _auth_test(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        user = self._users[actor]
        body = {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": user["name"],
            "team_id": self.team_id,
            "user_id": actor,
            "is_enterprise_install": False,
        }
        if actor == self.bot_user_id:
            body["bot_id"] = self.bot_id
        return body

    def _users_info(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        uid = params.get("user")
        if not uid:
            raise missing_fields("user")
        user = self._users.get(str(uid))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": self._public_user(user)}

    def _users_profile_get(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        """Slack: the profile, custom fields under ``fields`` ({field id: {value, alt}})."""
        uid = params.get("user") or actor
        user = self._users.get(str(uid))
        if user is None:
            raise SlackError("user_not_found")
        return {"profile": copy.deepcopy(user["profile"])}

    def _team_profile_get(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        return {"profile": {"fields": [copy.deepcopy(f) for f in self._profile_fields.values()]}}

    def _users_lookup_by_email(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        address = params.get("email")
        if not address:
            raise missing_fields("email")
        wanted = str(address).strip().lower()
        for user in self._users.values():
            email = user["profile"].get("email")
            # Slack: a deactivated user is not returned (users_not_found).
            if email and email.lower() == wanted and not user["deleted"]:
                return {"user": self._public_user(user)}
        raise SlackError("users_not_found")

    def _users_list(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        limit = int(params.get("limit") or 0) or 200
        limit = max(1, min(limit, 1000))
        ids = list(self._users)
        start = 0
        cursor = params.get("cursor")
        if cursor:
            after = decode_cursor("user", str(cursor))
            if after not in ids:
                raise SlackError("invalid_cursor")
            start = ids.index(after)
        page = ids[start : start + limit]
        next_cursor = encode_cursor("user", ids[start + limit]) if start + limit < len(ids) else ""
        return {
            "members": [self._public_user(self._users[u]) for u in page],
            "cache_ts": int(time.time()),
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _usergroups_users_list(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        sid = params.get("usergroup")
        if not sid:
            raise missing_fields("usergroup")
        group = self._usergroups.get(str(sid))
        if group is None:
            raise SlackError("no_such_subteam")
        if group["date_delete"] and not as_bool(params.get("include_disabled")):
            raise SlackError("no_such_subteam")
        return {"users": list(group["users"])}

    # ------------------------------------------------------------------ conversations

    def _conversations_open(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        return_im = as_bool(params.get("return_im"))
        if params.get("channel"):
            cid = self._resolve_channel(str(params["channel"]), open_im=False)
            return {"channel": self._channel_object(cid) if return_im else {"id": cid}}
        users = params.get("users")
        if isinstance(users, list):
            ids = [str(u) for u in users]
        else:
            ids = [u.strip() for u in str(users or "").split(",") if u.strip()]
        if not ids:
            raise SlackError("users_list_not_supplied")
        for uid in ids:
            user = self._users.get(uid)
            if user is None:
                raise SlackError("user_not_found")
            if user["deleted"]:
                raise SlackError("user_disabled")
        if len(ids) > 8:
            raise SlackError("too_many_users")
        if len(ids) == 1:
            uid = ids[0]
            if self._users[uid]["is_bot"]:
                raise SlackError("cannot_dm_bot")
            already = uid in self._ims
            cid = self._open_im_locked(uid)
            body: dict[str, Any] = {
                "channel": self._channel_object(cid) if return_im else {"id": cid}
            }
            if already:
                body.update(no_op=True, already_open=True)
            return body
        members = {*ids, self.bot_user_id}
        for cid, ch in self._channels.items():
            if ch["is_mpim"] and ch["members"] == members:
                return {"channel": {"id": cid}, "no_op": True, "already_open": True}
        cid = self._new_id("G")
        self._channels[cid] = {
            "id": cid,
            "name": "mpdm-" + "--".join(self._users[u]["name"] for u in ids) + "-1",
            "is_channel": False,
            "is_group": False,
            "is_im": False,
            "is_mpim": True,
            "is_private": True,
            "created": int(time.time()),
            "members": members,
        }
        self._messages.setdefault(cid, [])
        return {"channel": {"id": cid}}

    def _conversations_info(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        if not params.get("channel"):
            raise missing_fields("channel")
        cid = self._resolve_channel(str(params["channel"]), open_im=False)
        ch = self._channels[cid]
        if ch["is_private"] and not self._is_member(cid, actor):
            raise SlackError("channel_not_found")  # Slack hides private channels from non-members
        return {"channel": {**self._channel_object(cid), "is_member": self._is_member(cid, actor)}}

    def _conversations_history(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        if not params.get("channel"):
            raise SlackError("channel_not_found")
        cid = self._resolve_channel(str(params["channel"]), open_im=False)
        if not self._is_member(cid, actor):
            raise SlackError("not_in_channel")  # a bot reads only where it is a member
        limit = max(1, min(int(params.get("limit") or 100), 999))
        inclusive = as_bool(params.get("inclusive"))
        latest = params.get("latest")
        oldest = params.get("oldest")
        msgs = [m for m in self._messages.get(cid, []) if self._is_history_visible(m)]

        def in_range(m: dict[str, Any]) -> bool:
            key = ts_key(m["ts"])
            if latest and (
                key > ts_key(str(latest)) or (key == ts_key(str(latest)) and not inclusive)
            ):
                return False
            return not (
                oldest
                and (key < ts_key(str(oldest)) or (key == ts_key(str(oldest)) and not inclusive))
            )

        msgs = [m for m in reversed(msgs) if in_range(m)]  # newest first
        start = 0
        if params.get("cursor"):
            start = int(decode_cursor("next_ts", str(params["cursor"])))
        page = msgs[start : start + limit]
        has_more = start + limit < len(msgs)
        return {
            "messages": copy.deepcopy(page),
            "has_more": has_more,
            "pin_count": 0,
            "response_metadata": {
                "next_cursor": encode_cursor("next_ts", start + limit) if has_more else ""
            },
        }

    def _conversations_replies(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        if not params.get("channel"):
            raise SlackError("channel_not_found")
        if not params.get("ts"):
            raise missing_fields("ts")
        cid = self._resolve_channel(str(params["channel"]), open_im=False)
        ts = str(params["ts"])
        anchor = self._find_message(cid, ts)
        if anchor is None:
            raise SlackError("thread_not_found")
        root = str(anchor.get("thread_ts") or anchor["ts"])
        thread = [m for m in self._messages[cid] if m["ts"] == root or m.get("thread_ts") == root]
        limit = max(1, min(int(params.get("limit") or 1000), 1000))
        start = 0
        if params.get("cursor"):
            start = int(decode_cursor("next_ts", str(params["cursor"])))
        page = thread[start : start + limit]
        has_more = start + limit < len(thread)
        return {
            "messages": copy.deepcopy(page),
            "has_more": has_more,
            "response_metadata": {
                "next_cursor": encode_cursor("next_ts", start + limit) if has_more else ""
            },
        }

    # ------------------------------------------------------------------ chat

    def _chat_post_message(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        if not params.get("channel"):
            raise SlackError("channel_not_found")
        cid = self._resolve_channel(str(params["channel"]))
        text, blocks, attachments = self._content(params)
        if not text and not blocks and not attachments:
            raise SlackError("no_text")
        self._check_can_post(cid, actor)
        metadata = self._json_param(params, "metadata", "invalid_metadata_format")
        msg = self._store_message(
            cid,
            actor,
            text=text,
            blocks=blocks,
            attachments=attachments,
            thread_ts=str(params["thread_ts"]) if params.get("thread_ts") else None,
            reply_broadcast=as_bool(params.get("reply_broadcast")),
            metadata=metadata,
        )
        return {"channel": cid, "ts": msg["ts"], "message": copy.deepcopy(msg)}

    def _own_message(self, params: dict[str, Any], actor: str, refusal: str) -> tuple[str, dict[str, Any]]:
        """The (channel id, message) that `channel` + `ts` name, if `actor` posted it."""
        if not params.get("channel"):
            raise SlackError("channel_not_found")
        if not params.get("ts"):
            raise missing_fields("ts")
        cid = self._resolve_channel(str(params["channel"]), open_im=False)
        msg = self._find_message(cid, str(params["ts"]))
        if msg is None:
            raise SlackError("message_not_found")
        if msg.get("user") != actor:
            raise SlackError(refusal)
        return cid, msg

    def _chat_update(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        cid, msg = self._own_message(params, actor, "cant_update_message")
        if self._channels[cid].get("is_archived"):
            raise SlackError("is_archived")
        text, blocks, attachments = self._content(params)
        if text is None and blocks is None and attachments is None:
            raise SlackError("no_text")
        if text is not None:
            msg["text"] = text
        if blocks is not None:
            if blocks:
                msg["blocks"] = blocks
            else:
                msg.pop("blocks", None)
        if attachments is not None:
            msg["attachments"] = attachments
        msg["edited"] = {"user": actor, "ts": self._next_ts()}
        return {
            "channel": cid,
            "ts": msg["ts"],
            "text": msg["text"],
            "message": copy.deepcopy(msg),
        }

    def _chat_post_ephemeral(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        if not params.get("channel"):
            raise SlackError("channel_not_found")
        if not params.get("user"):
            raise SlackError("user_not_found")
        user_id = str(params["user"])
        if user_id not in self._users:
            raise SlackError("user_not_found")
        cid = self._resolve_channel(str(params["channel"]))
        self._check_can_post(cid, actor)
        if not self._is_member(cid, user_id):
            raise SlackError("user_not_in_channel")
        text, blocks, attachments = self._content(params)
        if not text and not blocks and not attachments:
            raise SlackError("no_text")
        ts = self._add_ephemeral(cid, user_id, actor, text, blocks, attachments, params)
        return {"message_ts": ts}

    def _chat_delete(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        cid, msg = self._own_message(params, actor, "cant_delete_message")
        self._delete_message(cid, msg)
        return {"channel": cid, "ts": msg["ts"]}

    def _chat_get_permalink(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        if not params.get("channel"):
            raise SlackError("channel_not_found")
        if not params.get("message_ts"):
            raise missing_fields("message_ts")
        cid = self._resolve_channel(str(params["channel"]), open_im=False)
        msg = self._find_message(cid, str(params["message_ts"]))
        if msg is None:
            raise SlackError("message_not_found")
        return {"channel": cid, "permalink": self._permalink(cid, msg)}
