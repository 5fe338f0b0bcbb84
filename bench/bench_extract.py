"""Benchmark frame extraction against the original algorithm and against the decoding floor, side by side.

    python bench/bench_extract.py --cache ~/.cache/rat7m-bench                    # both profiles
    python bench/bench_extract.py --cache ~/.cache/rat7m-bench --profile capture --repeat 5

Two synthetic profiles, the same pictures (1328x1048, ~40 KB/frame with sensor noise, chunks of
250, one camera-frame in ``--stride`` wanted, like mini-RAT7M), two encodings:

- ``bench``: H.264 with B-frames (what a re-encode typically has);
- ``capture``: the rig's own ``x264 --preset ultrafast`` (no B-frames, CAVLC, no deblocking,
  scene-cut off, key frame every 250, an IDR at each chunk start).

Methods, per profile, for N in 1 and ``--jobs``:

- baseline: the original algorithm, one process, ``read()`` (decode + convert) every frame of
  every chunk, ``imwrite`` the wanted ones (once per run: it is the slowest);
- floor, N: what decoding every frame up to the last wanted one costs with OpenCV, and nothing
  else: per chunk ``grab()`` up to the last wanted frame, ``retrieve()`` + ``cv2.imencode`` the
  wanted ones (no file written). N = 1: one process, the decoder's default threads. N > 1: N
  processes (already started: the pool's start-up is not counted), one decoder thread each,
  chunks costliest first;
- ours, N: :func:`rat7m.extract.extract` with ``processes=N`` and the default decoder (``auto``:
  chosen per chunk), writing every JPEG, from a cold start of its pool.

Separately, the fixed start-up cost of the command line, which a whole run pays once whatever its
size: ``python extract_frames.py --dry-run`` on the same table (Python, numpy, OpenCV and our
imports, loading the table, planning the chunks; no decoding), and, at N > 1, the start of the
pool's N interpreters (each imports numpy and OpenCV) that ours pays inside its time and the floor
does not. Each ratio is printed whole and without the pool's start-up.

Methods run interleaved (repeat 1: every method once, repeat 2: again ...) so that load from other
work on the machine falls on all of them alike; each ratio ours/floor is taken within a repeat,
and the median and range over repeats are printed. Throughput is in video frames of the workload
per second (every frame of every chunk up to its last wanted frame), the same count for every
method. This is a benchmark, not a test: it prints, it does not assert.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# As extract_frames.py runs (rat7m.cli.entry.one_blas_thread), for ours and the floor alike: its workers
# inherit one OpenBLAS thread instead of one per core (~80 ms of CPU each at numpy's import).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import spread, timed
from rat7m import catalogue, extract
from rat7m.barcode import read_barcode
from rat7m.demo.synthetic import generate_dataset
from rat7m.table import save_annotation
from rat7m.table_build import build_table
from rat7m.video import Chunk, ChunkIndex, choose_decoder, open_capture

REPO = Path(__file__).resolve().parents[1]
PROFILES = ("bench", "capture")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def dataset(cache: Path, profile: str, stride: int) -> tuple[list[extract.ChunkJob], Path]:
    """The extraction plan of a profile's dataset under ``cache/profile`` (generated once: minutes), and its table."""
    root = cache / profile
    stamp = root / ".complete"
    if not stamp.exists():
        print(f"generating the {profile} dataset in {root} (once per --cache folder) ...", flush=True)
        generate_dataset(root, profile=profile, progress=True)
        stamp.touch()
    mats = sorted((root / catalogue.ANNOTATION_DIR).glob("mocap-*.mat"))
    table = build_table(mats, stride=stride)
    table_path = root / f"bench_table_stride{stride}.pkl"
    if not table_path.exists():
        save_annotation(table, table_path)
    recordings = [catalogue.parse_mocap_file_name(p.name) for p in mats]
    index = ChunkIndex.from_dir(root / catalogue.VIDEO_DIR)
    return extract.plan_jobs(table, index, recordings, catalogue.CAMERA_NAMES), table_path


def cli_startup(root: Path, table: Path) -> float:
    """Wall seconds of ``extract_frames.py --dry-run``: imports, the table, the plan; no decoding."""
    command = [sys.executable, str(REPO / "extract_frames.py"), "--root", str(root), "--annotation", str(table),
               "--dry-run", "--quiet"]  # fmt: skip
    return timed(lambda: subprocess.run(command, check=True, capture_output=True))


