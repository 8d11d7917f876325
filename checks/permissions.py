"""Least-privilege IAM policies, generated from what the code declares it calls.

Three roles are involved:

* the **member role**, one per scanned account (deployed by
  `deploy/cloudformation/member-account-role.yaml`): the scan policy (`SCAN_ACTIONS`: what
  `checks.collect` calls) and, when remediation is enabled, the **reduce** policy: every
  permission the actions' applies need, and the undos that take nothing back; all of it
  classed read or reduce by `checks.remediate.base.access_class`. The one attach in it
  (quarantine: AWSDenyAll) is limited to that policy by an `iam:PolicyARN` condition;
* the **restore role**, a second role in the member account, only when `EnableRestore` is
  true (off by default): the **restore** policy, what the undos that give access back need
  (re-attach, put an inline policy back, add to a group, remove a password policy).
  Steward assumes it only to carry out such an undo (`STEWARD_RESTORE_ROLE_NAME`). It is an
  escalation path by nature, which is why it is separate and off;
* the **export** policy (`EXPORT_ACTIONS`, with `EnableSecurityHubExport`): what `steward
  export --to securityhub` calls with the member role, limited to the account's own default
  Security Hub product (a provider can only write findings there);
* the **Steward role** the bot itself runs as: the hub policy (`HUB_ACTIONS`: what
  `checks.accounts` calls to find accounts and assume the member roles), plus the scan
  (and reduce) policy for its own account, which it scans with its own credentials.

`SCAN_ACTIONS` and `HUB_ACTIONS` are data, kept honest by a test that runs a real
`collect_account`, `resolve_access_key_ids`, `discover_targets` and `session_for` against
moto, records every operation, and fails on any operation not declared here. The
remediation actions are checked the same way in their own tests.

Generated files (committed; a test compares them byte for byte):

    deploy/iam/steward-scan-policy.json
    deploy/iam/steward-reduce-policy.json
    deploy/iam/steward-restore-policy.json
    deploy/iam/steward-hub-policy.json
    deploy/iam/steward-export-policy.json
    deploy/iam/steward-rotation-policy.json
    deploy/cloudformation/member-account-role.yaml

Regenerate with `python -m checks.permissions --write`; `--check` (the default) exits 1
when a committed file differs from what the declarations generate.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from checks.remediate.base import QUARANTINE_POLICY_ARN, REDUCE_CONDITIONS, access_class
from checks.remediate.registry import ACTIONS
from checks.rotation import ROTATION_PERMISSIONS, SECRET_PREFIX
from checks.securityhub import PERMISSIONS as EXPORT_ACTIONS

ROOT = Path(__file__).resolve().parents[1]
POLICY_VERSION = "2012-10-17"
DEFAULT_ROLE_NAME = "IAMSteward"
DEFAULT_RESTORE_ROLE_NAME = "IAMStewardRestore"
DEFAULT_ROTATION_ROLE_NAME = "IAMStewardRotate"

# What `checks.collect` calls in every scanned account (the member role's scan policy).
SCAN_ACTIONS: Mapping[str, str] = {
    "sts:GetCallerIdentity": "collect_account: which account the credentials belong to",
    "iam:GenerateCredentialReport": "collect_account: request the credential report",
    "iam:GetCredentialReport": "collect_account: fetch the credential report",
    "iam:GetAccountAuthorizationDetails": "collect_account: users, groups, roles, policies",
    "iam:ListPolicies": "fetch_policy_documents: default versions of attached AWS policies",
    "iam:GetPolicy": "fetch_policy_documents: a policy the listing missed (attached meanwhile)",
    "iam:GetPolicyVersion": "fetch_policy_documents: documents of attached AWS policies",
    "iam:GetAccountPasswordPolicy": "collect_account: the password policy",
    "iam:GetAccountSummary": "collect_account: the account summary",
    "iam:ListAccessKeys": "resolve_access_key_ids: key ids of users with key findings",
    "iam:ListAccountAliases": "account_alias: the account's name beside its id (cached per account)",
    "cloudtrail:DescribeTrails": "fetch_trails: the account's trails, shadow trails included",
    "cloudtrail:GetTrailStatus": "fetch_trails: whether the multi-region trail is logging",
    "cloudtrail:GetEventSelectors": "fetch_trails: whether a trail with custom selectors records management events",
    "s3:GetBucketPolicyStatus": "fetch_trails: whether the trail's own bucket is public",
    "iam:GenerateServiceLastAccessedDetails": "collect_usage: start a last-accessed job per user and role",
    "iam:GetServiceLastAccessedDetails": "collect_usage: poll and read each last-accessed job",
}

# What `steward events` (bot/run/events.py) calls on the activity queue, with the Steward
# role's own credentials (the hub template grants it on that one queue, with EnableActivity).
ACTIVITY_ACTIONS: Mapping[str, str] = {
    "sqs:ReceiveMessage": "Intake.poll_once: long-poll the queue EventBridge fills",
    "sqs:DeleteMessage": "Intake.poll_once: DeleteMessageBatch once a batch is handled",
    "sqs:GetQueueAttributes": "steward doctor: the queue's dead-letter queue and visibility timeout",
}
# The CloudTrail events forwarded (EventBridge sources) and their detail types.
ACTIVITY_SOURCES = ("aws.iam", "aws.sts", "aws.signin", "aws.cloudtrail")
ACTIVITY_DETAIL_TYPES = ("AWS API Call via CloudTrail", "AWS Console Sign In via CloudTrail")

# What `checks.accounts` calls with the Steward role's own credentials.
HUB_ACTIONS: Mapping[str, str] = {
    "sts:GetCallerIdentity": "discover_targets: the Steward's own account and partition",
    "organizations:ListAccounts": "discover_targets: the organization's accounts",
    "sts:AssumeRole": "session_for: enter each member account's Steward role",
    "organizations:DescribeOrganization": "HubScps: the management account (no SCP limits it)",
    "organizations:ListRoots": "HubScps: the organization's root (the SCPs above every account)",
    "organizations:ListOrganizationalUnitsForParent": "HubScps: the OU tree, once per scan",
    "organizations:ListAccountsForParent": "HubScps: which OU holds each account, once per scan",
    "organizations:ListPoliciesForTarget": "HubScps: the SCPs of each account, OU and root",
    "organizations:DescribePolicy": "HubScps: an SCP's document, once per policy",
}
# The hub actions that read the SCPs limiting the scanned accounts (their own statement).
SCP_ACTIONS = frozenset(a for a in HUB_ACTIONS if a.split(":")[1] in {
    "DescribeOrganization", "ListRoots", "ListOrganizationalUnitsForParent", "ListAccountsForParent",
    "ListPoliciesForTarget", "DescribePolicy"})


def reduce_actions() -> dict[str, list[str]]:
    """IAM action -> the remediation ids that need it under the default role: every apply,
    and every undo that gives nothing back."""
    needed: dict[str, list[str]] = {}
    for action in ACTIONS:
        if action.apply_needs_restore:
            continue  # applied and undone under the restore role only
        wanted = action.permissions
        if not action.undo_needs_restore:
            wanted = wanted | action.undo_permissions
        for permission in sorted(wanted):
            needed.setdefault(permission, []).append(action.id)
    for permission, users in needed.items():
        if access_class(permission) == "restore" and permission not in REDUCE_CONDITIONS:
            raise ValueError(f"{permission} (for {', '.join(users)}) would let the default "
                             "role grant access; give it a REDUCE_CONDITIONS entry or move it")
    return dict(sorted(needed.items()))


def restore_actions() -> dict[str, list[str]]:
    """IAM action -> the remediation ids whose undo gives access back, and those whose
    apply needs a permission that could grant (right-sizing: a new policy version) — both
    only ever under the restore role."""
    needed: dict[str, list[str]] = {}
    for action in ACTIONS:
        if action.apply_needs_restore:
            for permission in sorted(action.permissions | action.undo_permissions):
                needed.setdefault(permission, []).append(action.id)
        elif action.undo_needs_restore:
            for permission in sorted(action.undo_permissions):
                needed.setdefault(permission, []).append(action.id)
    return dict(sorted(needed.items()))


# ---------------------------------------------------------------------------------------
# Policies


def statement(sid: str, actions: Sequence[str], resource: Any = "*", effect: str = "Allow",
              condition: Mapping[str, Any] | None = None) -> dict:
    out = {"Sid": sid, "Effect": effect, "Action": sorted(set(actions)), "Resource": resource}
    if condition:
        out["Condition"] = condition
    return out


def document(*statements: dict) -> dict:
    return {"Version": POLICY_VERSION, "Statement": list(statements)}


def scan_policy() -> dict:
    return document(statement("IAMStewardScanReadOnly", list(SCAN_ACTIONS)))


def reduce_policy(*, cloudformation: bool = False) -> dict:
    """The default remediation policy. `cloudformation`: the quarantine policy's ARN in the
    conditions takes the stack's partition (the JSON file is for the `aws` partition)."""
    actions = reduce_actions()
    plain = [a for a in actions if a not in REDUCE_CONDITIONS]
    conditioned = [
        statement(f"IAMStewardOnly{a.split(':')[1]}OfItsDenyPolicy", [a],
                  condition=_partitioned(REDUCE_CONDITIONS[a]) if cloudformation
                  else REDUCE_CONDITIONS[a])
        for a in actions
        if a in REDUCE_CONDITIONS
    ]
    return document(statement("IAMStewardReduceAccess", plain), *conditioned)


