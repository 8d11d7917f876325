"""Use cases shared by the CLI, slash commands, buttons and the scheduler.

The only package that combines `checks/` (AWS, rules, remediation) with `bot/db`
(persistence), and the owner of transactions: a state change and its audit row are
written together.
"""

from bot.services.common import ServiceError, utcnow
from bot.services.scans import AccountOutcome, ScanReport, ScanService, sync_findings
from bot.services.steward import Steward, WhoAmIView

__all__ = [
    "AccountOutcome",
    "ScanReport",
    "ScanService",
    "ServiceError",
    "Steward",
    "WhoAmIView",
    "sync_findings",
    "utcnow",
]
