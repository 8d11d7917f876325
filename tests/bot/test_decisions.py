"""The decision table, walked: every check has buttons, and every button is possible."""

from __future__ import annotations

import pytest

from bot.decisions import (
    FAMILIES,
    SECURITY_ONLY,
    Choice,
    buttons_for,
    parse_action_id,
    removal_action,
)
from checks.catalog import BY_ID, CATALOG
from checks.remediate import registry


def test_every_check_has_a_family():
    assert set(FAMILIES) == set(BY_ID)
    assert set(BY_ID) >= SECURITY_ONLY


@pytest.mark.parametrize("check", sorted(FAMILIES))
def test_remediation_buttons_are_offered_by_the_check(check):
    for button in FAMILIES[check]:
        if button.choice is Choice.REMEDIATE:
            assert button.action in BY_ID[check].remediations, (check, button.action)
            assert button.action in registry.BY_ID
        if button.choice is Choice.REQUEST_REMOVAL:
            assert {"detach-managed-policy", "delete-inline-policy"} <= set(BY_ID[check].remediations)


def test_irreversible_buttons_warn_before_they_are_clicked():
    for buttons in FAMILIES.values():
        for button in buttons:
            if button.action and not registry.action(button.action).reversible:
                assert button.confirm and "cannot be" in button.confirm


def test_every_family_lets_the_owner_keep_it():
    assert all(any(b.choice is Choice.KEEP for b in buttons) for buttons in FAMILIES.values())


def test_removal_needs_a_single_policy():
    assert removal_action({"policy_arn": "arn:aws:iam::1:policy/x"}) == "detach-managed-policy"
    assert removal_action({"policy_name": "inline"}) == "delete-inline-policy"
    combined = buttons_for("privilege-escalation-policy", {"policies": ["a", "b"]})
    assert Choice.REQUEST_REMOVAL not in {b.choice for b in combined}


def test_action_ids_round_trip():
    for spec in CATALOG:
        for button in FAMILIES[spec.id]:
            choice, action = parse_action_id(button.action_id)
            assert (choice, action) == (button.choice, button.action)
    with pytest.raises(ValueError):
        parse_action_id("remediation:undo")
