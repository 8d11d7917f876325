"""Risky IAM changes, as a table like the check catalog: pure functions over one CloudTrail
event (`checks.activity.events`). Walked by tests (unique ids, a firing and a quiet
fixture each, every containment a registered remediation action).

Each rule names a severity and a route: ASK the actor first ("Did you do this?"), or go
straight to SECURITY. Root's events always go to security, whatever the rule says
(`route_for`). A match says what happened in one sentence and which containments fit:
remediation actions (`checks/remediate/`) with the principal they act on; an opened trust
offers its previous document back first, when the latest scan knew it
(`RuleContext.previous_trust_policy`).

Policy grants are judged with the scan's own analysis (`checks.policy.analyse_document`:
administrator access, escalation methods after the document's own Denies) and trusts with
`analyse_trust` plus any account outside the organisation.
"""

from __future__ import annotations

import enum
import json
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from checks.activity.events import CloudTrailEvent
from checks.model import Severity
from checks.policy import analyse_document, analyse_trust, normalise, principal_account


class Route(enum.StrEnum):
    ASK = "ask"  # DM the actor "Did you do this?"; no answer or "no" escalates
    SECURITY = "security"  # straight to the security channel


@dataclass(frozen=True)
class Containment:
    """One click of containment: a remediation action on one principal."""

    action: str  # a checks.remediate action id
    resource: str  # the principal's ARN (user, role or group)
    label: str  # the button's words
    details: Mapping[str, Any] = field(default_factory=dict)  # access_key_id, policy_arn, policy_name


@dataclass(frozen=True)
class Risk:
    rule: str
    summary: str  # "created an access key for IAM user bob"
    target: str  # what changed (an ARN), for the audit log and the message
    containment: tuple[Containment, ...] = ()
    severity: Severity | None = None  # overrides the rule's (an admin grant is critical)


@dataclass(frozen=True)
class RuleContext:
    """What a rule may know besides the event: the organisation's accounts (a trust in one
    of them is not "external"), managed policy documents by ARN, and a role's trust policy
    before the change, by role ARN, as the latest scan saw it (None: unknown)."""

    internal_accounts: frozenset[str] = frozenset()
    policy_document: Callable[[str], Mapping[str, Any] | None] = lambda _arn: None
    previous_trust_policy: Callable[[str], Mapping[str, Any] | None] = lambda _arn: None


Match = Callable[[CloudTrailEvent, RuleContext], Risk | None]


@dataclass(frozen=True)
class RiskRule:
    id: str
    title: str
    severity: Severity
    route: Route
    events: frozenset[str]  # "iam:CreateAccessKey", "signin:ConsoleLogin"; "*" = every event
    rationale: str
    match: Match


# Containment actions an activity escalation may offer (all in checks/remediate/registry).
CONTAINMENT_ACTIONS = ("deactivate-access-key", "quarantine-user", "detach-managed-policy",
                       "delete-inline-policy", "remove-console-password", "restore-trust-policy")

# AWS managed policies whose document a rule knows without asking AWS.
KNOWN_AWS_POLICIES: Mapping[str, Mapping[str, Any]] = {
    "arn:aws:iam::aws:policy/AdministratorAccess": {
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
    "arn:aws:iam::aws:policy/IAMFullAccess": {
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["iam:*", "organizations:Describe*",
                                                                            "organizations:List*"], "Resource": "*"}]},
}


# ---------------------------------------------------------------------------------------
# Helpers


def _arn(event: CloudTrailEvent, kind: str, name: str) -> str:
    return f"arn:aws:iam::{event.account_id}:{kind}/{name}"


def _document(raw: Any) -> Any:
    """A policy document from requestParameters: JSON text, sometimes URL-encoded."""
    if isinstance(raw, Mapping):
        return raw
    if not isinstance(raw, str):
        return None
    for text in (raw, urllib.parse.unquote(raw)):
        try:
            return json.loads(text)
        except ValueError:
            continue
    return None


def _actor_containment(event: CloudTrailEvent) -> tuple[Containment, ...]:
    """Stop the actor: deactivate the long-term key it used, quarantine its IAM user."""
    actor, out = event.actor, []
    if actor.long_term_key and actor.user_arn:
        # The key the change was made with (not a key it created): said so, and short enough
        # for a button (75 characters) with the key id kept whole.
        label = f"Deactivate the key {actor.user_name} used ({actor.long_term_key})"
        if len(label) > 60:
            label = f"Deactivate the key they used ({actor.long_term_key})"
        out.append(Containment("deactivate-access-key", actor.user_arn, label,
                               {"access_key_id": actor.long_term_key, "user_name": actor.user_name}))
    if actor.user_arn:
        out.append(Containment("quarantine-user", actor.user_arn, f"Quarantine {actor.user_name}",
                               {"user_name": actor.user_name}))
    return tuple(out)


