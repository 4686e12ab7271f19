"""No import cycles: the modules of python/mimocorb2 and of rust/src depend in one direction.

The graphs are computed from the source text: Python ``import`` statements anywhere in a
module (also inside functions, which run later but still tie the modules together), except
those under ``if TYPE_CHECKING:``; Rust ``crate::<module>`` paths outside comments.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / "python"
PACKAGE = PYTHON / "mimocorb2"
RUST = ROOT / "rust" / "src"


def _python_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (``.pyi``: native ones)."""
    modules: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi"):
            continue
        parts = list(path.relative_to(PYTHON).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules.setdefault(".".join(parts), path)
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that module ``name`` imports."""
    package = name.split(".") if path.stem == "__init__" else name.split(".")[:-1]
    found: set[str] = set()

    def visit(nodes: Iterable[ast.AST]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    found.add(sub if sub in modules else module)
            visit(ast.iter_child_nodes(node))

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return {m for m in found if m in modules and m != name}


def _rust_modules() -> dict[str, set[str]]:
    """Module -> the modules of the crate it names (``crate::x``), for rust/src/*.rs."""
    files = {p.stem: p for p in RUST.glob("*.rs") if p.stem != "lib"}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        used: set[str] = set()
        for line in path.read_text(encoding="utf-8").splitlines():
            code = line.split("//", 1)[0]
            used.update(m for m in re.findall(r"\bcrate::(\w+)", code) if m in files)
        graph[name] = used - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
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
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
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


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_python_package_has_no_import_cycle():
    modules = _python_modules()
    assert "mimocorb2._core" in modules and "mimocorb2.functions.exporters" in modules
    graph = {name: _imported(name, path, modules) for name, path in modules.items()}
    assert "mimocorb2._setup_validate" in graph["mimocorb2._setup"]  # the graph sees imports
    assert _cycles(graph) == []


def test_rust_modules_have_no_use_cycle():
    graph = _rust_modules()
    assert "wait" in graph["token_queue"]
    assert _cycles(graph) == []
