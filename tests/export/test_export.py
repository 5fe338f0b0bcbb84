"""export.py on the synthetic dataset: every format written, then read back by the library its users use
(pycocotools, pandas, sleap-io, aniposelib, scipy), every keypoint and image path compared with the table."""

import copy
import json
import os
import runpy
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from rat7m import catalogue, extract, geometry
from rat7m.cli import command
from rat7m.export import cli, yolo
from rat7m.export.common import MANIFEST_NAME, boxes, camera_params, jpeg_size, visibility
from rat7m.table import save_annotation
from rat7m.table_build import build_table
from rat7m.video import ChunkIndex

RECORDINGS = ("s1-d1", "s5-d1")  # one train, one test recording: both splits, little extraction
STRIDE = 3


@pytest.fixture(scope="module")
def data(synthetic_dataset, tmp_path_factory):
    """A dataset root with a table of two recordings, its images extracted and the videos linked."""
    root = tmp_path_factory.mktemp("export") / "data"
    root.mkdir()
    (root / catalogue.VIDEO_DIR).symlink_to(synthetic_dataset.video_dir, target_is_directory=True)
    recordings = [synthetic_dataset.recordings[name] for name in RECORDINGS]
    table = build_table([r.mat_path for r in recordings], stride=STRIDE)
    save_annotation(table, catalogue.mini_annotation_path(root))
    jobs = extract.plan_jobs(table, ChunkIndex.from_dir(root / catalogue.VIDEO_DIR),
                             [r.recording for r in recordings], catalogue.CAMERA_NAMES)  # fmt: skip
    summary = extract.extract(jobs, root, processes=1, progress=False, decoder="opencv")
    assert not summary.failures
    return root, table, synthetic_dataset


def run(*argv):
    return cli.main([str(a) for a in argv])


def errors(capsys):
    """stderr without the one line saying which dataset root is used."""
    lines = capsys.readouterr().err.strip().splitlines()
    return "\n".join(line for line in lines if not line.startswith("dataset root: "))


def export(data, fmt, out, *extra):
    root = data[0]
    assert run(fmt, "--root", root, "--out", out, "--quiet", *extra) == 0
    return out / fmt


def zero_based(table, camera, row):
    """The table's 2D keypoints of one image as 0-based pixels: the synthetic table is MATLAB's (1, 1) convention."""
    return table["table"]["2D_keypoints"][camera][row] - 1.0


def views(table):
    """(row, camera, image_path, 0-based keypoints (20, 2)) of every image of the table."""
    columns = table["table"]
    for camera in catalogue.CAMERA_NAMES:
        for row in range(len(columns["subject_idx"])):
            yield row, camera, str(columns["image_path"][camera][row]), zero_based(table, camera, row)


def expected_flags(table, row, camera, width, height):
    """The visibility flags the module docstring promises, computed the slow, obvious way."""
    columns = table["table"]
    kp = zero_based(table, camera, row)
    cam = camera_params(table["cameras"][int(columns["subject_idx"][row])][int(columns["day_idx"][row])][camera])
    depth = (table["table"]["3D_keypoints"][row] @ cam["RotationMatrix"] + cam["TranslationVector"].reshape(3))[:, 2]
    flags = []
    for (x, y), z in zip(kp, depth, strict=True):
        if not (np.isfinite(x) and np.isfinite(y)):
            flags.append(0)
        elif z > 0 and 0 <= x < width and 0 <= y < height:
            flags.append(2)
        else:
            flags.append(1)
    return np.array(flags)


# ----------------------------------------------------------------------------------------- COCO


