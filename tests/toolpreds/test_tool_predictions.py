"""Prediction files in the field's tools' own formats, scored by compute_metrics.py: one round trip per tool.

Each test exports the synthetic dataset, writes that tool's prediction file from the ground truth in
the tool's own convention (0-based pixels; with the tool's library where it is installed: pycocotools,
pandas, sleap-io, scipy.io), maps rows through the names the export wrote (never through the reader under
test), and scores it: exact, then shifted by 1 px (1 mm) in the tool's convention, which must score 1.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from metric_utils import compute_metrics
from rat7m import catalogue, pixels
from rat7m.cli import run_main
from rat7m.export import cli
from rat7m.model import Table
from rat7m.table import load_annotation
from rat7m.video import ChunkIndex
from tests.helpers.shared import extracted_root

RECORDINGS = ("s1-d1", "s5-d1")  # one train, one test recording
STRIDE = 3
CAMERAS = catalogue.CAMERA_NAMES


@pytest.fixture(scope="module")
def data(synthetic_dataset, tmp_path_factory):
    """(root, table, dataset, exports): a two-recording table, its images, and every 2D export of it."""
    root = tmp_path_factory.mktemp("toolpreds") / "data"
    extracted_root(synthetic_dataset, root, RECORDINGS, STRIDE)
    out = root.parent / "exports"
    for fmt in ("coco", "dlc", "yolo", "slp", "dannce"):  # dlc's default is the train split: its test rows here
        split = ["--split", "all"] if fmt == "dlc" else []
        assert cli.main([fmt, "--root", str(root), "--out", str(out), "--quiet", *split]) == 0
    return root, load_annotation(catalogue.mini_annotation_path(root)), synthetic_dataset, out


def rows_of_test(table):
    return np.flatnonzero(np.asarray(table["table"]["train_test"]).astype(str) == "test")


def tool_pixels(table, camera, rows):
    """The ground truth of ``rows`` in ``camera`` in the tools' convention (0-based pixels), NaN where lost."""
    xy = np.asarray(table["table"]["2D_keypoints"][camera], dtype=np.float64)[rows]
    return pixels.to_zero_based(xy, Table.of(table).pixel_convention)


def row_of_image(table, root):
    """(realpath of a table image) -> [(row, camera)], to map the exports' own files to rows."""
    found = {}
    for camera in CAMERAS:
        for row, path in enumerate(np.asarray(table["table"]["image_path"][camera]).tolist()):
            found.setdefault(os.path.realpath(root / str(path)), []).append((row, camera))
    return found


def score_2d(data, path, tmp_path, *extra):
    root = data[0]
    save = tmp_path / f"scores_{Path(path).name}"
    argv = ["--pred2d", str(path), "--gt_path", str(catalogue.mini_annotation_path(root)), "--save_dir", str(save),
            "--root", str(root), "--quiet", *extra]  # fmt: skip
    assert compute_metrics.main(argv) == 0
    return json.loads((save / "summary_2d.json").read_text())


def score_3d(data, path, tmp_path, *extra):
    root = data[0]
    save = tmp_path / f"scores_{Path(path).name}"
    argv = ["--pred_path", str(path), "--gt_path", str(catalogue.mini_annotation_path(root)), "--save_dir", str(save),
            "--quiet", *extra]  # fmt: skip
    assert compute_metrics.main(argv) == 0
    return json.loads((save / "summary.json").read_text())


def assert_exact_2d(summary, tol=1e-9):
    group = summary["all"]
    assert group["n_images"] > 0 and group["mpjpe_px"] == pytest.approx(0.0, abs=tol)
    assert all(group[k] == 1.0 for k in group if k.startswith("pck@"))
    assert group["ap"] == pytest.approx(1.0) and group["ar"] == pytest.approx(1.0)
    assert summary["predictions"]["n_unmatched"] == 0 and summary["predictions"]["n_duplicates"] == 0
    assert summary["predictions"]["n_missing_joints"] == 0


