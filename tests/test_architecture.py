"""Layer rules (docs/architecture.md), enforced on the source text so a violation cannot hide."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path, *, with_names: bool = False) -> set[str]:
    """Every module the file imports, at the top, inside a function or under `TYPE_CHECKING`
    (a lazy or type-only import is still a dependency a reader must follow); `with_names`
    adds `package.name` for `from package import name` (the graph keeps it when it is a
    module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)  # importing from a package runs its __init__ first
            if with_names:
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
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
        uses_aws = any(m.startswith(("checks.aws_calls", "checks.collect", "checks.accounts", "checks.scan", "checks.remediate")) for m in mods)
        if uses_db and uses_aws and path.parent.name != "services":
            offenders.append(str(path))
    assert offenders == []


# --- the import graph ----------------------------------------------------------------------

PACKAGES = ("bot", "checks", "sandbox")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's __init__ counts as a module)."""
    modules = {module_name(p): p for package in PACKAGES for p in python_files(package)}

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {owner(m) for m in imported_modules(path, with_names=True)}
        graph[name] = {t for t in targets if t and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_is_acyclic():
    """A cycle means no module in it can be read, tested or moved alone (lazy and type-only
    imports count)."""
    assert cycles(import_graph()) == []


def test_block_builders_never_import_services():
    """Block Kit builders are pure: they render values, they never fetch them."""
    graph = import_graph()
    offenders = {
        module: sorted(t for t in targets if t.startswith("bot.services"))
        for module, targets in graph.items()
        if module.startswith("bot.slack.blocks")
    }
    assert {m: t for m, t in offenders.items() if t} == {}


def test_only_the_demo_command_imports_the_sandbox():
    """The sandbox (local Slack, demo) is installed but is not part of the product."""
    graph = import_graph()
    importers = sorted(
        module for module, targets in graph.items()
        if not module.startswith("sandbox") and any(t.startswith("sandbox") for t in targets)
    )
    assert importers == ["bot.cli.demo"]


def test_the_core_is_pure():
    """bot.core holds rules and values: no database, no Slack client, no AWS client."""
    graph = import_graph()
    offenders = {
        module: sorted(t for t in targets if t.startswith(("bot.db", "bot.slack", "bot.services", "bot.run", "bot.cli.main")))
        for module, targets in graph.items()
        if module.startswith("bot.core")
    }
    assert {m: t for m, t in offenders.items() if t} == {}
