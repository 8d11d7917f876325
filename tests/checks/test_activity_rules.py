"""The risky-change table, walked: every rule fires on its fixture and stays quiet on a close
neighbour, through `evaluate` (the index by event name included); CloudTrail's real records."""

from __future__ import annotations

import json

import pytest

from checks.activity import events as ev
from checks.activity.rules import BY_ID, CONTAINMENT_ACTIONS, RULES, Route, RuleContext, evaluate
from checks.model import Severity
from checks.remediate import registry
from tests.cloudtrail_events import (
    ACCOUNT,
    ADMIN_DOC,
    ESCALATE_DOC,
    OTHER,
    READ_DOC,
    console_login,
    create_access_key,
    record,
    role_session,
    root_identity,
    trust,
    user_identity,
)

ORG = RuleContext(internal_accounts=frozenset({"111122223333"}))


def attach(policy_arn: str, user: str = "bob") -> dict:
    return record("AttachUserPolicy", request={"userName": user, "policyArn": policy_arn})


FIXTURES = {
    "access-key-for-another-user": (create_access_key("bob"), create_access_key(None)),
    "admin-or-escalation-granted": (attach("arn:aws:iam::aws:policy/AdministratorAccess"),
                                    attach("arn:aws:iam::aws:policy/ReadOnlyAccess")),
    "login-profile-for-another-user": (record("CreateLoginProfile", request={"userName": "bob"}),
                                       record("CreateLoginProfile", request={"userName": "alice"})),
    "role-trust-opened": (
        record("UpdateAssumeRolePolicy", request={"roleName": "app", "policyDocument": trust({"AWS": f"arn:aws:iam::{OTHER}:root"})}),
        record("UpdateAssumeRolePolicy", request={"roleName": "app", "policyDocument": trust({"AWS": "arn:aws:iam::111122223333:root"})})),
    "mfa-removed": (record("DeactivateMFADevice", request={"userName": "bob", "serialNumber": "arn:aws:iam::123456789012:mfa/bob"}),
                    record("DeactivateMFADevice", request={"userName": "bob"}, error="AccessDenied")),
    "logging-disabled": (record("StopLogging", source="cloudtrail.amazonaws.com", request={"name": "main"}),
                         record("StartLogging", source="cloudtrail.amazonaws.com", request={"name": "main"})),
    "root-activity": (console_login(root_identity(), mfa="Yes"),
                      record("ListUsers", identity=root_identity(), read_only=True)),
    "console-login-without-mfa": (console_login(user_identity()), console_login(user_identity(), mfa="Yes")),
}


def fired(detail: dict, ctx: RuleContext = ORG) -> list[str]:
    return [v.rule.id for v in evaluate(ev.parse({"detail": detail}), ctx)]


def test_every_rule_has_a_firing_and_a_quiet_fixture_and_a_complete_spec():
    assert set(FIXTURES) == set(BY_ID) and len(BY_ID) == len(RULES)
    for rule in RULES:
        assert rule.title and rule.rationale and len(rule.rationale) < 120
        assert isinstance(rule.severity, Severity) and rule.route in Route
        assert all(e == "*" or ":" in e for e in rule.events)


@pytest.mark.parametrize("rule", sorted(FIXTURES))
def test_fixture_fires_and_stays_quiet(rule):
    firing, quiet = FIXTURES[rule]
    assert fired(firing) == [rule]
    assert fired(quiet) == []


@pytest.mark.parametrize("rule", sorted(FIXTURES))
def test_every_containment_is_a_registered_reduce_action_on_a_principal(rule):
    (verdict,) = evaluate(ev.parse(FIXTURES[rule][0]), ORG)
    for c in verdict.risk.containment:
        assert c.action in CONTAINMENT_ACTIONS
        registry.action(c.action)
        assert c.resource.startswith(f"arn:aws:iam::{ACCOUNT}:") and c.label


def test_routes_root_always_goes_to_security():
    root_key = create_access_key(None, identity=root_identity())
    (verdict,) = evaluate(ev.parse(root_key))
    assert verdict.rule.id == "access-key-for-another-user" and verdict.route is Route.SECURITY
    assert verdict.severity is Severity.CRITICAL
    (login,) = evaluate(ev.parse(FIXTURES["root-activity"][0]))
    assert login.route is Route.SECURITY and "with MFA" in login.risk.summary
    (user,) = evaluate(ev.parse(FIXTURES["console-login-without-mfa"][0]))
    assert user.route is Route.ASK


def test_policy_grants_reuse_the_scan_s_analysis():
    put = record("PutRolePolicy", request={"roleName": "ci", "policyName": "esc", "policyDocument": ESCALATE_DOC})
    (verdict,) = evaluate(ev.parse(put))
    assert "escalation" in verdict.risk.summary and verdict.severity is Severity.HIGH
    assert verdict.risk.containment[0].action == "delete-inline-policy"
    assert verdict.risk.containment[0].details == {"policy_name": "esc"}
    assert verdict.risk.target == f"arn:aws:iam::{ACCOUNT}:role/ci"
    admin = record("PutUserPolicy", request={"userName": "bob", "policyName": "all", "policyDocument": ADMIN_DOC})
    assert evaluate(ev.parse(admin))[0].severity is Severity.CRITICAL
    assert fired(record("PutUserPolicy", request={"userName": "bob", "policyName": "r", "policyDocument": READ_DOC})) == []
    # A customer managed policy: its document from the context (the service reads it from AWS).
    custom = f"arn:aws:iam::{ACCOUNT}:policy/everything"
    ctx = RuleContext(policy_document=lambda arn: json.loads(ADMIN_DOC) if arn == custom else None)
    assert fired(attach(custom), ctx) == ["admin-or-escalation-granted"]
    assert fired(attach(custom)) == []  # unknown document: not judged
    version = record("CreatePolicyVersion", request={"policyArn": custom, "policyDocument": ADMIN_DOC,
                                                     "setAsDefault": True})
    assert fired(version) == ["admin-or-escalation-granted"]


