"""The pixel convention at every boundary, measured on the pictures themselves.

The synthetic videos draw each marker where a MATLAB camera puts it (0-based image position =
MATLAB projection - 1), as the real rig's do. Every test here locates the drawn markers' centroids
in the extracted JPEGs or decoded frames (:mod:`tests.helpers.markers`) and compares them with what an
export, an exported calibration, the renderer or the accessor says, in 0-based image pixels. A
forgotten conversion is a 1.41 px miss; these checks allow 0.1 px of bias.

Each export is also run on the table's 0-based twin (the same table with its 2D stored 0-based):
the convention is detected from the table and every output must be the same.
"""

import copy
import functools
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from rat7m import catalogue, extract, geometry, pixels
from rat7m.export import cli
from rat7m.table import load_annotation, save_annotation
from rat7m.table_build import build_table
from rat7m.video import ChunkIndex
from tests.helpers.markers import centroids

RECORDINGS = ("s1-d1", "s5-d1")
STRIDE = 3
#: Largest bias (median offset per axis, px) between measured markers and what the code says.
BIAS_PX = 0.1
#: Largest distance (px) of 95% of single markers: JPEG and H.264 noise on a 2 px disc.
SPREAD_PX = 0.4


def zero_based_twin(table: dict) -> dict:
    """The same table with its 2D columns stored 0-based (as a Python tool would have written them)."""
    twin = copy.deepcopy(table)
    twin.pop(pixels.TABLE_KEY, None)
    for key in ("2D_keypoints", "2D_com"):
        twin["table"][key] = {cam: np.asarray(v) - 1.0 for cam, v in twin["table"][key].items()}
    return twin


@pytest.fixture(scope="module")
def roots(synthetic_dataset, tmp_path_factory):
    """``{convention: dataset root}``: a MATLAB table and its 0-based twin over the same extracted images."""
    base = tmp_path_factory.mktemp("pixels")
    matlab = base / "matlab"
    matlab.mkdir()
    (matlab / catalogue.VIDEO_DIR).symlink_to(synthetic_dataset.video_dir, target_is_directory=True)
    recordings = [synthetic_dataset.recordings[name] for name in RECORDINGS]
    table = build_table([r.mat_path for r in recordings], stride=STRIDE)
    save_annotation(table, catalogue.mini_annotation_path(matlab))
    jobs = extract.plan_jobs(table, ChunkIndex.from_dir(matlab / catalogue.VIDEO_DIR),
                             [r.recording for r in recordings], catalogue.CAMERA_NAMES)  # fmt: skip
    assert not extract.extract(jobs, matlab, processes=1, progress=False, decoder="opencv").failures
    twin = base / "zero"
    twin.mkdir()
    for sub in (catalogue.VIDEO_DIR, catalogue.IMAGES_DIR):
        (twin / sub).symlink_to(matlab / sub, target_is_directory=True)
    save_annotation(zero_based_twin(table), catalogue.mini_annotation_path(twin))
    return {pixels.MATLAB: matlab, pixels.ZERO_BASED: twin}


@functools.lru_cache(maxsize=512)
def _image(path: str) -> np.ndarray:
    image = cv2.imread(path)
    assert image is not None, path
    return image


def measured(image_path: Path, keypoints: np.ndarray) -> np.ndarray:
    """Centroids ``(20, 2)`` of the drawn markers near ``keypoints`` (0-based), NaN where unmeasurable."""
    return centroids(_image(str(Path(image_path).resolve())), keypoints)


def assert_on_markers(offsets: list[np.ndarray], what: str, least: int = 200) -> None:
    """Stated keypoints minus measured centroids: no bias, little spread."""
    found = np.concatenate([o.reshape(-1, 2) for o in offsets])
    found = found[np.isfinite(found).all(axis=1)]
    assert len(found) >= least, f"{what}: only {len(found)} markers measured"
    bias = np.median(found, axis=0)
    spread = np.percentile(np.linalg.norm(found, axis=1), 95)
    assert np.all(np.abs(bias) < BIAS_PX), f"{what}: keypoints are off the drawn markers by {bias} px (median)"
    assert spread < SPREAD_PX, f"{what}: 95% of keypoints within {spread:.2f} px of the markers"


