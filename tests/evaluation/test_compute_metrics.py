"""compute_metrics on real files: tables saved by rat7m.table, headerless CSVs, real subprocesses.

Predictions are built from the table's own targets with errors of known size (a shift of a given
length), so every expected number is known from the construction.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metric_utils import compute_metrics as cm
from rat7m import catalogue, evaluate, predictions
from rat7m.cli import run_main
from rat7m.errors import BadInputError
from rat7m.table import save_annotation

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "metric_utils" / "compute_metrics.py"
#: The official test split: s5-d1 then s5-d2.
OFFICIAL_TEST = [("s5-d1", "test", 10445), ("s5-d2", "test", 14091)]


def make_table(groups: list[tuple[str, str, int]], seed: int = 0) -> dict:
    """A valid mini-RAT7M table (one camera, to stay small) with rows in ``groups`` order."""
    rng = np.random.default_rng(seed)
    recordings = [catalogue.recording_by_name(name) for name, _, n in groups for _ in range(n)]
    splits = [split for _, split, n in groups for _ in range(n)]
    n = len(recordings)
    frames = np.concatenate([14 + 5 * np.arange(count) for _, _, count in groups]).astype(np.int64)
    cam = catalogue.CAMERA_NAMES[0]
    params = {
        "IntrinsicMatrix": np.eye(3),
        "RotationMatrix": np.eye(3),
        "TranslationVector": np.zeros((1, 3)),
        "TangentialDistortion": np.zeros((1, 2)),
        "RadialDistortion": np.zeros((1, 2)),
    }
    paths = np.array([catalogue.image_path(r, cam, f) for r, f in zip(recordings, frames.tolist(), strict=True)])
    cameras: dict = {}
    for rec in set(recordings):
        cameras.setdefault(rec.subject, {})[rec.day] = {cam: params}
    return {
        "cameras": cameras,
        "camera_names": np.array([cam]),
        "table": {
            "subject_idx": np.array([r.subject for r in recordings], dtype=np.int64),
            "day_idx": np.array([r.day for r in recordings], dtype=np.int64),
            "train_test": np.array(splits),
            "frame_idx": {cam: frames},
            "image_path": {cam: paths},
            "2D_keypoints": {cam: np.zeros((n, 20, 2))},
            "2D_com": {cam: np.zeros((n, 2))},
            "3D_keypoints": rng.normal(size=(n, 20, 3)) * 40 + np.array([-120.0, 50.0, 100.0]),
        },
    }


def shifted(target: np.ndarray, lengths: np.ndarray, seed: int = 1) -> np.ndarray:
    """Predictions = target moved by a random direction of the given length per sample (NaN -> 0)."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(len(target), 1, 3))
    direction /= np.linalg.norm(direction, axis=2, keepdims=True)
    return np.nan_to_num(target, nan=0.0) + direction * np.asarray(lengths, dtype=float)[:, None, None]


def write_csv(path: Path, pred: np.ndarray) -> Path:
    np.savetxt(path, pred.reshape(len(pred), -1), delimiter=",", fmt="%.9f")
    return path


def read_printed_row(stdout: str, label: str) -> list[str]:
    for line in stdout.splitlines():
        if line.split() and line.split()[0] == label:
            return line.split()
    raise AssertionError(f"no {label!r} row in:\n{stdout}")


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """Dataset root with a table shaped like the official one: 40 train rows, then 24536 test rows."""
    root = tmp_path_factory.mktemp("root")
    table = make_table([("s1-d1", "train", 40), *OFFICIAL_TEST])
    keypoints = table["table"]["3D_keypoints"]
    keypoints[40 + 5, 2] = np.nan  # one lost marker
    keypoints[40 + 10000] = np.nan  # a sample with no marker at all
    save_annotation(table, root / catalogue.MINI_ANNOTATION_NAME)
    lengths = np.ones(24536)
    lengths[0] = 1000.0  # only the first row is wrong: dropping it would change every figure
    write_csv(root / "preds.csv", shifted(keypoints[40:], lengths))
    return root, table


