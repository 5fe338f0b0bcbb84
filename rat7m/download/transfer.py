"""Carrying out one :class:`~rat7m.download.plan.Step`: resumable, verified transfer of one file.

Bytes go to ``NAME.part`` while an MD5 of everything written so far is kept up to date. A resume
asks for ``Range: bytes=<size of the part>-`` with ``If-Range`` (the validator the server gave
when the part was started) and ``Accept-Encoding: identity``, so that offsets are offsets of the
file. A ``206`` continues the part; a ``200`` means the server ignored the range (or the file
changed), so the part is emptied and the body written from byte 0. When the part reaches the
listed size its MD5 must match the listing: then it is renamed to the final name (atomic on one
file system); otherwise it is deleted and downloaded again, and after
:attr:`RetryPolicy.checksum_attempts` bad copies the file fails, named in the summary. Nothing
unverified ever carries the final name.

Connection errors, timeouts and 408/429/5xx answers are retried with backoff (``Retry-After``
honoured), resuming from what is already on disk; consecutive failures that bring no new byte are
limited by :attr:`RetryPolicy.attempts`. A 4xx answer fails the file at once. Failures are
returned as an :class:`Outcome`, never raised, so one bad file does not stop the others.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import urllib3

from rat7m.download.http import (
    CONNECTION_ERRORS,
    HttpClient,
    PermanentError,
    RetryableError,
    RetryPolicy,
    check_status,
)
from rat7m.download.plan import Action, Step, part_path
from rat7m.download.progress import FileBar, Progress
from rat7m.download.record import VerificationRecord
from rat7m.untrusted import UntrustedFileError, disk_full_message, header_int, open_own_file

__all__ = [
    "CHUNK_SIZE",
    "STATUSES",
    "Interrupt",
    "Outcome",
    "Stopped",
    "TransferContext",
    "carry_out",
    "md5_of_file",
    "parse_content_range",
    "size_from_response",
    "validator_of",
]

log = logging.getLogger(__name__)

#: Largest piece read from the network (or a file being hashed) and written at once.
CHUNK_SIZE = 1 << 20

#: Outcome statuses, in summary order.
DOWNLOADED, VERIFIED, SKIPPED, FAILED = "downloaded", "verified", "skipped", "failed"
STATUSES = (DOWNLOADED, VERIFIED, SKIPPED, FAILED)

_CONTENT_RANGE_RE = re.compile(r"bytes[ \t]+([0-9]{1,18})-([0-9]{1,18})/([0-9]{1,18}|\*)")


@dataclass(frozen=True)
class Outcome:
    """How one file ended: status, its size, bytes that crossed the network, and the error if it failed.

    ``files`` is how many dataset files it stands for: 1 for a file, the files placed (or found in
    place) for a ``--via-zip`` zip, whose ``size`` is then theirs, not the zip's.
    """

    path: str
    status: str
    size: int
    transferred: int = 0
    error: str | None = None
    files: int = 1


class Stopped(Exception):
    """The run is being interrupted (Ctrl-C): stop this file where it is, keeping the part."""


class Interrupt:
    """The stop signal shared by the jobs of a run.

    Setting it (on Ctrl-C) also shuts down the sockets of responses being read, so a job blocked
    on a stalled connection stops at once instead of after the read timeout.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reading: set[urllib3.BaseHTTPResponse] = set()

    def is_set(self) -> bool:
        """Has the run been interrupted?"""
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking at once if the run is interrupted; ``True`` if it was."""
        return self._event.wait(seconds)

    def set(self) -> None:
        """Interrupt the run: every job stops at its next chunk, blocked reads end now."""
        self._event.set()
        with self._lock:
            for response in self._reading:
                _cut(response)

    @contextlib.contextmanager
    def watching(self, response: urllib3.BaseHTTPResponse) -> Iterator[None]:
        """While the block runs, :meth:`set` cuts ``response``'s connection."""
        with self._lock:
            self._reading.add(response)
            if self._event.is_set():
                _cut(response)
        try:
            yield
        finally:
            with self._lock:
                self._reading.discard(response)


