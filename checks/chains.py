"""Role chains across the accounts of one scan (pure).

A scan judges each account on its own (one job per account, possibly on different
workers), and `checks.escalation` finds the chains inside an account. A chain that crosses
accounts, "user/ci (111…) → role/deploy (222…) → role/admin (222…)", needs all of them at
once. So each account's scan also produces its *part of the graph* (`export`, JSON-ready,
small: only what another account can need), and once every account of the run has ended
the parts are joined (`join`, then `results`):

* the account's intra-account edges (as `checks.escalation.assume_edges` found them) and
  its goals (roles that are administrators or hold an exploitable method);
* the roles whose trust policy admits principals of other accounts, with that policy;
* for each user or role with an identity Allow of `sts:AssumeRole`, those statements only
  (and the boundary's and the SCPs' statements about `sts:AssumeRole`), so the join can
  decide "its effective permissions allow sts:AssumeRole on that role" exactly as the
  account's own pass would (Denies, boundary and SCP levels included);
* the principals the account's own findings already give a chain (or that are
  administrators): the join reports nothing more on them.

`join` builds the cross-account edges (trust admits the principal, by ARN, account or
`*`, AND its permissions allow `sts:AssumeRole` on the role), adds every account's own
edges, and runs the same shortest-chain search (cycles end, `MAX_CHAIN` hops at most).
`results` turns each chain that crosses accounts into one privilege-escalation Result on
the starting principal, `sub_key` "cross-account": a stable fingerprint, identical on a
rescan of an unchanged organization.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from checks import escalation
from checks import escalation_methods as catalogue
from checks.conditions import Subject
from checks.context import CheckContext
from checks.effective import (
    ADMIN,
    ASSUME,
    Compiled,
    Layered,
    _facts,
    compile_document,
    short_name,
)
from checks.escalation import Chain, Edge, chains_to, index_trusts, trust_of
from checks.model import AccountSnapshot, Result, Status, User
from checks.policy import load_document, principal_account
from checks.rules.base import owner_of
from checks.rules.policies import PRIVILEGE_ESCALATION_POLICY

CROSS_ACCOUNT = "cross-account"  # the sub_key of a chain that crosses accounts
VERSION = 1


# ---------------------------------------------------------------------------------------
# One account's part


def _about_assume(index: int, statement: Any) -> bool:
    found = _facts(index, statement)  # shared with the account's own pass
    return found is not None and ASSUME in found.members


class _Docs:
    """Documents reduced to their statements about sts:AssumeRole, numbered once."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._index: dict[tuple[str, int], int | None] = {}
        self._keep: list[Any] = []  # keeps the documents alive: their ids are the keys

    def add(self, document: Any, source: str) -> int | None:
        key = (source, id(document))
        if key not in self._index:
            self._keep.append(document)
            loaded = load_document(document)
            if loaded is None or "Statement" not in loaded:
                self._index[key] = None  # unreadable: judged as the account's pass does
            else:
                raw = loaded["Statement"]
                raw = [raw] if isinstance(raw, Mapping) else list(raw or ())
                version = loaded.get("Version", "2008-10-17")
                kept = [s for i, s in enumerate(raw) if _about_assume(i, s)]
                self._index[key] = len(self.items)
                self.items.append({"source": source,
                                   "document": {"Version": version, "Statement": kept}})
        return self._index[key]


def _beyond(statement: Mapping[str, Any], account: str) -> bool:
    """Can an Allow statement about sts:AssumeRole name a role of another account?"""
    if statement.get("Effect") != "Allow":
        return False
    if "NotResource" in statement:
        return True
    resources = statement.get("Resource")
    resources = [resources] if isinstance(resources, str) else resources
    if not isinstance(resources, list | tuple):
        return True  # judged loosely: the join decides
    for r in resources:
        parts = str(r).split(":", 5)
        if len(parts) != 6 or parts[4] != account:
            return True
    return False


def _assumes(docs: _Docs, indexes: Iterable[int | None], account: str) -> bool:
    return any(
        i is not None and any(_beyond(s, account) for s in docs.items[i]["document"]["Statement"])
        for i in indexes
    )