def test_coco_round_trip_and_cocoeval(data, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    root, table, dataset = data
    folder = export(data, "coco", tmp_path)
    cocos = {split: COCO(str(folder / f"rat7m_{split}.json")) for split in ("train", "test")}
    found = {}
    for coco in cocos.values():
        for ann in coco.loadAnns(coco.getAnnIds()):
            image = coco.loadImgs(ann["image_id"])[0]
            found[(ann["sample"], ann["camera"])] = (ann, image)
    assert len(found) == len(table["table"]["subject_idx"]) * 6
    n_missing = n_outside = 0
    for row, camera, path, kp in views(table):
        ann, image = found[(row, camera)]
        assert image["file_name"] == path and (root / path).is_file()
        assert (image["width"], image["height"]) == (dataset.width, dataset.height)
        triples = np.array(ann["keypoints"], dtype=float).reshape(20, 3)
        flags = expected_flags(table, row, camera, dataset.width, dataset.height)
        np.testing.assert_array_equal(triples[:, 2], flags)
        np.testing.assert_allclose(triples[flags > 0, :2], kp[flags > 0], atol=5.1e-4)
        assert np.all(triples[flags == 0] == 0) and np.all(np.isnan(kp[flags == 0]))
        assert ann["num_keypoints"] == int((flags > 0).sum())
        assert ann["frame"] == int(table["table"]["frame_idx"][camera][row])
        x, y, w, h = ann["bbox"]
        seen = triples[flags == 2, :2]
        assert x <= seen[:, 0].min() and x + w >= seen[:, 0].max() - 1e-3
        assert y <= seen[:, 1].min() and y + h >= seen[:, 1].max() - 1e-3
        assert ann["area"] == pytest.approx(w * h, abs=1e-2)
        n_missing += int((flags == 0).sum())
        n_outside += int((flags == 1).sum())
    assert n_missing > 0, "the synthetic table has lost markers: the test must see some"
    category = cocos["train"].loadCats(1)[0]
    assert category["keypoints"] == list(catalogue.JOINT_NAMES) and len(category["skeleton"]) == 21
    assert min(min(b) for b in category["skeleton"]) == 1

    coco = cocos["train"]
    anns = coco.loadAnns(coco.getAnnIds())
    sigmas = np.array(catalogue.KEYPOINT_SIGMAS)

    def ap(results):
        evaluator = COCOeval(coco, coco.loadRes(results), "keypoints")
        evaluator.params.kpt_oks_sigmas = sigmas
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        return evaluator.stats[0]

    exact = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0} for a in anns]
    assert ap(exact) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    moved = []
    for a in exact:
        kp = np.array(a["keypoints"], dtype=float).reshape(20, 3)
        angle = rng.uniform(0, 2 * np.pi, 20)
        kp[:, 0] += 2 * np.cos(angle)
        kp[:, 1] += 2 * np.sin(angle)
        moved.append({**a, "keypoints": kp.reshape(-1).tolist()})
    assert ap(moved) < 1.0

    info = runpy.run_path(str(folder / "rat7m_dataset_info.py"))["dataset_info"]
    assert info["sigmas"] == list(catalogue.KEYPOINT_SIGMAS)
    by_name = {k["name"]: k for k in info["keypoint_info"].values()}
    for left, right in catalogue.LEFT_RIGHT_PAIRS:
        names = catalogue.JOINT_NAMES
        assert by_name[names[left]]["swap"] == names[right] and by_name[names[right]]["swap"] == names[left]
    assert len(info["skeleton_info"]) == 21 and len(info["joint_weights"]) == 20


# ----------------------------------------------------------------------------------------- DeepLabCut


def test_dlc_csv_and_h5_read_back_with_pandas(data, tmp_path):
    pd = pytest.importorskip("pandas")
    root, table, dataset = data
    folder = export(data, "dlc", tmp_path, "--split", "all")
    for recording in RECORDINGS:
        rec = catalogue.recording_by_name(recording)
        rows = np.flatnonzero((table["table"]["subject_idx"] == rec.subject) & (table["table"]["day_idx"] == rec.day))
        for camera in catalogue.CAMERA_NAMES:
            sub = folder / "labeled-data" / f"{recording}_{camera}"
            frame = pd.read_csv(sub / "CollectedData_rat7m.csv", header=[0, 1, 2], index_col=[0, 1, 2])
            assert frame.columns.names == ["scorer", "bodyparts", "coords"]
            assert list(frame.columns.get_level_values(1)[::2]) == list(catalogue.JOINT_NAMES)
            assert len(frame) == len(rows)
            for (top, name, image), values in zip(frame.index, frame.to_numpy(), strict=True):
                row = rows[[str(table["table"]["image_path"][camera][r]).endswith("/" + image) for r in rows]][0]
                assert (top, name) == ("labeled-data", f"{recording}_{camera}")
                assert os.path.samefile(sub / image, root / table["table"]["image_path"][camera][row])
                flags = expected_flags(table, row, camera, dataset.width, dataset.height)
                want = np.where((flags == 2)[:, None], zero_based(table, camera, row), np.nan)
                np.testing.assert_array_equal(values.reshape(20, 2), want)
            if pytest.importorskip("tables"):
                h5 = pd.read_hdf(sub / "CollectedData_rat7m.h5")
                np.testing.assert_array_equal(h5.to_numpy(), frame.to_numpy())
    config = (folder / "config.yaml").read_text()
    assert "bodyparts:\n- HeadF\n" in config and config.count("crop: 0, ") == len(RECORDINGS) * 6
    assert "# Merge these keys into your project's config.yaml: bodyparts, skeleton, scorer, video_sets." in config
    assert "# Do not merge project_path" in config


