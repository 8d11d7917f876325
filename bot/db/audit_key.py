"""The audit chain's MAC key(s): STEWARD_AUDIT_KEY, resolved once per process.

The key never lives in the database: only its *key id* is stored with each keyed event.

    STEWARD_AUDIT_KEY=<key>[,<retired key>...]

Each entry is either a literal key (at least 32 characters; e.g. `openssl rand -hex 32`) or a
reference fetched at start with the standard AWS credential chain:

* `secretsmanager:NAME` or `secretsmanager:arn:aws:secretsmanager:REGION:…` (SecretString,
  or SecretBinary);
* `ssm:/path/to/parameter` or `ssm:arn:aws:ssm:REGION:…:parameter/…` (a SecureString,
  decrypted).

The first entry is the current key: new events are MAC'd with it. The others are retired
keys, kept only so `steward audit verify` can check the older segments of the chain (and so
a process knows the chain's previous key when it starts the current key's segment).

A key id is the first 16 hex digits of HMAC-SHA-256(key, a constant): it names the key in
the chain and in messages without revealing anything about it.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass, field

from bot.core.audit_key_form import (
    MIN_KEY_LENGTH,
    SECRETS_MANAGER_PREFIX,
    SETTING,
    SSM_PREFIX,
    AuditKeyError,
    split_entries,
)

KEY_ID_LENGTH = 16
_KEY_ID_LABEL = b"iam-steward audit key id v1"

@dataclass(frozen=True)
class AuditKey:
    key_id: str
    secret: bytes = field(repr=False)

    def mac(self, data: bytes) -> str:
        return hmac.new(self.secret, data, hashlib.sha256).hexdigest()


def key_id_of(secret: bytes) -> str:
    return hmac.new(secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:KEY_ID_LENGTH]


def make_key(secret: bytes | str) -> AuditKey:
    data = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(data) < MIN_KEY_LENGTH:
        raise AuditKeyError(f"{SETTING}: a key must be at least {MIN_KEY_LENGTH} bytes long")
    return AuditKey(key_id_of(data), data)


@dataclass(frozen=True)
class Keyring:
    """The current key (first) and retired ones. Empty: the process writes unkeyed events."""

    keys: tuple[AuditKey, ...] = ()

    @property
    def current(self) -> AuditKey | None:
        return self.keys[0] if self.keys else None

    def get(self, key_id: str | None) -> AuditKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(k.key_id for k in self.keys)


NO_KEYS = Keyring()


def resolve(value: str | None, *, session=None) -> Keyring:
    """Fetch every entry (AWS for references); raise AuditKeyError naming what failed."""
    keys: list[AuditKey] = []
    for entry in split_entries(value):
        key = make_key(_fetch(entry, session) if entry.startswith((SECRETS_MANAGER_PREFIX, SSM_PREFIX)) else entry)
        if key.key_id not in {k.key_id for k in keys}:
            keys.append(key)
    return Keyring(tuple(keys))


def _region_of(name: str) -> str | None:
    parts = name.split(":")
    return parts[3] if name.startswith("arn:") and len(parts) > 4 and parts[3] else None


def _fetch(reference: str, session) -> bytes:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    service, name = reference.split(":", 1)
    session = session or boto3.session.Session()
    try:
        client = session.client(service, region_name=_region_of(name))
        if service == "ssm":
            return _text_key(client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
        answer = client.get_secret_value(SecretId=name)
        return answer["SecretBinary"] if answer.get("SecretBinary") else _text_key(answer["SecretString"])
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise AuditKeyError(f"{SETTING}: cannot read {reference}: {code}") from None
    except BotoCoreError as exc:
        raise AuditKeyError(f"{SETTING}: cannot read {reference}: {type(exc).__name__}") from None


def _text_key(text: str) -> bytes:
    return text.strip().encode("utf-8")


# --- the process's keyring ---------------------------------------------------------------

_lock = threading.Lock()
_process_keyring: Keyring | None = None


def process_keyring() -> Keyring:
    """This process's keys, resolved from the settings on first use and then cached."""
    global _process_keyring
    with _lock:
        if _process_keyring is None:
            from bot.config import load_settings

            secret = load_settings().audit_key
            _process_keyring = resolve(secret.get_secret_value() if secret else None)
        return _process_keyring


def load_process_keyring(settings) -> Keyring:
    """Resolve the settings' keys now (at start, so a missing secret stops the process early)."""
    global _process_keyring
    secret = settings.audit_key
    keyring = resolve(secret.get_secret_value() if secret else None)
    with _lock:
        _process_keyring = keyring
    return keyring


def set_process_keyring(keyring: Keyring | None) -> None:
    """Replace (None: forget) the cached keys: for tests and for commands given keys directly."""
    global _process_keyring
    with _lock:
        _process_keyring = keyring
