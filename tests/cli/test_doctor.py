"""The doctor reports a planted gap, a missing camera and a misspelled table (issue 13)."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import build_annotation
import extract_frames
from rat7m import catalogue, doctor
from rat7m.cli import doctor as doctor_command
from rat7m.cli import run_main
from rat7m.table import save_annotation
from rat7m.table_build import build_table
from tests.helpers.shared import limit_address_space


@pytest.fixture(scope="module")
def built(synthetic_dataset):
    return build_table([synthetic_dataset.recordings[n].mat_path for n in ("s1-d1", "s2-d1")], stride=3)


def _root(tmp_path, dataset, table, recordings=("s1-d1", "s2-d1")):
    root = tmp_path / "data"
    video = root / catalogue.VIDEO_DIR
    video.mkdir(parents=True)
    for path in dataset.video_dir.iterdir():
        parsed = catalogue.parse_video_chunk_name(path.name)
        if parsed is not None and parsed.recording.name in recordings:
            (video / path.name).symlink_to(path)
    save_annotation(table, catalogue.mini_annotation_path(root))
    return root


def _doctor(capsys, root, *extra):
    code = run_main(doctor_command.main, ["--root", str(root), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_complete_folder_is_healthy(synthetic_dataset, built, tmp_path, capsys):
    root = _root(tmp_path, synthetic_dataset, built)
    code, out, _ = _doctor(capsys, root)
    assert code == 0, out
    assert "s1-d1: 6 cameras, chunks per camera 1:13 2:13" in out
    assert "camera keys:" in out and "columns: subject_idx" in out
    assert "images: 0 of" in out and ", 0 not" in out and "verdict: everything the table wants can be extracted" in out
    # after extraction the doctor counts the images
    assert run_main(extract_frames.main, ["--root", str(root), "--jobs", "1", "--quiet"]) == 0
    code, out, _ = _doctor(capsys, root)
    assert code == 0 and " 0 missing" in out


def test_gap_missing_camera_and_misspelled_table_are_reported(synthetic_dataset, built, tmp_path, capsys):
    root = _root(tmp_path, synthetic_dataset, built)
    video = root / catalogue.VIDEO_DIR
    (video / catalogue.video_chunk_name(catalogue.recording_by_name("s1-d1"), "Camera2", 30)).unlink()  # a gap
    for path in video.glob("s2-d1-camera5-*.mp4"):  # a missing camera
        path.unlink()
    code, out, _ = _doctor(capsys, root)
    assert code == 1
    assert "s1-d1 Camera2: gap, no chunk starting at 30 (starts 0, 10, 20, 40, 50, ... (12 in all))" in out
    assert "s2-d1: missing camera(s) Camera5 (no chunk at all)" in out
    assert "s1-d1 Camera2: " in out and "wanted frame(s) in no chunk: 3" in out
    assert "s2-d1 Camera5: " in out and "verdict: problems above" in out

    # a table whose camera dict spells a key neither way the dataset does
    raw = pickle.loads(catalogue.mini_annotation_path(root).read_bytes())
    camera = raw["cameras"][1][1]["Camera3"]
    camera["Rotationmatrix"] = camera.pop("RotationMatrix" if "RotationMatrix" in camera else "rotationMatrix")
    camera.pop("rotationMatrix", None)
    odd = tmp_path / "odd.pkl"
    odd.write_bytes(pickle.dumps(raw, protocol=4))
    shutil.rmtree(video)
    code, out, _ = _doctor(capsys, root, "--annotation", str(odd))
    assert code == 1
    assert "Rotationmatrix x1" in out
    expected = "has no rotation key RotationMatrix or rotationMatrix (has 'Rotationmatrix': misspelled)"
    assert f"cameras[1][1]['Camera3'] {expected}" in out
    assert "unusable: " in out and "no video chunks under" in out


def test_bad_input_is_exit_2_and_the_hint_is_in_layout_errors(tmp_path, capsys):
    code, _, err = _doctor(capsys, tmp_path / "nowhere")
    lines = [line for line in err.strip().splitlines() if not line.startswith("dataset root:")]  # said once
    assert code == 2 and "is not a folder" in err and len(lines) == 1
    code, _, err = _doctor(capsys, tmp_path, "--annotation", str(tmp_path / "none.pkl"))
    assert code == 2 and "not found" in err
    # layout errors of the scripts end with the doctor's hint
    assert run_main(extract_frames.main, ["--root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no annotation table at" in err and err.rstrip().endswith(doctor.hint(tmp_path))
    assert run_main(build_annotation.main, ["--root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no mocap-sS-dD.mat files" in err and err.rstrip().endswith(doctor.hint(tmp_path))


# --- hostile folders (issue 20): counted not listed, loops and unreadable folders, short chunks ---

REPO = Path(__file__).resolve().parents[2]


def _doctor_child(root: Path, *extra: str, drop_privileges: bool = False) -> subprocess.CompletedProcess:
    """The doctor in a child with 1.5 GB of address space and a timeout; optionally without root's file powers."""
    prefix = []
    if drop_privileges and os.geteuid() == 0:  # root reads any folder: drop the capabilities that let it
        prefix = ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]
    command = [*prefix, sys.executable, "-m", "rat7m.doctor", "--root", str(root), *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command, capture_output=True, text=True, timeout=120,
                          preexec_fn=limit_address_space(1536), env=env)  # fmt: skip


