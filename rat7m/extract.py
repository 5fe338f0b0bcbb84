"""Frame extraction: turn the annotation table's wanted frames into JPEGs, exactly, resumably, in parallel.

The table says, for every sample and camera, which video frame is wanted (``frame_idx``) and where
its image goes (``image_path``, relative to the dataset root). Extraction is planned per video
chunk: the wanted frames of a chunk are the union over the table's rows, each chunk is decoded
once from its start to its last wanted frame (the decoder chosen per chunk: PyAV, skipping
unwanted non-reference frames, where the stream has B-frames and PyAV is installed; else OpenCV's
``grab()``: see :mod:`rat7m.video`), and chunks are spread over a
process pool (one decoder thread per process: on a busy machine that beats frame threads inside
one process).

Every JPEG is written to a temporary name in its folder and renamed (:func:`rat7m.fileio.atomic_write`),
so a kill never leaves a truncated image under a final name; a rerun skips images that are complete
(they start with the JPEG SOI marker and end with the EOI marker ``FFD9``), so it only does what is
left. Faults (missing, truncated or short chunks) do not stop the run: they are collected, frame by
frame, into the summary.

For clusters, :func:`shard_jobs` splits the chunks deterministically into N shards balanced by
estimated decoding cost, so N independent processes (a SLURM job array) cover everything once.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import multiprocessing
import os
import re
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import process as futures_process
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import resource_tracker
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import cv2
import numpy as np

from rat7m import catalogue, interrupt
from rat7m.catalogue import Recording
from rat7m.cli import command
from rat7m.errors import BadInputError
from rat7m.fileio import atomic_write, remove_stale_temporaries
from rat7m.model import Table
from rat7m.untrusted import check_image_path
from rat7m.video import Chunk, ChunkIndex, ChunkReadError, choose_decoder, read_frames, resolve_decoder

if TYPE_CHECKING:  # imported where a run starts: not paid by a refusal or by each pool worker
    from tqdm import tqdm

__all__ = [
    "DEFAULT_QUALITY",
    "PROGRESS_INTERVAL",
    "TERMINATE_TIMEOUT",
    "WANTED_FRAME_COST",
    "WATCHDOG_INTERVAL",
    "WORKER_DIED",
    "ChunkJob",
    "Failure",
    "JobResult",
    "Summary",
    "Target",
    "encode_jpeg",
    "extract",
    "format_failures",
    "format_frames",
    "is_complete_jpeg",
    "parse_shard",
    "partial_download_hint",
    "plan_jobs",
    "shard_from_environment",
    "shard_jobs",
    "verify",
    "wanted_images",
]

log = logging.getLogger(__name__)

#: JPEG quality used unless the user asks for another (OpenCV's scale, 0-100).
DEFAULT_QUALITY = 95
#: Estimated cost of converting and encoding a wanted frame, in units of one ``grab()`` (measured: ~3x).
WANTED_FRAME_COST = 3
#: Seconds between progress messages from a worker process.
PROGRESS_INTERVAL = 0.2
#: Seconds between a worker's checks that the main process is still alive.
WATCHDOG_INTERVAL = 0.5
#: Seconds to wait for a terminated worker before killing it (Ctrl-C must end the run within ~2 s).
TERMINATE_TIMEOUT = 0.5

#: Why images of chunks in flight when a worker process died are reported as failed.
WORKER_DIED = "a worker process died (killed, out of memory, or crashed in the decoder); rerun to finish"

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"


class Target(NamedTuple):
    """One image to write: a recording-wide frame index and its path relative to the root.

    A named tuple, not a dataclass: a full run plans 676,380 of them, and a tuple holds no ``__dict__``.
    """

    frame: int
    path: str


@dataclass(frozen=True)
class ChunkJob:
    """The wanted images of one chunk of one camera: the unit of work, of progress and of sharding.

    ``chunk`` is ``None`` when no chunk file starts at or before the frames (``missing`` says why);
    such a job only checks which of its images already exist and reports the others as failed.
    """

    recording: Recording
    camera: str
    chunk: Chunk | None
    targets: tuple[Target, ...]  # sorted by frame
    next_start: int | None = None  # start of the camera's next chunk, to name a gap after a short chunk
    missing: str = ""

    @property
    def name(self) -> str:
        """The chunk file name, or a description of the frames without a chunk."""
        if self.chunk is not None:
            return self.chunk.name
        return f"{self.recording.name}-camera{catalogue.camera_number(self.camera)} (no chunk)"

    @property
    def key(self) -> tuple[int, int, int]:
        """Sort key: recording order, camera number, chunk start (-1 without a chunk)."""
        start = self.chunk.start if self.chunk is not None else -1
        return catalogue.RECORDINGS.index(self.recording), catalogue.camera_number(self.camera), start

    @property
    def frames(self) -> list[int]:
        """The distinct wanted frames, sorted."""
        return sorted({t.frame for t in self.targets})

    @property
    def cost(self) -> int:
        """Estimated work in ``grab()`` units: decode up to the last wanted frame, plus the wanted frames."""
        frames = self.frames
        if self.chunk is None or not frames:
            return len(frames)
        return frames[-1] - self.chunk.start + 1 + WANTED_FRAME_COST * len(frames)


@dataclass(frozen=True)
class Failure:
    """An image that could not be written (or, with ``--verify``, is missing or broken), and why."""

    recording: str
    camera: str
    frame: int
    path: str
    reason: str


@dataclass
class JobResult:
    """What a worker did with one job."""

    written: int = 0
    skipped: int = 0  # already complete (extraction)
    verified: int = 0  # present, complete and decodable (verification)
    decoded: int = 0
    decoder: str = ""  # which decoder read the chunk ("" if none was opened)
    failures: list[Failure] = field(default_factory=list)


@dataclass
class Summary:
    """The outcome of an extraction or a verification, for the final report."""

    images: int = 0
    written: int = 0
    skipped: int = 0
    verified: int = 0
    decoded: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    decoders: dict[str, int] = field(default_factory=dict)  # chunks read by each decoder

    def add(self, result: JobResult) -> None:
        """Add one job's result."""
        if result.decoder:
            self.decoders[result.decoder] = self.decoders.get(result.decoder, 0) + 1
        self.written += result.written
        self.skipped += result.skipped
        self.verified += result.verified
        self.decoded += result.decoded
        self.failures.extend(result.failures)

    @property
    def decoded_by(self) -> str:
        """Which decoder read the chunks: ``pyav``, ``opencv``, or ``opencv (12 chunks) and pyav (6 chunks)``."""
        if len(self.decoders) <= 1:
            return next(iter(self.decoders), "no decoder")
        return " and ".join(f"{name} ({count} chunks)" for name, count in sorted(self.decoders.items()))


