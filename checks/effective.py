"""Effective permissions and escalation methods of one principal (pure).

What a principal can really do is judged over all its documents together, the way IAM
evaluates a request:

* **Union.** A user's inline and managed policies and those of its groups; a role's or a
  group's own. An action is granted on a resource when some Allow statement matches both
  (`Resource` patterns, or everything but `NotResource`).
* **Deny subtracts**, from whichever document it comes (identity policy, boundary, SCP),
  for the resources it matches: `Deny iam:PassRole` on `role/admin` leaves PassRole on
  every other role. A Deny applies when its conditions surely hold; a Deny whose
  conditions are undecided (the usual "deny unless MFA") leaves the grant in place,
  marked conditional on the Deny's condition.
* **A permissions boundary intersects**: the boundary must allow the action on the
  resource too. **SCPs**, when the scan could read them, intersect the same way, level by
  level: one of the SCPs attached to the account must allow the action, and one of those
  attached to each OU above it and to the root (`AccountSnapshot.scps_above`). A level
  that was not read limits nothing: leaving it out can only make a verdict more alarming,
  never hide a grant. What a Deny, the boundary or an SCP level took away is kept as
  evidence (`PrincipalVerdict.removed`, `PrincipalVerdict.blocked_by`).
* **Conditions** are decided by `checks.conditions`: a grant whose conditions are false
  is no grant; one with undecided conditions stays, marked "conditional: <condition>".
* **Resources.** For IAM resources (users, groups, roles, customer managed policies) the
  resource element is matched against the account's resources: `arn:aws:iam::*:policy/team-*`
  reaches the team-* policies. A pattern whose resource name is only wildcards (`*`,
  `role/*`) is *unbounded*; a pattern that matches nothing existing but could match a
  resource created later is kept as latent. Resources Steward does not inventory (Lambda
  functions, stacks, instances) count when the element is unbounded or a wildcard pattern.

Escalation methods come from `checks.escalation_methods`; a method is *exploitable* when
its prerequisite exists in the snapshot and *latent* otherwise (see that module).

The role graph and the whole pass of a scan are in `checks.escalation`.

Everything is cached per policy document (compiled statements by action) and answers per
principal and action.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from checks import escalation_methods as catalogue
from checks.conditions import ALWAYS, Subject, Verdict, judge, subject_dependent
from checks.escalation_methods import Method
from checks.model import AccountSnapshot, Group, Role, User
from checks.policy import (
    ActionSet,
    Statement,
    _glob,
    _literal_prefix,
    _statement,
    _Universe,
    has_wildcard,
    load_document,
    normalise,
    wildcard_match,
)

Principal = User | Group | Role

ASSUME = "sts:assumerole"
UNIVERSE = _Universe.of({*catalogue.ACTIONS, ASSUME})
_ALL = re.compile(r"^\*+$")
# The resource part names no particular resource: `*`, `role/*`, `function:*`.
_UNBOUNDED = re.compile(r"^(\*+|[A-Za-z0-9-]+[/:]\*+)$")
ADMIN = "administrator"


# ---------------------------------------------------------------------------------------
# Compiled documents


@dataclass(frozen=True)
class Stmt:
    """One statement as the pass uses it: where it comes from, and its facts."""

    source: str  # `inline:x`, a policy ARN, `group:devs/<...>`, `boundary:<arn>`, `scp:<name>`
    statement: Statement
    unbounded: bool  # Allow/Deny on every resource of a kind (or NotResource for Allow)
    everything: bool  # Resource "*" exactly (or NotResource for an Allow)
    star: bool  # Resource "*" exactly: every resource, no exception
    wildcard: bool  # some resource pattern has a wildcard
    subject_dependent: bool

    @property
    def index(self) -> int:
        return self.statement.index

    def matches(self, arn: str, name: str = "") -> bool:
        s = self.statement
        if self.star:
            return True
        hit = any(_match(_resolve(p, name), arn) for p in s.resources)
        return hit != s.not_resource

    def candidates(self, pool: Pool, name: str) -> Iterable[str]:
        """The ARNs of `pool` this statement's resource element may match (a superset
        for NotResource, checked again by `matches`)."""
        if self.everything or self.statement.not_resource:
            return pool.items
        out: list[str] = []
        for p in self.statement.resources:
            out.extend(pool.matching(_resolve(p, name)))
        return out


_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_ESCAPES = {"*": "*", "?": "?", "$": "$"}


def _resolve(pattern: str, name: str) -> str:
    """Policy variables: `${aws:username}` is the calling user's name (a role has none:
    such a pattern then matches nothing); `${*}`, `${?}`, `${$}` become those characters
    (a literal `*` or `?` is then matched as a wildcard: loosely, never missing a grant).
    Other variables (tags, ids) are left in place and match nothing: undecidable here."""
    if "${" not in pattern:
        return pattern

    def sub(m: re.Match[str]) -> str:
        var = m.group(1)
        if var in _ESCAPES:
            return _ESCAPES[var]
        if var.lower() == "aws:username" and name:
            return name
        return "\x00"  # matches no ARN

    return _VARIABLE.sub(sub, pattern)


@lru_cache(maxsize=65536)
def _match(pattern: str, arn: str) -> bool:
    return wildcard_match(pattern, arn, ignore_case=False)


class Pool:
    """Existing resources of one kind; remembers which of them each pattern matches.

    Patterns are looked up by the literal start of their resource part (`policy/team-`
    of `arn:aws:iam::*:policy/team-*`) in a sorted index, so a pattern is matched against
    the few resources sharing that start, not the whole account."""

    __slots__ = ("_keys", "_matched", "_sorted", "items", "members")

    def __init__(self, items: Iterable[str]) -> None:
        self.items = tuple(items)
        self.members = frozenset(self.items)
        pairs = sorted((_resource_part(a), a) for a in self.items)
        self._keys = [k for k, _ in pairs]
        self._sorted = [a for _, a in pairs]
        self._matched: dict[str, tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def matching(self, pattern: str) -> tuple[str, ...]:
        found = self._matched.get(pattern)
        if found is None:
            if not has_wildcard(pattern):
                found = (pattern,) if pattern in self.members else ()
            else:
                parts = pattern.split(":", 5)
                # `*` or `arn:*`: no resource part to index by; scan them all.
                prefix = _literal_prefix(parts[5]) if len(parts) == 6 else ""
                lo = bisect.bisect_left(self._keys, prefix)
                hi = bisect.bisect_left(self._keys, prefix + "\U0010ffff")
                compiled = _glob(pattern)
                found = tuple(a for a in self._sorted[lo:hi] if compiled.fullmatch(a))
            self._matched[pattern] = found
        return found


@dataclass(frozen=True)
class Compiled:
    """A document's statements indexed by the actions the pass looks at."""

    allows: Mapping[str, tuple[Stmt, ...]]
    denies: Mapping[str, tuple[Stmt, ...]]
    admin: tuple[Stmt, ...]  # Allow of every action (iam whole) on every resource
    iam_denies: tuple[Stmt, ...]  # Deny touching iam on every resource
    statements: int
    readable: bool = True
    # Actions allowed on an unbounded or wildcard resource element (under any condition):
    # a cheap superset of what `Layered.anywhere` can grant, to skip methods early.
    broad: frozenset[str] = frozenset()
    source: str = ""
    # The allowed actions that are the target of some escalation method.
    targets: frozenset[str] = frozenset()


