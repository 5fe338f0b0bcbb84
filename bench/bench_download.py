"""Download throughput on loopback: download_all.py against curl + md5sum, for the same files from the same server.

Publishes random "video chunks" (and, in the mixed layout, ``.mat`` annotation files) named per the
catalogue with the local Figshare server (rat7m.demo.figshare_server) and times, into fresh folders:

- curl alone, 1 job (``curl -L`` fetching every URL in turn, keep-alive) and 4 jobs
  (``curl --parallel --parallel-max 4``): the network part only;
- the reference: the same curl followed by ``md5sum`` of every file (1 or 4 at a time), that is
  curl with the checking we do;
- ``python download_all.py --jobs 1`` and ``--jobs 4`` (Python start-up, the API listing, the MD5
  of every byte, the verification record and the renames included).

Two layouts (``--layout``):

- ``equal``: 8 video chunks of 40 MB;
- ``mixed``: what the real listing looks like, 11 video chunks of different lengths (8 to 96 MB,
  in name order, so the largest is not first) and 2 small ``.mat`` files over two recordings:
  13 files, 481 MB.

Every case runs once per round, rounds interleaved (``--rounds``), so load from other work on the
machine falls on all of them alike; each ratio is throughput ours / reference within one round
(1.00: as fast as curl + md5sum), printed as median (range), and the clients' CPU time (user +
system of the client processes; steadier than wall time when other work loads the machine).
Loopback measures the clients' own cost (both share the same Python server, whose speed caps both);
over a real link the network dominates.

    python bench/bench_download.py                       # both layouts, 3 rounds
    python bench/bench_download.py --layout mixed --rounds 5
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.timing import spread  # noqa: E402
from rat7m import catalogue as cat  # noqa: E402
from rat7m.demo.figshare_server import FigshareServer  # noqa: E402

MB = 1_000_000
#: Layout name -> recording name -> sizes in bytes: video chunks first (camera by camera), then the ``.mat``.
LAYOUTS: dict[str, dict[str, tuple[list[int], int | None]]] = {
    "equal": {"s1-d1": ([40 * MB] * 8, None)},
    "mixed": {
        "s1-d1": ([96 * MB, 24 * MB, 64 * MB, 8 * MB, 56 * MB, 40 * MB], int(2.4 * MB)),
        "s2-d1": ([12 * MB, 80 * MB, 16 * MB, 32 * MB, 48 * MB], int(2.6 * MB)),
    },
}


def make_tree(root: Path, layout: str) -> dict[str, str]:
    """Write the layout's files under ``root`` (dataset layout); return name -> MD5."""
    sums = {}
    for name, (chunks, mat) in LAYOUTS[layout].items():
        recording = cat.recording_by_name(name)
        files = [(cat.VIDEO_DIR, cat.video_chunk_name(recording, cat.CAMERA_NAMES[i % 6], (i // 6) * cat.CHUNK_LENGTH),
                  size) for i, size in enumerate(chunks)]  # fmt: skip
        if mat is not None:
            files.append((cat.ANNOTATION_DIR, cat.mocap_file_name(recording), mat))
        for folder, file_name, size in files:
            (root / folder).mkdir(parents=True, exist_ok=True)
            data = os.urandom(size)
            (root / folder / file_name).write_bytes(data)
            sums[file_name] = hashlib.md5(data).hexdigest()
    return sums


def timed(argvs: list[list[str]], cwd: Path) -> tuple[float, float]:
    """Wall seconds to run the commands one after the other, and their CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for argv in argvs:
        subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def check(folder: Path, sums: dict[str, str]) -> None:
    """Every file of the layout is in ``folder`` with the right bytes."""
    for name, digest in sums.items():
        path = next(folder.rglob(name))
        if hashlib.md5(path.read_bytes()).hexdigest() != digest:
            raise SystemExit(f"bench: {path} has the wrong content")


def cases(server: FigshareServer, layout: str, curl: str) -> dict[str, Callable[[Path], list[list[str]]]]:
    """Case label -> function(out folder) -> the commands to time."""
    recordings = list(LAYOUTS[layout])
    has_mat = any(mat is not None for _, mat in LAYOUTS[layout].values())
    articles = [cat.ANNOTATION_ARTICLE] if has_mat else []
    articles += [cat.recording_by_name(name).video_article for name in recordings]
    listing = [f for article in articles for f in server.listing(article)]
    wanted = set(make_names(layout))
    urls = [f["download_url"] for f in listing if f["name"] in wanted]
    ours = [sys.executable, "download_all.py", "--api-url", server.api_url, "--recordings", *recordings,
            "--what", "all" if has_mat else "videos", "--quiet"]  # fmt: skip

    def curl_argv(out: Path, *options: str) -> list[str]:
        targets = [arg for i, url in enumerate(urls) for arg in ("-o", str(out / f"{i}.bin"), url)]
        return [curl, "-sS", "--no-progress-meter", "-L", *options, *targets]

    def md5sum_argv(out: Path, jobs: int) -> list[str]:
        files = " ".join(f"{i}.bin" for i in range(len(urls)))
        return ["sh", "-c", f"cd {out} && printf '%s\\n' {files} | xargs -P {jobs} -n 1 md5sum"]

    parallel = ("--parallel", "--parallel-max", "4")
    return {
        "curl, 1 job": lambda out: [curl_argv(out)],
        "curl, 4 jobs": lambda out: [curl_argv(out, *parallel)],
        "curl + md5sum, 1 job": lambda out: [curl_argv(out), md5sum_argv(out, 1)],
        "curl + md5sum, 4 jobs": lambda out: [curl_argv(out, *parallel), md5sum_argv(out, 4)],
        "download_all.py --jobs 1": lambda out: [[*ours, "--out", str(out), "--jobs", "1"]],
        "download_all.py --jobs 4": lambda out: [[*ours, "--out", str(out), "--jobs", "4"]],
    }


def make_names(layout: str) -> list[str]:
    """File names of a layout (as :func:`make_tree` writes them)."""
    names = []
    for name, (chunks, mat) in LAYOUTS[layout].items():
        recording = cat.recording_by_name(name)
        names += [cat.video_chunk_name(recording, cat.CAMERA_NAMES[i % 6], (i // 6) * cat.CHUNK_LENGTH)
                  for i in range(len(chunks))]  # fmt: skip
        if mat is not None:
            names.append(cat.mocap_file_name(recording))
    return names


def bench_layout(layout: str, rounds: int, work: Path, curl: str) -> None:
    """Publish one layout, run every case ``rounds`` times interleaved, print the table and ratios."""
    published = work / f"published-{layout}"
    sums = make_tree(published, layout)
    total_mb = sum(size for chunks, mat in LAYOUTS[layout].values() for size in [*chunks, mat or 0]) / MB
    with FigshareServer(published) as server:
        runs = cases(server, layout, curl)
        times: dict[str, list[float]] = {label: [] for label in runs}
        cpu: dict[str, list[float]] = {label: [] for label in runs}
        for round_ in range(rounds):
            for label, make_argv in runs.items():
                out = work / f"out-{layout}-{round_}"
                out.mkdir()
                wall, seconds = timed(make_argv(out), REPO)
                times[label].append(wall)
                cpu[label].append(seconds)
                if label.startswith("download_all"):
                    check(out, sums)
                shutil.rmtree(out)
    print(f"\n[{layout}] {len(sums)} files, {total_mb:.0f} MB on loopback, {rounds} interleaved rounds; "
          f"load average after: {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"{'client':<28} {'wall s, median (range)':>24} {'MB/s':>6} {'client CPU s':>24}")
    for label, values in times.items():
        print(f"{label:<28} {spread(values):>24} {total_mb / statistics.median(values):>6.0f} "
              f"{spread(cpu[label]):>24}")  # fmt: skip
    for jobs in ("1 job", "4 jobs"):
        ours = "download_all.py --jobs " + jobs.split()[0]
        for base in ("curl", "curl + md5sum"):
            ratios = [theirs / mine for theirs, mine in zip(times[f"{base}, {jobs}"], times[ours], strict=True)]
            print(f"[{layout}] throughput ours / {base}, {jobs}: {spread(ratios)}")
        ratios = [theirs / mine for theirs, mine in zip(cpu[f"curl + md5sum, {jobs}"], cpu[ours], strict=True)]
        print(f"[{layout}] client CPU curl + md5sum / ours, {jobs}: {spread(ratios)} (the server's CPU, the same for"
              " both, is not counted)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", choices=(*LAYOUTS, "both"), default="both", help="file sizes to serve (both)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of every case (default 3)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp folder)")
    args = parser.parse_args()
    curl = shutil.which("curl")
    if curl is None:
        raise SystemExit("bench: curl is not installed")
    work = Path(tempfile.mkdtemp(prefix="bench-download-", dir=args.workdir))
    try:
        for layout in LAYOUTS if args.layout == "both" else (args.layout,):
            bench_layout(layout, args.rounds, work, curl)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
