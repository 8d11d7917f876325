"""Account targets are validated: role lists in any separator, bad ARNs named, duplicates
dropped, exclusions applied to every source (docs/architecture.md §5 pitfall: a space-separated list once
became one bogus target and scanned 1 of 3 accounts with exit 0)."""

from __future__ import annotations

import boto3
import pytest
from typer.testing import CliRunner

from bot.cli.main import app
from bot.config import SettingsError, load_settings
from checks.accounts import discover_targets
from checks.collect import CollectError
from tests.aws import ACCOUNT_ID, aws_env, moto_session  # noqa: F401  (fixtures)

A, B, C = "111111111111", "222222222222", "333333333333"


def role(account: str, name: str = "IAMSteward") -> str:
    return f"arn:aws:iam::{account}:role/{name}"


@pytest.mark.parametrize("raw", [
    f"{role(A)},{role(B)},{role(C)}",
    f"{role(A)} {role(B)}  {role(C)}",
    f"{role(A)}\n{role(B)}\n{role(C)}\n",
    f" {role(A)}, {role(B)},\n{role(C)} ,{role(A)}",
])
def test_role_lists_split_on_commas_spaces_and_newlines(monkeypatch, raw):
    monkeypatch.setenv("STEWARD_ACCOUNT_ROLES", raw)
    assert load_settings().account_roles == [role(A), role(B), role(C)]


@pytest.mark.parametrize(("raw", "named"), [
    (f"{role(A)} arn:aws:iam::12345:role/x", "arn:aws:iam::12345:role/x"),
    (f"{role(A)};{role(B)}", f"{role(A)};{role(B)}"),
    (f"arn:aws:iam::{A}:user/bob", f"arn:aws:iam::{A}:user/bob"),
])
def test_a_bad_role_is_named(monkeypatch, raw, named):
    monkeypatch.setenv("STEWARD_ACCOUNT_ROLES", raw)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert repr(named) in str(error.value) and "STEWARD_ACCOUNT_ROLES" in str(error.value)


def test_scan_with_a_bad_role_list_exits_2_naming_it(tmp_path):
    result = CliRunner().invoke(app, ["scan", "--no-save"], env={
        "STEWARD_ACCOUNT_ROLES": f"{role(A)} not-an-arn"})
    assert result.exit_code == 2
    assert "'not-an-arn'" in result.stderr and "Traceback" not in result.stderr


def test_exclusions_apply_to_listed_roles_and_organizations(monkeypatch, moto_session):  # noqa: F811
    monkeypatch.setenv("STEWARD_EXCLUDE_ACCOUNTS", f"{B}\n")
    monkeypatch.setenv("STEWARD_ACCOUNT_ROLES", f"{role(A)} {role(B)}")
    settings = load_settings()
    assert [t.account_id for t in discover_targets(moto_session, **settings.target_options())] == [A]

    org = boto3.client("organizations")
    org.create_organization(FeatureSet="ALL")
    member = org.create_account(AccountName="prod", Email="prod@example.com")["CreateAccountStatus"]["AccountId"]
    monkeypatch.setenv("STEWARD_ORG_ROLE_NAME", "IAMSteward")
    monkeypatch.setenv("STEWARD_EXCLUDE_ACCOUNTS", f"{member},{B}")
    targets = discover_targets(moto_session, **load_settings().target_options())
    assert [t.account_id for t in targets] == [ACCOUNT_ID, A]  # organizations + the listed role


def test_excluding_everything_is_an_error_not_an_empty_scan(monkeypatch, moto_session):  # noqa: F811
    monkeypatch.setenv("STEWARD_ACCOUNT_ROLES", role(A))
    monkeypatch.setenv("STEWARD_EXCLUDE_ACCOUNTS", A)
    with pytest.raises(CollectError, match="no account left to scan"):
        discover_targets(moto_session, **load_settings().target_options())


def test_exclusions_must_be_account_ids(monkeypatch):
    monkeypatch.setenv("STEWARD_EXCLUDE_ACCOUNTS", "prod")
    with pytest.raises(SettingsError, match=r"STEWARD_EXCLUDE_ACCOUNTS.*'prod'"):
        load_settings()
