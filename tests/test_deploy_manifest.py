"""The shipped Slack manifests and install files are generated from the code, and the
method table they come from covers every Web API method the code calls."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bot.slack import grammar as commands
from bot.slack import manifest
from bot.slack.methods import METHODS
from checks import hub_role, permissions

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("mode", ["http", "socket"])
def test_committed_manifests_are_what_the_code_generates(mode):
    path = ROOT / manifest.OUTPUT[mode]
    assert path.read_text() == manifest.render(mode), "run: python -m bot.slack.manifest --write"
    assert manifest.main(["--check"]) == 0


def test_every_called_method_is_in_slacks_table():
    called = manifest.called_methods()
    assert set(called) - METHODS.keys() == set(), "add Slack's facts for these methods to bot/slack/methods.py"
    # The scan sees what the product calls, including through files_upload_v2 and Bolt.
    assert {"chat.postMessage", "conversations.history", "conversations.open", "views.publish",
            "files.getUploadURLExternal", "files.completeUploadExternal", "auth.test",
            "users.lookupByEmail", "usergroups.users.list", "conversations.info"} <= set(called)
    assert "bot/services/campaign_routing.py" in called["conversations.history"]  # resuming a DM
    for method in called:  # per-conversation methods say which conversations they touch
        assert not METHODS[method].by_kind or method in manifest.CONVERSATION_KINDS, method


def test_the_scopes_include_what_resuming_a_campaign_reads():
    scopes = manifest.build("http")["oauth_config"]["scopes"]["bot"]
    assert {"im:history", "channels:history", "groups:history", "commands", "chat:write"} <= set(scopes)
    assert "mpim:history" not in scopes and "chat:write.public" not in scopes  # least privilege


def test_the_scanner_finds_a_new_call(tmp_path, monkeypatch):
    (tmp_path / "bot").mkdir()
    (tmp_path / "checks").mkdir()
    (tmp_path / "bot" / "x.py").write_text(
        "def f(client):\n    client.reactions_add(name='eyes')\n    client.api_call('pins.add')\n")
    monkeypatch.setattr(manifest, "ROOT", tmp_path)
    assert {"reactions.add", "pins.add"} <= set(manifest.called_methods())


def test_command_and_events_come_from_the_registry_and_listeners():
    http, socket = manifest.build("http"), manifest.build("socket")
    [command] = http["features"]["slash_commands"]
    assert command["command"] == commands.SLASH_COMMAND and command["should_escape"] is True
    for verb in command["usage_hint"].split(" | "):  # every hinted verb is one the parser knows
        assert not isinstance(commands.parse(verb), commands.Usage), verb
    assert http["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert http["settings"]["interactivity"]["is_enabled"] is True
    assert http["settings"]["socket_mode_enabled"] is False and socket["settings"]["socket_mode_enabled"] is True
    urls = {command["url"], http["settings"]["event_subscriptions"]["request_url"],
            http["settings"]["interactivity"]["request_url"]}
    assert urls == {manifest.PLACEHOLDER_URL + "/slack/events"}
    assert "url" not in socket["features"]["slash_commands"][0]
    assert "request_url" not in socket["settings"]["interactivity"]


def test_one_member_role_name_everywhere():
    name = permissions.DEFAULT_ROLE_NAME
    template = yaml.safe_load((ROOT / "deploy/cloudformation/member-account-role.yaml").read_text())
    assert template["Parameters"]["RoleName"]["Default"] == name
    hub = yaml.safe_load((ROOT / hub_role.PATH).read_text())
    assert hub["Parameters"]["MemberRoleName"]["Default"] == name
    hub_name = hub["Parameters"]["RoleName"]["Default"]
    for path in (".env.example", "README.md"):
        text = (ROOT / path).read_text()
        in_arns = set(re.findall(r":role/([\w+=.@-]+)", text)) - {hub_name}
        in_settings = set(re.findall(r"STEWARD_ORG_ROLE_NAME=([\w+=.@-]+)", text))
        assert in_arns | in_settings == {name}, path


def test_hub_role_template_is_generated_and_cfn_lint_clean():
    assert (ROOT / hub_role.PATH).read_text() == hub_role.render(), "run: python -m checks.hub_role --write"
    api = pytest.importorskip("cfnlint.api")
    assert [str(m) for m in api.lint((ROOT / hub_role.PATH).read_text())] == []


def test_the_hub_role_reaches_both_member_roles_and_reduces_only_when_enabled():
    template = hub_role.hub_role_template()
    role = template["Resources"]["StewardHubRole"]["Properties"]
    hub, scan, reduce, _activity, audit_key = role["Policies"]
    (assume,) = [s for s in hub["PolicyDocument"]["Statement"] if s["Action"] == ["sts:AssumeRole"]]
    assert [r["Fn::Sub"].rsplit("/", 1)[1] for r in assume["Resource"]] == ["${MemberRoleName}",
                                                                            "${RestoreRoleName}",
                                                                            "${RotationRoleName}"]
    assert scan["PolicyDocument"] == permissions.scan_policy()
    assert reduce["Fn::If"][0] == "Remediation" and template["Parameters"]["EnableRemediation"]["Default"] == "false"
    when, policy, _ = audit_key["Fn::If"]
    assert when == "AuditKeyStored" and template["Parameters"]["AuditKeyArn"]["Default"] == ""
    (read,) = policy["PolicyDocument"]["Statement"]
    assert read["Resource"] == {"Ref": "AuditKeyArn"}  # that one secret, nothing else


def test_the_procfile_says_steward_runs_on_a_role():
    text = (ROOT / "Procfile").read_text()
    assert "steward db upgrade" in text and "role" in text.lower()


def test_activity_is_off_by_default_and_the_queue_is_the_hub_s_only_sqs_grant():
    from checks import permissions as p

    template = hub_role.hub_role_template()
    assert template["Parameters"]["EnableActivity"]["Default"] == "false"
    activity = [r for r in template["Resources"].values() if r.get("Condition") == "Activity"]
    assert {r["Type"] for r in activity} >= {"AWS::Events::EventBus", "AWS::SQS::Queue", "AWS::Events::Rule"}
    queue = template["Resources"]["ActivityQueue"]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5 and queue["ReceiveMessageWaitTimeSeconds"] == 20
    role = template["Resources"]["StewardHubRole"]["Properties"]
    when, policy, _ = role["Policies"][3]["Fn::If"]
    (grant,) = policy["PolicyDocument"]["Statement"]
    assert when == "Activity" and grant["Action"] == sorted(p.ACTIVITY_ACTIONS)
    assert grant["Resource"] == {"Fn::GetAtt": ["ActivityQueue", "Arn"]}
    bus_policy = template["Resources"]["ActivityBusPolicy"]["Properties"]["Statement"]
    assert bus_policy["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}}
    member = p.member_role_template()
    rule = member["Resources"]["ActivityForwardRule"]
    assert rule["Condition"] == "ForwardActivity" and member["Parameters"]["ActivityEventBusArn"]["Default"] == ""
    assert rule["Properties"]["EventPattern"]["source"] == ["aws.iam", "aws.sts", "aws.signin", "aws.cloudtrail"]
