"""The demo page: the sandbox Slack workspace as one person sees it, and the IAM sandbox.

Plain server-rendered HTML and a little JavaScript, no build step. Block Kit is rendered
here, in Python (:class:`Renderer`): sections with mrkdwn (links, bold, italic, code,
mentions shown as @name), fields, context, header, divider, images, actions with buttons
(primary/danger, confirm dialogs as ``confirm()``), static/users/conversations selects,
overflow menus, date and time pickers, checkboxes, radio buttons, and the inputs of modals.

The page polls ``GET /demo/state`` about once a second and swaps in the parts that changed
(sidebar, channel, modal, IAM panel). What a person does goes to the demo server as JSON
(``POST /demo/action``, ``/demo/submit``, ``/demo/close``, ``/demo/command``,
``/demo/home``), which builds the signed Slack request and sends it to Steward
(:class:`sandbox.demo.Demo`). The POST routes only take ``application/json`` (a
cross-site form cannot send that without CORS) and, on a loopback address, only a
loopback ``Host`` (no DNS rebinding).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

# The running `sandbox.demo.Demo` the page shows, typed `Any` here: the demo imports this
# module to serve its page, so importing it back would be a cycle.
_Demo = Any

__all__ = ["Renderer", "make_page_server", "mrkdwn", "render_page", "render_parts"]

MAX_BODY = 256 * 1024

EMOJI = {
    "white_check_mark": "✅", "heavy_check_mark": "✔️", "x": "❌", "no_entry": "⛔",
    "no_entry_sign": "🚫", "warning": "⚠️", "lock": "🔒", "unlock": "🔓", "key": "🔑",
    "old_key": "🗝️", "hourglass": "⌛", "hourglass_flowing_sand": "⏳", "bell": "🔔",
    "rotating_light": "🚨", "shield": "🛡️", "bust_in_silhouette": "👤",
    "busts_in_silhouette": "👥", "mag": "🔍", "pushpin": "📌", "wave": "👋", "tada": "🎉",
    "zzz": "💤", "sleeping": "😴", "calendar": "📅", "clipboard": "📋", "memo": "📝",
    "arrow_right": "➡️", "leftwards_arrow_with_hook": "↩️", "arrows_counterclockwise": "🔄",
    "red_circle": "🔴", "large_orange_circle": "🟠", "large_yellow_circle": "🟡",
    "large_blue_circle": "🔵", "large_green_circle": "🟢", "white_circle": "⚪",
    "point_right": "👉", "eyes": "👀", "thumbsup": "👍", "+1": "👍", "question": "❓",
    "information_source": "ℹ️", "bulb": "💡", "robot_face": "🤖", "link": "🔗",
    "wastebasket": "🗑️", "no_bell": "🔕", "handshake": "🤝", "inbox_tray": "📥",
    "outbox_tray": "📤", "chart_with_upwards_trend": "📈", "bar_chart": "📊",
    "heavy_plus_sign": "➕", "heavy_minus_sign": "➖", "fire": "🔥", "lock_with_ink_pen": "🔏",
    "construction": "🚧", "stopwatch": "⏱️", "repeat": "🔁", "ok_hand": "👌",
    "raised_hand": "✋", "female-detective": "🕵️", "sleuth_or_spy": "🕵️", "gear": "⚙️",
}

# ---------------------------------------------------------------------------------------
# mrkdwn

_CODE_BLOCK = re.compile(r"```(.+?)```", re.S)
_CODE = re.compile(r"`([^`\n]+)`")
_TOKEN = re.compile(r"<([^<>\n]+)>")
# Slack only opens a marker after a space, a line start or an opening bracket or quote, and
# closes it before a space, the end or punctuation: `s3:*` and `snake_case` stay as typed.
_OPEN = r"(?<![^\s(\[\"'\x00])"
_CLOSE = r"(?![^\s.,;:!?)\]\"'\x00])"
_BOLD = re.compile(_OPEN + r"\*(?=\S)([^*\n]+?)(?<=\S)\*" + _CLOSE)
_ITALIC = re.compile(_OPEN + r"_(?=\S)([^_\n]+?)(?<=\S)_" + _CLOSE)
_STRIKE = re.compile(_OPEN + r"~(?=\S)([^~\n]+?)(?<=\S)~" + _CLOSE)
_EMOJI = re.compile(r":([a-z0-9_+\-]+):")
_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")
_SAFE_URL = re.compile(r"^(https?://|mailto:)", re.I)


def _unslack(text: str) -> str:
    """Slack's three escapes back to characters (they are escaped again for HTML)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _emoji(text: str) -> str:
    return _EMOJI.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)


def mrkdwn(
    text: str,
    users: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
) -> str:
    """Slack mrkdwn as safe HTML: ``<url|text>`` links, ``<@U…>`` mentions (as @name),
    ``<#C…>`` channels, ``*bold*``, ``_italic_``, ``~strike~``, `` `code` ``, code blocks,
    ``>`` quotes, ``:emoji:`` and line breaks."""
    users = users or {}
    channels = channels or {}
    kept: list[str] = []

    def keep(fragment: str) -> str:
        kept.append(fragment)
        return f"\x00{len(kept) - 1}\x00"

    def token(inner: str) -> str:
        head, _, label = inner.partition("|")
        if head.startswith("@"):
            uid = head[1:]
            name = users.get(uid) or label or uid
            return f'<span class="mention">@{_esc(_unslack(name))}</span>'
        if head.startswith("#"):
            cid = head[1:]
            name = channels.get(cid) or label or cid
            return f'<span class="mention">#{_esc(_unslack(name))}</span>'
        if head.startswith("!"):
            special = head[1:]
            if special.startswith("subteam^"):
                return f'<span class="mention">{_esc(_unslack(label or "@group"))}</span>'
            if special.startswith("date^"):
                return _esc(_unslack(label or special))
            return f'<span class="mention">@{_esc(special)}</span>'
        url = _unslack(head)
        shown = _esc(_unslack(label or head))
        if not _SAFE_URL.match(url):
            return shown
        return f'<a href="{_esc(url)}" target="_blank" rel="noopener noreferrer">{shown}</a>'

    text = _CODE_BLOCK.sub(lambda m: keep(f"<pre>{_esc(_unslack(m.group(1).strip(chr(10))))}</pre>"), text)
    text = _CODE.sub(lambda m: keep(f"<code>{_esc(_unslack(m.group(1)))}</code>"), text)
    text = _TOKEN.sub(lambda m: keep(token(m.group(1))), text)
    text = _esc(_unslack(text))
    text = _BOLD.sub(r"<b>\1</b>", text)
    text = _ITALIC.sub(r"<i>\1</i>", text)
    text = _STRIKE.sub(r"<s>\1</s>", text)
    text = _emoji(text)
    lines = []
    for line in text.split("\n"):
        if line.startswith("&gt; ") or line == "&gt;":
            line = f'<span class="quote">{line[5:]}</span>'
        lines.append(line)
    text = "<br>".join(lines)
    for _ in range(3):  # placeholders inside kept fragments are not expected, but be safe
        text = _PLACEHOLDER.sub(lambda m: kept[int(m.group(1))], text)
    return text


def _plain_text(obj: Any) -> str:
    """The characters of a text object (for confirm dialogs and titles)."""
    if isinstance(obj, dict):
        text = str(obj.get("text") or "")
        if obj.get("type") == "mrkdwn":
            text = _TOKEN.sub(lambda m: m.group(1).partition("|")[2] or m.group(1), text)
            text = re.sub(r"[*_~`]", "", _unslack(text))
        return _emoji(text)
    return str(obj or "")


# ---------------------------------------------------------------------------------------
# Block Kit

