""""Rotate it for me": the AWS steps of a guided access key rotation.

1. `make_room` — IAM allows two keys per user. With two, Steward never picks one to
   delete itself: an inactive other key must be deleted first (irreversible: the owner asks,
   an approver approves, like any key deletion), two active keys mean the owner
   deactivates the one they no longer use first.
2. `create_key` — CreateAccessKey, then a secret in Secrets Manager created *empty*, its
   resource policy put (only the reader principal may read it; everyone else is denied,
   Steward included), and only then the key put in it (PutSecretValue). The secret key
   exists in this process for those few calls and goes nowhere else: not in the return
   value, the database, the audit log, Slack or the logs. If storing fails, the new key
   is deleted again (nobody could ever read it).
3. `key_last_used`, `picked_up` — the watch: when the new key was first used and the old
   one last used; when the owner read the secret (DescribeSecret's LastAccessedDate).
4. `schedule_secret_deletion` — DeleteSecret with a recovery window, after pick-up.

Creating a key and a secret is not reduce-only: these calls are in their own policy and
role (`ROTATION_PERMISSIONS`, `EnableRotation`, off by default; see checks/permissions.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from checks.collect import aws_client, collect_error, error_code
from checks.model import utc

ROTATION_PERMISSIONS = {
    "iam:GetUser": "the user's ARN (the default reader of the secret)",
    "iam:ListAccessKeys": "the two-key limit",
    "iam:GetAccessKeyLastUsed": "watch the new and the old key",
    "iam:CreateAccessKey": "the new key",
    "iam:DeleteAccessKey": "only the new key again, when its secret could not be stored",
    "secretsmanager:CreateSecret": "an empty secret for the new key",
    "secretsmanager:PutResourcePolicy": "only the owner's principal may read it",
    "secretsmanager:PutSecretValue": "the new key, once the policy is in place",
    "secretsmanager:DescribeSecret": "has the owner fetched it (LastAccessedDate)",
    "secretsmanager:DeleteSecret": "after pick-up, with a recovery window",
    "secretsmanager:TagResource": "tags at creation (managed-by, user, key id)",
}
SECRET_PREFIX = "iam-steward/rotation/"
RECOVERY_DAYS = 7


class RotationError(Exception):
    def __init__(self, message: str, retryable: bool = False, *, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.code = code


class NeedsRoom(RotationError):
    """The user has two keys; `inactive` names the other one if it is inactive."""

    def __init__(self, message: str, inactive: str | None) -> None:
        super().__init__(message)
        self.inactive = inactive


@contextmanager
def _aws(account_id: str, service: str) -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        failure = collect_error(account_id, exc, service)
        code = error_code(exc) if isinstance(exc, ClientError) else ""
        raise RotationError(failure.message, failure.retryable, code=code) from exc


@dataclass(frozen=True)
class NewKey:
    access_key_id: str
    secret_arn: str
    secret_name: str
    reader_arn: str
    created: datetime


def reader_policy(secret_arn: str, reader_arn: str) -> dict[str, Any]:
    """Only `reader_arn` may read the secret's value; every other principal is denied it
    (an explicit Deny wins over any identity policy, Steward's own role included)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "OnlyTheOwnerReads", "Effect": "Allow", "Principal": {"AWS": reader_arn},
             "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], "Resource": secret_arn},
            # The value only: Steward still sees the metadata (DescribeSecret: was it fetched?).
            {"Sid": "NobodyElseReads", "Effect": "Deny", "Principal": "*", "Action": "secretsmanager:GetSecretValue",
             "Resource": secret_arn, "Condition": {"StringNotEquals": {"aws:PrincipalArn": reader_arn}}},
        ],
    }


def user_arn(session: Any, account_id: str, user_name: str, max_attempts: int = 8) -> str:
    with _aws(account_id, "iam"):
        return str(aws_client(session, "iam", max_attempts).get_user(UserName=user_name)["User"]["Arn"])