def _partitioned(value: Any) -> Any:
    """`value` with the quarantine policy's ARN as `arn:${AWS::Partition}:…` (Fn::Sub)."""
    if value == QUARANTINE_POLICY_ARN:
        return {"Fn::Sub": value.replace("arn:aws:", "arn:${AWS::Partition}:", 1)}
    if isinstance(value, Mapping):
        return {k: _partitioned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_partitioned(v) for v in value]
    return value


def export_policy(*, cloudformation: bool = False) -> dict:
    """Security Hub findings of the account itself, through its default product only."""
    product = "arn:aws:securityhub:*:*:product/*/default"
    if cloudformation:
        product = {"Fn::Sub": "arn:${AWS::Partition}:securityhub:*:${AWS::AccountId}:product/${AWS::AccountId}/default"}
    return document(statement("IAMStewardExportFindings", list(EXPORT_ACTIONS), product))


def rotation_policy(*, cloudformation: bool = False) -> dict:
    """"Rotate it for me" (`checks.rotation`): create a user's new key and the secret that
    hands it over. Not reduce-only (a new key is new access), hence its own role, off by
    default. Secrets are limited to Steward's prefix; the secret's own resource policy then
    denies reading its value to everyone but the key's user, this role included."""
    iam = [a for a in ROTATION_PERMISSIONS if a.startswith("iam:")]
    secrets = [a for a in ROTATION_PERMISSIONS if a.startswith("secretsmanager:")]
    arn = f"arn:aws:secretsmanager:*:*:secret:{SECRET_PREFIX}*"
    resource: Any = arn
    if cloudformation:
        resource = {"Fn::Sub": f"arn:${{AWS::Partition}}:secretsmanager:*:${{AWS::AccountId}}:secret:{SECRET_PREFIX}*"}
    return document(statement("IAMStewardRotateKeys", iam),
                    statement("IAMStewardHandOverKeys", secrets, resource))


