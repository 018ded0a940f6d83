"""faye's import graph: no cycles, and the local stack and the emulator stay a wing of their own.

Every ``import`` of every module of ``faye_plugin`` counts, wherever it stands (module level, inside a
function, under ``TYPE_CHECKING``): a lazy import is still a dependency, and the cycle this test was
written against (``stack/airflow`` -> ``cli/pool`` -> ``cli/logs`` -> ``stack/manager``) was made of
lazy ones. The graph is read from the source (``ast``), so nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "faye_plugin"
ROOT = "faye_plugin"

#: (importer prefix, imported prefix): an edge from the first to the second is forbidden.
FORBIDDEN = [
    (f"{ROOT}.{wing}", f"{ROOT}.{upper}")
    for wing in ("stack", "emulator")
    for upper in ("cli", "operators", "dags", "groups", "triggers")
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The faye_plugin modules that ``name`` imports (a ``from pkg import sub`` names the submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        else:
            continue
        for dotted in targets:
            target = dotted
            while target and target not in known:  # `import a.b.c` of a non-module attribute path
                target = target.rpartition(".")[0]
            if target.startswith(ROOT) and target not in (ROOT, name):
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported(name, path, known) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return out


def test_the_graph_is_read() -> None:
    edges = graph()
    assert "faye_plugin.hooks.proxy" in edges["faye_plugin.operators.proxy"]
    assert "faye_plugin.stack.config" in edges["faye_plugin.cli._common"]


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


@pytest.mark.parametrize(("importer", "imported_prefix"), FORBIDDEN)
def test_stack_and_emulator_import_nothing_above_them(importer: str, imported_prefix: str) -> None:
    bad = sorted(
        f"{name} -> {target}"
        for name, targets in graph().items()
        if name == importer or name.startswith(f"{importer}.")
        for target in targets
        if target == imported_prefix or target.startswith(f"{imported_prefix}.")
    )
    assert bad == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]


def test_every_test_module_has_a_basename_of_its_own() -> None:
    # pytest imports test modules by basename here (no packages): two test_repair.py stopped collection
    names: dict[str, list[str]] = {}
    for path in (PACKAGE.parent / "tests").rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(PACKAGE.parent)))
    assert not {name: paths for name, paths in names.items() if len(paths) > 1}