def _other_user(event: CloudTrailEvent) -> str | None:
    """The `userName` the call acted on when it is not the caller itself."""
    target = event.request.get("userName")
    if not isinstance(target, str) or not target:
        return None
    if event.actor.kind == "user" and event.actor.user_name == target:
        return None
    return target


# ---------------------------------------------------------------------------------------
# The rules


def access_key_for_another_user(event: CloudTrailEvent, ctx: RuleContext) -> Risk | None:
    if not event.succeeded:
        return None
    key = ((event.response.get("accessKey") or {}) if isinstance(event.response.get("accessKey"), Mapping)
           else {}).get("accessKeyId")
    if event.actor.kind == "root" and not event.request.get("userName"):
        return Risk("access-key-for-another-user", "created an access key for the root user",
                    f"arn:aws:iam::{event.account_id}:root", severity=Severity.CRITICAL)
    target = _other_user(event)
    if target is None:
        return None
    arn = _arn(event, "user", target)
    contain = [Containment("deactivate-access-key", arn, f"Deactivate the new key {key}",
                           {"access_key_id": key, "user_name": target})] if key else []
    return Risk("access-key-for-another-user", f"created access key {key or '?'} for IAM user {target}", arn,
                (*contain, *_actor_containment(event)))


_POLICY_EVENTS = {
    "AttachUserPolicy": "user", "AttachRolePolicy": "role", "AttachGroupPolicy": "group",
    "PutUserPolicy": "user", "PutRolePolicy": "role", "PutGroupPolicy": "group",
}


def admin_or_escalation_granted(event: CloudTrailEvent, ctx: RuleContext) -> Risk | None:
    if not event.succeeded:
        return None
    req = event.request
    if event.name == "CreatePolicyVersion":
        if not req.get("setAsDefault"):
            return None
        document, arn = _document(req.get("policyDocument")), req.get("policyArn") or "?"
        analysis = analyse_document(document) if document is not None else None
        what = _grant_words(analysis)
        if what is None:
            return None
        return Risk("admin-or-escalation-granted", f"made a new default version of {arn} that grants {what}", arn,
                    _actor_containment(event), Severity.CRITICAL if analysis.is_admin else None)
    kind = _POLICY_EVENTS.get(event.name)
    name = req.get(f"{kind}Name") if kind else None
    if not (kind and isinstance(name, str)):
        return None
    principal = _arn(event, kind, name)
    if event.name.startswith("Attach"):
        policy_arn = req.get("policyArn")
        if not isinstance(policy_arn, str):
            return None
        document = KNOWN_AWS_POLICIES.get(policy_arn) or ctx.policy_document(policy_arn)
        revert = Containment("detach-managed-policy", principal, f"Detach {policy_arn.rsplit('/', 1)[-1]}",
                             {"policy_arn": policy_arn})
        policy_words = policy_arn
    else:
        document = _document(req.get("policyDocument"))
        policy_name = req.get("policyName")
        revert = Containment("delete-inline-policy", principal, f"Delete inline policy {policy_name}",
                             {"policy_name": policy_name})
        policy_words = f"inline policy {policy_name}"
    analysis = analyse_document(document) if document is not None else None
    what = _grant_words(analysis)
    if what is None:
        return None
    return Risk("admin-or-escalation-granted", f"gave {kind} {name} {policy_words}, which grants {what}", principal,
                (revert, *_actor_containment(event)), Severity.CRITICAL if analysis.is_admin else None)


def _grant_words(analysis) -> str | None:
    if analysis is None:
        return None
    if analysis.is_admin:
        return "full administrator access"
    methods = analysis.escalation_methods
    if methods:
        return f"a privilege escalation path ({', '.join(methods[:3])})"
    return None


def login_profile_for_another_user(event: CloudTrailEvent, ctx: RuleContext) -> Risk | None:
    if not event.succeeded:
        return None
    target = _other_user(event)
    if target is None:
        return None
    arn = _arn(event, "user", target)
    verb = "set a console password for" if event.name == "CreateLoginProfile" else "changed the console password of"
    return Risk("login-profile-for-another-user", f"{verb} IAM user {target}", arn,
                (Containment("remove-console-password", arn, f"Remove {target}'s console password",
                             {"user_name": target}), *_actor_containment(event)))