_PALETTE = ("#e8912d", "#2bac76", "#4a90d9", "#cd2553", "#9b59b6", "#16a085", "#d35400",
            "#2c3e50", "#c0392b", "#1264a3")


def _avatar(user_id: str, name: str, *, bot: bool = False) -> str:
    if bot:
        return '<div class="avatar bot" aria-hidden="true">🛡️</div>'
    initials = "".join(part[:1] for part in name.split()[:2]).upper() or "?"
    color = _PALETTE[sum(map(ord, user_id)) % len(_PALETTE)]
    return f'<div class="avatar" style="background:{color}" aria-hidden="true">{_esc(initials)}</div>'


def _time(ts: str) -> str:
    try:
        return datetime.fromtimestamp(float(ts)).strftime("%H:%M")
    except (TypeError, ValueError):
        return ""


class Renderer:
    """Block Kit to HTML for one viewer; interactive elements carry data attributes the
    page's script turns into requests (see the module docstring)."""

    def __init__(self, users: list[dict[str, Any]], channels: list[dict[str, Any]],
                 bot_user_id: str, viewer: str = "") -> None:
        self.viewer = viewer
        self.user_rows = users
        self.users = {
            u["id"]: (u.get("real_name") or u.get("name") or u["id"]) for u in users
        }
        self.channels = {c["id"]: c.get("name") or c["id"] for c in channels}
        self.channel_rows = [c for c in channels if not c.get("is_im") and not c.get("is_mpim")]
        self.bot_user_id = bot_user_id

    # -- text

    def text(self, obj: Any) -> str:
        if obj is None:
            return ""
        if isinstance(obj, str):
            return mrkdwn(obj, self.users, self.channels)
        if obj.get("type") == "mrkdwn":
            if obj.get("verbatim"):
                return _esc(_unslack(str(obj.get("text") or ""))).replace("\n", "<br>")
            return mrkdwn(str(obj.get("text") or ""), self.users, self.channels)
        text = _esc(str(obj.get("text") or "")).replace("\n", "<br>")
        return _emoji(text) if obj.get("emoji", True) else text

    # -- blocks

    def blocks(self, blocks: list[dict[str, Any]], *, errors: Mapping[str, str] | None = None) -> str:
        """Blocks of a message, a modal or a Home tab; ``errors`` by block id (modals)."""
        return "".join(self.block(b, errors=errors or {}) for b in blocks)

    def block(self, block: dict[str, Any], *, errors: Mapping[str, str]) -> str:
        kind = block.get("type")
        bid = str(block.get("block_id") or "")
        if kind == "section":
            parts = []
            if block.get("text"):
                parts.append(f'<div class="b-text">{self.text(block["text"])}</div>')
            if block.get("fields"):
                fields = "".join(f'<div class="b-field">{self.text(f)}</div>' for f in block["fields"])
                parts.append(f'<div class="b-fields">{fields}</div>')
            accessory = ""
            if isinstance(block.get("accessory"), dict):
                accessory = f'<div class="b-accessory">{self.element(block["accessory"], bid, dispatch=True)}</div>'
            return f'<div class="b-section" data-block="{_esc(bid)}"><div class="b-main">{"".join(parts)}</div>{accessory}</div>'
        if kind == "header":
            return f'<div class="b-header">{self.text(block.get("text"))}</div>'
        if kind == "divider":
            return '<hr class="b-divider">'
        if kind == "context":
            items = []
            for element in block.get("elements") or ():
                if element.get("type") == "image":
                    items.append(self._image(element, "ctx-img"))
                else:
                    items.append(f"<span>{self.text(element)}</span>")
            return f'<div class="b-context">{"".join(items)}</div>'
        if kind == "actions":
            elements = "".join(self.element(e, bid, dispatch=True) for e in block.get("elements") or ())
            return f'<div class="b-actions" data-block="{_esc(bid)}">{elements}</div>'
        if kind == "image":
            title = f"<figcaption>{self.text(block['title'])}</figcaption>" if block.get("title") else ""
            return f'<figure class="b-image">{self._image(block, "img")}{title}</figure>'
        if kind == "input":
            element = block.get("element") or {}
            label = self.text(block.get("label"))
            optional = ' <span class="optional">(optional)</span>' if block.get("optional") else ""
            hint = f'<div class="hint">{self.text(block["hint"])}</div>' if block.get("hint") else ""
            error = errors.get(bid)
            err = f'<div class="error" role="alert">{_esc(error)}</div>' if error else ""
            field = self.element(element, bid, dispatch=bool(block.get("dispatch_action")),
                                 in_input=True, required=not block.get("optional"))
            return (f'<div class="b-input{" has-error" if error else ""}" data-block="{_esc(bid)}">'
                    f"<label>{label}{optional}</label>{field}{hint}{err}</div>")
        if kind == "rich_text":
            return f'<div class="b-text">{self._rich_text(block)}</div>'
        if kind == "markdown":
            return f'<div class="b-text">{mrkdwn(str(block.get("text") or ""), self.users, self.channels)}</div>'
        return f'<div class="b-unknown">[{_esc(kind)} block]</div>'

    def _rich_text(self, block: dict[str, Any]) -> str:
        out = []
        for section in block.get("elements") or ():
            pieces = []
            for item in section.get("elements") or ():
                kind = item.get("type")
                if kind == "text":
                    piece = _esc(item.get("text", "")).replace("\n", "<br>")
                    style = item.get("style") or {}
                    if style.get("code"):
                        piece = f"<code>{piece}</code>"
                    if style.get("bold"):
                        piece = f"<b>{piece}</b>"
                    if style.get("italic"):
                        piece = f"<i>{piece}</i>"
                    pieces.append(piece)
                elif kind == "link":
                    url = str(item.get("url") or "")
                    label = _esc(item.get("text") or url)
                    pieces.append(f'<a href="{_esc(url)}" target="_blank" rel="noopener">{label}</a>'
                                  if _SAFE_URL.match(url) else label)
                elif kind == "user":
                    pieces.append(f'<span class="mention">@{_esc(self.users.get(item.get("user_id"), item.get("user_id")))}</span>')
                elif kind == "emoji":
                    pieces.append(EMOJI.get(item.get("name", ""), f":{_esc(item.get('name'))}:"))
                elif section.get("type") == "rich_text_list" and kind == "rich_text_section":
                    pieces.append(f"<li>{self._rich_text({'elements': [item]})}</li>")
            if section.get("type") == "rich_text_list":
                out.append(f"<ul>{''.join(pieces)}</ul>")
            elif section.get("type") == "rich_text_preformatted":
                out.append(f"<pre>{''.join(pieces)}</pre>")
            elif section.get("type") == "rich_text_quote":
                out.append(f'<span class="quote">{"".join(pieces)}</span>')
            else:
                out.append("".join(pieces))
        return "".join(out)

    def _image(self, element: dict[str, Any], css: str) -> str:
        url = str(element.get("image_url") or "")
        alt = _esc(element.get("alt_text") or "")
        if not _SAFE_URL.match(url):
            return f'<span class="{css} missing">{alt}</span>'
        return f'<img class="{css}" src="{_esc(url)}" alt="{alt}" title="{alt}" loading="lazy">'

    # -- elements

    def element(self, element: dict[str, Any], block_id: str, *, dispatch: bool,
                in_input: bool = False, required: bool = False) -> str:
        kind = str(element.get("type"))
        aid = str(element.get("action_id") or "")
        attrs = (f'data-aid="{_esc(aid)}" data-bid="{_esc(block_id)}" data-kind="{_esc(kind)}"'
                 + (' data-dispatch="1"' if dispatch else "")
                 + (' data-input="1"' if in_input else ""))
        if kind == "button":
            style = element.get("style")
            css = f"sk-btn {style}" if style in ("primary", "danger") else "sk-btn"
            confirm = self._confirm(element.get("confirm"))
            url = element.get("url")
            link = f' data-url="{_esc(url)}"' if isinstance(url, str) and _SAFE_URL.match(url) else ""
            return f'<button type="button" class="{css}" {attrs}{confirm}{link}>{self.text(element.get("text"))}</button>'
        if kind in ("static_select", "external_select", "multi_static_select", "multi_external_select"):
            multiple = kind.startswith("multi_")
            initial = element.get("initial_options") if multiple else element.get("initial_option")
            chosen = {o.get("value") for o in (initial or [])} if multiple else {(initial or {}).get("value")}
            options = self._options(element, chosen)
            return self._select(attrs, element, options, multiple=multiple, required=required)
        if kind in ("users_select", "multi_users_select"):
            multiple = kind.startswith("multi_")
            chosen = set(element.get("initial_users") or []) if multiple else {element.get("initial_user")}
            options = "".join(
                f'<option value="{_esc(u["id"])}"{" selected" if u["id"] in chosen else ""}>{_esc(u.get("real_name") or u["name"])}</option>'
                for u in self.user_rows
                if not u.get("is_bot") and not u.get("deleted")
            )
            return self._select(attrs, element, options, multiple=multiple, required=required)
        if kind in ("conversations_select", "channels_select", "multi_conversations_select",
                    "multi_channels_select"):
            multiple = kind.startswith("multi_")
            key = "initial_conversation" if "conversation" in kind else "initial_channel"
            chosen = set(element.get(key + "s") or []) if multiple else {element.get(key)}
            options = "".join(
                f'<option value="{_esc(c["id"])}"{" selected" if c["id"] in chosen else ""}>#{_esc(c.get("name") or c["id"])}</option>'
                for c in self.channel_rows
            )
            return self._select(attrs, element, options, multiple=multiple, required=required)
        if kind == "overflow":
            options = "".join(
                f'<option value="{_esc(o.get("value"))}">{_esc(_plain_text(o.get("text")))}</option>'
                for o in element.get("options") or ()
            )
            confirm = self._confirm(element.get("confirm"))
            return (f'<select class="sk-overflow" {attrs}{confirm} aria-label="More actions">'
                    f'<option value="" selected>⋯</option>{options}</select>')
        if kind == "datepicker":
            value = _esc(element.get("initial_date") or "")
            req = " required" if required else ""
            return f'<input type="date" class="sk-date" {attrs} value="{value}"{req}>'
        if kind == "timepicker":
            value = _esc(element.get("initial_time") or "")
            return f'<input type="time" class="sk-date" {attrs} value="{value}">'
        if kind in ("plain_text_input", "email_text_input", "url_text_input", "number_input"):
            placeholder = _esc(_plain_text(element.get("placeholder")))
            value = _esc(element.get("initial_value") or "")
            limits = ""
            if element.get("min_length"):
                limits += f' minlength="{int(element["min_length"])}"'
            if element.get("max_length"):
                limits += f' maxlength="{int(element["max_length"])}"'
            req = " required" if required else ""
            if element.get("multiline"):
                return f'<textarea class="sk-input" rows="3" {attrs} placeholder="{placeholder}"{limits}{req}>{value}</textarea>'
            html_type = {"email_text_input": "email", "url_text_input": "url",
                         "number_input": "number"}.get(kind, "text")
            return f'<input type="{html_type}" class="sk-input" {attrs} placeholder="{placeholder}" value="{value}"{limits}{req}>'
        if kind in ("checkboxes", "radio_buttons"):
            multiple = kind == "checkboxes"
            initial = element.get("initial_options") if multiple else [element.get("initial_option") or {}]
            chosen = {o.get("value") for o in initial or []}
            html_type = "checkbox" if multiple else "radio"
            name = _esc(f"{block_id}/{aid}")
            items = "".join(
                f'<label class="sk-choice"><input type="{html_type}" name="{name}" value="{_esc(o.get("value"))}"'
                f'{" checked" if o.get("value") in chosen else ""}> {self.text(o.get("text"))}</label>'
                for o in element.get("options") or ()
            )
            return f'<div class="sk-choices" {attrs}>{items}</div>'
        if kind == "image":
            return self._image(element, "acc-img")
        return f'<span class="b-unknown">[{_esc(kind)}]</span>'

    def _options(self, element: dict[str, Any], chosen: set[Any]) -> str:
        def option(o: dict[str, Any]) -> str:
            selected = " selected" if o.get("value") in chosen else ""
            return f'<option value="{_esc(o.get("value"))}"{selected}>{_esc(_plain_text(o.get("text")))}</option>'

        if element.get("option_groups"):
            return "".join(
                f'<optgroup label="{_esc(_plain_text(g.get("label")))}">{"".join(option(o) for o in g.get("options") or ())}</optgroup>'
                for g in element["option_groups"]
            )
        return "".join(option(o) for o in element.get("options") or ())

    def _select(self, attrs: str, element: dict[str, Any], options: str, *, multiple: bool,
                required: bool) -> str:
        placeholder = _esc(_plain_text(element.get("placeholder")) or "Select…")
        confirm = self._confirm(element.get("confirm"))
        if multiple:
            return f'<select class="sk-select" multiple {attrs}{confirm} aria-label="{placeholder}">{options}</select>'
        has_initial = " selected" not in options
        head = f'<option value=""{" selected" if has_initial else ""} disabled>{placeholder}</option>'
        req = " required" if required else ""
        return f'<select class="sk-select" {attrs}{confirm}{req} aria-label="{placeholder}">{head}{options}</select>'

    def _confirm(self, confirm: Any) -> str:
        if not isinstance(confirm, dict):
            return ""
        data = {
            "title": _plain_text(confirm.get("title")) or "Are you sure?",
            "text": _plain_text(confirm.get("text")),
            "confirm": _plain_text(confirm.get("confirm")) or "Yes",
            "deny": _plain_text(confirm.get("deny")) or "Cancel",
        }
        return f' data-confirm="{_esc(json.dumps(data))}"'

    # -- messages

    def message(self, msg: dict[str, Any], channel: str, *, ephemeral: bool = False,
                replies: list[dict[str, Any]] | None = None) -> str:
        author_id = str(msg.get("author") if ephemeral else msg.get("user") or "")
        is_bot = author_id == self.bot_user_id or bool(msg.get("bot_id"))
        name = "Steward" if is_bot else self.users.get(author_id, author_id or "someone")
        badge = '<span class="app-badge">APP</span>' if is_bot else ""
        edited = '<span class="edited">(edited)</span>' if msg.get("edited") else ""
        note = ('<div class="eph-note">👁 Only visible to you</div>' if ephemeral else "")
        if msg.get("subtype") == "tombstone":
            body = '<div class="b-text deleted">This message was deleted.</div>'
        elif msg.get("blocks"):
            body = self.blocks(msg["blocks"])
        else:
            body = f'<div class="b-text">{self.text(str(msg.get("text") or ""))}</div>'
        attachments = "".join(self._attachment(a) for a in msg.get("attachments") or ())
        attachments += "".join(self._file(f) for f in msg.get("files") or ())
        thread = ""
        if replies:
            count = len(replies)
            inner = "".join(r for r in replies)
            thread = (f'<details class="thread" open><summary>{count} '
                      f'{"reply" if count == 1 else "replies"}</summary>{inner}</details>')
        src = "eph" if ephemeral else "msg"
        return (
            f'<div class="msg{" eph" if ephemeral else ""}" data-src="{src}" data-ch="{_esc(channel)}" '
            f'data-ts="{_esc(msg.get("ts"))}">{_avatar(author_id, name, bot=is_bot)}'
            f'<div class="msg-body"><div class="msg-head"><span class="author">{_esc(name)}</span>'
            f'{badge}<span class="time" title="{_esc(msg.get("ts"))}">{_time(str(msg.get("ts")))}</span>{edited}</div>'
            f"{note}{body}{attachments}{thread}</div></div>"
        )

    def _file(self, record: dict[str, Any]) -> str:
        name = str(record.get("name") or record.get("id"))
        title = _esc(record.get("title") or name)
        href = f"/demo/file/{_esc(record.get('id'))}?" + urlencode({"as": self.viewer})
        if name.lower().endswith((".png", ".jpg", ".jpeg", ".gif")):
            return (f'<figure class="b-image file"><a href="{_esc(href)}" target="_blank">'
                    f'<img class="img" src="{_esc(href)}" alt="{title}"></a><figcaption>{title}</figcaption></figure>')
        return f'<div class="file-card">📄 <a href="{_esc(href)}" target="_blank">{title}</a></div>'

    def _attachment(self, attachment: dict[str, Any]) -> str:
        color = str(attachment.get("color") or "#ddd")
        if not re.fullmatch(r"#?[0-9a-fA-F]{3,8}|good|warning|danger", color):
            color = "#ddd"
        color = {"good": "#2eb67d", "warning": "#ecb22e", "danger": "#e01e5a"}.get(color, color)
        if color[0] != "#":
            color = "#" + color
        parts = []
        if attachment.get("title"):
            parts.append(f'<div class="att-title">{_esc(attachment["title"])}</div>')
        if attachment.get("text"):
            parts.append(f'<div class="b-text">{self.text(str(attachment["text"]))}</div>')
        for f in attachment.get("fields") or ():
            parts.append(f'<div class="b-field"><b>{_esc(f.get("title", ""))}</b><br>{self.text(str(f.get("value", "")))}</div>')
        if attachment.get("blocks"):
            parts.append(self.blocks(attachment["blocks"]))
        return f'<div class="attachment" style="border-color:{color}">{"".join(parts)}</div>'


