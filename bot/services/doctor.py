"""`steward doctor`: does this deployment have everything a running bot needs?

Each check is one line of a checklist: passed, failed (with the fix, in words a person can
act on) or informational. Nothing is written anywhere: the AWS part is a dry collection
(the scan's read calls, results thrown away), the database is only read, the scheduler
lock is taken for an instant and given back when no worker holds it.

Order matters for the reader: Slack first (the token gates every other Slack line), then
AWS per account (the scan role: assumable, its reads, Access Advisor, remediation), the
opt-in roles (restore, rotation), the activity queue, the database, the scheduler.

The newer lines make no change and start nothing either:

* usage collection (Access Advisor): GenerateServiceLastAccessedDetails for a role that
  does not exist and GetServiceLastAccessedDetails for a job id that does not exist. IAM
  authorizes before it looks the entity up, so AccessDenied means "not allowed" and
  NoSuchEntity (or InvalidInput) means "allowed, and nothing was started";
* the restore and rotation roles: sts:AssumeRole only, the credentials thrown away;
* the activity queue: sqs:GetQueueAttributes (never ReceiveMessage: a receive would hide
  the messages from `steward events` and count towards their dead-lettering).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.exceptions import ClientError
from slack_sdk import WebClient
from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.core.queue_url import queue_region, queue_url_problem
from bot.db.engine import make_engine
from bot.db.migrate import current_revision, head_revision
from bot.run.leader import leader_lock
from bot.slack.client import make_web_client
from bot.slack.health import Check, SlackChecks
from checks.accounts import Target, discover_targets, parse_role_arn, restore_target, session_for
from checks.aws_calls import aws_client, caller_identity, client_config, error_code
from checks.collect import CollectError, collect_account

AWS, DATABASE, SCHEDULER = "AWS", "Database", "Scheduler"
RESTORE, ROTATION, ACTIVITY = "Restore role", "Rotation role", "Activity intake"
#: Inline policies of the member role (deploy/cloudformation/member-account-role.yaml) other
#: than the read-only scan policy: present when the stack was deployed with remediation on.
SCAN_POLICY_NAME = "iam-steward-scan"
POLICY_PREFIX = "iam-steward-"


def _role_name(target: Target) -> str | None:
    return target.role_arn.rsplit("/", 1)[-1] if target.role_arn else None


def _attempts(settings: Settings) -> int:
    return min(settings.aws_max_attempts, 3)


def _targets(settings: Settings, base_session: boto3.Session) -> list[Target] | Check:
    try:
        return discover_targets(base_session, account_roles=settings.account_roles,
                                org_role_name=settings.org_role_name, max_attempts=_attempts(settings))
    except CollectError as exc:
        return Check(AWS, "accounts to scan", False, str(exc),
                     "check STEWARD_ACCOUNT_ROLES / STEWARD_ORG_ROLE_NAME and the credentials Steward runs with")


def aws_checks(settings: Settings, base_session: boto3.Session,
               targets: list[Target] | Check | None = None) -> list[Check]:
    """Per configured account: the role can be assumed, the scan's reads are allowed, usage
    collection (Access Advisor) is allowed, and whether remediation is enabled there."""
    targets = _targets(settings, base_session) if targets is None else targets
    if isinstance(targets, Check):
        return [targets]
    checks: list[Check] = []
    for target in targets:
        checks += _account_checks(settings, base_session, target)
    return checks


def _where(target: Target, session: boto3.Session, settings: Settings) -> tuple[str, str]:
    """(account id, partition) of a target: from its role ARN, else asked of STS."""
    if target.role_arn:
        partition, account, _name = parse_role_arn(target.role_arn)
        return account, partition
    return caller_identity(session, _attempts(settings))


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
        checks.append(usage_check(settings, session, target))
        return checks
    checks.append(Check(AWS, f"{label}: scan reads allowed", True,
                        f"{len(snapshot.users)} users, {len(snapshot.roles)} roles read, nothing saved"))
    checks.append(usage_check(settings, session, target))
    role_name = _role_name(target)
    role = next((r for r in snapshot.roles if r.name == role_name), None)
    if role is not None:
        extra = sorted(p.name for p in role.inline_policies
                       if p.name.startswith(POLICY_PREFIX) and p.name != SCAN_POLICY_NAME)
        detail = (f"enabled ({', '.join(extra)})" if extra else
                  "scan only: clean-ups will be refused (deploy the stack with EnableRemediation=true to allow them)")
        checks.append(Check(AWS, f"{label}: remediation", None, detail))
    return checks


# -- usage collection: IAM's last-accessed data (Access Advisor) --------------------------

#: A role name nobody uses: GenerateServiceLastAccessedDetails for it answers NoSuchEntity
#: (allowed, no job started) or AccessDenied. A well-formed job id nobody was given: the same.
#: (Should someone create a role of that name, the answer is a job id: allowed, and IAM builds
#: a read-only report nobody fetches; nothing in the account changes.)
PROBE_ROLE_NAME = "iam-steward-doctor-probe-no-such-role"
PROBE_JOB_ID = "00000000-0000-0000-0000-000000000000"
#: What IAM answers to a request it authorized, about an entity or job that does not exist.
NOT_THERE = frozenset({"NoSuchEntity", "InvalidInput"})
DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})


def usage_check(settings: Settings, session: boto3.Session, target: Target) -> Check:
    """May the scan role start and read Access Advisor jobs? (least privilege from usage)"""
    name = f"{target.label}: usage data allowed (Access Advisor)"
    fix = ("deploy/update the member stack (deploy/cloudformation/member-account-role.yaml): its scan "
           "policy grants iam:GenerateServiceLastAccessedDetails and iam:GetServiceLastAccessedDetails"
           ) if target.role_arn else (
           "give the role Steward runs as the scan policy (deploy/iam/steward-scan-policy.json), "
           "which grants both")
    try:
        account_id, partition = _where(target, session, settings)
    except CollectError as exc:
        return Check(AWS, name, None, f"not checked: {exc.message}")
    iam = aws_client(session, "iam", _attempts(settings))
    probes = (("GenerateServiceLastAccessedDetails", lambda: iam.generate_service_last_accessed_details(
                   Arn=f"arn:{partition}:iam::{account_id}:role/{PROBE_ROLE_NAME}", Granularity="ACTION_LEVEL")),
              ("GetServiceLastAccessedDetails", lambda: iam.get_service_last_accessed_details(
                   JobId=PROBE_JOB_ID, MaxItems=1)))
    denied, unsure = [], []
    for action, call in probes:
        try:
            call()
        except ClientError as exc:
            code = error_code(exc)
            if code in DENIED:
                denied.append(f"iam:{action}")
            elif code not in NOT_THERE:
                unsure.append(f"iam:{action} answered {code or type(exc).__name__}")
        except Exception as exc:  # BotoCoreError, or anything else: a line, never a traceback
            unsure.append(f"iam:{action} failed ({type(exc).__name__})")
    if denied:
        return Check(AWS, name, False, f"{' and '.join(denied)} refused (AccessDenied): least-privilege "
                     "suggestions from usage will have no data for this account", fix)
    if unsure:
        return Check(AWS, name, None, f"could not tell: {'; '.join(unsure)}")
    return Check(AWS, name, True, "last-accessed jobs may be started and read (checked without starting one)")


# -- the opt-in roles: restore and rotation -------------------------------------------

@dataclass(frozen=True)
class OptInRole:
    section: str
    setting: str  # the Settings field naming the role
    env: str
    stack_parameter: str  # the member stack's switch
    off: str  # what happens while it is off, for the informational line


OPT_IN_ROLES = (
    OptInRole(RESTORE, "restore_role_name", "STEWARD_RESTORE_ROLE_NAME", "EnableRestore",
              "undos that give access back (re-attach a policy, put an inline policy back, add to a group) and "
              "right-sizing a policy are refused, with the steps for an admin to do them by hand"),
    OptInRole(ROTATION, "rotation_role_name", "STEWARD_ROTATION_ROLE_NAME", "EnableRotation",
              "\"Rotate it for me\" is not offered; owners rotate old access keys themselves"),
)


def opt_in_role_checks(settings: Settings, base_session: boto3.Session,
                       targets: list[Target] | Check, role: OptInRole) -> list[Check]:
    """Configured: the role can be assumed in each account (sts:AssumeRole, nothing else).
    Not configured: one line saying what is refused or left to a person."""
    role_name = getattr(settings, role.setting)
    if not role_name:
        return [Check(role.section, "off", None, f"{role.env} is not set: {role.off}; to turn it on, deploy the "
                      f"member stacks with {role.stack_parameter}=true and set {role.env} to their role name")]
    if isinstance(targets, Check):
        return [Check(role.section, "assumable", None, "not checked: the accounts could not be listed (see AWS)")]
    checks = []
    fix = (f"deploy the member stack there with {role.stack_parameter}=true and the role name {role_name} "
           f"(its ExternalId equal to STEWARD_EXTERNAL_ID), or accept that these actions are refused in this account")
    for target in targets:
        name = f"{target.label}: role/{role_name} assumable"
        try:
            account_id, partition = _where(target, base_session, settings)
            name = f"{f'{target.name} ({account_id})' if target.name else account_id}: role/{role_name} assumable"
            assumed = restore_target(account_id, str(role_name), partition)
            session_for(assumed, base_session, external_id=settings.external_id,
                        session_name="iam-steward-doctor", duration_seconds=900, max_attempts=_attempts(settings))
        except CollectError as exc:
            checks.append(Check(role.section, name, False, exc.message, fix))
            continue
        except Exception as exc:  # a line, never a traceback
            checks.append(Check(role.section, name, False, f"could not check ({type(exc).__name__})", fix))
            continue
        checks.append(Check(role.section, name, True, "AssumeRole succeeded; nothing else was called"))
    return checks


# -- the activity queue (`steward events`) ---------------------------------------------

#: Below this a batch still being handled (Slack DMs, one message at a time after a failure)
#: can reappear to the next receive; the hub stack sets 120 s.
MIN_VISIBILITY_SECONDS = 60
#: Fewer receives than this dead-letter an event after one bad minute (a Slack outage).
MIN_RECEIVE_COUNT = 3
ACTIVITY_OFF = ("off: STEWARD_ACTIVITY_QUEUE_URL is not set; to turn them on, deploy "
                "deploy/cloudformation/hub-role.yaml with EnableActivity=true and OrganizationId, each member "
                "stack with ActivityEventBusArn set to the hub's output, set STEWARD_ACTIVITY_QUEUE_URL to the "
                "hub's ActivityQueueUrl output and run `steward events`")
HUB_STACK_QUEUE = "the hub stack's ActivityQueue (deploy/cloudformation/hub-role.yaml, EnableActivity=true)"


def activity_checks(settings: Settings, base_session: boto3.Session) -> list[Check]:
    """The queue `steward events` reads: reachable, dead-lettering, sane timeouts."""
    url = settings.activity_queue_url
    if not url:
        return [Check(ACTIVITY, "activity alerts", None, ACTIVITY_OFF)]
    url = str(url)
    problem = queue_url_problem(url)  # the line `steward events` stops with
    if problem:
        return [Check(ACTIVITY, "queue reachable", False, problem,
                      f"set STEWARD_ACTIVITY_QUEUE_URL to the ActivityQueueUrl output of {HUB_STACK_QUEUE}")]
    try:
        sqs = base_session.client("sqs", region_name=queue_region(url) or base_session.region_name,
                                  config=client_config(_attempts(settings)))
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    except ClientError as exc:
        code = error_code(exc)
        if code in DENIED:
            return [Check(ACTIVITY, "queue reachable", None, f"not checked: Steward's role may not call "
                          f"sqs:GetQueueAttributes on {url} (a hub stack from before this version grants only "
                          "ReceiveMessage and DeleteMessage); update the hub stack to have the dead-letter queue "
                          "and timeouts checked here")]
        if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "InvalidAddress"):
            return [Check(ACTIVITY, "queue reachable", False, f"no queue at {url} ({code})",
                          f"set STEWARD_ACTIVITY_QUEUE_URL to the ActivityQueueUrl output of {HUB_STACK_QUEUE}")]
        return [Check(ACTIVITY, "queue reachable", False, f"cannot read {url}: {code or exc}",
                      "check STEWARD_ACTIVITY_QUEUE_URL and the "
                      "credentials Steward runs with")]
    except Exception as exc:  # BotoCoreError (network, a URL botocore refuses) or else: a line, never a traceback
        return [Check(ACTIVITY, "queue reachable", False, f"cannot reach {url} ({type(exc).__name__})",
                      "check STEWARD_ACTIVITY_QUEUE_URL and the network")]
    waiting = attributes.get("ApproximateNumberOfMessages", "?")
    checks = [Check(ACTIVITY, "queue reachable", True, f"{url.rsplit('/', 1)[-1]}, "
                    f"{waiting} message{'' if waiting == '1' else 's'} waiting")]
    checks.append(_dead_letter_check(attributes))
    checks.append(_timeouts_check(attributes))
    return checks


def _number(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _dead_letter_check(attributes: dict[str, str]) -> Check:
    name = "dead-letter queue (redrive policy)"
    fix = ("give the queue a redrive policy to a dead-letter queue, maxReceiveCount 5 (as "
           f"{HUB_STACK_QUEUE} has): a message `steward events` cannot handle is otherwise received again "
           "and again until it expires, and nobody sees it")
    try:
        policy = json.loads(attributes.get("RedrivePolicy") or "{}")
    except ValueError:
        policy = {}
    policy = policy if isinstance(policy, dict) else {}
    target = str(policy.get("deadLetterTargetArn") or "")
    if not target:
        return Check(ACTIVITY, name, False, "none: a poison message would be retried until it expires", fix)
    receives = _number(policy.get("maxReceiveCount"))
    where = f"to {target.rsplit(':', 1)[-1]} after {receives} receives"
    if receives < MIN_RECEIVE_COUNT:
        return Check(ACTIVITY, name, False, f"{where}: one failed attempt (a Slack outage) is enough to "
                     "dead-letter an event", f"set the redrive policy's maxReceiveCount to 5 (at least {MIN_RECEIVE_COUNT})")
    return Check(ACTIVITY, name, True, where)


def _timeouts_check(attributes: dict[str, str]) -> Check:
    name = "visibility timeout and long polling"
    visibility = _number(attributes.get("VisibilityTimeout"))
    wait = _number(attributes.get("ReceiveMessageWaitTimeSeconds"))
    polling = (f"long polling: `steward events` asks for 20 s per receive (--wait), the queue's own "
               f"default is {wait} s")
    if visibility < MIN_VISIBILITY_SECONDS:
        return Check(ACTIVITY, name, False, f"visibility timeout {visibility} s: a batch still being handled can "
                     f"be received again (duplicate work, early dead-lettering); {polling}",
                     f"set the queue's VisibilityTimeout to 120 s (at least {MIN_VISIBILITY_SECONDS}), as "
                     f"{HUB_STACK_QUEUE} does")
    return Check(ACTIVITY, name, True, f"visibility timeout {visibility} s; {polling}")


# -- the database and the scheduler ---------------------------------------------------

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
    base = aws_session()
    targets = _targets(settings, base)
    checks += aws_checks(settings, base, targets)
    for role in OPT_IN_ROLES:
        checks += opt_in_role_checks(settings, base, targets, role)
    checks += activity_checks(settings, base)
    database = database_checks(settings)
    checks += database
    if database[0].ok:
        checks += scheduler_checks(settings)
    return checks
