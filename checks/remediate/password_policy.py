"""Apply the CIS baseline to the account password policy (undo: restore it exactly).

The baseline is what `password-policy-weak` checks (CIS AWS Foundations 1.8 and 1.9):
minimum length 14, upper and lower case letters, numbers and symbols required, the last
24 passwords not reusable; plus users may change their own password (so a forced reset
does not need an administrator).

Decisions:

* Never weaken. Each setting becomes the stronger of the current value and the baseline:
  a 20-character minimum stays 20.
* Expiry is left as it is (no `MaxPasswordAge` imposed, an existing one kept, `HardExpiry`
  kept). CIS AWS Foundations 1.2 asked for a 90-day maximum age; later versions dropped
  it, following NIST SP 800-63B: forced rotation pushes people to predictable passwords,
  and the check does not ask for it. An account that wants expiry keeps its own.
* Undo restores every field of the previous policy, or deletes the policy when the account
  had none (an account without a policy uses AWS's defaults, which no policy reproduces).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from checks.remediate.base import Action, Iam, Plan, State, Target

MIN_LENGTH = 14
REUSE_PREVENTION = 24
FLAGS = {
    "RequireUppercaseCharacters": "uppercase letters",
    "RequireLowercaseCharacters": "lowercase letters",
    "RequireNumbers": "numbers",
    "RequireSymbols": "symbols",
    "AllowUsersToChangePassword": "users may change their own password",
}
# AWS's values for parameters UpdateAccountPasswordPolicy leaves out.
DEFAULT_MIN_LENGTH = 6


def parameters(policy: dict[str, Any] | None) -> dict[str, Any] | None:
    """GetAccountPasswordPolicy's answer as UpdateAccountPasswordPolicy parameters that
    reproduce it (every field; the optional ones only when set)."""
    if policy is None:
        return None
    out: dict[str, Any] = {
        "MinimumPasswordLength": int(policy.get("MinimumPasswordLength", DEFAULT_MIN_LENGTH)),
        **{flag: bool(policy.get(flag, False)) for flag in FLAGS},
        "HardExpiry": bool(policy.get("HardExpiry", False)),
    }
    if policy.get("ExpirePasswords", True) and int(policy.get("MaxPasswordAge") or 0) > 0:
        out["MaxPasswordAge"] = int(policy["MaxPasswordAge"])
    if int(policy.get("PasswordReusePrevention") or 0) > 0:
        out["PasswordReusePrevention"] = int(policy["PasswordReusePrevention"])
    return out


def cis_parameters(current: dict[str, Any] | None) -> dict[str, Any]:
    """The baseline merged with `current`, never weaker than either."""
    current = current or {}
    out: dict[str, Any] = {
        "MinimumPasswordLength": max(int(current.get("MinimumPasswordLength", 0)), MIN_LENGTH),
        **dict.fromkeys(FLAGS, True),
        "HardExpiry": bool(current.get("HardExpiry", False)),
        "PasswordReusePrevention": max(
            int(current.get("PasswordReusePrevention", 0)), REUSE_PREVENTION
        ),
    }
    if current.get("MaxPasswordAge"):
        out["MaxPasswordAge"] = current["MaxPasswordAge"]
    return out


def _changes(current: dict[str, Any] | None, wanted: dict[str, Any]) -> list[str]:
    current = current or {}
    out = []
    length = current.get("MinimumPasswordLength")
    if length != wanted["MinimumPasswordLength"]:
        was = f" (now {length})" if length else ""
        out.append(f"minimum length {wanted['MinimumPasswordLength']}{was}")
    required = [label for flag, label in FLAGS.items()
                if flag.startswith("Require") and not current.get(flag)]
    if required:
        out.append(f"require {', '.join(required)}")
    if not current.get("AllowUsersToChangePassword"):
        out.append(FLAGS["AllowUsersToChangePassword"])
    reuse = current.get("PasswordReusePrevention")
    if reuse != wanted["PasswordReusePrevention"]:
        out.append(f"remember the last {wanted['PasswordReusePrevention']} passwords "
                   f"(now {reuse or 'none'})")
    return out


class ApplyCisPasswordPolicy(Action):
    id = "apply-cis-password-policy"
    title = "Apply CIS password policy"
    reversible = True
    reduces_access_only = False  # changes every console user's rules: approver
    permissions = frozenset({"iam:GetAccountPasswordPolicy", "iam:UpdateAccountPasswordPolicy"})
    undo_permissions = frozenset(
        {
            "iam:GetAccountPasswordPolicy",
            "iam:UpdateAccountPasswordPolicy",
            "iam:DeleteAccountPasswordPolicy",
        }
    )

    def read(self, iam: Iam, target: Target) -> State:
        got = iam.read("get_account_password_policy", missing=True)
        policy = None if got is None else dict(got.get("PasswordPolicy") or {})
        return {"account_id": target.account_id, "exists": policy is not None, "policy": policy}

    def assess(self, target: Target, state: State) -> Plan:
        current = parameters(state["policy"])
        wanted = cis_parameters(current)
        if current == wanted:
            return Plan(self.id, f"Already done: the password policy of {target.label} meets "
                        "the CIS baseline.", already_done=True)
        expiry = (f"password expiry stays at {current['MaxPasswordAge']} days"
                  if current and current.get("MaxPasswordAge") else "passwords still never expire")
        verb = "Tighten the password policy of" if current else "Create a password policy for"
        return Plan(
            self.id,
            f"{verb} {target.label} to the CIS baseline: "
            f"{'; '.join(_changes(current, wanted))}; {expiry}. Existing passwords stay "
            "valid until changed; undo restores the previous policy.",
        )

    def change(self, iam: Iam, target: Target, state: State) -> None:
        iam.write("update_account_password_policy", **cis_parameters(parameters(state["policy"])))

    def restore_by_hand(self, target: Target, before: Mapping[str, Any]) -> str:
        previous = parameters(before.get("policy"))
        where = f"account {target.account_id}"
        if previous is None:
            return (f"{where} had no password policy before; delete the one Steward set:\n"
                    "aws iam delete-account-password-policy")
        return (
            f"Set the password policy of {where} back to what it was:\n"
            "aws iam update-account-password-policy --cli-input-json "
            f"{shlex.quote(json.dumps(previous, separators=(',', ':'), sort_keys=True))}"
        )

    def revert(self, iam: Iam, target: Target, before: State, current: State) -> bool:
        previous = parameters(before.get("policy"))
        if previous is None:
            if not current["exists"]:
                return False
            return iam.write("delete_account_password_policy", missing=True)
        if parameters(current["policy"]) == previous:
            return False
        return iam.write("update_account_password_policy", **previous)
