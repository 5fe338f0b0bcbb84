"""The doctor reports a planted gap, a missing camera and a misspelled table (issue 13)."""

from __future__ import annotations

import pickle
import shutil

import pytest

import build_annotation
import extract_frames
from rat7m import catalogue, doctor
from rat7m.cli import run_main
from rat7m.table import save_annotation
from rat7m.table_build import build_table


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
    code = run_main(doctor.main, ["--root", str(root), *extra])
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