# --------------------------------------------------------------------------------------------- planning


def wanted_images(
    table: Mapping[str, Any], recordings: Iterable[Recording], cameras: Iterable[str]
) -> dict[tuple[Recording, str], list[Target]]:
    """The distinct images the table wants, per (recording, camera), sorted by frame.

    A frame wanted by several rows is one target (unless the rows give different paths).

    Args:
        table: an annotation table as returned by ``rat7m.table.load_annotation`` or
            ``rat7m.table_build.build_table`` (its layout already validated).
        recordings: the recordings to include.
        cameras: camera names (``Camera1`` ..) to include.

    Raises:
        BadInputError: a chosen camera has no column, a frame index is negative, an
            ``image_path`` would leave the dataset root, or two frames share an ``image_path``.
    """
    table = Table.of(table)
    columns = table.columns
    recordings = list(recordings)
    wanted: dict[tuple[Recording, str], list[Target]] = {}
    odd_paths = 0
    claimed: dict[str, tuple[str, str, int]] = {}
    rows_of = dict(table.recordings())  # once, not per camera and recording
    for camera in cameras:
        if camera not in columns["frame_idx"] or camera not in columns["image_path"]:
            raise BadInputError(f"the annotation table has no column for {camera}; choose others with --cameras")
        frames_all = np.asarray(columns["frame_idx"][camera]).astype(np.int64)
        paths_all = np.asarray(columns["image_path"][camera])
        negative = np.flatnonzero(frames_all < 0)
        if negative.size:
            row = int(negative[0])
            raise BadInputError(f"annotation table: frame_idx[{camera!r}][{row}] = {frames_all[row]} is negative")
        for recording in recordings:
            rows = rows_of.get(recording, np.empty(0, dtype=np.int64))
            pairs = set()
            for row, frame, path in zip(
                rows.tolist(), frames_all[rows].tolist(), paths_all[rows].tolist(), strict=True
            ):
                path = str(path)
                if path != catalogue.image_path(recording, camera, frame):
                    check_image_path(path, row, camera)
                    odd_paths += 1
                claim = (recording.name, camera, frame)
                if claimed.setdefault(path, claim) != claim:  # else one frame would overwrite the other
                    other = claimed[path]
                    msg = (
                        f"annotation table: image_path[{camera!r}][{row}] = {path!r} (frame {frame}) is also "
                        f"the path of frame {other[2]} of {other[0]} {other[1]}: one image cannot hold both"
                    )
                    raise BadInputError(msg)
                pairs.add((frame, path))
            if pairs:
                wanted[(recording, camera)] = [Target(f, p) for f, p in sorted(pairs)]
    if odd_paths:
        log.warning(
            "%d image paths in the table do not follow the images_unpacked/<recording>/camera<n>/"
            "frame_XXXXXX.jpg convention; writing them where the table says",
            odd_paths,
        )
    return wanted


