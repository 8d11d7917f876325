"""The shipped Slack manifests declare what the code needs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCOPES = {"commands", "chat:write", "im:write", "users:read", "users:read.email", "usergroups:read", "files:write",
          "channels:history", "groups:history"}


@pytest.mark.parametrize("name", ["manifest.yml", "manifest-socket-mode.yml"])
def test_manifest_has_command_scopes_and_events(name):
    manifest = yaml.safe_load((ROOT / "deploy" / "slack" / name).read_text())
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == SCOPES
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/iam" and command["should_escape"] is True
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    socket = manifest["settings"]["socket_mode_enabled"]
    assert socket is (name == "manifest-socket-mode.yml")
    if not socket:
        urls = {command["url"], manifest["settings"]["event_subscriptions"]["request_url"],
                manifest["settings"]["interactivity"]["request_url"]}
        assert {u.rsplit("/", 2)[-2:] == ["slack", "events"] for u in urls} == {True}
