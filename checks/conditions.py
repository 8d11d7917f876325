"""Policy conditions decided statically, where they can be (pure).

`decide(condition, now=..., principal=...)` answers True (holds for every request this
principal can make now), False (holds for none) or None (depends on the request: the
finding says "conditional: <the condition>"). What is decided:

* Date operators on `aws:CurrentTime` (and numeric/date operators on `aws:EpochTime`)
  against the scan's clock: `DateLessThan 2020-01-01` is false from then on.
* `aws:TokenIssueTime`: a new session is issued now, and no session lives longer than
  36 hours, so `DateLessThan <more than 36 h ago>` holds for no live session and
  `DateGreaterThan <the past>` holds for a fresh one.
* `aws:PrincipalArn`, `aws:username`, `aws:PrincipalType`, `aws:PrincipalAccount`: known
  for the principal (a role has no `aws:username`).
* `aws:SecureTransport`: true. The attacker uses HTTPS like every SDK and the console
  (IAM and STS accept nothing else), so `Bool aws:SecureTransport false` never holds.
* `iam:PolicyARN` (ArnEquals/ArnLike/StringEquals/StringLike, no IfExists, no set operator)
  admitting only the AWS deny-only quarantine policies (AWSDenyAll,
  AWSCompromisedKeyQuarantine*): counted as no grant. Such an attach can only take access
  away, and every other action in the statement lacks the key, so fails the condition
  (Steward's own quarantine permission is written this way).
* `aws:MultiFactorAuthPresent`: undecided, labelled "needs MFA" (`true`), "without MFA"
  (`false`): whether the holder has a second factor is not in the snapshot.

Anything else (source IP, tags, VPC, regions, `...IfExists` on other keys, set operators)
is undecided. The principal-side facts come from `Subject`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from checks.policy import Condition, is_aws_quarantine, wildcard_match

MAX_SESSION = timedelta(hours=36)


@dataclass(frozen=True)
class Subject:
    """Who makes the request, for condition keys about the caller."""

    arn: str
    account: str
    kind: str  # "user" | "role" | "group"
    name: str


def _date(value: str) -> datetime | None:
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_COMPARE = {
    "equals": lambda a, b: a == b,
    "notequals": lambda a, b: a != b,
    "lessthan": lambda a, b: a < b,
    "lessthanequals": lambda a, b: a <= b,
    "greaterthan": lambda a, b: a > b,
    "greaterthanequals": lambda a, b: a >= b,
}


def _time_operator(base: str) -> str | None:
    for family in ("date", "numeric"):
        if base.startswith(family) and base[len(family):] in _COMPARE:
            return base[len(family):]
    return None


def _decide_time(c: Condition, now: datetime) -> bool | None:
    op = _time_operator(c.base)
    if op is None or c.set_operator:
        return None
    moments = [_date(v) for v in c.values]
    if any(m is None for m in moments):
        return None
    compare = _COMPARE[op]
    negated = op == "notequals"
    if c.key in ("aws:currenttime", "aws:epochtime"):
        hits = [compare(now, m) for m in moments]  # type: ignore[arg-type]
        return all(hits) if negated else any(hits)
    if c.key == "aws:tokenissuetime":
        # A session issued at some moment in (now - 36 h, now]; the caller picks a fresh one.
        oldest = now - MAX_SESSION
        results: list[bool | None] = []
        for m in moments:
            if op in ("lessthan", "lessthanequals"):
                # A fresh session satisfies it; failing that, only a session already old.
                results.append(True if compare(now, m) else (None if compare(oldest, m) else False))
            elif op in ("greaterthan", "greaterthanequals"):
                results.append(compare(now, m))  # no session is issued after now
            else:
                results.append(None)
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False
    return None


_STRING_OPS = {
    "stringequals": (False, False),
    "stringequalsignorecase": (False, True),
    "stringlike": (False, False),
    "arnequals": (False, False),
    "arnlike": (False, False),
    "stringnotequals": (True, False),
    "stringnotequalsignorecase": (True, True),
    "stringnotlike": (True, False),
    "arnnotequals": (True, False),
    "arnnotlike": (True, False),
}


def _subject_value(key: str, subject: Subject) -> str | bool | None:
    """The caller's value for `key`; None when absent; False when unknown to us."""
    if key == "aws:principalarn":
        return subject.arn
    if key == "aws:principalaccount":
        return subject.account
    if key == "aws:principaltype":
        return {"user": "User", "role": "AssumedRole"}.get(subject.kind, False)
    if key == "aws:username":
        return subject.name if subject.kind == "user" else None
    return False


