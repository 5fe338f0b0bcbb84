"""Handling what a server or a shared folder hands us: header numbers, URLs, bodies, files in ``--out``.

Every helper here exists because the obvious one-liner trusts too much:

- ``str.isdigit()`` says yes to ``'²'`` and other Unicode digits that ``int()`` then refuses, so
  a header byte 0xB2 became a traceback: :func:`header_int` takes ASCII digits only.
- ``urlsplit`` and urllib3 do not read ``http://127.0.0.2:1\\@drive.google.com/`` the same way
  (one sees drive.google.com, the other connects to 127.0.0.2): :func:`check_url` refuses
  backslashes and user-info outright and checks the host as urllib3 will connect to it.
- ``response.read()`` and ``drain_conn()`` read a body whole, however endless:
  :func:`read_capped` stops at a size and a deadline, :func:`discard` never reads much.
- ``open(path, "ab")`` follows a symlink planted in the output folder: :func:`open_own_file`
  does not, and refuses anything but a regular file of ours.
- a table's ``image_path`` is joined to a folder and written, linked or read by extraction, every
  export and render: :func:`check_image_path` is the one rule for all of them, and
  :func:`check_output` keeps an ``--out`` off the dataset's inputs.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import string
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit

from rat7m import catalogue
from rat7m.errors import BadInputError

if TYPE_CHECKING:  # urllib3 (and ssl with it) only where a URL is checked: not every command's start-up
    import urllib3

__all__ = [
    "DRAIN_LIMIT",
    "BodyTooLargeError",
    "DeadlineError",
    "UnsafeUrlError",
    "UntrustedFileError",
    "check_image_path",
    "check_image_paths",
    "check_output",
    "check_url",
    "discard",
    "disk_full_message",
    "header_int",
    "open_own_file",
    "read_capped",
]

#: Bodies at most this long are read to their end so the connection can be reused; longer ones
#: (or ones of unknown length) are closed unread.
DRAIN_LIMIT = 64 * 1024

_ASCII_INT_RE = re.compile(r"[0-9]{1,18}")


class UnsafeUrlError(ValueError):
    """A URL (usually a redirect target) that we refuse to follow."""


class UntrustedFileError(OSError):
    """A path in the output folder that is not a regular file of ours (a symlink, a device...)."""

    def __str__(self) -> str:
        return f"{self.filename} {self.strerror}"


def header_int(value: str | None) -> int | None:
    """A non-negative integer header value (``Content-Length``, ``Retry-After``), ASCII digits only.

    Returns:
        The number, or ``None`` when the header is absent or is anything but 1-18 ASCII digits
        (surrounding spaces allowed): never raises.
    """
    if value is None:
        return None
    text = value.strip(" \t")
    return int(text) if _ASCII_INT_RE.fullmatch(text) else None


def check_url(url: str, *, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """The host urllib3 will connect to for ``url``, after refusing what could mislead a host check.

    Raises:
        UnsafeUrlError: a scheme not in ``schemes`` (``file:``, ``ftp:``...), a backslash, user-info
            (``user@host``), no host, or a host that ``urlsplit`` and urllib3 read differently.
    """
    if "\\" in url:
        raise UnsafeUrlError(f"refusing {url!r}: it holds a backslash")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UnsafeUrlError(f"refusing {url!r}: it holds spaces or control characters")
    import urllib3

    try:
        parsed = urllib3.util.parse_url(url)
    except (ValueError, urllib3.exceptions.LocationParseError) as exc:
        raise UnsafeUrlError(f"refusing {url!r}: not a URL ({exc})") from exc
    scheme = (parsed.scheme or "").lower()
    if scheme not in schemes:
        raise UnsafeUrlError(f"refusing {url!r}: only {'/'.join(schemes)} links are followed, not {scheme or 'none'}")
    if parsed.auth is not None or "@" in (parsed.netloc or ""):
        raise UnsafeUrlError(f"refusing {url!r}: it carries a user name (user@host)")
    host = (parsed.host or "").lower().strip("[]")
    if not host:
        raise UnsafeUrlError(f"refusing {url!r}: no host")
    if (urlsplit(url).hostname or "").lower() != host:
        raise UnsafeUrlError(f"refusing {url!r}: its host is ambiguous")
    return host


def discard(response: urllib3.BaseHTTPResponse) -> None:
    """Be done with a response whose body we do not want, without reading an endless one."""
    try:
        length = header_int(response.headers.get("Content-Length"))
        if length is not None and length <= DRAIN_LIMIT and not response.headers.get("Transfer-Encoding"):
            response.drain_conn()
        else:
            response.close()
    except Exception:  # a broken connection is as good as a closed one here
        response.close()
    finally:
        response.release_conn()


class BodyTooLargeError(ValueError):
    """A body longer than we agreed to read."""


class DeadlineError(TimeoutError):
    """A body that took longer than the overall deadline (a server trickling bytes)."""


def read_capped(response: urllib3.BaseHTTPResponse, limit: int, deadline: float | None = None) -> bytes:
    """Read a body of at most ``limit`` bytes, finished before ``time.monotonic()`` reaches ``deadline``.

    Raises:
        BodyTooLargeError: the body is (or announces itself) longer than ``limit``.
        DeadlineError: the body was not complete by ``deadline``.
    """
    announced = header_int(response.headers.get("Content-Length"))
    if announced is not None and announced > limit:
        raise BodyTooLargeError(f"{announced} bytes announced")
    parts: list[bytes] = []
    size = 0
    while chunk := response.read1(64 * 1024, decode_content=True):
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"more than {limit} bytes")
        parts.append(chunk)
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlineError(f"{size} bytes received before the deadline")
    return b"".join(parts)


def open_own_file(path: Path, mode: str) -> IO[bytes]:
    """Open ``path`` (``"wb"``, ``"ab"``, ``"a+b"``, ``"r+b"``, ``"rb"``) without following links.

    A planted symlink (``NAME.part`` -> a file elsewhere) must not carry our bytes out of the output
    folder, and a FIFO must not hang us: only a regular file owned by us is opened.

    Raises:
        UntrustedFileError: ``path`` is a symbolic link, not a regular file, or not ours.
        OSError: the usual reasons (missing for ``rb``/``r+b``, permissions, disk).
    """
    flags = {"rb": os.O_RDONLY, "r+b": os.O_RDWR, "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
             "a+b": os.O_RDWR | os.O_CREAT | os.O_APPEND,
             "wb": os.O_WRONLY | os.O_CREAT}[mode]  # fmt: skip
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        # the file object owns the descriptor from the moment it exists (``opener``): a Ctrl-C anywhere
        # below leaves one owner to close it
        handle = open(path, mode, opener=lambda name, _: os.open(name, flags, 0o644))  # noqa: SIM115 (returned)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            msg = "is a symbolic link; refusing to follow it: remove it"
            raise UntrustedFileError(errno.ELOOP, msg, str(path)) from None
        if exc.errno == errno.EISDIR:  # ``open`` refuses a folder itself; said as the fstat check says it
            raise UntrustedFileError(errno.EINVAL, "is not a regular file; refusing it: remove it", str(path)) from None
        raise
    try:
        fd = handle.fileno()
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedFileError(errno.EINVAL, "is not a regular file; refusing it: remove it", str(path))
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise UntrustedFileError(errno.EPERM, "belongs to another user; refusing it: remove it", str(path))
        os.set_blocking(fd, True)
        if mode == "wb":
            os.ftruncate(fd, 0)
        return handle
    except BaseException:
        handle.close()
        raise


def disk_full_message(path: Path, needed: int | None) -> str:
    """One line for ENOSPC: which file, and how much room it still needed."""
    try:
        free = os.statvfs(path.parent).f_bavail * os.statvfs(path.parent).f_frsize
    except OSError:
        free = None
    need = f"{_mb(needed)} more needed" if needed is not None else "size unknown"
    have = f", {_mb(free)} free" if free is not None else ""
    return f"disk full while writing {path} ({need}{have}); free some space and rerun to continue"


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB" if size >= 100_000 else f"{size} bytes"


# ------------------------------------------------------------------------------------- paths from a table
#
# A table names, per sample and camera, the image of that view (``image_path``, relative to the dataset
# root). Extraction writes there, exports link to it and write labels named after it, render reads it:
# a hostile or broken table must not steer any of them out of their folder, nor break the line-based
# files the exports write (a newline in a name adds a row to YOLO's train.txt).


def check_image_path(path: str, row: int, camera: str, images_dir: str | None = catalogue.IMAGES_DIR) -> None:
    """Refuse an ``image_path`` that could name anything but a JPEG under the images folder.

    Accepted: a relative POSIX path (below ``images_dir`` when it is given), no ``..`` or ``.`` part, no
    empty part, no part with spaces at either end, no backslash, colon or control character (NUL,
    newline, tab...), ending in ``.jpg``. Other characters (commas, quotes) are quoted by the formats
    that need it.

    Args:
        path: the table's ``image_path`` cell.
        row, camera: where it is in the table (for the message).
        images_dir: the images folder relative to the root (``images_unpacked``), or None for any
            folder (an export reads images under ``--images-root``, wherever the table put them).

    Raises:
        BadInputError: one line naming the row, camera and path.
    """
    parts = path.split("/")
    prefix = images_dir.strip("/").split("/") if images_dir else []
    why = None
    if any(ord(c) < 32 or ord(c) == 0x7F or c in "\\:" for c in path) or path.startswith("/"):
        why = "is not a relative POSIX path (absolute, or has a backslash, colon or control character)"
    elif any(part in ("", ".", "..") for part in parts):
        why = "has an empty, '.' or '..' part"
    elif any(part != part.strip() for part in parts):
        why = "has a name with spaces at either end"
    elif parts[: len(prefix)] != prefix or len(parts) <= len(prefix):
        why = f"is not under {images_dir}/"
    elif not path.endswith(".jpg") or parts[-1] == ".jpg":
        why = "does not name a .jpg file"
    if why is not None:
        where = f"annotation table: image_path[{camera!r}][{row}] = {path[:200]!r}"
        rule = f"images go only under {images_dir}/" if images_dir else "image paths are relative .jpg paths"
        raise BadInputError(f"{where} {why}; {rule}")


#: The plain characters of a path (letters, digits, ``_ - . /``) and the separator of the joined paths.
_PLAIN_BYTES = (string.ascii_letters + string.digits + "_-./\n").encode()


def _all_plain(texts: list[str], prefix: str) -> bool:
    """Whether every path is plainly acceptable: checked with C string searches over all of them joined.

    Plain: letters, digits, ``_ - . /`` only; no part empty or starting with a dot (so no ``.``,
    ``..`` or hidden names); ``prefix`` first; ``.jpg`` last. One newline between paths, so a
    newline inside a path shows as a wrong count.
    """
    if not texts:
        return True
    joined = "\n".join(texts)
    n = len(texts)
    if not joined or not joined.isascii() or joined.encode().translate(None, _PLAIN_BYTES):
        return False
    return (
        joined[0] not in "./"
        and not any(bad in joined for bad in ("//", "/.", "\n.", "\n/", "/\n"))
        and joined.count("\n") == n - 1
        and joined.count(".jpg\n") == n - 1
        and joined.endswith(".jpg")
        and not joined.endswith("/.jpg")
        and (not prefix or (joined.startswith(prefix) and joined.count("\n" + prefix) == n - 1))
    )


def check_image_paths(paths: Iterable[object], rows: Sequence[int], camera: str,
                      images_dir: str | None = catalogue.IMAGES_DIR) -> None:  # fmt: skip
    """:func:`check_image_path` on every path of one camera column, fast enough for 676k paths.

    Plain paths (``images_unpacked/s1-d1/camera1/frame_000001.jpg``) are accepted by a few string
    searches over them all; if any is not plain, each path is checked in turn, so the first refused
    one is named exactly as :func:`check_image_path` names it.
    """
    texts = [p if isinstance(p, str) else str(p) for p in paths]
    if _all_plain(texts, images_dir.strip("/") + "/" if images_dir else ""):
        return
    seen: set[str] = set()
    for row, text in zip(rows, texts, strict=True):
        if text not in seen:
            check_image_path(text, int(row), camera, images_dir)
            seen.add(text)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _resolved(path: Path, what: str) -> Path:
    """``path`` resolved through its links; a link loop on the way is one line, not ``RuntimeError``."""
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:  # Python < 3.13 raises RuntimeError for a loop
        raise BadInputError(f"{what} {path} cannot be resolved (a symbolic link loop?): {exc}") from None


def check_output(out: Path, root: Path | None, inputs: Iterable[Path] = (), *, what: str = "--out") -> None:
    """Refuse an output that would land on the dataset's inputs, before anything is written.

    ``out`` (a file or a folder, resolved through links) must not be inside ``root``'s
    ``video_sequences/`` or ``annotations/``, nor be one of ``inputs`` (the table, a prediction file,
    a chunk), nor a folder holding one of them.

    Raises:
        BadInputError: one line naming the output, what it would overwrite, and the fix.
    """
    target = _resolved(out, what)
    if root is not None:
        for sub in (catalogue.VIDEO_DIR, catalogue.ANNOTATION_DIR):
            folder = _resolved(root / sub, "the dataset's")
            if _inside(target, folder):
                raise BadInputError(f"{what} {out} is inside the dataset's {sub}/ ({folder}); choose another {what}")
    for source in inputs:
        resolved = _resolved(Path(source), "the input")
        if _inside(resolved, target):
            raise BadInputError(f"{what} {out} would overwrite the input {source}; choose another {what}")
