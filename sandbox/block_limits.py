"""Slack's documented Block Kit limits, checked the way Slack checks them.

``problems(blocks, surface)`` returns Slack's own error lines for everything over a limit
(``"must be less than 3001 characters [json-pointer:/blocks/0/text/text]"``) and for ids
that repeat: an ``action_id`` twice within one block, a ``block_id`` twice within one message
or view (Slack's "should be unique": Slack refuses the whole payload). The local Slack
answers ``invalid_blocks`` (messages) or ``invalid_arguments`` (views) with them, so a
payload that Slack would refuse fails in the tests too. Figures from Slack's Block Kit
reference (blocks, block elements, composition objects, surfaces).
"""

from __future__ import annotations

from typing import Any

#: Blocks per surface.
MAX_BLOCKS = {"message": 50, "modal": 100, "home": 100}

#: Characters per text field, keyed by (block or element type, field).
TEXT_LIMITS: dict[tuple[str, str], int] = {
    ("section", "text"): 3000,
    ("section", "field"): 2000,
    ("header", "text"): 150,
    ("button", "text"): 75,
    ("button", "value"): 2000,
    ("button", "url"): 3000,
    ("option", "text"): 75,
    ("option", "value"): 150,
    ("input", "label"): 2000,
    ("input", "hint"): 2000,
    ("image", "alt_text"): 2000,
    ("image", "image_url"): 3000,
    ("select", "placeholder"): 150,
    ("modal", "title"): 24,
    ("modal", "submit"): 24,
    ("modal", "close"): 24,
    ("view", "private_metadata"): 3000,
    ("view", "callback_id"): 255,
}
ID_MAX = 255  # action_id and block_id
MAX_FIELDS = 10  # section fields
MAX_OPTIONS = 100  # select options and option groups
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_OVERFLOW_OPTIONS = 5

_SELECTS = frozenset({"static_select", "multi_static_select"})


def _text_of(obj: Any) -> str | None:
    if isinstance(obj, dict):
        value = obj.get("text")
        return value if isinstance(value, str) else None
    return obj if isinstance(obj, str) else None


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def too_long(self, value: Any, limit: int, pointer: str) -> None:
        if isinstance(value, str) and len(value) > limit:
            self.errors.append(f"must be less than {limit + 1} characters [json-pointer:{pointer}]")

    def too_many(self, items: Any, limit: int, pointer: str) -> None:
        if isinstance(items, list) and len(items) > limit:
            self.errors.append(f"no more than {limit} items allowed [json-pointer:{pointer}]")

    def unique(self, value: Any, seen: set[str], scope: str, pointer: str) -> None:
        """A repeated id (Slack refuses the payload: the ids route clicks and key input state)."""
        if isinstance(value, str):
            if value in seen:
                self.errors.append(
                    f"must be unique within {scope}: {value!r} is repeated [json-pointer:{pointer}]")
            seen.add(value)

    def text(self, obj: Any, key: tuple[str, str], pointer: str) -> None:
        suffix = "/text" if isinstance(obj, dict) else ""
        self.too_long(_text_of(obj), TEXT_LIMITS[key], pointer + suffix)

    def block(self, block: dict[str, Any], at: str) -> None:
        kind = block.get("type")
        self.too_long(block.get("block_id"), ID_MAX, f"{at}/block_id")
        if kind == "section":
            self.text(block.get("text"), ("section", "text"), f"{at}/text")
            fields = block.get("fields")
            self.too_many(fields, MAX_FIELDS, f"{at}/fields")
            for i, item in enumerate(fields if isinstance(fields, list) else []):
                self.text(item, ("section", "field"), f"{at}/fields/{i}")
            if isinstance(block.get("accessory"), dict):
                self.element(block["accessory"], f"{at}/accessory")
        elif kind == "header":
            self.text(block.get("text"), ("header", "text"), f"{at}/text")
        elif kind in ("actions", "context"):
            elements = block.get("elements")
            limit = MAX_ACTIONS_ELEMENTS if kind == "actions" else MAX_CONTEXT_ELEMENTS
            self.too_many(elements, limit, f"{at}/elements")
            action_ids: set[str] = set()
            for i, element in enumerate(elements if isinstance(elements, list) else []):
                if isinstance(element, dict):
                    self.element(element, f"{at}/elements/{i}")
                    self.unique(element.get("action_id"), action_ids, "a block",
                                f"{at}/elements/{i}/action_id")
        elif kind == "input":
            self.text(block.get("label"), ("input", "label"), f"{at}/label")
            self.text(block.get("hint"), ("input", "hint"), f"{at}/hint")
            if isinstance(block.get("element"), dict):
                self.element(block["element"], f"{at}/element")
        elif kind == "image":
            self.element(block, at)

    def element(self, element: dict[str, Any], at: str) -> None:
        kind = element.get("type")
        self.too_long(element.get("action_id"), ID_MAX, f"{at}/action_id")
        if kind == "button":
            self.text(element.get("text"), ("button", "text"), f"{at}/text")
            self.too_long(element.get("value"), TEXT_LIMITS[("button", "value")], f"{at}/value")
            self.too_long(element.get("url"), TEXT_LIMITS[("button", "url")], f"{at}/url")
        elif kind == "image":
            self.too_long(element.get("alt_text"), TEXT_LIMITS[("image", "alt_text")], f"{at}/alt_text")
            self.too_long(element.get("image_url"), TEXT_LIMITS[("image", "image_url")], f"{at}/image_url")
        elif kind in _SELECTS or kind == "overflow":
            if kind in _SELECTS:
                self.text(element.get("placeholder"), ("select", "placeholder"), f"{at}/placeholder")
            limit = MAX_OVERFLOW_OPTIONS if kind == "overflow" else MAX_OPTIONS
            options = element.get("options")
            self.too_many(options, limit, f"{at}/options")
            self.too_many(element.get("option_groups"), MAX_OPTIONS, f"{at}/option_groups")
            for i, option in enumerate(options if isinstance(options, list) else []):
                if isinstance(option, dict):
                    self.text(option.get("text"), ("option", "text"), f"{at}/options/{i}/text")
                    self.too_long(option.get("value"), TEXT_LIMITS[("option", "value")],
                                  f"{at}/options/{i}/value")


def problems(blocks: list[dict[str, Any]], surface: str = "message") -> list[str]:
    """Slack's error lines for ``blocks`` on ``surface`` (message, modal or home); [] when fine."""
    checker = _Checker()
    checker.too_many(blocks, MAX_BLOCKS[surface], "/blocks")
    block_ids: set[str] = set()
    scope = "a message" if surface == "message" else "a view"
    for i, block in enumerate(blocks):
        checker.block(block, f"/blocks/{i}")
        checker.unique(block.get("block_id"), block_ids, scope, f"/blocks/{i}/block_id")
    return checker.errors


def view_problems(view: dict[str, Any]) -> list[str]:
    """Slack's error lines for a whole view: its blocks and the view's own fields."""
    checker = _Checker()
    kind = view.get("type")
    if kind == "modal":
        for name in ("title", "submit", "close"):
            checker.text(view.get(name), ("modal", name), f"/view/{name}")
    for name in ("private_metadata", "callback_id"):
        checker.too_long(view.get(name), TEXT_LIMITS[("view", name)], f"/view/{name}")
    blocks = view.get("blocks") or []
    return checker.errors + [
        line.replace("[json-pointer:/blocks", "[json-pointer:/view/blocks")
        for line in problems(blocks, "home" if kind == "home" else "modal")
    ]