def test_dlc_exports_the_train_split_unless_told_and_says_why(data, tmp_path, caplog):
    root = data[0]
    with caplog.at_level("WARNING", logger="rat7m.export"):
        assert run("all", "--root", root, "--out", tmp_path, "--allow-skew") == 0
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "dlc: exporting the train split only" in warning and "random train/test split" in warning
    folders = sorted(p.name for p in (tmp_path / "dlc" / "labeled-data").iterdir())
    assert folders == [f"s1-d1_{c}" for c in catalogue.CAMERA_NAMES]  # s5-d1 is a test recording
    assert json.loads((tmp_path / "dlc" / MANIFEST_NAME).read_text())["split"] == "train"
    coco = json.loads((tmp_path / "coco" / MANIFEST_NAME).read_text())
    assert coco["split"] == "all" and coco["recordings"] == list(RECORDINGS)  # the other formats: every row
    caplog.clear()
    with caplog.at_level("WARNING", logger="rat7m.export"):
        assert run("dlc", "--root", root, "--out", tmp_path / "both", "--split", "all") == 0
    assert "dlc: --split all puts test rows into the project" in " ".join(r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------------------- YOLO


def test_yolo_labels_denormalise_to_the_table(data, tmp_path):
    root, table, dataset = data
    folder = export(data, "yolo", tmp_path, "--val-recordings", "s5-d1")
    yaml_text = (folder / "data.yaml").read_text()
    assert "kpt_shape: [20, 3]" in yaml_text
    flip = [int(v) for v in yaml_text.split("flip_idx: [")[1].split("]")[0].split(",")]
    assert flip == list(catalogue.FLIP_INDEX) and flip[8] == 9 and flip[12] == 13 and flip[17] == 16
    lists = {s: (folder / f"{s}.txt").read_text().split() for s in ("train", "val")}
    recordings_of = {s: {p.split("/")[2].split("_")[0] for p in paths} for s, paths in lists.items()}
    assert recordings_of == {"train": {"s1-d1"}, "val": {"s5-d1"}}  # whole recordings, no shared timestep
    size = np.array([dataset.width, dataset.height])
    stems = [Path(p).stem for paths in lists.values() for p in paths]
    assert len(stems) == len(set(stems))  # Ultralytics names predictions by stem: every stem unique
    checked = 0
    for row, camera, path, kp in views(table):
        recording = path.split("/")[1]
        listed = f"./images/{recording}_{camera}/{yolo.image_stem(recording, camera, path)}.jpg"
        assert listed in lists["train"] or listed in lists["val"]
        image = str(folder / listed[2:])
        label_path = "/labels/".join(image.rsplit("/images/", 1)).rsplit(".", 1)[0] + ".txt"  # Ultralytics' rule
        assert os.path.samefile(image, root / path)
        text = Path(label_path).read_text()
        flags = expected_flags(table, row, camera, *size)
        if not (flags == 2).any():
            assert text == ""
            continue
        values = np.array(text.split(), dtype=float)
        assert len(values) == 5 + 60 and values[0] == 0
        triples = values[5:].reshape(20, 3)
        coordinates = np.concatenate([values[1:5], triples[:, :2].reshape(-1)])
        assert np.all((coordinates >= 0) & (coordinates <= 1))  # Ultralytics refuses anything else
        np.testing.assert_array_equal(triples[:, 2], np.where(flags == 2, 2, 0))
        seen = flags == 2
        assert np.all(np.abs(triples[seen, :2] - kp[seen] / size) <= 1e-6)
        assert np.all(triples[~seen] == 0)
        checked += 1
    assert checked > 0


# ----------------------------------------------------------------------------------------- SLEAP


def test_slp_reloads_with_sleap_io(data, tmp_path):
    sio = pytest.importorskip("sleap_io")
    root, table, dataset = data
    folder = export(data, "slp", tmp_path)
    labels = sio.load_slp(str(folder / "rat7m.slp"))
    skeleton = labels.skeletons[0]
    assert skeleton.node_names == list(catalogue.JOINT_NAMES) and len(skeleton.edges) == 21
    assert len(skeleton.symmetries) == len(catalogue.LEFT_RIGHT_PAIRS)
    assert len(labels.videos) == len(RECORDINGS) * 6 and len(labels) == len(table["table"]["subject_idx"]) * 6
    columns = table["table"]
    where = {(root / p).resolve(): (row, camera) for row, camera, p, _ in views(table)}
    assert len(where) == len(labels)
    for lf in labels:
        path = Path(lf.video.filename[lf.frame_idx])
        assert path.is_file()
        row, camera = where.pop(path)  # each image once
        flags = expected_flags(table, row, camera, dataset.width, dataset.height)
        want = np.where((flags == 2)[:, None], zero_based(table, camera, row), np.nan)
        np.testing.assert_array_equal(lf.instances[0].numpy(), want)
    assert len(labels.sessions) == len(RECORDINGS)
    session = labels.sessions[0]
    assert [c.name for c in session.camera_group.cameras] == list(catalogue.CAMERA_NAMES)
    group = session.frame_groups[0].instance_groups[0]
    np.testing.assert_array_equal(group.points, columns["3D_keypoints"][0])


# ----------------------------------------------------------------------------------------- anipose


def zero_skew(table):
    """The same table with every camera's skew set to 0 and the 2D keypoints projected again."""
    out = copy.deepcopy(table)
    columns = out["table"]
    for subject, days in out["cameras"].items():
        for day, cameras in days.items():
            rows = (columns["subject_idx"] == subject) & (columns["day_idx"] == day)
            for name, cam in cameras.items():
                cam["IntrinsicMatrix"] = np.array(cam["IntrinsicMatrix"], dtype=float)
                cam["IntrinsicMatrix"][1, 0] = 0.0
                columns["2D_keypoints"][name][rows] = geometry.project(columns["3D_keypoints"][rows], cam)
    return out


def test_anipose_refuses_skew_and_projects_exactly_without(data, tmp_path, capsys):
    aniposelib = pytest.importorskip("aniposelib.cameras")
    root, table, dataset = data
    assert run("anipose", "--root", root, "--out", tmp_path / "skewed", "--quiet") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "skew" in err and "--allow-skew" in err
    assert not (tmp_path / "skewed" / "anipose").exists()
    export(data, "anipose", tmp_path / "allowed", "--allow-skew")

    bare = tmp_path / "bare"  # no image extracted: sizes come from the video headers
    bare.mkdir()
    (bare / catalogue.VIDEO_DIR).symlink_to(root / catalogue.VIDEO_DIR)
    folder = export(data, "anipose", tmp_path / "from_video", "--allow-skew", "--root", bare,
                    "--annotation", catalogue.mini_annotation_path(root))  # fmt: skip
    assert f"size = [{dataset.width}, {dataset.height}]" in (folder / "s1-d1" / "calibration.toml").read_text()

    flat = zero_skew(table)
    save_annotation(flat, tmp_path / "flat.pkl")
    folder = export(data, "anipose", tmp_path, "--annotation", tmp_path / "flat.pkl")
    columns = flat["table"]
    for name in RECORDINGS:
        rec = catalogue.recording_by_name(name)
        rows = (columns["subject_idx"] == rec.subject) & (columns["day_idx"] == rec.day)
        group = aniposelib.CameraGroup.load(str(folder / name / "calibration.toml"))
        assert group.get_names() == list(catalogue.CAMERA_NAMES)
        points = columns["3D_keypoints"][rows].reshape(-1, 3)
        finite = np.isfinite(points).all(axis=1)
        projected = group.project(points[finite])
        for i, camera in enumerate(catalogue.CAMERA_NAMES):
            assert tuple(group.cameras[i].get_size()) == (dataset.width, dataset.height)
            want = columns["2D_keypoints"][camera][rows].reshape(-1, 2)[finite] - 1.0  # anipose's pixels are 0-based
            assert np.abs(projected[i] - want).max() < 1e-6


# ----------------------------------------------------------------------------------------- DANNCE


def dannce_project(points, params):
    """DANNCE's own reading of a label3d camera: ``ops.project_to2d`` then ``ops.distortPoints``."""
    K, R, t = params["K"], params["r"], params["t"]
    projected = points @ R + t
    projected = projected @ K
    pixels = projected[:, :2] / projected[:, 2:]
    cx, cy, fx, fy, skew = K[2, 0], K[2, 1], K[0, 0], K[1, 1], K[1, 0]
    y = (pixels[:, 1] - cy) / fy
    x = (pixels[:, 0] - cx - skew * y) / fx
    k = np.zeros(3)
    radial = params["RDistort"].reshape(-1)
    k[: len(radial)] = radial
    p1, p2 = params["TDistort"].reshape(-1)
    r2 = x * x + y * y
    alpha = k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
    xd = x + x * alpha + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y + y * alpha + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd * fx + cx + skew * yd, yd * fy + cy], axis=1)


