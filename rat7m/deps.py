"""Imported first by every top-level script: without the toolkit's dependencies, one line saying how to get them.

Run with a Python that lacks them (the system ``python3`` instead of the venv), a script would
otherwise die with a ``ModuleNotFoundError`` traceback from deep inside an import. Only the
standard library is used here, and nothing is imported: the modules are only looked up.
"""

from __future__ import annotations

import importlib.util
import sys

#: Import name -> requirement (requirements.txt) of every runtime dependency.
RUNTIME = {
    "numpy": "numpy",
    "scipy": "scipy",
    "cv2": "opencv-python-headless",
    "urllib3": "urllib3",
    "tqdm": "tqdm",
    "matplotlib": "matplotlib",
}


def missing_runtime() -> list[str]:
    """The requirements whose modules this Python cannot import."""
    return [req for module, req in RUNTIME.items() if importlib.util.find_spec(module) is None]


def require_runtime() -> None:
    """Exit 2 with one line naming what is missing and the install command, if anything is missing."""
    missing = missing_runtime()
    if missing:
        msg = (
            f"error: {sys.executable} lacks {', '.join(missing)}; install the toolkit into a venv: "
            "python3 -m venv .venv && .venv/bin/pip install . (or pip install -r requirements.txt), "
            "then run the script with .venv/bin/python"
        )
        print(msg, file=sys.stderr)
        raise SystemExit(2)


require_runtime()