def plan_jobs(
    table: Mapping[str, Any], index: ChunkIndex, recordings: Iterable[Recording], cameras: Iterable[str]
) -> list[ChunkJob]:
    """Group the table's wanted images by the chunk holding their frame; sorted by :attr:`ChunkJob.key`.

    The chunk of frame ``f`` is the one with the largest start ``<= f`` (starts sorted as numbers);
    frames before a camera's first chunk, or of a camera without chunks, form a job without a chunk.
    """
    jobs = []
    for (recording, camera), targets in wanted_images(table, recordings, cameras).items():
        chunks = index.chunks(recording, camera)
        starts = [c.start for c in chunks]
        groups: dict[int, list[Target]] = defaultdict(list)
        for target in targets:
            groups[bisect.bisect_right(starts, target.frame) - 1].append(target)
        for i, group in sorted(groups.items()):
            if i >= 0:
                next_start = index.next_start(chunks[i])
                jobs.append(ChunkJob(recording, camera, chunks[i], tuple(group), next_start))
                continue
            if chunks:
                missing = f"no chunk starts at or before these frames (the first is {chunks[0].name})"
            else:
                missing = f"no video chunk of {recording.name} camera{catalogue.camera_number(camera)} found"
            jobs.append(ChunkJob(recording, camera, None, tuple(group), missing=missing))
    return sorted(jobs, key=lambda job: job.key)


def partial_download_hint(jobs: Sequence[ChunkJob], index: ChunkIndex, cameras: Sequence[str]) -> str:
    """A hint naming the ``--recordings``/``--cameras`` that match the videos on disk, when whole cameras are missing.

    After ``download_all.py --cameras 1,2`` every frame of cameras 3-6 fails with "no video chunk";
    the fix is to say which selection the disk holds. ``""`` when no (recording, camera) lacks all its chunks.
    """
    recordings = sorted({job.recording for job in jobs}, key=catalogue.RECORDINGS.index)
    present = {(r, c) for r in recordings for c in cameras if index.chunks(r, c)}
    if all((job.recording, job.camera) in present for job in jobs if job.chunk is None):
        return ""
    if not present:
        return f"hint: no video chunks of the chosen recordings and cameras are on disk under {catalogue.VIDEO_DIR}/"
    recs = [r for r in recordings if any((r, c) in present for c in cameras)]
    cams = [c for c in cameras if all((r, c) in present for r in recs)] or [
        c for c in cameras if any((r, c) in present for r in recs)
    ]
    numbers = ",".join(str(catalogue.camera_number(c)) for c in cams)
    selection = f"--recordings {','.join(r.name for r in recs)} --cameras {numbers}"
    return (
        f"hint: the videos on disk are a partial download; to extract only what is there, pass {selection} "
        f"(or download the rest with {command('download')})"
    )


# --------------------------------------------------------------------------------------------- sharding