def test_dannce_label3d_reprojects_and_links_videos(data, tmp_path):
    _, table, dataset = data
    folder = export(data, "dannce", tmp_path)
    columns = table["table"]
    for name in RECORDINGS:
        rec = catalogue.recording_by_name(name)
        rows = np.flatnonzero((columns["subject_idx"] == rec.subject) & (columns["day_idx"] == rec.day))
        mat = scipy.io.loadmat(folder / name / f"{name}_dannce.mat", squeeze_me=False, struct_as_record=False)
        assert [str(c[0]) for c in mat["camnames"][0]] == list(catalogue.CAMERA_NAMES)
        assert mat["params"].shape == (6, 1) and mat["labelData"].shape == (6, 1)
        for i, camera in enumerate(catalogue.CAMERA_NAMES):
            p = mat["params"][i, 0][0, 0]
            params = {k: getattr(p, k) for k in ("K", "r", "t", "RDistort", "TDistort")}
            label = mat["labelData"][i, 0][0, 0]
            data_2d = label.data_2d.reshape(len(rows), -1, 2)  # DANNCE: np.reshape(data, [n, -1, 2])
            data_3d = label.data_3d.reshape(len(rows), -1, 3)
            np.testing.assert_array_equal(data_2d, columns["2D_keypoints"][camera][rows])
            np.testing.assert_array_equal(label.data_frame.reshape(-1), columns["frame_idx"][camera][rows])
            np.testing.assert_array_equal(label.data_sampleID.reshape(-1), rows)
            finite = np.isfinite(data_3d).all(axis=-1)
            reprojected = dannce_project(data_3d[finite], params)
            assert np.abs(reprojected - data_2d[finite]).max() < 1e-9
            chunks = sorted((folder / name / "videos" / camera).iterdir())
            assert chunks and all(c.is_symlink() and c.resolve().is_file() for c in chunks)
            starts = sorted(int(c.stem) for c in chunks)
            assert starts == list(dataset.recordings[name].chunk_starts)
        com = mat["com"][0, 0]
        assert com.com3d.shape == (len(rows), 3)
    skeleton = scipy.io.loadmat(folder / "skeletons" / "rat7m.mat")
    assert skeleton["joints_idx"].min() == 1 and skeleton["joints_idx"].shape == (21, 2)
    assert "label3d_file: ./s1-d1/s1-d1_dannce.mat" in (folder / "io.yaml").read_text()