def pool_startup(processes: int) -> float:
    """Wall seconds to start ``processes`` spawned interpreters that import numpy and OpenCV, as ours does."""
    context = multiprocessing.get_context("spawn")

    def start() -> None:
        with ProcessPoolExecutor(processes, mp_context=context, initializer=cv2.setNumThreads, initargs=(1,)) as pool:
            list(pool.map(abs, range(processes)))

    return timed(start)


def _chunk(job: extract.ChunkJob) -> Chunk:
    """The job's chunk: the generated dataset has every chunk the table wants."""
    if job.chunk is None:
        raise SystemExit(f"bench: {job.name}: {job.missing}")
    return job.chunk


def workload(jobs: list[extract.ChunkJob]) -> int:
    """Video frames every method must get through: each chunk up to its last wanted frame."""
    return sum(job.frames[-1] - _chunk(job).start + 1 for job in jobs)


def baseline(jobs: list[extract.ChunkJob], out: Path, quality: int) -> None:
    """The original algorithm: one process, read() every frame, write the wanted ones."""
    for job in jobs:
        wanted = {t.frame - _chunk(job).start: out / t.path for t in job.targets}
        capture = cv2.VideoCapture(str(_chunk(job).path))
        offset = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            if offset in wanted:
                wanted[offset].parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(wanted[offset]), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            offset += 1
        capture.release()


def ours(jobs: list[extract.ChunkJob], out: Path, quality: int, processes: int) -> None:
    """rat7m.extract into a fresh folder (the chunks stay where they are)."""
    shutil.rmtree(out, ignore_errors=True)
    summary = extract.extract(jobs, out, processes=processes, quality=quality, progress=False)
    if summary.failures or summary.written != summary.images:
        raise SystemExit(f"extraction failed: {extract.format_failures(summary.failures)[:3]}")


def floor_chunk(path: str, offsets: list[int], quality: int, threads: int | None) -> int:
    """The floor's work on one chunk: grab() to the last wanted offset, retrieve() + encode the wanted."""
    capture = open_capture(path, threads)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    position = 0
    for offset in offsets:
        while position <= offset:
            capture.grab()
            position += 1
        _, image = capture.retrieve()
        cv2.imencode(".jpg", image, params)
    capture.release()
    return len(offsets)


def _floor_args(jobs: list[extract.ChunkJob]) -> tuple[list[str], list[list[int]]]:
    by_cost = sorted(jobs, key=lambda j: -j.cost)
    return [str(_chunk(j).path) for j in by_cost], [[f - _chunk(j).start for f in j.frames] for j in by_cost]


def floor_serial(jobs: list[extract.ChunkJob], quality: int) -> None:
    """Floor with one process and the decoder's default threads."""
    for path, offsets in zip(*_floor_args(jobs), strict=True):
        floor_chunk(path, offsets, quality, None)


def floor_pool(jobs: list[extract.ChunkJob], quality: int, pool: ProcessPoolExecutor, processes: int) -> None:
    """Floor with ``processes`` started workers, one decoder thread each, chunks costliest first."""
    paths, offsets = _floor_args(jobs)
    n = len(paths)
    list(pool.map(floor_chunk, paths, offsets, [quality] * n, [1] * n, chunksize=1))