_SHARD_RE = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``K/N`` (0 <= K < N) into ``(K, N)``.

    Raises:
        BadInputError: the text is not of that form.
    """
    match = _SHARD_RE.fullmatch(text)
    if match is None:
        raise BadInputError(f"--shard {text!r}: expected K/N with 0 <= K < N, e.g. 0/4")
    k, n = int(match.group(1)), int(match.group(2))
    if not 0 <= k < n:
        raise BadInputError(f"--shard {text!r}: expected K/N with 0 <= K < N, e.g. 0/4 (K counts from 0)")
    return k, n


def shard_from_environment(environ: Mapping[str, str]) -> tuple[int, int, str] | None:
    """The shard of a SLURM array task: ``(K, N, description)``, or ``None`` outside a job array.

    ``K = SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN`` and ``N = SLURM_ARRAY_TASK_COUNT``, so arrays
    numbered from 0 or from 1 both work; the array must be one contiguous range (``--array=0-7``).

    Raises:
        BadInputError: the variables are set but do not describe a contiguous array.
    """
    if "SLURM_ARRAY_TASK_ID" not in environ or "SLURM_ARRAY_TASK_COUNT" not in environ:
        return None
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT")
    described = ", ".join(f"{n}={environ[n]}" for n in names if n in environ)
    try:
        task = int(environ["SLURM_ARRAY_TASK_ID"])
        first = int(environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        count = int(environ["SLURM_ARRAY_TASK_COUNT"])
    except ValueError:
        raise BadInputError(f"cannot read the shard from {described}") from None
    k = task - first
    if not 0 <= k < count:
        msg = f"{described} is not a contiguous job array; submit with --array=0-{count - 1} or pass --shard K/N"
        raise BadInputError(msg)
    return k, count, f"from {described}"


def shard_jobs(jobs: Sequence[ChunkJob], k: int, n: int) -> list[ChunkJob]:
    """The jobs of shard ``k`` of ``n``: every job goes to exactly one shard, the same one in every process.

    Deterministic greedy balance: jobs are taken by decreasing estimated cost (ties by chunk key)
    and each goes to the shard with the least cost so far (ties to the lowest shard). The costs
    come from the table and the chunk names only, never from what is already on disk, so shards
    running at the same time agree.
    """
    loads = [0] * n
    mine = []
    for job in sorted(jobs, key=lambda j: (-j.cost, j.key)):
        shard = min(range(n), key=lambda s: (loads[s], s))
        loads[shard] += max(job.cost, 1)
        if shard == k:
            mine.append(job)
    return sorted(mine, key=lambda job: job.key)


# --------------------------------------------------------------------------------------------- running


def extract(
    jobs: Sequence[ChunkJob],
    root: str | os.PathLike,
    *,
    processes: int = 1,
    quality: int = DEFAULT_QUALITY,
    overwrite: bool = False,
    progress: bool = True,
    decoder: str = "auto",
) -> Summary:
    """Write every job's images under ``root``; faults are collected in the summary, not raised.

    Args:
        jobs: what to extract (from :func:`plan_jobs`, maybe through :func:`shard_jobs`).
        root: the dataset root; images go to ``root / target.path``.
        processes: worker processes, one chunk at a time each; with more than one, each decodes
            with one thread (with one, the decoder uses its own threads).
        quality: JPEG quality, 0-100.
        overwrite: redo images that already exist.
        progress: show a tqdm bar over images.
        decoder: ``auto`` (per chunk: PyAV if installed and the stream has B-frames, else OpenCV; see
            :func:`rat7m.video.choose_decoder`), ``opencv`` or ``pyav``; both are frame-exact.

    Raises:
        BadInputError: ``decoder`` is unknown, or ``pyav`` while PyAV is not installed.
    """
    resolve_decoder(decoder)  # once, here: a missing PyAV is bad input, not a fault per chunk
    threads = 1 if processes > 1 and len(jobs) > 1 else None  # a process per core: one decoder thread each
    args = (str(root), quality, overwrite, threads, decoder)
    return _run(_extract_job, jobs, args, processes, progress, "extract", partial(_unfinished, root=str(root)))


def verify(jobs: Sequence[ChunkJob], root: str | os.PathLike, *, processes: int = 1, progress: bool = True) -> Summary:
    """Check that every job's images exist, are complete and decode; nothing is written.

    Missing or broken images are the summary's failures.
    """
    return _run(_verify_job, jobs, (str(root),), processes, progress, "verify", partial(_unfinished, root=None))


def is_complete_jpeg(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a whole JPEG file: it starts with SOI ``FFD8`` and ends with EOI ``FFD9``.

    Images are only ever renamed into place once written, so a partial file can only come from
    elsewhere (another tool, a crash of the file system): it lacks the EOI marker and is redone.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(-2, os.SEEK_END)
            return head == _JPEG_SOI and f.read(2) == _JPEG_EOI
    except OSError:  # missing, or shorter than 2 bytes (seek before the start)
        return False


def _extract_job(
    job: ChunkJob,
    report: Callable[[int], None],
    root: str,
    quality: int,
    overwrite: bool,
    threads: int | None,
    decoder: str,
) -> JobResult:
    """Extract one job's images (run in a worker process)."""
    result = JobResult()
    _remove_leftovers(root, job.targets)
    todo: dict[int, list[Target]] = defaultdict(list)
    for target in job.targets:
        if not overwrite and is_complete_jpeg(Path(root, target.path)):
            result.skipped += 1
        else:
            todo[target.frame].append(target)
    report(result.skipped)
    if not todo:
        return result
    if job.chunk is None:
        _fail(result, job, todo, job.missing, report)
        return result
    start = job.chunk.start
    result.decoder = choose_decoder(job.chunk.path, decoder)
    try:
        offsets = [f - start for f in sorted(todo)]
        for offset, image in read_frames(job.chunk.path, offsets, threads, result.decoder):
            result.decoded = offset + 1
            data = encode_jpeg(image, quality)
            for target in todo.pop(start + offset):
                try:
                    if data is None:
                        raise OSError("JPEG encoding failed")
                    with atomic_write(Path(root, target.path)) as f:
                        f.write(data)
                    result.written += 1
                except OSError as exc:
                    result.failures.append(_failure(job, target, f"cannot write the image: {exc}"))
                report(1)
    except ChunkReadError as exc:
        result.decoded = max(result.decoded, exc.decoded)
        _fail(result, job, todo, _explain(job, exc), report)
    return result