def make_room(session: Any, account_id: str, user_name: str, old_key_id: str, max_attempts: int = 8) -> None:
    """Raise `NeedsRoom` when the user already has two keys; RotationError when the old
    key is gone or inactive."""
    with _aws(account_id, "iam"):
        keys = aws_client(session, "iam", max_attempts).list_access_keys(UserName=user_name)["AccessKeyMetadata"]
    old = next((k for k in keys if k["AccessKeyId"] == old_key_id), None)
    if old is None:
        raise RotationError(f"access key {old_key_id} of IAM user {user_name} no longer exists")
    if old.get("Status") != "Active":
        raise RotationError(f"access key {old_key_id} of IAM user {user_name} is already inactive: nothing to rotate")
    if len(keys) >= 2:
        other = next(k for k in keys if k["AccessKeyId"] != old_key_id)
        if other.get("Status") == "Active":
            raise NeedsRoom(
                f"IAM user {user_name} already has two active keys ({old_key_id} and {other['AccessKeyId']}); "
                f"IAM allows two. Deactivate the one nothing uses any more, then rotate.", None)
        raise NeedsRoom(
            f"IAM user {user_name} already has two keys; IAM allows two. The inactive one, "
            f"{other['AccessKeyId']}, has to be deleted first (its Delete key button, approved by security).",
            str(other["AccessKeyId"]))


def create_key(session: Any, account_id: str, user_name: str, *, reader_arn: str, rotation_id: int,
               max_attempts: int = 8, region: str | None = None) -> NewKey:
    """The new key, stored where only `reader_arn` can read it. Raises RotationError."""
    iam = aws_client(session, "iam", max_attempts)
    secrets = aws_client(session, "secretsmanager", max_attempts)
    with _aws(account_id, "iam"):
        created = iam.create_access_key(UserName=user_name)["AccessKey"]
    key_id = str(created["AccessKeyId"])
    name = f"{SECRET_PREFIX}{user_name}/{key_id}"
    try:
        with _aws(account_id, "secretsmanager"):
            secret_arn = str(secrets.create_secret(
                Name=name, Description=f"New access key {key_id} of IAM user {user_name}, from IAM Steward "
                                       f"rotation #{rotation_id}. Read it once; Steward deletes it after that.",
                Tags=[{"Key": "managed-by", "Value": "iam-steward"}, {"Key": "iam-user", "Value": user_name},
                      {"Key": "access-key-id", "Value": key_id}])["ARN"])
            secrets.put_resource_policy(SecretId=secret_arn, BlockPublicPolicy=True,
                                        ResourcePolicy=json.dumps(reader_policy(secret_arn, reader_arn)))
            secrets.put_secret_value(SecretId=secret_arn, SecretString=json.dumps(
                {"AccessKeyId": key_id, "SecretAccessKey": created["SecretAccessKey"]}))
    except RotationError:
        with _aws(account_id, "iam"):  # nobody could ever read it: take it back
            iam.delete_access_key(UserName=user_name, AccessKeyId=key_id)
        raise
    finally:
        created = None  # the secret key goes no further than this function
    return NewKey(key_id, secret_arn, name, reader_arn, datetime.now(UTC))


def key_last_used(session: Any, account_id: str, key_id: str, max_attempts: int = 8) -> datetime | None:
    with _aws(account_id, "iam"):
        answer = aws_client(session, "iam", max_attempts).get_access_key_last_used(AccessKeyId=key_id)
    return utc((answer.get("AccessKeyLastUsed") or {}).get("LastUsedDate"))


def picked_up(session: Any, account_id: str, secret_arn: str, max_attempts: int = 8) -> datetime | None:
    """When the secret was last read (AWS records the day), or None. A secret already
    scheduled for deletion counts as handled (DeletedDate)."""
    with _aws(account_id, "secretsmanager"):
        described = aws_client(session, "secretsmanager", max_attempts).describe_secret(SecretId=secret_arn)
    return utc(described.get("LastAccessedDate"))


def schedule_secret_deletion(session: Any, account_id: str, secret_arn: str, max_attempts: int = 8) -> None:
    with _aws(account_id, "secretsmanager"):
        try:
            aws_client(session, "secretsmanager", max_attempts).delete_secret(
                SecretId=secret_arn, RecoveryWindowInDays=RECOVERY_DAYS)
        except ClientError as exc:
            if error_code(exc) not in ("ResourceNotFoundException", "InvalidRequestException"):
                raise
