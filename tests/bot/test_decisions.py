"""The decision table, walked: every check has buttons, and every button is possible."""

from __future__ import annotations

import pytest

from bot.core.decisions import (
    FAMILIES,
    SECURITY_ONLY,
    Choice,
    all_families,
    buttons_for,
    family,
    parse_action_id,
    removal_action,
)
from checks.catalog import BY_ID, CATALOG, RAISED_BY_PEOPLE
from checks.remediate import registry


def test_every_check_has_a_family():
    assert set(all_families()) == set(BY_ID)
    assert set(FAMILIES) <= set(BY_ID)
    assert set(BY_ID) >= SECURITY_ONLY


def test_a_row_in_families_differs_from_the_default():
    """`FAMILIES` holds only the checks whose buttons are not the default, so that adding a
    check that fits the default touches no table."""
    from bot.core.decisions import EXCEPTION, NOT_MINE, SNOOZE, remediation_button

    for check, buttons in FAMILIES.items():
        default = (*map(remediation_button, BY_ID[check].remediations), EXCEPTION, SNOOZE, NOT_MINE)
        assert buttons != default, f"{check}: its FAMILIES row is the default; remove it"


def test_a_new_remediation_gets_a_button_from_the_action_itself():
    """An action with no tailored button is labelled by its title; one that needs an
    approver or cannot be undone asks before it is clicked."""
    from bot.core.decisions import REMEDIATION_BUTTONS, remediation_button

    for action in registry.ACTIONS:
        button = remediation_button(action.id)
        assert button.action == action.id and button.choice is Choice.REMEDIATE
        if action.id not in REMEDIATION_BUTTONS:
            assert button.label == action.title
            assert (button.confirm is None) is action.owner_may_apply_alone
            if not action.reversible:
                assert "cannot be undone" in button.confirm


@pytest.mark.parametrize("check", sorted(BY_ID))
def test_remediation_buttons_are_offered_by_the_check(check):
    for button in family(check):
        if button.choice is Choice.REMEDIATE:
            assert button.action in BY_ID[check].remediations, (check, button.action)
            assert button.action in registry.BY_ID
        if button.choice is Choice.REQUEST_REMOVAL:
            assert {"detach-managed-policy", "delete-inline-policy"} <= set(BY_ID[check].remediations)


def test_irreversible_buttons_warn_before_they_are_clicked():
    for buttons in all_families().values():
        for button in buttons:
            if button.action and not registry.action(button.action).reversible:
                assert button.confirm and "cannot be" in button.confirm


def test_every_family_lets_the_owner_keep_it():
    assert all(any(b.choice is Choice.EXCEPTION for b in buttons) for buttons in all_families().values())


def test_removal_needs_a_single_policy():
    assert removal_action({"policy_arn": "arn:aws:iam::1:policy/x"}) == "detach-managed-policy"
    assert removal_action({"policy_name": "inline"}) == "delete-inline-policy"
    combined = buttons_for("privilege-escalation-policy", {"policies": ["a", "b"]})
    assert Choice.REQUEST_REMOVAL not in {b.choice for b in combined}


def test_action_ids_round_trip():
    for spec in CATALOG:
        for button in family(spec.id):
            choice, action = parse_action_id(button.action_id)
            assert (choice, action) == (button.choice, button.action)
    with pytest.raises(ValueError):
        parse_action_id("remediation:undo")


# --- who may undo what: the decision table, walked over every action ---------------------------

OWNER, APPROVER, OTHER = "UOWNER0001", "UAPPROVER1", "UAPPROVER2"


@pytest.mark.parametrize("action", registry.ACTIONS, ids=lambda a: a.id)
def test_every_action_says_who_may_undo_it(action):
    from bot.core.decisions import AUTO_ACTOR, UNDO_WORDS, UndoRule, undo_rule

    def rule(requested_by, undoer, owner):
        return undo_rule(action, requested_by=requested_by, undoer=undoer, undoer_is_owner=owner)

    cases = {  # (who asked for the change, who asks for the undo, is that the owner)
        "owner undoes own": (OWNER, OWNER, True),
        "owner undoes auto-remediation": (AUTO_ACTOR, OWNER, True),
        "owner undoes an approver's": (APPROVER, OWNER, True),
        "approver undoes own": (APPROVER, APPROVER, False),
        "approver undoes owner's": (OWNER, APPROVER, False),
        "operator's change undone in Slack": ("cli:root", OWNER, True),
    }
    rules = {name: rule(*case) for name, case in cases.items()}
    if not action.reversible:
        assert set(rules.values()) == {UndoRule.IMPOSSIBLE}
        return
    assert action.id in UNDO_WORDS  # the security channel says what the undo did
    one_click = {name for name, r in rules.items() if r is UndoRule.ONE_CLICK}
    if action.owner_may_apply_alone and not action.undo_needs_restore:
        # Only an owner's own access-reducing action (or Steward's, announced to them) is one
        # click for that owner; everything else gives access back and needs a second person.
        assert one_click == {"owner undoes own", "owner undoes auto-remediation"}
    else:
        # Needed an approver to do, or gives access back through the restore role (the undo
        # of a right-sizing): never one click, for anyone.
        assert one_click == set()
    assert all(r is UndoRule.NEEDS_APPROVER for name, r in rules.items() if name not in one_click)