def encode_jpeg(image: np.ndarray, quality: int = DEFAULT_QUALITY) -> bytes | None:
    """A decoded BGR frame as the JPEG bytes extraction writes (shards hold the same bytes); None if encoding fails."""
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return buffer.tobytes() if ok else None


def _remove_leftovers(root: str, targets: Sequence[Target]) -> None:
    """Remove the temporary files of these images that a killed or interrupted run left behind."""
    by_folder: dict[Path, set[str]] = defaultdict(set)
    for target in targets:
        path = Path(root, target.path)
        by_folder[path.parent].add(path.name)
    for folder, names in by_folder.items():
        if remove_stale_temporaries(folder, names):
            log.debug("%s: removed temporary files of an interrupted run", folder)


def _explain(job: ChunkJob, exc: ChunkReadError) -> str:
    """The reason for frames a chunk did not give, naming the gap when the chunk is complete but short."""
    if not exc.at_end or job.chunk is None:
        return exc.reason
    end = job.chunk.start + exc.decoded
    expected = catalogue.video_chunk_name(job.recording, job.camera, end)
    if job.next_start is None:
        return f"{exc.reason} and is the camera's last chunk: no video for frames >= {end} (missing {expected}?)"
    return f"{exc.reason}: no chunk covers frames {end}..{job.next_start - 1} (missing {expected}?)"


def _fail(
    result: JobResult, job: ChunkJob, todo: Mapping[int, list[Target]], reason: str, report: Callable[[int], None]
) -> None:
    """Record every image left in ``todo`` as failed for ``reason``."""
    for frame in sorted(todo):
        for target in todo[frame]:
            result.failures.append(_failure(job, target, reason))
            report(1)


def _failure(job: ChunkJob, target: Target, reason: str) -> Failure:
    return Failure(job.recording.name, job.camera, target.frame, target.path, reason)


def _verify_job(job: ChunkJob, report: Callable[[int], None], root: str) -> JobResult:
    """Check one job's images (run in a worker process)."""
    result = JobResult()
    for target in job.targets:
        path = Path(root, target.path)
        if not path.exists():
            result.failures.append(_failure(job, target, "missing"))
        elif not is_complete_jpeg(path):
            result.failures.append(_failure(job, target, "incomplete JPEG (no end marker)"))
        elif cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
            result.failures.append(_failure(job, target, "does not decode as a JPEG"))
        else:
            result.verified += 1
        report(1)
    return result


