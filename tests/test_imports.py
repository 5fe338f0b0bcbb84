"""The package's import graph: no cycle, layers that import only downwards, a cheap ``import rat7m``.

Every module of the installed package is found with :mod:`pkgutil` and its source parsed with
:mod:`ast` (nothing is imported to read it), so the imports inside functions, which Python runs
late, count as much as those at the top: a cycle through a lazy import still ties the modules
together. Imports under ``if __name__ == "__main__":`` run only when a file is run as a script,
so they are left out. So are those under ``if TYPE_CHECKING:``: they never run (annotations are
strings under ``from __future__ import annotations``), so they load nothing and order nothing; they
only let a checker name a type. Two modules that are one thing split for size use it (the local
Figshare server and its HTTP handler, which reaches the server's state through ``self.server``):
describing that state again as a Protocol would write it twice for no decoupling.

Known offenders that other branches are fixing this round are listed below by name; the lead
empties these lists when merging those branches (a test also fails when a listed offence is gone).
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import rat7m

REPO = Path(__file__).resolve().parents[1]
#: Top-level scripts and packages of a checkout: shims for users, never imported by the package.
SCRIPTS = ("download_all", "extract_frames", "build_annotation", "export", "matlab_utils", "metric_utils")
#: The demo and test machinery (a synthetic dataset, local servers, the demo pipeline): never imported at run time.
DEMO = "rat7m.demo"
#: Today's modules of that machinery, which move into rat7m.demo this round (demo's branch): the lead trims this.
DEMO_TODAY: tuple[str, ...] = ()

#: Imports the rules forbid, still there this round; each (importer, imported) names the branch removing it.
ALLOWED_OFFENCES: dict[tuple[str, str], str] = {}
#: Import cycles still there this round, each with the branch that breaks it (the lead empties this).
ALLOWED_CYCLES: dict[tuple[str, ...], str] = {}
#: Modules without ``__all__`` yet: each branch reworking them this round adds it (the lead empties this).
MISSING_ALL: dict[str, tuple[str, ...]] = {}
#: Public names of rat7m/__init__ whose module arrives with another branch this round (the lead empties this).
PENDING_PUBLIC_NAMES: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    """Every module of the installed package: name -> source file."""
    found = {"rat7m": Path(rat7m.__file__)}
    for info in pkgutil.walk_packages(rat7m.__path__, "rat7m."):
        spec = importlib.util.find_spec(info.name)
        assert spec is not None and spec.origin is not None, info.name
        found[info.name] = Path(spec.origin)
    return found


def _is_main_guard(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__")  # fmt: skip


def _is_type_checking_guard(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``: a block that never runs."""
    test = getattr(node, "test", None)
    name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else None
    return isinstance(node, ast.If) and name == "TYPE_CHECKING"


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node`` (functions included), except in ``if __name__ == ...`` and
    ``if TYPE_CHECKING:`` blocks (their ``else`` runs, so it counts)."""
    for child in ast.iter_child_nodes(node):
        if _is_main_guard(child) or _is_type_checking_guard(child):
            yield from (n for stmt in child.orelse for n in _import_nodes(ast.Module([stmt], [])))
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        yield from _import_nodes(child)


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules ``name`` imports: ``from a import b`` is ``a.b`` when that is a module, else ``a``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative: resolved against the importing module's package
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
        for alias in node.names:
            full = f"{base}.{alias.name}"
            found.add(full if full in known or _checkout_module(full) else base)
    return found


def _checkout_module(name: str) -> bool:
    """Whether ``name`` is a module of the checkout's top level (``metric_utils.compute_metrics``)."""
    path = REPO.joinpath(*name.split("."))
    return _is_script_module(name) and (path.with_suffix(".py").is_file() or (path / "__init__.py").is_file())


