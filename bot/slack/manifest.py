"""The Slack app manifests, generated from the code (like the IAM policies).

* Scopes: every Web API method the code calls (found by reading ``bot/`` and ``checks/``:
  ``client.<method>(...)`` and ``api_call("<method>")``), looked up in Slack's requirements
  (``bot.slack.methods``), plus ``commands`` for the slash command.
* The slash command, its description and usage hint: ``bot.slack.grammar``.
* Events and interactivity: the listeners' ``app.event(...)`` / ``app.action(...)`` /
  ``app.view(...)`` registrations.
* Both delivery modes: HTTP (request URLs) and Socket Mode.

``python -m bot.slack.manifest --write`` rewrites ``deploy/slack/manifest.yml`` and
``manifest-socket-mode.yml``; ``--check`` (and ``tests/test_deploy_manifest.py``) fails when
the committed files differ from what the code needs.
"""

from __future__ import annotations

import ast
import copy
import functools
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from slack_sdk import WebClient

from bot.slack import grammar as commands
from bot.slack.methods import scopes_for
from checks.permissions import to_yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("bot", "checks")
#: Not the product: the local Slack and the demo drive the fake, not Slack.
EXCLUDED = ("sandbox/",)
OUTPUT = {"http": "deploy/slack/manifest.yml", "socket": "deploy/slack/manifest-socket-mode.yml"}
PLACEHOLDER_URL = "https://steward.example.com"
EVENTS_PATH = "/slack/events"

CALLED = re.compile(r"\.(\w+)\(")

#: Methods called by the libraries rather than by our code.
IMPLICIT_METHODS = {
    "auth.test": "slack_bolt.App verifies the bot token when it is built",
    "apps.connections.open": "Socket Mode connects with the app-level token",
}

#: The conversations each per-conversation method is used on. DMs to owners are ``im``;
#: the security channel may be public or private, so both kinds are requested for it.
CONVERSATION_KINDS: dict[str, tuple[str, ...]] = {
    "conversations.open": ("im",),  # one owner's DM, never a group DM or a channel
    "conversations.history": ("im", "public", "private"),  # resuming a DM or triage post
    "conversations.replies": ("im", "public", "private"),
    "conversations.info": ("public", "private"),  # steward doctor: the security channel
}


@functools.cache
def _python_names() -> dict[str, tuple[str, ...]]:
    """slack_sdk WebClient method name -> the Web API methods it calls (files_upload_v2
    calls two), read from the SDK's source once."""
    tree = ast.parse(Path(inspect.getfile(WebClient)).read_text())
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == WebClient.__name__]
    direct: dict[str, list[str]] = {}
    delegates: dict[str, list[str]] = {}
    for func in cls.body:
        if not isinstance(func, ast.FunctionDef) or func.name.startswith("_"):
            continue
        direct[func.name], delegates[func.name] = [], []
        for node in ast.walk(func):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    isinstance(node.func.value, ast.Name) and node.func.value.id == "self":
                if node.func.attr == "api_call" and node.args and isinstance(node.args[0], ast.Constant):
                    direct[func.name].append(str(node.args[0].value))
                else:
                    delegates[func.name].append(node.func.attr)
    resolved: dict[str, tuple[str, ...]] = {}
    for name, found in direct.items():
        calls = found + [m for other in delegates[name] for m in direct.get(other, ())]
        if calls:
            resolved[name] = tuple(dict.fromkeys(calls))
    return resolved


def _source_files(root: Path) -> list[Path]:
    files = []
    for top in SOURCES:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if not rel.startswith(EXCLUDED):
                files.append(path)
    return files


def called_methods() -> dict[str, set[str]]:
    """Every Web API method the product's code calls -> the files that call it."""
    return {method: set(files) for method, files in _scan(ROOT).items()}


