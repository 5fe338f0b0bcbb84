"""One download run: list -> plan -> disk preflight -> transfer in parallel -> report.

This is the orchestration behind ``download_all.py``; the pieces it calls each do one thing
(:mod:`~rat7m.download.listing`, :mod:`~rat7m.download.plan`, :mod:`~rat7m.download.transfer`,
:mod:`~rat7m.download.zipmode` for ``--via-zip``, :mod:`rat7m.download.gdrive` for ``--mini-annotation``).
The disk check happens after planning and before the first byte is written.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from queue import SimpleQueue
from typing import IO

from rat7m import catalogue as cat
from rat7m import interrupt
from rat7m.download import gdrive
from rat7m.download.http import HttpClient, RetryPolicy
from rat7m.download.listing import list_remote_files
from rat7m.download.plan import Action, Step, plan_downloads
from rat7m.download.progress import Progress, human_bytes
from rat7m.download.record import VerificationRecord
from rat7m.download.transfer import (
    DOWNLOADED,
    FAILED,
    SKIPPED,
    STATUSES,
    Interrupt,
    Outcome,
    TransferContext,
    carry_out,
)
from rat7m.download.zipmode import ZIP_DIR, ZipJob, plan_zips, run_zip_job
from rat7m.errors import BadInputError, NotEnoughSpaceError, Rat7mError
from rat7m.untrusted import UntrustedFileError, open_own_file

__all__ = [
    "LOCK_NAME",
    "ZIP_URL",
    "NotEnoughSpaceError",
    "Options",
    "Report",
    "check_disk_space",
    "disk_free",
    "download_dataset",
    "existing_ancestor",
    "fetch_mini_annotation",
    "format_plan",
    "format_summary",
    "pickle_problem",
    "retry_policy",
    "run_parallel",
    "summary_counts",
]

log = logging.getLogger(__name__)

#: Lock file (in the output folder) held while a run writes there.
LOCK_NAME = ".rat7m-download.lock"
#: Where Figshare serves whole articles as zips (``{ZIP_URL}/articles/{id}/versions/{v}``).
ZIP_URL = "https://figshare.com/ndownloader"


def disk_free(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (a module-level seam: tests replace it)."""
    return shutil.disk_usage(path).free


#: The retry policy of a run (a module-level seam: tests swap in one that does not sleep).
retry_policy = RetryPolicy()


@dataclass
class Options:
    """What to download and how: the command line, as data.

    ``figshare`` is False when only the mini-RAT7M pickle was asked for (``--mini-annotation``
    alone); ``drive_url`` ``None`` means Google Drive itself.
    """

    out: Path = Path(".")
    api_url: str = cat.FIGSHARE_API_URL
    zip_url: str = ZIP_URL
    jobs: int = 4
    recordings: Sequence[cat.Recording] = cat.RECORDINGS
    what: str = "all"
    cameras: Sequence[str] = cat.CAMERA_NAMES
    dry_run: bool = False
    verify: bool = False
    via_zip: bool = False
    figshare: bool = True
    mini_annotation: bool = False
    drive_url: str | None = None
    quiet: bool = False


@dataclass
class Report:
    """What a run planned and how each file ended."""

    out: Path
    steps: list[Step] = field(default_factory=list)
    zip_jobs: list[ZipJob] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    needed: int = 0
    free: int | None = None
    disk_path: Path | None = None

    @property
    def failed(self) -> bool:
        """Did anything fail (a file, or an article that could not be listed)?"""
        return bool(self.errors) or any(o.status == FAILED for o in self.outcomes)

    @property
    def nothing_listed(self) -> bool:
        """Did listing (or asking the zips' sizes) fail so that there is no plan at all?"""
        return bool(self.errors) and not self.steps and not self.zip_jobs


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest existing parent (where the free space is measured)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk_space(needed: int, free: int, path: Path) -> None:
    """Refuse a plan that does not fit.

    Raises:
        NotEnoughSpaceError: ``needed`` is more than ``free``.
    """
    if needed > free:
        msg = (
            f"not enough disk space: the download needs {human_bytes(needed)}, {human_bytes(free)} free on {path}; "
            "free some space, choose another --out, or select less (--recordings, --cameras, --what)"
        )
        raise NotEnoughSpaceError(msg)


