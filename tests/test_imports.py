"""The package's module import graph: no cycle, and the problems sit below the search. Every
``import`` / ``from ... import`` of every module of ``autocompress/`` counts, at the top or
inside functions, absolute or relative.

Only ``if TYPE_CHECKING:`` blocks are skipped (they never run). An import of ``a.b.c`` is an
edge to ``a.b.c`` only, not to the packages above it: a package ``__init__`` re-exporting its
own submodules is not a cycle worth failing on.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "autocompress"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere in its file."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()

    def resolve(target: str) -> None:
        while target and target not in known:  # ``import a.b.func_or_class`` -> a.b
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                resolve(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                sub = f"{module}.{alias.name}"
                resolve(sub if sub in known else module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``a -> b -> ... -> a``) per strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_cycle_in(graph, comp) for comp in components]


def _cycle_in(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first)."""
    members, start = set(comp), comp[0]
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in component {comp}")


def _describe(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(c) for c in cycles)


def test_cycle_finder_finds_and_prints_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_relative_and_function_level_imports_are_edges(tmp_path: Path) -> None:
    src = tmp_path / "mod.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..other import thing\n"
        "if TYPE_CHECKING:\n    import pkg.typing_only\n"
        "def f():\n    import pkg.sub.lazy\n    from pkg.sub.helper import g\n"
    )
    known = {"pkg", "pkg.sub", "pkg.sub.mod", "pkg.sub.sibling", "pkg.other", "pkg.sub.lazy", "pkg.sub.helper",
             "pkg.typing_only"}  # fmt: skip
    assert _imports("pkg.sub.mod", src, known) == {
        "pkg.sub.sibling",
        "pkg.other",
        "pkg.sub.lazy",
        "pkg.sub.helper",
    }
    assert "autocompress.hardware.targets" in import_graph()["autocompress.cli"]  # imported inside a command


def test_hardware_modules_import_no_cycle() -> None:
    graph = import_graph()
    hardware = {m: {d for d in deps if d.startswith("autocompress.hardware.")}
                for m, deps in graph.items() if m.startswith("autocompress.hardware.")}  # fmt: skip
    cycles = find_cycles(hardware)
    assert not cycles, f"import cycles among autocompress.hardware modules:\n{_describe(cycles)}"


def test_package_imports_no_cycle() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, f"import cycles in autocompress:\n{_describe(cycles)}"


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module ``start`` imports, directly or through others, each with the module that
    imports it on one shortest path (breadth-first), so a violation can be printed as a chain."""
    via: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w != start and w not in via:
                    via[w] = v
                    nxt.append(w)
        frontier = nxt
    return via


def _chain(via: dict[str, str], start: str, end: str) -> str:
    path = [end]
    while path[-1] != start:
        path.append(via[path[-1]])
    return " -> ".join(reversed(path))


# What sits above the problems: the search and what reads its results (README "Code layout").
ABOVE_PROBLEMS = ("autocompress.search", "autocompress.cli", "autocompress.results", "autocompress.export",
                  "autocompress.app")  # fmt: skip


def problem_violations(graph: dict[str, set[str]]) -> list[str]:
    """Chains by which a module of ``autocompress.problems`` reaches a module above it."""
    found = []
    for name in sorted(graph):
        if name != "autocompress.problems" and not name.startswith("autocompress.problems."):
            continue
        via = reachable(graph, name)
        for target in sorted(via):
            if any(target == top or target.startswith(top + ".") for top in ABOVE_PROBLEMS):
                found.append(_chain(via, name, target))
    return found


def test_the_violation_finder_follows_imports_through_other_modules() -> None:
    graph = {"autocompress.problems.p": {"autocompress.space"}, "autocompress.space": {"autocompress.search.loop"},
             "autocompress.search.loop": {"autocompress.problems.p"}}  # fmt: skip
    assert problem_violations(graph) == [
        "autocompress.problems.p -> autocompress.space -> autocompress.search.loop"
    ]
    clean = {"autocompress.problems.p": {"autocompress.space"}, "autocompress.space": set()}
    assert problem_violations(clean) == []


def test_problems_never_import_the_search_or_what_reads_its_results() -> None:
    """README: problems sit below the search and never import it, at the top or in a function,
    directly or through another module (a problem that imported the search would make the search
    depend on itself through the problem it asks)."""
    found = problem_violations(import_graph())
    assert not found, "a problem imports the search (or what sits above it):\n" + "\n".join(found)


def test_every_module_states_its_purpose_in_its_first_line() -> None:
    """A module's docstring opens with the one thing it is for (STYLE.md: one purpose a module)."""
    missing = [name for name, path in _modules().items()
               if not (ast.get_docstring(ast.parse(path.read_text())) or "").strip().splitlines()[:1]]  # fmt: skip
    assert not missing, f"modules without a docstring: {missing}"
