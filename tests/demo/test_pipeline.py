"""`make demo` end to end: the same script, on the small "test" profile, as a real subprocess."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from rat7m import catalogue
from rat7m.barcode import read_barcode
from rat7m.demo.pipeline import PREDICTION_NOISE_MM, PREDICTION_NOISE_PX
from rat7m.table import load_annotation

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_runs_every_step_and_leaves_its_results(tmp_path):
    out = tmp_path / "demo_output"
    result = subprocess.run([sys.executable, "-m", "rat7m.demo", "--out", str(out), "--profile", "test", "--quiet"],
                            cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo done" in result.stdout

    # downloaded byte for byte from the local Figshare server
    source, dataset = out / "figshare", out / "dataset"
    for sub in (catalogue.VIDEO_DIR, catalogue.ANNOTATION_DIR):
        names = sorted(p.name for p in (source / sub).iterdir())
        assert names and names == sorted(p.name for p in (dataset / sub).iterdir())
        assert all((source / sub / n).read_bytes() == (dataset / sub / n).read_bytes() for n in names)

    # every image of the table extracted, and it is the right frame
    annotation = load_annotation(dataset / catalogue.MINI_ANNOTATION_NAME)
    columns = annotation["table"]
    for cam in catalogue.CAMERA_NAMES:
        for row in (0, len(columns["train_test"]) - 1):
            image = cv2.imread(str(dataset / columns["image_path"][cam][row]))
            assert read_barcode(image) == columns["frame_idx"][cam][row]
    n_images = sum(1 for _ in (dataset / catalogue.IMAGES_DIR).rglob("*.jpg"))
    assert n_images == len({p for cam in catalogue.CAMERA_NAMES for p in columns["image_path"][cam]})

    # the same frames in tar shards, byte for byte
    shard_images = 0
    for path in sorted((dataset / "shards").glob("*.tar")):
        with tarfile.open(path) as tar:
            jpegs = [m for m in tar.getmembers() if m.name.endswith(".jpg")]
            row = int(jpegs[0].name.split("_r")[1].split(".")[0])  # key s1-d1_f000014_r000003, view cam1
            assert tar.extractfile(jpegs[0]).read() == (dataset / columns["image_path"]["Camera1"][row]).read_bytes()
            shard_images += len(jpegs)
    assert shard_images == len(columns["train_test"]) * len(catalogue.CAMERA_NAMES)

    # metrics over the whole test split; 3D Gaussian noise of sigma s gives a mean error of about 1.6 s
    summary = json.loads((out / "metrics" / "summary.json").read_text())
    assert summary["n_samples"] == int(np.sum(columns["train_test"] == "test"))
    assert 1.3 * PREDICTION_NOISE_MM < summary["metrics"]["mpjpe"]["mean"] < 1.9 * PREDICTION_NOISE_MM
    assert (out / "metrics" / "per_joint_mpjpe.png").stat().st_size > 5000

    # 2D predictions scored per camera (2D Gaussian noise of sigma s: mean error s sqrt(pi/2) ~ 1.25 s), then
    # triangulated from six views: better than the 3D predictions' noise even on the tiny test-profile frames
    summary_2d = json.loads((out / "metrics_2d" / "summary_2d.json").read_text())
    assert 1.1 * PREDICTION_NOISE_PX < summary_2d["all"]["mpjpe_px"] < 1.4 * PREDICTION_NOISE_PX
    assert set(summary_2d["cameras"]) == set(catalogue.CAMERA_NAMES) and summary_2d["all"]["ap"] > 0.5
    triangulated = json.loads((out / "metrics_2d" / "summary.json").read_text())
    assert triangulated["n_samples"] == summary["n_samples"]
    assert 0 < triangulated["metrics"]["mpjpe"]["mean"] < summary["metrics"]["mpjpe"]["mean"]

    # the executed notebook and its figures
    assert (out / "visualization.ipynb").is_file() and (out / "visualization.html").is_file()
    assert len(list((out / "figures").glob("*.png"))) == 4

    # the render step: the scoring run's report and a labelled video of one camera
    assert '<section id="worst">' in (out / "metrics" / "report.html").read_text()
    assert (out / "labelled_s5-d1_camera1.mp4").stat().st_size > 10_000
