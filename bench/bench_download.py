"""Download throughput on loopback: download_all.py against curl, for the same files from the same server.

Generates a few hundred MB of random "video chunks" named per the catalogue, publishes them with the
local Figshare server (rat7m.figshare_server) and times, into fresh folders each time:

- curl, one job: one ``curl -L`` process fetching every file URL in turn (keep-alive, like a script);
- curl, 4 jobs: ``curl --parallel --parallel-max 4``;
- the same followed by ``md5sum`` of every file (1 or 4 at a time): curl with the checking we do;
- ``python download_all.py --jobs 1`` and ``--jobs 4`` (listing, MD5 of every byte, verification
  record and rename included; Python start-up too).

Prints MB/s per case and the throughput ratio ours/curl (1.00: as fast as curl). Loopback measures
the client's own cost (both clients share the same Python server, whose speed caps both); over a
real link the network dominates.

    python bench/bench_download.py            # 8 files x 40 MB
    python bench/bench_download.py --files 4 --mb 25 --repeat 1
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rat7m import catalogue as cat  # noqa: E402
from rat7m.figshare_server import FigshareServer  # noqa: E402

RECORDING = cat.recording_by_name("s1-d1")


def make_tree(root: Path, files: int, megabytes: int) -> dict[str, str]:
    """Write ``files`` random chunks of ``megabytes`` MB; return name -> MD5."""
    videos = root / cat.VIDEO_DIR
    videos.mkdir(parents=True)
    sums = {}
    for i in range(files):
        name = cat.video_chunk_name(RECORDING, cat.CAMERA_NAMES[i % 6], (i // 6) * cat.CHUNK_LENGTH)
        data = os.urandom(megabytes * 1_000_000)
        (videos / name).write_bytes(data)
        sums[name] = hashlib.md5(data).hexdigest()
    return sums


def timed(argvs: list[list[str]], cwd: Path) -> float:
    """Seconds to run the commands one after the other."""
    start = time.perf_counter()
    for argv in argvs:
        subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def check(folder: Path, sums: dict[str, str]) -> None:
    for name, digest in sums.items():
        path = next(folder.rglob(name))
        if hashlib.md5(path.read_bytes()).hexdigest() != digest:
            raise SystemExit(f"bench: {path} has the wrong content")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=8, help="files to serve (default 8)")
    parser.add_argument("--mb", type=int, default=40, help="size of each file in MB (default 40)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each case; the best is kept (default 2)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp folder)")
    args = parser.parse_args()
    curl = shutil.which("curl")
    if curl is None:
        raise SystemExit("bench: curl is not installed")
    work = Path(tempfile.mkdtemp(prefix="bench-download-", dir=args.workdir))
    try:
        sums = make_tree(work / "published", args.files, args.mb)
        total_mb = args.files * args.mb
        with FigshareServer(work / "published") as server:
            urls = [f["download_url"] for f in server.listing(RECORDING.video_article)]
            ours = [sys.executable, "download_all.py", "--api-url", server.api_url, "--recordings", RECORDING.name,
                    "--what", "videos", "--quiet"]  # fmt: skip

            def curl_argv(out: Path, *options: str) -> list[str]:
                targets = [arg for i, url in enumerate(urls) for arg in ("-o", str(out / f"{i}.bin"), url)]
                return [curl, "-sS", "--no-progress-meter", "-L", *options, *targets]

            def md5sum_argv(out: Path, jobs: int) -> list[str]:
                files = " ".join(f"{i}.bin" for i in range(len(urls)))
                return ["sh", "-c", f"cd {out} && printf '%s\\n' {files} | xargs -P {jobs} -n 1 md5sum"]

            parallel = ("--parallel", "--parallel-max", "4")
            cases = {
                "curl, 1 job": lambda out: [curl_argv(out)],
                "curl, 4 jobs": lambda out: [curl_argv(out, *parallel)],
                "curl + md5sum, 1 job": lambda out: [curl_argv(out), md5sum_argv(out, 1)],
                "curl + md5sum, 4 jobs": lambda out: [curl_argv(out, *parallel), md5sum_argv(out, 4)],
                "download_all.py, --jobs 1": lambda out: [[*ours, "--out", str(out), "--jobs", "1"]],
                "download_all.py, --jobs 4": lambda out: [[*ours, "--out", str(out), "--jobs", "4"]],
            }
            best: dict[str, float] = {}
            for label, make_argv in cases.items():
                for run in range(args.repeat):
                    out = work / f"out-{len(best)}-{run}"
                    out.mkdir()
                    seconds = timed(make_argv(out), REPO)
                    if label.startswith("download_all"):
                        check(out, sums)
                    shutil.rmtree(out)
                    best[label] = min(best.get(label, seconds), seconds)
        print(f"{args.files} files x {args.mb} MB = {total_mb} MB on loopback, best of {args.repeat}")
        print(f"{'client':<28} {'seconds':>8} {'MB/s':>8}")
        for label, seconds in best.items():
            print(f"{label:<28} {seconds:>8.2f} {total_mb / seconds:>8.0f}")
        for jobs in ("1 job", "4 jobs"):
            ours_seconds = best["download_all.py, --jobs " + jobs.split()[0]]
            for base in ("curl", "curl + md5sum"):
                ratio = best[f"{base}, {jobs}"] / ours_seconds
                print(f"throughput ratio ours / {base}, {jobs}: {ratio:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