def test_the_rule_as_a_table():
    """The same table, spelled out for the actions people meet most."""
    from bot.core.decisions import UndoRule, undo_rule

    table = {
        ("deactivate-access-key", OWNER, OWNER, True): UndoRule.ONE_CLICK,
        ("deactivate-access-key", APPROVER, OWNER, True): UndoRule.NEEDS_APPROVER,
        ("quarantine-user", OWNER, OWNER, True): UndoRule.ONE_CLICK,
        ("quarantine-user", APPROVER, APPROVER, False): UndoRule.NEEDS_APPROVER,
        ("detach-managed-policy", OWNER, OWNER, True): UndoRule.NEEDS_APPROVER,
        ("delete-inline-policy", OWNER, APPROVER, False): UndoRule.NEEDS_APPROVER,
        ("remove-user-from-group", OWNER, OWNER, True): UndoRule.NEEDS_APPROVER,
        ("apply-cis-password-policy", APPROVER, OTHER, False): UndoRule.NEEDS_APPROVER,
        ("delete-access-key", OWNER, OWNER, True): UndoRule.IMPOSSIBLE,
        ("remove-console-password", OWNER, APPROVER, False): UndoRule.IMPOSSIBLE,
        ("delete-user", APPROVER, OTHER, False): UndoRule.IMPOSSIBLE,
    }
    for (action, requested_by, undoer, owner), expected in table.items():
        got = undo_rule(registry.action(action), requested_by=requested_by, undoer=undoer, undoer_is_owner=owner)
        assert got is expected, (action, requested_by, undoer)


def test_auto_remediable_checks_come_from_the_actions():
    from bot.core.decisions import auto_action, auto_remediable_checks
    from checks.remediate.registry import action

    checks = auto_remediable_checks()
    assert checks == ("unused-access-key", "old-access-key", "stale-user", "compromised-key-quarantine")
    for check in BY_ID:
        chosen = auto_action(check)
        assert (chosen is not None) is (check in checks)
        if chosen:
            assert action(chosen).auto_remediable


def test_auto_remediate_setting_names_the_possible_checks(monkeypatch):
    from bot.config import SettingsError, load_settings
    from bot.core.decisions import auto_remediable_checks

    monkeypatch.setenv("STEWARD_AUTO_REMEDIATE", "stale-user,admin-policy")
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    assert "STEWARD_AUTO_REMEDIATE" in message and "no reversible owner action for admin-policy" in message
    assert "possible: " + ", ".join(auto_remediable_checks()) in message


def test_the_decision_table_in_the_docs_is_the_code():
    """docs/architecture.md shows the decision table; it must say what the code does."""
    from pathlib import Path

    from bot.core.decision_table import replace_in

    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    assert replace_in(doc) == doc, "docs/architecture.md's decision table is out of date: run `python docs/regenerate.py`"
    rows = [line for line in doc.splitlines() if line.startswith("| `")]
    # every check of the catalog once, and those raised by people (access reviews)
    assert sorted(row.split("`")[1] for row in rows) == sorted({spec.id for spec in CATALOG} | RAISED_BY_PEOPLE)
    assert "| `inactive-access-key` | low | key | Delete key, Keep…, Snooze, Not mine | — | owner |" in rows


def test_every_catalog_check_has_a_next_step_that_fixes_it():
    """No dead ends: a remediation, a removal request, a rotation promise or a guide link."""
    from checks.catalog import CATALOG

    dead_ends = [spec.id for spec in CATALOG if not any(b.fixes for b in family(spec.id))]
    assert dead_ends == []
    # Guides are links to AWS's own documentation.
    guides = [b for buttons in all_families().values() for b in buttons if b.url]
    assert guides and all(b.url.startswith("https://docs.aws.amazon.com/") for b in guides)
    assert any("mfa" in b.url for b in family("console-user-without-mfa") if b.url)
    assert any("access-keys" in b.url for b in family("old-access-key") if b.url)
    assert any(b.action == "delete-role" for b in family("unused-role"))