def test_trust_public_external_and_internal():
    public = record("UpdateAssumeRolePolicy", request={"roleName": "app", "policyDocument": trust({"AWS": "*"})})
    (verdict,) = evaluate(ev.parse(public), ORG)
    assert verdict.severity is Severity.CRITICAL and "anyone" in verdict.risk.summary
    with_id = trust({"AWS": f"arn:aws:iam::{OTHER}:root"}, {"StringEquals": {"sts:ExternalId": "x"}})
    assert fired(record("UpdateAssumeRolePolicy", request={"roleName": "app", "policyDocument": with_id})) == \
        ["role-trust-opened"]  # an ExternalId does not make an outside account inside
    service = trust({"Service": "ec2.amazonaws.com"})
    assert fired(record("UpdateAssumeRolePolicy", request={"roleName": "app", "policyDocument": service})) == []


def test_keys_and_actors():
    own_key = create_access_key(None)
    assert fired(own_key) == []
    by_role = create_access_key("bob", identity=role_session())
    (verdict,) = evaluate(ev.parse(by_role))
    assert [c.action for c in verdict.risk.containment] == ["deactivate-access-key"]  # no IAM user to stop
    (by_user,) = evaluate(ev.parse(create_access_key("bob")))
    assert [c.action for c in by_user.risk.containment] == ["deactivate-access-key", "deactivate-access-key",
                                                            "quarantine-user"]
    assert by_user.risk.containment[1].details["access_key_id"] == "AKIAALICEKEY00000001"  # the key used
    assert fired(create_access_key("bob", error="AccessDenied")) == []


def test_update_trail_only_when_it_turns_something_off():
    off = record("UpdateTrail", source="cloudtrail.amazonaws.com", request={"name": "main", "isMultiRegionTrail": False})
    on = record("UpdateTrail", source="cloudtrail.amazonaws.com", request={"name": "main", "isMultiRegionTrail": True})
    assert fired(off) == ["logging-disabled"] and fired(on) == []
    assert fired(record("DeleteTrail", source="cloudtrail.amazonaws.com", request={"name": "main"})) == ["logging-disabled"]


def test_parse_actors_and_bad_bodies():
    sso = ev.parse(record("ListUsers", identity=role_session("priya@example.com", sso=True)))
    assert sso.actor.kind == "identity-center" and sso.actor.person_hints() == ("priya@example.com",)
    sourced = ev.parse(record("ListUsers", identity=role_session("ci-run-17", source_identity="dev@example.com")))
    assert sourced.actor.kind == "role-session" and sourced.actor.person_hints() == ("dev@example.com",)
    assert ev.parse(record("ListUsers", identity=role_session("ci-run-17"))).actor.person_hints() == ()
    login = ev.parse(console_login(user_identity("bob")))
    assert login.actor.user_name == "bob" and login.additional["MFAUsed"] == "No" and login.succeeded
    assert login.facts()["ip"] == "203.0.113.7" and login.facts()["event"] == "signin:ConsoleLogin"
    for bad, why in (("{", "not JSON"), ("[]", "not a JSON object"), ('{"detail": 3}', "without a detail"),
                     ('{"detail": {"eventName": "X"}}', "missing eventID, eventSource"),
                     (json.dumps({"detail": {**record("X"), "recipientAccountId": "nope"}}), "12-digit")):
        with pytest.raises(ev.EventError, match=why):
            ev.parse(bad)


def test_an_opened_trust_offers_the_previous_one_back_when_the_scan_knew_it():
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/app"
    previous = json.loads(trust({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}))
    opened = trust({"AWS": f"arn:aws:iam::{OTHER}:root"})
    event = ev.parse(record("UpdateAssumeRolePolicy", request={"roleName": "app", "policyDocument": opened}))
    asked: list[str] = []

    def known(arn: str):
        asked.append(arn)
        return previous if arn == role_arn else None

    (verdict,) = evaluate(event, RuleContext(internal_accounts=ORG.internal_accounts, previous_trust_policy=known))
    first, *rest = verdict.risk.containment
    assert asked == [role_arn]
    assert (first.action, first.resource, first.label) == ("restore-trust-policy", role_arn,
                                                           "Restore the previous trust policy")
    assert first.details == {"previous_trust_policy": previous, "trust_policy_set": json.loads(opened)}
    assert [c.action for c in rest] == ["deactivate-access-key", "quarantine-user"]  # the actor, as before

    # Unknown (no scan saw the role) or the same as the new one (a scan ran after the change):
    # only the actor's containment.
    for ctx in (ORG, RuleContext(previous_trust_policy=lambda arn: json.loads(opened))):
        (verdict,) = evaluate(event, ctx)
        assert [c.action for c in verdict.risk.containment] == ["deactivate-access-key", "quarantine-user"]
    public = ev.parse(record("UpdateAssumeRolePolicy", request={"roleName": "app", "policyDocument": trust({"AWS": "*"})}))
    (verdict,) = evaluate(public, RuleContext(previous_trust_policy=known))
    assert verdict.severity is Severity.CRITICAL and verdict.risk.containment[0].action == "restore-trust-policy"
