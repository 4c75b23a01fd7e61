"""The package's shape: no import cycles, and no pytest outside the plugin layer.

Imports are read with ``ast`` from every module of ``pytest_hemorrhage``: at any depth (an
import inside a function still ties the two modules together, it only hides the tie), relative
ones resolved, ``if TYPE_CHECKING:`` blocks left out (they never run). Importing ``a.b.c`` also
runs the ``__init__`` of ``a`` and ``a.b``, so those count as imported too, except the
packages that contain the importing module itself (they are initialised before it anyway).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "pytest_hemorrhage"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
# The pytest layer; every other module must work without pytest.
PYTEST_MODULES = {f"{PACKAGE}.plugin", f"{PACKAGE}.session"}


def module_names(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package (a package is its ``__init__``)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of ``tree``, at any depth, outside ``if TYPE_CHECKING:`` bodies."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def imported_names(module: str, path: Path, modules: set[str]) -> set[str]:
    """Every dotted name ``module`` imports (third-party ones included), relative imports resolved.

    ``from x import y`` imports ``x.y`` when that is a module of the package, ``x`` otherwise.
    """
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        if node.level:
            base = here[: len(here) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            names.add(sub if sub in modules else target)
    return names


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, with the packages importing them initialises."""
    files = module_names(root, package)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        edges = set()
        for name in imported_names(module, path, set(files)):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in files and (prefix == name or prefix not in own) and prefix != module:
                    edges.add(prefix)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan), as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
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
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_closed_path(graph, set(component)) for component in components]


def _closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first search), start repeated at the end."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


# ---------------------------------------------------------------------- the checker checks itself
def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_cycle_hidden_in_a_function_is_found_and_named(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from . import b\n",
        "b.py": "def f():\n    from .sub.c import x\n",
        "sub/__init__.py": "",
        "sub/c.py": "import pkg.a\n",
    })
    assert cycles(import_graph(root, "pkg")) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]


def test_type_checking_imports_and_a_modules_own_packages_make_no_cycle(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "from .sub import c\n",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\nelse:\n    import os\n",
        "b.py": "from .a import thing\n",
        "sub/__init__.py": "from .c import x\n",
        "sub/c.py": "from ..b import y\nfrom . import d\n",
        "sub/d.py": "",
    })
    graph = import_graph(root, "pkg")
    assert graph["pkg.a"] == set()
    assert graph["pkg.sub.c"] == {"pkg.b", "pkg.sub.d"}
    assert cycles(graph) == []


def test_importing_a_submodule_runs_its_package_init(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from .sub.c import x\n",
        "sub/__init__.py": "from .. import a\n",
        "sub/c.py": "",
    })
    assert cycles(import_graph(root, "pkg")) == [["pkg.a", "pkg.sub", "pkg.a"]]


# ---------------------------------------------------------------------- the package
def test_the_package_has_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles (break each by moving the shared code below both modules):\n" + "\n".join(
        " -> ".join(cycle) for cycle in found)


@pytest.mark.parametrize("module", sorted(set(module_names()) - PYTEST_MODULES))
def test_core_modules_do_not_import_pytest(module):
    files = module_names()
    names = imported_names(module, files[module], set(files))
    assert not {n for n in names if n.split(".")[0] in ("pytest", "_pytest")}, (
        f"{module} imports pytest; only {sorted(PYTEST_MODULES)} may (the library must run without pytest)")


#: The optional runtimes and quantizers: extras that the core must never need to import.
OPTIONAL_PACKAGES = ("llama_cpp", "onnxruntime", "onnx", "onnxscript", "httpx", "torchao", "optimum")


def test_importing_every_module_imports_no_optional_runtime():
    """A missing extra must cost only the feature that needs it: every module imports without it."""
    import subprocess
    import sys

    script = (
        "import importlib, sys\n"
        f"for name in {sorted(module_names())!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in {OPTIONAL_PACKAGES!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=ROOT.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
