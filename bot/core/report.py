"""Pure renderings of findings: the JSON contract (docs/architecture.md §2) and short human summaries.

Shared by the CLI table, Slack messages and the digest, so a finding reads the same
everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from checks.catalog import BY_ID, severity_of
from checks.model import Result


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 finding`, `2 findings`, `0 DMs`, `1 account`, `3 policies` (`many` for irregular nouns)."""
    if count == 1:
        return f"{count} {noun}"
    if many is None:
        many = noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else (
            noun + "es" if noun.endswith(("s", "sh", "ch", "x")) else noun + "s")
    return f"{count:,} {many}"


SEVERITY_WORDS = {"critical": "Critical", "high": "High", "medium": "Medium", "low": "Low"}
SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def severity_word(severity: str) -> str:
    """"High": severity as text, for people without an emoji font and for screen readers."""
    return SEVERITY_WORDS.get(severity, severity.capitalize())


def account_name(label: str | None, account_id: str) -> str:
    """The account's name from its stored label ("" when it has none). Labels written
    before names were stored read `Name (id)`, `Name (id), current credentials` or
    `id (role/X)`: the name is kept, the rest dropped."""
    label = (label or "").strip()
    if not label or label == account_id or label.startswith(account_id):
        return ""
    label = label.removesuffix(", current credentials")
    return label.removesuffix(f" ({account_id})").strip()


def account_text(account_id: str, names: Mapping[str, str] | None = None) -> str:
    """`prod (123456789012)`, or the bare id when the account has no name (plain text)."""
    name = (names or {}).get(account_id) or ""
    return f"{name} ({account_id})" if name and name != account_id else account_id


def short_resource(arn: str) -> str:
    """`arn:aws:iam::123:user/ops/alice` -> `user/ops/alice`; the account ARN -> `account`."""
    tail = arn.split(":", 5)[-1] if arn.startswith("arn:") else arn
    return "account" if tail == "root" else tail


def summary(check: str, details: Mapping[str, Any]) -> str:
    """One line of the facts that matter for this finding (key id, age, policy, options)."""
    d = details
    parts: list[str] = []
    if d.get("access_key_id") or d.get("key_slot"):
        parts.append(d.get("access_key_id") or f"key {d.get('key_slot')}")
    if "age_days" in d:
        parts.append(f"{d['age_days']} days old")
    if check in ("unused-access-key", "inactive-access-key") or "password_last_used" in d:
        used = d.get("last_used", d.get("password_last_used"))
        parts.append(f"last used {used[:10]}" if used else "never used")
    if d.get("policy_arn") or d.get("policy_name"):
        parts.append("policy " + (d.get("policy_name") or short_resource(d["policy_arn"])))
    if d.get("actions"):
        actions = list(d["actions"])
        parts.append(", ".join(actions[:3]) + (" …" if len(actions) > 3 else ""))
    if d.get("failing"):
        parts.append("failing: " + ", ".join(d["failing"]))
    if d.get("external_accounts"):
        parts.append("trusts " + ", ".join(d["external_accounts"]))
    if check == "stale-user":
        last = d.get("last_activity")
        parts.append(f"last active {last[:10]}" if last else "never active")
    if check == "unused-role":
        last = d.get("last_used")
        parts.append(f"last used {last[:10]}" if last else "never used")
    return "; ".join(dict.fromkeys(parts))


def finding_json(result: Result, owner: str | None) -> dict[str, Any]:
    spec = BY_ID[result.check]
    return {
        "check": result.check,
        "account": result.account,
        "resource": result.resource,
        "severity": severity_of(result.check, result.details).value,
        "title": spec.title,
        "owner": owner,
        "fingerprint": result.fingerprint,
        "details": dict(result.details),
    }


def stored_finding_json(row: Any) -> dict[str, Any]:
    """A stored finding (`bot.db.models.Finding`) in the same JSON contract as a scan's."""
    return {
        "check": row.check_id,
        "account": row.account_id,
        "resource": row.resource,
        "severity": row.severity,
        "title": row.title,
        "owner": row.owner,
        "fingerprint": row.fingerprint,
        "details": dict(row.details or {}),
    }