def export(snapshot: AccountSnapshot, ctx: CheckContext) -> dict[str, Any]:
    """The account's part of the scan-wide role graph (JSON-ready)."""
    analysis = escalation.analyse([snapshot], ctx.now)
    with escalation.gc_paused():
        return _export(snapshot, ctx, analysis)


def _export(snapshot: AccountSnapshot, ctx: CheckContext, analysis: escalation.Analysis) -> dict[str, Any]:
    docs = _Docs()
    principals = []
    for p in (*snapshot.users, *(r for r in snapshot.roles if not r.service_linked)):
        own = [docs.add(snapshot.policy_by_arn[r.arn].document, r.arn)
               for r in p.attached_policies if r.arn in snapshot.policy_by_arn]
        own += [docs.add(i.document, f"inline:{i.name}") for i in p.inline_policies]
        if isinstance(p, User):
            for name in p.groups:
                g = snapshot.group_by_name.get(name)
                if g is None:
                    continue
                prefix = f"group:{name}/"
                own += [docs.add(snapshot.policy_by_arn[r.arn].document, prefix + r.arn)
                        for r in g.attached_policies if r.arn in snapshot.policy_by_arn]
                own += [docs.add(i.document, f"{prefix}inline:{i.name}") for i in g.inline_policies]
        if not _assumes(docs, own, snapshot.account_id):
            continue
        boundary = None
        if p.permissions_boundary and p.permissions_boundary in snapshot.policy_by_arn:
            boundary = docs.add(snapshot.policy_by_arn[p.permissions_boundary].document,
                                f"boundary:{p.permissions_boundary}")
        principals.append({
            "arn": p.arn, "kind": "user" if isinstance(p, User) else "role", "name": p.name,
            "docs": [i for i in own if i is not None], "boundary": boundary,
            "owner": owner_of(p, ctx),
        })
    scps = None
    if snapshot.scps is not None:
        scps = [[i for i in (docs.add(p.document, f"scp:{p.name}") for p in level) if i is not None]
                for level in (*snapshot.scps_above, snapshot.scps)]
    trusts = []
    for role in snapshot.roles:
        if role.service_linked:
            continue
        t = trust_of(role.arn, snapshot.account_id, role.trust_policy)
        if t is not None and t.foreign():
            trusts.append({"arn": role.arn, "trust": load_document(role.trust_policy)})
    local = sorted({*analysis.chains, *(a for a, v in analysis.verdicts.items() if v.admin)})
    # Only the documents the exported principals and the SCPs use, renumbered.
    used = sorted({i for p in principals for i in (*p["docs"], p["boundary"]) if i is not None}
                  | {i for level in scps or () for i in level})
    new = {old: n for n, old in enumerate(used)}
    for p in principals:
        p["docs"] = [new[i] for i in p["docs"]]
        p["boundary"] = new.get(p["boundary"]) if p["boundary"] is not None else None
    if scps is not None:
        scps = [[new[i] for i in level] for level in scps]
    return {
        "version": VERSION,
        "account": snapshot.account_id,
        "goals": dict(sorted(escalation.goals(analysis.verdicts).items())),
        "edges": {src: [[e.role, list(e.granted_by), list(e.conditions)] for e in out]
                  for src, out in sorted(analysis.edges.items())},
        "trusts": trusts,
        "principals": principals,
        "documents": [docs.items[i] for i in used],
        "scps": scps,
        "local": local,
    }


# ---------------------------------------------------------------------------------------
# The join



def _compiled(part: Mapping[str, Any], index: int) -> Compiled:
    item = part["documents"][index]
    if not item["document"]["Statement"]:
        return Compiled({}, {}, (), (), 0, source=item["source"])  # allows nothing of it
    return compile_document(item["document"], item["source"])


def _layered(part: Mapping[str, Any], p: Mapping[str, Any], now: datetime) -> Layered:
    identity = [c for c in (_compiled(part, i) for i in p["docs"]) if c.readable and c.statements]
    boundary = _compiled(part, p["boundary"]) if p.get("boundary") is not None else None
    if boundary is not None and not boundary.readable:
        boundary = None
    scps = None
    if part.get("scps") is not None:
        scps = [[c for c in (_compiled(part, i) for i in level) if c.readable] for level in part["scps"]]
        scps = [level for level in scps if level] or None
    subject = Subject(p["arn"], part["account"], p["kind"], p["name"])
    return Layered(identity, boundary, scps, subject, now)