def _resource_part(pattern: str) -> str:
    parts = pattern.split(":", 5)
    return parts[5] if len(parts) == 6 else pattern


def _stmt(source: str, s: Statement) -> Stmt:
    star = not s.not_resource and any(_ALL.match(r) for r in s.resources)
    everything = star or (s.not_resource and s.allow)
    unbounded = everything or (
        not s.not_resource and any(_UNBOUNDED.match(_resource_part(r)) for r in s.resources)
    )
    return Stmt(
        source=source,
        statement=s,
        unbounded=unbounded,
        everything=everything,
        star=star,
        wildcard=s.not_resource or any(has_wildcard(r) for r in s.resources),
        subject_dependent=subject_dependent(s.conditions),
    )


def _covers_iam(actions: ActionSet) -> bool:
    return actions.everything_shaped and actions.covers_service("iam")


@lru_cache(maxsize=65536)
def _members(patterns: tuple[str, ...], negated: bool) -> tuple[str, ...]:
    """The actions of the pass's universe an Action/NotAction list names (sorted)."""
    return tuple(sorted(ActionSet(patterns, negated).members(UNIVERSE)))


@dataclass(frozen=True)
class _Facts:
    """What the pass needs of one statement, whatever document it is in."""

    statement: Statement
    unbounded: bool
    everything: bool
    star: bool
    wildcard: bool
    subject_dependent: bool
    members: tuple[str, ...]
    admin: bool
    iam_deny: bool


_FACTS: dict[tuple[int, str], _Facts | None] = {}
_FACTS_MAX = 200_000