def role_trust_opened(event: CloudTrailEvent, ctx: RuleContext) -> Risk | None:
    if not event.succeeded:
        return None
    role, document = event.request.get("roleName"), _document(event.request.get("policyDocument"))
    if not isinstance(role, str) or document is None:
        return None
    internal = {event.account_id, *ctx.internal_accounts}
    trust = analyse_trust(document, own_account=event.account_id, internal_accounts=internal)
    if trust is None:
        return None
    outside: set[str] = set()
    normalised = normalise(document, trust=True)
    for s in normalised.statements if normalised else ():
        if s.allow and s.principal:
            for p in s.principal.get("AWS", ()):
                account = principal_account(p)
                if account and account != "*" and account not in internal:
                    outside.add(account)
    arn = _arn(event, "role", role)
    if not (trust.public or outside):
        return None
    contain = (*_restore_trust(arn, document, ctx), *_actor_containment(event))
    if trust.public:
        return Risk("role-trust-opened", f"let anyone on AWS assume role {role}", arn, contain, Severity.CRITICAL)
    return Risk("role-trust-opened", f"let account(s) {', '.join(sorted(outside))} assume role {role}", arn, contain)


def _restore_trust(arn: str, document: Any, ctx: RuleContext) -> tuple[Containment, ...]:
    """Revert the change: put back the trust policy the role had (known from the latest
    scan), unless it is unknown or the same as the new one (a scan ran after the change)."""
    previous = ctx.previous_trust_policy(arn)
    if not isinstance(previous, Mapping) or not isinstance(document, Mapping) or _same(previous, document):
        return ()
    return (Containment("restore-trust-policy", arn, "Restore the previous trust policy",
                        {"previous_trust_policy": dict(previous), "trust_policy_set": dict(document)}),)


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def mfa_removed(event: CloudTrailEvent, ctx: RuleContext) -> Risk | None:
    if not event.succeeded:
        return None
    user = event.request.get("userName") or (event.actor.user_name if event.actor.kind == "user" else None)
    serial = event.request.get("serialNumber") or "?"
    verb = "deactivated" if event.name == "DeactivateMFADevice" else "deleted"
    if not user:
        return Risk("mfa-removed", f"{verb} MFA device {serial}", serial, _actor_containment(event))
    arn = _arn(event, "user", user)
    contain = [Containment("quarantine-user", arn, f"Quarantine {user}", {"user_name": user})]
    contain += [c for c in _actor_containment(event) if c.resource != arn or c.action != "quarantine-user"]
    return Risk("mfa-removed", f"{verb} the MFA device of IAM user {user}", arn, tuple(contain))


def logging_disabled(event: CloudTrailEvent, ctx: RuleContext) -> Risk | None:
    if not event.succeeded:
        return None
    trail = event.request.get("name") or "?"
    if event.name == "StopLogging":
        summary = f"stopped CloudTrail trail {trail}"
    elif event.name == "DeleteTrail":
        summary = f"deleted CloudTrail trail {trail}"
    else:
        off = [what for key, what in (("isMultiRegionTrail", "multi-region logging"),
                                      ("includeGlobalServiceEvents", "global service events (IAM)"),
                                      ("enableLogFileValidation", "log file validation"))
               if event.request.get(key) is False]
        if not off:
            return None
        summary = f"turned off {', '.join(off)} on CloudTrail trail {trail}"
    return Risk("logging-disabled", summary, str(trail), _actor_containment(event))


def root_activity(event: CloudTrailEvent, ctx: RuleContext) -> Risk | None:
    actor = event.actor
    if actor.kind != "root" or actor.invoked_by:
        return None
    if event.name == "ConsoleLogin":
        if not event.succeeded:
            return None
        mfa = event.additional.get("MFAUsed")
        return Risk("root-activity", f"signed in to the console as root ({'with' if mfa == 'Yes' else 'WITHOUT'} MFA)",
                    f"arn:aws:iam::{event.account_id}:root")
    if event.read_only is True or not event.succeeded:
        return None
    return Risk("root-activity", f"called {event.service}:{event.name} as root",
                f"arn:aws:iam::{event.account_id}:root")


def console_login_without_mfa(event: CloudTrailEvent, ctx: RuleContext) -> Risk | None:
    if event.actor.kind != "user" or not event.succeeded or event.additional.get("MFAUsed") != "No":
        return None
    user = event.actor.user_name
    arn = event.actor.arn or _arn(event, "user", str(user))
    return Risk("console-login-without-mfa", f"signed in to the console as IAM user {user} without MFA", arn,
                (Containment("quarantine-user", arn, f"Quarantine {user}", {"user_name": user}),
                 Containment("remove-console-password", arn, f"Remove {user}'s console password",
                             {"user_name": user})))


