"""Root, password policy and unused-role rules."""

from __future__ import annotations

from checks.model import PasswordPolicy, RootAccount
from checks.rules import password_policy, roles, root
from tests.factories import ACCOUNT, ago, ctx, key, role, snapshot

ROOT_ARN = f"arn:aws:iam::{ACCOUNT}:root"


def rooted(**kwargs):
    return snapshot(root=RootAccount(arn=ROOT_ARN, created=ago(2000), **kwargs))


def test_root_checks_say_nothing_without_a_root_row():
    snap = snapshot()
    for rule in (root.root_access_key, root.root_mfa_disabled, root.root_recently_used):
        assert rule(snap, ctx()) == []


def test_root_active_key_fires():
    [r] = root.root_access_key(rooted(mfa_active=True, access_keys=(key(1, used=400),)), ctx())
    assert r.failed and r.details["active_key_slots"] == [1]
    assert r.resource == ROOT_ARN


def test_root_inactive_key_passes():
    [r] = root.root_access_key(rooted(access_keys=(key(1, active=False),)), ctx())
    assert not r.failed


def test_root_without_mfa_fires_and_with_mfa_passes():
    assert root.root_mfa_disabled(rooted(mfa_active=False), ctx())[0].failed
    assert not root.root_mfa_disabled(rooted(mfa_active=True), ctx())[0].failed


def test_root_password_used_29_days_ago_fires():
    [r] = root.root_recently_used(rooted(password_last_used=ago(29)), ctx())
    assert r.failed and "password" in r.details["recent_use"]


def test_root_key_used_recently_fires():
    [r] = root.root_recently_used(rooted(access_keys=(key(1, used=5),)), ctx())
    assert r.failed and "access_key_1" in r.details["recent_use"]


def test_root_used_31_days_ago_passes():
    [r] = root.root_recently_used(rooted(password_last_used=ago(31)), ctx())
    assert not r.failed


STRONG = PasswordPolicy(
    minimum_length=14,
    require_symbols=True,
    require_numbers=True,
    require_uppercase=True,
    require_lowercase=True,
    reuse_prevention=24,
)


def test_no_password_policy_fires():
    [r] = password_policy.password_policy_weak(snapshot(), ctx())
    assert r.failed and r.details["failing"] == ["no-policy"]


def test_cis_password_policy_passes():
    [r] = password_policy.password_policy_weak(snapshot(password_policy=STRONG), ctx())
    assert not r.failed and r.details["failing"] == []


def test_weak_password_policy_names_each_failing_option():
    weak = PasswordPolicy(minimum_length=13, require_symbols=False, require_numbers=True,
                          require_uppercase=True, require_lowercase=False, reuse_prevention=None)
    [r] = password_policy.password_policy_weak(snapshot(password_policy=weak), ctx())
    assert r.failed
    assert r.details["failing"] == [
        "minimum-length", "reuse-prevention", "require-lowercase", "require-symbols"
    ]


def test_reuse_prevention_of_23_fails_and_24_passes():
    import dataclasses

    low = dataclasses.replace(STRONG, reuse_prevention=23)
    assert password_policy.password_policy_weak(snapshot(password_policy=low), ctx())[0].failed
    enough = dataclasses.replace(STRONG, reuse_prevention=24)
    assert not password_policy.password_policy_weak(snapshot(password_policy=enough), ctx())[0].failed


def test_role_never_used_and_old_fires():
    [r] = roles.unused_role(snapshot(roles=[role("old", age=100)]), ctx())
    assert r.failed and r.details["last_used"] is None


def test_role_used_recently_passes():
    [r] = roles.unused_role(snapshot(roles=[role("busy", age=400, last_used=ago(10))]), ctx())
    assert not r.failed


def test_young_role_never_used_passes():
    [r] = roles.unused_role(snapshot(roles=[role("new", age=30)]), ctx())
    assert not r.failed


def test_service_linked_roles_are_excluded():
    slr = role("AWSServiceRoleForSupport", age=900, path="/aws-service-role/support.amazonaws.com/")
    assert roles.unused_role(snapshot(roles=[slr]), ctx()) == []


def test_role_tag_overrides_unused_days():
    tagged = role("batch", age=400, last_used=ago(120), tags={"steward:unused-role-days": "180"})
    [r] = roles.unused_role(snapshot(roles=[tagged]), ctx())
    assert not r.failed
