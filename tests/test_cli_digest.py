"""`steward digest --print|--post` through the real CLI (typer's CliRunner) and the Slack fake."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from bot.cli.main import app
from bot.db.engine import session_scope
from bot.db.models import DigestPost, Finding
from bot.services.common import utcnow
from sandbox.slack_fake import SlackFake


def steward(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def world(engine, database_url, monkeypatch):
    monkeypatch.setenv("STEWARD_DATABASE_URL", database_url)
    now = utcnow()
    with session_scope(engine) as session:
        for i, (severity, check) in enumerate([("critical", "root-mfa-disabled"), ("medium", "old-access-key"),
                                               ("medium", "old-access-key")]):
            session.add(Finding(
                fingerprint=f"fp{i}", account_id="111122223333", check_id=check, severity=severity,
                resource=f"arn:aws:iam::111122223333:user/u{i}", title=f"T{i}", state="open",
                first_seen=now - timedelta(days=20 + i), last_seen=now, state_changed_at=now))
    return engine


def test_print_is_the_default_and_needs_no_slack(world, tmp_path):
    chart = tmp_path / "chart.png"
    result = steward("digest", "--chart", str(chart))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("IAM weekly digest ")
    assert "Open findings: 3 (critical 1, high 0, medium 2, low 0)" in result.stdout
    assert "root-mfa-disabled" in result.stdout and "111122223333: 3 open" in result.stdout
    assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert steward("digest", "--print").stdout.splitlines()[:3] == result.stdout.splitlines()[:3]


def test_post_names_the_missing_settings(world):
    result = steward("digest", "--post")
    assert result.exit_code == 2
    assert "missing setting: SLACK_BOT_TOKEN, STEWARD_SECURITY_CHANNEL" in result.stderr


def test_post_twice_posts_once(world, monkeypatch):
    with SlackFake() as fake:
        channel = fake.add_channel("security")
        monkeypatch.setenv("SLACK_API_URL", fake.base_url)
        monkeypatch.setenv("SLACK_BOT_TOKEN", fake.token)
        monkeypatch.setenv("STEWARD_SECURITY_CHANNEL", channel)

        first = steward("digest", "--post")
        assert first.exit_code == 0, first.stderr
        assert f"posted to {channel}" in first.stdout and ", chart F" in first.stdout
        second = steward("digest", "--post")
        assert second.exit_code == 0, second.stderr
        assert "not posted again: already posted" in second.stdout

        (message,) = fake.messages(channel, replies=False)
        assert "3 open findings" in message["text"]
        assert len(fake.files()) == 1
    with session_scope(world) as session:
        assert session.execute(select(func.count()).select_from(DigestPost)).scalar_one() == 1


def test_post_to_a_channel_slack_does_not_know_is_a_settings_error(world, monkeypatch):
    with SlackFake() as fake:
        monkeypatch.setenv("SLACK_API_URL", fake.base_url)
        monkeypatch.setenv("SLACK_BOT_TOKEN", fake.token)
        monkeypatch.setenv("STEWARD_SECURITY_CHANNEL", "C0NOSUCH01")
        result = steward("digest", "--post")
    assert result.exit_code == 2
    assert "the digest was not posted" in result.stderr and "channel_not_found" in result.stderr
    assert "STEWARD_SECURITY_CHANNEL" in result.stderr


def test_commands_are_registered():
    result = steward("--help")
    assert "worker" in result.stdout and "digest" in result.stdout


def test_post_mentions_owners_who_are_workspace_members(world, monkeypatch):
    """The posted digest (what the scheduler posts) @mentions an owner the owner directory
    finds in Slack; an owner nobody in the workspace has stays as written."""
    with session_scope(world) as session:
        for finding in session.execute(select(Finding)).scalars():
            finding.owner = {"fp0": "aisha.bello@acme.example", "fp1": "gone@acme.example"}.get(finding.fingerprint)
    with SlackFake() as fake:
        channel = fake.add_channel("security")
        aisha = "U0AISHA001"
        fake.add_user(aisha, name="aisha", email="aisha.bello@acme.example")
        monkeypatch.setenv("SLACK_API_URL", fake.base_url)
        monkeypatch.setenv("SLACK_BOT_TOKEN", fake.token)
        monkeypatch.setenv("STEWARD_SECURITY_CHANNEL", channel)
        result = steward("digest", "--post")
        assert result.exit_code == 0, result.stderr
        (message,) = fake.messages(channel, replies=False)
    text = json.dumps(message["blocks"])
    oldest = text[text.index("Oldest open problems"):]
    assert f"owner <@{aisha}>" in oldest and "aisha.bello@acme.example" not in oldest
    assert "owner gone@acme.example" in oldest