def _facts(index: int, raw: Any) -> _Facts | None:
    """The facts of a statement, shared by every document holding the same statement at
    the same position (policies repeat statements a lot: one `s3:Get*` on `*` is in
    thousands). Keyed by the statement's text; None when it is malformed."""
    key = (index, repr(raw))
    try:
        return _FACTS[key]
    except KeyError:
        pass
    s = _statement(raw, index, trust=False)
    found = None
    if s is not None:
        compiled = _stmt("", s)
        found = _Facts(
            s, compiled.unbounded, compiled.everything, compiled.star, compiled.wildcard,
            compiled.subject_dependent, _members(s.actions.patterns, s.actions.negated),
            s.allow and compiled.everything and _covers_iam(s.actions),
            not s.allow and compiled.everything and s.actions.touches_service("iam"),
        )
    if len(_FACTS) >= _FACTS_MAX:
        _FACTS.clear()
    _FACTS[key] = found
    return found


def compile_document(document: Any, source: str) -> Compiled:
    loaded = load_document(document)
    raw = loaded.get("Statement") if loaded is not None else None
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list | tuple):
        return Compiled({}, {}, (), (), 0, readable=False, source=source)
    allows: dict[str, list[Stmt]] = {}
    denies: dict[str, list[Stmt]] = {}
    admin: list[Stmt] = []
    iam_denies: list[Stmt] = []
    broad: set[str] = set()
    for index, item in enumerate(raw):
        f = _facts(index, item)
        if f is None:
            continue
        s = f.statement
        compiled = Stmt(source, s, f.unbounded, f.everything, f.star, f.wildcard, f.subject_dependent)
        target = allows if s.allow else denies
        for action in f.members:
            found = target.get(action)
            if found is None:
                target[action] = [compiled]
            else:
                found.append(compiled)
        if s.allow and (f.unbounded or f.wildcard):
            broad.update(f.members)
        if f.admin:
            admin.append(compiled)
        if f.iam_deny:
            iam_denies.append(compiled)
    return Compiled(
        allows,  # type: ignore[arg-type]  # read-only from here on
        denies,  # type: ignore[arg-type]
        tuple(admin),
        tuple(iam_denies),
        len(raw),
        broad=frozenset(broad),
        source=source,
        targets=frozenset(_BY_TARGET.keys() & allows.keys()),
    )


# ---------------------------------------------------------------------------------------
# Verdicts on one action


@dataclass(frozen=True)
class Grant:
    """An action granted on some resources: the statements that grant it, what took part
    of it away, and the conditions it still hangs on."""

    action: str
    granted_by: tuple[Stmt, ...]
    removed_by: tuple[Stmt, ...] = ()
    conditions: tuple[str, ...] = ()


_UNSET = object()
_NONE: list[Stmt] = []  # shared empty answer: never appended to


def _EVERYTHING(s: Stmt) -> bool:
    return s.everything