def assert_one_pixel(summary, tol=1e-9):
    for group in [summary["all"], *summary["cameras"].values()]:
        assert group["mpjpe_px"] == pytest.approx(1.0, abs=tol) and group["median_px"] == pytest.approx(1.0, abs=tol)
        assert group["pck@5px"] == 1.0


# ----------------------------------------------------------------------------------------- COCO


def coco_results(data, shift=0.0, *, stems=False):
    """MMPose's CocoMetric results (integer ids of our COCO export) or Ultralytics' (file stems)."""
    root, table, _, out = data
    exported = json.loads((out / "coco" / "rat7m_test.json").read_text())
    results = []
    if not stems:
        for annotation in exported["annotations"]:  # the export says which row and camera each id is
            row, camera = annotation["sample"], annotation["camera"]
            results.append((annotation["image_id"], None, tool_pixels(table, camera, [row])[0]))
    else:
        images = row_of_image(table, root)
        for line in (out / "yolo" / "test.txt").read_text().split():
            image = out / "yolo" / line
            row, camera = images[os.path.realpath(image)][0]
            results.append((image.stem, image.name, tool_pixels(table, camera, [row])[0]))
    entries = []
    for image_id, file_name, xy in results:
        xy = xy + np.array([shift, 0.0])
        seen = np.isfinite(xy).all(axis=1)
        triples = np.where(seen[:, None], np.column_stack([xy, np.full(len(xy), 0.9)]), 0.0)  # v = 0: missing
        entry = {"image_id": image_id, "category_id": 1, "keypoints": triples.ravel().tolist(), "score": 0.9}
        if file_name:
            entry |= {"file_name": file_name, "bbox": [0.0, 0.0, 10.0, 10.0]}
        entries.append(entry)
    return entries


@pytest.mark.parametrize("stems", [False, True], ids=["mmpose-ids", "ultralytics-stems"])
def test_coco_results_round_trip(data, tmp_path, stems):
    from pycocotools.coco import COCO

    exact, shifted = tmp_path / "exact.json", tmp_path / "shifted.json"
    exact.write_text(json.dumps(coco_results(data, stems=stems)))
    shifted.write_text(json.dumps(coco_results(data, 1.0, stems=stems)))
    if not stems:  # pycocotools itself accepts the file as results of our exported ground truth
        gt = COCO(str(data[3] / "coco" / "rat7m_test.json"))
        assert len(gt.loadRes(str(exact)).getAnnIds()) == len(gt.getImgIds())
    summary = score_2d(data, exact, tmp_path)
    assert summary["predictions"]["format"] == "coco"
    assert_exact_2d(summary)
    assert_one_pixel(score_2d(data, shifted, tmp_path))


def test_a_pixel_convention_given_for_a_tool_file_is_refused_not_ignored(data, tmp_path, capsys):
    path = tmp_path / "exact.json"
    path.write_text(json.dumps(coco_results(data)))
    argv = ["--pred2d", str(path), "--gt_path", str(catalogue.mini_annotation_path(data[0])), "--save_dir",
            str(tmp_path / "s"), "--pred2d-convention", "matlab"]  # fmt: skip
    assert run_main(compute_metrics.main, argv) == 2
    err = capsys.readouterr().err
    assert "--pred2d-convention matlab is for our own CSV/npz" in err and "coco file" in err, err
    assert not (tmp_path / "s").exists()


def test_coco_unmatched_and_duplicates_are_counted_and_named(data, tmp_path, capsys):
    entries = coco_results(data)
    worse = dict(entries[0], score=0.1, keypoints=[v + 7.0 for v in entries[0]["keypoints"]])
    stray = dict(entries[1], image_id=99_999_991)
    path = tmp_path / "results.json"
    path.write_text(json.dumps([*entries, worse, stray]))
    summary = score_2d(data, path, tmp_path)
    report = summary["predictions"]
    assert report["n_duplicates"] == 1 and report["first_duplicate"] == f"image_id {entries[0]['image_id']}"
    assert report["n_unmatched"] == 1 and report["first_unmatched"] == "image_id 99999991"
    assert summary["all"]["mpjpe_px"] == pytest.approx(0.0, abs=1e-9)  # the higher score was kept
    printed = capsys.readouterr().out
    assert "1 unmatched" in printed and "image_id 99999991" in printed and "1 duplicates" in printed


