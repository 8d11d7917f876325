"""The escalation pass of one scan: every principal's verdict (`checks.effective`) and the
graph of who can assume which role, within and across the scanned accounts (pure).

`assume_edges`: the trust policy admits the principal (its ARN, its account, or anyone;
conditions decided as for identity policies, `sts:ExternalId` stays undecided) and either
the principal's effective permissions allow `sts:AssumeRole` on the role or, in the same
account, the trust names the principal's own ARN (IAM needs no identity permission then).
`chains`: a breadth-first search back from the roles that are administrators or hold an
exploitable method gives every principal its shortest chain; each node is visited once,
so cycles end, and chains stop at `MAX_CHAIN` hops.

`analyse(snapshots, now)` is the whole pass, computed once per scan and cached per
snapshot set.
"""

from __future__ import annotations

import contextlib
import gc
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from checks.conditions import Subject, Verdict, judge
from checks.effective import (
    ADMIN,
    ASSUME,
    Grant,
    Layered,
    Pool,
    PrincipalVerdict,
    principal_verdicts,
)
from checks.model import AccountSnapshot, User
from checks.policy import Statement, normalise, principal_account

MAX_CHAIN = 8


@dataclass(frozen=True)
class _Clause:
    """One trust statement about sts:AssumeRole, read once."""

    allow: bool
    names: frozenset[str]  # principal ARNs named
    accounts: frozenset[str]  # accounts named (id or :root)
    anyone: bool  # `*` or an ARN with a wildcard account
    negated: bool  # NotPrincipal
    statement: Statement

    def hits(self, subject: Subject) -> tuple[bool, bool]:
        """(applies to the subject, names it explicitly)."""
        named = subject.arn in self.names
        hit = named or subject.account in self.accounts
        if self.negated:
            return not hit, False
        return hit or self.anyone, named


@dataclass(frozen=True)
class _Trust:
    arn: str  # the role's
    account: str
    clauses: tuple[_Clause, ...]

    def foreign(self) -> bool:
        """Does it admit (or may it admit) some principal of another account?"""
        return any(
            c.allow and (c.anyone or c.negated or c.accounts - {self.account}
                         or any(principal_account(n) != self.account for n in c.names))
            for c in self.clauses
        )


def trust_of(arn: str, account: str, trust_policy: object) -> _Trust | None:
    """A role's trust policy, read once for the graph (None: it admits nobody by ARN)."""
    normalised = normalise(trust_policy, trust=True)
    if normalised is None:
        return None
    clauses = []
    for s in normalised.statements:
        if s.principal is None or not s.actions.matches(ASSUME):
            continue
        values = s.principal.get("AWS", ())
        accounts = {principal_account(v) for v in values if v.endswith(":root") or v.isdigit()}
        clauses.append(_Clause(
            allow=s.allow,
            names=frozenset(v for v in values if v.startswith("arn:") and not v.endswith(":root")),
            accounts=frozenset(a for a in accounts if a and a != "*"),
            anyone=any(principal_account(v) == "*" for v in values),
            negated=s.not_principal,
            statement=s,
        ))
    return _Trust(arn, account, tuple(clauses)) if clauses else None


def _trusts(snapshot: AccountSnapshot) -> list[_Trust]:
    out = []
    for role in snapshot.roles:
        if role.service_linked:
            continue
        found = trust_of(role.arn, snapshot.account_id, role.trust_policy)
        if found is not None:
            out.append(found)
    return out


def _admits(trust: _Trust, subject: Subject, now: datetime) -> tuple[bool, tuple[str, ...]] | None:
    """(the trust names the subject explicitly, undecided conditions), or None."""
    admitted = explicit = False
    conditions: list[str] = []
    for c in trust.clauses:
        hit, named = c.hits(subject)
        if not hit:
            continue
        verdict = judge(c.statement.conditions, now=now, subject=subject)
        if not c.allow:
            if verdict.holds is True:
                return None
            continue
        if verdict.holds is False:
            continue
        admitted = True
        explicit = explicit or named
        conditions.extend(verdict.undecided)
    return (explicit, tuple(dict.fromkeys(conditions))) if admitted else None


class Edge(NamedTuple):
    role: str  # ARN of the role assumed
    granted_by: tuple[str, ...]  # identity sources allowing sts:AssumeRole ("trust" when explicit)
    conditions: tuple[str, ...] = ()


HUB = "hub:"


