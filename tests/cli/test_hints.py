"""Hints that name the fix: a partial download (whole cameras missing) leads extract_frames.py to the matching flags."""

from __future__ import annotations

import extract_frames
from rat7m import catalogue
from rat7m.cli import command, run_main
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
    hint = f"pass --recordings s5-d1 --cameras 1,2 (or download the rest with {command('download')})"
    assert hint in capsys.readouterr().out

    code = run_main(extract_frames.main, ["--root", str(root), "--images-root", str(images), "--jobs", "1", "-q"])
    out = capsys.readouterr().out
    assert code == 1 and "no video chunk of s5-d1 camera3 found" in out and out.rstrip().endswith(hint)

    args = ["--root", str(root), "--images-root", str(images), "--recordings", "s5-d1", "--cameras", "1,2", "-q"]
    assert run_main(extract_frames.main, args) == 0  # following the hint: every image done, no hint
    assert "hint" not in capsys.readouterr().out


def test_hints_name_the_console_command_when_it_is_on_the_path_else_the_script(tmp_path, monkeypatch):
    from rat7m import cli, doctor

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing installed
    cli.command.cache_clear()
    assert cli.command("build-annotation") == "python build_annotation.py"
    assert doctor.hint("/data") == "(run: python -m rat7m.doctor --root /data)"
    for name in cli.SCRIPTS:  # installed: every command is rat7m-<name>
        (tmp_path / f"rat7m-{name}").write_text("#!/bin/sh\n")
        (tmp_path / f"rat7m-{name}").chmod(0o755)
    cli.command.cache_clear()
    assert cli.command("build-annotation") == "rat7m-build-annotation"
    assert doctor.hint("/data") == "(run: rat7m-doctor --root /data)"
    assert {cli.command(name) for name in cli.SCRIPTS} == {f"rat7m-{name}" for name in cli.SCRIPTS}
    cli.command.cache_clear()


def test_a_missing_table_names_the_console_command_that_builds_one(tmp_path):
    """Run as installed (the venv's bin on PATH): the hint says rat7m-build-annotation, not a script path."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "RAT7M_ROOT": str(tmp_path)}
    (tmp_path / catalogue.VIDEO_DIR).mkdir()
    done = subprocess.run([str(bin_dir / "rat7m-extract")], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "build one with rat7m-build-annotation, or pass --annotation PKL" in done.stderr
    assert f"(run: rat7m-doctor --root {tmp_path})" in done.stderr and "python " not in done.stderr