class Layered:
    """One principal's documents by layer: identity (union), boundary, SCPs; answers are
    memoised per action (many methods share an action, e.g. iam:PassRole)."""

    def __init__(
        self,
        identity: list[Compiled],
        boundary: Compiled | None,
        scps: list[list[Compiled]] | None,
        subject: Subject,
        now: datetime,
        shared: dict[int, Verdict] | None = None,
    ) -> None:
        self.identity = identity
        self.boundary = boundary
        self.scps = scps
        self.subject = subject
        self.now = now
        self.name = subject.name if subject.kind == "user" else ""
        # Verdicts of statements whose conditions do not depend on the caller are shared
        # by every principal of the pass; the others are kept per principal.
        self.shared: dict[int, Verdict] = {} if shared is None else shared
        self._own: dict[int, Verdict] = {}
        self._limit_layers: list[list[Compiled]] = (
            [[boundary]] if boundary is not None else []
        ) + list(scps or ())
        self._all_layers = [*identity, *(d for layer in self._limit_layers for d in layer)]
        self._deny_layers = [doc for doc in self._all_layers if doc.denies]
        # source of a limiting layer (or of a Deny that surely applies) -> actions it took
        # away from what the identity policies grant: the evidence of a quiet verdict.
        self.blocked: dict[str, set[str]] = {}
        self._allow_memo: dict[tuple[int, str], list[Stmt]] = {}
        self._identity_memo: dict[str, list[Stmt]] = {}
        self._deny_memo: dict[str, list[Stmt]] = {}
        self._anywhere_memo: dict[tuple[str, bool], Grant | None] = {}
        self._everywhere_memo: dict[str, Grant | None] = {}
        self._denied_memo: dict[str, bool] = {}
        self.reach_memo: dict[tuple[str, int, str, bool], tuple[list[str], list[Grant]]] = {}

    def verdict(self, s: Stmt) -> Verdict:
        if not s.statement.conditions:
            return ALWAYS
        cache = self._own if s.subject_dependent else self.shared
        found = cache.get(id(s))
        if found is None:
            subject = self.subject if s.subject_dependent else None
            found = cache[id(s)] = judge(s.statement.conditions, now=self.now, subject=subject)
        return found

    def allows(self, action: str) -> list[Stmt]:
        """The identity statements allowing `action` whose conditions can hold."""
        found = self._identity_memo.get(action)
        if found is None:
            found = self._identity_memo[action] = self._allows(0, self.identity, action)
        return found

    def _allows(self, layer_id: int, layer: Iterable[Compiled], action: str) -> list[Stmt]:
        key = (layer_id, action)
        found = self._allow_memo.get(key)
        if found is None:
            found = self._allow_memo[key] = [
                s
                for doc in layer
                for s in doc.allows.get(action, ())
                if not s.statement.conditions or self.verdict(s).holds is not False
            ]
        return found

    def _limits(self) -> Iterable[tuple[int, list[Compiled]]]:
        return enumerate(self._limit_layers, start=1)

    @property
    def has_denies(self) -> bool:
        return bool(self._deny_layers)

    def denies(self, action: str) -> list[Stmt]:
        if not self._deny_layers:
            return _NONE  # most principals: no Deny anywhere
        found = self._deny_memo.get(action)
        if found is None:
            found = self._deny_memo[action] = [
                s for doc in self._deny_layers for s in doc.denies.get(action, ())
            ]
        return found

    def denied_everywhere(self, action: str) -> bool:
        """Is `action` denied on every resource, surely (a `Deny` on `*` whose conditions
        hold)? Then no resource needs looking at."""
        if not self._deny_layers:
            return False
        found = self._denied_memo.get(action)
        if found is None:
            found = False
            for d in self.denies(action):
                if d.star and self.verdict(d).holds is True:
                    if self.allows(action):
                        self.blocked.setdefault(d.source, set()).add(action)
                    found = True
                    break
            self._denied_memo[action] = found
        return found

    def allowed_on(self, action: str, arn: str) -> Grant | None:
        """May the principal do `action` on `arn`? With the evidence, or None."""
        everywhere = self.everywhere(action)
        if everywhere is not None:
            return everywhere
        if self.denied_everywhere(action):
            return None
        name = self.name
        granted = [s for s in self.allows(action) if s.matches(arn, name)]
        if not granted:
            return None
        for i, layer in self._limits():
            if not any(s.matches(arn, name) for s in self._allows(i, layer, action)):
                return self._block(layer, action)
        return self._minus_denies(action, granted, lambda s: s.matches(arn, name))

    def _block(self, layer: list[Compiled], action: str) -> None:
        """Remember that `layer` (the boundary, or one level of SCPs) does not allow
        `action` where the identity policies do."""
        for doc in layer:
            self.blocked.setdefault(doc.source, set()).add(action)
        return None

    def everywhere(self, action: str) -> Grant | None:
        """The grant when `action` is allowed on every resource with no Deny in sight
        (the common case, answered once instead of once per resource)."""
        if action not in self._everywhere_memo:
            found = None
            granted = [s for s in self.allows(action) if s.star]
            if (
                granted
                and not self.denies(action)
                and all(
                    any(s.star for s in self._allows(i, layer, action))
                    for i, layer in self._limits()
                )
            ):
                found = self._minus_denies(action, granted, lambda s: False)
            self._everywhere_memo[action] = found
        return self._everywhere_memo[action]

    def anywhere(self, action: str, *, wildcard_ok: bool = True) -> Grant | None:
        """Granted on every resource of some kind (or, with `wildcard_ok`, on a wildcard
        pattern of resources Steward does not inventory)."""
        key = (action, wildcard_ok)
        found = self._anywhere_memo.get(key, _UNSET)
        if found is not _UNSET:
            return found  # type: ignore[return-value]
        found = None
        if wildcard_ok:
            granted = [s for s in self.allows(action) if s.unbounded or s.wildcard]
        else:
            granted = [s for s in self.allows(action) if s.unbounded]
        if granted and not self.denied_everywhere(action):
            for i, layer in self._limits():
                if not any(s.unbounded or (wildcard_ok and s.wildcard)
                           for s in self._allows(i, layer, action)):
                    self._block(layer, action)
                    break
            else:
                found = self._minus_denies(action, granted, _EVERYTHING)
        self._anywhere_memo[key] = found
        return found

    def _minus_denies(self, action: str, granted: list[Stmt], applies) -> Grant | None:
        denies = self.denies(action)
        if not denies and not any(s.statement.conditions for s in granted):
            return Grant(action, tuple(granted))  # the common case: nothing to weigh
        removed: list[Stmt] = []
        conditions: list[str] = []
        for s in granted:
            conditions.extend(self.verdict(s).undecided)
        for d in denies:
            if not applies(d):
                continue
            v = self.verdict(d)
            if v.holds is True:
                self.blocked.setdefault(d.source, set()).add(action)
                return None
            if v.holds is None:
                removed.append(d)
                conditions.extend(f"unless {c}" for c in v.undecided)
        return Grant(action, tuple(granted), tuple(removed), tuple(dict.fromkeys(conditions)))

    def scoped_denies(self, action: str) -> list[Stmt]:
        """Denies on some resources only: evidence of what they took away."""
        if not self._deny_layers:
            return _NONE
        return [d for d in self.denies(action) if not d.everything and self.verdict(d).holds]

    def is_admin(self) -> tuple[Stmt, ...]:
        grants = [s for doc in self.identity for s in doc.admin if self.verdict(s).holds is not False]
        if not grants:
            return ()
        for _, layer in self._limits():
            if not any(self.verdict(s).holds is not False for doc in layer for s in doc.admin):
                self._block(layer, "*")
                return ()
        for doc in self._all_layers:
            for d in doc.iam_denies:
                if self.verdict(d).holds is True:
                    self.blocked.setdefault(d.source, set()).add("*")
                    return ()
        return tuple(grants)