class _Job(Protocol):
    """What :func:`_run` needs of a job: a :class:`ChunkJob`, or a shard (:class:`rat7m.shards.ShardJob`)."""

    @property
    def targets(self) -> Sized: ...

    @property
    def cost(self) -> int: ...


_J = TypeVar("_J", bound=_Job)


def _run(
    task: Callable[..., JobResult],
    jobs: Sequence[_J],
    args: tuple,
    processes: int,
    progress: bool,
    what: str,
    unfinished: Callable[[_J], JobResult],
) -> Summary:
    """Run ``task(job, report, *args)`` over the jobs, in this process or a pool, with one progress bar.

    ``unfinished(job)`` accounts for a job whose worker process died (killed, or crashed in the decoder).
    """
    summary = Summary(images=sum(len(j.targets) for j in jobs))
    from tqdm import tqdm

    started = time.perf_counter()
    bar = tqdm(total=summary.images, unit="img", desc=what, disable=not progress, dynamic_ncols=True)
    try:
        if processes <= 1 or len(jobs) <= 1:
            for job in jobs:
                summary.add(task(job, bar.update, *args))
        else:
            _run_pool(task, jobs, args, min(processes, len(jobs)), summary, bar, unfinished)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _run_pool(
    task: Callable[..., JobResult],
    jobs: Sequence[_J],
    args: tuple,
    processes: int,
    summary: Summary,
    bar: tqdm,
    unfinished: Callable[[_J], JobResult],
) -> None:
    """Run the jobs on a pool of ``processes`` workers, the costliest first, relaying their progress.

    If a worker dies, the pool is broken and every job not finished yet is handed to ``unfinished``.
    While the pool runs, Ctrl-C and SIGTERM only end the loop (:class:`rat7m.interrupt.deferred`): the
    pool is stopped, and then they act (``KeyboardInterrupt``, :class:`~rat7m.interrupt.Terminated`).
    """
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
    finished: SimpleQueue[Future[JobResult] | None] = SimpleQueue()  # futures as they finish; None: a stop signal came
    pool = None
    with interrupt.deferred(wake=lambda: finished.put(None)) as signals:
        stopped = True
        try:
            with _workers_start_with_signals_blocked():
                progress = context.SimpleQueue()
                pool = ProcessPoolExecutor(
                    processes, mp_context=context, initializer=_init_worker, initargs=(progress, os.getpid())
                )
                futures = {pool.submit(_call, task, job, args): job for job in sorted(jobs, key=lambda j: -j.cost)}
            for future in futures:
                future.add_done_callback(finished.put)  # called by the pool's thread
            left = len(futures)
            while left and not signals:
                try:
                    done = finished.get(timeout=PROGRESS_INTERVAL)
                except Empty:
                    done = None
                _drain(progress, bar)
                if done is not None:
                    left -= 1
                    try:
                        summary.add(done.result())
                    except BrokenProcessPool:
                        summary.add(unfinished(futures[done]))
            _drain(progress, bar)
            stopped = bool(signals)
        finally:
            if pool is not None:
                if stopped:
                    _stop_pool(pool)
                else:
                    pool.shutdown()


