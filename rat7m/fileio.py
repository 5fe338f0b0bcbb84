"""Writing files so that nothing half-written ever carries a final name.

Every file the toolkit produces (tables, .mat files, JPEGs, metric reports) goes through
:func:`atomic_write`: data goes to a temporary name in the same folder, and only a complete file is
renamed onto the final name (``os.replace`` is atomic on one filesystem). A killed run leaves at
most a stray temporary file, never a truncated result that a rerun would mistake for done.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def temporary_name(path: Path) -> Path:
    """A temporary name next to ``path``, unique to this process and thread (hidden, ``.tmp``)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


#: What :func:`temporary_name` makes: ``.<name>.<pid>.<thread id>.tmp`` (nothing else is ever removed as ours).
_TEMPORARY_RE = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.\d+\.tmp")


def remove_stale_temporaries(folder: Path, names: set[str]) -> int:
    """Remove temporary files a killed run left in ``folder`` for the files ``names``; return how many.

    Only names that :func:`temporary_name` makes for one of ``names`` are candidates, and only those
    of a process that is no longer running here (a live writer's file is left alone). A missing
    folder holds nothing.
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        match = _TEMPORARY_RE.fullmatch(entry.name) if entry.name.endswith(".tmp") else None
        if match is None or match["name"] not in names or _alive(int(match["pid"])):
            continue
        try:
            os.unlink(entry.path)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


#: What a staged folder is named while it is written or replaced: ``.<name>.<pid>.partial`` / ``.<name>.<pid>.old``.
_STAGING_RE = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.(partial|old)")


def remove_stale_staging(folder: Path, names: set[str]) -> int:
    """Remove staging folders a killed run left in ``folder`` for the outputs ``names``; return how many.

    As :func:`remove_stale_temporaries`, for whole folders written under a temporary name (an export):
    only ``.<name>.<pid>.partial`` and ``.<name>.<pid>.old`` of one of ``names`` whose process is gone.
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        match = _STAGING_RE.fullmatch(entry.name)
        if match is None or match["name"] not in names or _alive(int(match["pid"])):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (ours or another user's)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