# ---------------------------------------------------------------------------------------
# Per snapshot: documents, principals, resources


_NO_ROLES = Pool(())


@dataclass(frozen=True)
class Resources:
    """The account's IAM resources a method can target, by kind."""

    users: Pool
    groups: Pool
    roles: Pool
    policies: Pool  # customer managed
    bounded_users: Pool
    bounded_roles: Pool
    by_service: Mapping[str, Pool]  # service principal -> roles it may assume
    with_profile: tuple[str, ...]  # roles EC2 may assume that are in an instance profile
    runs_as: dict[tuple[str, bool], tuple[bool, tuple[str, ...], str]] = field(
        default_factory=dict
    )  # memo of `_runs_as`


def _service_principals(trust: Any) -> set[str]:
    normalised = normalise(trust, trust=True)
    out: set[str] = set()
    if normalised is None:
        return out
    for s in normalised.statements:
        if s.allow and s.principal and s.actions.matches(ASSUME):
            out.update(v.lower() for v in s.principal.get("Service", ()))
    return out


def _resources(snapshot: AccountSnapshot) -> Resources:
    by_service: dict[str, list[str]] = {}
    roles = [r for r in snapshot.roles if not r.service_linked]
    for r in roles:
        for service in _service_principals(r.trust_policy):
            by_service.setdefault(service, []).append(r.arn)
    return Resources(
        users=Pool(u.arn for u in snapshot.users),
        groups=Pool(g.arn for g in snapshot.groups),
        roles=Pool(r.arn for r in roles),
        policies=Pool(p.arn for p in snapshot.policies if not p.aws_managed),
        bounded_users=Pool(u.arn for u in snapshot.users if u.permissions_boundary),
        bounded_roles=Pool(r.arn for r in roles if r.permissions_boundary),
        by_service={k: Pool(v) for k, v in by_service.items()},
        with_profile=tuple(
            r.arn for r in roles
            if r.instance_profiles and r.arn in by_service.get(catalogue.EC2, ())
        ),
    )


class _Documents:
    """Compiled documents of one snapshot, by policy ARN and by inline document identity."""

    def __init__(self, snapshot: AccountSnapshot) -> None:
        self.snapshot = snapshot
        self._by_arn: dict[str, Compiled | None] = {}
        self._by_text: dict[tuple[str, int], Compiled] = {}
        self._groups: dict[str, tuple[list[Compiled], list[Unevaluated]]] = {}

    def managed(self, arn: str, source: str) -> Compiled | None:
        key = f"{source}\x1f{arn}"
        if key not in self._by_arn:
            policy = self.snapshot.policy_by_arn.get(arn)
            self._by_arn[key] = self._compile(policy.document, source) if policy else None
        return self._by_arn[key]

    def inline(self, document: Any, source: str) -> Compiled:
        return self._compile(document, source)

    def group(self, g: Group) -> tuple[list[Compiled], list[Unevaluated]]:
        """A group's documents, compiled once for all its members."""
        found = self._groups.get(g.name)
        if found is None:
            found = self._groups[g.name] = _own_documents(self, g, prefix=f"group:{g.name}/")
        return found

    def _compile(self, document: Any, source: str) -> Compiled:
        # Documents live in the snapshot for the whole pass, so their identity is a key.
        key = (source, id(document))
        found = self._by_text.get(key)
        if found is None:
            found = self._by_text[key] = compile_document(document, source)
        return found


