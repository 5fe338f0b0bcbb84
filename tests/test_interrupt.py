"""Ctrl-C on a real ``extract_frames.py`` run: prompt exit 130, one line, no worker tracebacks, whole images.

A terminal's Ctrl-C sends SIGINT to the whole foreground process group (the run and its worker
processes); the test does the same (``killpg``) at several moments: while the workers start up
and while they extract. Then: the run is gone within a few seconds with its workers, it printed
one line and no traceback, every image under its final name is a whole JPEG that decodes, and a
rerun completes everything and removes the temporary files the interrupted run left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from rat7m import catalogue
from rat7m.extract import is_complete_jpeg
from rat7m.table import save_annotation
from rat7m.table_build import build_table

REPO = Path(__file__).resolve().parents[1]
#: Enough chunks to keep two workers busy for a while, few enough to keep the test short.
RECORDINGS = ["--recordings", "s1-d1,s2-d1"]
#: Seconds a run may take to stop after Ctrl-C (the issue's 2 s; the workers are terminated, not awaited).
STOP_WITHIN = 2.0
#: Ctrl-C raises KeyboardInterrupt even where the test suite runs with SIGINT ignored (CI, `make test &`).
START = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


@pytest.fixture(scope="module")
def dataset_root(synthetic_dataset, tmp_path_factory):
    """A read-only-style root: the shared videos (linked) and a table of every frame (no images written here)."""
    root = tmp_path_factory.mktemp("interrupt") / "data"
    root.mkdir()
    (root / catalogue.VIDEO_DIR).symlink_to(synthetic_dataset.video_dir, target_is_directory=True)
    table = build_table([r.mat_path for r in synthetic_dataset.recordings.values()])
    save_annotation(table, catalogue.mini_annotation_path(root))
    return root


def _start(root: Path, images: Path) -> subprocess.Popen:
    command = [sys.executable, "-c", START, str(REPO / "extract_frames.py"), "--root", str(root),
               "--images-root", str(images), "--jobs", "2", "--decoder", "opencv", *RECORDINGS]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # fmt: skip


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _check_images(images: Path) -> int:
    """Every image under a final name is a whole JPEG that decodes; return how many there are."""
    final = list(images.rglob("*.jpg"))
    for path in final:
        assert is_complete_jpeg(path), f"{path} is cut short"
        assert cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR) is not None, f"{path} does not decode"
    return len(final)


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the run never reached the moment to interrupt"
        time.sleep(0.01)


@pytest.mark.parametrize("moment", ["worker start-up", "mid-extraction"])
def test_ctrl_c_stops_the_run_at_once_and_cleanly(dataset_root, tmp_path, moment):
    images = tmp_path / "images"
    proc = _start(dataset_root, images)
    if moment == "worker start-up":
        # both workers spawned (they import for about a second before taking work), no image yet
        _wait_for(lambda: sum(p.is_worker for p in _children(proc.pid)) == 2)
        # past the ~20 ms in which the run starts them with SIGINT ignored (a Ctrl-C inside that
        # window can be lost: see extract._sigint_blocked), still long before they take work
        time.sleep(0.1)
        assert not any(images.rglob("*.jpg"))
    else:
        _wait_for(lambda: any(images.rglob("*.jpg")))
    os.killpg(proc.pid, signal.SIGINT)
    sent = time.monotonic()
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    stopped = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert stopped < STOP_WITHIN, f"the run took {stopped:.1f} s to stop"
    assert "Traceback" not in err and "Fatal Python error" not in err and "KeyboardInterrupt" not in err, err
    lines = [line for line in err.splitlines() if not line.startswith("dataset root:")]
    assert lines[-1] == "interrupted; rerun the same command to resume", err
    _wait_for(lambda: not _group_alive(proc.pid), timeout=STOP_WITHIN)  # the workers are gone too
    written = _check_images(images)

    again = [sys.executable, str(REPO / "extract_frames.py"), "--root", str(dataset_root), "--images-root", str(images)]
    rerun = subprocess.run([*again, "--jobs", "2", "-q", *RECORDINGS], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{written} skipped" in rerun.stdout or written == 0
    assert _check_images(images) > written and not list(images.rglob("*.tmp"))


class _Proc:
    def __init__(self, cmdline: str) -> None:
        self.is_worker = "spawn_main" in cmdline


def _children(pid: int) -> list[_Proc]:
    """The processes whose parent is ``pid`` (from /proc), with what their command line says."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(_Proc(cmdline))
    return found


def test_a_rerun_removes_only_our_own_leftover_temporary_files(dataset_root, tmp_path):
    images = tmp_path / "images"
    folder = images / "images_unpacked" / "s5-d1" / "camera1"
    folder.mkdir(parents=True)
    dead = "99999999"  # above any pid_max: the process that wrote it is gone
    ours = folder / f".frame_000003.jpg.{dead}.140000.tmp"  # what a SIGKILLed worker leaves (fileio.temporary_name)
    kept = [folder / "notes.tmp", folder / ".frame_000003.jpg.backup.tmp", folder / f".other.jpg.{dead}.1.tmp"]
    for path in [ours, *kept]:
        path.write_bytes(b"\xff\xd8 partial")
    result = subprocess.run([sys.executable, str(REPO / "extract_frames.py"), "--root", str(dataset_root),
                             "--images-root", str(images), "--recordings", "s5-d1", "--jobs", "1", "-q"],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not ours.exists() and all(path.exists() for path in kept)
    assert is_complete_jpeg(folder / "frame_000003.jpg")