def test_huge_chunk_starts_are_counted_not_listed(tmp_path):
    """Old: ``list(range(0, last_start, chunk_len))``: 12 GB for these names, MemoryError."""
    video = tmp_path / catalogue.VIDEO_DIR
    video.mkdir()
    for camera in range(1, 6):
        (video / f"s1-d1-camera{camera}-350000000000.mp4").touch()
    (video / f"s2-d1-camera1-{3500 * 10**15}.mp4").touch()
    proc = _doctor_child(tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "s1-d1 Camera1: gap, no chunk starting at 0, 3500, 7000, 10500, 14000, ... (100000000 in all)" in proc.stdout
    assert f"s2-d1 Camera1: gap, no chunk starting at 0, 3500, 7000, 10500, 14000, ... ({10**15} in all)" in (
        proc.stdout)  # fmt: skip
    assert "s1-d1: missing camera(s) Camera6" in proc.stdout and "Traceback" not in proc.stderr


def test_gaps_are_counted_arithmetically():
    assert doctor.gaps([0, 10, 40], 10) == ([20, 30], 2)
    assert doctor.gaps([0, 10, 20], 10) == ([], 0)
    assert doctor.gaps([5, 30], 10) == ([0, 10, 20], 3)  # a start off the grid fills no gap
    assert doctor.gaps([10**12], 10) == ([0, 10, 20, 30, 40], 10**11)


def test_link_loop_and_unreadable_video_folder_are_report_lines(synthetic_dataset, built, tmp_path):
    """Old: ``OSError: Too many levels of symbolic links`` and a ``PermissionError`` traceback."""
    root = _root(tmp_path, synthetic_dataset, built)
    video = root / catalogue.VIDEO_DIR
    (video / "s1-d1-camera1-990.mp4").symlink_to("s1-d1-camera1-990.mp4")
    proc = _doctor_child(root)
    assert "s1-d1-camera1-990.mp4: named like a chunk but a symbolic link loop; left out" in proc.stdout, proc.stderr
    assert proc.returncode == 0 and "Traceback" not in proc.stderr  # the table wants nothing from it

    video.chmod(0)
    try:
        proc = _doctor_child(root, drop_privileges=True)
    finally:
        video.chmod(0o755)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"cannot list {video}: Permission denied; the chunks in it are unknown" in proc.stdout
    assert "verdict: problems above" in proc.stdout


def test_short_and_unreadable_chunks_are_found_from_their_headers(synthetic_dataset, built, tmp_path, capsys):
    """Old: "everything the table wants can be extracted" (exit 0), and extraction then failed."""
    root = _root(tmp_path, synthetic_dataset, built)
    video = root / catalogue.VIDEO_DIR
    short = video / "s1-d1-camera2-30.mp4"  # a chunk of 5 frames where 10 belong (the last chunk's bytes)
    short.unlink()
    short.symlink_to(synthetic_dataset.video_dir / "s1-d1-camera2-120.mp4")
    cut = video / "s2-d1-camera3-0.mp4"  # the first bytes of a chunk: its index never arrived
    data = cut.read_bytes()
    cut.unlink()
    cut.write_bytes(data[: len(data) // 2])
    code, out, _ = _doctor(capsys, root)
    assert code == 1
    assert "s1-d1 Camera2: chunk s1-d1-camera2-30.mp4 lists 5 frames in its header; 2 wanted frame(s) past its end: " \
           "35, 38" in out  # fmt: skip
    assert "s2-d1 Camera3: chunk s2-d1-camera3-0.mp4 cannot be opened (truncated, corrupt or not a video); " \
           "4 wanted frame(s) in it: 0, 3, 6, 9" in out  # fmt: skip
    assert ", 6 not" in out and "verdict: problems above" in out
    # extraction fails exactly the frames the doctor named
    assert run_main(extract_frames.main, ["--root", str(root), "--jobs", "1", "--quiet"]) == 1
    assert "failed: 6 images" in capsys.readouterr().out


def test_annotation_fifo_is_one_line(tmp_path):
    fifo = tmp_path / "table.pkl"
    os.mkfifo(fifo)
    proc = _doctor_child(tmp_path, "--annotation", str(fifo))
    assert proc.returncode == 2 and f"--annotation {fifo} is a FIFO (named pipe)" in proc.stderr, proc.stderr


def test_help_has_no_docstring_markup():
    """Old: ``--help`` showed ``:func:`hint```."""
    text = doctor_command.build_parser().format_help()
    assert ":func:" not in text and "``" not in text and "Exit codes: 0 everything" in text