@dataclass(frozen=True)
class Unevaluated:
    source: str
    reason: str  # "missing document" | "unreadable document" | "missing group"


def _kind(principal: Principal) -> str:
    return type(principal).__name__.lower()


def short_name(arn: str) -> str:
    """`arn:aws:iam::123:role/ops/deploy` -> `role/ops/deploy` (for chains people read)."""
    return arn.split(":", 5)[-1] if arn.startswith("arn:") else arn


def _own_documents(
    docs: _Documents, principal: Principal, prefix: str = ""
) -> tuple[list[Compiled], list[Unevaluated]]:
    out: list[Compiled] = []
    gaps: list[Unevaluated] = []
    for ref in principal.attached_policies:
        compiled = docs.managed(ref.arn, prefix + ref.arn)
        if compiled is None or not compiled.readable:
            reason = "missing document" if compiled is None else "unreadable document"
            gaps.append(Unevaluated(prefix + ref.arn, reason))
        else:
            out.append(compiled)
    for inline in principal.inline_policies:
        source = f"{prefix}inline:{inline.name}"
        compiled = docs.inline(inline.document, source)
        if compiled.readable:
            out.append(compiled)
        else:
            gaps.append(Unevaluated(source, "unreadable document"))
    return out, gaps


# ---------------------------------------------------------------------------------------
# Verdicts per principal


@dataclass(frozen=True)
class MethodVerdict:
    name: str
    exploitable: bool
    grants: tuple[Grant, ...]
    targets: tuple[str, ...] = ()  # short names of what it reaches, a few
    note: str = ""  # e.g. what was assumed because the snapshot lacks an inventory

    @property
    def method(self) -> Method:
        return catalogue.BY_NAME[self.name]

    @property
    def conditions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for g in self.grants for c in g.conditions))

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.source for g in self.grants for s in g.granted_by))


@dataclass(frozen=True)
class PrincipalVerdict:
    arn: str
    account: str
    kind: str
    admin: tuple[Stmt, ...]
    methods: tuple[MethodVerdict, ...]
    unevaluated: tuple[Unevaluated, ...]
    removed: tuple[Stmt, ...] = ()  # denies, boundary or SCP statements that took grants away
    bounded_by: str | None = None
    scps: bool = False
    # What the boundary, an SCP level or a Deny that surely applies took away from the
    # identity grants the verdict looked at: (source, actions), sorted.
    blocked_by: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def exploitable(self) -> bool:
        return bool(self.admin) or any(m.exploitable for m in self.methods)


_TARGETS = {
    "other-user": "users",
    "user": "users",
    "group": "groups",
    "policy": "policies",
    "role": "roles",
    "bounded-user": "bounded_users",
    "bounded-role": "bounded_roles",
}
_TYPES = {"users": "user", "groups": "group", "roles": "role", "policies": "policy",
          "bounded_users": "user", "bounded_roles": "role"}
_SHOWN = 3


def _could_create(grant: Grant, account: str, kind: str) -> bool:
    """Could a grant's patterns match an IAM resource of `kind` that does not exist yet?"""
    for s in grant.granted_by:
        for pattern in s.statement.resources:
            parts = pattern.split(":", 5)
            if len(parts) != 6 or not wildcard_match(parts[2], "iam"):
                continue
            if not wildcard_match(parts[4], account, ignore_case=False):
                continue
            resource = parts[5]
            if has_wildcard(resource) and wildcard_match(
                resource.split("/", 1)[0] + "/", f"{kind}/", ignore_case=False
            ):
                return True
    return False


def _reach(
    layered: Layered, action: str, pool: Pool, *, exclude: str = "", patterns_only: bool = False
) -> tuple[list[str], list[Grant]]:
    """Up to a few resources of `pool` the principal may do `action` on, with the grants.
    `patterns_only`: through wildcard or unbounded resource elements only."""
    key = (action, id(pool), exclude, patterns_only)
    memo = layered.reach_memo.get(key)
    if memo is None:
        memo = layered.reach_memo[key] = _reach_uncached(
            layered, action, pool, exclude, patterns_only
        )
    return memo


