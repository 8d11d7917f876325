"""Secrets Manager made as strict as AWS about who may read a secret, for moto.

moto stores a secret's resource policy but never applies it, and never records reads.
`strict_secrets(monkeypatch)` makes `GetSecretValue` and `DescribeSecret`:

* name the caller from the request's signature (`Credential=<access key id>/…`): an IAM
  user's key -> the user's ARN, an assumed role's session key -> the role's ARN (IAM's
  `aws:PrincipalArn`), anything else -> the account's root;
* refuse with AccessDeniedException when the secret's resource policy has a Deny for the
  read whose condition holds for the caller (`StringNotEquals`/`StringEquals`
  on `aws:PrincipalArn`, the only ones Steward writes; any other condition key is treated
  as matching, so a policy this fake cannot judge denies rather than allows);
* record `LastAccessedDate` (the day, as AWS does) on a successful read, shown by
  DescribeSecret.

`READS` lists (caller ARN, secret ARN, allowed) for assertions.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

READS: list[tuple[str, str, bool]] = []
_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/")


def caller_arn(access_key_id: str, account_id: str) -> str:
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    for partitions in list(iam_backends.values()):
        backend = partitions.get("aws")
        for user in list(getattr(backend, "users", {}).values()):
            if any(k.access_key_id == access_key_id for k in user.access_keys):
                return str(user.arn)
    for partitions in list(sts_backends.values()):
        for role in list(partitions["global"].assumed_roles):
            if role.access_key_id == access_key_id:
                return str(role.role_arn)
    return f"arn:aws:iam::{account_id}:root"


def _values(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def denied(policy_text: str | None, caller: str, action: str) -> bool:
    if not policy_text:
        return False
    for s in json.loads(policy_text).get("Statement", []):
        if s.get("Effect") != "Deny" or action not in _values(s.get("Action", [])):
            continue
        holds = True
        for operator, keys in (s.get("Condition") or {}).items():
            for key, wanted in keys.items():
                if key.lower() != "aws:principalarn":
                    continue
                match = caller in _values(wanted)
                holds &= (not match) if operator == "StringNotEquals" else match if operator == "StringEquals" else True
        if holds:
            return True
    return False


def strict_secrets(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, bool]]:
    from moto.secretsmanager.exceptions import SecretsManagerClientError
    from moto.secretsmanager.models import FakeSecret
    from moto.secretsmanager.responses import SecretsManagerResponse

    READS.clear()
    original_get = SecretsManagerResponse.get_secret_value
    original_describe = SecretsManagerResponse.describe_secret
    original_to_dict = FakeSecret.to_dict

    def guard(self: Any, action: str) -> Any:
        secret_id = self._get_param("SecretId")
        match = _CREDENTIAL.search(self.headers.get("Authorization", ""))
        caller = caller_arn(match.group(1) if match else "", self.current_account)
        secret = self.backend.describe_secret(secret_id=secret_id)
        refused = denied(getattr(secret, "policy", None), caller, action)
        if action == "secretsmanager:GetSecretValue":
            READS.append((caller, secret.arn, not refused))
        if refused:
            error = SecretsManagerClientError(
                "AccessDeniedException",
                f"User: {caller} is not authorized to perform: {action} on resource: {secret_id} "
                "with an explicit deny in a resource-based policy")
            raise error
        return secret

    def get_secret_value(self: Any) -> str:
        secret = guard(self, "secretsmanager:GetSecretValue")
        answer = original_get(self)
        secret._steward_last_accessed = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return answer

    def describe_secret(self: Any) -> str:
        guard(self, "secretsmanager:DescribeSecret")
        return original_describe(self)

    def to_dict(self: Any) -> dict[str, Any]:
        out = original_to_dict(self)
        accessed = getattr(self, "_steward_last_accessed", None)
        out["LastAccessedDate"] = accessed.timestamp() if accessed else None
        return out

    monkeypatch.setattr(SecretsManagerResponse, "get_secret_value", get_secret_value)
    monkeypatch.setattr(SecretsManagerResponse, "describe_secret", describe_secret)
    monkeypatch.setattr(FakeSecret, "to_dict", to_dict)
    return READS