def test_coco_missing_views_lower_pck_and_ap(data, tmp_path):
    entries = coco_results(data)
    n = len(entries)
    path = tmp_path / "half.json"
    path.write_text(json.dumps(entries[: n // 2]))
    summary = score_2d(data, path, tmp_path)
    assert summary["predictions"]["n_missing_views"] == n - n // 2
    assert summary["all"]["mpjpe_px"] == pytest.approx(0.0, abs=1e-9)  # of what was predicted
    assert summary["all"]["pck@5px"] == pytest.approx(0.5, abs=0.05)  # the rest are misses, not left out
    assert summary["all"]["ar"] == pytest.approx(0.5, abs=0.05)


# ----------------------------------------------------------------------------------------- DeepLabCut


def dlc_frame(data, shift=0.0, *, index_by="labeled-data", predict_train=False):
    """A DLC 3 prediction table (4 column levels) over every labelled image of the export, NaN outside test
    (as ``evaluate_network`` leaves frames outside its split), or predicted there too (``predict_train``)."""
    import pandas as pd

    root, table, _, out = data
    images = row_of_image(table, root)
    test = set(rows_of_test(table).tolist())
    keys, values = [], []
    for folder in sorted((out / "dlc" / "labeled-data").iterdir()):
        labelled = pd.read_csv(folder / "CollectedData_rat7m.csv", header=[0, 1, 2], index_col=[0, 1, 2])
        for key in labelled.index:
            row, camera = images[os.path.realpath(folder / key[2])][0]
            xy = tool_pixels(table, camera, [row])[0] + [shift, 0.0]
            if row not in test and not predict_train:
                xy = np.full_like(xy, np.nan)  # evaluate_network: frames outside the split are NaN rows
            likelihood = np.where(np.isfinite(xy[:, 0]), 0.95, np.nan)
            values.append(np.column_stack([xy, likelihood]).ravel())
            keys.append(key if index_by == "labeled-data" else str(root / table["table"]["image_path"][camera][row]))
    columns = pd.MultiIndex.from_product([["DLC_resnet50_rat7mShuffle1_snapshot_010"], ["animal"],
                                          list(catalogue.JOINT_NAMES), ["x", "y", "likelihood"]],
                                         names=["scorer", "individuals", "bodyparts", "coords"])  # fmt: skip
    index = pd.MultiIndex.from_tuples(keys) if index_by == "labeled-data" else pd.Index(keys)
    return pd.DataFrame(np.array(values), index=index, columns=columns)


@pytest.mark.parametrize("suffix", [".h5", ".csv"])
@pytest.mark.parametrize("index_by", ["labeled-data", "image-path"])
def test_dlc_round_trip(data, tmp_path, suffix, index_by):
    key = "df_with_missing" if index_by == "labeled-data" else "predictions"
    for shift, name in ((0.0, "exact"), (1.0, "shifted")):
        frame = dlc_frame(data, shift, index_by=index_by)
        path = tmp_path / f"{name}{suffix}"
        if suffix == ".h5":  # pandas' fixed format: its table format refuses a MultiIndex on both axes
            frame.to_hdf(path, key=key, mode="w")
        else:
            frame.to_csv(path)
        summary = score_2d(data, path, tmp_path)
        assert summary["predictions"]["format"] == "dlc"
        (assert_exact_2d if shift == 0 else assert_one_pixel)(summary)


def test_dlc_predictions_of_training_images_are_counted_and_ignored(data, tmp_path, capsys):
    path = tmp_path / "all.h5"
    dlc_frame(data, predict_train=True).to_hdf(path, key="df_with_missing", mode="w")
    summary = score_2d(data, path, tmp_path)
    n_train = int(np.sum(np.asarray(data[1]["table"]["train_test"]).astype(str) == "train")) * len(CAMERAS)
    assert summary["predictions"]["n_outside_split"] == n_train > 0
    assert_exact_2d(summary)
    assert f"{n_train} of table samples outside the split (ignored)" in capsys.readouterr().out


def test_dlc_chunk_videos_by_frame_number(data, tmp_path):
    """``analyze_videos`` on chunks: frames of a video map to its camera; a folder of them scores them all."""
    import pandas as pd

    _, table, dataset, _ = data
    rows = rows_of_test(table)
    folder = tmp_path / "videos"
    folder.mkdir()
    matched, written = 0, []
    for camera in ("Camera2", "Camera3"):
        frames = np.asarray(table["table"]["frame_idx"][camera])[rows].astype(int)
        start = ChunkIndex.from_dir(dataset.video_dir).locate(catalogue.RECORDINGS[5], camera, frames[0])[0].start
        inside = [(r, f) for r, f in zip(rows, frames, strict=True) if start <= f < start + 10]
        xy = tool_pixels(table, camera, [r for r, _ in inside]) + np.array([1.0, 0.0])
        likelihood = np.where(np.isfinite(xy[..., :1]), 0.9, np.nan)
        columns = pd.MultiIndex.from_product([["DLC_scorer"], list(catalogue.JOINT_NAMES), ["x", "y", "likelihood"]],
                                             names=["scorer", "bodyparts", "coords"])  # fmt: skip
        frame = pd.DataFrame(np.concatenate([xy, likelihood], axis=-1).reshape(len(inside), -1),
                             index=[f - start for _, f in inside], columns=columns)  # fmt: skip
        written.append(folder / f"s5-d1-camera{catalogue.camera_number(camera)}-{start}DLC_scorer.h5")
        frame.to_hdf(written[-1], key="df_with_missing", format="table")
        matched += len(inside)
    one = score_2d(data, written[0], tmp_path)
    assert one["cameras"]["Camera2"]["mpjpe_px"] == pytest.approx(1.0, abs=1e-9)
    assert one["cameras"]["Camera1"]["mpjpe_px"] is None and one["cameras"]["Camera1"]["pck@5px"] == 0.0
    both = score_2d(data, folder, tmp_path)
    assert both["predictions"]["n_matched"] == matched and both["predictions"]["n_unmatched"] == 0
    for camera in ("Camera2", "Camera3"):
        assert both["cameras"][camera]["mpjpe_px"] == pytest.approx(1.0, abs=1e-9)


# ----------------------------------------------------------------------------------------- SLEAP


def test_slp_round_trip(data, tmp_path):
    import sleap_io as sio

    _, table, _, out = data
    labels = sio.load_slp(str(out / "slp" / "rat7m.slp"), open_videos=False)
    test = set(rows_of_test(table).tolist())
    rows_of = {}  # the export: image i of a camera's sequence is the recording's i-th row
    for recording in RECORDINGS:
        rec = next(r for r in catalogue.RECORDINGS if r.name == recording)
        columns = table["table"]
        mine = np.flatnonzero((np.asarray(columns["subject_idx"]) == rec.subject)
                              & (np.asarray(columns["day_idx"]) == rec.day))  # fmt: skip
        rows_of[recording] = mine
    for shift, name in ((0.0, "exact"), (1.0, "shifted")):
        frames = []
        for lf in labels.labeled_frames:
            recording, camera = Path(lf.video.filename[0]).parts[-3], lf.video.filename[0].split("/")[-2]
            row = rows_of[recording][lf.frame_idx]
            if row not in test:
                continue
            camera = f"Camera{camera.removeprefix('camera')}"
            xy = tool_pixels(table, camera, [row])[0] + [shift, 0.0]
            scores = np.where(np.isfinite(xy[:, 0]), 0.8, 0.0)  # sleap-nn: missing points NaN with score 0
            instance = sio.PredictedInstance.from_numpy(xy, skeleton=labels.skeletons[0], point_scores=scores,
                                                        score=0.8)  # fmt: skip
            frames.append(sio.LabeledFrame(video=lf.video, frame_idx=lf.frame_idx, instances=[instance]))
        path = tmp_path / f"{name}.predictions.slp"
        sio.save_slp(sio.Labels(labeled_frames=frames, videos=labels.videos, skeletons=labels.skeletons), str(path))
        summary = score_2d(data, path, tmp_path)
        assert summary["predictions"]["format"] == "slp"
        (assert_exact_2d if shift == 0 else assert_one_pixel)(summary)


def test_slp_on_chunk_videos(data, tmp_path):
    """sleap-nn on a chunk video: ``frame_idx`` is the frame in the chunk, the chunk's start names the video frame."""
    import sleap_io as sio

    from rat7m.export.slp import skeleton

    _, table, dataset, _ = data
    rows = rows_of_test(table)
    skel, frames, videos, expected = skeleton(), [], [], 0
    for camera in ("Camera4", "Camera5"):
        video_frames = np.asarray(table["table"]["frame_idx"][camera])[rows].astype(int)
        chunk = ChunkIndex.from_dir(dataset.video_dir).locate(catalogue.RECORDINGS[5], camera, video_frames[0])[0]
        video = sio.Video(filename=str(chunk.path), open_backend=False)
        videos.append(video)
        for row, frame in zip(rows, video_frames, strict=True):
            if not chunk.start <= frame < chunk.start + 10:
                continue
            xy = tool_pixels(table, camera, [row])[0] + np.array([0.0, 1.0])
            instance = sio.PredictedInstance.from_numpy(xy, skeleton=skel, point_scores=np.full(20, 0.8), score=0.8)
            frames.append(sio.LabeledFrame(video=video, frame_idx=int(frame - chunk.start), instances=[instance]))
            expected += 1
    path = tmp_path / "chunks.predictions.slp"
    sio.save_slp(sio.Labels(labeled_frames=frames, videos=videos, skeletons=[skel]), str(path))
    summary = score_2d(data, path, tmp_path)
    assert summary["predictions"]["n_matched"] == expected > 0 and summary["predictions"]["n_unmatched"] == 0
    for camera in ("Camera4", "Camera5"):
        assert summary["cameras"][camera]["mpjpe_px"] == pytest.approx(1.0, abs=1e-9)
    assert summary["cameras"]["Camera1"]["pck@5px"] == 0.0  # not predicted: misses


# ----------------------------------------------------------------------------------------- Ultralytics txt


def write_yolo_labels(data, folder, shift=0.0):
    """``predict(save_txt=True, save_conf=True)``: normalised, %g as Ultralytics writes, no file without detection."""
    root, table, dataset, out = data
    images = row_of_image(table, root)
    size = np.array([dataset.width, dataset.height], dtype=np.float64)
    folder.mkdir()
    skipped = 0
    for line in (out / "yolo" / "test.txt").read_text().split():
        image = out / "yolo" / line
        row, camera = images[os.path.realpath(image)][0]
        xy = tool_pixels(table, camera, [row])[0] + [shift, 0.0]
        if not np.isfinite(xy).any():
            skipped += 1
            continue
        seen = np.isfinite(xy).all(axis=1)
        kpts = np.where(seen[:, None], np.column_stack([xy / size, np.full(len(xy), 0.7)]), 0.0)
        values = [0, 0.5, 0.5, 0.2, 0.2, *kpts.ravel().tolist(), 0.9]
        (folder / f"{image.stem}.txt").write_text(("%g " * len(values)).rstrip() % tuple(values) + "\n")
    return skipped


def test_yolo_txt_round_trip(data, tmp_path):
    write_yolo_labels(data, tmp_path / "exact")
    write_yolo_labels(data, tmp_path / "shifted", 1.0)
    # %g keeps 6 significant digits of a normalised coordinate: ~1e-4 px on these small frames
    summary = score_2d(data, tmp_path / "exact", tmp_path)
    assert summary["predictions"]["format"] == "yolo-txt"
    assert_exact_2d(summary, tol=1e-3)
    assert_one_pixel(score_2d(data, tmp_path / "shifted", tmp_path), tol=1e-3)


def test_yolo_txt_image_sizes_come_from_rat7m_root(data, tmp_path, monkeypatch):
    """The images are under $RAT7M_ROOT even when --gt_path names a table elsewhere (was: the table's folder)."""
    write_yolo_labels(data, tmp_path / "labels")
    elsewhere = tmp_path / "tables"
    elsewhere.mkdir()
    shutil.copy(catalogue.mini_annotation_path(data[0]), elsewhere / "table.pkl")
    monkeypatch.setenv("RAT7M_ROOT", str(data[0]))
    argv = ["--pred2d", str(tmp_path / "labels"), "--gt_path", str(elsewhere / "table.pkl"),
            "--save_dir", str(tmp_path / "scores"), "--quiet"]  # fmt: skip
    assert compute_metrics.main(argv) == 0
    assert_exact_2d(json.loads((tmp_path / "scores" / "summary_2d.json").read_text()), tol=1e-3)


def test_yolo_txt_repeated_stems_and_missing_files(data, tmp_path):
    folder = tmp_path / "labels"
    write_yolo_labels(data, folder)
    files = sorted(folder.glob("*.txt"))
    first = files[0].read_text().split()
    first[-1] = "0.1"  # a weaker second detection of the same image, in <stem>-2.txt
    first[5] = str(float(first[5]) + 0.05)
    (folder / f"{files[0].stem}-2.txt").write_text(" ".join(first) + "\n")
    files[1].unlink()  # no detection in that image: its joints are missing, not an error
    summary = score_2d(data, folder, tmp_path)
    report = summary["predictions"]
    assert report["n_duplicates"] == 1 and report["n_unmatched"] == 0 and report["n_missing_views"] == 1
    assert summary["all"]["mpjpe_px"] == pytest.approx(0.0, abs=1e-3)  # the better detection kept
    assert summary["all"]["pck@5px"] < 1.0


# ----------------------------------------------------------------------------------------- 3D: DANNCE, anipose


def test_dannce_round_trip_joins_on_sample_id(data, tmp_path):
    _, table, _, out = data
    label3d = scipy.io.loadmat(out / "dannce" / "s5-d1" / "s5-d1_dannce.mat")
    ids = label3d["labelData"][0, 0]["data_sampleID"][0, 0].reshape(-1)  # what DANNCE reads as sampleID
    points = np.asarray(table["table"]["3D_keypoints"], dtype=np.float64)[ids.astype(int)]
    order = np.random.default_rng(0).permutation(len(ids))[:-1]  # shuffled, and one sample dropped
    for shift, name in ((0.0, "exact"), (1.0, "shifted")):
        pred = np.moveaxis(points[order] + [shift, 0.0, 0.0], 1, 2)  # (N, 3, 20)
        path = tmp_path / name / "save_data_AVG.mat"
        path.parent.mkdir()
        scipy.io.savemat(path, {"pred": pred, "p_max": np.full((len(order), 20), 0.5),
                                "sampleID": ids[order].reshape(1, -1).astype(np.float64)})  # fmt: skip
        summary = score_3d(data, path, tmp_path)
        assert summary["predictions"]["format"] == "dannce"
        assert summary["predictions"]["n_missing_views"] == 1  # the dropped sample, named by the report
        assert summary["n_samples"] == len(ids)
        assert summary["metrics"]["mpjpe"]["n_scored"] == len(ids) - 1
        assert summary["metrics"]["mpjpe"]["mean"] == pytest.approx(shift, abs=1e-9)
        assert summary["metrics"]["mpjpe"]["median"] == pytest.approx(shift, abs=1e-9)


def test_anipose_round_trip(data, tmp_path):
    _, table, _, _ = data
    rows = rows_of_test(table)
    points = np.asarray(table["table"]["3D_keypoints"], dtype=np.float64)[rows]
    header = [f"{j}_{c}" for j in catalogue.JOINT_NAMES for c in ("x", "y", "z", "error", "ncams", "score")]
    header += [f"M_{a}{b}" for a in range(3) for b in range(3)] + ["center_0", "center_1", "center_2", "fnum"]
    for shift, name in ((0.0, "exact"), (1.0, "shifted")):
        lines = [",".join(header)]
        for fnum, pose in enumerate(points + np.array([0.0, shift, 0.0])):
            cells = []
            for x, y, z in pose:
                seen = np.isfinite(x)
                cells += [x, y, z, 0.5, 3 if seen else np.nan, 0.9 if seen else np.nan]  # NaN where < 2 cameras
            cells += [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, fnum]
            lines.append(",".join("" if c != c else repr(float(c)) for c in cells))
        path = tmp_path / name / "pose-3d" / "s5-d1.csv"
        path.parent.mkdir(parents=True)
        path.write_text("\n".join(lines) + "\n")
        summary = score_3d(data, path, tmp_path)
        assert summary["predictions"]["format"] == "anipose" and summary["predictions"]["n_missing_joints"] == 0
        assert summary["metrics"]["mpjpe"]["mean"] == pytest.approx(shift, abs=1e-9)
        assert summary["metrics"]["pa_mpjpe"]["mean"] == pytest.approx(0.0, abs=1e-6)


def test_tool_predictions_triangulate_to_the_table(data, tmp_path, capsys):
    """Confidences are the triangulation weights; a view a tool did not predict weighs nothing."""
    entries = coco_results(data)
    dropped = [e for e in entries if e["image_id"] % 10 not in (1, 2)]  # Camera1 and Camera2 not predicted
    path = tmp_path / "four_views.json"
    path.write_text(json.dumps(dropped))
    score_2d(data, path, tmp_path, "--triangulate")
    summary = json.loads((tmp_path / "scores_four_views.json" / "summary.json").read_text())
    assert summary["metrics"]["mpjpe"]["n_scored"] > 0
    assert summary["metrics"]["mpjpe"]["mean"] == pytest.approx(0.0, abs=1e-6)  # exact views, exact 3D
    assert "joints predicted in fewer than 2 views" in capsys.readouterr().out
    table = data[1]
    finite = np.stack([np.isfinite(np.asarray(table["table"]["2D_keypoints"][c])[rows_of_test(table)]).all(axis=-1)
                       for c in CAMERAS[2:]])  # fmt: skip
    assert summary["predictions"]["n_joints_in_fewer_than_2_views"] == int((finite.sum(axis=0) < 2).sum())


def test_the_tools_own_score_ranks_detections_for_ap(data, tmp_path):
    """Same keypoints and keypoint scores, different detection scores: only the ranking, hence AP, changes."""
    entries = coco_results(data)
    for i, entry in enumerate(entries):
        if i % 2:  # every other view is 6 px off: a poor detection
            entry["keypoints"] = [v + 6.0 if k % 3 != 2 and v else v for k, v in enumerate(entry["keypoints"])]
    aps = {}
    for honest in (True, False):
        for i, entry in enumerate(entries):
            entry["score"] = (0.2 if i % 2 else 0.9) if honest else (0.9 if i % 2 else 0.2)
        path = tmp_path / f"{'honest' if honest else 'inverted'}.json"
        path.write_text(json.dumps(entries))
        aps[honest] = score_2d(data, path, tmp_path)["all"]["ap"]
    assert aps[True] > aps[False] + 0.05