RULES: tuple[RiskRule, ...] = (
    RiskRule("access-key-for-another-user", "Access key created for another user (or root)", Severity.HIGH, Route.ASK,
             frozenset({"iam:CreateAccessKey"}),
             "A key made for someone else is a classic way to keep access under another name.",
             access_key_for_another_user),
    RiskRule("admin-or-escalation-granted", "Administrator access or an escalation path granted", Severity.HIGH,
             Route.ASK,
             frozenset({"iam:AttachUserPolicy", "iam:AttachRolePolicy", "iam:AttachGroupPolicy", "iam:PutUserPolicy",
                        "iam:PutRolePolicy", "iam:PutGroupPolicy", "iam:CreatePolicyVersion"}),
             "A policy granting admin, or a way to get it, changes who controls the account.",
             admin_or_escalation_granted),
    RiskRule("login-profile-for-another-user", "Console password set for another user", Severity.HIGH, Route.ASK,
             frozenset({"iam:CreateLoginProfile", "iam:UpdateLoginProfile"}),
             "Whoever sets someone's password can sign in as them.", login_profile_for_another_user),
    RiskRule("role-trust-opened", "Role trust opened to another account or to everyone", Severity.HIGH, Route.ASK,
             frozenset({"iam:UpdateAssumeRolePolicy"}),
             "A trust admitting an outside account lets that account act here.", role_trust_opened),
    RiskRule("mfa-removed", "MFA device deactivated or deleted", Severity.HIGH, Route.ASK,
             frozenset({"iam:DeactivateMFADevice", "iam:DeleteVirtualMFADevice"}),
             "Removing MFA is often the step before taking over an account.", mfa_removed),
    RiskRule("logging-disabled", "CloudTrail logging stopped or reduced", Severity.CRITICAL, Route.SECURITY,
             frozenset({"cloudtrail:StopLogging", "cloudtrail:DeleteTrail", "cloudtrail:UpdateTrail"}),
             "Turning the logs off is what an intruder does first.", logging_disabled),
    RiskRule("root-activity", "Root user signed in or made a change", Severity.CRITICAL, Route.SECURITY,
             frozenset({"*"}), "Root is for a handful of account tasks; any other use needs a look.", root_activity),
    RiskRule("console-login-without-mfa", "Console sign-in without MFA", Severity.MEDIUM, Route.ASK,
             frozenset({"signin:ConsoleLogin"}),
             "A password alone guarded this sign-in.", console_login_without_mfa),
)

BY_ID: dict[str, RiskRule] = {r.id: r for r in RULES}
_BY_EVENT: dict[str, tuple[RiskRule, ...]] = {}
for _rule in RULES:
    for _name in _rule.events:
        _BY_EVENT[_name] = (*_BY_EVENT.get(_name, ()), _rule)
_EVERY_EVENT = _BY_EVENT.pop("*", ())


@dataclass(frozen=True)
class Verdict:
    rule: RiskRule
    risk: Risk
    route: Route

    @property
    def severity(self) -> Severity:
        return self.risk.severity or self.rule.severity


def route_for(rule: RiskRule, event: CloudTrailEvent) -> Route:
    """Root's events, and anyone without an IAM identity a person can be told from, go to
    security whatever the rule says; the service also sends an actor it cannot map there."""
    if event.actor.kind in ("root", "unknown", "service"):
        return Route.SECURITY
    return rule.route


def evaluate(event: CloudTrailEvent, ctx: RuleContext | None = None) -> list[Verdict]:
    """Every rule that fires on `event` (usually none: an index by event name keeps the
    common case to one dictionary lookup)."""
    ctx = ctx or RuleContext()
    key = f"{event.service}:{event.name}"
    out = []
    for rule in (*_BY_EVENT.get(key, ()), *_EVERY_EVENT):
        risk = rule.match(event, ctx)
        if risk is not None:
            out.append(Verdict(rule, risk, route_for(rule, event)))
    if len(out) > 1:  # root creating its own key: the specific rule says it better
        out = [v for v in out if v.rule.id != "root-activity"]
    return out


def check_id(rule_id: str) -> str:
    """The check id an escalated event's containment is recorded under (`activity:<rule>`)."""
    return f"activity:{rule_id}"
