"""2D scoring (--pred2d): pixel MPJPE, PCK and OKS AP, checked against a brute-force computation written
here from the definitions and against pycocotools' own evaluation run the ordinary way (files on disk,
default parameters but the sigmas); real tables saved by rat7m.table, the real script as a subprocess.
"""

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from metric_utils import compute_metrics as cm
from rat7m import catalogue
from rat7m.cli import run_main
from rat7m.metrics2d import PCK_ALPHAS, PCK_PIXELS, coco_dicts, score_2d
from rat7m.model import Table
from rat7m.table import save_annotation
from tests.helpers.shared import run_limited
from tests.helpers.tables2d import make_table

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "metric_utils" / "compute_metrics.py"
CAMS = list(catalogue.CAMERA_NAMES)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A six-camera table (train rows first, then the test split) saved to disk, and its test-split 2D keypoints."""
    root = tmp_path_factory.mktemp("scoring2d")
    table = make_table([("s1-d1", "train", 5), ("s5-d1", "test", 30), ("s5-d2", "test", 25)], lost=0.05)
    save_annotation(table, root / "table.pkl")
    rows = np.flatnonzero(table["table"]["train_test"] == "test")
    target = np.stack([table["table"]["2D_keypoints"][c][rows] for c in CAMS], axis=1)
    return root, root / "table.pkl", target, table


def write_csv(path: Path, points: np.ndarray, confidence: np.ndarray | None = None, header: bool = True) -> Path:
    """The documented layout: ``sample,camera,x1,y1,...`` (``x1,y1,c1,...`` with confidences)."""
    values = points if confidence is None else np.concatenate([points, confidence[..., None]], axis=-1)
    names = "xy" if confidence is None else "xyc"
    lines = ["sample,camera," + ",".join(f"{a}{j}" for j in range(1, 21) for a in names)] if header else []
    for n in range(len(values)):
        for v, cam in enumerate(CAMS):
            lines.append(f"{n},{cam}," + ",".join(repr(float(x)) for x in values[n, v].ravel()))
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(capsys, *argv):
    code = run_main(cm.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_table_against_itself_is_perfect_in_2d_and_triangulated_3d(saved):
    root, gt, target, _ = saved
    # a detector's 0-based pixels: the table's (MATLAB's 1-based) minus 1; unlabelled joints: any finite value
    pred = write_csv(root / "self.csv", np.nan_to_num(target) - 1.0)
    out = root / "self_out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--pred2d", str(pred), "--gt_path", str(gt), "--save_dir",
                           str(out), "--triangulate", "--triangulated_out", str(root / "tri.csv")],
                          cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "PCK@0.05" in proc.stdout and "AP50" in proc.stdout and "PA-MPJPE" in proc.stdout
    summary = json.loads((out / "summary_2d.json").read_text())
    for group in [summary["all"], *summary["cameras"].values()]:
        assert group["mpjpe_px"] == 0.0 and group["n_images"] > 50
        assert all(group[f"pck@{a:g}"] == 1.0 for a in PCK_ALPHAS)
        assert all(group[f"pck@{r:g}px"] == 1.0 for r in PCK_PIXELS)
        assert group["ap"] == 1.0 and group["ar"] == 1.0
    three = json.loads((out / "summary.json").read_text())
    assert three["n_samples"] == 55 and three["metrics"]["mpjpe"]["mean"] < 1e-6
    # the triangulated CSV is what --pred_path takes, and scores the same
    code = subprocess.run([sys.executable, str(SCRIPT), "--pred_path", str(root / "tri.csv"), "--gt_path", str(gt),
                           "--save_dir", str(root / "tri_out")], cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert code.returncode == 0, code.stderr
    assert json.loads((root / "tri_out" / "summary.json").read_text())["metrics"]["mpjpe"]["mean"] < 1e-5


def _noisy(target: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Predictions whose error size varies per image (so OKS spreads over 0..1), and random confidences."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.0, 12.0, size=target.shape[:2])[..., None, None]
    pred = np.nan_to_num(target) + rng.normal(size=target.shape) * scale
    return pred, rng.uniform(0.05, 1.0, size=target.shape[:3])


def _brute_force(pred: np.ndarray, target: np.ndarray, confidence: np.ndarray) -> dict:
    """Every number from its definition, one image and joint at a time."""
    sigmas = np.array(catalogue.KEYPOINT_SIGMAS)
    hits = {f"pck@{a:g}": 0 for a in PCK_ALPHAS} | {f"pck@{r:g}px": 0 for r in PCK_PIXELS}
    joints, image_means, oks, scores = 0, [], [], []
    for n in range(target.shape[0]):
        for v in range(target.shape[1]):
            seen = [j for j in range(20) if np.isfinite(target[n, v, j]).all()]
            if not seen:
                continue
            xs, ys = [target[n, v, j, 0] for j in seen], [target[n, v, j, 1] for j in seen]
            w, h = max(xs) - min(xs), max(ys) - min(ys)
            d = [float(np.hypot(*(pred[n, v, j] - target[n, v, j]))) for j in seen]
            joints += len(seen)
            image_means.append(sum(d) / len(d))
            for a in PCK_ALPHAS:
                hits[f"pck@{a:g}"] += sum(x <= a * max(w, h) for x in d)
            for r in PCK_PIXELS:
                hits[f"pck@{r:g}px"] += sum(x <= r for x in d)
            area = w * h
            k2 = [(2 * sigmas[j]) ** 2 for j in seen]  # COCO: exp(-d^2 / (2 s^2 k^2)), s^2 = area, k = 2 sigma
            oks.append(np.mean([np.exp(-x**2 / (2 * area * k)) for x, k in zip(d, k2, strict=True)]))
            scores.append(float(np.mean(confidence[n, v])))
    out = {k: c / joints for k, c in hits.items()} | {"mpjpe_px": float(np.mean(image_means))}
    order = np.argsort(-np.array(scores), kind="mergesort")
    oks = np.array(oks)[order]
    aps, recalls = [], []
    for t in np.linspace(0.5, 0.95, 10):
        tp = np.cumsum(oks >= t)
        fp = np.cumsum(oks < t)
        recall, precision = tp / len(oks), tp / (tp + fp)
        for i in range(len(precision) - 1, 0, -1):
            precision[i - 1] = max(precision[i - 1], precision[i])
        sampled = [precision[k] if k < len(precision) else 0.0
                   for k in np.searchsorted(recall, np.linspace(0, 1, 101), side="left")]  # fmt: skip
        aps.append(np.mean(sampled))
        recalls.append(recall[-1])
    return out | {"ap": float(np.mean(aps)), "ar": float(np.mean(recalls)), "ap50": aps[0], "ap75": aps[5]}


def test_pck_and_ap_agree_with_a_brute_force_computation(saved):
    _, _, target, _ = saved
    pred, confidence = _noisy(target, seed=1)
    result = score_2d(pred, target, CAMS, confidence)
    expected = _brute_force(pred, target, confidence)
    assert 0.2 < expected["ap"] < 0.9  # a spread of OKS: the ranking matters
    for key, value in expected.items():
        assert result["all"][key] == pytest.approx(value, abs=1e-12), key
    one = _brute_force(pred[:, 3:4], target[:, 3:4], confidence[:, 3:4])
    for key, value in one.items():
        assert result["cameras"]["Camera4"][key] == pytest.approx(value, abs=1e-12), key


def test_ap_equals_pycocotools_run_the_ordinary_way_on_files(saved, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    _, _, target, _ = saved
    pred, confidence = _noisy(target, seed=2)
    dataset, results = coco_dicts(pred, target, confidence)
    (tmp_path / "gt.json").write_text(json.dumps(dataset))
    (tmp_path / "dt.json").write_text(json.dumps(results))
    gt = COCO(str(tmp_path / "gt.json"))
    ours = score_2d(pred, target, CAMS, confidence)
    for camera in (None, 1, 5):  # all images, then the images of one camera (image id = 6 n + camera + 1)
        evaluator = COCOeval(gt, gt.loadRes(str(tmp_path / "dt.json")), iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = np.array(catalogue.KEYPOINT_SIGMAS)
        if camera is not None:
            evaluator.params.imgIds = [i for i in gt.getImgIds() if (i - 1) % 6 == camera]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        group = ours["all"] if camera is None else ours["cameras"][CAMS[camera]]
        stats = evaluator.stats  # AP, AP50, AP75, APm, APl, AR, ...
        assert [group["ap"], group["ap50"], group["ap75"], group["ar"]] == pytest.approx(stats[[0, 1, 2, 5]], abs=1e-12)


def test_confidence_ranks_detections(saved):
    _, _, target, _ = saved
    pred, _ = _noisy(target, seed=3)
    error = np.nanmean(np.linalg.norm(pred - np.nan_to_num(target), axis=-1), axis=-1)  # (N, V)
    honest = np.broadcast_to((1.0 / (1.0 + error))[..., None], target.shape[:3])
    assert score_2d(pred, target, CAMS, honest)["all"]["ap"] > score_2d(pred, target, CAMS, 1 - honest / 2)["all"]["ap"]


def test_npz_with_confidence_scores_like_the_csv(saved, capsys):
    root, gt, target, _ = saved
    pred, confidence = _noisy(target, seed=4)
    np.savez(root / "p.npz", keypoints_2d=np.concatenate([pred, confidence[..., None]], axis=-1))
    csv = write_csv(root / "p.csv", pred, confidence, header=False)
    for path, name in ((root / "p.npz", "npz"), (csv, "csv")):
        code, _, err = _run(capsys, "--pred2d", path, "--gt_path", gt, "--save_dir", root / name)
        assert code == 0, err
    a, b = (json.loads((root / n / "summary_2d.json").read_text()) for n in ("npz", "csv"))
    assert a["all"] == b["all"] and a["cameras"] == b["cameras"]


def test_a_2d_file_that_pred2d_scores_is_rendered_by_the_same_reader(saved, capsys):
    """Old: the renderer read only a 4-D ``.npy``; the CSV and ``.npz`` that ``--pred2d`` scores were refused."""
    from rat7m import pixels
    from rat7m.render.samples import load_predictions, sample_figure

    root, gt, target, table = saved
    pred, confidence = _noisy(target, seed=6)
    np.savez(root / "r.npz", keypoints_2d=np.concatenate([pred, confidence[..., None]], axis=-1))
    np.save(root / "r.npy", pred)
    files = [write_csv(root / "r.csv", pred, confidence), root / "r.npz", root / "r.npy"]
    rows = np.flatnonzero(table["table"]["train_test"] == "test")
    for path in files:
        code, _, err = _run(capsys, "--pred2d", path, "--gt_path", gt, "--save_dir", root / f"r_{path.suffix[1:]}")
        assert code == 0, err
        loaded = load_predictions(path, CAMS)
        assert loaded.points_3d is None and len(loaded) == len(rows)
        for v, cam in enumerate(CAMS):
            np.testing.assert_array_equal(loaded.points_2d[cam], pred[:, v])
        sample = int(np.flatnonzero(np.isfinite(target).all(axis=(1, 2, 3)))[0])
        title = sample_figure(table, int(rows[sample]), loaded, sample).texts[0].get_text()
        truth = pixels.to_zero_based(target[sample], Table.of(table).pixel_convention)  # drawn 0-based, as the file's
        error = np.linalg.norm(pred[sample] - truth, axis=-1).mean()
        assert f"mean 2D error {error:.1f} px" in title, title  # the figure draws the file's points


def test_without_pycocotools_every_number_is_still_there(saved, capsys, monkeypatch):
    """pycocotools is a test-time reference only: AP/AR are computed without it, and the same."""
    root, gt, target, _ = saved
    pred = write_csv(root / "nococo.csv", *_noisy(target, seed=9))
    code, _, err = _run(capsys, "--pred2d", pred, "--gt_path", gt, "--save_dir", root / "withcoco")
    assert code == 0, err
    for name in ("pycocotools", "pycocotools.coco", "pycocotools.cocoeval"):
        monkeypatch.setitem(sys.modules, name, None)  # import of any of them now raises ImportError
    code, out, err = _run(capsys, "--pred2d", pred, "--gt_path", gt, "--save_dir", root / "nococo")
    assert code == 0, err
    assert "pycocotools" not in out + err
    summary = json.loads((root / "nococo" / "summary_2d.json").read_text())
    assert 0.2 < summary["all"]["ap"] < 0.9
    assert summary == json.loads((root / "withcoco" / "summary_2d.json").read_text()) | {"pred2d": str(pred)}


def test_absurd_predictions_score_as_errors_never_as_exclusions(saved):
    """19 of 20 joints at 1e200 px overflowed np.linalg.norm to inf and were dropped as "excluded": that file
    scored MPJPE 2.49 px / PCK@5px 0.955, better than the honest file. Every number must now be worse."""
    _, _, target, _ = saved
    honest = np.nan_to_num(target) + np.random.default_rng(8).normal(0, 2.0, size=target.shape)
    gamed = honest.copy()
    gamed[..., 1:, :] = 1e200
    fair = score_2d(honest, target, CAMS)["all"]
    cheat = score_2d(gamed, target, CAMS)["all"]
    assert cheat["n_joints"] == fair["n_joints"]  # nothing excluded: only missing ground truth is
    assert cheat["mpjpe_px"] > 1e150 and cheat["median_px"] > 1e150
    for key in [f"pck@{a:g}" for a in PCK_ALPHAS] + [f"pck@{r:g}px" for r in PCK_PIXELS] + ["ap", "ar"]:
        assert cheat[key] < 0.1 < fair[key], key
    beyond = honest.copy()
    beyond[..., 0, 0] = 1.7e308  # the distance itself overflows: still an error (inf), not an exclusion
    far = score_2d(beyond, target, CAMS, np.full(target.shape[:3], 1e200))["all"]
    assert far["mpjpe_px"] == np.inf and far["n_joints"] == fair["n_joints"] and far["pck@20px"] < fair["pck@20px"]


def _edit(lines: list[str], number: int, column: int, value: str) -> list[str]:
    cells = lines[number - 1].split(",")
    cells[column - 1] = value
    return [*lines[: number - 1], ",".join(cells), *lines[number:]]


def _hostile_npz(path: Path, case: str) -> Path:
    """A 200-byte member declaring 1.9 PB (``huge``), or a 75 KB zip inflating to 77 MB of zeros (``bomb``)."""
    member = io.BytesIO()
    if case == "huge":
        np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False,
                                                      "shape": (10**12, 6, 20, 2)})  # fmt: skip
        member.write(bytes(64))
    else:
        np.save(member, np.zeros((2000, 6, 20, 40)))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("keypoints_2d.npy", member.getvalue())
    return path


@pytest.mark.parametrize(("case", "expected"), [
    ("sample", "line 9, column 1: '2'; expected sample 1"),
    ("camera", "line 3, column 2: 'Camera3'; expected camera Camera2"),
    ("word", "line 5, column 7: 'abc' is not a finite number"),
    ("nan", "line 4, column 10: 'nan' is not a finite number"),
    ("short", "line 6 has 41 columns; expected 42"),
    ("rows", "has 329 prediction rows; the split has 55 samples x 6 cameras = 330"),
    ("semicolons", "line 2: values must be comma-separated (found ';')"),
    ("width", "line 2 has 43 columns; expected 42 (x,y) or 62 (x,y,c)"),
    ("negative", "line 7, column 5: confidence -0.5 is below 0"),
    ("npz", "has shape (55, 6, 20, 4); expected (55, 6, 20, 2 or 3)"),
    ("huge", "has shape (1000000000000, 6, 20, 2); expected (55, 6, 20, 2 or 3)"),
    ("bomb", "has shape (2000, 6, 20, 40); expected (55, 6, 20, 2 or 3)"),
    ("confidence", "line 10, column 8: confidence 1e+200 is above 1e+06"),
    ("fifo", "2D prediction file {root}/fifo.csv is a FIFO (named pipe); expected a regular file"),
    ("magnitude", "line 4, column 3: 1e+200 is beyond the bound 1e+100"),
    ("triangulate_alone", "--triangulate works on 2D predictions: give them with --pred2d PATH"),
    ("one_view", "has a confidence above 0 in 1 camera(s); triangulation needs 2"),
])  # fmt: skip
def test_bad_input_exits_2_with_line_and_column(saved, capsys, case, expected):
    root, gt, target, _ = saved
    good = write_csv(root / "good.csv", np.nan_to_num(target)).read_text().splitlines()
    with_conf = write_csv(root / "goodc.csv", np.nan_to_num(target), np.ones(target.shape[:3])).read_text().splitlines()
    lines = {
        "sample": _edit(good, 9, 1, "2"),
        "camera": _edit(good, 3, 2, "Camera3"),
        "word": _edit(good, 5, 7, "abc"),
        "nan": _edit(good, 4, 10, "nan"),
        "short": [*good[:5], good[5].rsplit(",", 1)[0], *good[6:]],
        "rows": good[:-1],
        "semicolons": [good[0], good[1].replace(",", ";"), *good[2:]],
        "width": [good[0], *(line + ",1" for line in good[1:])],
        "negative": _edit(with_conf, 7, 5, "-0.5"),
        "magnitude": _edit(good, 4, 3, "1e200"),
        "confidence": _edit(with_conf, 10, 8, "1e200"),
    }
    argv = ["--gt_path", gt, "--save_dir", root / "bad_out"]
    if case in lines:
        argv += ["--pred2d", root / "bad.csv"]
        (root / "bad.csv").write_text("\n".join(lines[case]) + "\n")
    elif case == "npz":
        np.savez(root / "bad.npz", np.zeros((*target.shape[:3], 4)))
        argv += ["--pred2d", root / "bad.npz"]
    elif case == "fifo":  # was "not found"
        if not (root / "fifo.csv").exists():
            os.mkfifo(root / "fifo.csv")
        argv += ["--pred2d", root / "fifo.csv"]
    elif case in ("huge", "bomb"):  # refused from the header, before anything is allocated or inflated
        argv += ["--pred2d", _hostile_npz(root / f"{case}.npz", case)]
    elif case == "triangulate_alone":
        argv += ["--pred_path", root / "missing.csv", "--triangulate"]
    else:
        confidence = np.zeros(target.shape[:3])
        confidence[:, 0] = 1.0
        argv += ["--pred2d", write_csv(root / "onecam.csv", np.nan_to_num(target), confidence), "--triangulate"]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert expected.format(root=root) in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_large_csv_is_streamed_in_memory_bounded_by_the_result(tmp_path):
    """A 75 MB CSV (240,000 rows) read under a 600 MB address-space limit: the result array is 115 MB; the
    whole-file reader (bytes, text, lines, bodies, joined copy) needed ~670 MB and failed with MemoryError."""
    n, cams = 40_000, [f"Camera{i}" for i in range(1, 7)]
    body = ",".join(["12.5"] * 60)  # x, y, confidence of 20 joints
    with open(tmp_path / "big.csv", "w") as handle:
        handle.writelines(f"{s},{c},{body}\n" for s in range(n) for c in cams)
    code = f"""