def _reach_uncached(
    layered: Layered, action: str, pool: Pool, exclude: str, patterns_only: bool
) -> tuple[list[str], list[Grant]]:
    name = layered.name
    seen: set[str] = set()
    found: list[str] = []
    grants: list[Grant] = []
    for s in layered.allows(action):
        if patterns_only and not (s.wildcard or s.unbounded):
            continue
        for arn in s.candidates(pool, name):
            if arn == exclude or arn in seen:
                continue
            seen.add(arn)
            grant = layered.allowed_on(action, arn)
            if grant is not None:
                found.append(arn)
                grants.append(grant)
                if len(found) >= _SHOWN:
                    return sorted(found), grants
    return sorted(found), grants


def _judge_method(
    m: Method, layered: Layered, res: Resources, principal_arn: str, account: str,
    known_profiles: bool,
) -> MethodVerdict | None:
    others: list[Grant] = []
    for action in m.others:
        grant = layered.anywhere(action)
        if grant is None:
            return None
        others.append(grant)
    kind, service = _KIND[m.name]
    if kind in _TARGETS:
        attr = _TARGETS[kind]
        exclude = principal_arn if kind == "other-user" else ""
        found, grants = _reach(layered, m.target, getattr(res, attr), exclude=exclude)
        if found:
            return MethodVerdict(m.name, True, (grants[0], *others),
                                 tuple(short_name(a) for a in found))
        broad = layered.anywhere(m.target, wildcard_ok=True)
        if broad is None or not (
            any(s.unbounded for s in broad.granted_by)
            or _could_create(broad, account, _TYPES[attr])
        ):
            return None
        what = {"other-user": "no other user", "bounded-user": "no user with a boundary",
                "bounded-role": "no role with a boundary"}.get(kind, f"no matching {_TYPES[attr]}")
        return MethodVerdict(m.name, False, (broad, *others), note=f"{what} exists yet")
    if kind == "pass":
        # Passing one named role is the normal deploy pattern (as in cloudsplaining); a
        # wildcard that reaches roles the service may assume is the escalation.
        found, grants = _reach(
            layered, m.target, res.by_service.get(service, _NO_ROLES), patterns_only=True
        )
        if found:
            return MethodVerdict(m.name, True, (grants[0], *others),
                                 tuple(short_name(a) for a in found))
        broad = layered.anywhere(m.target, wildcard_ok=True)
        if broad is None:
            return None
        return MethodVerdict(m.name, False, (broad, *others),
                             note=f"it may pass no role that {service} may assume")
    # runs-as: an existing resource of `service` that runs with a role.
    grant = layered.anywhere(m.target)
    if grant is None:
        return None
    exploitable, targets, note = _runs_as(res, service, known_profiles)
    return MethodVerdict(m.name, exploitable, (grant, *others), targets, note)


def _runs_as(res: Resources, service: str, known_profiles: bool) -> tuple[bool, tuple[str, ...], str]:
    """Whether a `service` resource running with a role can exist: (exploitable, a few
    roles, the note saying what was assumed). Once per snapshot and service."""
    key = (service, known_profiles)
    if key not in res.runs_as:
        res.runs_as[key] = _runs_as_uncached(res, service, known_profiles)
    return res.runs_as[key]


def _runs_as_uncached(
    res: Resources, service: str, known_profiles: bool
) -> tuple[bool, tuple[str, ...], str]:
    pool = res.by_service.get(service)
    roles = pool.items if pool else ()
    if service == catalogue.EC2 and known_profiles:
        roles, what = res.with_profile, "instance profiles"
    else:
        what = f"roles {service} may assume"
    if not roles:
        return False, (), f"no {what} exist"
    note = ""
    if service != catalogue.EC2 or not known_profiles:
        kind = service.split(".")[0]
        note = f"{kind} resources are not inventoried; assumed to use one of the {what}"
    return True, tuple(short_name(a) for a in roles[:_SHOWN]), note


# ---------------------------------------------------------------------------------------
# One account's principals


def _layered(
    docs: _Documents, snapshot: AccountSnapshot, principal: Principal, now: datetime,
    scps: list[Compiled] | None, shared: dict[int, Verdict],
) -> tuple[Layered, list[Unevaluated]]:
    identity, gaps = _own_documents(docs, principal)
    if isinstance(principal, User):
        for name in principal.groups:
            g = snapshot.group_by_name.get(name)
            if g is None:
                gaps.append(Unevaluated(f"group:{name}", "missing group"))
                continue
            more, more_gaps = docs.group(g)
            identity.extend(more)
            gaps.extend(more_gaps)
    boundary = None
    arn = getattr(principal, "permissions_boundary", None)
    if arn:
        boundary = docs.managed(arn, f"boundary:{arn}")
        if boundary is None or not boundary.readable:
            # An unreadable boundary limits nothing we can prove: judged without it.
            gaps.append(Unevaluated(f"boundary:{arn}", "missing document"))
            boundary = None
    subject = Subject(principal.arn, snapshot.account_id, _kind(principal), principal.name)
    return Layered(identity, boundary, scps, subject, now, shared), gaps


