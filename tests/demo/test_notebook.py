"""visualization.ipynb run top to bottom by a real Jupyter kernel, and the MiniRat7m accessor it uses,
on frames really extracted from the synthetic dataset."""

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import extract_frames
from rat7m import catalogue
from rat7m.barcode import read_barcode
from rat7m.cli import run_main
from rat7m.dataset import MiniRat7m
from rat7m.demo.notebook import execute_notebook
from rat7m.table_build import build_table
from tests.helpers.numpy1_pickle import numpy1_dumps, official_style

REPO = Path(__file__).resolve().parents[2]
FIGURES = ("sample_one_camera", "sample_six_cameras", "sample_3d", "reprojection_error")


@pytest.fixture(scope="module")
def extracted(synthetic_dataset, tmp_path_factory):
    """A dataset root with a table (one mocap sample in 10) and its frames extracted.

    The table is saved as the official file most probably is (numpy-1 pickle paths, the .mat's
    lower-case camera spellings, float index columns, int64 keys, extra keys): the notebook and the
    accessor must work on it; ``make demo`` (tests/demo/test_pipeline.py) runs the notebook on a built table."""
    root = tmp_path_factory.mktemp("notebook") / "data"
    root.mkdir()
    (root / catalogue.VIDEO_DIR).symlink_to(synthetic_dataset.video_dir, target_is_directory=True)
    table = build_table([r.mat_path for r in synthetic_dataset.recordings.values()], stride=10)
    catalogue.mini_annotation_path(root).write_bytes(numpy1_dumps(official_style(table), 2))
    assert run_main(extract_frames.main, ["--root", str(root), "--jobs", "1", "--quiet"]) == 0
    return root, table


def test_accessor_gives_the_right_images_and_keypoints(extracted):
    root, table = extracted
    columns = table["table"]
    test_rows = np.flatnonzero(columns["train_test"] == "test")
    dataset = MiniRat7m(catalogue.mini_annotation_path(root), root=root, split="test")
    assert len(dataset) == len(test_rows) > 0
    assert len(MiniRat7m(catalogue.mini_annotation_path(root), root=root, split="all")) == len(columns["train_test"])
    for i in (0, len(dataset) - 1):
        sample = dataset[i]
        row = test_rows[i]
        assert sample["row"] == row and sample["recording"] in ("s5-d1", "s5-d2")
        np.testing.assert_array_equal(sample["keypoints_3d"], columns["3D_keypoints"][row])
        for cam in catalogue.CAMERA_NAMES:
            image = sample["images"][cam]
            assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
            # the JPEG shows the frame the table names (barcode read from the BGR image)
            assert read_barcode(cv2.cvtColor(image, cv2.COLOR_RGB2BGR)) == columns["frame_idx"][cam][row]
            np.testing.assert_array_equal(sample["keypoints_2d"][cam], columns["2D_keypoints"][cam][row])
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_notebook_runs_headless_and_draws_every_figure(extracted, tmp_path):
    root, _ = extracted
    figures = tmp_path / "figures"
    output = tmp_path / "visualization.ipynb"
    params = {"TABLE_PATH": str(catalogue.mini_annotation_path(root)), "DATASET_ROOT": str(root), "SEED": 3,
              "FIGURE_DIR": str(figures)}  # fmt: skip
    nb = execute_notebook(REPO / "visualization.ipynb", output, params, cwd=REPO)

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == len(FIGURES)  # one picture per figure cell
    for name in FIGURES:
        picture = cv2.imread(str(figures / f"{name}.png"))
        assert picture is not None and picture.shape[0] > 200 and picture.std() > 10, name
    text = "".join(o.get("text", "") for o in outputs)
    errors = [float(e) for e in re.findall(r"Camera\d: max ([0-9.e+-]+) px", text)]
    assert len(errors) == 6 and max(errors) < 1e-6  # the table's 2D keypoints are the projections of its 3D ones
    assert re.search(r"all \d+ joints within 1e-9 px: exact", text)  # said plainly, not an empty-looking chart
    assert output.with_suffix(".html").stat().st_size > 10_000

    committed = json.loads((REPO / "visualization.ipynb").read_text())
    figure_cells = ["".join(c["source"]) for c in committed["cells"] if "plt.show()" in "".join(c["source"])]
    assert len(figure_cells) == len(FIGURES) and all("legend(" in c for c in figure_cells)  # a legend on each
    assert "joint_names=True" in figure_cells[2]  # the 3D plot names its joints
    assert "barcode" in "".join("".join(c["source"]) for c in committed["cells"] if c["cell_type"] == "markdown")
    assert all(not c.get("outputs") for c in committed["cells"] if c["cell_type"] == "code"), "commit it cleared"
    shutil.rmtree(figures)
