"""How well Steward judges privilege escalation on BishopFox's iam-vulnerable (prints figures).

    python bench/escalation_accuracy.py [--repeat 5] [--only-wrong] [--json]

iam-vulnerable (https://github.com/BishopFox/iam-vulnerable) is a deliberately vulnerable
AWS account in Terraform: each module a user and a role holding one known escalation path
(privesc1..21 and ten newer ones), an assume-role chain, an SRE group, and tool-testing
cases that naive tools get wrong both ways (fn*: escalations they miss; fp*: harmless
principals they flag). `tests/fixtures/iam_vulnerable.json` holds its principals
translated into Steward's snapshot terms, each with the verdict it should get.

This builds that account as one `AccountSnapshot` (no AWS, no moto), runs every check of
the catalogue on it the way a scan does (`checks.scan.evaluate`), and prints per case what
was expected and what Steward said, then the totals: escalation cases found (the
`privilege-escalation-policy` finding names the path's method, or a chain of roles),
harmless principals kept quiet (no `privilege-escalation-policy` and no `admin-policy`
finding), with every miss and false alarm and its reason, and the time the evaluation
took. `tests/checks/test_iam_vulnerable.py` keeps these figures from getting worse.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.checks.iam_vulnerable import (  # noqa: E402
    ADMIN,
    CHAIN,
    ESCALATION,
    HARMLESS,
    load,
    measure,
)
from tests.checks.test_iam_vulnerable import KNOWN_WRONG  # noqa: E402


def _pct(n: int, d: int) -> str:
    return f"{100 * n / d:.0f} %" if d else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="evaluation runs; the best is shown")
    parser.add_argument("--only-wrong", action="store_true", help="list only misses and false alarms")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    data = load()
    m = measure(data, repeat=args.repeat)
    total = time.perf_counter() - started

    paths = m.paths
    found = [o for o in paths if o.right]
    harmless = m.of(HARMLESS)
    quiet = [o for o in harmless if o.right]
    admins = m.of(ADMIN)
    wrong = [o for o in m.outcomes if not o.right]
    modules = sorted({o.module for o in paths})
    modules_found = [mod for mod in modules if all(o.right for o in paths if o.module == mod)]

    if args.json:
        print(json.dumps({
            "upstream": data["upstream"],
            "principals": m.principals,
            "escalation_cases": len(paths), "found": len(found),
            "escalation_modules": len(modules), "modules_found": len(modules_found),
            "harmless": len(harmless), "quiet": len(quiet),
            "found_on_stand_in": sum(o.stand_in for o in paths),
            "admins": len(admins), "admins_flagged": sum(o.right for o in admins),
            "wrong": [{"principal": o.principal, "expected": o.expected, "got": o.got,
                       "reason": KNOWN_WRONG.get(o.principal, "new: not in KNOWN_WRONG")}
                      for o in wrong],
            "evaluate_seconds": round(m.seconds, 4), "total_seconds": round(total, 3),
        }, indent=2))
        return 0

    print(f"iam-vulnerable @ {data['upstream']['commit'][:7]}: {m.principals} principals, "
          f"{len(m.outcomes)} cases\n")
    width = max(len(o.principal) for o in m.outcomes)
    for o in m.outcomes:
        if args.only_wrong and o.right:
            continue
        mark = "ok  " if o.right else ("MISS" if o.expected in (ESCALATION, CHAIN, ADMIN) else "FALSE")
        want = o.expected + (f" ({' | '.join(o.methods)})" if o.methods else "")
        print(f"{mark:5} {o.principal:{width}}  expected {want}\n{'':5} {'':{width}}  got      {o.got}")
    print()
    print(f"escalation paths found:     {len(modules_found)} of {len(modules)} modules "
          f"({len(found)} of {len(paths)} principals holding them, {_pct(len(found), len(paths))})")
    print(f"  by a method:              {sum(o.right for o in m.of(ESCALATION))} of {len(m.of(ESCALATION))}")
    print(f"  by a chain of roles:      {sum(o.right for o in m.of(CHAIN))} of {len(m.of(CHAIN))}")
    stand_in = [o for o in paths if o.stand_in]
    print(f"  on a stand-in resource:   {len(stand_in)} (a method taking over a function, endpoint, "
          f"notebook, stack or instance that Steward does not inventory)")
    print(f"harmless principals quiet:  {len(quiet)} of {len(harmless)} "
          f"(false alarms: {len(harmless) - len(quiet)})")
    esc_quiet = sum(1 for o in harmless if not o.flagged)
    print(f"  privilege-escalation-policy alone: {esc_quiet} of {len(harmless)} quiet")
    print(f"administrators flagged:     {sum(o.right for o in admins)} of {len(admins)} (admin-policy)")
    if wrong:
        print("\nmisses and false alarms:")
        for o in wrong:
            reason = KNOWN_WRONG.get(o.principal, "NEW — not in KNOWN_WRONG of tests/checks/test_iam_vulnerable.py")
            print(f"  {o.principal}: expected {o.expected}, got {o.got} — {reason}")
    print(f"\nevaluate (every check, {m.principals} principals): {m.seconds * 1000:.1f} ms "
          f"(best of {args.repeat}); whole run {total:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