@contextlib.contextmanager
def _workers_start_with_signals_blocked() -> Iterator[None]:
    """Processes started in the block begin with SIGINT and SIGTERM blocked (held, not lost, until unblocked).

    A spawned worker inherits the signal mask (fork and exec keep it), so Ctrl-C sent to the process
    group cannot interrupt it while it imports; its initializer then ignores SIGINT for good and
    unblocks SIGTERM. In this process a signal held meanwhile is delivered as the block ends (a moment
    later) to the noting handler of :class:`rat7m.interrupt.deferred`, the one in place around it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # Started now, not inside the block: starting it unblocks SIGINT and SIGTERM in this thread (Python 3.11).
    resource_tracker.ensure_running()
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, interrupt.SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (Ctrl-C, or an error in this process).

    ``shutdown(wait=False)`` alone lets running chunks go on for seconds (and the interpreter waits
    for them at exit); terminating is safe because images are renamed into place only when whole,
    and the next run removes the temporary files left behind.
    """
    workers = list((pool._processes or {}).values())  # private, but the only handle on the processes
    # taken now: shutdown() forgets it (typeshed gives this attribute the wake-up pipe's type)
    manager: threading.Thread | None = pool._executor_manager_thread  # type: ignore[assignment]
    result_queue = getattr(pool, "_result_queue", None)  # likewise (private; shutdown() forgets it too)
    for worker in workers:
        with contextlib.suppress(OSError):
            worker.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + TERMINATE_TIMEOUT
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            worker.join(TERMINATE_TIMEOUT)
    # A worker ended while it was sending a result leaves part of a message in the result pipe, and the
    # manager thread blocked reading the rest of it, for ever: the interpreter, which joins that thread at
    # exit, would never end (one way to "interrupted" said and the process still there 30 s later). This process
    # holds the pipe's other write end; with it closed and the workers gone the read ends, and the thread.
    if result_queue is not None and not any(worker.is_alive() for worker in workers):
        with contextlib.suppress(OSError, AttributeError):
            result_queue._writer.close()
    # The pool's manager thread closes its wake-up pipe when it sees the workers gone; Python 3.11's exit
    # hook (concurrent.futures.process._python_exit) checks the pipe is open, then writes to it, unlocked:
    # if the close falls between the two, "Exception ignored ... OSError: Bad file descriptor" follows our
    # one line. So the hook must not see this pool at all, whether or not the thread has finished yet
    # (on a loaded machine it may take longer than the timeout): shutdown() above has woken it already,
    # its dead workers' sentinels end it, and the interpreter still joins it at exit.
    if manager is not None:
        manager.join(TERMINATE_TIMEOUT)
        futures_process._threads_wakeups.pop(manager, None)


def _unfinished(job: ChunkJob, root: str | None) -> JobResult:
    """A job cut short by a dead worker: images complete on disk count as done (``root`` given), the rest failed."""
    result = JobResult()
    for target in job.targets:
        if root is not None and is_complete_jpeg(Path(root, target.path)):
            result.skipped += 1
        else:
            result.failures.append(_failure(job, target, WORKER_DIED))
    return result


def _drain(queue: Any, bar: tqdm) -> None:
    while not queue.empty():
        bar.update(queue.get())


# --------------------------------------------------------------------------------------------- worker side

_QUEUE: Any = None


def _init_worker(queue: Any, parent: int) -> None:
    """Set up a worker: its progress queue, one OpenCV thread, and a watchdog on the main process."""
    global _QUEUE
    _QUEUE = queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle: it ends the pool
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # held while starting: kill works
    cv2.setNumThreads(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    """Exit when the main process is gone (e.g. SIGKILLed): pool workers would otherwise live on."""
    while os.getppid() == parent:
        time.sleep(WATCHDOG_INTERVAL)
    os._exit(1)


def _call(task: Callable[..., JobResult], job: _Job, args: tuple) -> JobResult:
    """Run a task in a worker, batching its progress reports onto the queue."""
    pending = 0
    last = time.monotonic()

    def report(n: int) -> None:
        nonlocal pending, last
        pending += n
        now = time.monotonic()
        if now - last >= PROGRESS_INTERVAL:
            _QUEUE.put(pending)
            pending, last = 0, now

    try:
        return task(job, report, *args)
    finally:
        if pending:
            _QUEUE.put(pending)


# --------------------------------------------------------------------------------------------- reporting


def format_frames(frames: Iterable[int]) -> str:
    """Frame numbers as sorted runs: ``3, 5-9, 12``."""
    runs: list[list[int]] = []
    for frame in sorted(set(frames)):
        if runs and frame == runs[-1][1] + 1:
            runs[-1][1] = frame
        else:
            runs.append([frame, frame])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def format_failures(failures: Iterable[Failure]) -> list[str]:
    """One line per (recording, camera, reason): how many images, why, and exactly which frames."""
    groups: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for failure in failures:
        groups[(failure.recording, failure.camera, failure.reason)].append(failure.frame)
    order = sorted(groups, key=lambda g: (g[0], g[1], min(groups[g])))
    return [
        f"  {rec} {cam}: {len(groups[(rec, cam, why)])} frames ({why}): {format_frames(groups[(rec, cam, why)])}"
        for rec, cam, why in order
    ]