def check_exact(jobs: list[extract.ChunkJob], out: Path, sample: int = 40) -> None:
    """Spot-check that extracted images show their frame (the tests check every one)."""
    targets = [t for job in jobs for t in job.targets]
    for target in targets[:: max(1, len(targets) // sample)]:
        image = cv2.imread(str(out / target.path))
        found = None if image is None else read_barcode(image)
        if found != target.frame:
            raise SystemExit(f"{target.path} shows frame {found}, not {target.frame}")


def bench_profile(args: argparse.Namespace, profile: str, pool: ProcessPoolExecutor, out: Path) -> None:
    """Run every method of one profile interleaved ``args.repeat`` times and print the table and ratios."""
    jobs, table_path = dataset(args.cache, profile, args.stride)
    frames, wanted = workload(jobs), sum(len(j.targets) for j in jobs)
    chosen = sorted({choose_decoder(_chunk(j).path) for j in jobs})
    print(
        f"\n[{profile}] {len(jobs)} chunks, {frames} video frames up to the last wanted ones, {wanted} JPEGs "
        f"(1 in {frames / wanted:.1f}); auto decoder chooses: {', '.join(chosen)}; "
        f"load average before: {os.getloadavg()[0]:.2f}"
    )
    counts = sorted({1, args.jobs})
    methods: dict[str, Callable[[], object]] = {}
    for n in counts:
        methods[f"floor, {n} process(es)"] = (
            functools.partial(floor_serial, jobs, args.quality)
            if n == 1
            else functools.partial(floor_pool, jobs, args.quality, pool, n)
        )
        methods[f"ours --jobs {n}"] = functools.partial(ours, jobs, out / f"ours{n}", args.quality, n)
    times: dict[str, list[float]] = {name: [] for name in methods}
    startup: dict[str, list[float]] = {"cli": [], **{f"pool {n}": [] for n in counts if n > 1}}
    if not args.skip_baseline:
        times["baseline: 1 process, read() all"] = [timed(lambda: baseline(jobs, out / "a", args.quality))]
    for _ in range(args.repeat):
        for name, run in methods.items():
            times[name].append(timed(run))
        startup["cli"].append(cli_startup(args.cache / profile, table_path))
        for n in counts:
            if n > 1:
                startup[f"pool {n}"].append(pool_startup(n))
    for n in counts:
        check_exact(jobs, out / f"ours{n}")

    print(f"{'method':<36} {'wall s (median, range)':>24} {'frames/s':>9} {'JPEG/s':>7}")
    for name, values in times.items():
        best = statistics.median(values)
        print(f"{name:<36} {spread(values):>24} {frames / best:>9.0f} {wanted / best:>7.1f}")
    print(f"fixed start-up, once per run whatever its size (median, range over {args.repeat} rounds):")
    print(f"  extract_frames.py --dry-run (imports, table, plan): {spread(startup['cli'])} s")
    for n in counts:
        if n > 1:
            pool = spread(startup[f"pool {n}"])
            print(f"  start of a pool of {n} (spawn, numpy + OpenCV imports), inside ours: {pool} s")
    for n in counts:
        ratios = [a / b for a, b in zip(times[f"ours --jobs {n}"], times[f"floor, {n} process(es)"], strict=True)]
        if n > 1:
            steady = [(a - p) / b for a, b, p in zip(times[f"ours --jobs {n}"], times[f"floor, {n} process(es)"],
                                                     startup[f"pool {n}"], strict=True)]  # fmt: skip
            print(f"[{profile}] ours / floor at --jobs {n} without the pool's start-up: {spread(steady)}")
        line = f"[{profile}] ours / floor at --jobs {n}: {spread(ratios)} over {len(ratios)} interleaved runs"
        if not args.skip_baseline:
            speedup = times["baseline: 1 process, read() all"][0] / statistics.median(times[f"ours --jobs {n}"])
            line += f"; {speedup:.2f}x faster than the baseline"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "rat7m-bench",
        help="folder for the bench datasets (one subfolder per profile), kept between runs (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--profile", choices=(*PROFILES, "both"), default="both", help="encoding(s) to run (both)")
    parser.add_argument("--stride", type=int, default=10, help="one mocap sample (camera frame) in K wanted (10)")
    parser.add_argument("--quality", type=int, default=extract.DEFAULT_QUALITY, help="JPEG quality (95)")
    parser.add_argument("--jobs", type=int, default=_cores(), help="processes for the parallel rows (all cores)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of every method (default 3)")
    parser.add_argument("--skip-baseline", action="store_true", help="leave out the baseline, the slowest part")
    args = parser.parse_args(argv)

    out = Path(tempfile.mkdtemp(prefix="rat7m-bench-out-"))
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(args.jobs, mp_context=context, initializer=cv2.setNumThreads, initargs=(1,)) as pool:
            list(pool.map(time.sleep, [0.2] * args.jobs))  # start the floor's workers before any timing
            for profile in PROFILES if args.profile == "both" else (args.profile,):
                bench_profile(args, profile, pool, out)
        print(f"\nload average after: {os.getloadavg()[0]:.2f} (other work on the machine makes all of this noisy)")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