def export(root: Path, fmt: str, out: Path, *extra) -> Path:
    assert cli.main([fmt, "--root", str(root), "--out", str(out), "--quiet", *map(str, extra)]) == 0
    return out / fmt


CONVENTIONS = [pixels.MATLAB, pixels.ZERO_BASED]


def test_the_drawn_markers_are_where_a_matlab_camera_puts_them(roots):
    # the fixture itself: measured centroids are the MATLAB projections minus 1, not the projections
    table = load_annotation(catalogue.mini_annotation_path(roots[pixels.MATLAB]))
    columns = table["table"]
    right, wrong = [], []
    for row in range(0, len(columns["subject_idx"]), 2):
        for camera in catalogue.CAMERA_NAMES:
            matlab = columns["2D_keypoints"][camera][row]
            got = measured(roots[pixels.MATLAB] / columns["image_path"][camera][row], matlab - 1)
            right.append(matlab - 1 - got)
            wrong.append(matlab - got)
    assert_on_markers(right, "MATLAB projection - 1", least=150)
    found = np.concatenate(wrong)
    assert np.allclose(np.nanmedian(found, axis=0), 1.0, atol=BIAS_PX)  # the 1-based numbers are a pixel off


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_coco_keypoints_and_boxes_land_on_the_drawn_markers(roots, tmp_path, convention):
    import json

    root = roots[convention]
    coco = json.loads((export(root, "coco", tmp_path) / "rat7m_train.json").read_text())
    images = {image["id"]: image for image in coco["images"]}
    offsets = []
    for ann in coco["annotations"]:
        triples = np.array(ann["keypoints"], dtype=float).reshape(20, 3)
        xy = np.where(triples[:, 2:] == 2, triples[:, :2], np.nan)
        offsets.append(xy - measured(root / images[ann["image_id"]]["file_name"], xy))
        seen = xy[triples[:, 2] == 2]
        if len(seen):  # the box is the seen keypoints' box and its margin, in the same pixels
            low, high = seen.min(axis=0), seen.max(axis=0)
            margin = np.maximum((high - low) * 0.1, 4.0)
            size = np.array([images[ann["image_id"]]["width"], images[ann["image_id"]]["height"]])
            corners = np.concatenate([np.clip(low - margin, 0, size), np.clip(high + margin, 0, size)])
            x, y, w, h = ann["bbox"]
            np.testing.assert_allclose([x, y, x + w, y + h], corners, atol=2e-3)
    assert_on_markers(offsets, f"COCO export of a {convention} table")


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_dlc_labels_land_on_the_drawn_markers(roots, tmp_path, convention):
    pd = pytest.importorskip("pandas")
    folder = export(roots[convention], "dlc", tmp_path)
    offsets = []
    for csv in sorted(folder.glob("labeled-data/*/CollectedData_rat7m.csv")):
        frame = pd.read_csv(csv, header=[0, 1, 2], index_col=[0, 1, 2])
        for (_, sub, name), values in zip(frame.index, frame.to_numpy(dtype=float), strict=True):
            xy = values.reshape(20, 2)
            offsets.append(xy - measured(folder / "labeled-data" / sub / name, xy))
    assert_on_markers(offsets, f"DLC export of a {convention} table")


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_yolo_labels_land_on_the_drawn_markers(roots, tmp_path, convention):
    folder = export(roots[convention], "yolo", tmp_path, "--val-recordings", "s5-d1")
    offsets = []
    for listed in (folder / "train.txt").read_text().split() + (folder / "val.txt").read_text().split():
        image = folder / listed
        label = Path("/labels/".join(str(image).rsplit("/images/", 1))).with_suffix(".txt")
        text = label.read_text()
        if not text:
            continue
        height, width = _image(str(image.resolve())).shape[:2]
        values = np.array(text.split(), dtype=float)
        triples = values[5:].reshape(20, 3)
        xy = np.where(triples[:, 2:] == 2, triples[:, :2] * [width, height], np.nan)
        offsets.append(xy - measured(image, xy))
    assert_on_markers(offsets, f"YOLO export of a {convention} table")


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_slp_points_and_cameras_land_on_the_drawn_markers(roots, tmp_path, convention):
    sio = pytest.importorskip("sleap_io")
    labels = sio.load_slp(str(export(roots[convention], "slp", tmp_path) / "rat7m.slp"))
    offsets = []
    for lf in labels:
        xy = lf.instances[0].numpy()
        offsets.append(xy - measured(Path(lf.video.filename[lf.frame_idx]), xy))
    assert_on_markers(offsets, f"SLEAP export of a {convention} table")
    # the session's cameras, through OpenCV from sleap-io's own matrices, project the 3D onto the markers
    offsets = []
    for session in labels.sessions:
        for frame_group in list(session.frame_groups.values())[::2]:
            group = frame_group.instance_groups[0]
            points = np.asarray(group.points, dtype=float)
            finite = np.isfinite(points).all(axis=1)
            for camera in frame_group.cameras:
                labelled = frame_group.get_frame(camera)
                xy = np.full((20, 2), np.nan)
                K, dist = np.asarray(camera.matrix, dtype=float), np.asarray(camera.dist, dtype=float)
                xy[finite] = cv2.projectPoints(
                    points[finite], np.asarray(camera.rvec, dtype=float), np.asarray(camera.tvec, dtype=float), K, dist
                )[0].reshape(-1, 2)
                path = Path(labelled.video.filename[labelled.frame_idx])
                offsets.append(xy - measured(path, xy))
    assert_on_markers(offsets, f"SLEAP cameras of a {convention} table", least=100)


