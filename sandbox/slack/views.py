"""The local Slack's views: `views.open`, `views.push` (3 modals per stack), `views.update`
(by id or external id, `hash_conflict`) and `views.publish` (the Home tab), with Block Kit
limits per view type (`sandbox.block_limits`) and trigger ids (strict: 3 seconds).
"""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any

from sandbox import block_limits
from sandbox.slack.common import MAX_VIEW_STACK, TRIGGER_TTL_SECONDS, SlackError, missing_fields


class Views:
    """`views.*` and the modal stacks. Mixed into `SlackFake`."""

    def _view_param(self, params: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
        view = self._json_param(params, "view", "invalid_arguments")
        if view is None:
            raise missing_fields("view")
        if not isinstance(view, dict) or view.get("type") not in allowed:
            raise SlackError(
                "invalid_arguments",
                messages=[
                    f"[ERROR] view type must be one of {', '.join(allowed)} [json-pointer:/view/type]"
                ],
            )
        view = copy.deepcopy(view)
        self._well_formed(view.get("blocks", []))
        details = block_limits.view_problems(view)
        if details:
            raise SlackError("invalid_arguments", messages=[f"[ERROR] {d}" for d in details])
        view["blocks"] = self._fill_block_ids(view.get("blocks", []))
        return view

    def _make_view(
        self,
        spec: dict[str, Any],
        *,
        view_id: str | None = None,
        root_view_id: str | None = None,
        previous_view_id: str | None = None,
    ) -> dict[str, Any]:
        vid = view_id or self._new_id("V")
        view = {
            "id": vid,
            "team_id": self.team_id,
            "type": spec["type"],
            "blocks": spec.get("blocks", []),
            "private_metadata": spec.get("private_metadata", ""),
            "callback_id": spec.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "title": spec.get("title"),
            "close": spec.get("close"),
            "submit": spec.get("submit"),
            "clear_on_close": bool(spec.get("clear_on_close", False)),
            "notify_on_close": bool(spec.get("notify_on_close", False)),
            "external_id": spec.get("external_id", ""),
            "root_view_id": root_view_id or vid,
            "previous_view_id": previous_view_id,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        if spec["type"] == "home":
            view.pop("title")
            view.pop("close")
            view.pop("submit")
        external_id = view["external_id"]
        if external_id:
            for other in self._views.values():
                if other["external_id"] == external_id and other["id"] != vid:
                    raise SlackError("duplicate_external_id")
        self._views[vid] = view
        return view

    def _trigger_user(self, params: dict[str, Any]) -> str | None:
        trigger = params.get("trigger_id")
        if not trigger:
            raise missing_fields("trigger_id")
        issued = self._triggers.get(str(trigger))
        if issued is None:
            if self.strict_triggers:
                raise SlackError("invalid_trigger_id")
            return None
        user_id, when = issued
        if self.strict_triggers and self._clock() - when > TRIGGER_TTL_SECONDS:
            raise SlackError("expired_trigger_id")
        return user_id

    def _views_open(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        user = self._trigger_user(params)
        spec = self._view_param(params, ("modal",))
        view = self._make_view(spec)
        self._view_owner[view["id"]] = user
        self._modal_stacks[user] = [view["id"]]
        return {"view": copy.deepcopy(view)}

    def _views_push(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        user = self._trigger_user(params)
        spec = self._view_param(params, ("modal",))
        stack = self._modal_stacks.setdefault(user, [])
        if len(stack) >= MAX_VIEW_STACK:
            raise SlackError("push_limit_reached")
        previous = stack[-1] if stack else None
        view = self._make_view(
            spec,
            root_view_id=stack[0] if stack else None,
            previous_view_id=previous,
        )
        self._view_owner[view["id"]] = user
        stack.append(view["id"])
        return {"view": copy.deepcopy(view)}

    def _views_update(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        view_id = params.get("view_id")
        external_id = params.get("external_id")
        if not view_id and not external_id:
            raise missing_fields("view_id")
        current: dict[str, Any] | None = None
        if view_id:
            current = self._views.get(str(view_id))
        else:
            current = next(
                (v for v in self._views.values() if v["external_id"] == external_id), None
            )
        if current is None:
            raise SlackError("not_found")
        if params.get("hash") and str(params["hash"]) != current["hash"]:
            raise SlackError("hash_conflict")
        spec = self._view_param(params, ("modal", "home"))
        updated = self._make_view(
            spec,
            view_id=current["id"],
            root_view_id=current["root_view_id"],
            previous_view_id=current["previous_view_id"],
        )
        return {"view": copy.deepcopy(updated)}

    def _views_publish(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        user_id = params.get("user_id")
        if not user_id:
            raise missing_fields("user_id")
        user_id = str(user_id)
        if user_id not in self._users:
            raise SlackError("user_not_found")
        spec = self._view_param(params, ("home",))
        current_id = self._homes.get(user_id)
        if (
            current_id
            and params.get("hash")
            and str(params["hash"]) != self._views[current_id]["hash"]
        ):
            raise SlackError("hash_conflict")
        view = self._make_view(spec, view_id=current_id)
        self._homes[user_id] = view["id"]
        self._view_owner[view["id"]] = user_id
        return {"view": copy.deepcopy(view)}
