"""Writing files so that nothing half-written ever carries a final name, and reading inputs safely.

Every file the toolkit produces (tables, .mat files, JPEGs, metric reports) goes through
:func:`atomic_write`: data goes to a temporary name in the same folder, and only a complete file is
renamed onto the final name (``os.replace`` is atomic on one filesystem). A killed run leaves at
most a stray temporary file, never a truncated result that a rerun would mistake for done.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from rat7m.errors import BadInputError

__all__ = [
    "SMALL_FILE_BYTES",
    "atomic_write",
    "check_input",
    "open_input",
    "process_alive",
    "read_input",
    "remove_stale_staging",
    "remove_stale_temporaries",
    "staging_name",
    "temporary_name",
]


def temporary_name(path: Path, keep_suffix: bool = False) -> Path:
    """A temporary name next to ``path``, unique to this process and thread (hidden, ``.tmp``).

    ``keep_suffix`` ends it with ``path``'s suffix too (``.tmp.mp4``), for writers that pick the format
    from the extension (OpenCV's video writer).
    """
    suffix = path.suffix if keep_suffix else ""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp{suffix}")


#: What :func:`temporary_name` makes: ``.<name>.<pid>.<thread id>.tmp`` (nothing else is ever removed as ours).
_TEMPORARY_RE = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.\d+\.tmp(?P<suffix>\.[^.]+)?")


def remove_stale_temporaries(folder: Path, names: set[str]) -> int:
    """Remove temporary files a killed run left in ``folder`` for the files ``names``; return how many.

    Only names that :func:`temporary_name` makes for one of ``names`` are candidates, and only those
    of a process that is no longer running here (a live writer's file is left alone). A missing
    folder holds nothing.
    """

    def ours(match: re.Match) -> bool:  # only .tmp.mp4 for a .mp4
        return not match["suffix"] or match["name"].endswith(match["suffix"])

    return _remove_stale(folder, names, _TEMPORARY_RE, ours)


def staging_name(final: Path, kind: str = "partial") -> Path:
    """Where a folder is staged (``partial``) or swapped out (``old``) beside ``final`` by this process."""
    return final.with_name(f".{final.name}.{os.getpid()}.{kind}")


#: What :func:`staging_name` makes: ``.<name>.<pid>.partial`` / ``.<name>.<pid>.old``.
_STAGING_RE = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.(partial|old)")


def remove_stale_staging(folder: Path, names: set[str]) -> int:
    """Remove staging folders a killed run left in ``folder`` for the outputs ``names``; return how many.

    As :func:`remove_stale_temporaries`, for whole folders written under a temporary name (an export):
    only :func:`staging_name`'s names for one of ``names`` whose process is gone.
    """
    return _remove_stale(folder, names, _STAGING_RE)


def _remove_stale(folder: Path, names: set[str], pattern: re.Pattern,
                  also: Callable[[re.Match], bool] = lambda _: True) -> int:  # fmt: skip
    """Remove the entries of ``folder`` that ``pattern`` names for one of ``names``, of a process that is gone."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or match["name"] not in names or process_alive(int(match["pid"])) or not also(match):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)
        removed += 1
    return removed


def process_alive(pid: int) -> bool:
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


# --------------------------------------------------------------------------------------------------
# reading input files safely
#
# A user (or a crafted folder) can hand any path to a command: a FIFO (``open`` waits forever for a
# writer), a device (``/dev/zero`` never ends), a symlink loop, or a huge file where a few kilobytes
# of JSON are expected. :func:`open_input` opens without blocking, looks at what it opened (the
# descriptor, so a swap after the check does not matter) and refuses anything but a regular file
# within the size cap, each time with one line naming the file.

#: Cap on the small input files the toolkit reads whole (JSON summaries, per-sample CSVs): far above
#: any real one (the full test split's per-sample CSV is ~2 MB), far below what would hurt memory.
SMALL_FILE_BYTES = 256 << 20


_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, word in _KINDS:
        if test(mode):
            return word
    return "not a regular file"


def _open_error(path: Path, what: str, exc: OSError) -> BadInputError:
    """One line for an ``os.open`` failure, in the user's words."""
    if exc.errno == errno.EISDIR:  # ``open`` refuses a folder itself; said as the fstat check below says it
        return BadInputError(f"{what} {path} is a folder; expected a regular file")
    reasons: dict[int | None, str] = {
        errno.ENOENT: "not found",
        errno.ELOOP: "a symbolic link loop, or a link where none may be",
        errno.EACCES: "permission denied",
        errno.ENOTDIR: "a part of the path is not a folder",
        errno.ENXIO: "a socket (or a device with no driver), not a file",
    }
    reason = reasons.get(exc.errno, exc.strerror or str(exc))
    return BadInputError(f"{what} {path}: cannot read ({reason})")


def open_input(path: str | os.PathLike, what: str = "input file", *, max_bytes: int | None = SMALL_FILE_BYTES,
               follow_links: bool = True) -> BinaryIO:  # fmt: skip
    """Open ``path`` for binary reading, refusing anything that is not a regular file of at most ``max_bytes``.

    Args:
        path: the file.
        what: how messages name it ("summary.json", "annotation table").
        max_bytes: largest size accepted (None: no cap).
        follow_links: False opens with ``O_NOFOLLOW``: a symlink as the last component is refused.

    Returns:
        The open file (blocking, binary); the caller closes it.

    Raises:
        BadInputError: missing, unreadable, a link loop, a FIFO, device, socket or folder, or too big;
            one line naming the file.
    """
    path = Path(path)
    # O_NONBLOCK: opening a FIFO that has no writer returns at once instead of waiting for one
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow_links else os.O_NOFOLLOW)
    try:
        # the file object owns the descriptor from the moment it exists (``opener``), so a Ctrl-C at any
        # point leaves exactly one owner to close it
        handle = open(path, "rb", opener=lambda name, _: os.open(name, flags))  # noqa: SIM115 (returned)
    except OSError as exc:
        raise _open_error(path, what, exc) from None
    try:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise BadInputError(f"{what} {path} is {_kind(info.st_mode)}; expected a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            msg = f"{what} {path} is {info.st_size} bytes, more than the {max_bytes} such a file can be"
            raise BadInputError(msg)
        os.set_blocking(handle.fileno(), True)
        return handle
    except BaseException:
        handle.close()
        raise


def read_input(path: str | os.PathLike, what: str = "input file", *, max_bytes: int | None = SMALL_FILE_BYTES,
               follow_links: bool = True) -> bytes:  # fmt: skip
    """The bytes of a regular file (see :func:`open_input`); a file that changes size while read is refused."""
    with open_input(path, what, max_bytes=max_bytes, follow_links=follow_links) as handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            data = handle.read(size + 1)  # one byte more than the size: a file still growing shows it
        except OSError as exc:
            raise BadInputError(f"{what} {path} cannot be read ({exc.strerror or exc})") from None
    if len(data) != size:
        raise BadInputError(f"{what} {path} changed size while it was read; read it again when it is complete")
    return data


def check_input(path: str | os.PathLike, what: str = "input file", *, max_bytes: int | None = None) -> Path:
    """Check (by opening it, without reading) that ``path`` is a readable regular file; return it as a Path.

    For files a library opens later by name (a table, a prediction file): the user hears "is a FIFO" or
    "is a symbolic link loop" now, instead of a hang or a traceback later, or a false "not found".
    """
    open_input(path, what, max_bytes=max_bytes).close()
    return Path(path)
