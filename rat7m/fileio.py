"""Writing files so that nothing half-written ever carries a final name.

Every file the toolkit produces (tables, .mat files, JPEGs, metric reports) goes through
:func:`atomic_write`: data goes to a temporary name in the same folder, and only a complete file is
renamed onto the final name (``os.replace`` is atomic on one filesystem). A killed run leaves at
most a stray temporary file, never a truncated result that a rerun would mistake for done.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def temporary_name(path: Path) -> Path:
    """A temporary name next to ``path``, unique to this process and thread (hidden, ``.tmp``)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing; on leaving the block without error, rename it to ``path``.

    The parent folder is created if needed. On any error (or KeyboardInterrupt) the temporary file
    is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, mode) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
