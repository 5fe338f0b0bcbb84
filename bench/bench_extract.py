"""Benchmark frame extraction against the original algorithm and against the decoder's floor, side by side.

    python bench/bench_extract.py                           # generates the bench dataset in a temp dir
    python bench/bench_extract.py --cache ~/.cache/rat7m-bench --stride 10

On the synthetic ``bench`` profile (1328x1048 H.264 with B-frames, ~40 KB/frame, chunks of 250,
one camera-frame in ``--stride`` wanted, like mini-RAT7M), in one run:

(a) baseline: the original algorithm, one process, ``read()`` (decode + convert) every frame of
    every chunk, ``imwrite`` the wanted ones;
(b) ours: :func:`rat7m.extract.extract` with one process per core and the default decoder
    (``auto``: PyAV when installed, which skips unwanted non-reference frames undecoded);
(b') the same with ``--decoder opencv`` (``grab()`` every frame, ``retrieve()`` the wanted);
(c) floor of the OpenCV path: ``grab()`` up to the last wanted frame of every chunk, one process
    per core (one decoder thread each), then JPEG-encode the wanted frames, one process per core;
    the time is the sum of the two, i.e. what decoding every frame and encoding alone cost;

then (b) at ``--jobs 1 .. cores``. Throughput is in video frames of the workload per second
(every frame of every chunk up to its last wanted frame, the same count for every method), so
ratios of throughputs are ratios of wall times. This is a benchmark, not a test: it prints, it
does not assert; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rat7m import catalogue, extract
from rat7m.barcode import read_barcode
from rat7m.synthetic import generate_dataset
from rat7m.table_build import build_table
from rat7m.video import ChunkIndex, open_capture, resolve_decoder


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def dataset(cache: Path | None, stride: int) -> tuple[Path, list[extract.ChunkJob]]:
    """The bench dataset (made once per cache folder) and its extraction plan."""
    root = cache if cache is not None else Path(tempfile.mkdtemp(prefix="rat7m-bench-"))
    stamp = root / ".complete"
    if not stamp.exists():
        print(f"generating the bench dataset in {root} (once per --cache folder) ...", flush=True)
        generate_dataset(root, profile="bench", progress=True)
        stamp.touch()
    mats = sorted((root / catalogue.ANNOTATION_DIR).glob("mocap-*.mat"))
    table = build_table(mats, stride=stride)
    recordings = [catalogue.parse_mocap_file_name(p.name) for p in mats]
    jobs = extract.plan_jobs(table, ChunkIndex.from_dir(root / catalogue.VIDEO_DIR), recordings, catalogue.CAMERA_NAMES)
    return root, jobs


def workload(jobs: list[extract.ChunkJob]) -> int:
    """Video frames every method must get through: each chunk up to its last wanted frame."""
    return sum(job.frames[-1] - job.chunk.start + 1 for job in jobs)


def baseline(jobs: list[extract.ChunkJob], out: Path, quality: int) -> float:
    """The original algorithm: one process, read() every frame, write the wanted ones. Returns seconds."""
    started = time.perf_counter()
    for job in jobs:
        wanted = {t.frame - job.chunk.start: out / t.path for t in job.targets}
        capture = cv2.VideoCapture(str(job.chunk.path))
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
    return time.perf_counter() - started


def ours(jobs: list[extract.ChunkJob], out: Path, quality: int, processes: int, decoder: str = "auto") -> float:
    """rat7m.extract into a fresh folder. Returns seconds."""
    shutil.rmtree(out, ignore_errors=True)
    # the chunks stay where they are: extract() reads job.chunk.path and writes under out
    summary = extract.extract(jobs, out, processes=processes, quality=quality, progress=False, decoder=decoder)
    if summary.failures or summary.written != summary.images:
        raise SystemExit(f"extraction failed: {extract.format_failures(summary.failures)[:3]}")
    return summary.seconds


def _grab_until(path: str, last: int) -> int:
    capture = open_capture(path, threads=1)
    for _ in range(last + 1):
        capture.grab()
    capture.release()
    return last + 1


def _encode(path: str, count: int, quality: int) -> int:
    capture = open_capture(path, threads=1)
    _, image = capture.read()
    capture.release()
    for _ in range(count):
        cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return count


def floor(jobs: list[extract.ChunkJob], quality: int, processes: int) -> tuple[float, float]:
    """Seconds to only grab() the workload, and to only encode the wanted JPEGs, one process per core."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context, initializer=cv2.setNumThreads, initargs=(1,)) as pool:
        list(pool.map(_grab_until, [str(jobs[0].chunk.path)] * processes, [0] * processes))  # start the workers
        started = time.perf_counter()
        by_cost = sorted(jobs, key=lambda j: -j.cost)
        lasts = [j.frames[-1] - j.chunk.start for j in by_cost]
        list(pool.map(_grab_until, [str(j.chunk.path) for j in by_cost], lasts))
        grab = time.perf_counter() - started
        wanted = sum(len(j.targets) for j in jobs)
        shares = [wanted // processes + (k < wanted % processes) for k in range(processes)]
        started = time.perf_counter()
        list(pool.map(_encode, [str(jobs[0].chunk.path)] * processes, shares, [quality] * processes))
        encode = time.perf_counter() - started
    return grab, encode


def check_exact(jobs: list[extract.ChunkJob], out: Path, sample: int = 40) -> None:
    """Spot-check that extracted images show their frame (the tests check every one)."""
    targets = [t for job in jobs for t in job.targets]
    for target in targets[:: max(1, len(targets) // sample)]:
        found = read_barcode(cv2.imread(str(out / target.path)))
        if found != target.frame:
            raise SystemExit(f"{target.path} shows frame {found}, not {target.frame}")


def measure(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best wall time and CPU time (this process and its finished children) over ``repeat`` runs."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        run()
        best_wall = min(best_wall, time.perf_counter() - started)
        best_cpu = min(best_cpu, _cpu_seconds() - cpu_before)
    return best_wall, best_cpu


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, help="folder for the bench dataset, kept between runs (default: temp)")
    parser.add_argument("--stride", type=int, default=10, help="one mocap sample (camera frame) in K wanted (10)")
    parser.add_argument("--quality", type=int, default=extract.DEFAULT_QUALITY, help="JPEG quality (95)")
    parser.add_argument("--jobs", type=int, default=_cores(), help="processes for (b), (c) and the last scaling step")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row; the best is shown (default 1)")
    parser.add_argument("--skip-baseline", action="store_true", help="leave out (a), the slowest part")
    args = parser.parse_args(argv)

    root, jobs = dataset(args.cache, args.stride)
    frames, wanted = workload(jobs), sum(len(j.targets) for j in jobs)
    print(
        f"workload: {len(jobs)} chunks, {frames} video frames up to the last wanted ones, {wanted} JPEGs "
        f"(1 in {frames / wanted:.1f}), {args.jobs} cores; load average before: {os.getloadavg()[0]:.2f}"
    )
    out = Path(tempfile.mkdtemp(prefix="rat7m-bench-out-"))
    try:
        rows: dict[str, tuple[float, float]] = {}
        if not args.skip_baseline:
            rows["(a) baseline: 1 process, read() all"] = measure(lambda: baseline(jobs, out / "a", args.quality), 1)
        decoder = resolve_decoder("auto")
        name_b = f"(b) ours: --jobs {args.jobs} (decoder {decoder})"
        rows[name_b] = measure(lambda: ours(jobs, out / "b", args.quality, args.jobs), args.repeat)
        check_exact(jobs, out / "b")
        name_o = f"(b') ours: --jobs {args.jobs} --decoder opencv"
        rows[name_o] = measure(lambda: ours(jobs, out / "o", args.quality, args.jobs, "opencv"), args.repeat)
        check_exact(jobs, out / "o")
        parts = []
        name_c = f"(c) floor: grab() + encode, {args.jobs} processes"
        rows[name_c] = measure(lambda: parts.append(floor(jobs, args.quality, args.jobs)), args.repeat)
        grab, encode = min(parts, key=sum)
        rows[name_c] = (grab + encode, rows[name_c][1])  # the pool's start-up is not part of the floor
        for n in range(1, args.jobs + 1):
            rows[f"    ours --jobs {n} ({decoder})"] = measure(
                lambda n=n: ours(jobs, out / "s", args.quality, n), args.repeat
            )

        print(f"{'method':<48} {'wall s':>7} {'frames/s':>9} {'JPEG/s':>7} {'CPU s':>6}")
        for name, (wall, cpu) in rows.items():
            print(f"{name:<48} {wall:>7.1f} {frames / wall:>9.0f} {wanted / wall:>7.1f} {cpu:>6.1f}")
        print(f"floor parts: grab() {frames / grab:.0f} frames/s ({grab:.1f} s), encode {wanted / encode:.0f} JPEG/s")
        for name in (name_b, name_o):
            ratio = rows[name][0] / rows[name_c][0]
            print(f"{name.split(':')[0]} / floor (wall time): {ratio:.2f}x (target <= 1.15; < 1: beats it)")
        if not args.skip_baseline:
            for name in (name_b, name_o):
                speedup = rows["(a) baseline: 1 process, read() all"][0] / rows[name][0]
                print(f"{name.split(':')[0]} vs baseline: {speedup:.2f}x faster (target >= 1.6 on 2 cores)")
        print(f"load average after: {os.getloadavg()[0]:.2f} (other work on the machine makes all of this noisy)")
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if args.cache is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