def restore_policy() -> dict:
    return document(statement("IAMStewardRestoreAccess", list(restore_actions())))


def hub_policy(role_name: str = DEFAULT_ROLE_NAME,
               restore_role_name: str = DEFAULT_RESTORE_ROLE_NAME,
               rotation_role_name: str = DEFAULT_ROTATION_ROLE_NAME) -> dict:
    assume = [a for a in HUB_ACTIONS if a == "sts:AssumeRole"]
    return document(
        statement("IAMStewardDiscoverAccounts",
                  [a for a in HUB_ACTIONS if a not in assume and a not in SCP_ACTIONS]),
        statement(
            "IAMStewardAssumeMemberRoles",
            assume,
            # The restore and rotation roles exist only where a member account enabled them.
            [f"arn:*:iam::*:role/{role_name}", f"arn:*:iam::*:role/{restore_role_name}",
             f"arn:*:iam::*:role/{rotation_role_name}"],
        ),
        statement("IAMStewardReadServiceControlPolicies", sorted(SCP_ACTIONS)),
    )


def self_protection_actions() -> list[str]:
    """The remediation actions that could change a role's own policies or its trust (who may
    assume it): Steward's roles are denied them on themselves, so Steward can never widen its
    own access nor let anyone else in."""
    every = {**reduce_actions(), **restore_actions()}
    return sorted(a for a in every if re.match(r"iam:((Attach|Detach|Put|Delete)Role|UpdateAssumeRolePolicy)", a))


# ---------------------------------------------------------------------------------------
# CloudFormation


def _ref(name: str) -> dict:
    return {"Ref": name}


def _not_empty(name: str) -> dict:
    return {"Fn::Not": [{"Fn::Equals": [_ref(name), ""]}]}