# ----------------------------------------------------------------------------------------- command line


def test_rerun_skips_overwrite_redoes_dry_run_writes_nothing(data, tmp_path, capsys):
    root = data[0]
    assert run("coco", "--root", root, "--out", tmp_path, "--dry-run") == 0
    assert "would write" in capsys.readouterr().out and not (tmp_path / "coco").exists()
    folder = export(data, "coco", tmp_path)
    stamp = (folder / MANIFEST_NAME).stat().st_mtime_ns
    export(data, "coco", tmp_path)
    assert "already complete" in capsys.readouterr().out
    assert (folder / MANIFEST_NAME).stat().st_mtime_ns == stamp
    export(data, "coco", tmp_path, "--overwrite")
    assert (folder / MANIFEST_NAME).stat().st_mtime_ns != stamp
    assert [p.name for p in tmp_path.iterdir()] == ["coco"]  # no staging folder left behind
    assert run("coco", "--root", root, "--out", tmp_path, "--split", "test") == 2  # other rows: not "complete"
    assert "--overwrite" in capsys.readouterr().err
    assert run("coco", "--root", root, "--out", tmp_path, "--split", "test", "--dry-run") == 2  # says so too
    assert "coco: would refuse" in capsys.readouterr().out
    (tmp_path / "dlc").mkdir()
    (tmp_path / "dlc" / "mine.txt").write_text("a user's file")
    assert run("dlc", "--root", root, "--out", tmp_path, "--overwrite") == 2  # never replaces a folder it did not make
    assert (tmp_path / "dlc" / "mine.txt").read_text() == "a user's file"


