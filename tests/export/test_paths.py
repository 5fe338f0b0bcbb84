"""export.py keeps to its folder whatever the table says (issue 20): paths from a table are untrusted,
``--out`` never lands on the dataset's inputs, ``all`` goes on past a refused format, and a killed run's
leftovers are removed by the next one."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.export import REGISTRY, cli
from rat7m.export.common import MANIFEST_NAME
from rat7m.table import save_annotation
from rat7m.table_build import build_table
from tests.helpers.read_only import read_only_command, restore_writable

REPO = Path(__file__).resolve().parents[2]
SMALL = ("--recordings", "s1-d1", "--cameras", "1,2", "--image-size", "192x152", "-q")


@pytest.fixture(scope="module")
def table(synthetic_dataset):
    """A small table of s1-d1 (no image extracted: every test passes --image-size)."""
    return build_table([synthetic_dataset.recordings["s1-d1"].mat_path], stride=40)


@pytest.fixture
def root(tmp_path):
    """A dataset root of our own (never the shared synthetic one: a bad export must not touch it)."""
    root = tmp_path / "data"
    for sub in (catalogue.VIDEO_DIR, catalogue.ANNOTATION_DIR, catalogue.IMAGES_DIR):
        (root / sub).mkdir(parents=True)
    return root


def with_path(table, path, camera="Camera2", row=3):
    """The table with one ``image_path`` cell replaced (not the first row of the first camera)."""
    out = copy.deepcopy(table)
    paths = np.array(out["table"]["image_path"][camera], dtype=object)
    paths[row] = path
    out["table"]["image_path"][camera] = paths
    return out


def run(*argv):
    return cli.main([str(a) for a in argv])


def lines(capsys):
    """stderr lines, without the one saying which dataset root is used."""
    return [line for line in capsys.readouterr().err.splitlines() if line and not line.startswith("dataset root: ")]


def tree(folder):
    """Every path under ``folder`` (links not followed), with the target of each link."""
    return {str(p.relative_to(folder)): os.readlink(p) if p.is_symlink() else None for p in folder.rglob("*")}


@pytest.mark.parametrize("fmt", ["coco", "dlc", "yolo", "slp"])
def test_a_climbing_image_path_is_refused_before_anything_is_written(table, root, tmp_path, capsys, fmt):
    if fmt == "slp":
        pytest.importorskip("sleap_io")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("mine")
    climb = "zzz/" + "../" * 12 + str(victim).lstrip("/") + "/notes.jpg"
    save_annotation(with_path(table, climb), root / "t.pkl")
    before = tree(tmp_path)
    assert run(fmt, "--root", root, "--annotation", root / "t.pkl", "--out", tmp_path / "out", *SMALL) == 2
    err = lines(capsys)
    assert len(err) == 1 and "image_path['Camera2'][3]" in err[0] and "'..' part" in err[0], err
    assert (victim / "notes.txt").read_text() == "mine" and sorted(p.name for p in victim.iterdir()) == ["notes.txt"]
    assert tree(tmp_path) == before  # nothing written anywhere, --out included


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/abs/images/x.jpg", "not a relative POSIX path"),
        ("images_unpacked/s1-d1/camera2/x\x00.jpg", "control character"),
        ("images_unpacked/s1-d1/camera2/x\n0 0.5 0.5 1 1.jpg", "control character"),
        ("images_unpacked/s1-d1/camera2/x.png", "does not name a .jpg file"),
        ("images_unpacked/s1-d1/camera2/ x.jpg", "spaces at either end"),
    ],
)
def test_other_untrusted_image_paths_are_refused(table, root, tmp_path, capsys, path, why):
    save_annotation(with_path(table, path), root / "t.pkl")
    assert run("yolo", "--root", root, "--annotation", root / "t.pkl", "--out", tmp_path / "out", *SMALL) == 2
    err = lines(capsys)
    assert len(err) == 1 and why in err[0], err
    assert not (tmp_path / "out").exists()


def test_an_absolute_image_path_never_replaces_a_users_link(table, root, tmp_path, capsys):
    mine = tmp_path / "my_link"
    mine.symlink_to(tmp_path / "somewhere")
    save_annotation(with_path(table, f"{mine}/x.jpg"), root / "t.pkl")
    assert run("yolo", "--root", root, "--annotation", root / "t.pkl", "--out", tmp_path / "out", *SMALL) == 2
    assert len(lines(capsys)) == 1
    assert os.readlink(mine) == str(tmp_path / "somewhere")


def test_a_comma_in_an_image_name_is_quoted_in_the_dlc_csv(table, root, tmp_path):
    odd = "images_unpacked/s1-d1/camera2/odd,name \"q\".jpg"
    save_annotation(with_path(table, odd), root / "t.pkl")
    assert run("dlc", "--root", root, "--annotation", root / "t.pkl", "--out", tmp_path / "out", *SMALL) == 0
    folder = tmp_path / "out" / "dlc" / "labeled-data" / "s1-d1_Camera2"
    frame = pd.read_csv(folder / "CollectedData_rat7m.csv", header=[0, 1, 2], index_col=[0, 1, 2])
    assert frame.shape == (len(np.unique(table["table"]["image_path"]["Camera2"])), 2 * catalogue.N_JOINTS)
    assert frame.index[3] == ("labeled-data", "s1-d1_Camera2", 'odd,name "q".jpg')
    assert (folder / 'odd,name "q".jpg').is_symlink()


@pytest.mark.parametrize("inside", [catalogue.VIDEO_DIR, catalogue.ANNOTATION_DIR])
def test_out_inside_the_dataset_inputs_is_refused(table, root, capsys, inside):
    save_annotation(table, root / "t.pkl")
    assert run("coco", "--root", root, "--annotation", root / "t.pkl", "--out", root / inside, *SMALL) == 2
    err = lines(capsys)
    assert len(err) == 1 and f"inside the dataset's {inside}/" in err[0], err
    assert list((root / inside).iterdir()) == []


def test_out_naming_a_file_or_a_read_only_folder_is_one_line(table, root, tmp_path, capsys):
    save_annotation(table, root / "t.pkl")
    (tmp_path / "afile").write_text("x")
    assert run("coco", "--root", root, "--annotation", root / "t.pkl", "--out", tmp_path / "afile", *SMALL) == 2
    err = lines(capsys)
    assert len(err) == 1 and "is a file, not a folder" in err[0], err
    locked = tmp_path / "locked"
    locked.mkdir()
    command = [sys.executable, str(REPO / "export.py"), "coco", "--root", root, "--annotation", root / "t.pkl",
               "--out", locked, *SMALL]  # fmt: skip
    try:
        done = subprocess.run(read_only_command(locked, command), capture_output=True, text=True, timeout=120,
                              cwd=REPO)  # fmt: skip
    finally:
        restore_writable(locked)
    err = [line for line in done.stderr.splitlines() if not line.startswith("dataset root: ")]
    assert done.returncode == 2 and len(err) == 1 and "cannot write" in err[0] and "Traceback" not in done.stderr
    assert list(locked.iterdir()) == []


def test_a_full_disk_is_one_line_and_leaves_nothing(table, root, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    save_annotation(table, root / "t.pkl")
    small = tmp_path / "small"
    small.mkdir()
    script = ('mount -t tmpfs -o size=4k tmpfs "$0" && "$@"; code=$?; ls -A "$0" > "$0.ls"; exit $code')
    command = ["unshare", "-m", "sh", "-c", script, small, sys.executable, REPO / "export.py", "coco", "--root", root,
               "--annotation", root / "t.pkl", "--out", small, "--image-size", "192x152", "-q"]  # fmt: skip
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=120, cwd=REPO)
    err = [line for line in done.stderr.splitlines() if not line.startswith("dataset root: ")]
    assert done.returncode == 2 and len(err) == 1, done.stderr
    assert "cannot write the coco export" in err[0] and "Traceback" not in done.stderr
    assert (tmp_path / "small.ls").read_text() == ""  # the staging folder is gone


def test_a_self_looping_chunk_link_is_one_line_in_the_dannce_export(table, root, tmp_path, capsys):
    save_annotation(table, root / "t.pkl")
    loop = root / catalogue.VIDEO_DIR / "s1-d1-camera1-0.mp4"
    loop.symlink_to(loop.name)
    assert run("dannce", "--root", root, "--annotation", root / "t.pkl", "--out", tmp_path / "out", *SMALL) == 2
    err = lines(capsys)
    assert len(err) == 1 and str(loop) in err[0] and "loops or leads nowhere" in err[0], err
    assert not (tmp_path / "out" / "dannce").exists() and list((tmp_path / "out").iterdir()) == []


def test_all_goes_on_past_a_refused_format_and_lists_it(table, root, tmp_path, capsys):
    save_annotation(table, root / "t.pkl")  # the synthetic rig has skew: anipose refuses it
    assert run("all", "--root", root, "--annotation", root / "t.pkl", "--out", tmp_path / "out", *SMALL) == 2
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    expected = {"coco", "dlc", "yolo", "dannce"} | ({"slp"} if REGISTRY["slp"].available() else set())
    assert written == sorted(expected)
    assert all((tmp_path / "out" / f / MANIFEST_NAME).is_file() for f in written)
    err = lines(capsys)
    assert err[-1].startswith("error: anipose skipped: ") and "--allow-skew" in err[-1]


def test_all_on_test_recordings_only_skips_dlc_and_writes_the_rest(synthetic_dataset, root, tmp_path, capsys):
    """dlc's default train split is empty for test recordings: only dlc is skipped, not the whole run."""
    save_annotation(build_table([synthetic_dataset.recordings["s5-d1"].mat_path], stride=40), root / "t.pkl")
    small = ("--recordings", "s5-d1", *SMALL[2:])
    argv = ("all", "--root", root, "--annotation", root / "t.pkl", "--out", tmp_path / "out", "--allow-skew", *small)
    assert run(*argv, "--dry-run") == 2
    assert "dlc: would skip" in capsys.readouterr().out
    assert run(*argv) == 2
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    slp = {"slp"} if REGISTRY["slp"].available() else set()
    assert written == sorted({"coco", "yolo", "anipose", "dannce"} | slp)
    err = lines(capsys)
    assert err[-1].startswith("error: dlc skipped: ") and "no train rows of s5-d1" in err[-1], err


