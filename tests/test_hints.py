"""Hints that name the fix: a partial download (whole cameras missing) leads extract_frames.py to the matching flags."""

from __future__ import annotations

import extract_frames
from rat7m import catalogue
from rat7m.cli import run_main
from rat7m.table import save_annotation
from rat7m.table_build import build_table


def test_a_partial_download_names_the_cameras_and_recordings_on_disk(synthetic_dataset, tmp_path, capsys):
    root = tmp_path / "data"
    videos = root / catalogue.VIDEO_DIR
    videos.mkdir(parents=True)
    for chunk in synthetic_dataset.video_dir.glob("s5-d1-camera[12]-*.mp4"):  # as after --cameras 1,2
        (videos / chunk.name).symlink_to(chunk)
    table = build_table([synthetic_dataset.recordings[name].mat_path for name in ("s5-d1", "s5-d2")])
    save_annotation(table, catalogue.mini_annotation_path(root))
    images = tmp_path / "images"

    assert run_main(extract_frames.main, ["--root", str(root), "--images-root", str(images), "--dry-run"]) == 0
    hint = "pass --recordings s5-d1 --cameras 1,2 (or download the rest with download_all.py)"
    assert hint in capsys.readouterr().out

    code = run_main(extract_frames.main, ["--root", str(root), "--images-root", str(images), "--jobs", "1", "-q"])
    out = capsys.readouterr().out
    assert code == 1 and "no video chunk of s5-d1 camera3 found" in out and out.rstrip().endswith(hint)

    args = ["--root", str(root), "--images-root", str(images), "--recordings", "s5-d1", "--cameras", "1,2", "-q"]
    assert run_main(extract_frames.main, args) == 0  # following the hint: every image done, no hint
    assert "hint" not in capsys.readouterr().out