class _Stragglers:
    """A run's download threads that it stopped waiting for (a second Ctrl-C, an error), which may still write
    into its folder: the run's lock is kept until the last of them has ended, then released."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._running = 0
        self._kept: tuple[IO, Path] | None = None

    def add(self, futures: Iterable[Future]) -> None:
        """Tasks not finished when the run stopped waiting; each is counted until it ends."""
        futures = [future for future in futures if not future.done()]
        with self._guard:
            self._running += len(futures)
        for future in futures:
            future.add_done_callback(self._ended)

    def keep(self, handle: IO, path: Path) -> bool:
        """Keep the run's lock (open file ``handle`` at ``path``) while a straggler runs; ``False`` if none does."""
        with self._guard:
            if self._running:
                self._kept = (handle, path)
            return bool(self._running)

    def _ended(self, future: Future) -> None:
        with self._guard:
            self._running -= 1
            kept, self._kept = (self._kept, None) if not self._running else (None, self._kept)
        if kept is not None:
            _release_lock(*kept)


#: The stragglers of the run in progress in this context (set by :func:`_exclusive`, for :func:`run_parallel`).
_RUN_STRAGGLERS: ContextVar[_Stragglers | None] = ContextVar("rat7m_download_stragglers", default=None)


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` so two runs never write the same ``.part`` files.

    The lock is an ``flock`` on :data:`LOCK_NAME`, which dies with the process, even under
    SIGKILL, so a killed run never leaves a stale lock behind (only the file, which the next run
    takes over). A run removes the file at its end, while still holding the lock. A run that
    opened the file just before that removal may then lock a file that is no longer there, so
    after locking we check that the file we hold is the one at the path, and open again if not
    (the usual pattern for lock files that get removed).
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    path = out / LOCK_NAME
    while True:
        handle = _open_lock(path)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            msg = f"another download is already writing to {out} (pid {holder}); wait for it or stop it first"
            raise BadInputError(msg) from None
        if _same_file(handle, path):
            break
        handle.close()  # removed by the run that just finished: lock the file now at the path
    stragglers = _Stragglers()
    token = _RUN_STRAGGLERS.set(stragglers)
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        _RUN_STRAGGLERS.reset(token)
        if not stragglers.keep(handle, path):  # else released when the threads still writing have ended
            _release_lock(handle, path)


def _release_lock(handle: IO, path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()  # before unlocking: whoever opened it meanwhile sees it gone and opens anew
    handle.close()


def _open_lock(path: Path) -> IO:
    """Open (creating) the lock file without following a symlink planted at its name."""
    try:
        return io.TextIOWrapper(open_own_file(path, "a+b"), encoding="utf-8")
    except OSError as exc:
        msg = f"cannot use the lock file {exc}" if isinstance(exc, UntrustedFileError) else \
            f"cannot create the lock file {path}: {exc.strerror or exc}"
        raise BadInputError(msg) from exc


def _same_file(handle: IO, path: Path) -> bool:
    """Is the open ``handle`` still the file at ``path`` (not removed or replaced since it was opened)?"""
    try:
        there = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)


def _check_writable(out: Path) -> None:
    """Create the output folder and make sure we can write in it, before any download starts."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as exc:
        raise BadInputError(f"cannot write to --out {out}: {exc.strerror or exc}") from exc


def run_parallel(tasks: Sequence[tuple[str, Callable[[Interrupt], Outcome]]], jobs: int,
                 priority: Sequence[tuple] | None = None) -> list[Outcome]:  # fmt: skip
    """Run ``(path, task)`` pairs on ``jobs`` threads; outcomes in the order of ``tasks``.

    Tasks start in the order of ``tasks``, or of ``priority`` (one sort key per task, lowest first).
    A task that raises (a bug) fails its own file only. On Ctrl-C or SIGTERM the threads stop where
    they are (parts are kept for the next run), and once they have, ``KeyboardInterrupt`` (or
    :class:`~rat7m.interrupt.Terminated`) goes on up; a second one stops waiting for them (a thread in
    a read that only its timeout ends), and a third ends the process (:mod:`rat7m.interrupt`).
    """
    stop = Interrupt()
    outcomes: list[Outcome | None] = [None] * len(tasks)
    order = range(len(tasks)) if priority is None else sorted(range(len(tasks)), key=lambda i: priority[i])
    finished: SimpleQueue[Future[Outcome] | None] = SimpleQueue()  # futures as they finish; None: a stop signal
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="download")
    # Signals are noted and wake the loop, and act as it ends (rat7m.interrupt.deferred says why).
    with interrupt.deferred(wake=lambda: finished.put(None)) as signals:
        completed, left = False, len(tasks)  # tasks not known to have ended
        futures: dict[Future[Outcome], int] = {}
        try:
            for i in order:
                futures[pool.submit(tasks[i][1], stop)] = i
            for future in futures:
                future.add_done_callback(finished.put)  # called by the thread that ran the task
            while left and len(signals) < 2:
                if signals and not stop.is_set():
                    stop.set()
                    pool.shutdown(wait=False, cancel_futures=True)  # files not started are cancelled
                done = finished.get()
                if done is None:
                    continue
                left -= 1
                if signals:
                    continue
                i = futures[done]
                try:
                    outcomes[i] = done.result()
                except Exception as exc:  # a bug must not take the other files down with it
                    log.exception("%s: unexpected error", tasks[i][0])
                    outcomes[i] = Outcome(tasks[i][0], FAILED, 0, 0, repr(exc))
            completed = not signals
        finally:
            if not completed:  # a signal, or an error here: nothing more starts, what runs stops
                stop.set()
                pool.shutdown(wait=False, cancel_futures=True)
            stragglers = _RUN_STRAGGLERS.get()
            if left and stragglers is not None:  # not waited for (a second signal, an error): a thread may still write
                stragglers.add(futures)
    pool.shutdown()
    return [o for o in outcomes if o is not None]


def pickle_problem(path: Path) -> str | None:
    """What is wrong with the pickle at ``path`` (truncated, unsafe, not a pickle), or ``None`` if it loads.

    Loading goes through :func:`rat7m.safe_pickle.safe_load`: no code from the file runs, and a
    pickle that ends before its STOP opcode is reported as truncated.
    """
    from rat7m.safe_pickle import safe_load  # numpy is only needed when the table is asked for

    try:
        safe_load(path)
    except (Rat7mError, OSError, ValueError, EOFError, MemoryError, RecursionError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def fetch_mini_annotation(out: Path, client: HttpClient, drive_url: str | None, progress: bool) -> Outcome:
    """Fetch the official mini-RAT7M table from Google Drive unless a complete, loadable pickle is there.

    "Complete" means the safe loader reads it to its STOP opcode: a pickle cut short by a dropped
    connection is never taken for done (the first bytes alone say nothing about the end).
    """
    dest = out / cat.MINI_ANNOTATION_NAME
    if dest.is_file() and not dest.is_symlink():
        problem = pickle_problem(dest)
        if problem is None:
            return Outcome(dest.name, SKIPPED, dest.stat().st_size)
        log.warning("%s is not a complete pickle (%s); fetching it again", dest, problem)
    part = dest.with_name(dest.name + ".part")
    if os.path.lexists(dest):  # a bad file never keeps the final name: it becomes the part to continue
        if os.path.lexists(part) or dest.is_symlink():
            dest.unlink()
        else:
            os.replace(dest, part)
    try:
        before = os.lstat(part).st_size
    except OSError:
        before = 0
    base = drive_url or gdrive.DRIVE_URL
    try:
        gdrive.download_drive_file(
            cat.MINI_ANNOTATION_DRIVE_ID, dest, pool=client.pool_for(base), base_url=base, progress=progress,
            expect=gdrive.looks_like_pickle, check=pickle_problem,
        )  # fmt: skip
    except Rat7mError as exc:
        log.error("%s: %s", dest.name, exc)
        return Outcome(dest.name, FAILED, 0, 0, str(exc))
    size = dest.stat().st_size
    return Outcome(dest.name, DOWNLOADED, size, max(0, size - before))


def download_dataset(options: Options, *, client: HttpClient | None = None) -> Report:
    """Run a whole download as ``options`` say and report what happened.

    Raises:
        NotEnoughSpaceError: before anything is downloaded, if the plan does not fit on disk.
    """
    out = Path(options.out)
    client = client or HttpClient(maxsize=max(1, options.jobs))
    policy = retry_policy
    where = existing_ancestor(out)
    writable = where.is_dir() and os.access(where, os.W_OK | os.X_OK)
    if not writable and not (options.dry_run or options.verify):  # those two only read: a read-only dataset is fine
        raise BadInputError(f"cannot write to --out {out}: {where} is not a folder we may write in")
    report = Report(out)
    record = VerificationRecord.load(out)
    if options.figshare and options.via_zip:
        report.zip_jobs, errors = plan_zips(
            client, options.zip_url, options.recordings, options.what, options.cameras, out, record, policy
        )
        report.errors.extend(errors)
    elif options.figshare:
        listing = list_remote_files(client, options.api_url, options.recordings, options.what, options.cameras, policy)
        report.errors.extend(listing.errors)
        report.errors.extend(f"not downloaded: {why}" for why in listing.refused)
        report.steps = plan_downloads(listing.files, out, record, options.verify)
    if report.nothing_listed and not options.mini_annotation:
        return report  # nothing to plan or check: the errors say why (no folder, no lock made)
    report.needed = sum(step.remaining for step in report.steps) + sum(job.needed for job in report.zip_jobs)
    report.disk_path = existing_ancestor(out)
    report.free = disk_free(report.disk_path)
    if options.dry_run:
        if options.mini_annotation:
            there = (out / cat.MINI_ANNOTATION_NAME).is_file()
            report.notes.append(f"{cat.MINI_ANNOTATION_NAME}: " + ("present" if there else
                                "to fetch from Google Drive (not counted in the disk check)"))  # fmt: skip
        return report
    if not writable:  # --verify of a read-only dataset: hash what is there, fetch and record nothing
        if report.needed or report.zip_jobs or options.mini_annotation:
            msg = f"cannot write to --out {out}: {where} is read-only and files are missing; --verify only checks them"
            raise BadInputError(msg)
        record.read_only = True
        _transfer(report, options, out, client, record, policy)
        return report
    check_disk_space(report.needed, report.free, report.disk_path)
    _check_writable(out)
    with _exclusive(out):
        if report.steps:  # another run may have finished while we listed: plan from the disk as it is now
            record = VerificationRecord.load(out)
            report.steps = plan_downloads([s.file for s in report.steps], out, record, options.verify)
        _transfer(report, options, out, client, record, policy)
    return report


def _transfer(
    report: Report, options: Options, out: Path, client: HttpClient, record: VerificationRecord, policy: RetryPolicy
) -> None:
    """Carry out the plan (files or zips in parallel, then the Drive pickle) into ``report.outcomes``."""
    transfer_total = sum(s.remaining for s in report.steps) + sum(j.step.remaining for j in report.zip_jobs if j.step)
    progress = Progress(transfer_total, enabled=not options.quiet)
    context = TransferContext(out, client, record, policy, progress)
    tasks: list[tuple[str, Callable[[Interrupt], Outcome]]] = [
        (step.file.path, functools.partial(carry_out, step, context)) for step in report.steps
    ]
    tasks += [(job.path, functools.partial(run_zip_job, job, context, options.recordings, options.cameras))
              for job in report.zip_jobs]  # fmt: skip
    # Annotations first (small, and what building the table needs), then the largest first: on a listing
    # of mixed sizes a run that starts a large file last ends with one thread busy and the others idle.
    priority = [(s.file.kind != "annotations", -(s.file.size or 0 if s.action is Action.VERIFY else s.remaining))
                for s in report.steps]  # fmt: skip
    priority += [(True, -job.needed) for job in report.zip_jobs]
    try:
        with progress.logging_above_bars():
            report.outcomes = run_parallel(tasks, options.jobs, priority)
    finally:
        progress.close()
        record.flush()
        if report.zip_jobs:
            with contextlib.suppress(OSError):  # not empty: it holds the .part of a zip that failed
                (out / ZIP_DIR).rmdir()
    if options.mini_annotation:
        report.outcomes.append(fetch_mini_annotation(out, client, options.drive_url, progress.enabled))


def format_plan(report: Report) -> str:
    """The ``--dry-run`` text: per recording and kind, files, size, what is done, what is left.

    When nothing could be listed there is no plan to show: only the notes and the errors.
    """
    if report.nothing_listed:
        return "\n".join([*report.notes, *(f"error: {e}" for e in report.errors)])
    groups: dict[tuple[str, str], list[Step]] = {}
    for step in report.steps:
        groups.setdefault((step.file.recording, step.file.kind), []).append(step)
    lines = [f"{'recording':<10} {'kind':<12} {'files':>6} {'size':>11} {'done':>6} {'check':>6} {'to get':>7} "
             f"{'remaining':>11}"]  # fmt: skip
    for (recording, kind), steps in groups.items():
        lines.append(_plan_line(recording, kind, steps))
    lines.append(_plan_line("all", "", report.steps))
    for step in report.steps:
        log.debug("%-8s %s (%s)", step.action.value, step.file.path, step.reason)
    for job in report.zip_jobs:
        if job.step is None:
            lines.append(f"zip {job.path}: unpacked earlier, its files are in place")
        else:
            size = "size unknown" if job.step.file.size is None else human_bytes(job.step.file.size)
            lines.append(f"zip {job.path} ({size}): {job.step.action.value} ({job.step.reason}), then unpack")
    lines.extend(report.notes)
    if report.free is not None:
        fits = "fits" if report.needed <= report.free else "DOES NOT FIT"
        lines.append(f"disk: needs {human_bytes(report.needed)}, {human_bytes(report.free)} free on "
                     f"{report.disk_path} ({fits})")  # fmt: skip
    lines.extend(f"error: {e}" for e in report.errors)
    return "\n".join(lines)


def _plan_line(recording: str, kind: str, steps: Sequence[Step]) -> str:
    count = {action: sum(s.action is action for s in steps) for action in Action}
    size = sum(s.file.size or 0 for s in steps)
    remaining = sum(s.remaining for s in steps)
    to_get = count[Action.FETCH] + count[Action.RESUME] + count[Action.RESTART]
    return (f"{recording:<10} {kind:<12} {len(steps):>6} {human_bytes(size):>11} {count[Action.SKIP]:>6} "
            f"{count[Action.VERIFY]:>6} {to_get:>7} {human_bytes(remaining):>11}")  # fmt: skip


def format_summary(report: Report) -> str:
    """The end-of-run table: files and bytes per status, bytes transferred, and every failure by name.

    A run that failed before any transfer (nothing could be listed) shows only why.
    """
    if report.nothing_listed and not report.outcomes:
        return "\n".join(["FAILED before downloading anything (rerun the same command once this is fixed):",
                          *(f"  {e}" for e in report.errors)])  # fmt: skip
    lines = [f"{'status':<12} {'files':>6} {'bytes':>11}"]
    for status in STATUSES:
        chosen = [o for o in report.outcomes if o.status == status]
        lines.append(f"{status:<12} {sum(o.files for o in chosen):>6} {human_bytes(sum(o.size for o in chosen)):>11}")
    transferred = sum(o.transferred for o in report.outcomes)
    lines.append(f"{'transferred':<12} {'':>6} {human_bytes(transferred):>11}  (over the network)")
    failures = [o for o in report.outcomes if o.status == FAILED]
    if failures or report.errors:
        lines.append("FAILED (rerun the same command to retry; finished files are kept):")
        lines.extend(f"  {o.path}: {o.error}" for o in failures)
        lines.extend(f"  {e}" for e in report.errors)
    return "\n".join(lines)


def summary_counts(report: Report) -> dict[str, int]:
    """Dataset files per status (for scripts and tests; a ``--via-zip`` zip counts the files it placed)."""
    return {status: sum(o.files for o in report.outcomes if o.status == status) for status in STATUSES}