def test_images_elsewhere_the_hint_names_images_root(table, root, tmp_path, capsys):
    save_annotation(table, root / "t.pkl")
    assert run("coco", "--root", root, "--annotation", root / "t.pkl", "--out", tmp_path / "out", "-q") == 2
    err = lines(capsys)
    assert len(err) == 1 and "none of the" in err[0] and "pass --images-root FOLDER" in err[0], err


def test_rat7m_root_is_honoured_and_said_once(table, tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    root.mkdir()
    save_annotation(table, catalogue.mini_annotation_path(root))
    monkeypatch.setenv("RAT7M_ROOT", str(root))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["coco", "--out", str(tmp_path / "out"), "--recordings", "s1-d1", "--image-size", "192x152"]) == 0
    err = capsys.readouterr().err
    assert err.count("dataset root: ") == 1 and f"dataset root: {root} (from $RAT7M_ROOT)" in err
    assert (tmp_path / "out" / "coco" / MANIFEST_NAME).is_file()


def test_a_killed_runs_staging_folder_is_removed_by_a_rerun(table, root, tmp_path):
    save_annotation(table, root / "t.pkl")
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    left = out / f".dannce.{dead_pid}.partial"
    (left / "s1-d1").mkdir(parents=True)
    (out / f".coco.{dead_pid}.old").mkdir()
    alive = out / f".dannce.{os.getppid()}.partial"  # a live writer's: kept
    alive.mkdir()
    assert run("dannce", "--root", root, "--annotation", root / "t.pkl", "--out", out, *SMALL) == 0
    assert run("coco", "--root", root, "--annotation", root / "t.pkl", "--out", out, *SMALL) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["coco", "dannce", alive.name])


