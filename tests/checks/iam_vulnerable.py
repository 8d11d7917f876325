"""BishopFox's iam-vulnerable as a Steward snapshot, and Steward's verdict on each case.

Shared by `bench/escalation_accuracy.py` (prints the figures) and
`tests/checks/test_iam_vulnerable.py` (keeps them from getting worse). The cases are data,
in `tests/fixtures/iam_vulnerable.json` (see its `_about`): every user, group and role
the upstream Terraform declares, its policies, groups and trust, and what it should be
judged: `escalation` (one of the named methods), `chain` (roles it can assume lead to an
administrator), `harmless`, or `admin` (already an administrator).

What counts, per case, from the results of a whole scan's evaluation (`checks.scan.evaluate`):

* escalation: `privilege-escalation-policy` fails with status `exploitable` and names one
  of the expected methods among its exploitable ones (or any, when none is named); for a
  user, a method reported on its group instead (`also_via_groups`) counts. Flagging the
  principal for some other method, or only as latent, is a miss: the path was not found.
* chain: `privilege-escalation-policy` fails with a `path` of roles.
* harmless: neither `privilege-escalation-policy` nor `admin-policy` fails (any failure,
  latent or not, is a false alarm: somebody gets a DM about it).
* admin: `admin-policy` fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checks import escalation_methods as catalogue
from checks.model import AccountSnapshot, ManagedPolicy, PolicyRef, Result
from checks.rules.policies import ADMIN_POLICY, PRIVILEGE_ESCALATION_POLICY
from checks.scan import evaluate
from tests.factories import ACCOUNT, NOW, ctx, group, role, snapshot, user

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "iam_vulnerable.json"

ESCALATION, CHAIN, HARMLESS, ADMIN = "escalation", "chain", "harmless", "admin"


def load(path: Path = FIXTURE) -> dict[str, Any]:
    return json.loads(path.read_text())


def build_snapshot(data: Mapping[str, Any]) -> AccountSnapshot:
    """One account holding every module, as `checks.collect` would read it."""
    assert data["account"] == ACCOUNT
    managed = [
        ManagedPolicy(name=p["name"], arn=f"arn:aws:iam::{ACCOUNT}:policy/{p['name']}",
                      document=p["document"], attachment_count=1)
        for p in data["policies"]
    ] + [
        ManagedPolicy(name=p["name"], arn=p["arn"], document=p["document"], attachment_count=1)
        for p in data["aws_managed_policies"]
    ]
    by_name = {p.name: p for p in managed}
    by_arn = {p.arn: p for p in managed}

    def refs(names: Sequence[str]) -> tuple[PolicyRef, ...]:
        found = [by_arn[n] if n.startswith("arn:") else by_name[n] for n in names]
        return tuple(PolicyRef(name=p.name, arn=p.arn) for p in found)

    return snapshot(
        users=[user(u["name"], attached_policies=refs(u["attached"]), groups=tuple(u.get("groups", ())))
               for u in data["users"]],
        groups=[group(g["name"], attached_policies=refs(g["attached"])) for g in data["groups"]],
        roles=[role(r["name"], trust=r["trust"], attached_policies=refs(r["attached"]),
                    instance_profiles=tuple(r.get("instance_profiles", ())))
               for r in data["roles"]],
        policies=managed,
        instance_profiles_known=True,
    )


@dataclass(frozen=True)
class Outcome:
    principal: str  # user/name, group/name, role/name
    module: str
    expected: str
    methods: tuple[str, ...]  # the expected ones (any of them), empty: any
    right: bool
    got: str  # what Steward said, in one line
    flagged: bool = False  # privilege-escalation-policy failed on it
    admin_flagged: bool = False  # admin-policy failed on it
    # Found only through a method that takes over an existing resource (runs-as), which
    # Steward does not inventory: a role the service may assume (an instance profile for
    # EC2) stands in for it.
    stand_in: bool = False

    @property
    def name(self) -> str:
        return self.principal


@dataclass(frozen=True)
class Measure:
    outcomes: tuple[Outcome, ...]
    seconds: float  # the evaluation of every check on the snapshot, best of the runs
    principals: int

    def of(self, expected: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.expected == expected]

    @property
    def paths(self) -> list[Outcome]:
        """The cases that hold an escalation: by a method or by a chain."""
        return self.of(ESCALATION) + self.of(CHAIN)


def _got(esc: Result | None, admin: bool) -> str:
    parts = []
    if esc is not None and esc.failed:
        d = esc.details
        exploitable = [m["name"] for m in d.get("methods", ()) if m["status"] == "exploitable"]
        latent = [m["name"] for m in d.get("methods", ()) if m["status"] == "latent"]
        if exploitable:
            every = len(d.get("escalation_methods", exploitable))
            shown = ", ".join(exploitable[:4])
            parts.append("methods " + (f"{shown}… ({every} in all)" if every > 4 else shown))
        if latent:
            notes = {m["name"]: m.get("note", "") for m in d.get("methods", ())}
            parts.append("latent " + ", ".join(f"{n} ({notes[n]})" for n in latent))
        if d.get("path"):
            parts.append("chain " + " → ".join(d["path"]) + f" ⇒ {d['path_reaches']}")
        if d.get("path_conditions") or (d.get("conditional") and exploitable):
            parts.append("conditional")
    elif esc is not None and esc.details.get("also_via_groups"):
        parts.append("via group " + ", ".join(esc.details["also_via_groups"]))
    said = [f"{PRIVILEGE_ESCALATION_POLICY}: " + "; ".join(parts)] if parts else []
    if admin:
        said.append(f"{ADMIN_POLICY}: `*` on `*`")
    return " | ".join(said) or "quiet"


def judge(case: Mapping[str, Any], esc: Result | None, group_results: Sequence[Result],
          admin: bool) -> Outcome:
    expected = case["expected"]
    wanted = tuple(case.get("methods", ()))
    got = _got(esc, admin)
    fired = esc is not None and esc.failed
    details = esc.details if esc is not None else {}
    exploitable = {m["name"] for m in details.get("methods", ()) if m["status"] == "exploitable"}
    via_group = {m["name"] for r in group_results if r.failed
                 for m in r.details.get("methods", ()) if m["status"] == "exploitable"}
    if via_group and not fired:
        got = f"{got}; via group: methods {', '.join(sorted(via_group))}" if got != "quiet" else \
            f"via group: methods {', '.join(sorted(via_group))}"
    held = exploitable | via_group
    if expected == ESCALATION:
        right = bool(held & set(wanted)) if wanted else bool(held) or bool(fired and details.get("path"))
    elif expected == CHAIN:
        right = fired and bool(details.get("path"))
    elif expected == HARMLESS:
        right = not fired and not admin
    elif expected == ADMIN:
        right = admin
    else:
        raise ValueError(f"unknown expectation {expected!r}")
    matched = (held & set(wanted)) if wanted else held
    stand_in = bool(right and expected == ESCALATION and matched) and all(
        catalogue.BY_NAME[n].requires.startswith("runs-as:") for n in matched
    )
    return Outcome(case["principal"], case["module"], expected, wanted, right, got, fired, admin,
                   stand_in)


def measure(data: Mapping[str, Any] | None = None, *, repeat: int = 1) -> Measure:
    """Build the snapshot, run every check of the catalogue on it, judge every case."""
    data = data or load()
    snap = build_snapshot(data)
    best = float("inf")
    results: list[Result] = []
    for _ in range(max(1, repeat)):
        fresh = build_snapshot(data) if _ else snap  # a new snapshot: no cached analysis
        started = time.perf_counter()
        results = evaluate(fresh, ctx())
        best = min(best, time.perf_counter() - started)
        snap = fresh
    esc = {r.resource: r for r in results if r.check == PRIVILEGE_ESCALATION_POLICY}
    admin = {r.resource for r in results if r.check == ADMIN_POLICY and r.failed}
    groups_of = {f"arn:aws:iam::{ACCOUNT}:user/{u.name}": u.groups for u in snap.users}
    outcomes = []
    for case in data["cases"]:
        arn = f"arn:aws:iam::{ACCOUNT}:{case['principal']}"
        group_results = [esc[f"arn:aws:iam::{ACCOUNT}:group/{g}"] for g in groups_of.get(arn, ())
                         if f"arn:aws:iam::{ACCOUNT}:group/{g}" in esc]
        outcomes.append(judge(case, esc.get(arn), group_results, arn in admin))
    principals = len(snap.users) + len(snap.groups) + len(snap.roles)
    return Measure(tuple(outcomes), best, principals)


__all__ = ["ADMIN", "CHAIN", "ESCALATION", "HARMLESS", "NOW", "Measure", "Outcome",
           "build_snapshot", "load", "measure"]
