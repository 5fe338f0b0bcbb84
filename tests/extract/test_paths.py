"""A table's ``image_path`` cannot steer extraction: JPEGs go only under images_unpacked/ (issue 12 item 9)."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest

import extract_frames
from rat7m import catalogue, extract
from rat7m.cli import run_main
from rat7m.errors import BadInputError
from rat7m.table import save_annotation
from rat7m.table_build import build_table


@pytest.fixture(scope="module")
def built(synthetic_dataset):
    recording = synthetic_dataset.recordings["s1-d1"]
    return build_table([recording.mat_path], stride=50)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("video_sequences/s1-d1-camera1-0.mp4", "not under images_unpacked/"),
        (catalogue.MINI_ANNOTATION_NAME, "not under images_unpacked/"),
        (".bashrc", "not under images_unpacked/"),
        ("images_unpacked/s1-d1/camera1/frame.png", "does not name a .jpg file"),
        ("images_unpacked/.jpg", "does not name a .jpg file"),
        ("images_unpacked", "not under images_unpacked/"),
        ("images_unpacked/../x.jpg", "'..' part"),
        ("images_unpacked//x.jpg", "empty"),
        ("images_unpacked/./x.jpg", "'.' or"),
        ("/tmp/images_unpacked/x.jpg", "not a relative POSIX path"),
        ("images_unpacked/x\x00.jpg", "control character"),
        ("images_unpacked/a\\b.jpg", "backslash"),
        ("C:images_unpacked/x.jpg", "colon"),
    ],
)
def test_image_path_outside_the_images_folder_is_refused(path, why):
    with pytest.raises(BadInputError, match=r"image_path\['Camera3'\]\[7\] = .*" + why.replace(".", r"\.")) as info:
        extract.check_image_path(path, 7, "Camera3")
    assert "\n" not in str(info.value)


def test_image_path_under_the_images_folder_is_accepted():
    extract.check_image_path("images_unpacked/odd/name.jpg", 0, "Camera1")
    extract.check_image_path("frames/s1/x.jpg", 0, "Camera1", images_dir="frames")  # another images root
    with pytest.raises(BadInputError, match="not under frames/"):
        extract.check_image_path("images_unpacked/x.jpg", 0, "Camera1", images_dir="frames")


@pytest.mark.parametrize("target", ["video_sequences/s1-d1-camera1-0.mp4", catalogue.MINI_ANNOTATION_NAME, ".bashrc"])
def test_extract_frames_refuses_a_steered_table_before_any_work(synthetic_dataset, built, tmp_path, capsys, target):
    root = tmp_path / "data"
    root.mkdir()
    (root / catalogue.VIDEO_DIR).symlink_to(synthetic_dataset.video_dir, target_is_directory=True)
    (root / ".bashrc").write_text("echo hi\n")
    columns = built["table"]
    paths = {cam: np.array(values, dtype=object) for cam, values in columns["image_path"].items()}
    paths["Camera1"][1] = target
    save_annotation({**built, "table": {**columns, "image_path": paths}}, catalogue.mini_annotation_path(root))
    before = {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in (target, ".bashrc")}
    assert run_main(extract_frames.main, ["--root", str(root), "--jobs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"image_path['Camera1'][1] = {target!r} is not under images_unpacked/" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (root / catalogue.IMAGES_DIR).exists()  # refused before any work
    assert before == {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in before}


def test_ragged_camera_names_is_one_line(built, tmp_path, capsys):
    root = tmp_path / "data"
    (root / catalogue.VIDEO_DIR).mkdir(parents=True)
    ragged = {**built, "camera_names": [["Camera1", "Camera2"], ["Camera3"]]}
    catalogue.mini_annotation_path(root).write_bytes(pickle.dumps(ragged, protocol=4))
    assert run_main(extract_frames.main, ["--root", str(root), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "camera_names" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