def test_the_console_command_names_itself():
    command = Path(sys.executable).parent / "rat7m-export"
    if not command.exists():
        pytest.skip("rat7m-export is not installed in this environment")
    done = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage: rat7m-export "), done.stdout[:200]
    script = subprocess.run([sys.executable, str(REPO / "export.py"), "--help"], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert script.stdout.startswith("usage: export.py ")
    bad = subprocess.run([str(command), "coco", "--out", "x", "--image-szie", "1x1"], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("rat7m-export: error: ") and "--image-size" in bad.stderr


def test_the_last_row_of_the_last_camera_is_checked_too(table, root, tmp_path, capsys):
    # the last row of the last camera: the old check looked at the first row of the first camera only
    last = len(table["table"]["subject_idx"]) - 1
    save_annotation(with_path(table, "../x.jpg", camera="Camera2", row=last), root / "t.pkl")
    assert run("coco", "--root", root, "--annotation", root / "t.pkl", "--out", tmp_path / "out", *SMALL) == 2
    assert f"image_path['Camera2'][{last}]" in lines(capsys)[0]
    assert not (tmp_path / "out").exists()


def test_a_link_is_never_made_through_a_link_into_the_users_images(table, root, tmp_path, capsys):
    images = root / catalogue.IMAGES_DIR / "s1-d1" / "camera2"
    images.mkdir(parents=True)
    (images / "mine.jpg").write_bytes(b"a user's image")
    paths = np.array(table["table"]["image_path"]["Camera2"], dtype=object)
    paths[0] = "images_unpacked/s1-d1/camera2/a.jpg"  # yolo links images/<this folder> to the user's folder ...
    paths[1] = "images_unpacked/s1-d1/camera2/sub/b.jpg"  # ... so this folder would be made inside it
    steered = copy.deepcopy(table)
    steered["table"]["image_path"]["Camera2"] = paths
    save_annotation(steered, root / "t.pkl")
    code = run("yolo", "--root", root, "--annotation", root / "t.pkl", "--out", tmp_path / "out", *SMALL)
    # since the unique stems (issue 21) yolo links each image, never a folder: the export may succeed, but
    # nothing is ever made in the user's folder, and every link lives inside the export
    assert sorted(p.name for p in images.iterdir()) == ["mine.jpg"]
    if code == 2:
        err = lines(capsys)
        assert len(err) == 1 and "is not inside the export folder" in err[0], err
        assert list((tmp_path / "out").iterdir()) == []  # the staging folder is gone too
    else:
        assert code == 0
        out = (tmp_path / "out" / "yolo").resolve()
        links = [p for p in out.rglob("*") if p.is_symlink()]
        assert links and all(out in p.parent.resolve().parents or p.parent.resolve() == out for p in links)
        assert not any(p.is_symlink() and p.is_dir() for p in out.rglob("*"))  # no folder is a link


def test_an_export_is_never_written_through_a_users_link(table, root, tmp_path, capsys):
    save_annotation(table, root / "t.pkl")
    theirs = tmp_path / "theirs"
    assert run("coco", "--root", root, "--annotation", root / "t.pkl", "--out", theirs, *SMALL) == 0
    out = tmp_path / "out"
    out.mkdir()
    (out / "coco").symlink_to(theirs / "coco")
    assert run("coco", "--root", root, "--annotation", root / "t.pkl", "--out", out, "--overwrite", *SMALL) == 2
    assert "is a symbolic link" in lines(capsys)[-1]
    assert os.readlink(out / "coco") == str(theirs / "coco") and (theirs / "coco" / MANIFEST_NAME).is_file()


def test_link_refuses_a_path_outside_the_stage(tmp_path):
    """The last guard under every export's links: the link's folder must resolve inside the stage."""
    from rat7m.export.common import link

    stage, elsewhere = tmp_path / "stage", tmp_path / "users"
    stage.mkdir()
    elsewhere.mkdir()
    (stage / "images").symlink_to(elsewhere, target_is_directory=True)  # a link the stage made earlier
    with pytest.raises(BadInputError, match="not inside the export folder"):
        link(tmp_path / "target.jpg", stage / "images" / "sub" / "b.jpg", stage)
    with pytest.raises(BadInputError, match="not inside the export folder"):
        link(tmp_path / "target.jpg", tmp_path / "out.jpg", stage)
    assert list(elsewhere.iterdir()) == []
    link(tmp_path / "target.jpg", stage / "ok" / "a.jpg", stage)
    assert (stage / "ok" / "a.jpg").is_symlink()


@pytest.mark.parametrize(
    "manifest", [b"{", b"[1]", b'{"recordings": 5}', b"\xff"], ids=["cut", "list", "recordings a number", "binary"]
)
def test_a_damaged_manifest_in_out_is_one_line(table, root, tmp_path, capsys, manifest):
    """A finished export's manifest lies in --out, where other hands may write: before, a damaged one was a
    JSONDecodeError, AttributeError or TypeError traceback on the rerun and on --dry-run."""
    save_annotation(table, root / "t.pkl")
    args = ("coco", "--root", root, "--annotation", root / "t.pkl", "--out", tmp_path / "out", *SMALL)
    assert run(*args) == 0
    (tmp_path / "out" / "coco" / MANIFEST_NAME).write_bytes(manifest)
    capsys.readouterr()
    for extra in ((), ("--dry-run",)):
        assert run(*args, *extra) == 2
        err = lines(capsys)
        assert len(err) == 1 and err[0].endswith("not an export's manifest; pass --overwrite to redo the export"), err