def _rows_and_paths(root: Path, recording: str):
    table = load_annotation(catalogue.mini_annotation_path(root))
    columns = table["table"]
    rec = catalogue.recording_by_name(recording)
    rows = np.flatnonzero((columns["subject_idx"] == rec.subject) & (columns["day_idx"] == rec.day))
    return table, columns, rows


def test_anipose_calibrations_project_onto_the_drawn_markers(roots, tmp_path):
    aniposelib = pytest.importorskip("aniposelib.cameras")
    root = roots[pixels.MATLAB]
    folder = export(root, "anipose", tmp_path, "--allow-skew")  # the synthetic skew moves points < 0.1 px
    offsets = []
    for name in RECORDINGS:
        _, columns, rows = _rows_and_paths(root, name)
        group = aniposelib.CameraGroup.load(str(folder / name / "calibration.toml"))
        points = columns["3D_keypoints"][rows].reshape(-1, 3)
        finite = np.isfinite(points).all(axis=1)
        for i, camera in enumerate(group.get_names()):
            xy = np.full((len(points), 2), np.nan)
            xy[finite] = group.cameras[i].project(points[finite]).reshape(-1, 2)
            for k, row in enumerate(rows):
                kp = xy[20 * k : 20 * (k + 1)]
                offsets.append(kp - measured(root / columns["image_path"][camera][row], kp))
    assert_on_markers(offsets, "anipose calibration")


def test_opencv_cameras_from_to_opencv_project_onto_the_drawn_markers(roots):
    root = roots[pixels.MATLAB]
    offsets = []
    for name in RECORDINGS:
        table, columns, rows = _rows_and_paths(root, name)
        rec = catalogue.recording_by_name(name)
        for camera in catalogue.CAMERA_NAMES:
            params = table["cameras"][rec.subject][rec.day][camera]
            K, rvec, tvec, dist = geometry.to_opencv(params, allow_skew=True)
            for row in rows:
                points = columns["3D_keypoints"][row]
                finite = np.isfinite(points).all(axis=1)
                xy = np.full((20, 2), np.nan)
                xy[finite] = cv2.projectPoints(points[finite], rvec, tvec, K, dist)[0].reshape(-1, 2)
                offsets.append(xy - measured(root / columns["image_path"][camera][row], xy))
    assert_on_markers(offsets, "cv2.projectPoints through to_opencv")