def test_missing_images_name_the_extract_command(data, tmp_path, capsys):
    root, table, _ = data
    partial = tmp_path / "data"
    shutil.copytree(root / catalogue.IMAGES_DIR, partial / catalogue.IMAGES_DIR)
    os.remove(partial / table["table"]["image_path"]["Camera3"][4])
    code = run("yolo", "--root", partial, "--annotation", catalogue.mini_annotation_path(root), "--out", tmp_path / "o")
    err = errors(capsys)
    assert code == 2 and "\n" not in err and "1 of" in err
    assert f"run {command('extract')} --root {partial} --annotation " in err and "--cameras 1,2,3,4,5,6" in err
    assert not (tmp_path / "o" / "yolo").exists()


def test_camera_spellings_and_jpeg_header(tmp_path):
    camera = {"IntrinsicMatrix": np.eye(3), "rotationMatrix": np.eye(3), "translationVector": np.ones((1, 3)),
              "TangentialDistortion": np.zeros((1, 2)), "RadialDistortion": np.zeros((1, 2))}  # fmt: skip
    both = {**camera, "RotationMatrix": np.eye(3), "TranslationVector": np.ones((1, 3))}
    for cam in (camera, both):
        params = camera_params(cam)
        assert params["TranslationVector"].tolist() == [[1.0, 1.0, 1.0]]
    image = np.zeros((37, 53, 3), dtype=np.uint8)
    for flags in ([], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]):
        cv2.imwrite(str(tmp_path / "a.jpg"), image, flags)
        assert jpeg_size(tmp_path / "a.jpg") == (53, 37)
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="not a JPEG"):
        jpeg_size(tmp_path / "b.jpg")


def test_visibility_flags_and_boxes_on_a_known_camera():
    camera = {"RotationMatrix": np.eye(3), "TranslationVector": np.zeros((1, 3))}  # depth = z
    kp = np.array([[[10, 10], [90, 50], [100, 10], [np.nan, np.nan], [50, 40], [-0.5, 5]]], dtype=float)
    depth = np.array([100, 100, 100, np.nan, -100, 100], dtype=float)
    points = np.stack([np.zeros(6), np.zeros(6), depth], axis=1)[None]
    flags = visibility(kp, points, camera, 100, 80)
    # seen, seen, x == width is outside, lost, behind the camera (though inside the picture), outside
    assert flags.tolist() == [[2, 2, 1, 0, 1, 1]]
    # the seen box 10..90 x 10..50 grows by 10% (8 px) in x and by max(4 px, 10% of 40) in y
    np.testing.assert_allclose(boxes(kp, flags, 100, 80), [[2, 6, 96, 48]])
    assert boxes(kp, np.zeros_like(flags), 100, 80).tolist() == [[0, 0, 0, 0]]


def test_coco_number_texts_are_json_numbers_to_the_thousandth():
    from rat7m.export.coco import _keypoint_texts

    rng = np.random.default_rng(1)
    xy = np.concatenate([rng.uniform(-3000, 3000, (50, 20, 2)), np.full((1, 20, 2), -0.0004)])
    xy[0, :4] = [[0, 0], [-1.5, 9.9995], [123456789.1234, -7], [5e12, -5e12]]
    flags = rng.integers(0, 3, (51, 20))
    for text, want_xy, want_v in zip(_keypoint_texts(xy, flags), xy, flags, strict=True):
        values = np.array(json.loads(f"[{text}]")).reshape(20, 3)
        want = np.clip(np.round(want_xy, 3), -1e9, 1e9)
        assert np.all(np.abs(values[:, :2] - want) <= 1e-9 + 1e-15 * np.abs(want))
        assert values[:, 2].tolist() == want_v.tolist()