def _cross_edges(parts: Sequence[Mapping[str, Any]], now: datetime) -> dict[str, list[Edge]]:
    trusts = [t for part in parts for d in part["trusts"]
              if (t := trust_of(d["arn"], part["account"], d["trust"])) is not None]
    by_arn, by_account, anyone = index_trusts(trusts)
    edges: dict[str, list[Edge]] = {}
    for part in parts:
        account = part["account"]
        for p in part["principals"]:
            candidates = {t.arn: t for t in (*by_arn.get(p["arn"], ()), *by_account.get(account, ()), *anyone)
                          if t.account != account}
            if not candidates:
                continue
            lay = _layered(part, p, now)
            for arn in sorted(candidates):
                t = candidates[arn]
                admitted = escalation._admits(t, lay.subject, now)
                if admitted is None:
                    continue
                grant = lay.allowed_on(ASSUME, arn)
                if grant is None:
                    continue
                sources = tuple(dict.fromkeys(s.source for s in grant.granted_by))
                conditions = tuple(dict.fromkeys((*admitted[1], *grant.conditions)))
                edges.setdefault(p["arn"], []).append(Edge(arn, sources, conditions))
    return edges


def join(parts: Sequence[Mapping[str, Any]], now: datetime) -> dict[str, Chain]:
    """Start ARN -> its shortest chain, for the chains that cross accounts and start on a
    principal its own account's findings give no chain (and that is no administrator)."""
    parts = sorted((p for p in parts if p.get("version") == VERSION), key=lambda p: p["account"])
    edges: dict[str, list[Edge]] = {}
    goal: dict[str, str] = {}
    local: set[str] = set()
    for part in parts:
        goal.update(part["goals"])
        local.update(part["local"])
        for src, out in part["edges"].items():
            edges.setdefault(src, []).extend(Edge(r, tuple(g), tuple(c)) for r, g, c in out)
    for src, out in _cross_edges(parts, now).items():
        edges.setdefault(src, []).extend(out)
    found = chains_to(goal, {k: tuple(sorted(v)) for k, v in edges.items()})
    return {
        start: chain for start, chain in sorted(found.items())
        if start not in local and len({principal_account(a) for a in chain.path}) > 1
    }


def path_line(chain: Chain) -> str:
    """`user/ci (111122223333) → role/deploy (444455556666) → role/admin (444455556666)`"""
    return " → ".join(f"{short_name(a)} ({principal_account(a)})" for a in chain.path)


def results(parts: Sequence[Mapping[str, Any]], now: datetime) -> list[Result]:
    """One failed privilege-escalation Result per principal with a cross-account chain."""
    owners = {p["arn"]: (p.get("owner"), p["kind"], p["name"])
              for part in parts for p in part.get("principals", ())}
    out = []
    for start, chain in join(parts, now).items():
        owner, kind, name = owners.get(start, (None, start.split(":")[5].split("/")[0], start.rsplit("/", 1)[-1]))
        line = path_line(chain)
        who = short_name(start)
        if chain.reaches == ADMIN:
            sentence = f"{who} can become administrator by assuming roles across accounts: {line}"
        else:
            method = catalogue.BY_NAME[chain.reaches].explanation
            sentence = f"{who} can assume roles across accounts, {line}, and the last one can {method}"
        if chain.conditions:
            sentence += f" — conditional: {'; '.join(chain.conditions)}"
        details: dict[str, Any] = {
            "principal_type": kind,
            "principal_name": name,
            "status": "exploitable",
            "path": [short_name(a) for a in chain.path],
            "path_arns": list(chain.path),
            "path_accounts": sorted({principal_account(a) for a in chain.path}),
            "path_reaches": chain.reaches,
            "explanation": sentence,
        }
        if chain.conditions:
            details["path_conditions"] = list(chain.conditions)
        out.append(Result(check=PRIVILEGE_ESCALATION_POLICY, account=principal_account(start),
                          resource=start, status=Status.FAIL, sub_key=CROSS_ACCOUNT,
                          details=details, owner=owner))
    return out
