"""`steward doctor`: does this deployment have everything a running bot needs?

Each check is one line of a checklist: passed, failed (with the fix, in words a person can
act on) or informational. Nothing is written anywhere: the AWS part is a dry collection
(the scan's read calls, results thrown away), the database is only read, the scheduler
lock is taken for an instant and given back when no worker holds it.

Order matters for the reader: Slack first (the token gates every other Slack line), then
AWS per account, the database, the scheduler.
"""

from __future__ import annotations

from pathlib import Path

import boto3
from slack_sdk import WebClient
from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.db.engine import make_engine
from bot.db.migrate import current_revision, head_revision
from bot.run.leader import leader_lock
from bot.slack.client import make_web_client
from bot.slack.health import Check, SlackChecks
from checks.accounts import Target, discover_targets, session_for
from checks.collect import CollectError, collect_account

AWS, DATABASE, SCHEDULER = "AWS", "Database", "Scheduler"
#: Inline policies of the member role (deploy/cloudformation/member-account-role.yaml) other
#: than the read-only scan policy: present when the stack was deployed with remediation on.
SCAN_POLICY_NAME = "iam-steward-scan"
POLICY_PREFIX = "iam-steward-"


def _role_name(target: Target) -> str | None:
    return target.role_arn.rsplit("/", 1)[-1] if target.role_arn else None


def aws_checks(settings: Settings, base_session: boto3.Session) -> list[Check]:
    """Per configured account: the role can be assumed, the scan's reads are allowed, and
    whether remediation is enabled there."""
    try:
        targets = discover_targets(base_session, account_roles=settings.account_roles,
                                   org_role_name=settings.org_role_name,
                                   max_attempts=min(settings.aws_max_attempts, 3))
    except CollectError as exc:
        return [Check(AWS, "accounts to scan", False, str(exc),
                      "check STEWARD_ACCOUNT_ROLES / STEWARD_ORG_ROLE_NAME and the credentials Steward runs with")]
    checks: list[Check] = []
    for target in targets:
        checks += _account_checks(settings, base_session, target)
    return checks


def _account_checks(settings: Settings, base_session: boto3.Session, target: Target) -> list[Check]:
    label = target.label
    try:
        session = session_for(target, base_session, external_id=settings.external_id,
                              max_attempts=min(settings.aws_max_attempts, 3))
    except CollectError as exc:
        return [Check(AWS, f"{label}: role assumable", False, str(exc),
                      "the member stack's ExternalId must equal STEWARD_EXTERNAL_ID, and its "
                      "StewardRoleArn/StewardAccountId must name the role Steward runs as")]
    checks = []
    if target.role_arn:
        checks.append(Check(AWS, f"{label}: role assumable", True, "with the ExternalId"
                            if settings.external_id else "without an ExternalId"))
    try:
        snapshot = collect_account(session, expected_account=target.account_id,
                                   max_attempts=min(settings.aws_max_attempts, 3))
    except CollectError as exc:
        fix = ("deploy/update the member stack (deploy/cloudformation/member-account-role.yaml); "
               "its scan policy is exactly the reads a scan makes") if target.role_arn else (
               "run Steward on an IAM role with the hub and scan policies "
               "(deploy/cloudformation/hub-role.yaml)")
        checks.append(Check(AWS, f"{label}: scan reads allowed", False, str(exc), fix))
        return checks
    checks.append(Check(AWS, f"{label}: scan reads allowed", True,
                        f"{len(snapshot.users)} users, {len(snapshot.roles)} roles read, nothing saved"))
    role_name = _role_name(target)
    role = next((r for r in snapshot.roles if r.name == role_name), None)
    if role is not None:
        extra = sorted(p.name for p in role.inline_policies
                       if p.name.startswith(POLICY_PREFIX) and p.name != SCAN_POLICY_NAME)
        detail = (f"enabled ({', '.join(extra)})" if extra else
                  "scan only: clean-ups will be refused (deploy the stack with EnableRemediation=true to allow them)")
        checks.append(Check(AWS, f"{label}: remediation", None, detail))
    return checks


def database_checks(settings: Settings) -> list[Check]:
    url = settings.effective_database_url
    name = "reachable and migrated"
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:" \
            and not Path(parsed.database).exists():
        return [Check(DATABASE, name, False, f"no database at {parsed.database}", "run `steward db upgrade`")]
    engine = make_engine(url)
    try:
        current = current_revision(engine)
    except Exception as exc:  # any driver error: reported as a line, never a traceback
        return [Check(DATABASE, name, False, f"cannot connect ({type(exc).__name__})",
                      "check STEWARD_DATABASE_URL and that the database server is up")]
    finally:
        engine.dispose()
    head = head_revision()
    if current != head:
        return [Check(DATABASE, name, False, f"schema at {current or 'none'}, this version needs {head}",
                      "run `steward db upgrade` (the Procfile's release phase)")]
    return [Check(DATABASE, name, True, f"schema at {head}")]


def scheduler_checks(settings: Settings) -> list[Check]:
    name = "a worker leads the scheduler"
    try:
        lock = leader_lock(settings.effective_database_url, holder="steward-doctor")
        free = lock.try_acquire()
    except Exception as exc:
        return [Check(SCHEDULER, name, False, f"cannot check the leader lock ({type(exc).__name__})",
                      "check STEWARD_DATABASE_URL")]
    if free:
        lock.release()
        return [Check(SCHEDULER, name, False, "no `steward worker` holds the scheduler lock",
                      "start `steward worker` (the Procfile's worker process); scans, reminders and the digest need it")]
    holder = getattr(lock, "current_holder", lambda: None)()
    return [Check(SCHEDULER, name, True, f"held by {holder}" if holder else "lock held")]


def aws_session() -> boto3.Session:
    """The credentials Steward runs with (the standard chain: its platform's role)."""
    return boto3.Session()


def run(settings: Settings, *, needed_scopes: list[str], client: WebClient | None = None) -> list[Check]:
    """Every check, in checklist order."""
    slack = SlackChecks(settings, client or make_web_client(settings, timeout=10), needed_scopes)
    checks = slack.run()
    checks += aws_checks(settings, aws_session())
    database = database_checks(settings)
    checks += database
    if database[0].ok:
        checks += scheduler_checks(settings)
    return checks
