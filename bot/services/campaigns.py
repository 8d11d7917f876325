"""Owner campaigns: route findings to people, take their decisions, remind, escalate.

One service, `Campaigns`, assembled from its parts:
  routing (bot/services/campaign_routing.py): DMs, triage, reminders, escalations, expiry;
  decisions (bot/services/campaign_decisions.py): clicks, Keep…, Not mine, assignment;
  messages (bot/services/campaign_messages.py): rebuilding cards, outcomes;
  approvals (bot/services/approvals.py): approvals, undo, settling interrupted work.
Finding state changes only through bot.core.lifecycle's transition table.
"""

from __future__ import annotations

from slack_sdk import WebClient
from sqlalchemy import Engine

from bot.config import Settings
from bot.services.approvals import ApprovalFlow, Refusal
from bot.services.campaign_decisions import KEEP_REASON_MAX, CampaignDecisions
from bot.services.campaign_messages import CampaignMessages, outcome_of
from bot.services.campaign_routing import CampaignRouting, CycleReport, Pacer
from bot.services.common import Clock, utcnow
from bot.services.remediation import RemediationService

__all__ = ["KEEP_REASON_MAX", "Campaigns", "CycleReport", "Pacer", "Refusal", "outcome_of"]


class Campaigns(CampaignRouting, CampaignDecisions, CampaignMessages, ApprovalFlow):
    def __init__(self, settings: Settings, *, engine: Engine, client: WebClient, directory,
                 remediations: RemediationService, clock: Clock = utcnow, pacer: Pacer | None = None):
        self.settings = settings
        self.engine = engine
        self.client = client
        self.directory = directory
        self.remediations = remediations
        self.clock = clock
        self.pacer = pacer or Pacer()
        self._blocked: dict[str, str] = {}  # "*" or a channel -> why Slack refuses it, this cycle
