"""Credential rules: passwords, MFA, keys, stale users — firing, quiet and edge cases."""

from __future__ import annotations

from checks.context import Thresholds
from checks.rules import credentials as c
from tests.factories import ago, ctx, key, snapshot, user


def failed(results):
    return [r for r in results if r.failed]


def only(results):
    assert len(results) == 1, results
    return results[0]


# console-user-without-mfa --------------------------------------------------------------


def test_console_user_without_mfa_fires():
    snap = snapshot(users=[user("alice", password_enabled=True, mfa_active=False)])
    assert only(c.console_user_without_mfa(snap, ctx())).failed


def test_console_user_with_mfa_passes():
    snap = snapshot(users=[user("alice", password_enabled=True, mfa_active=True)])
    assert not only(c.console_user_without_mfa(snap, ctx())).failed


def test_programmatic_user_not_evaluated_for_console_mfa():
    snap = snapshot(users=[user("ci-bot", password_enabled=False)])
    assert c.console_user_without_mfa(snap, ctx()) == []


def test_user_missing_from_credential_report_is_not_evaluated():
    snap = snapshot(users=[user("new", password_enabled=True, in_credential_report=False)])
    assert c.console_user_without_mfa(snap, ctx()) == []
    assert c.stale_user(snap, ctx()) == []


# unused-password -----------------------------------------------------------------------


def test_password_unused_past_threshold_fires():
    snap = snapshot(users=[user(password_enabled=True, password_last_used=ago(46))])
    assert only(c.unused_password(snap, ctx())).failed


def test_password_used_within_threshold_passes():
    snap = snapshot(users=[user(password_enabled=True, password_last_used=ago(44))])
    assert not only(c.unused_password(snap, ctx())).failed


def test_never_used_password_inside_grace_period_passes():
    snap = snapshot(users=[user(age=3, password_enabled=True, password_last_changed=ago(3))])
    assert not only(c.unused_password(snap, ctx())).failed


def test_never_used_password_past_grace_period_fires():
    snap = snapshot(users=[user(age=8, password_enabled=True, password_last_changed=ago(8))])
    assert only(c.unused_password(snap, ctx())).failed


def test_never_used_password_age_counts_from_when_it_was_set():
    # An old user whose password was set yesterday is inside the grace period.
    snap = snapshot(users=[user(age=500, password_enabled=True, password_last_changed=ago(1))])
    assert not only(c.unused_password(snap, ctx())).failed


# unused-access-key ---------------------------------------------------------------------


def test_key_unused_for_46_days_fires_with_slot_sub_key():
    snap = snapshot(users=[user(access_keys=(key(1, age=200, used=46),))])
    result = only(c.unused_access_key(snap, ctx()))
    assert result.failed
    assert result.sub_key == "slot:1"
    assert result.details["key_slot"] == 1
    assert result.details["last_used"].startswith("2026-10-13")


def test_key_used_recently_passes():
    snap = snapshot(users=[user(access_keys=(key(1, age=200, used=2),))])
    assert not only(c.unused_access_key(snap, ctx())).failed


def test_never_used_key_inside_grace_period_passes():
    snap = snapshot(users=[user(access_keys=(key(1, age=6.9, used=None),))])
    assert not only(c.unused_access_key(snap, ctx())).failed


def test_never_used_key_past_grace_period_fires():
    snap = snapshot(users=[user(access_keys=(key(1, age=7, used=None),))])
    assert only(c.unused_access_key(snap, ctx())).failed


def test_inactive_key_is_not_evaluated_as_unused_or_old():
    snap = snapshot(users=[user(access_keys=(key(1, active=False, age=900, used=None),))])
    assert c.unused_access_key(snap, ctx()) == []
    assert c.old_access_key(snap, ctx()) == []


def test_unused_threshold_from_settings():
    snap = snapshot(users=[user(access_keys=(key(1, age=200, used=20),))])
    assert only(c.unused_access_key(snap, ctx(thresholds=Thresholds(unused_days=10)))).failed


# old-access-key ------------------------------------------------------------------------


def test_key_older_than_90_days_fires():
    snap = snapshot(users=[user(access_keys=(key(1, age=91, used=1),))])
    result = only(c.old_access_key(snap, ctx()))
    assert result.failed and result.details["age_days"] == 91


def test_key_exactly_90_days_old_passes():
    snap = snapshot(users=[user(access_keys=(key(1, age=90, used=1),))])
    assert not only(c.old_access_key(snap, ctx())).failed


def test_tag_overrides_key_max_age_for_one_user():
    tagged = user("svc", tags={"steward:key-max-age-days": "365"}, access_keys=(key(1, age=200),))
    plain = user("bob", access_keys=(key(1, age=200),))
    results = c.old_access_key(snapshot(users=[tagged, plain]), ctx())
    verdict = {r.resource.rsplit("/", 1)[1]: r.failed for r in results}
    assert verdict == {"svc": False, "bob": True}


def test_malformed_threshold_tag_is_ignored():
    tagged = user("svc", tags={"steward:key-max-age-days": "forever"}, access_keys=(key(1, age=200),))
    assert only(c.old_access_key(snapshot(users=[tagged]), ctx())).failed


# multiple-active-keys / inactive-access-key --------------------------------------------


def test_two_active_keys_fire():
    snap = snapshot(users=[user(access_keys=(key(1), key(2)))])
    assert only(c.multiple_active_keys(snap, ctx())).failed


def test_one_active_one_inactive_key_passes_multiple_but_fires_inactive():
    snap = snapshot(users=[user(access_keys=(key(1), key(2, active=False)))])
    assert not only(c.multiple_active_keys(snap, ctx())).failed
    results = c.inactive_access_key(snap, ctx())
    assert [(r.sub_key, r.failed) for r in results] == [("slot:1", False), ("slot:2", True)]


def test_empty_key_slot_is_not_a_key():
    snap = snapshot(users=[user(access_keys=(key(1),))])
    assert [r.failed for r in c.inactive_access_key(snap, ctx())] == [False]


# stale-user ----------------------------------------------------------------------------


def test_user_idle_for_91_days_and_old_is_stale():
    snap = snapshot(
        users=[user(age=400, password_enabled=True, password_last_used=ago(91), access_keys=(key(1, age=300, used=120),))]
    )
    result = only(c.stale_user(snap, ctx()))
    assert result.failed
    assert result.details["last_activity"].startswith("2026-08-29")


def test_recent_key_use_keeps_user_fresh():
    snap = snapshot(users=[user(age=400, password_last_used=ago(200), access_keys=(key(1, used=3),))])
    assert not only(c.stale_user(snap, ctx())).failed


def test_never_used_user_created_long_ago_is_stale():
    assert only(c.stale_user(snapshot(users=[user(age=120)]), ctx())).failed


def test_never_used_user_created_recently_is_not_stale():
    assert not only(c.stale_user(snapshot(users=[user(age=30)]), ctx())).failed


def test_owner_comes_from_tags_then_email_name():
    tagged = user("svc", tags={"owner": "ops@example.com"}, password_enabled=True)
    email = user("dana@example.com", password_enabled=True)
    nobody = user("legacy", password_enabled=True)
    owners = [r.owner for r in c.console_user_without_mfa(snapshot(users=[tagged, email, nobody]), ctx())]
    assert owners == ["ops@example.com", "dana@example.com", None]
