"""rat7m: download, extract, annotate, export and score the RAT7M rat pose-estimation benchmark.

Import from here::

    import rat7m

    table = rat7m.load_annotation("mini_rat7m_train_test_annotation.pkl")   # loaded safely
    data = rat7m.MiniRat7m(split="test", root="/data/rat7m")               # a training-ready dataset
    rat7m.export.export("coco", table=table, out="exports", root="/data/rat7m")

Everything here but the exception classes is loaded when first used, so ``import rat7m`` stays
cheap (the command line's entry points import it before they can handle Ctrl-C). ``triangulate``
and ``export`` are the subpackages of those names (their functions: ``rat7m.triangulate.triangulate``,
``rat7m.export.export``): binding functions over them would break ``import rat7m.export.coco``.
The command line is ``rat7m <command>`` (:mod:`rat7m.cli`).
"""

from __future__ import annotations

import importlib

from rat7m import errors
from rat7m.errors import *  # noqa: F403  the exception classes, every one (errors.__all__)

__version__ = "0.1.0"

#: Each public name loaded on first use, and the module that defines it (a module itself when the same).
_LAZY = {
    "load_annotation": "rat7m.table",
    "save_annotation": "rat7m.table",
    "build_table": "rat7m.table_build",
    "MiniRat7m": "rat7m.dataset",
    "project": "rat7m.geometry",
    "load_cameras": "rat7m.matfile",
    "load_mocap": "rat7m.matfile",
    "triangulate": "rat7m.triangulate",
    "export": "rat7m.export",
    "Table": "rat7m.model",
    "Camera": "rat7m.model",
    "mpjpe": "rat7m.metrics",
    "pa_mpjpe": "rat7m.metrics",
    "n_mpjpe": "rat7m.metrics",
}

__all__ = [*errors.__all__, "__version__", *_LAZY]


def __getattr__(name: str) -> object:
    """Load a public name on first use (and keep it, so the next use is a plain attribute)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if module.__name__ == f"{__name__}.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
