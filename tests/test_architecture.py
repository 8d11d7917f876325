"""Layer rules (DESIGN.md §1), enforced on the source text so a violation cannot hide."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def python_files(*parts: str):
    base = ROOT.joinpath(*parts)
    return [base] if base.suffix == ".py" else sorted(base.rglob("*.py"))


def test_checks_never_import_bot():
    offenders = [str(p) for p in python_files("checks") if "bot" in top(imported_modules(p))]
    assert offenders == []


def test_rules_and_policy_analysis_never_import_boto3():
    pure = [*python_files("checks", "rules"), *python_files("checks", "policy.py"),
            *python_files("checks", "model.py"), *python_files("checks", "catalog.py")]
    offenders = [
        str(p) for p in pure if top(imported_modules(p)) & {"boto3", "botocore"}
    ]
    assert offenders == []


def test_only_the_services_combine_aws_and_the_database():
    offenders = []
    for path in python_files("bot"):
        mods = imported_modules(path)
        uses_db = any(m.startswith("bot.db") for m in mods)
        uses_aws = any(m.startswith(("checks.collect", "checks.accounts", "checks.scan", "checks.remediate")) for m in mods)
        if uses_db and uses_aws and path.parent.name != "services":
            offenders.append(str(path))
    assert offenders == []