def _is_script_module(name: str) -> bool:
    return name.split(".")[0] in SCRIPTS


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in graph:
                continue
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_walk_sees_lazy_imports_and_skips_script_and_type_checking_blocks(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "import os\nimport typing\nfrom typing import TYPE_CHECKING\n"
        "def f():\n    from rat7m.cli import common, run_main\n"
        "if __name__ == '__main__':\n    import download_all\nelse:\n    import json\n"
        "if TYPE_CHECKING:\n    from rat7m.demo import synthetic\nelse:\n    import re\n"
        "if typing.TYPE_CHECKING:\n    import rat7m.demo.pipeline\n"
        "def g():\n    if TYPE_CHECKING:\n        import rat7m.export\n    import csv\n"
    )  # fmt: skip
    known = {"rat7m.cli", "rat7m.cli.common", "rat7m.demo.synthetic"}
    assert _imports("rat7m.m", source, known) == {"os", "typing", "rat7m.cli.common", "rat7m.cli", "json", "re", "csv"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_is_found(graph):
    for name in ("rat7m.cli", "rat7m.cli.common", "rat7m.cli.entry", "rat7m.cli.download", "rat7m.export.api",
                 "rat7m.download.transfer", "rat7m.render.samples"):  # fmt: skip
        assert name in graph, name


def test_no_import_cycle_among_rat7m_modules(graph):
    cycles = {tuple(c) for c in _cycles(graph)}
    assert not cycles - set(ALLOWED_CYCLES), "modules that import each other (lazy imports included)"
    assert not set(ALLOWED_CYCLES) - cycles, "a cycle of ALLOWED_CYCLES is gone: remove it from the list"


def _offences(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(importer, imported) pairs where a runtime module imports the demo machinery, a script or metric_utils."""
    machinery = (DEMO, *DEMO_TODAY)
    found = set()
    for name, imported in graph.items():
        if any(name == m or name.startswith(m + ".") for m in machinery):
            continue  # the machinery may use the whole toolkit
        for other in imported:
            if _is_script_module(other) or any(other == m or other.startswith(m + ".") for m in machinery):
                found.add((name, other))
    return found


def test_runtime_modules_import_neither_the_demo_machinery_nor_a_script(graph):
    unexpected = _offences(graph) - set(ALLOWED_OFFENCES)
    assert not unexpected, f"runtime modules importing the demo package, a script or metric_utils: {sorted(unexpected)}"


def test_the_allowed_offences_are_still_there(graph):
    """A listed offence that is gone must leave the list, so that it cannot come back unnoticed."""
    gone = set(ALLOWED_OFFENCES) - _offences(graph)
    assert not gone, f"fixed: remove from ALLOWED_OFFENCES: {sorted(gone)}"


def test_the_public_api_resolves_from_the_top_level():
    for name in rat7m.__all__:
        if name in PENDING_PUBLIC_NAMES:
            continue
        assert getattr(rat7m, name) is not None, name
    assert callable(rat7m.load_annotation) and callable(rat7m.MiniRat7m) and callable(rat7m.export.export)
    assert callable(rat7m.triangulate.triangulate)
    assert issubclass(rat7m.BadInputError, rat7m.Rat7mError) and "load_annotation" in dir(rat7m)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        rat7m.nothing  # noqa: B018


def test_importing_rat7m_and_the_entry_points_loads_nothing_heavy():
    """``import rat7m`` and the console commands' module stay cheap: no numpy, OpenCV or argparse yet."""
    heavy = ("numpy", "cv2", "argparse", "rat7m.cli.common", "rat7m.table")
    code = f"import sys, rat7m, rat7m.cli.entry; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "[]"


def _bound_names(tree: ast.Module) -> tuple[set[str], list[str] | None]:
    """Names bound at a module's top level, and its ``__all__`` (None without one)."""
    bound, exported = set(), None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for target in targets:
            if isinstance(target, ast.Name):
                bound.add(target.id)
                if target.id == "__all__" and isinstance(node.value, ast.List | ast.Tuple):
                    exported = [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
    return bound, exported


def test_every_public_module_has_all_naming_what_it_defines():
    """``__all__`` says what a module offers (``from m import *``, the API reference); each name must exist."""
    pending = {name for names in MISSING_ALL.values() for name in names}
    missing = []
    for name, path in _modules().items():
        if name.rpartition(".")[2].startswith("_") and not name.endswith("__init__"):
            continue  # private modules and __main__ shims
        source = path.read_text()
        if "sys.modules[__name__] = " in source:
            continue  # an old name kept as an alias of the module that replaced it
        bound, exported = _bound_names(ast.parse(source))
        if exported is None:
            missing.append(name)
            continue
        unknown = [e for e in exported if e not in bound and not (path.name == "__init__.py" and e in _lazy(path))]
        assert not unknown, f"{name}.__all__ names what it does not define: {unknown}"
    assert sorted(set(missing) - pending) == [], "public modules without __all__"
    assert sorted(pending - set(missing)) == [], "these have __all__ now: remove them from MISSING_ALL"


def _lazy(path: Path) -> set[str]:
    """Names a package's ``__getattr__`` serves: in ``__all__`` or a ``_LAZY`` table, loaded on first use."""
    source = path.read_text()
    return set() if "def __getattr__" not in source else {e for e in _bound_names(ast.parse(source))[1] or ()}
