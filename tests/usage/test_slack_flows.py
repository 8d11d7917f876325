"""The owner's side in Slack, through signed HTTP to `steward serve`, the Slack fake and moto:
"Show policy JSON" opens the proposal in a modal; "Rotate it for me" hands the new key over
in Secrets Manager and says where, privately, with no secret anywhere in Slack."""

from __future__ import annotations

import json

import boto3
import pytest

from bot.services.usage import UsageService
from bot.slack.blocks import dm
from tests import test_campaigns
from tests.access_advisor import install as install_advisor
from tests.aws import ACCOUNT_ID, FAKE_CREDENTIALS
from tests.bot.test_serve_http import running_steward
from tests.secrets_strict import strict_secrets
from tests.test_campaigns import BOB, DAVE, click, dm_message

world = test_campaigns.world  # the same fixture: bob (inline s3:*), dave (an old key)
ROTATE_ROLE = "IAMStewardRotate"


def choose(served, world, user, card, choice: str, token: str) -> None:
    """Click the card's button for `choice`, or pick it in the card's "More…" select."""
    for block in card["blocks"]:
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            if element.get("action_id") == f"finding:{choice}" and element.get("value") == token:
                click(served, world, user, card, f"finding:{choice}", token)
                return
            for option in element.get("options", []) if element.get("action_id") == dm.MORE_ACTION else []:
                if option["value"] == f"{choice}|{token}":
                    click(served, world, user, card, dm.MORE_ACTION, None,
                          action={"type": "static_select", "action_id": dm.MORE_ACTION, "selected_option": option})
                    return
    raise AssertionError(f"no {choice} for {token} on the card: {json.dumps(card['blocks'])[:1500]}")


@pytest.fixture
def served(world):
    aws = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": world.moto, "AWS_CONFIG_FILE": str(world.workdir / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(world.workdir / "none"), "STEWARD_SECURITY_CHANNEL": world.security,
           "STEWARD_RESTORE_ROLE_NAME": "IAMStewardRestore", "STEWARD_ROTATION_ROLE_NAME": ROTATE_ROLE}
    with running_steward(world.fake, world.db, world.workdir, env=aws) as s:
        yield s


def test_show_policy_json_opens_the_proposal(world, served, monkeypatch):
    advisor = install_advisor(monkeypatch)
    world.iam.put_user_policy(UserName="bob", PolicyName="app", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["sqs:*", "sns:Publish", "kms:Decrypt"],
                                                "Resource": "*"}]}))
    advisor.use(f"arn:aws:iam::{ACCOUNT_ID}:user/bob", "kms:Decrypt", 3)
    advisor.use(f"arn:aws:iam::{ACCOUNT_ID}:user/bob", "s3:GetObject", 1)
    steward = world.steward()
    [result] = UsageService(steward.settings, engine=world.engine, sleep=lambda s: None).collect(actor="test")
    assert result.principals >= 1 and not result.error
    steward.scans.run(actor="test")
    steward.campaigns.run_cycle()
    finding = world.finding("unused-permissions", "bob")  # one: s3-everything is used, so it passes
    assert finding.sub_key == "inline:app"
    assert finding.details["summary"] == "removes sqs:*, sns:Publish; keeps kms:Decrypt"
    card = dm_message(world, BOB)
    assert "Right-sized: removes sqs:*, sns:Publish; keeps kms:Decrypt." in json.dumps(card["blocks"])
    opened = len(world.fake.calls("views.open"))
    choose(served, world, BOB, card, "show_policy", finding.token)
    world.fake.wait_for(lambda: len(world.fake.calls("views.open")) > opened, timeout=20)
    view = world.fake.calls("views.open")[-1].params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    text = json.dumps(view["blocks"])
    assert view["callback_id"] == "policy_modal" and '\\"kms:Decrypt\\"' in text and "sqs" not in text.split("```")[1]


def test_rotate_it_for_me_says_where_the_key_is_and_never_shows_it(world, served, monkeypatch):
    strict_secrets(monkeypatch)
    world.iam.create_role(RoleName=ROTATE_ROLE, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}}]}))
    world.steward(rotation_role_name=ROTATE_ROLE).campaigns.run_cycle()
    card = dm_message(world, DAVE)
    token = world.finding("old-access-key", "dave").token
    choose(served, world, DAVE, card, "rotate_for_me", token)
    reply = world.fake.wait_for(lambda: [e for e in world.fake.ephemerals(DAVE) if "Secrets Manager" in
                                         json.dumps(e)], timeout=30)[0]
    keys = world.iam.list_access_keys(UserName="dave")["AccessKeyMetadata"]
    assert len(keys) == 2
    new_id = next(k["AccessKeyId"] for k in keys if k["AccessKeyId"] not in json.dumps(world.finding(
        "old-access-key", "dave").details))
    said = json.dumps(reply)
    assert new_id in said and "iam-steward/rotation/dave/" in said and "user/dave" in said
    # The secret key appears in no Slack call at all.
    secrets = boto3.client("secretsmanager", endpoint_url=world.moto)
    arn = secrets.list_secrets()["SecretList"][0]["ARN"]
    with pytest.raises(Exception, match="AccessDenied"):
        secrets.get_secret_value(SecretId=arn)  # Steward's and everyone else's read is denied
    from moto.secretsmanager.models import secretsmanager_backends

    backend = secretsmanager_backends[ACCOUNT_ID]["us-east-1"]  # the store itself, past any policy
    stored = json.loads(backend.get_secret_value(secret_id=arn, version_id=None, version_stage=None)["SecretString"])
    assert stored["AccessKeyId"] == new_id
    everything = json.dumps([c.params for c in world.fake.calls()], default=str)
    assert new_id in everything and stored["SecretAccessKey"] not in everything
    assert "rotation.key_created" in world.actions()


def test_without_the_rotation_role_the_card_never_offers_rotate_it_for_me(world):
    """Off by default: the card leads with "I'll rotate it" rather than a button that could
    only be refused."""
    world.steward().campaigns.run_cycle()
    text = json.dumps(dm_message(world, DAVE)["blocks"])
    assert "rotate_for_me" not in text and "I'll rotate it" in text
