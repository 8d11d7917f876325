"""Wiring for the long-running processes: settings -> engine, Slack client, services, app."""

from __future__ import annotations

from dataclasses import dataclass

from slack_bolt import App
from slack_sdk import WebClient
from sqlalchemy import Engine

from bot.config import Settings
from bot.db.audit_key import load_process_keyring
from bot.db.engine import make_engine
from bot.db.migrate import ensure_schema
from bot.services.scans import count_aws_throttles
from bot.services.steward import Steward
from bot.slack.client import make_web_client
from bot.slack.owners import OwnerDirectory


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    client: WebClient
    steward: Steward

    def app(self, *, socket_mode: bool = False) -> App:
        from bot.slack.app import create_app

        return create_app(self.settings, self.steward, client=self.client, socket_mode=socket_mode)


def build_runtime(settings: Settings, *, settle: bool = True) -> Runtime:
    """Everything a Slack-serving process needs. Raises SettingsError / RuntimeError early."""
    load_process_keyring(settings)  # STEWARD_AUDIT_KEY's secrets, fetched once at start
    count_aws_throttles()  # for /metrics
    engine = make_engine(settings.effective_database_url)
    ensure_schema(engine, upgrade=settings.uses_embedded_database)
    client = make_web_client(settings)
    directory = OwnerDirectory(
        client,
        approvers=settings.security_approvers,
        approver_usergroup=settings.security_usergroup,
    )
    runtime = Runtime(settings, engine, client, Steward(settings, engine=engine, directory=directory, client=client))
    # Remediations whose process is gone (a crash, a SIGKILL) are settled first, and their
    # DMs and approval messages updated (the worker's `reconcile` job keeps doing it).
    if settle:
        runtime.steward.campaigns.settle_interrupted()
    return runtime