# ---------------------------------------------------------------------------------------
# The page


def _days_ago(value: str | None, now: datetime) -> str:
    if not value:
        return "never used"
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    days = (now - when).days
    if days <= 0:
        return "used today"
    return f"{days} d ago"


def _iam_row(account: Mapping[str, Any], user: Mapping[str, Any], *, mine: bool, now: datetime,
             with_account: bool) -> str:
    badges = []
    if with_account:
        badges.append(f'<span class="tag acct-tag">{_esc(account["alias"])}</span>')
    if user.get("console"):
        badges.append('<span class="tag">console</span>')
        if not user.get("mfa"):
            badges.append('<span class="tag warn">no MFA</span>')
    if user.get("quarantined"):
        badges.append('<span class="tag danger">quarantined</span>')
    keys = []
    for key in user.get("keys") or ():
        status = str(key.get("status"))
        kid = str(key.get("id"))
        shown = f"{kid[:4]}…{kid[-4:]}" if len(kid) > 10 else kid
        keys.append(
            f'<div class="key {_esc(status.lower())}" data-key-id="{_esc(kid)}" data-status="{_esc(status)}">'
            f'<code title="{_esc(kid)}">{_esc(shown)}</code> '
            f'<span class="st">{_esc(status)}</span> '
            f'<span class="used" title="last used">{_esc(_days_ago(key.get("last_used"), now))}</span></div>'
        )
    owner = user.get("owner")
    if with_account:  # the viewer's own section: the owner is the viewer
        owner_html = ""
    elif owner:
        owner_html = f'<div class="owner">{_esc(owner)}</div>'
    else:
        owner_html = '<div class="owner none">no owner tag</div>'
    policies = [*(user.get("policies") or ()), *(f"{p} (inline)" for p in user.get("inline_policies") or ())]
    if policies:
        owner_html += f'<div class="pol" title="Policies attached to the user itself">{_esc(", ".join(policies))}</div>'
    return (
        f'<tr class="iam-user{" mine" if mine else ""}" data-account="{_esc(account["id"])}" '
        f'data-user="{_esc(user["name"])}"><td><div class="uname">{_esc(user["name"])} {"".join(badges)}</div>'
        f'{owner_html}</td><td class="keys">{"".join(keys) or "<span class=nokeys>no keys</span>"}</td></tr>'
    )


