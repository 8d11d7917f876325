"""Right-sizing a policy from real usage (pure): the same document without what went unused.

`propose(document, view)` rewrites only the `Action` of Allow statements and keeps every
other element as written (Sid, Resource/NotResource, Condition), so resource scoping and
conditions stay exactly as they were:

* Deny statements are kept untouched (a Deny only takes away; removing one would grant);
* `svc:…` patterns of a service nobody holding the policy used in the window are removed;
* an exact action (`s3:DeleteBucket`) of a service tracked at action level is removed when
  AWS tracked it and it went unused; a wildcard within a used service (`lambda:*`) is kept
  (AWS tracks only some actions, so an untracked one may be in use);
* `*` becomes `svc:*` for each used service;
* an Allow with `NotAction` becomes `Action: [svc:* …]` for the used services it fully
  allows; it is kept as written when a used service is only partly excluded (narrowing it
  would need `NotAction` and `Action` at once, which IAM does not have);
* patterns whose service part is itself a wildcard (`s*:Get*`) are kept.

What "used" means across principals (`UsageView`): a policy shared by several principals
keeps what *any* of them used; a service is unused only when AWS listed it for every one of
them and none used it since the cutoff; anything AWS did not report is kept.

`never_grants_more(original, proposed)` checks the result statement by statement, and
through `checks.effective` over its action universe; `propose` refuses to return a
proposal that fails it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from checks.policy import ActionSet, has_wildcard, load_document, pattern_covers
from checks.usage import PrincipalUsage

State = Literal["used", "unused", "unknown"]


@dataclass(frozen=True)
class UsageView:
    """The usage of every principal holding one policy, judged against `cutoff`."""

    principals: tuple[PrincipalUsage, ...]
    cutoff: datetime

    def service(self, namespace: str) -> State:
        namespace = namespace.lower()
        listed = 0
        for p in self.principals:
            s = p.by_namespace.get(namespace)
            if s is None:
                continue
            listed += 1
            if s.used_since(self.cutoff):
                return "used"
        return "unused" if self.principals and listed == len(self.principals) else "unknown"

    def action(self, action: str) -> State:
        namespace, _, _ = action.lower().partition(":")
        state = self.service(namespace)
        if state != "used":
            return state
        tracked_everywhere = True
        for p in self.principals:
            s = p.by_namespace.get(namespace)
            used = s.actions_used_since(self.cutoff) if s is not None else None
            if used is None:
                tracked_everywhere = False
                continue
            if action.lower() in used:
                return "used"
            if action.lower() not in {a.name.lower() for a in s.actions or ()}:
                tracked_everywhere = False
        return "unused" if tracked_everywhere else "unknown"

    def used_services(self) -> list[str]:
        names = {s.namespace.lower() for p in self.principals for s in p.services}
        return sorted(n for n in names if self.service(n) == "used")


@dataclass(frozen=True)
class Proposal:
    document: dict[str, Any]
    removed: tuple[str, ...]  # patterns taken out (as written)
    kept: tuple[str, ...]  # Allow patterns the new document keeps
    narrowed: tuple[str, ...] = ()  # `*` or NotAction statements turned into service lists
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.removed or self.narrowed)

    @property
    def empty(self) -> bool:
        """Nothing is allowed any more: the policy could go altogether (a person decides)."""
        return not any(_effect(s) == "allow" for s in _statements(self.document))

    @property
    def digest(self) -> str:
        return digest(self.document)

    def summary(self, limit: int = 8) -> str:
        """`removes s3:*, dynamodb:*; keeps lambda:InvokeFunction`."""
        parts = []
        gone = [*self.removed, *(f"{n} (narrowed)" for n in self.narrowed)]
        if gone:
            parts.append("removes " + _listed(gone, limit))
        if self.kept:
            parts.append("keeps " + _listed(self.kept, limit))
        return "; ".join(parts) or "no change"


def _listed(items: Sequence[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def digest(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _statements(document: Mapping[str, Any]) -> list[Any]:
    raw = document.get("Statement", [])
    return [raw] if isinstance(raw, Mapping) else list(raw)


def _effect(statement: Any) -> str:
    return str(statement.get("Effect", "")).lower() if isinstance(statement, Mapping) else ""


def _strings(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [v for v in value or () if isinstance(v, str)]


def _service_of(pattern: str) -> str | None:
    service, colon, _ = pattern.partition(":")
    if not colon or has_wildcard(service):
        return None
    return service.lower()


def _all(pattern: str) -> bool:
    return pattern.strip() in ("*", "*:*")


class UnsafeProposal(ValueError):
    """A rewrite that would grant something the original did not (a bug: never shown)."""


def propose(document: Any, view: UsageView) -> Proposal:
    """The right-sized document for `view`. ValueError for an unreadable document."""
    loaded = load_document(document)
    if loaded is None or "Statement" not in loaded:
        raise ValueError("unreadable policy document")
    original = copy.deepcopy(dict(loaded))
    removed: list[str] = []
    narrowed: list[str] = []
    notes: list[str] = []
    out_statements: list[Any] = []
    used = view.used_services()
    for statement in _statements(original):
        if _effect(statement) != "allow":
            out_statements.append(statement)  # Deny (or malformed): as written
            continue
        if "NotAction" in statement:
            replaced = _narrow_not_action(statement, used)
            if replaced is None:
                notes.append("a NotAction statement is kept as written (a used service is only partly excluded)")
                out_statements.append(statement)
            else:
                narrowed.append("NotAction " + ",".join(_strings(statement["NotAction"])))
                if replaced.get("Action"):
                    out_statements.append(replaced)
            continue
        new_actions: list[str] = []
        for pattern in _strings(statement.get("Action")):
            if _all(pattern):
                if used:
                    narrowed.append(pattern)
                    new_actions.extend(f"{ns}:*" for ns in used)
                else:
                    removed.append(pattern)
                continue
            service = _service_of(pattern)
            if service is None:
                new_actions.append(pattern)
                continue
            state = view.service(service)
            if state == "unused" or (state == "used" and not has_wildcard(pattern) and view.action(pattern) == "unused"):
                removed.append(pattern)
            else:
                new_actions.append(pattern)
        if not new_actions:
            continue
        rewritten = dict(statement)
        deduped = list(dict.fromkeys(new_actions))
        rewritten["Action"] = deduped[0] if len(deduped) == 1 and isinstance(statement.get("Action"), str) else deduped
        out_statements.append(rewritten)
    proposed = {k: v for k, v in original.items() if k != "Statement"}
    proposed["Statement"] = out_statements
    kept = list(dict.fromkeys(p for s in out_statements if _effect(s) == "allow"
                              for p in _strings(s.get("Action") or s.get("NotAction"))))
    problems = never_grants_more(original, proposed)
    if problems:
        raise UnsafeProposal("; ".join(problems))
    return Proposal(proposed, tuple(dict.fromkeys(removed)), tuple(kept), tuple(narrowed), tuple(notes))


def _narrow_not_action(statement: Mapping[str, Any], used: Iterable[str]) -> dict[str, Any] | None:
    excluded = ActionSet(tuple(p.lower() for p in _strings(statement["NotAction"])), negated=True)
    keep: list[str] = []
    for ns in used:
        if excluded.covers_service(ns):
            keep.append(f"{ns}:*")
        elif excluded.touches_service(ns):
            return None  # partly excluded: cannot be said with Action alone
    rewritten = {k: v for k, v in statement.items() if k != "NotAction"}
    rewritten["Action"] = keep
    return rewritten


def never_grants_more(original: Mapping[str, Any], proposed: Mapping[str, Any]) -> list[str]:
    """Problems (empty: none): every Allow of `proposed` must match an Allow of `original`
    with the same resources and conditions whose actions cover its actions; every Deny of
    `original` must still be there; and `checks.effective` must find no action of its
    universe allowed by `proposed` and not by `original`."""
    from checks.effective import compile_document

    problems = []
    before = _statements(original)
    after = _statements(proposed)
    for deny in (s for s in before if _effect(s) != "allow"):
        if deny not in after:
            problems.append(f"a Deny statement was dropped: {json.dumps(deny)[:120]}")
    for s in (s for s in after if _effect(s) == "allow"):
        if "NotAction" in s:
            if s not in before:
                problems.append("a NotAction statement changed")
            continue
        scope = {k: v for k, v in s.items() if k not in ("Action", "Sid")}
        sources = [o for o in before if _effect(o) == "allow"
                   and {k: v for k, v in o.items() if k not in ("Action", "NotAction", "Sid")} == scope]
        for pattern in _strings(s.get("Action")):
            if not any(_covers(o, pattern) for o in sources):
                problems.append(f"{pattern} is not granted on those resources by the original")
    old, new = compile_document(original, "original"), compile_document(proposed, "proposed")
    extra = sorted(set(new.allows) - set(old.allows))
    if extra:
        problems.append(f"would allow {', '.join(extra[:5])}")
    return problems


def _covers(original_statement: Mapping[str, Any], pattern: str) -> bool:
    if "NotAction" in original_statement:
        excluded = ActionSet(tuple(p.lower() for p in _strings(original_statement["NotAction"])), negated=True)
        service = _service_of(pattern)
        if service is not None and pattern.lower() == f"{service}:*":
            return excluded.covers_service(service)
        return not has_wildcard(pattern) and excluded.matches(pattern)
    return any(pattern_covers(p, pattern) for p in _strings(original_statement.get("Action")))
