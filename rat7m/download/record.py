"""The verification record: which files were checked against their MD5, so reruns need not rehash.

A small JSON file in the output folder (``.rat7m-download.json``) maps each file's relative path
to the size, MD5 and modification time (ns) it had when its checksum matched. A rerun trusts a
file whose size and mtime are unchanged and whose listed MD5 is the one recorded; anything else is
hashed again (``--verify`` hashes everything). It also remembers, for each partial download, the
MD5 it is heading for and the server's validator (ETag or Last-Modified), so that a resume sends
``If-Range`` and a partial of an older version of a file is never continued; and, for
``--via-zip``, which dataset files each whole-article zip held when it was unpacked.

The file is rewritten atomically (temp file, then rename), at most once a second while files
complete, and always at the end of a run, so a killed run loses at most a second of records
(those files are simply hashed again).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rat7m.fileio import temporary_name
from rat7m.untrusted import open_own_file

__all__ = [
    "FLUSH_INTERVAL",
    "MAX_RECORD_BYTES",
    "RECORD_NAME",
    "RECORD_VERSION",
    "Partial",
    "VerificationRecord",
    "Verified",
]

log = logging.getLogger(__name__)

#: File name of the record, in the output folder.
RECORD_NAME = ".rat7m-download.json"
#: Format version written in the file.
RECORD_VERSION = 1
#: Shortest interval between two rewrites while files complete, seconds.
FLUSH_INTERVAL = 1.0
#: Largest record read (a whole RAT7M download records ~2000 files in ~300 KB).
MAX_RECORD_BYTES = 64 << 20


@dataclass(frozen=True)
class Verified:
    """A file whose checksum matched: the facts that let a rerun trust it without rehashing."""

    size: int
    md5: str | None
    mtime_ns: int


@dataclass(frozen=True)
class Partial:
    """A partial download (``NAME.part``): the MD5 it is heading for and the server's validator."""

    md5: str | None
    validator: str | None = None


class VerificationRecord:
    """The record of one output folder; safe to use from several download threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        #: Never write (``--verify`` of a read-only dataset: checking must not need write access).
        self.read_only = False
        self.files: dict[str, Verified] = {}
        self.partials: dict[str, Partial] = {}
        self.extracted: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._dirty = False
        self._last_flush = 0.0
        self._warned = False

    @classmethod
    def load(cls, folder: Path) -> VerificationRecord:
        """Read the record of ``folder`` (an unreadable record is ignored: files get rehashed)."""
        record = cls(Path(folder) / RECORD_NAME)
        try:
            with open_own_file(record.path, "rb") as handle:  # a symlink planted there is not read
                data = json.loads(handle.read(MAX_RECORD_BYTES + 1))
            record.files = {k: Verified(**v) for k, v in data.get("files", {}).items()}
            record.partials = {k: Partial(**v) for k, v in data.get("partials", {}).items()}
            record.extracted = {k: [str(p) for p in v] for k, v in data.get("extracted", {}).items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError, RecursionError) as exc:
            log.warning("ignoring unreadable verification record %s (%s); files will be rehashed", record.path, exc)
            record.files, record.partials, record.extracted = {}, {}, {}
        return record

    def verified(self, path: str) -> Verified | None:
        """What was recorded for ``path`` when it last verified, if anything."""
        with self._lock:
            return self.files.get(path)

    def partial(self, path: str) -> Partial | None:
        """What is known about ``path``'s partial download, if anything."""
        with self._lock:
            return self.partials.get(path)

    def mark_verified(self, path: str, file: Path, md5: str | None) -> None:
        """Record that ``file`` (stored at relative ``path``) matched ``md5``; forget its partial."""
        stat = file.stat()
        with self._lock:
            self.files[path] = Verified(stat.st_size, md5, stat.st_mtime_ns)
            self.partials.pop(path, None)
            self._dirty = True
        self.flush(force=False)

    def mark_partial(self, path: str, md5: str | None, validator: str | None) -> None:
        """Record a partial download's target MD5 and validator (written at once: resumes need it)."""
        with self._lock:
            self.partials[path] = Partial(md5, validator)
            self.files.pop(path, None)
            self._dirty = True
        self.flush(force=True)

    def extracted_files(self, zip_path: str) -> list[str] | None:
        """The dataset files a zip held when it was unpacked (``None``: never unpacked)."""
        with self._lock:
            return self.extracted.get(zip_path)

    def mark_extracted(self, zip_path: str, contents: list[str]) -> None:
        """Record that the zip at ``zip_path`` was unpacked and held ``contents`` (written at once)."""
        with self._lock:
            self.extracted[zip_path] = sorted(contents)
            self._dirty = True
        self.flush(force=True)

    def forget(self, path: str) -> None:
        """Drop everything recorded about ``path`` (its file or partial was deleted)."""
        with self._lock:
            if self.files.pop(path, None) is not None or self.partials.pop(path, None) is not None:
                self._dirty = True
        self.flush(force=False)

    def flush(self, force: bool = True) -> None:
        """Write the record if it changed (unless ``force``, at most once per :data:`FLUSH_INTERVAL`).

        Never raises for a disk that refuses (full, read-only): the record only saves rehashing, so
        a verified file stays verified; the failure is said once and the next flush tries again.
        """
        with self._lock:
            if self.read_only:
                return
            if not self._dirty or (not force and time.monotonic() - self._last_flush < FLUSH_INTERVAL):
                return
            data = {
                "version": RECORD_VERSION,
                "files": {k: asdict(v) for k, v in sorted(self.files.items())},
                "partials": {k: asdict(v) for k, v in sorted(self.partials.items())},
                "extracted": dict(sorted(self.extracted.items())),
            }
            try:
                _write_new(self.path, json.dumps(data, indent=1).encode())
            except OSError as exc:
                if not self._warned:
                    log.warning("cannot save the verification record %s (%s); finished files are kept, "
                                "a later run will hash them again", self.path, exc.strerror or exc)  # fmt: skip
                    self._warned = True
                return
            self._dirty = False
            self._last_flush = time.monotonic()


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to a fresh temporary name (never through a planted link), then rename it onto ``path``."""
    tmp = temporary_name(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        with open(tmp, "wb", opener=lambda name, _: os.open(name, flags, 0o644)) as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