def _role_row(account: Mapping[str, Any], role: Mapping[str, Any]) -> str:
    """One of the viewer's roles: its policies, and the services each inline one allows."""
    policies = [_esc(p) for p in role.get("policies") or ()]
    for name, services in (role.get("inline") or {}).items():
        policies.append(
            f'<span class="inline-pol" data-policy="{_esc(name)}" data-services="{_esc(" ".join(services))}">'
            f'{_esc(name)} (inline: {_esc(", ".join(services) or "nothing")})</span>'
        )
    pol = f'<div class="pol" title="Policies of the role">{", ".join(policies)}</div>' if policies else ""
    return (
        f'<tr class="iam-role mine" data-account="{_esc(account["id"])}" data-role="{_esc(role["name"])}">'
        f'<td><div class="uname">{_esc(role["name"])} <span class="tag acct-tag">{_esc(account["alias"])}</span>'
        f' <span class="tag">role</span></div>{pol}</td><td class="keys"></td></tr>'
    )


def render_iam(accounts: list[dict[str, Any]], viewer_email: str | None) -> str:
    """The IAM panel: the viewer's own users and roles first (every account), then each
    account's users."""
    now = datetime.now(UTC)
    mine_email = (viewer_email or "").lower()
    yours: list[str] = []
    sections = []
    total_users = total_keys = inactive = 0
    for account in accounts:
        if account.get("error"):
            sections.append(
                f'<section class="acct"><h3>{_esc(account["alias"])} <span>{_esc(account["id"])}</span></h3>'
                f'<div class="error">Cannot read IAM: {_esc(account["error"])}</div></section>'
            )
            continue
        rows = []
        for user in sorted(account["users"], key=lambda u: u["name"]):
            total_users += 1
            keys = user.get("keys") or ()
            total_keys += len(keys)
            inactive += sum(1 for k in keys if k.get("status") != "Active")
            if mine_email and (user.get("owner") or "").lower() == mine_email:
                yours.append(_iam_row(account, user, mine=True, now=now, with_account=True))
            else:
                rows.append(_iam_row(account, user, mine=False, now=now, with_account=False))
        for role in account.get("roles") or ():
            if mine_email and (role.get("owner") or "").lower() == mine_email:
                yours.append(_role_row(account, role))
        sections.append(
            f'<section class="acct" data-account="{_esc(account["id"])}"><h3>{_esc(account["alias"])} '
            f'<span>{_esc(account["id"])}</span></h3><table><tbody>{"".join(rows)}</tbody></table></section>'
        )
    head = (f'<div class="iam-summary">{total_users} users · {total_keys} access keys '
            f'({inactive} inactive) · live from the IAM API</div>')
    if yours:
        sections.insert(0, '<section class="acct yours"><h3>Tagged as yours</h3>'
                           f'<table><tbody>{"".join(yours)}</tbody></table></section>')
    return head + "".join(sections)