def _decide_subject(c: Condition, subject: Subject) -> bool | None:
    if c.base not in _STRING_OPS or c.set_operator:
        return None
    value = _subject_value(c.key, subject)
    if value is False:
        return None
    negated, fold = _STRING_OPS[c.base]
    if value is None:  # the key is absent from the request
        if c.if_exists:
            return True
        return None if negated else False
    exact = c.base in ("stringequals", "stringequalsignorecase", "arnequals", "stringnotequals",
                       "stringnotequalsignorecase", "arnnotequals")
    assert isinstance(value, str)
    hit = any(
        (v.lower() == value.lower() if fold else v == value)
        if exact else wildcard_match(v, value, ignore_case=fold)
        for v in c.values
    )
    return hit != negated


_POLICY_ARN_OPERATORS = frozenset({"arnequals", "arnlike", "stringequals", "stringlike"})


def _only_deny_policies(c: Condition) -> bool:
    return (
        c.key == "iam:policyarn"
        and c.base in _POLICY_ARN_OPERATORS
        and not c.if_exists
        and not c.set_operator
        and all(is_aws_quarantine(v) for v in c.values)
    )


def decide(c: Condition, *, now: datetime, subject: Subject | None = None) -> bool | None:
    if _only_deny_policies(c):
        return False  # grants nothing but attaching a deny-only policy (see above)
    if c.key in ("aws:currenttime", "aws:epochtime", "aws:tokenissuetime"):
        return _decide_time(c, now)
    if c.key == "aws:securetransport" and c.base == "bool" and not c.set_operator:
        return any(v.strip().lower() == "true" for v in c.values)
    if subject is not None and c.key in (
        "aws:principalarn", "aws:principalaccount", "aws:principaltype", "aws:username"
    ):
        return _decide_subject(c, subject)
    return None


def describe(c: Condition) -> str:
    """How a person reads an undecided condition: `needs MFA`, `aws:SourceIp in 10.0.0.0/8`."""
    if c.key == "aws:multifactorauthpresent" and c.base == "bool":
        wants = {v.strip().lower() for v in c.values}
        return "needs MFA" if wants == {"true"} else "without MFA"
    values = ", ".join(c.values[:3]) + (" …" if len(c.values) > 3 else "")
    return f"{c.operator} {c.key} {values}"


@dataclass(frozen=True)
class Verdict:
    """All conditions of one statement: `holds` False (never), True (always) or None, with
    the undecided ones described."""

    holds: bool | None
    undecided: tuple[str, ...] = ()


ALWAYS = Verdict(True)


def judge(
    conditions: Sequence[Condition], *, now: datetime, subject: Subject | None = None
) -> Verdict:
    """A statement's conditions are ANDed: one False makes it never apply."""
    if not conditions:
        return ALWAYS
    undecided: list[str] = []
    for c in conditions:
        found = decide(c, now=now, subject=subject)
        if found is False:
            return Verdict(False)
        if found is None:
            undecided.append(describe(c))
    return Verdict(None, tuple(undecided)) if undecided else ALWAYS


def subject_dependent(conditions: Iterable[Condition]) -> bool:
    """Do these conditions read facts about the caller (so the verdict is per principal)?"""
    return any(
        c.key in ("aws:principalarn", "aws:principalaccount", "aws:principaltype", "aws:username")
        for c in conditions
    )