_BY_TARGET: dict[str, list[tuple[int, Method]]] = {}
# The method's actions that must be granted broadly (unbounded or wildcard resource): the
# others always; the target too when the method reaches resources Steward does not
# inventory (`runs-as`) or through a wildcard only (`pass`): see `_judge_method`.
_BROAD: dict[int, frozenset[str]] = {}
_KIND: dict[str, tuple[str, str]] = {}  # method name -> (kind, service) of `requires`
for _i, _method in enumerate(catalogue.METHODS):
    _KIND[_method.name] = (_method.requires.partition(":")[0], _method.requires.partition(":")[2])
    _BY_TARGET.setdefault(_method.target, []).append((_i, _method))
    _BROAD[_i] = frozenset(_method.others) | (
        {_method.target} if _method.requires.partition(":")[0] in ("pass", "runs-as") else set()
    )


def _principal_verdict(
    snapshot: AccountSnapshot, res: Resources, principal: Principal, layered: Layered,
    gaps: list[Unevaluated],
) -> PrincipalVerdict:
    present: set[str] = set()
    broad: set[str] = set()
    for doc in layered.identity:
        present.update(doc.targets)
        broad.update(doc.broad)
    methods = []
    judged: set[str] = set()
    candidates = sorted(
        (i, m) for target in present for i, m in _BY_TARGET[target]
    )
    for i, m in candidates:
        # Every action but the target must be granted broadly somewhere (set arithmetic
        # first: most methods of most principals stop here).
        if not broad.issuperset(m.others):
            continue
        judged |= m.actions
        if not broad.issuperset(_BROAD[i]):
            continue  # the target is granted on named resources only: no reach this way
        found = _judge_method(m, layered, res, principal.arn, snapshot.account_id,
                              snapshot.instance_profiles_known)
        if found is not None:
            methods.append(found)
    removed: dict[int, Stmt] = {}
    if layered.has_denies:
        for action in sorted(judged):
            for d in layered.scoped_denies(action):
                removed[id(d)] = d
    for m in methods:
        for g in m.grants:
            for d in g.removed_by:
                removed[id(d)] = d
    admin = layered.is_admin()
    return PrincipalVerdict(
        arn=principal.arn,
        account=snapshot.account_id,
        kind=_kind(principal),
        admin=admin,
        methods=tuple(methods),
        unevaluated=tuple(gaps),
        removed=tuple(sorted(removed.values(), key=lambda s: (s.source, s.index))),
        bounded_by=getattr(principal, "permissions_boundary", None),
        scps=layered.scps is not None,
        blocked_by=tuple(sorted((k, tuple(sorted(v))) for k, v in layered.blocked.items())),
    )


def _principals(snapshot: AccountSnapshot) -> Iterable[Principal]:
    yield from snapshot.users
    yield from snapshot.groups
    yield from (r for r in snapshot.roles if not r.service_linked)


def _scps(docs: _Documents, snapshot: AccountSnapshot) -> list[list[Compiled]] | None:
    """The SCP levels that limit the account (root, OUs, the account itself), each the
    readable SCPs attached there; a level with none readable limits nothing."""
    if snapshot.scps is None:
        return None
    levels = []
    for level in (*snapshot.scps_above, snapshot.scps):
        out = []
        for p in level:
            compiled = docs.inline(p.document, f"scp:{p.name}")
            if compiled.readable:
                out.append(compiled)
        if out:
            levels.append(out)
    return levels or None


def principal_verdicts(
    snapshot: AccountSnapshot, now: datetime, shared: dict[int, Verdict]
) -> Iterable[tuple[Principal, Layered, PrincipalVerdict]]:
    """Every principal of one account with its layered documents and its verdict."""
    docs = _Documents(snapshot)
    res = _resources(snapshot)
    scps = _scps(docs, snapshot)
    for principal in _principals(snapshot):
        lay, gaps = _layered(docs, snapshot, principal, now, scps, shared)
        yield principal, lay, _principal_verdict(snapshot, res, principal, lay, gaps)