def render_parts(demo: _Demo, viewer: str, channel: str) -> dict[str, Any]:
    """The parts of the page that change: sidebar, channel, modal, IAM panel."""
    fake = demo.fake
    assert fake is not None
    snap = fake.snapshot()
    renderer = Renderer(snap["users"], snap["channels"], snap["bot"]["user_id"], viewer)
    person = demo.person(viewer)
    dm = demo.dm_channel(viewer)
    visible = demo.channels_for(viewer)

    # sidebar
    def link(ch: str, label: str, extra: str = "") -> str:
        active = " active" if ch == channel else ""
        href = "/?" + urlencode({"as": viewer, "ch": ch})
        return f'<a class="side-link{active}" href="{_esc(href)}" data-ch="{_esc(ch)}">{label}{extra}</a>'

    def count(ch: str) -> str:
        msgs = [m for c in snap["channels"] if c["id"] == ch for m in c.get("messages", [])]
        n = len([m for m in msgs if not m.get("thread_ts") or m.get("thread_ts") == m["ts"]])
        return f'<span class="count">{n}</span>' if n else ""

    side = ['<div class="side-title">Channels</div>']
    side += [link(c["id"], f"# {_esc(c.get('name'))}", count(c["id"])) for c in visible]
    if not visible:
        side.append('<div class="side-empty">not in any channel</div>')
    side.append('<div class="side-title">Apps</div>')
    side.append(link(dm, '<span class="side-bot">🛡️</span> Steward', count(dm)))
    side.append(link("home", '<span class="side-bot">🏠</span> Steward · Home'))
    sidebar = "".join(side)

    # channel
    if channel == "home":
        title = "Steward · Home"
        subtitle = "The app's Home tab (published by Steward when you open it)"
        home = fake.home(viewer)
        if home is None:
            body = '<div class="empty">Opening the Home tab…</div>'
        else:
            body = f'<div class="home" data-src="home" data-view="{_esc(home["id"])}">{renderer.blocks(home.get("blocks") or [])}</div>'
    else:
        if channel == dm:
            title, subtitle = "Steward", "Direct messages from IAM Steward"
        else:
            name = next((c.get("name") for c in visible if c["id"] == channel), channel)
            title, subtitle = f"# {name}", "Security team: triage, approvals, digest"
        messages = next((c.get("messages", []) for c in snap["channels"] if c["id"] == channel), [])
        ephemerals = [e for e in snap["ephemerals"] if e["user"] == viewer and e["channel"] == channel]
        body = _channel_html(renderer, channel, messages, ephemerals)
    header = f'<div class="ch-title">{_esc(title)}</div><div class="ch-sub">{_esc(subtitle)}</div>'

    # modal
    stack = demo.modal_stack(viewer)
    modal_html, modal_key = "", ""
    if stack:
        view = stack[-1]
        errors = demo.view_errors(view["id"])
        kept = demo.view_values(view["id"])
        modal_key = json.dumps([view["id"], view.get("hash"), errors, kept, len(stack)], sort_keys=True)
        modal_html = _modal_html(renderer, with_values(view, kept), errors)

    iam = render_iam(demo.iam_state(), person.email)
    return {
        "sidebar": sidebar,
        "header": header,
        "messages": body,
        "modal": modal_html,
        "modal_key": modal_key,
        "iam": iam,
        "warnings": "".join(f'<div class="warning">⚠️ {_esc(w)}</div>' for w in demo.warnings),
    }


def _channel_html(renderer: Renderer, channel: str, messages: list[dict[str, Any]],
                  ephemerals: list[dict[str, Any]]) -> str:
    replies: dict[str, list[dict[str, Any]]] = {}
    top: list[tuple[str, bool, dict[str, Any]]] = []
    for m in messages:
        thread = m.get("thread_ts")
        if thread and thread != m["ts"]:
            replies.setdefault(str(thread), []).append(m)
        else:
            top.append((str(m["ts"]), False, m))
    eph_replies: dict[str, list[dict[str, Any]]] = {}
    for e in ephemerals:
        if e.get("thread_ts"):
            eph_replies.setdefault(str(e["thread_ts"]), []).append(e)
        else:
            top.append((str(e["ts"]), True, e))
    top.sort(key=lambda item: _ts_key(item[0]))
    out = []
    for ts, ephemeral, msg in top:
        thread_items = sorted(
            [(r["ts"], False, r) for r in replies.get(ts, [])]
            + [(r["ts"], True, r) for r in eph_replies.get(ts, [])],
            key=lambda item: _ts_key(str(item[0])),
        )
        rendered = [renderer.message(r, channel, ephemeral=e) for _, e, r in thread_items]
        out.append(renderer.message(msg, channel, ephemeral=ephemeral, replies=rendered))
    if not out:
        return '<div class="empty">No messages here yet.</div>'
    return "".join(out)


def _ts_key(ts: str) -> tuple[int, int]:
    sec, _, frac = ts.partition(".")
    try:
        return int(sec), int(frac.ljust(6, "0")[:6] or 0)
    except ValueError:
        return 0, 0


# A state entry's value key -> the element's initial-value key (to draw a kept state).
INITIAL_FOR = {"value": "initial_value", "selected_date": "initial_date", "selected_time": "initial_time",
               "selected_option": "initial_option", "selected_options": "initial_options",
               "selected_user": "initial_user", "selected_users": "initial_users",
               "selected_conversation": "initial_conversation", "selected_channel": "initial_channel"}


