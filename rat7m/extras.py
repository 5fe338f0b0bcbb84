"""Optional dependencies (the pip extras), imported where used, and one message when one is missing.

The toolkit's core needs only requirements.txt; PyAV, sleap-io, pandas and the rest are extras
(``pip install 'rat7m-toolkit[pyav]'``). A module never imports an extra at its top: the function that
needs one calls :func:`require` (refuse, naming the extra) or :func:`optional` (fall back when absent),
so every missing extra reads the same way and a command that does not use it never notices.

:func:`require_runtime` is the other half: a script run with a Python that lacks even the runtime
requirements (the system ``python3`` instead of the venv) gets one line, not an import traceback. It
only looks the modules up, so it costs nothing when they are there. Standard library only.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

from rat7m.errors import BadInputError

__all__ = ["MissingExtraError", "install_hint", "optional", "require", "require_runtime"]

#: The distribution name on PyPI, as ``pip install`` takes it.
DISTRIBUTION = "rat7m-toolkit"

#: Import name -> requirement (requirements.txt) of every runtime dependency.
RUNTIME = {
    "numpy": "numpy",
    "scipy": "scipy",
    "cv2": "opencv-python-headless",
    "urllib3": "urllib3",
    "tqdm": "tqdm",
    "matplotlib": "matplotlib",
    "PIL": "pillow",
}


class MissingExtraError(BadInputError):
    """An optional dependency that the asked-for feature needs is not installed (exit 2, one line)."""


def install_hint(extra: str, package: str) -> str:
    """How to install an extra, the one wording every message uses: ``pip install 'rat7m-toolkit[pyav]' (or: ...)``."""
    return f"pip install '{DISTRIBUTION}[{extra}]' (or: pip install {package})"


def optional(module: str) -> ModuleType | None:
    """``module`` imported, or None when it is not installed: for features that fall back without it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def require(module: str, *, extra: str, feature: str, package: str | None = None) -> ModuleType:
    """Import ``module`` for ``feature``, or refuse in one line naming the pip extra that brings it.

    Args:
        module: the import name (``"av"``).
        extra: the toolkit's extra that installs it (``"pyav"``).
        feature: what the user asked for, as the message's subject (``"--decoder pyav"``).
        package: the pip requirement, when not the import name (``"av"``, ``"sleap-io"``).

    Raises:
        MissingExtraError: ``module`` cannot be imported.
    """
    found = optional(module)
    if found is None:
        package = package or module
        msg = f"{feature} needs {package}, which is not installed: {install_hint(extra, package)}"
        raise MissingExtraError(msg)
    return found


def missing_runtime() -> list[str]:
    """The runtime requirements whose modules this Python cannot import (looked up, not imported)."""
    return [req for module, req in RUNTIME.items() if importlib.util.find_spec(module) is None]


def require_runtime() -> None:
    """Exit 2 with one line naming what is missing and the install command, if anything is missing.

    Called first by each script's ``__main__`` block and console command, before numpy is imported.
    """
    missing = missing_runtime()
    if missing:
        msg = (
            f"error: {sys.executable} lacks {', '.join(missing)}; install the toolkit into a venv: "
            "python3 -m venv .venv && .venv/bin/pip install . (or pip install -r requirements.txt), "
            "then run the script with .venv/bin/python"
        )
        print(msg, file=sys.stderr)
        raise SystemExit(2)