from rat7m.predictions import read_predictions_2d
p = read_predictions_2d({str(tmp_path / "big.csv")!r}, {n}, {cams!r})
print(p.points.shape, float(p.points.sum()))
"""
    done = run_limited(code, memory_mb=600, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split(")")[0] == "(40000, 6, 20, 2"
    assert float(done.stdout.split()[-1]) == n * 6 * 40 * 12.5  # the x and y of every row


def test_a_killed_runs_temporary_files_are_removed_by_the_next_run(saved, capsys):
    """SIGKILL leaves ``.summary.json.PID.TID.tmp`` and the like: the next run into --save_dir removes them."""
    root, gt, target, _ = saved
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = root / "killed"
    out.mkdir()
    names = ("summary.json", "summary_2d.json", "triangulation.json", "per_joint_mpjpe.png", "report.html")
    left = [out / f".{name}.{dead.stdout.strip()}.140.tmp" for name in names]
    kept = [out / f".notes.txt.{dead.stdout.strip()}.140.tmp", out / f".summary.json.{os.getppid()}.1.tmp"]
    for path in (*left, *kept):
        path.write_text("partial")
    pred = write_csv(root / "exact.csv", np.nan_to_num(target))
    code, _, err = _run(capsys, "--gt_path", gt, "--pred2d", pred, "--triangulate", "--report", "--save_dir", out, "-q")
    assert code == 0, err
    assert not any(p.exists() for p in left) and all(p.exists() for p in kept)


@pytest.mark.parametrize("case", ["the 2D input", "the table", "a folder", "no --triangulate"])
def test_a_triangulated_out_that_would_replace_an_input_is_refused_before_any_work(saved, capsys, tmp_path, case):
    """``--triangulated_out`` is checked with ``--save_dir``, before reading: never the 2D file or the table."""
    _, gt, target, _ = saved
    pred = write_csv(tmp_path / "pred.csv", np.nan_to_num(target) - 1.0)
    before = {p: p.read_bytes() for p in (pred, gt)}
    out = {"the 2D input": pred, "the table": gt, "a folder": tmp_path, "no --triangulate": tmp_path / "tri.csv"}[case]
    flags = [] if case == "no --triangulate" else ["--triangulate"]
    code, _, err = _run(capsys, "--pred2d", pred, "--gt_path", gt, "--save_dir", tmp_path / "out", *flags,
                        "--triangulated_out", out)  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--triangulated_out" in err, err
    assert {p: p.read_bytes() for p in (pred, gt)} == before
    assert not (tmp_path / "out" / "summary_2d.json").exists(), "refused before scoring"
    assert not (tmp_path / "tri.csv").exists()