def _open_to(t: _Trust, account: str) -> bool:
    """Does the trust admit every principal of `account`, unconditionally, no Deny?"""
    if any(not c.allow for c in t.clauses):
        return False
    return any(
        (c.anyone or account in c.accounts) and not c.negated and not c.statement.conditions
        for c in t.clauses
    )


def index_trusts(trusts: Iterable[_Trust]) -> tuple[dict[str, list[_Trust]], dict[str, list[_Trust]], list[_Trust]]:
    """The trust policies' Allow clauses indexed by who they admit: (by principal ARN, by
    account, open to anyone or to everyone but someone)."""
    by_arn: dict[str, list[_Trust]] = {}
    by_account: dict[str, list[_Trust]] = {}
    anyone: list[_Trust] = []
    for t in trusts:
        for c in t.clauses:
            if not c.allow:
                continue
            if c.anyone or c.negated:
                anyone.append(t)
            for name in c.names:
                by_arn.setdefault(name, []).append(t)
            for account in c.accounts:
                by_account.setdefault(account, []).append(t)
    return by_arn, by_account, anyone


def assume_edges(
    snapshots: Sequence[AccountSnapshot],
    layered: Mapping[str, Layered],
    now: datetime,
) -> dict[str, tuple[Edge, ...]]:
    """principal ARN -> the roles it can assume (within and across the given accounts).

    A principal allowed sts:AssumeRole on every role (no Deny) reaches all the roles that
    trust its whole account through one shared node, `hub:<account>`, instead of one edge
    per role: a few hundred such roles times thousands of such principals would otherwise
    be millions of edges. Chains never show the hub."""
    trusts = [t for snap in snapshots for t in _trusts(snap)]
    by_role: dict[str, _Trust] = {t.arn: t for t in trusts}
    by_arn, by_account, anyone = index_trusts(trusts)
    role_pool = Pool(sorted(by_role))
    hubs: dict[str, tuple[Edge, ...]] = {}
    closed: dict[str, list[_Trust]] = {}
    used_hubs: set[str] = set()
    edges: dict[str, tuple[Edge, ...]] = {}
    for arn, lay in layered.items():
        if lay.subject.kind == "group":
            continue
        account = lay.subject.account
        if account not in hubs:
            admitting = {id(t): t for t in (*by_account.get(account, ()), *anyone)}.values()
            hubs[account] = tuple(
                Edge(t.arn, ("trust",))
                for t in sorted((t for t in admitting if _open_to(t, account)),
                                key=lambda t: t.arn)
            )
            closed[account] = [t for t in admitting if not _open_to(t, account)]
        found: dict[str, Edge] = {}
        allows = lay.allows(ASSUME)
        everywhere = lay.everywhere(ASSUME) if allows else None
        if everywhere is not None and not everywhere.conditions:
            # Every role open to its account in one edge; only the others one by one.
            found[HUB + account] = Edge(HUB + account, _sources(everywhere))
            used_hubs.add(account)
            candidates: Iterable[_Trust] = (*by_arn.get(arn, ()), *closed[account])
        elif allows:
            # Only the roles its sts:AssumeRole grants can name (a few, usually).
            named = {r for s in allows for r in s.candidates(role_pool, lay.name)}
            candidates = (*by_arn.get(arn, ()), *(by_role[r] for r in sorted(named)))
        else:
            # Without any sts:AssumeRole grant only a same-account trust naming it admits it.
            candidates = by_arn.get(arn, ())
        for t in candidates:
            role = t.arn
            if role == arn or role in found:
                continue
            admitted = _admits(t, lay.subject, now)
            if admitted is None:
                continue
            explicit, conditions = admitted
            grant = lay.allowed_on(ASSUME, role) if allows else None
            if grant is not None:
                sources = _sources(grant)
                conditions = (*conditions, *grant.conditions)
            elif explicit and t.account == account and not _denied(lay, role):
                sources = ("trust",)
            else:
                continue
            found[role] = Edge(role, sources, tuple(dict.fromkeys(conditions)))
        if found:
            edges[arn] = tuple(found[k] for k in sorted(found))
    for account in sorted(used_hubs):
        if hubs[account]:
            edges[HUB + account] = hubs[account]
    return edges


def _sources(grant: Grant) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.source for s in grant.granted_by))


def _denied(lay: Layered, role_arn: str) -> bool:
    return any(
        d.matches(role_arn, lay.name) and lay.verdict(d).holds is True for d in lay.denies(ASSUME)
    )