@functools.cache
def _scan(root: Path) -> dict[str, frozenset[str]]:
    names = _python_names()
    found: dict[str, set[str]] = {}
    for path in _source_files(root):
        rel = path.relative_to(root).as_posix()
        text = path.read_text()
        if not {"api_call", *names} & set(CALLED.findall(text)):
            continue  # a cheap look first: most files call no Slack method at all
        for node in ast.walk(ast.parse(text, filename=rel)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            attr = node.func.attr
            methods: tuple[str, ...] = names.get(attr, ())
            if attr == "api_call" and node.args and isinstance(node.args[0], ast.Constant):
                methods = (str(node.args[0].value),)
            for method in methods:
                found.setdefault(method, set()).add(rel)
    for method, why in IMPLICIT_METHODS.items():
        found.setdefault(method, set()).add(why)
    return {method: frozenset(files) for method, files in found.items()}


def _registrations(kind: str) -> list[str]:
    """The first string argument of every ``app.<kind>(...)`` in the listeners, in order."""
    seen: list[str] = []
    for path in sorted((ROOT / "bot" / "slack" / "listeners").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == kind and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "app"):
                arg = node.args[0] if node.args else None
                value = arg.value if isinstance(arg, ast.Constant) else f"<{kind}>"
                if value not in seen:
                    seen.append(str(value))
    return seen


def needed_scopes(methods: dict[str, set[str]] | None = None) -> list[str]:
    """The bot scopes the code needs, sorted: its methods' scopes plus ``commands``."""
    methods = called_methods() if methods is None else methods
    scopes = {"commands"}
    for method in methods:
        scopes |= scopes_for([method], CONVERSATION_KINDS.get(method, ()))
    return sorted(scopes)


@functools.cache
def _build(mode: str) -> dict[str, Any]:
    if mode not in OUTPUT:
        raise ValueError(f"mode must be one of {', '.join(OUTPUT)}")
    http = mode == "http"
    url = PLACEHOLDER_URL + EVENTS_PATH
    command: dict[str, Any] = {"command": commands.SLASH_COMMAND}
    if http:
        command["url"] = url
    command.update(description=commands.DESCRIPTION, usage_hint=commands.USAGE_HINT, should_escape=True)
    events: dict[str, Any] = {"request_url": url} if http else {}
    events["bot_events"] = _registrations("event")
    interactive = bool(_registrations("action") or _registrations("view"))
    interactivity: dict[str, Any] = {"is_enabled": interactive}
    if http and interactive:
        interactivity["request_url"] = url
    return {
        "display_information": {
            "name": "IAM Steward",
            "description": "AWS IAM hygiene, routed to the people who own it.",
            "background_color": "#232f3e",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": "app_home_opened" in events["bot_events"],
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": True,
            },
            "bot_user": {"display_name": "IAM Steward", "always_online": True},
            "slash_commands": [command],
        },
        "oauth_config": {"scopes": {"bot": needed_scopes()}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": not http,
            "token_rotation_enabled": False,
        },
    }


def build(mode: str = "http") -> dict[str, Any]:
    """The manifest for ``mode`` (``http`` or ``socket``) as a dict."""
    return copy.deepcopy(_build(mode))


HEADERS = {
    "http": (
        "IAM Steward — Slack app manifest (HTTP mode). Generated by `python -m bot.slack.manifest --write`\n"
        "from the code: do not edit by hand. Create the app at https://api.slack.com/apps ->\n"
        "\"From an app manifest\", paste this file, and replace https://steward.example.com\n"
        "with the public (TLS) URL of `steward serve`."
    ),
    "socket": (
        "IAM Steward — Slack app manifest (Socket Mode: no public URL needed). Generated by\n"
        "`python -m bot.slack.manifest --write` from the code: do not edit by hand. Run `steward socket`\n"
        "with SLACK_APP_TOKEN (an app-level token with connections:write)."
    ),
}


def render(mode: str) -> str:
    return to_yaml(build(mode), HEADERS[mode])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["--write"], ["--check"], []):
        print("usage: python -m bot.slack.manifest [--write | --check]", file=sys.stderr)
        return 2
    stale = []
    for mode, rel in OUTPUT.items():
        path = ROOT / rel
        text = render(mode)
        if args == ["--write"]:
            path.write_text(text)
            print(f"wrote {rel}")
        elif not path.exists() or path.read_text() != text:
            stale.append(rel)
    if stale:
        print(f"out of date: {', '.join(stale)} (run python -m bot.slack.manifest --write)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
