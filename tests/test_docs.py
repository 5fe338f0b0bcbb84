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