def goals(verdicts: Mapping[str, PrincipalVerdict]) -> dict[str, str]:
    """The roles worth reaching: role ARN -> ADMIN or its first exploitable method."""
    goal: dict[str, str] = {}
    for arn, v in verdicts.items():
        if v.kind != "role":
            continue
        if v.admin:
            goal[arn] = ADMIN
        else:
            exploitable = sorted(m.name for m in v.methods if m.exploitable)
            if exploitable:
                goal[arn] = exploitable[0]
    return goal


def chains(
    verdicts: Mapping[str, PrincipalVerdict], edges: Mapping[str, tuple[Edge, ...]]
) -> dict[str, Chain]:
    """For each principal that reaches, through at least one role, an administrator or an
    exploitable method: the shortest chain (ties broken by ARN, so scans are repeatable)."""
    return chains_to(goals(verdicts), edges)


def chains_to(goal: Mapping[str, str], edges: Mapping[str, tuple[Edge, ...]]) -> dict[str, Chain]:
    """`chains` from given goals (the scan-wide join of `checks.chains` uses it)."""
    reverse: dict[str, list[tuple[str, Edge]]] = {}
    for source, out in edges.items():
        for e in out:
            reverse.setdefault(e.role, []).append((source, e))
    # Multi-source BFS backwards from the goals: next_hop[x] = the edge x takes.
    next_hop: dict[str, Edge | None] = {g: None for g in goal}
    depth = {g: 0 for g in goal}
    queue = deque(sorted(goal))
    while queue:
        node = queue.popleft()
        if depth[node] >= MAX_CHAIN:
            continue
        for source, e in sorted(reverse.get(node, ()), key=lambda p: p[0]):
            if source in next_hop:
                continue
            next_hop[source] = e
            if source.startswith(HUB):  # a hub is no hop: visit it before the next level
                depth[source] = depth[node]
                queue.appendleft(source)
            else:
                depth[source] = depth[node] + 1
                queue.append(source)
    out: dict[str, Chain] = {}
    for start, hop in next_hop.items():
        if hop is None or start.startswith(HUB):
            continue
        path, conditions, node = [start], [], start
        while next_hop.get(node) is not None:
            e = next_hop[node]
            assert e is not None
            conditions.extend(e.conditions)
            node = e.role
            path.append(node)
        shown = tuple(a for a in path if not a.startswith(HUB))
        out[start] = Chain(shown, goal[node], tuple(dict.fromkeys(conditions)))
    return out


@dataclass(frozen=True)
class Chain:
    path: tuple[str, ...]  # ARNs, the principal first
    reaches: str  # ADMIN or a method name
    conditions: tuple[str, ...] = ()


@dataclass
class Analysis:
    verdicts: dict[str, PrincipalVerdict]
    edges: dict[str, tuple[Edge, ...]]
    chains: dict[str, Chain]
    groups_of: dict[str, tuple[str, ...]]  # user ARN -> its groups' ARNs


def analyse(snapshots: Sequence[AccountSnapshot], now: datetime) -> Analysis:
    """The whole pass over the given accounts (one per scan; cached per snapshot set)."""
    key = (tuple(id(s) for s in snapshots), now)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    with gc_paused():
        found = _analyse(snapshots, now)
    _CACHE[key] = found
    for s in snapshots:
        weakref.finalize(s, _CACHE.pop, key, None)
    return found


def _analyse(snapshots: Sequence[AccountSnapshot], now: datetime) -> Analysis:
    verdicts: dict[str, PrincipalVerdict] = {}
    layered: dict[str, Layered] = {}
    groups_of: dict[str, tuple[str, ...]] = {}
    shared: dict[int, Verdict] = {}
    for snapshot in snapshots:
        for principal, lay, verdict in principal_verdicts(snapshot, now, shared):
            layered[principal.arn] = lay
            verdicts[principal.arn] = verdict
            if isinstance(principal, User):
                groups_of[principal.arn] = tuple(
                    snapshot.group_by_name[g].arn for g in principal.groups
                    if g in snapshot.group_by_name
                )
    edges = assume_edges(snapshots, layered, now)
    return Analysis(verdicts, edges, chains(verdicts, edges), groups_of)


_CACHE: dict[tuple[tuple[int, ...], datetime], Analysis] = {}


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The pass allocates millions of small acyclic objects; the cyclic collector would
    rescan them all again and again (40 % of the pass's time measured, and more than the
    pass itself while its findings are built from it): paused meanwhile."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


