"""The shape of the code: no import cycle, small modules, documented public functions, no copied blocks.

The import graph is read from the source with ``ast`` (nothing is imported): every ``import`` and
``from ... import`` anywhere in a module of ``mflib`` or ``autograder`` -- function-level and
``if TYPE_CHECKING`` imports included -- is an edge to the project module it names (``from pkg import
name`` points at ``pkg.name`` when that is a module, else at ``pkg``).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("mflib", "autograder")
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    """``{dotted name: path}`` of every module of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """Project modules imported anywhere in module ``name``."""
    is_package = path.name == "__init__.py"
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # import a.b.c of a non-module c: the module a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
    return edges


def import_graph() -> dict[str, set[str]]:
    """``{module: project modules it imports}``."""
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _path_in(graph, component) -> str:
    """One cycle through ``component``, as 'a -> b -> a'."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(w for w in graph[path[-1]] if w in members)
        back = [w for w in nxt if w == start]
        if back and len(path) > 1:
            return " -> ".join(path + [start])
        fresh = [w for w in nxt if w not in seen]
        if not fresh:
            return " -> ".join(path + [nxt[0]])
        path.append(fresh[0])
        seen.add(fresh[0])


def test_the_graph_reader_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "autograder.grading.supervisor" in graph["autograder.grading.cli"]
    assert "autograder.course.demo" in graph["autograder.__main__"]  # a function-level import
    assert "mflib.models.registry" in graph["autograder.grading.scan"]  # function-level, absolute
    assert "autograder.grading.policy" in graph["autograder.grading.kernel_guard"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles (break them by moving the shared code into a module both can import):\n" \
        + "\n".join(_path_in(graph, c) for c in found)


# Modules still over the limit while their owner splits them: {path: who splits it}.  The test fails
# for any other long module, and for a listed one as soon as it is short enough (then remove it here).
BEING_SPLIT: dict[str, str] = {}


def _line_counts(package: str) -> dict[str, int]:
    return {path.relative_to(REPO).as_posix(): len(path.read_text().splitlines())
            for name, path in _modules().items() if name.split(".")[0] == package}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_over_500_lines(package):
    counts = _line_counts(package)
    long = {path: n for path, n in counts.items() if n > MAX_LINES}
    unexpected = [f"{path}: {n} lines" for path, n in sorted(long.items()) if path not in BEING_SPLIT]
    assert not unexpected, f"modules over {MAX_LINES} lines (split them by role):\n" + "\n".join(unexpected)
    done = [path for path in BEING_SPLIT if path in counts and path not in long]
    assert not done, f"{done} are now at most {MAX_LINES} lines: remove them from BEING_SPLIT"


def _undocumented(path: Path) -> list[str]:
    """Public functions, classes and methods of ``path`` without a docstring."""
    tree = ast.parse(path.read_text())
    missing = []

    def walk(body, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                    and not node.name.startswith("_"):
                if ast.get_docstring(node) is None and not _is_trivial(node):
                    missing.append(f"{path.relative_to(REPO)}: {prefix}{node.name}")
                if isinstance(node, ast.ClassDef):
                    walk(node.body, f"{prefix}{node.name}.")

    walk(tree.body, "")
    return missing


def _is_trivial(node) -> bool:
    """Overrides of framework hooks (visit_*, traitlets/nbclient methods) document themselves."""
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith(
        ("visit_", "async_", "on_", "output", "preprocess", "create_kernel_manager", "client", "find_spec"))


@pytest.mark.parametrize("folder", ["autograder/course", "autograder/grading"])
def test_public_functions_are_documented(folder):
    missing = [m for path in sorted((REPO / folder).glob("*.py")) for m in _undocumented(path)]
    assert not missing, "public functions without a docstring:\n" + "\n".join(missing)


def _blocks(path: Path, size: int) -> dict[tuple, int]:
    """Every run of ``size`` consecutive non-blank, non-comment lines (stripped) -> its first line number."""
    lines = [(i + 1, ln.strip()) for i, ln in enumerate(path.read_text().splitlines())]
    lines = [(i, ln) for i, ln in lines if ln and not ln.startswith(("#", '"""', "from ", "import "))]
    return {tuple(ln for _, ln in lines[k:k + size]): lines[k][0] for k in range(len(lines) - size + 1)}


@pytest.mark.parametrize("a, b", [("autograder/grading/scan.py", "autograder/grading/kernel_guard.py"),
                                  ("autograder/grading/scan.py", "autograder/grading/policy.py"),
                                  ("autograder/grading/kernel_guard.py", "autograder/grading/policy.py")])
def test_no_block_of_6_lines_repeated(a, b):
    first, second = _blocks(REPO / a, 6), _blocks(REPO / b, 6)
    shared = sorted(set(first) & set(second))
    assert not shared, f"{a}:{first[shared[0]]} and {b}:{second[shared[0]]} repeat:\n" + "\n".join(shared[0])