def _trust() -> dict:
    """Only the Steward (its role ARN, or its account) with the ExternalId."""
    return document(
        {
            "Sid": "OnlyIAMStewardWithTheExternalId",
            "Effect": "Allow",
            "Principal": {
                "AWS": {
                    "Fn::If": [
                        "TrustRoleArn",
                        _ref("StewardRoleArn"),
                        # IAM reads a bare account id as its root ARN.
                        _ref("StewardAccountId"),
                    ]
                }
            },
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": _ref("ExternalId")}},
        }
    )


def _never_change_steward_roles() -> dict:
    """Neither role may change the policies of either: Steward never widens its own access."""
    arn = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/"
    return statement(
        "NeverChangeStewardRoles",
        self_protection_actions(),
        [{"Fn::Sub": arn + "${RoleName}"}, {"Fn::Sub": arn + "${RestoreRoleName}"}],
        effect="Deny",
    )


def _with_self_protection(policy: dict) -> dict:
    return {**policy, "Statement": [*policy["Statement"], _never_change_steward_roles()]}


def member_role_template() -> dict:
    """The member-account roles: scan (always) and reduce (EnableRemediation) in the Steward
    role; the restore role only with EnableRestore. Both trust only the Steward."""
    reduce = _with_self_protection(reduce_policy(cloudformation=True))
    restore = _with_self_protection(restore_policy())
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            "IAM Steward access roles for one member account: read-only IAM scanning, "
            "optionally the remediation actions (which only reduce access), and optionally "
            "a separate restore role for approved undos that give access back. Generated by "
            "`python -m checks.permissions --write`; do not edit."
        ),
        "Parameters": {
            "StewardRoleArn": {
                "Type": "String",
                "Default": "",
                "AllowedPattern": r"^(arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+)?$",
                "Description": (
                    "ARN of the role IAM Steward runs as (preferred: only that role may "
                    "assume this one). Set this or StewardAccountId."
                ),
            },
            "StewardAccountId": {
                "Type": "String",
                "Default": "",
                "AllowedPattern": "^([0-9]{12})?$",
                "Description": (
                    "Account IAM Steward runs in, when StewardRoleArn is not set (then any "
                    "principal of that account allowed sts:AssumeRole may assume this role)."
                ),
            },
            "ExternalId": {
                "Type": "String",
                "NoEcho": True,
                "MinLength": 2,
                "MaxLength": 1224,
                "AllowedPattern": r"^[\w+=,.@:/-]+$",
                "Description": "STEWARD_EXTERNAL_ID: a long random secret shared with Steward.",
            },
            "RoleName": {
                "Type": "String",
                "Default": DEFAULT_ROLE_NAME,
                "AllowedPattern": r"^[\w+=,.@-]{1,64}$",
                "Description": "Name of this role (STEWARD_ORG_ROLE_NAME for Organizations).",
            },
            "EnableRemediation": {
                "Type": "String",
                "Default": "false",
                "AllowedValues": ["false", "true"],
                "Description": (
                    "true: also allow the remediation actions, which only reduce access; "
                    "false: scan only."
                ),
            },
            "EnableRestore": {
                "Type": "String",
                "Default": "false",
                "AllowedValues": ["false", "true"],
                "Description": (
                    "true: also create the restore role, which can grant access back "
                    "(re-attach a policy, add to a group) for approved undos; false: such "
                    "undos are done by hand from the before-state Steward shows."
                ),
            },
            "EnableSecurityHubExport": {
                "Type": "String",
                "Default": "false",
                "AllowedValues": ["false", "true"],
                "Description": (
                    "true: `steward export --to securityhub` may import this account's "
                    "findings into its own Security Hub; false: no export."
                ),
            },
            "EnableRotation": {
                "Type": "String",
                "Default": "false",
                "AllowedValues": ["false", "true"],
                "Description": (
                    "true: also create the rotation role, which creates a user's new access key and "
                    "hands it over in Secrets Manager (\"Rotate it for me\"); new keys are new access, "
                    "so it is separate and off by default."
                ),
            },
            "RotationRoleName": {
                "Type": "String",
                "Default": DEFAULT_ROTATION_ROLE_NAME,
                "AllowedPattern": r"^[\w+=,.@-]{1,64}$",
                "Description": "Name of the rotation role (STEWARD_ROTATION_ROLE_NAME).",
            },
            "RestoreRoleName": {
                "Type": "String",
                "Default": DEFAULT_RESTORE_ROLE_NAME,
                "AllowedPattern": r"^[\w+=,.@-]{1,64}$",
                "Description": "Name of the restore role (STEWARD_RESTORE_ROLE_NAME).",
            },
            "ActivityEventBusArn": {
                "Type": "String",
                "Default": "",
                "AllowedPattern": r"^(arn:aws[a-z-]*:events:[a-z0-9-]+:[0-9]{12}:event-bus/[\w.-]+)?$",
                "Description": (
                    "The hub stack's ActivityEventBusArn: forward this account's IAM, STS, sign-in "
                    "and CloudTrail management events to it for `steward events` (empty: no "
                    "forwarding). IAM's events arrive in us-east-1: deploy there (and in each "
                    "region people sign in to)."
                ),
            },
        },
        "Rules": {
            "StewardPrincipalRequired": {
                "Assertions": [
                    {
                        "Assert": {
                            "Fn::Or": [_not_empty("StewardRoleArn"), _not_empty("StewardAccountId")]
                        },
                        "AssertDescription": "Set StewardRoleArn or StewardAccountId.",
                    }
                ]
            },
            "RestoreNeedsRemediation": {
                "RuleCondition": {"Fn::Equals": [_ref("EnableRestore"), "true"]},
                "Assertions": [
                    {
                        "Assert": {"Fn::Equals": [_ref("EnableRemediation"), "true"]},
                        "AssertDescription": "EnableRestore needs EnableRemediation.",
                    }
                ],
            },
        },
        "Conditions": {
            "Remediation": {"Fn::Equals": [_ref("EnableRemediation"), "true"]},
            "Restore": {"Fn::Equals": [_ref("EnableRestore"), "true"]},
            "Rotation": {"Fn::Equals": [_ref("EnableRotation"), "true"]},
            "Export": {"Fn::Equals": [_ref("EnableSecurityHubExport"), "true"]},
            "TrustRoleArn": _not_empty("StewardRoleArn"),
            "ForwardActivity": _not_empty("ActivityEventBusArn"),
        },
        "Resources": {
            "StewardRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": _ref("RoleName"),
                    "Description": "IAM Steward: IAM hygiene scanning and remediation",
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": _trust(),
                    "Policies": [
                        {"PolicyName": "iam-steward-scan", "PolicyDocument": scan_policy()},
                        {
                            "Fn::If": [
                                "Remediation",
                                {"PolicyName": "iam-steward-reduce", "PolicyDocument": reduce},
                                _ref("AWS::NoValue"),
                            ]
                        },
                        {
                            "Fn::If": [
                                "Export",
                                {"PolicyName": "iam-steward-export",
                                 "PolicyDocument": export_policy(cloudformation=True)},
                                _ref("AWS::NoValue"),
                            ]
                        },
                    ],
                    "Tags": [{"Key": "managed-by", "Value": "iam-steward"}],
                },
            },
            "ActivityForwardRole": {
                "Type": "AWS::IAM::Role",
                "Condition": "ForwardActivity",
                "Properties": {
                    "Description": "IAM Steward: EventBridge forwards IAM activity to the hub's bus",
                    "AssumeRolePolicyDocument": document({
                        "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                        "Action": "sts:AssumeRole"}),
                    "Policies": [{"PolicyName": "iam-steward-forward", "PolicyDocument": document(statement(
                        "IAMStewardForwardActivity", ["events:PutEvents"], _ref("ActivityEventBusArn")))}],
                    "Tags": [{"Key": "managed-by", "Value": "iam-steward"}],
                },
            },
            "ActivityForwardRule": {
                "Type": "AWS::Events::Rule",
                "Condition": "ForwardActivity",
                "Properties": {
                    "Description": "IAM Steward: IAM, STS, sign-in and CloudTrail events to the hub",
                    "State": "ENABLED",
                    "EventPattern": activity_event_pattern(),
                    "Targets": [{"Id": "iam-steward-hub", "Arn": _ref("ActivityEventBusArn"),
                                 "RoleArn": {"Fn::GetAtt": ["ActivityForwardRole", "Arn"]}}],
                },
            },
            "StewardRestoreRole": {
                "Type": "AWS::IAM::Role",
                "Condition": "Restore",
                "Properties": {
                    "RoleName": _ref("RestoreRoleName"),
                    "Description": (
                        "IAM Steward: grants access back, only for approved undos (can "
                        "escalate: enable knowingly)"
                    ),
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": _trust(),
                    "Policies": [{"PolicyName": "iam-steward-restore", "PolicyDocument": restore}],
                    "Tags": [{"Key": "managed-by", "Value": "iam-steward"}],
                },
            },
            "StewardRotationRole": {
                "Type": "AWS::IAM::Role",
                "Condition": "Rotation",
                "Properties": {
                    "RoleName": _ref("RotationRoleName"),
                    "Description": (
                        "IAM Steward: creates a user's new access key for a guided rotation and hands "
                        "it over in Secrets Manager (new access: enable knowingly)"
                    ),
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": _trust(),
                    "Policies": [{"PolicyName": "iam-steward-rotation",
                                  "PolicyDocument": rotation_policy(cloudformation=True)}],
                    "Tags": [{"Key": "managed-by", "Value": "iam-steward"}],
                },
            },
        },
        "Outputs": {
            "RotationRoleArn": {
                "Condition": "Rotation",
                "Description": "Steward assumes it by name (STEWARD_ROTATION_ROLE_NAME).",
                "Value": {"Fn::GetAtt": ["StewardRotationRole", "Arn"]},
            },
            "RoleArn": {
                "Description": "Give this to Steward (STEWARD_ACCOUNT_ROLES).",
                "Value": {"Fn::GetAtt": ["StewardRole", "Arn"]},
            },
            "RestoreRoleArn": {
                "Condition": "Restore",
                "Description": "Steward assumes it by name (STEWARD_RESTORE_ROLE_NAME).",
                "Value": {"Fn::GetAtt": ["StewardRestoreRole", "Arn"]},
            },
        },
    }