def test_official_sized_csv_as_a_script_scores_every_row_including_the_first(official):
    root, table = official
    proc = subprocess.run([sys.executable, str(SCRIPT), "--pred_path", "preds.csv", "-q"],
                          cwd=root, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = root / cm.DEFAULT_SAVE_DIR
    summary = json.loads((out / evaluate.SUMMARY_JSON).read_text())
    assert summary["n_samples"] == 24536 and summary["split"] == "test"
    assert summary["n_excluded_joints"] == 1 + 20
    assert {k: v["n_samples"] for k, v in summary["recordings"].items()} == {"s5-d1": 10445, "s5-d2": 14091}
    mp = summary["metrics"]["mpjpe"]
    assert mp["n_scored"] == 24535
    assert mp["mean"] == pytest.approx((1000 + 24534) / 24535, rel=1e-7)
    assert mp["median"] == pytest.approx(1.0, abs=1e-6)
    assert summary["metrics"]["pa_mpjpe"]["mean"] == pytest.approx(0.0, abs=1e-5)  # a shift aligns away

    per_sample = np.genfromtxt(out / evaluate.PER_SAMPLE_CSV, delimiter=",", names=True, dtype=None, encoding="utf-8")
    assert len(per_sample) == 24536
    first = per_sample[0]
    assert (first["recording"], first["sample"]) == ("s5-d1", 0)
    assert first["frame"] == table["table"]["frame_idx"]["Camera1"][40]
    assert first["mpjpe"] == pytest.approx(1000.0, rel=1e-7)
    assert np.isnan(per_sample["mpjpe"][10000]) and per_sample["excluded_joints"][10000] == 20
    assert per_sample["excluded_joints"][5] == 1 and per_sample["mpjpe"][5] == pytest.approx(1.0, abs=1e-6)
    assert per_sample["recording"][10445] == "s5-d2"
    for name in evaluate.METRICS:  # the per-sample file and the summary agree
        assert np.nanmean(per_sample[name]) == pytest.approx(summary["metrics"][name]["mean"], abs=1e-6)

    # the printed table shows the same figures (2 decimals)
    row = read_printed_row(proc.stdout, "all")
    assert row[1:3] == ["24536", "21"]
    assert row[3:5] == [f"{mp['mean']:.2f}", f"{mp['median']:.2f}"]
    s5d2 = read_printed_row(proc.stdout, "s5-d2")
    assert s5d2[3] == f"{summary['recordings']['s5-d2']['metrics']['mpjpe']['mean']:.2f}" == "1.00"
    assert "1 sample(s) have no finite target joint" in proc.stdout

    joints = np.genfromtxt(out / evaluate.PER_JOINT_CSV, delimiter=",", names=True, dtype=None, encoding="utf-8")
    assert list(joints["joint"]) == list(catalogue.JOINT_NAMES)
    np.testing.assert_allclose(joints["mpjpe"], [e["mpjpe"] for e in summary["per_joint_mpjpe"]], atol=1e-6)
    assert joints["n_samples"][2] == 24534 and joints["n_samples"][0] == 24535
    assert joints["mpjpe"][0] == pytest.approx((1000 + 24534) / 24535, rel=1e-6)
    png = (out / evaluate.PER_JOINT_PNG).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert sorted(p.name for p in out.iterdir()) == sorted(  # no temporary file left behind
        [evaluate.PER_SAMPLE_CSV, evaluate.SUMMARY_JSON, evaluate.PER_JOINT_CSV, evaluate.PER_JOINT_PNG]
    )


def test_as_a_module_with_npy_and_a_bad_csv(tmp_path):
    table = make_table([("s5-d1", "test", 12), ("s5-d2", "test", 8)])
    save_annotation(table, tmp_path / "t.pkl")
    np.save(tmp_path / "p.npy", shifted(table["table"]["3D_keypoints"], np.full(20, 2.5)))
    run = [sys.executable, "-m", "metric_utils.compute_metrics", "--gt_path", str(tmp_path / "t.pkl"),
           "--save_dir", str(tmp_path / "out")]  # fmt: skip
    proc = subprocess.run([*run, "--pred_path", str(tmp_path / "p.npy")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert read_printed_row(proc.stdout, "all")[3] == "2.50"
    summary = json.loads((tmp_path / "out" / evaluate.SUMMARY_JSON).read_text())
    assert summary["metrics"]["mpjpe"]["mean"] == pytest.approx(2.5)

    bad = tmp_path / "header.csv"
    bad.write_text(",".join(f"{j}_{c}" for j in catalogue.JOINT_NAMES for c in "xyz") + "\n")
    proc = subprocess.run([*run, "--pred_path", str(bad)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {bad} line 1, column 1: 'HeadF_x' is not a number (the file must not have a header row)"
    ]


@pytest.fixture
def small(tmp_path):
    """A table whose test split holds an s4-d1 block too, and train rows of subject 5."""
    table = make_table([("s4-d1", "test", 5), ("s5-d1", "train", 7), ("s5-d1", "test", 10), ("s5-d2", "test", 15)])
    gt = tmp_path / "table.pkl"
    save_annotation(table, gt)
    return tmp_path, gt, table


def _run(capsys, *argv):
    code = run_main(cm.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_split_comes_from_train_test_not_from_the_subject(small, capsys):
    root, gt, table = small
    keypoints = table["table"]["3D_keypoints"]
    test = np.flatnonzero(table["table"]["train_test"] == "test")
    lengths = np.arange(1, 31, dtype=float)
    write_csv(root / "test.csv", shifted(keypoints[test], lengths))
    code, out, err = _run(capsys, "--pred_path", root / "test.csv", "--gt_path", gt, "--save_dir", root / "o")
    assert code == 0, err
    assert read_printed_row(out, "s4-d1")[1:4] == ["5", "0", f"{np.mean(lengths[:5]):.2f}"]
    assert read_printed_row(out, "s5-d1")[1:4] == ["10", "0", f"{np.mean(lengths[5:15]):.2f}"]
    assert read_printed_row(out, "all")[1:5] == ["30", "0", f"{lengths.mean():.2f}", f"{np.median(lengths):.2f}"]

    write_csv(root / "train.csv", shifted(keypoints[5:12], np.full(7, 4.0)))
    code, out, err = _run(capsys, "--pred_path", root / "train.csv", "--gt_path", gt, "--split", "train",
                          "--metric", "pa_mpjpe", "--save_dir", root / "o")  # fmt: skip
    assert code == 0, err
    assert "MPJPE mean" not in out.replace("PA-MPJPE", "") and "PA-MPJPE mean" in out
    summary = json.loads((root / "o" / evaluate.SUMMARY_JSON).read_text())
    assert list(summary["metrics"]) == ["pa_mpjpe"] and summary["n_samples"] == 7
    header = (root / "o" / evaluate.PER_SAMPLE_CSV).read_text().splitlines()[0]
    assert header == "recording,frame,sample,excluded_joints,pa_mpjpe"

    code, out, err = _run(capsys, "--pred_path", root / "test.csv", "--gt_path", gt, "--split", "all")
    assert code == 2 and "predictions have 30 rows but the 'all' split of" in err and "has 37 samples" in err
    assert "30 is the size of the 'test' split: did you mean --split test?" in err  # the hint names the split
    write_csv(root / "seven.csv", shifted(keypoints[5:12], np.full(7, 4.0)))
    code, out, err = _run(capsys, "--pred-path", root / "seven.csv", "--gt-path", gt, "--save-dir", root / "o")
    assert code == 2 and "did you mean --split train?" in err  # hyphenated spellings are the same flags

    (root / "file").write_text("")
    code, out, err = _run(capsys, "--pred_path", root / "test.csv", "--gt_path", gt, "--save_dir", root / "file" / "o")
    assert code == 2 and f"cannot write results to {root / 'file' / 'o'}" in err
    assert out == ""  # checked before any work: nothing scored or printed


def test_reruns_overwrite_cleanly(small, capsys):
    root, gt, table = small
    test = table["table"]["train_test"] == "test"
    write_csv(root / "p.csv", shifted(table["table"]["3D_keypoints"][test], np.ones(30)))
    argv = ("--pred_path", root / "p.csv", "--gt_path", gt, "--save_dir", root / "o")
    assert _run(capsys, *argv)[0] == 0
    first = {p.name: p.read_bytes() for p in (root / "o").iterdir()}
    assert _run(capsys, *argv)[0] == 0
    assert {p.name: p.read_bytes() for p in (root / "o").iterdir()} == first
    written = [evaluate.PER_SAMPLE_CSV, evaluate.SUMMARY_JSON, evaluate.PER_JOINT_CSV, evaluate.PER_JOINT_PNG]
    assert sorted(first) == sorted(written)


def _good_lines(table) -> list[str]:
    test = table["table"]["3D_keypoints"][table["table"]["train_test"] == "test"]
    return [",".join(f"{v:.4f}" for v in row) for row in test.reshape(len(test), -1)]


def _replace_cell(line: str, column: int, text: str) -> str:
    cells = line.split(",")
    cells[column] = text
    return ",".join(cells)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing_pred", "prediction file {root}/nope.csv: cannot read (not found)"),
        ("fifo_pred", "prediction file {root}/fifo.csv is a FIFO (named pipe); expected a regular file"),
        ("fifo_tool", "prediction file {root}/fifo.csv is a FIFO (named pipe); expected a regular file"),
        ("loop_pred", "prediction file {root}/loop.csv: cannot read (a symbolic link loop"),
        ("missing_gt", "annotation table {root}/nope.pkl not found; pass --gt_path"),
        ("bad_gt", "{root}/garbage.pkl"),
        ("header", "{root}/p.csv line 1, column 1: 'x' is not a number (the file must not have a header row)"),
        ("numeric_header", "{root}/p.csv line 1 is 0,1,...,59: a header row (pandas writes one)"),
        ("empty", "{root}/p.csv is empty; expected one row of 60 numbers per sample"),
        ("cell", "{root}/p.csv line 3, column 8: 'abc' is not a number"),
        ("columns", "{root}/p.csv line 2 has 59 columns; expected 60 comma-separated numbers"),
        ("blank", "{root}/p.csv line 4 is empty; expected 60"),
        ("rows", "predictions have 29 rows but the 'test' split of {root}/table.pkl has 30 samples"),
        ("nan", "{root}/p.csv line 4, column 2: nan in sample 3; predictions must be finite numbers"),
        ("inf", "{root}/p.csv line 1, column 60: -inf in sample 0"),
        ("semicolons", "{root}/p.csv line 1: values must be comma-separated (found ';')"),
        ("tabs", "{root}/p.csv line 1: values must be comma-separated (found '\\t')"),
        ("spaces", "{root}/p.csv line 1: values must be comma-separated (found ' ')"),
        ("npy_shape", "{root}/p.npy has shape (30, 20, 2); expected (N, 20, 3) or (N, 60)"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(small, capsys, case, expected):
    root, gt, table = small
    lines = _good_lines(table)
    pred = root / "p.csv"
    argv = {"--pred_path": pred, "--gt_path": gt, "--save_dir": root / "o"}
    if case == "missing_pred":
        argv["--pred_path"] = root / "nope.csv"
    elif case.startswith("fifo"):  # was "not found" (a FIFO is not is_file()): said as what it is
        if not (root / "fifo.csv").exists():
            os.mkfifo(root / "fifo.csv")
        argv["--pred_path"] = root / "fifo.csv"
        if case == "fifo_tool":
            argv["--pred-format"] = "anipose"
    elif case == "loop_pred":
        if not (root / "loop.csv").is_symlink():
            (root / "loop.csv").symlink_to("loop.csv")
        argv["--pred_path"] = root / "loop.csv"
    elif case == "missing_gt":
        argv["--gt_path"] = root / "nope.pkl"
    elif case == "bad_gt":
        (root / "garbage.pkl").write_bytes(b"this is not a pickle")
        argv["--gt_path"] = root / "garbage.pkl"
    elif case == "header":
        lines.insert(0, "x,y,z")
    elif case == "numeric_header":
        lines.insert(0, ",".join(str(c) for c in range(60)))
    elif case == "empty":
        lines = ["", ""]
    elif case == "cell":
        lines[2] = _replace_cell(lines[2], 7, "abc")
    elif case == "columns":
        lines[1] = lines[1].rsplit(",", 1)[0]
    elif case == "blank":
        lines.insert(3, "")
    elif case == "rows":
        lines = lines[:-1]
    elif case == "nan":
        lines[3] = _replace_cell(lines[3], 1, "nan")
    elif case == "inf":
        lines[0] = _replace_cell(lines[0], 59, "-inf")
    elif case in ("semicolons", "tabs", "spaces"):  # a European-locale export, a TSV, np.savetxt's default
        separator = {"semicolons": ";", "tabs": "\t", "spaces": " "}[case]
        lines = [line.replace(",", separator) for line in lines]
    elif case == "npy_shape":
        pred = root / "p.npy"
        np.save(pred, np.zeros((30, 20, 2)))
        argv["--pred_path"] = pred
    if pred.suffix == ".csv":
        pred.write_text("\n".join(lines) + "\n")
    code, _, err = _run(capsys, *[x for kv in argv.items() for x in kv])
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert expected.format(root=root) in err
    assert not (root / "o").exists()


def test_reader_accepts_bom_crlf_and_trailing_blank_lines_and_matches_the_values(tmp_path):
    values = np.random.default_rng(3).normal(size=(4, 60)).round(6)
    lines = [",".join(repr(float(v)) for v in row) for row in values]
    path = tmp_path / "p.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n\r\n").encode())
    np.testing.assert_array_equal(predictions.read_predictions(path), values.reshape(4, 20, 3))
    # Python's float() reads a digit separator and non-ASCII digits; a CSV number is ASCII float syntax only
    for cell in ("1_000.5", "\u0661\u0662", "1e5_0", "\uff11"):
        path.write_text("\n".join([*lines[:1], _replace_cell(lines[1], 4, cell), *lines[2:]]), encoding="utf-8")
        with pytest.raises(BadInputError, match=rf"line 2, column 5: {re.escape(repr(cell))} is not a number"):
            predictions.read_predictions(path)


def test_save_predictions_round_trips_through_the_reader(tmp_path):
    pred = np.random.default_rng(4).normal(size=(7, 20, 3)) * 100
    predictions.save_predictions(tmp_path / "p.csv", pred)
    predictions.save_predictions(tmp_path / "p.npy", pred)
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert len(lines) == 7 and all(len(line.split(",")) == 60 for line in lines)
    assert float(lines[0].split(",")[3]) == pytest.approx(pred[0, 1, 0], abs=1e-6)  # joint 1's x is column 4
    np.testing.assert_allclose(predictions.read_predictions(tmp_path / "p.csv"), pred, atol=1e-6)
    np.testing.assert_array_equal(predictions.read_predictions(tmp_path / "p.npy"), pred)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", "p.npy"]
