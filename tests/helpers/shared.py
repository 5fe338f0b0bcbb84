"""Helpers several test modules share: one definition each, so the modules cannot drift apart.

Fixtures shared the same way live in ``tests/conftest.py``; these are plain functions.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from rat7m import catalogue, extract
from rat7m.demo.synthetic import SyntheticDataset
from rat7m.table import save_annotation
from rat7m.table_build import build_table
from rat7m.video import ChunkIndex

REPO = Path(__file__).resolve().parents[2]


#: ``python -c START SCRIPT ARGS...`` runs SCRIPT with Ctrl-C raising ``KeyboardInterrupt``, even where the suite
#: runs with SIGINT ignored (CI, ``make test &``).
START = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)
#: ``python -c TRAPPED_FUTURES SIGNUM SCRIPT ARGS...`` runs SCRIPT with every future's lock made a trap: the
#: first time the main thread takes such a lock, SIGNUM is raised just after it is taken, the worst moment a
#: signal can land in a loop that waits on a pool.
TRAPPED_FUTURES = textwrap.dedent("""
    import runpy, signal, sys, threading
    from concurrent.futures import _base

    SIGNUM = int(sys.argv[1])
    sprung = []

    def spring():
        if not sprung and threading.current_thread() is threading.main_thread():
            sprung.append(True)
            signal.raise_signal(SIGNUM)  # Python runs the handler before this call returns

    class Trap(threading.Condition):
        def __init__(self, lock=None):
            super().__init__(lock)
            take = self.acquire

            def acquire(*args, **kwargs):
                taken = take(*args, **kwargs)
                spring()
                return taken

            self.acquire = acquire

        def __enter__(self):
            taken = super().__enter__()
            spring()
            return taken

    future_init = _base.Future.__init__

    def init(self):
        future_init(self)
        self._condition = Trap()

    _base.Future.__init__ = init
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group_alive(pgid: int) -> bool:
    """True while any process of process group ``pgid`` exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def processes() -> Iterator[tuple[Path, list[str], str]]:
    """Each process of this machine (from /proc): its folder, its stat fields after ``pid (comm)`` (state, ppid,
    pgrp, ...) and its command line; those gone meanwhile are left out."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        yield entry, stat[stat.rindex(")") + 2 :].split(), cmdline


def group_report(pgid: int) -> str:
    """What each process of group ``pgid`` is doing (state, kernel wait channel, command line): for a hang's message."""
    lines = []
    for entry, fields, args in processes():
        if int(fields[2]) != pgid:
            continue
        try:
            wchan = (entry / "wchan").read_text() or "-"
            threads = len(list((entry / "task").iterdir()))
        except OSError:
            continue  # gone meanwhile
        lines.append(f"pid {entry.name} ppid {fields[1]} state {fields[0]} wchan {wchan} threads {threads}: "
                     f"{args[:200]}")
    return "\n".join(lines) or f"no process left in group {pgid}"


def limit_address_space(megabytes: int) -> Callable[[], None]:
    """A ``preexec_fn`` that caps the child's address space: a memory blow-up fails its test, not the machine."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (megabytes << 20, megabytes << 20))

    return limit


def run_limited(code: str, memory_mb: int, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter under an address-space limit and a timeout.

    A regression that hangs or exhausts memory then fails its test instead of the machine.
    """
    prelude = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({memory_mb << 20}, {memory_mb << 20}))\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)  # fmt: skip


def load_with_headroom(
    loader: str, error: str, path: Path, headroom_mb: int, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Call ``loader(path)`` (``"module.function"``) in a fresh interpreter allowed ``headroom_mb`` more memory.

    The limit is set after the imports (NumPy, SciPy), so the headroom is what loading the file may take.
    An ``error`` (a class of :mod:`rat7m.errors`) is printed as its one line with exit 2; success prints
    ``loaded``.
    """
    module, function = loader.rsplit(".", 1)
    code = textwrap.dedent(f"""
        import resource, sys
        from rat7m.errors import {error}
        from {module} import {function}
        size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (size + ({headroom_mb} << 20), size + ({headroom_mb} << 20)))
        try:
            {function}({str(path)!r})
        except {error} as exc:
            print(exc)
            sys.exit(2)
        print("loaded")
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def decode_all(path: str | Path) -> list[np.ndarray]:
    """Every frame of a video file, decoded by OpenCV (which any install has)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def extracted_root(dataset: SyntheticDataset, root: Path, recordings: tuple[str, ...], stride: int) -> dict:
    """Make ``root`` a dataset folder: the videos linked, a table of ``recordings`` saved, its images extracted.

    Returns:
        The table.
    """
    root.mkdir()
    (root / catalogue.VIDEO_DIR).symlink_to(dataset.video_dir, target_is_directory=True)
    chosen = [dataset.recordings[name] for name in recordings]
    table = build_table([r.mat_path for r in chosen], stride=stride)
    save_annotation(table, catalogue.mini_annotation_path(root))
    jobs = extract.plan_jobs(table, ChunkIndex.from_dir(root / catalogue.VIDEO_DIR), [r.recording for r in chosen],
                             catalogue.CAMERA_NAMES)  # fmt: skip
    assert not extract.extract(jobs, root, processes=1, progress=False, decoder="opencv").failures
    return table
