"""Who is who: Slack users <-> owner values, cached, and security approvers."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.owners import OwnerDirectory
from sandbox.slack_fake import DEFAULT_TOKEN, SlackFake


@pytest.fixture
def fake():
    with SlackFake() as fake:
        yield fake


def directory(fake, **kwargs):
    return OwnerDirectory(WebClient(token=DEFAULT_TOKEN, base_url=fake.base_url), **kwargs)


def test_email_and_user_lookups_are_cached(fake):
    alice = fake.add_user(name="alice", email="Alice@Example.com")
    owners = directory(fake)
    assert owners.email_of(alice) == "alice@example.com"
    assert owners.email_of(alice) == "alice@example.com"
    assert owners.user_for("alice@example.com") == alice
    assert owners.user_for("ALICE@example.com") == alice
    assert len(fake.calls("users.info")) == 1
    assert len(fake.calls("users.lookupByEmail")) == 1


def test_slack_id_owner_needs_no_lookup_and_unknowns_are_none(fake):
    owners = directory(fake)
    assert owners.user_for("U0123456789") == "U0123456789"
    assert owners.user_for("nobody@example.com") is None
    assert owners.user_for("nobody@example.com") is None  # negative answer cached
    assert len(fake.calls("users.lookupByEmail")) == 1
    assert owners.user_for("not an owner") is None
    assert owners.user_for(None) is None


def test_negative_answers_expire_sooner(fake):
    now = [0.0]
    owners = directory(fake, ttl_seconds=3600, negative_ttl_seconds=60, timer=lambda: now[0])
    assert owners.user_for("new@example.com") is None
    uid = fake.add_user(name="new", email="new@example.com")
    now[0] = 30
    assert owners.user_for("new@example.com") is None
    now[0] = 61
    assert owners.user_for("new@example.com") == uid


def test_owner_values_are_the_id_and_the_email(fake):
    bob = fake.add_user(name="bob", email="bob@example.com")
    assert directory(fake).owner_values(bob) == {bob, "bob@example.com"}


def test_approvers_from_settings_and_usergroup(fake):
    carol = fake.add_user(name="carol", email="carol@example.com")
    dave = fake.add_user(name="dave", email="dave@example.com")
    eve = fake.add_user(name="eve", email="eve@example.com")
    group = fake.add_usergroup("security", [dave])
    owners = directory(fake, approvers=[carol], approver_usergroup=group)
    assert owners.is_approver(carol)
    assert owners.is_approver(dave)
    assert not owners.is_approver(eve)
    assert owners.is_approver(dave)
    assert len(fake.calls("usergroups.users.list")) == 1


def test_slack_errors_other_than_not_found_are_raised(fake):
    fake.fail("users.lookupByEmail", error="internal_error", times=1)
    with pytest.raises(SlackApiError):
        directory(fake).user_for("x@example.com")


def test_prime_resolves_many_emails_with_users_list(fake):
    ids = {f"p{i}@example.com": fake.add_user(name=f"p{i}", email=f"P{i}@example.com") for i in range(30)}
    owners = directory(fake)
    assert owners.prime([*ids, "ghost@example.com", None, "UABCDEFG12"], page_size=10) == 31
    assert {email: owners.user_for(email) for email in ids} == ids
    assert owners.user_for("ghost@example.com") is None
    assert fake.calls("users.lookupByEmail") == []
    assert len(fake.calls("users.list")) >= 3  # paginated


def test_prime_skips_small_batches(fake):
    fake.add_user(name="one", email="one@example.com")
    owners = directory(fake)
    assert owners.prime(["one@example.com"]) == 0
    assert fake.calls("users.list") == []


def test_a_failing_lookup_falls_back_to_the_last_known_answer(fake):
    now = [0.0]
    alice = fake.add_user(name="alice", email="alice@example.com")
    owners = directory(fake, ttl_seconds=10, timer=lambda: now[0])
    assert owners.email_of(alice) == "alice@example.com"
    now[0] = 20  # expired: Slack is asked again, and fails
    fake.fail("users.info", "fatal_error")
    assert owners.email_of(alice) == "alice@example.com"
    assert len(fake.calls("users.info")) == 2
    stranger = fake.add_user(name="stranger", email="s@example.com")
    fake.fail("users.info", "fatal_error")
    with pytest.raises(SlackApiError):  # never known: the failure is not hidden
        owners.email_of(stranger)