def activity_event_pattern() -> dict:
    """The EventBridge pattern of the events `steward events` judges."""
    return {"source": list(ACTIVITY_SOURCES), "detail-type": list(ACTIVITY_DETAIL_TYPES)}


# ---------------------------------------------------------------------------------------
# Rendering

_PLAIN = re.compile(r"^[A-Za-z][A-Za-z0-9_.:/*-]*$")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if _PLAIN.match(text) and not text.endswith(":") and text.lower() not in _RESERVED:
        return text
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        lines = []
        for key, item in value.items():
            if isinstance(item, Mapping | list) and item:
                lines.append(f"{pad}{_scalar(key)}:")
                lines.extend(_yaml_lines(item, indent + 2))
            else:
                empty = "{}" if isinstance(item, Mapping) else "[]"
                text = empty if isinstance(item, Mapping | list) else _scalar(item)
                lines.append(f"{pad}{_scalar(key)}: {text}")
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, Mapping | list) and item:
                nested = _yaml_lines(item, indent + 2)
                nested[0] = f"{pad}- {nested[0][indent + 2:]}"
                lines.extend(nested)
            else:
                lines.append(f"{pad}- {_scalar(item)}")
        return lines
    return [f"{pad}{_scalar(value)}"]


def to_yaml(value: Mapping[str, Any], header: str = "") -> str:
    """Block-style YAML for plain data (dicts in insertion order, lists, scalars)."""
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + "\n".join(_yaml_lines(value, 0)) + "\n"


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def generated() -> dict[str, str]:
    """Path relative to the repository -> the file's exact content."""
    return {
        "deploy/iam/steward-scan-policy.json": to_json(scan_policy()),
        "deploy/iam/steward-reduce-policy.json": to_json(reduce_policy()),
        "deploy/iam/steward-restore-policy.json": to_json(restore_policy()),
        "deploy/iam/steward-hub-policy.json": to_json(hub_policy()),
        "deploy/iam/steward-export-policy.json": to_json(export_policy()),
        "deploy/iam/steward-rotation-policy.json": to_json(rotation_policy()),
        "deploy/cloudformation/member-account-role.yaml": to_yaml(
            member_role_template(),
            "Generated by `python -m checks.permissions --write` from the declarations in\n"
            "checks/permissions.py and checks/remediate/. Do not edit by hand.",
        ),
    }


def stale_files(root: Path = ROOT) -> list[str]:
    """The generated files that are missing or differ from what the declarations give."""
    return [
        path
        for path, text in generated().items()
        if not (root / path).is_file() or (root / path).read_text() != text
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m checks.permissions",
        description="Generate Steward's least-privilege IAM policies and CloudFormation role.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the generated files")
    mode.add_argument("--check", action="store_true", help="exit 1 if a file is stale (default)")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)
    if args.write:
        for path, text in generated().items():
            target = args.root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            print(f"wrote {path}")
        return 0
    stale = stale_files(args.root)
    for path in stale:
        print(f"stale: {path} (run python -m checks.permissions --write)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
