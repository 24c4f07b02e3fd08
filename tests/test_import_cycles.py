"""No import cycles anywhere in ``llmos_tf`` (issue #16, item 3).

The test reads every module of the package with :mod:`ast` (nothing is imported,
so it runs in well under a second and without TensorFlow), builds the graph
"module A imports module B" and fails on every strongly connected component of
more than one module (Tarjan's algorithm), or a module importing itself.

What counts as an edge
----------------------
Every ``import`` and ``from ... import`` statement of an ``llmos_tf`` module,
wherever it stands: at module level, inside functions and methods, inside
``if``/``try`` blocks. A lazy import inside a function is still a dependency:
it only hides a cycle from the interpreter, not from the reader, and the day
someone hoists it to the top of the file the package stops importing. Design
rule: dependencies point one way (see DESIGN.md, "Target architecture").

* ``import a.b.c`` and ``from a.b import c`` (``c`` a submodule) point at
  ``a.b.c``; ``from a.b import name`` (``name`` not a submodule) points at
  ``a.b``. Relative imports are resolved against the importing module.
* The implicit import of parent packages (importing ``a.b.c`` first runs
  ``a/__init__`` and ``a/b/__init__``) is not an edge: every submodule needs
  its package, so such edges would only say "this is a package". Package
  ``__init__`` files keep their own explicit imports as edges (the lazy
  ``__getattr__`` facades of ``llmos_tf`` and ``llmos_tf.serving`` included).
* Imports of anything outside ``llmos_tf`` are ignored.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "llmos_tf"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def module_name(path: Path, root: Path = ROOT) -> str:
    """``llmos_tf/training/trainer.py`` -> ``llmos_tf.training.trainer``; a package's
    ``__init__.py`` is the package itself."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _resolve_relative(importer: str, is_package: bool, level: int, module: str | None) -> str:
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(name: str, path: Path, modules: set[str]) -> dict[str, int]:
    """The package modules ``name`` imports anywhere in its file -> first line number."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        # The deepest package module the dotted name reaches.
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target:
            found.setdefault(target, line)  # a module importing itself is an edge (a cycle) too

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(name, is_package, node.level, node.module)
                    if node.level else node.module or "")
            if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in modules else base, node.lineno)
    return found


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """module -> {imported package module: line of its first import}."""
    files = discover(root)
    names = set(files)
    return {name: imports_of(name, path, names) for name, path in files.items()}


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative, so depth is no issue)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Components that are cycles: two modules or more, or a module importing itself."""
    return [c for c in strongly_connected(graph) if len(c) > 1 or c[0] in graph[c[0]]]


def describe(component: list[str], graph: dict[str, dict[str, int]]) -> str:
    members = set(component)
    edges = [f"    {a} -> {b} (line {graph[a][b]})"
             for a in component for b in sorted(graph[a]) if b in members]
    return f"  {len(component)} modules: {', '.join(component)}\n" + "\n".join(edges)


# --- the checker checks itself on small graphs -------------------------------------------------

def test_tarjan_finds_cycles_and_only_cycles():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1, "d": 1}, "d": {}, "e": {"e": 1}, "f": {"d": 1}}
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["e"]]
    assert cycles({"a": {"b": 1}, "b": {}, "c": {"a": 1, "b": 1}}) == []


def test_lazy_and_relative_imports_are_edges(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "one.py").write_text(
        "import os\n"
        "def f():\n"
        "    from llmos_tf.sub import two\n"          # lazy, in a function
        "    return two\n")
    (pkg / "sub" / "two.py").write_text(
        "from . import three\n"                      # relative, a submodule
        "from .one import f\n")                      # relative, a name of a module
    (pkg / "sub" / "three.py").write_text(
        "from llmos_tf.sub.one import f as g\n"
        "import llmos_tf.sub\n")                     # the package: not a cycle by itself
    graph = import_graph(pkg)
    assert graph["llmos_tf.sub.one"] == {"llmos_tf.sub.two": 3}
    assert graph["llmos_tf.sub.two"] == {"llmos_tf.sub.three": 1, "llmos_tf.sub.one": 2}
    assert graph["llmos_tf.sub.three"] == {"llmos_tf.sub.one": 1, "llmos_tf.sub": 2}
    assert cycles(graph) == [["llmos_tf.sub.one", "llmos_tf.sub.three", "llmos_tf.sub.two"]]


# --- the package ---------------------------------------------------------------------------------

def test_graph_covers_the_package():
    graph = import_graph()
    assert "llmos_tf.training.trainer" in graph and "llmos_tf.cli" in graph
    assert "llmos_tf.config" in graph["llmos_tf.training.trainer"]  # edges are found at all
    assert len(graph) == len(list(ROOT.rglob("*.py")))


def test_no_import_cycles_in_llmos_tf():
    graph = import_graph()
    found = cycles(graph)
    if found:
        pytest.fail("import cycles in llmos_tf (every import counts, lazy ones inside functions too):\n"
                    + "\n".join(describe(c, graph) for c in found))
