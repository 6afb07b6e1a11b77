"""The architecture rules of docs/architecture.md, checked over every import of both packages.

`secure_trainer` never imports `entrypoint`; no import circle crosses files (lazy imports
inside functions and TYPE_CHECKING blocks count too); every module sits in a package folder.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGES = ("entrypoint", "secure_trainer")


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in (REPO_ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = path
    return mods


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            graph[name].update(t for t in targets if t in mods and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root, edges in graph.items():
        if root in index:
            continue
        work = [(root, iter(sorted(edges)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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


def test_secure_trainer_never_imports_entrypoint() -> None:
    graph = _graph()
    wrong = sorted((m, t) for m, ts in graph.items() for t in ts
                   if m.startswith("secure_trainer") and t.startswith("entrypoint"))
    assert wrong == []


def test_no_import_cycle_crosses_files() -> None:
    assert _cycles(_graph()) == []


def test_cycle_check_sees_a_cycle() -> None:
    # The checker itself must find a planted circle, or the test above proves nothing.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_no_command_module_imports_the_cli() -> None:
    graph = _graph()
    assert sorted(m for m, ts in graph.items()
                  if m.startswith("entrypoint.commands") and "entrypoint.cli" in ts) == []


def test_devtools_are_never_imported_by_production_modules() -> None:
    graph = _graph()
    wrong = sorted(m for m, ts in graph.items()
                   if not m.startswith(("secure_trainer.devtools", "entrypoint.commands.dev_"))
                   and any(t.startswith("secure_trainer.devtools") for t in ts))
    assert wrong == []