def with_values(view: Mapping[str, Any], state: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """`view` with its inputs showing `state` (what was typed before an error), like Slack."""
    if not state:
        return dict(view)
    blocks = []
    for block in view.get("blocks") or ():
        entry = state.get(str(block.get("block_id") or ""), {})
        element = block.get("element") if block.get("type") == "input" else None
        if element and element.get("action_id") in entry:
            kept = dict(element)
            for key, value in entry[element["action_id"]].items():
                if key in INITIAL_FOR and value not in (None, ""):
                    kept[INITIAL_FOR[key]] = value
            block = {**block, "element": kept}
        blocks.append(block)
    return {**view, "blocks": blocks}



def _modal_html(renderer: Renderer, view: dict[str, Any], errors: Mapping[str, str]) -> str:
    title = renderer.text(view.get("title")) or "Steward"
    submit = view.get("submit")
    close = _plain_text(view.get("close")) or ("Cancel" if submit else "Close")
    general = "".join(
        f'<div class="error" role="alert">{_esc(v)}</div>'
        for k, v in errors.items()
        if not any(b.get("block_id") == k for b in view.get("blocks") or ())
    )
    submit_html = (f'<button type="submit" class="sk-btn primary">{renderer.text(submit)}</button>'
                   if submit else "")
    return (
        f'<div class="backdrop"><form class="modal" data-src="view" data-view="{_esc(view["id"])}" novalidate>'
        f'<div class="modal-head"><span>{title}</span><button type="button" class="x" data-close aria-label="Close">×</button></div>'
        f'<div class="modal-body">{renderer.blocks(view.get("blocks") or [], errors=errors)}{general}</div>'
        f'<div class="modal-foot"><button type="button" class="sk-btn" data-close>{_esc(close)}</button>{submit_html}</div>'
        "</form></div>"
    )


def render_page(demo: _Demo, viewer: str, channel: str) -> str:
    parts = render_parts(demo, viewer, channel)
    person = demo.person(viewer)
    options = []
    for p in demo.viewers():
        role = " · security approver" if demo.is_approver(p.slack_id) else ""
        selected = " selected" if p.slack_id == viewer else ""
        options.append(
            f'<option value="{_esc(p.slack_id)}"{selected}>{_esc(p.real_name)} — {_esc(p.title)}{role}</option>'
        )
    config = json.dumps({"viewer": viewer, "channel": channel, "modalKey": parts["modal_key"]})
    return PAGE.format(
        css=CSS,
        js=JS.replace("__CONFIG__", config.replace("</", "<\\/")),
        options="".join(options),
        me=_esc(person.real_name),
        me_email=_esc(person.email),
        sidebar=parts["sidebar"],
        header=parts["header"],
        messages=parts["messages"],
        modal=parts["modal"],
        iam=parts["iam"],
        warnings=parts["warnings"],
        placeholder=_esc("Type /iam whoami, /iam findings or /iam help and press Enter"),
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>IAM Steward demo</title><style>{css}</style></head>
<body>
<header class="top">
  <div class="brand">🛡️ <b>IAM Steward</b> <span>demo workspace · sandbox Slack + sandbox AWS</span></div>
  <label class="viewas">View as <select id="viewas">{options}</select></label>
</header>
<div id="warnings">{warnings}</div>
<div class="layout">
  <nav class="side"><div class="team">Acme <span>{me} · {me_email}</span></div><div id="sidebar">{sidebar}</div></nav>
  <main class="chan">
    <div class="ch-head" id="header">{header}</div>
    <div class="messages" id="messages">{messages}</div>
    <form class="composer" id="composer" autocomplete="off">
      <input id="command" name="command" placeholder="{placeholder}" aria-label="Slash command">
      <div class="chips"><button type="button" data-cmd="/iam whoami">/iam whoami</button><button type="button" data-cmd="/iam findings">/iam findings</button><button type="button" data-cmd="/iam help">/iam help</button></div>
    </form>
  </main>
  <aside class="iam-panel"><div class="iam-head"><h2>IAM sandbox</h2><label><input type="checkbox" id="only-mine"> only mine</label></div><div id="iam">{iam}</div></aside>
</div>
<div id="modal">{modal}</div>
<div id="toast" role="status" aria-live="polite"></div>
<script>{js}</script>
</body></html>"""

CSS = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.46 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Color Emoji",sans-serif;color:#1d1c1d;background:#fff;height:100vh;display:flex;flex-direction:column}
.top{display:flex;align-items:center;justify-content:space-between;background:#350d36;color:#fff;padding:6px 14px;height:44px;flex:none}
.brand span{opacity:.7;font-size:13px;margin-left:8px}
.viewas{font-size:13px}.viewas select{margin-left:6px;padding:3px 6px;border-radius:4px;border:0;font-size:13px;max-width:420px}
#warnings .warning{background:#fff4d6;border-bottom:1px solid #ecb22e;padding:6px 14px;font-size:13px}
.layout{flex:1;display:grid;grid-template-columns:210px minmax(0,1fr) 390px;min-height:0}
.side{background:#3f0e40;color:#cfc3cf;overflow:auto;padding:10px 0}
.team{color:#fff;font-weight:700;padding:2px 16px 10px;border-bottom:1px solid #5d2c5d;margin-bottom:8px}
.team span{display:block;font-weight:400;font-size:12px;color:#cfc3cf;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.side-title{font-size:13px;padding:10px 16px 4px;opacity:.8}
.side-link{display:flex;align-items:center;gap:6px;color:#cfc3cf;text-decoration:none;padding:3px 16px;font-size:15px}.side-link .count{margin-left:auto}
.side-link:hover{background:#350d36}.side-link.active{background:#1164a3;color:#fff}
.side-empty{font-size:12px;padding:2px 16px;opacity:.6}
.count{background:#cd2553;color:#fff;border-radius:9px;font-size:11px;padding:0 6px;line-height:18px;height:18px;align-self:center}
.chan{display:flex;flex-direction:column;min-width:0;min-height:0;border-right:1px solid #ddd}
.ch-head{padding:8px 18px;border-bottom:1px solid #ddd;flex:none}
.ch-title{font-weight:900;font-size:17px}.ch-sub{font-size:12px;color:#616061}
.messages{flex:1;overflow:auto;padding:8px 0}
.empty{color:#616061;padding:30px;text-align:center}
.msg{display:flex;gap:10px;padding:8px 18px}.msg:hover{background:#f8f8f8}
.msg.eph{background:#f4f9fd}
.avatar{flex:none;width:36px;height:36px;border-radius:6px;color:#fff;font-weight:700;display:flex;align-items:center;justify-content:center;font-size:14px}
.avatar.bot{background:#4a154b;font-size:20px}
.msg-body{min-width:0;flex:1}
.msg-head{display:flex;align-items:baseline;gap:6px}.author{font-weight:900}
.app-badge{background:#e8e8e8;color:#616061;font-size:10px;font-weight:700;padding:0 3px;border-radius:2px}
.time,.edited{color:#616061;font-size:12px}
.eph-note{font-size:12px;color:#616061;margin:1px 0 3px}
.b-text{word-wrap:break-word}.b-text.deleted{color:#616061;font-style:italic}
.b-section{display:flex;gap:12px;margin:4px 0}.b-main{flex:1;min-width:0}
.b-fields{display:grid;grid-template-columns:1fr 1fr;gap:4px 16px;margin-top:4px}
.b-header{font-weight:900;font-size:17px;margin:6px 0 2px}
.b-divider{border:0;border-top:1px solid #e2e2e2;margin:8px 0}
.b-context{display:flex;flex-wrap:wrap;gap:6px;align-items:center;color:#616061;font-size:12px;margin:2px 0}
.b-actions{display:flex;flex-wrap:wrap;gap:8px;margin:6px 0 8px}
.b-image img{max-width:360px;border-radius:6px;border:1px solid #e6e6e6}
.file-card{border:1px solid #ddd;border-radius:6px;padding:6px 10px;margin:4px 0;display:inline-block}.b-image figcaption{font-size:12px;color:#616061}
.ctx-img{width:18px;height:18px;border-radius:3px}.acc-img{width:64px;height:64px;border-radius:6px}
.b-unknown{color:#999;font-size:12px}
.mention{background:#e8f5fa;color:#1264a3;border-radius:3px;padding:0 2px}
a{color:#1264a3}
code{font:12px Monaco,Menlo,Consolas,monospace;background:#f6f6f6;border:1px solid #e0e0e0;border-radius:3px;padding:1px 3px;color:#c01343}
pre{font:12px Monaco,Menlo,Consolas,monospace;background:#f8f8f8;border:1px solid #e0e0e0;border-radius:4px;padding:8px;white-space:pre-wrap}
.quote{display:block;border-left:4px solid #ddd;padding-left:10px;color:#454245}
.attachment{border-left:4px solid #ddd;padding:2px 10px;margin:4px 0}
.thread{margin:6px 0 2px;border-left:2px solid #e0e0e0}
.thread summary{cursor:pointer;color:#1264a3;font-size:13px;font-weight:700;padding:0 10px}
.thread .msg{padding:6px 10px}
.sk-btn{font:inherit;font-size:14px;font-weight:700;border:1px solid #bbb;background:#fff;color:#1d1c1d;border-radius:4px;padding:3px 12px;min-height:30px;cursor:pointer}
.sk-btn:hover{background:#f6f6f6}
.sk-btn.primary{background:#007a5a;border-color:#007a5a;color:#fff}.sk-btn.primary:hover{background:#148567}
.sk-btn.danger{background:#fff;border-color:#e01e5a;color:#e01e5a}.sk-btn.danger:hover{background:#fdf2f5}
.sk-btn:disabled{opacity:.5;cursor:wait}
.sk-select,.sk-overflow,.sk-date,.sk-input{font:inherit;font-size:14px;border:1px solid #bbb;border-radius:4px;padding:4px 6px;background:#fff;min-height:30px}
.sk-overflow{width:38px;text-align:center;cursor:pointer}
.sk-input{width:100%}textarea.sk-input{resize:vertical}
.sk-choices{display:flex;flex-direction:column;gap:2px}
.composer{flex:none;margin:8px 18px 12px;border:1px solid #bbb;border-radius:8px;padding:6px 8px}
.composer input{width:100%;border:0;font:inherit;outline:none;padding:4px}
.chips{display:flex;gap:6px;margin-top:2px}.chips button{font-size:12px;border:1px solid #ddd;background:#f8f8f8;border-radius:10px;padding:1px 8px;cursor:pointer}
.iam-panel{overflow-y:auto;overflow-x:hidden;background:#fafafa;padding:8px 12px}
.iam-head{display:flex;justify-content:space-between;align-items:center}.iam-head h2{font-size:16px;margin:4px 0}
.iam-head label{font-size:12px;color:#616061}
.iam-summary{font-size:12px;color:#616061;margin-bottom:6px}
.acct h3{font-size:14px;margin:10px 0 4px}.acct h3 span{font-weight:400;color:#616061;font-size:12px}
.acct table{width:100%;table-layout:fixed;border-collapse:collapse;font-size:12px;background:#fff;border:1px solid #e6e6e6}
.acct td:first-child{width:46%}
.acct td{border-top:1px solid #eee;padding:4px 6px;vertical-align:top;overflow-wrap:anywhere}
.iam-user.mine{background:#fffbe6}
.only-mine .acct:not(.yours){display:none}
.acct-tag{background:#e3eefa;color:#1264a3}
.uname{font-weight:700}.pol{color:#8a5a00;font-size:11px;overflow-wrap:anywhere}
.home{padding:8px 18px}.owner{color:#616061;font-size:11px}.owner.none{color:#b35900}
.tag{white-space:nowrap;font-size:10px;font-weight:700;border-radius:3px;padding:0 4px;background:#e8e8e8;color:#454245}
.tag.warn{background:#fff1c2;color:#7a5200}.tag.danger{background:#fde1e8;color:#a3003a}
.key{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}.key code{font-size:11px}
.key .st{font-weight:700;color:#007a5a}.key.inactive .st{color:#a3003a}
.key .used{color:#616061}.nokeys{color:#aaa}
.key.changed,.iam-user.changed{animation:flash 2s}
@keyframes flash{from{background:#ffe58a}to{background:transparent}}
.backdrop{position:fixed;inset:0;background:rgba(0,0,0,.45);display:flex;align-items:center;justify-content:center;z-index:10}
.modal{background:#fff;border-radius:8px;width:520px;max-height:86vh;display:flex;flex-direction:column;box-shadow:0 10px 40px rgba(0,0,0,.3)}
.modal-head{display:flex;justify-content:space-between;align-items:center;padding:14px 20px;font-weight:900;font-size:19px;border-bottom:1px solid #eee}
.modal-head .x{border:0;background:none;font-size:24px;cursor:pointer;color:#616061}
.modal-body{padding:12px 20px;overflow:auto}
.modal-foot{display:flex;justify-content:flex-end;gap:8px;padding:12px 20px;border-top:1px solid #eee}
.b-input{margin:10px 0}.b-input label{display:block;font-weight:700;margin-bottom:4px}
.optional{font-weight:400;color:#616061}.hint{font-size:12px;color:#616061;margin-top:2px}
.error{color:#e01e5a;font-size:13px;margin-top:3px}.has-error .sk-input,.has-error .sk-date{border-color:#e01e5a}
#toast{position:fixed;bottom:20px;left:50%;transform:translateX(-50%);background:#1d1c1d;color:#fff;padding:8px 16px;border-radius:6px;font-size:14px;display:none;z-index:20;max-width:80vw}
"""

JS = r"""
(function(){
const cfg = __CONFIG__;
let last = {}; let modalKey = cfg.modalKey; let busy = false;
const $ = (id) => document.getElementById(id);
function toast(text){ const t=$("toast"); t.textContent=text; t.style.display="block"; clearTimeout(t._h); t._h=setTimeout(()=>t.style.display="none",4000); }
async function post(path, data){
  const r = await fetch(path,{method:"POST",headers:{"Content-Type":"application/json"},body:JSON.stringify(Object.assign({as:cfg.viewer},data))});
  let j = {}; try { j = await r.json(); } catch(e) {}
  if(!r.ok || j.ok===false){ if(j.error) toast(j.error); }
  setTimeout(refresh,150); setTimeout(refresh,700);
  return j;
}
function keysOf(root){ const m={}; root.querySelectorAll(".key[data-key-id]").forEach(k=>m[k.dataset.keyId]=k.dataset.status); return m; }
function swap(id, html){
  const el=$(id); if(last[id]===html) return false; last[id]=html;
  if(id==="messages"){ const atBottom = el.scrollHeight-el.scrollTop-el.clientHeight < 40; el.innerHTML=html; if(atBottom) el.scrollTop=el.scrollHeight; return true; }
  if(id==="iam"){ const before=keysOf(el); const top=el.parentNode.scrollTop; el.innerHTML=html; el.parentNode.scrollTop=top;
    el.querySelectorAll(".key[data-key-id]").forEach(k=>{ if(before[k.dataset.keyId] && before[k.dataset.keyId]!==k.dataset.status) k.classList.add("changed"); }); return true; }
  el.innerHTML=html; return true;
}
async function refresh(){
  try{
    const r = await fetch("/demo/state?"+new URLSearchParams({as:cfg.viewer,ch:cfg.channel}));
    if(!r.ok) return; const s = await r.json();
    swap("sidebar",s.sidebar); swap("header",s.header); swap("messages",s.messages); swap("iam",s.iam); swap("warnings",s.warnings);
    if(s.modal_key!==modalKey){ modalKey=s.modal_key; $("modal").innerHTML=s.modal; const f=$("modal").querySelector("input,textarea,select"); if(f) f.focus(); }
  }catch(e){}
}
function stateOf(root){
  const state={};
  root.querySelectorAll("[data-aid][data-kind]").forEach(el=>{
    const k=el.dataset.kind; if(k==="button"||k==="overflow") return;
    let v;
    if(k==="checkboxes") v=[...el.querySelectorAll("input:checked")].map(i=>i.value);
    else if(k==="radio_buttons"){ const c=el.querySelector("input:checked"); v=c?c.value:null; }
    else if(el.multiple) v=[...el.selectedOptions].map(o=>o.value);
    else v=el.value;
    (state[el.dataset.bid] = state[el.dataset.bid] || {})[el.dataset.aid]=v;
  });
  return state;
}
function confirmed(el){
  if(!el.dataset.confirm) return true;
  const c=JSON.parse(el.dataset.confirm);
  return window.confirm(c.title+"\n\n"+c.text+"\n\n["+c.confirm+"] / ["+c.deny+"]");
}
async function act(el, selected){
  const box=el.closest("[data-src]"); if(!box) return;
  if(!confirmed(el)){ if(el.tagName==="SELECT" && el.classList.contains("sk-overflow")) el.value=""; return; }
  const d={src:box.dataset.src==="msg"?"message":box.dataset.src==="eph"?"ephemeral":box.dataset.src,
           channel:box.dataset.ch||null, ts:box.dataset.ts||null, view:box.dataset.view||null,
           block_id:el.dataset.bid, action_id:el.dataset.aid, selected:selected, state:stateOf(box)};
  if(el.dataset.url) window.open(el.dataset.url,"_blank","noopener");
  if(el.tagName==="BUTTON"){ el.disabled=true; }
  await post("/demo/action", d);
  if(el.tagName==="BUTTON"){ el.disabled=false; }
  if(el.classList.contains("sk-overflow")) el.value="";
}
document.addEventListener("click", (ev)=>{
  const b=ev.target.closest("button[data-aid][data-dispatch]"); if(b){ ev.preventDefault(); act(b,null); return; }
  const c=ev.target.closest("[data-close]"); if(c){ const f=c.closest("form.modal"); post("/demo/close",{view:f.dataset.view}); return; }
  const chip=ev.target.closest("[data-cmd]"); if(chip){ $("command").value=chip.dataset.cmd; $("composer").requestSubmit(); }
});
document.addEventListener("change", (ev)=>{
  const el=ev.target.closest("[data-aid][data-dispatch]"); if(!el||el.tagName==="BUTTON") return;
  const k=el.dataset.kind; let v;
  if(k==="checkboxes") v=[...el.querySelectorAll("input:checked")].map(i=>i.value);
  else if(k==="radio_buttons"){ const c=el.querySelector("input:checked"); v=c?c.value:null; }
  else if(el.multiple) v=[...el.selectedOptions].map(o=>o.value);
  else v=el.value;
  if(v===""||v===null) return;
  act(el, v);
});
document.addEventListener("submit", async (ev)=>{
  const f=ev.target;
  if(f.id==="composer"){ ev.preventDefault(); const i=$("command"); const text=i.value.trim(); if(!text) return; i.value="";
    await post("/demo/command",{channel:cfg.channel==="home"?null:cfg.channel,text:text}); return; }
  if(f.classList.contains("modal")){ ev.preventDefault();
    const btn=f.querySelector("button[type=submit]"); if(btn) btn.disabled=true;
    const values={}; const all=stateOf(f);
    f.querySelectorAll("[data-input]").forEach(el=>{ const b=el.dataset.bid,a=el.dataset.aid; if(all[b]&&a in all[b]) (values[b]=values[b]||{})[a]=all[b][a]; });
    const j=await post("/demo/submit",{view:f.dataset.view,values:values});
    if(btn) btn.disabled=false;
    if(j && j.errors){ modalKey=null; refresh(); }
  }
});
$("viewas").addEventListener("change",(ev)=>{ location.href="/?"+new URLSearchParams({as:ev.target.value}); });
const only=$("only-mine"); only.checked=localStorage.getItem("steward-only-mine")==="1";
const applyOnly=()=>{ $("iam").classList.toggle("only-mine",only.checked); localStorage.setItem("steward-only-mine",only.checked?"1":"0"); };
only.addEventListener("change",applyOnly); applyOnly();
if(cfg.channel==="home") post("/demo/home",{});
last={sidebar:$("sidebar").innerHTML};
const m=$("messages"); if(cfg.channel!=="home") m.scrollTop=m.scrollHeight;
setInterval(refresh,1000); refresh();
})();
"""


# ---------------------------------------------------------------------------------------
# HTTP


#: The browser went away mid-answer ("View as" reloads the page, a tab closes): nothing to
#: answer and nothing to report; the demo's terminal stays quiet.
CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


def client_gone() -> bool:
    """Whether the exception being handled is a client disconnect."""
    import sys

    return isinstance(sys.exc_info()[1], CLIENT_GONE)


class _PageServer(ThreadingHTTPServer):
    daemon_threads = True
    demo: _Demo

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not client_gone():  # a disconnect is not an error; anything else is still printed
            super().handle_error(request, client_address)

    def server_bind(self) -> None:
        import socketserver

        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Handler(BaseHTTPRequestHandler):
    server_version = "StewardDemo/1.0"

    @property
    def demo(self) -> _Demo:
        assert isinstance(self.server, _PageServer)
        return self.server.demo

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, default=str).encode("utf-8"), "application/json; charset=utf-8")

    def _host_ok(self) -> bool:
        bound = self.server.server_address[0]
        if bound not in ("127.0.0.1", "::1", "localhost"):
            return True
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return host in ("127.0.0.1", "localhost", "::1")

    def _viewer(self, value: str | None) -> str:
        ids = {p.slack_id for p in self.demo.viewers()}
        if value in ids:
            return str(value)
        return self.demo.viewers()[0].slack_id

    def _channel(self, viewer: str, value: str | None) -> str:
        if value == "home":
            return "home"
        if value and self.demo.can_see(viewer, value):
            return value
        return self.demo.default_channel(viewer)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        try:
            self._get()
        except CLIENT_GONE:
            self.close_connection = True

    def do_POST(self) -> None:
        try:
            self._post()
        except CLIENT_GONE:
            self.close_connection = True

    def _get(self) -> None:
        if not self._host_ok():
            self._json(403, {"ok": False, "error": "forbidden host"})
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path == "/":
                viewer = self._viewer(query.get("as"))
                page = render_page(self.demo, viewer, self._channel(viewer, query.get("ch")))
                self._send(200, page.encode("utf-8"), "text/html; charset=utf-8")
            elif url.path == "/demo/state":
                viewer = self._viewer(query.get("as"))
                self._json(200, render_parts(self.demo, viewer, self._channel(viewer, query.get("ch"))))
            elif url.path == "/demo/iam":
                self._json(200, self.demo.iam_state(max_age=0))
            elif url.path == "/demo/slack":
                assert self.demo.fake is not None
                self._json(200, self.demo.fake.snapshot())
            elif url.path == "/demo/summary":
                self._json(200, {"timings": self.demo.timings, "summary": self.demo.summary,
                                 "warnings": self.demo.warnings})
            elif url.path.startswith("/demo/file/"):
                viewer = self._viewer(query.get("as"))
                found = self.demo.file(viewer, url.path.rsplit("/", 1)[-1])
                if found is None:
                    self._json(404, {"ok": False, "error": "no such file"})
                    return
                content, name = found
                kind = "image/png" if name.lower().endswith(".png") else "application/octet-stream"
                self._send(200, content, kind)
            elif url.path == "/favicon.ico":
                self._send(204, b"", "image/x-icon")
            else:
                self._json(404, {"ok": False, "error": "not found"})
        except CLIENT_GONE:
            raise  # no 500 to a closed socket
        except Exception as exc:  # the page shows it; the demo keeps running
            self._json(500, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})

    def _post(self) -> None:
        if not self._host_ok():
            self._json(403, {"ok": False, "error": "forbidden host"})
            return
        if not (self.headers.get("Content-Type") or "").lower().startswith("application/json"):
            self._json(415, {"ok": False, "error": "send JSON"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._json(413, {"ok": False, "error": "too large"})
            return
        try:
            data = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            self._json(400, {"ok": False, "error": "bad JSON"})
            return
        demo = self.demo
        viewer = self._viewer(data.get("as"))
        path = urlsplit(self.path).path
        try:
            if path == "/demo/command":
                channel = data.get("channel")
                if not channel or not demo.can_see(viewer, str(channel)):
                    channel = demo.dm_channel(viewer)
                result = demo.slash_command(viewer, str(channel), str(data.get("text") or ""))
            elif path == "/demo/action":
                source = str(data.get("src") or "message")
                if source not in ("message", "ephemeral", "view", "home"):
                    raise LookupError("unknown source")
                channel = data.get("channel")
                if channel and not demo.can_see(viewer, str(channel)):
                    raise LookupError("not your channel")
                result = demo.block_action(
                    viewer,
                    source=source,
                    channel=str(channel) if channel else None,
                    ts=str(data["ts"]) if data.get("ts") else None,
                    view_id=str(data["view"]) if data.get("view") else None,
                    block_id=str(data.get("block_id") or ""),
                    action_id=str(data.get("action_id") or ""),
                    selected=data.get("selected"),
                    state=data.get("state") if isinstance(data.get("state"), dict) else {},
                )
            elif path == "/demo/submit":
                values = data.get("values") if isinstance(data.get("values"), dict) else {}
                result = demo.submit_view(viewer, str(data.get("view") or ""), values)
            elif path == "/demo/close":
                result = demo.close_view(viewer, str(data.get("view") or ""))
            elif path == "/demo/home":
                result = demo.open_home(viewer)
            else:
                self._json(404, {"ok": False, "error": "not found"})
                return
        except LookupError as exc:
            self._json(409, {"ok": False, "error": str(exc).strip("'\"")})
            return
        except CLIENT_GONE:
            raise  # no 500 to a closed socket
        except Exception as exc:
            self._json(500, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
            return
        demo.invalidate_iam()
        self._json(200, result)


def make_page_server(demo: _Demo, host: str, port: int) -> _PageServer:
    """Bind the page's port now (a busy port fails early); serve it later."""
    server = _PageServer((host, port), _Handler, bind_and_activate=True)
    server.demo = demo
    return server