def test_dannce_keeps_matlabs_convention_for_either_table(roots, tmp_path):
    # DANNCE's loader subtracts 1 from data_2d itself: the label3d files hold MATLAB's 1-based pixels
    written = {}
    for convention, root in roots.items():
        folder = export(root, "dannce", tmp_path / convention)
        mat = scipy.io.loadmat(folder / "s1-d1" / "s1-d1_dannce.mat", squeeze_me=False, struct_as_record=False)
        written[convention] = [mat["labelData"][i, 0][0, 0].data_2d for i in range(6)]
    _, columns, rows = _rows_and_paths(roots[pixels.MATLAB], "s1-d1")
    for i, camera in enumerate(catalogue.CAMERA_NAMES):
        want = columns["2D_keypoints"][camera][rows].reshape(len(rows), -1)
        np.testing.assert_array_equal(written[pixels.MATLAB][i], want)
        np.testing.assert_allclose(written[pixels.ZERO_BASED][i], want, atol=1e-12)


def test_an_export_of_a_table_in_neither_convention_is_refused(roots, tmp_path, capsys):
    table = load_annotation(catalogue.mini_annotation_path(roots[pixels.MATLAB]))
    for cam in table["table"]["2D_keypoints"]:
        table["table"]["2D_keypoints"][cam] = table["table"]["2D_keypoints"][cam] + 0.5
    odd = tmp_path / "odd"
    odd.mkdir()
    os.symlink(roots[pixels.MATLAB] / catalogue.IMAGES_DIR, odd / catalogue.IMAGES_DIR)
    save_annotation(table, catalogue.mini_annotation_path(odd))
    assert cli.main(["coco", "--root", str(odd), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "neither pixel convention" in err
    assert not (tmp_path / "out" / "coco").exists()


# ----------------------------------------------------------------------------------------- render


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_sample_figures_draw_truth_and_projected_3d_on_the_markers(roots, convention):
    from rat7m.render.samples import Predictions, frame_images, sample_figure

    root = roots[convention]
    table = load_annotation(catalogue.mini_annotation_path(root))
    columns = table["table"]
    truth_offsets, projected_offsets = [], []
    complete = np.flatnonzero(np.isfinite(columns["3D_keypoints"]).all(axis=(1, 2)))  # MPJPE needs finite points
    for row in complete[::3]:
        predictions = Predictions(points_3d=columns["3D_keypoints"][[row]])  # the truth in 3D: drawn projected
        fig = sample_figure(table, row, predictions, 0, images=frame_images(table, row, root))
        for ax in fig.axes[:6]:
            (shown,) = ax.images
            assert tuple(shown.get_extent()[:2]) == (-0.5, shown.get_array().shape[1] - 0.5)  # pixel centres at 0..W-1
            image = np.asarray(shown.get_array())
            truth, projected = (np.asarray(c.get_offsets(), dtype=float) for c in ax.collections[:2])
            truth_offsets.append(truth - centroids(image, truth))
            projected_offsets.append(projected - centroids(image, projected))
    assert_on_markers(truth_offsets, f"rat7m-render samples, ground truth of a {convention} table", least=100)
    assert_on_markers(projected_offsets, f"rat7m-render samples, projected 3D of a {convention} table", least=100)


def test_labelled_video_ground_truth_is_on_the_markers(synthetic_dataset):
    from rat7m.render.video import decode_range, ground_truth_by_frame

    rec = synthetic_dataset.recordings["s1-d1"]
    offsets = []
    for camera in ("Camera1", "Camera4"):
        truth = ground_truth_by_frame(rec.mat_path, camera)
        for frame, image in decode_range(synthetic_dataset.video_dir, rec.recording, camera, 0, 40):
            if frame in truth:
                offsets.append(truth[frame] - centroids(image, truth[frame]))
    assert_on_markers(offsets, "rat7m-render video ground truth", least=100)


# ----------------------------------------------------------------------------------------- accessor and notebook


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_accessor_zero_based_fields_sit_on_the_markers(roots, convention):
    from rat7m.dataset import MiniRat7m

    root = roots[convention]
    dataset = MiniRat7m(catalogue.mini_annotation_path(root), root=root, split="all")
    assert dataset.pixel_convention == convention
    offsets = []
    for i in range(0, len(dataset), 2):
        sample = dataset[i]
        assert sample["pixel_convention"] == convention
        for cam in dataset.cameras:
            xy = sample["keypoints_2d_zero_based"][cam]
            offsets.append(xy - centroids(sample["images"][cam], xy))
            stored = sample["keypoints_2d"][cam]  # as the table has it
            np.testing.assert_array_equal(stored, dataset.annotation["table"]["2D_keypoints"][cam][sample["row"]])
            np.testing.assert_allclose(xy, stored - (1.0 if convention == pixels.MATLAB else 0.0))
            com = sample["com_2d"][cam] - (1.0 if convention == pixels.MATLAB else 0.0)
            np.testing.assert_allclose(sample["com_2d_zero_based"][cam], com)
    assert_on_markers(offsets, f"MiniRat7m on a {convention} table")


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_notebook_draws_the_keypoints_on_the_markers(roots, convention, monkeypatch):
    # the notebook's own code, run in this process so its figures can be measured
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nbformat

    root = roots[convention]
    notebook = nbformat.read(Path(__file__).resolve().parents[2] / "visualization.ipynb", as_version=4)
    code = [c.source for c in notebook.cells if c.cell_type == "code"]
    parameters = f"TABLE_PATH = {str(catalogue.mini_annotation_path(root))!r}\nDATASET_ROOT = {str(root)!r}\n"
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    plt.close("all")
    offsets = []
    try:
        for seed in range(3):
            namespace: dict = {}
            exec("\n".join([code[0], parameters, f"SEED = {seed}", *code[1:]]), namespace)
            assert "exact" in namespace["verdict"]  # the reprojection check agrees in either convention
            for number in plt.get_fignums()[:2]:  # one camera, then six
                for ax in plt.figure(number).axes:
                    if not ax.images:
                        continue
                    image = np.asarray(ax.images[0].get_array())
                    (dots,) = (c for c in ax.collections if c.get_label() == "keypoints")
                    xy = np.asarray(dots.get_offsets(), dtype=float)
                    offsets.append(xy - centroids(image, xy))
            plt.close("all")
    finally:
        plt.close("all")
    assert_on_markers(offsets, f"visualization.ipynb on a {convention} table", least=60)


# ----------------------------------------------------------------------------------------- --check and doctor


def _shifted_copy(roots, tmp_path, by):
    table = load_annotation(catalogue.mini_annotation_path(roots[pixels.MATLAB]))
    for key in ("2D_keypoints", "2D_com"):
        table["table"][key] = {cam: np.asarray(v) + by for cam, v in table["table"][key].items()}
    path = tmp_path / "odd.pkl"
    save_annotation(table, path)
    return path


def test_check_and_doctor_name_the_tables_pixel_convention(roots, tmp_path, capsys):
    import build_annotation
    from rat7m.cli import doctor, run_main

    said = {
        pixels.MATLAB: "MATLAB 1-based (top-left pixel centre at (1, 1)); stored 2D minus projected 3D = (+0, +0) px",
        pixels.ZERO_BASED: "0-based (top-left pixel centre at (0, 0)); stored 2D minus projected 3D = (-1, -1) px",
    }
    for convention, root in roots.items():
        path = catalogue.mini_annotation_path(root)
        assert run_main(build_annotation.main, ["--check", str(path), "--quiet"]) == 0
        out = capsys.readouterr().out
        assert f"pixel convention: OK\n  {said[convention]}" in out, out
        assert "reprojection of 3D_keypoints vs 2D_keypoints (px): OK" in out  # compared in the table's convention
        run_main(doctor.main, ["--root", str(root)])
        out = capsys.readouterr().out
        assert f"\n  pixel convention: {said[convention]}" in out, out
    odd = _shifted_copy(roots, tmp_path, 0.5)
    assert run_main(build_annotation.main, ["--check", str(odd), "--quiet"]) == 1
    out = capsys.readouterr().out
    neither = "neither MATLAB 1-based nor 0-based: stored 2D minus projected 3D = (+0.5, +0.5)"
    assert f"pixel convention: FAILED\n  {neither}" in out
    assert "reprojection of 3D_keypoints vs 2D_keypoints (px): FAILED" in out
    run_main(doctor.main, ["--root", str(roots[pixels.MATLAB]), "--annotation", str(odd)])
    assert "pixel convention: neither MATLAB 1-based nor 0-based" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------- scoring 2D predictions


def _write_pred2d(path: Path, points: np.ndarray) -> Path:
    """``(N, 6, 20, 2)`` as the documented CSV (no header)."""
    lines = [f"{n},{cam}," + ",".join(repr(float(v)) for v in points[n, k].ravel())
             for n in range(len(points)) for k, cam in enumerate(catalogue.CAMERA_NAMES)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def _score(capsys, pred: Path, table_path: Path, out: Path, *extra) -> dict:
    import json

    from metric_utils import compute_metrics
    from rat7m.cli import run_main

    argv = ["--pred2d", pred, "--gt_path", table_path, "--save_dir", out, "--split", "all", "--triangulate", *extra]
    code = run_main(compute_metrics.main, [str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    two = json.loads((out / "summary_2d.json").read_text())["all"]
    three = json.loads((out / "summary.json").read_text())["metrics"]["mpjpe"]["mean"]
    return {"mpjpe_px": two["mpjpe_px"], "mpjpe_mm": three}


def test_2d_predictions_at_the_drawn_markers_score_perfectly_against_either_table(roots, tmp_path, capsys):
    table = load_annotation(catalogue.mini_annotation_path(roots[pixels.MATLAB]))
    columns = table["table"]
    matlab = np.stack([columns["2D_keypoints"][c] for c in catalogue.CAMERA_NAMES], axis=1)
    zero = np.nan_to_num(matlab) - 1.0  # a detector's 0-based pixels; lost markers: any finite value
    # what a perfect detector reads off the pictures: the measured marker centres where measurable
    found = np.full_like(zero, np.nan)
    for n in range(len(zero)):
        for k, camera in enumerate(catalogue.CAMERA_NAMES):
            found[n, k] = measured(roots[pixels.MATLAB] / columns["image_path"][camera][n], zero[n, k])
    assert np.isfinite(found).all(axis=-1).sum() > 300
    looked = _write_pred2d(tmp_path / "looked.csv", np.where(np.isfinite(found), found, zero))
    detector = _write_pred2d(tmp_path / "detector.csv", zero)
    matlab_file = _write_pred2d(tmp_path / "matlab.csv", zero + 1.0)
    for convention, root in roots.items():
        path = catalogue.mini_annotation_path(root)
        seen = _score(capsys, looked, path, tmp_path / f"{convention}_looked")
        assert seen["mpjpe_px"] < BIAS_PX and seen["mpjpe_mm"] < 1.0, (convention, seen)
        exact = _score(capsys, detector, path, tmp_path / f"{convention}_exact")
        assert exact["mpjpe_px"] == pytest.approx(0, abs=1e-9) and exact["mpjpe_mm"] < 1e-6, (convention, exact)
        said = _score(capsys, matlab_file, path, tmp_path / f"{convention}_matlab", "--pred2d-convention", "matlab")
        assert said["mpjpe_px"] == pytest.approx(0, abs=1e-9) and said["mpjpe_mm"] < 1e-6, (convention, said)
        # a MATLAB-convention file read as 0-based is a pixel right and down: exactly sqrt(2) px
        wrong = _score(capsys, matlab_file, path, tmp_path / f"{convention}_wrong")
        assert wrong["mpjpe_px"] == pytest.approx(np.sqrt(2), abs=1e-9), (convention, wrong)
        assert wrong["mpjpe_mm"] > 0.05, (convention, wrong)
