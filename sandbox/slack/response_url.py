"""The local Slack's response URLs (`POST /hooks/response/<id>`), with Slack's rules:
ephemeral by default, `replace_original` / `delete_original`, 5 uses within 30 minutes.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from sandbox.slack.common import (
    RESPONSE_URL_MAX_USES,
    RESPONSE_URL_METHOD,
    RESPONSE_URL_TTL_SECONDS,
    Hook,
    Reply,
    SlackError,
    as_bool,
)


class ResponseUrls:
    """Issuing response URLs and answering posts to them. Mixed into `SlackFake`."""

    def response_url(
        self,
        channel: str,
        user: str,
        message_ts: str | None = None,
        *,
        replace_original_by_default: bool | None = None,
    ) -> str:
        """A response URL on the fake for an interaction by ``user`` in ``channel``.

        Without ``message_ts`` it behaves like a slash command's URL: posts are new
        messages (ephemeral unless ``response_type`` is ``in_channel``) and
        ``replace_original`` replaces the previous post made through the URL.
        With ``message_ts`` (a channel message or an ephemeral message) it behaves like an
        interactive message's URL: that message is the original, and a post without
        ``replace_original`` replaces it unless ``replace_original`` is false (Slack's
        behaviour for ``block_actions``; override with ``replace_original_by_default``).
        """
        with self._lock:
            channel_id = self._known_channel(channel)
            hook = Hook(
                id=secrets.token_urlsafe(18),
                channel=channel_id,
                user=user,
                original_ts=message_ts,
                replace_by_default=(
                    message_ts is not None
                    if replace_original_by_default is None
                    else replace_original_by_default
                ),
                created=self._clock(),
            )
            self._hooks[hook.id] = hook
        return f"{self.root_url}hooks/response/{hook.id}"

    def handle_response_url(self, hook_id: str, raw: bytes) -> tuple[int, str]:
        """Answer a POST to a response URL: ``(status, text)`` like Slack (``ok``)."""
        with self._changed:
            try:
                payload = json.loads(raw.decode("utf-8") or "null")
            except (UnicodeDecodeError, ValueError):
                payload = None
            params = payload if isinstance(payload, dict) else {"_raw": raw.decode("latin-1")}
            fault = self._take_fault(RESPONSE_URL_METHOD)
            if fault is not None:
                reply = Reply(fault.status, fault.error, {})
                if fault.retry_after is not None:
                    reply.headers["Retry-After"] = str(fault.retry_after)
            else:
                status, text = self._response_url_post(hook_id, payload)
                reply = Reply(status, text)
            self._record(RESPONSE_URL_METHOD, {**params, "_hook": hook_id}, reply, None, {})
            return reply.status, str(reply.body)

    def _response_url_post(self, hook_id: str, payload: Any) -> tuple[int, str]:
        hook = self._hooks.get(hook_id)
        if hook is None:
            return 404, "invalid_token"
        if self._clock() - hook.created > RESPONSE_URL_TTL_SECONDS:
            return 404, "expired_url"
        if hook.uses >= RESPONSE_URL_MAX_USES:
            return 404, "used_url"
        if not isinstance(payload, dict):
            return 400, "invalid_payload"
        hook.uses += 1
        try:
            blocks = self._blocks(payload)
        except SlackError as exc:
            return 400, exc.error
        text = self._text(payload)
        attachments = payload.get("attachments")

        original = self._find_message(hook.channel, hook.original_ts)
        original_eph = (
            self._find_ephemeral(hook.channel, hook.original_ts) if original is None else None
        )
        if as_bool(payload.get("delete_original")):
            if original is not None:
                self._delete_message(hook.channel, original)
            elif original_eph is not None:
                self._ephemerals.remove(original_eph)
            else:
                return 404, "message_not_found"
            return 200, "ok"

        if not text and not blocks and not attachments:
            return 400, "no_text"
        replace = payload.get("replace_original")
        replace = hook.replace_by_default if replace is None else as_bool(replace)
        if replace and (original is not None or original_eph is not None):
            target = original if original is not None else original_eph
            assert target is not None
            target["text"] = text or ""
            for key, value in (("blocks", blocks), ("attachments", attachments)):
                if value:
                    target[key] = value
                else:
                    target.pop(key, None)
            return 200, "ok"

        thread_ts = str(payload["thread_ts"]) if payload.get("thread_ts") else None
        if payload.get("response_type") == "in_channel":
            msg = self._store_message(
                hook.channel,
                self.bot_user_id,
                text=text,
                blocks=blocks,
                attachments=attachments,
                thread_ts=thread_ts,
            )
            new_ts = str(msg["ts"])
        else:
            new_ts = self._add_ephemeral(
                hook.channel,
                hook.user,
                self.bot_user_id,
                text,
                blocks,
                attachments,
                {"thread_ts": thread_ts} if thread_ts else {},
            )
        if hook.original_ts is None or (original is None and original_eph is None):
            # a slash command's later replace_original acts on its latest response
            hook.original_ts = new_ts
        return 200, "ok"