def _cut(response: urllib3.BaseHTTPResponse) -> None:
    with contextlib.suppress(Exception):  # already finished or released: nothing to cut
        response.shutdown()


def parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """``"bytes 100-199/1000"`` -> ``(100, 1000)``; ``None`` if absent or unreadable."""
    match = _CONTENT_RANGE_RE.fullmatch((value or "").strip())
    if match is None:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def validator_of(response: urllib3.BaseHTTPResponse) -> str | None:
    """The validator to send in a later ``If-Range``: a strong ETag, else Last-Modified."""
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return response.headers.get("Last-Modified")


def md5_of_file(path: Path, bar: FileBar | None = None, stop: Interrupt | None = None) -> str:
    """Hex MD5 of a file, read in chunks (updating ``bar``)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            if stop is not None and stop.is_set():
                raise Stopped
            digest.update(chunk)
            if bar is not None:
                bar.update(len(chunk))
    return digest.hexdigest()


#: What a transfer retries: the server's own "try again" and a failed or dropped connection.
_RETRYABLE: tuple[type[BaseException], ...] = (RetryableError, *CONNECTION_ERRORS)


class _WriteError(PermanentError):
    """The disk refused (full, read-only, permissions): retrying the network will not help."""


@dataclass(frozen=True)
class TransferContext:
    """What every transfer of one run shares: the dataset folder, the client, the record, retries, progress."""

    root: Path
    client: HttpClient
    record: VerificationRecord
    policy: RetryPolicy
    progress: Progress


def carry_out(step: Step, context: TransferContext, stop: Interrupt | None = None) -> Outcome:
    """Do what ``step`` says for its file, under ``context.root``; never raises for a failed file.

    Raises:
        Stopped: only when ``stop`` is set (the run is being interrupted).
    """
    job = _FileJob(step, context, stop or Interrupt())
    try:
        return job.run()
    except Stopped:
        raise
    except (PermanentError, OSError) as exc:
        log.error("%s: %s", step.file.path, exc)
        return Outcome(step.file.path, FAILED, job.known_size(), job.received, str(exc))


class _FileJob:
    """The state of one file's transfer: the part on disk, the MD5 of its bytes, counters."""

    def __init__(self, step: Step, context: TransferContext, stop: Interrupt) -> None:
        self.step, self.file, self.stop = step, step.file, stop
        self.final = context.root / step.file.path
        self.part = part_path(self.final)
        self.client, self.record, self.policy = context.client, context.record, context.policy
        self.progress = context.progress
        self.size = step.file.size  # None until the server says, for a file listed without a size
        self.digest = hashlib.md5(usedforsecurity=False)
        self.length = 0  # bytes in the part, all of them in self.digest
        self.received = 0  # bytes that crossed the network for this file in this run
        self.credited = 0  # bytes added to the overall progress for this file
        self.reached = 0  # the longest the part has been in this run
        partial = self.record.partial(self.file.path)
        self.validator = partial.validator if partial else None

    def _announce(self, exc: BaseException, seconds: float) -> None:
        log.info("%s: %s; retrying in %.1f s from byte %d", self.file.path, _describe(exc), seconds, self.length)

    def known_size(self) -> int:
        """The size an outcome reports: the listing's or the server's, 0 if neither said (a listed zip)."""
        return 0 if self.size is None else self.size

    def run(self) -> Outcome:
        if self.step.action is Action.SKIP:
            return Outcome(self.file.path, SKIPPED, self.known_size())
        self.final.parent.mkdir(parents=True, exist_ok=True)
        if self.step.action is Action.VERIFY and self._verify_existing():
            return Outcome(self.file.path, VERIFIED, self.known_size())
        if self.step.action is Action.RESUME:
            self._load_part(self.step.offset)
        else:
            self._clear()
        return self._download()

    def _verify_existing(self) -> bool:
        """Hash the final file already there; keep it if it matches, else delete it."""
        md5 = None
        if self.file.md5 is not None:  # without a checksum, the size (checked by the plan) is all there is
            with self.progress.file(self.file.name, self.file.size, verb="check") as bar:
                md5 = md5_of_file(self.final, bar, self.stop)
        if md5 == self.file.md5:
            self.record.mark_verified(self.file.path, self.final, self.file.md5)
            if self.part.exists():  # unlink of a missing file still fails on a read-only folder (--verify there)
                self.part.unlink(missing_ok=True)
            return True
        log.warning("%s: MD5 %s does not match the listing's %s; downloading it again", self.file.path, md5,
                    self.file.md5)  # fmt: skip
        return False

    def _load_part(self, offset: int) -> None:
        """Continue from the first ``offset`` bytes of the part: hash them (a local read)."""
        self.digest = hashlib.md5(usedforsecurity=False)
        with open_own_file(self.part, "rb") as f:
            while self.length < offset and (chunk := f.read(min(CHUNK_SIZE, offset - self.length))):
                self.digest.update(chunk)
                self.length += len(chunk)

    def _clear(self) -> None:
        """Start from byte 0: no final file, no part, nothing recorded."""
        self.final.unlink(missing_ok=True)
        self.part.unlink(missing_ok=True)
        self.record.forget(self.file.path)
        self.digest = hashlib.md5(usedforsecurity=False)
        self.length = 0
        self.validator = None
        self.progress.advance(-self.credited)
        self.credited = 0

    def _download(self) -> Outcome:
        failures = bad_copies = 0
        with self.progress.file(self.file.name, self.size, self.length) as bar:
            while True:
                if self.stop.is_set():
                    raise Stopped
                reached = self.reached
                try:
                    if self.size is None or self.length < self.size:
                        self._attempt(bar)
                    if self.size is not None and self.length < self.size:
                        raise RetryableError(f"connection closed after {self.length} of {self.size} bytes")
                except _RETRYABLE as exc:
                    if self.stop.is_set():  # the error is our own doing: the connection was cut
                        raise Stopped from exc
                    # only new bytes count as progress: a server that ignores Range and drops the
                    # connection at the same place every time must not keep us busy forever
                    failures = 1 if self.reached > reached else failures + 1
                    if failures >= self.policy.attempts:
                        msg = f"gave up after {failures} attempts without progress; last error: {_describe(exc)}"
                        raise PermanentError(msg) from exc
                    retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
                    announce = functools.partial(self._announce, exc)
                    self.policy.wait(failures, retry_after, self.stop.wait, announce=announce)
                    continue
                md5 = self.digest.hexdigest()
                if self.size is None:  # no length given: the body ended cleanly, that is all we know
                    self.size = self.length
                if self.length == self.size and (self.file.md5 is None or md5 == self.file.md5):
                    if self.length == 0:
                        self.part.touch()  # an empty file needs no request, so nothing created the part
                    os.replace(self.part, self.final)
                    self.record.mark_verified(self.file.path, self.final, self.file.md5)
                    return Outcome(self.file.path, DOWNLOADED, self.size, self.received)
                bad_copies += 1
                what = f"{self.length} bytes instead of {self.size}" if self.length != self.size else f"MD5 {md5}"
                problem = f"downloaded copy is bad ({what}, listing says MD5 {self.file.md5})"
                self._clear()
                bar.reset()
                if bad_copies >= self.policy.checksum_attempts:
                    raise PermanentError(f"{problem}; gave up after {bad_copies} bad copies")
                log.warning("%s: %s; deleted it, downloading again", self.file.path, problem)
                self.policy.wait(bad_copies, until=self.stop.wait)

    def _attempt(self, bar: FileBar) -> None:
        """One request: continue the part from ``self.length`` as far as the connection goes."""
        offset = self.length
        headers = {"Accept-Encoding": "identity"}
        if offset > 0:
            headers["Range"] = f"bytes={offset}-"
            if self.validator:
                headers["If-Range"] = self.validator
        response, url = self.client.open(self.file.url, headers)
        finished = False
        try:
            if offset > 0 and response.status == 206:
                span = parse_content_range(response.headers.get("Content-Range"))
                if span is None or span[0] != offset or span[1] not in (None, self.size or span[1]):
                    self._clear()
                    bar.reset()
                    got = response.headers.get("Content-Range")
                    raise RetryableError(f"asked for bytes {offset}- but got Content-Range {got!r}; restarting")
            elif offset > 0 and response.status == 200:
                log.info("%s: the server sent the whole file instead of bytes %d-; starting again from byte 0",
                         self.file.path, offset)  # fmt: skip
                self._clear()
                bar.reset()
            elif offset > 0 and response.status == 416:
                self._clear()
                bar.reset()
                raise RetryableError(f"the server cannot send bytes {offset}- (HTTP 416); restarting")
            else:
                check_status(response, url, frozenset({200}))
            if self.size is None:
                self.size = size_from_response(response)
            if self.length == 0:
                self.validator = validator_of(response)
                self.record.mark_partial(self.file.path, self.file.md5, self.validator)
            with self.stop.watching(response):
                finished = self._stream(response, bar)
        finally:
            if not finished:
                response.close()  # a connection with unread bytes must not go back to the pool
            response.release_conn()

    def _stream(self, response: urllib3.BaseHTTPResponse, bar: FileBar) -> bool:
        """Append the body to the part; ``True`` if it was read to its end."""
        try:
            out = open_own_file(self.part, "r+b" if self.length else "wb")
            out.seek(self.length)
            out.truncate()
        except UntrustedFileError as exc:
            raise _WriteError(str(exc)) from exc
        except OSError as exc:
            raise _WriteError(self._write_problem(exc)) from exc
        try:
            with out:
                if not self._copy(response, out, bar):
                    return False
                out.flush()
        except OSError as exc:  # a write, or the flush when closing (the disk filled up)
            raise _WriteError(self._write_problem(exc)) from exc
        return True

    def _copy(self, response: urllib3.BaseHTTPResponse, out: IO[bytes], bar: FileBar) -> bool:
        """Copy the body into ``out``; ``False`` if it went past the expected size."""
        while chunk := response.read1(CHUNK_SIZE, decode_content=False):
            if self.stop.is_set():
                raise Stopped
            out.write(chunk)
            self.digest.update(chunk)
            n = len(chunk)
            self.length += n
            self.reached = max(self.reached, self.length)
            self.received += n
            self.credited += n
            bar.update(n)
            self.progress.advance(n)
            if self.size is not None and self.length > self.size:
                return False
        return True

    def _write_problem(self, exc: OSError) -> str:
        """One line for a failed write: a full disk says which file and how much room it still needed."""
        if exc.errno == errno.ENOSPC:
            return disk_full_message(self.part, None if self.size is None else self.size - self.length)
        return f"cannot write {self.part}: {exc.strerror or exc}"


def size_from_response(response: urllib3.BaseHTTPResponse) -> int | None:
    """The whole file's size from a response: Content-Range's total (206), else Content-Length (200)."""
    if response.status == 206:
        span = parse_content_range(response.headers.get("Content-Range"))
        return span[1] if span else None
    return header_int(response.headers.get("Content-Length"))


def _describe(exc: BaseException) -> str:
    """A short message for a network error (urllib3 nests the useful part)."""
    if isinstance(exc, urllib3.exceptions.ProtocolError) and exc.args and isinstance(exc.args[0], str):
        text = exc.args[0]  # "Connection broken: IncompleteRead(...)" without the repeated inner error
    else:
        text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."
