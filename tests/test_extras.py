"""One optional-dependency helper: imported where used, one message naming the pip extra; the demo apart."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from rat7m import extras
from rat7m.errors import BadInputError

REPO = Path(__file__).resolve().parents[1]


def test_require_imports_or_names_the_extra(monkeypatch):
    assert extras.require("json", extra="none", feature="x") is sys.modules["json"]
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    assert extras.optional("av") is None
    with pytest.raises(extras.MissingExtraError) as info:
        extras.require("av", extra="pyav", feature="the pyav decoder")
    assert isinstance(info.value, BadInputError)  # exit 2, one line
    assert str(info.value) == (
        "the pyav decoder needs av, which is not installed: pip install 'rat7m-toolkit[pyav]' (or: pip install av)"
    )


def test_every_extra_named_in_the_code_is_a_packaged_extra():
    """An install hint must name an extra that ``pip install 'rat7m-toolkit[...]'`` knows."""
    pyproject = (REPO / "pyproject.toml").read_text()
    named = set()
    for path in (REPO / "rat7m").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "extra" and isinstance(node.value, ast.Constant):
                named.add(node.value.value)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "install_hint":
                named.update(a.value for a in node.args[:1] if isinstance(a, ast.Constant))
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Requirement":
                named.add(node.args[1].value)
    assert {"pyav", "sleap", "export", "render"} <= named
    for extra in named:
        assert f"\n{extra} = {{ file = [" in pyproject, f"extra {extra!r} is not in pyproject.toml"


def test_the_synthetic_dataset_module_imports_without_pyav():
    """PyAV is an extra: importing the demo's dataset module must not need it (only encoding does)."""
    code = "import sys; sys.modules['av'] = None; import rat7m.demo.synthetic, rat7m.demo.pipeline; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):  # lazy imports inside functions included
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_runtime_modules_never_import_the_demo_package():
    runtime = [p for p in (REPO / "rat7m").rglob("*.py") if "demo" not in p.relative_to(REPO / "rat7m").parts]
    scripts = [REPO / name for name in ("download_all.py", "extract_frames.py", "build_annotation.py", "export.py")]
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for path in runtime + scripts + sorted((REPO / "metric_utils").glob("*.py"))
        for name in _imports(path)
        if name == "rat7m.demo" or name.startswith("rat7m.demo.")
    ]
    assert len(runtime) > 50 and not offenders, offenders


def test_the_demo_finds_the_installed_commands_and_refuses_clearly_without_them(tmp_path, monkeypatch):
    from rat7m.demo import pipeline

    assert Path(pipeline.command("rat7m-download")).parent == Path(sys.executable).parent  # the venv's own
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BadInputError, match=r"rat7m-download is not installed beside .*: pip install the toolkit"):
        pipeline.command("rat7m-download")
