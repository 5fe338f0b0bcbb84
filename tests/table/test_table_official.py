"""The official table as it really is: written by numpy 1.x in 2021, the .mat's camera spellings,
float index columns, numpy.int64 keys, object arrays of str and keys we do not use."""

import logging

import numpy as np
import pytest

from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.table import load_annotation
from rat7m.table_build import build_table
from tests.helpers.numpy1_pickle import numpy1_dumps, official_style
from tests.helpers.plausible_rig import write_recordings
from tests.table.test_table import cli

SIZES = {"s1-d1": 40, "s5-d2": 30}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("official")
    write_recordings(root, SIZES)
    return root, build_table([root / catalogue.ANNOTATION_DIR / f"mocap-{name}.mat" for name in SIZES])


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_a_numpy1_table_loads_with_both_spellings(built, tmp_path, protocol, caplog):
    _, table = built
    path = tmp_path / catalogue.MINI_ANNOTATION_NAME
    path.write_bytes(numpy1_dumps(official_style(table), protocol))
    with caplog.at_level(logging.DEBUG, logger="rat7m.table"):
        loaded = load_annotation(path)
    assert [r.message for r in caplog.records if "ignoring key" in r.message] == [
        f"{path}: ignoring key(s) the toolkit does not use: 'version', table['cluster_ids']"
    ]
    columns = loaded["table"]
    assert columns["subject_idx"].dtype == np.float64  # kept as given
    np.testing.assert_array_equal(columns["subject_idx"], table["table"]["subject_idx"])
    assert columns["image_path"]["Camera2"].dtype == object
    assert all(type(k) is np.int64 for k in loaded["cameras"])
    for cam in catalogue.CAMERA_NAMES:
        camera = loaded["cameras"][np.int64(5)][np.int64(2)][cam]
        assert camera["RotationMatrix"] is camera["rotationMatrix"]
        assert camera["TranslationVector"] is camera["translationVector"]
        np.testing.assert_array_equal(camera["RotationMatrix"], table["cameras"][5][2][cam]["RotationMatrix"])


def test_check_passes_on_a_numpy1_table(built, tmp_path, capsys):
    _, table = built
    path = tmp_path / "official.pkl"
    path.write_bytes(numpy1_dumps(official_style(table), 2))
    code, out, _ = cli(["--check", str(path)], capsys)
    assert code == 0, out
    assert "reprojection of 3D_keypoints vs 2D_keypoints (px): OK" in out


def test_non_whole_float_index_is_refused_clearly(built, tmp_path):
    _, table = built
    official = official_style(table)
    official["table"]["day_idx"] = official["table"]["day_idx"] + 0.5
    path = tmp_path / "half.pkl"
    path.write_bytes(numpy1_dumps(official, 4))
    with pytest.raises(BadInputError, match=r"half\.pkl: table\['day_idx'\]: expected whole numbers"):
        load_annotation(path)


def test_a_numpy1_table_drives_extraction_and_the_dataset(synthetic_dataset, tmp_path, capsys):
    """The official-style table (numpy-1 paths, .mat spellings, float indices, int64 keys, extra keys)
    is what extract_frames.py and MiniRat7m read: every image exact by barcode, every sample served."""
    import cv2

    import extract_frames
    from rat7m.barcode import read_barcode
    from rat7m.cli import run_main
    from rat7m.dataset import MiniRat7m
    from rat7m.extract import is_complete_jpeg

    mats = [synthetic_dataset.recordings[name].mat_path for name in ("s1-d1", "s5-d1")]
    table = build_table(mats, stride=7)
    root = tmp_path / "data"
    root.mkdir()
    (root / catalogue.VIDEO_DIR).symlink_to(synthetic_dataset.video_dir, target_is_directory=True)
    catalogue.mini_annotation_path(root).write_bytes(numpy1_dumps(official_style(table), 2))

    code = run_main(extract_frames.main, ["--root", str(root), "--jobs", "1", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    columns = table["table"]
    for cam in catalogue.CAMERA_NAMES:
        for path, frame in zip(columns["image_path"][cam], columns["frame_idx"][cam], strict=True):
            assert is_complete_jpeg(root / path), path
            assert read_barcode(cv2.imread(str(root / path))) == frame, path

    for split in catalogue.SPLITS:
        dataset = MiniRat7m(root=root, split=split)
        assert len(dataset) == int(np.sum(columns["train_test"] == split)) > 0
        for sample in (dataset[0], dataset[-1]):
            row = sample["row"]
            for cam in catalogue.CAMERA_NAMES:
                bgr = cv2.cvtColor(sample["images"][cam], cv2.COLOR_RGB2BGR)
                assert read_barcode(bgr) == columns["frame_idx"][cam][row]
                np.testing.assert_array_equal(sample["keypoints_2d"][cam], columns["2D_keypoints"][cam][row])
                camera = sample["cameras"][cam]
                assert camera["rotationMatrix"] is camera["RotationMatrix"]
