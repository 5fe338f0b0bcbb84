"""The front door and the habits of a maintained package: the README's links lead somewhere, the
version is written once, the licence and the changelog are there.

`mkdocs build --strict` (in `make test` and `make docs`) checks the links inside docs/; the README is
outside the site, so its links are checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import rat7m

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

REPO = Path(__file__).resolve().parent.parent

#: Markdown links and images: [text](target) and ![alt](target).
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_is_the_front_door() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the manual belongs in docs/"


def test_readme_links_lead_to_files() -> None:
    text = (REPO / "README.md").read_text()
    local = [t for t in LINK.findall(text) if "://" not in t]
    assert local, "README.md links to no page of the documentation"
    missing = [t for t in local if not (REPO / t.split("#")[0]).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_version_is_written_once() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"], "pyproject.toml writes the version; rat7m.__version__ is the one place"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "rat7m.__version__"}


def test_licence_and_changelog() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert f"## [{rat7m.__version__}]" in changelog, "CHANGELOG.md has no entry for the current version"


def test_readme_python_example_runs_as_written(synthetic_dataset, tmp_path) -> None:
    """The README's Python block, with only its dataset path pointed at a synthetic dataset's copy."""
    import shutil
    import subprocess
    import sys

    from rat7m.table import save_annotation
    from rat7m.table_build import build_table, find_mocap_files

    (block,) = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    root = tmp_path / "dataset"  # not "rat7m": a folder of that name in the cwd would shadow the package
    shutil.copytree(synthetic_dataset.root, root)
    save_annotation(build_table(find_mocap_files(root)), root / "mini_rat7m_train_test_annotation.pkl")
    assert "/data/rat7m" in block
    code = block.replace("/data/rat7m", str(root)) + "\nprint(len(test), recording.name, K.size, len(dataset))\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    n_test, name, k_size, n_dataset = run.stdout.split()
    assert int(n_test) == int(n_dataset) > 0 and name.startswith("s") and k_size == "9"
