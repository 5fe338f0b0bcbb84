"""The report of a scoring run: 3D, 2D and triangulated runs, and crafted metrics folders (issue 20).

Every run is real: a table built from the synthetic .mat files, predictions scored by
compute_metrics.py (3D, ``--pred2d``, ``--pred2d --triangulate``), images decoded from the chunks.
The crafted folders start from a real run's files and change one thing each; each must end in one
line naming the file and the field (exit 2), never a traceback, a hang or a wrong sample.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metric_utils import compute_metrics
from rat7m import catalogue
from rat7m.cli import run_main
from rat7m.demo.pipeline import write_noisy_2d_predictions, write_noisy_predictions
from rat7m.errors import BadInputError
from rat7m.render import report as report_mod
from rat7m.render.__main__ import main as render_main
from rat7m.table import save_annotation
from rat7m.table_build import build_table
from tests.helpers.shared import limit_address_space

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runs(synthetic_dataset, tmp_path_factory):
    """A dataset root, and three scoring runs of its test split: 3D, 2D, and 2D triangulated (each with --report)."""
    base = tmp_path_factory.mktemp("report")
    root = base / "data"
    root.mkdir()
    for sub in (catalogue.VIDEO_DIR, catalogue.ANNOTATION_DIR):
        (root / sub).symlink_to(synthetic_dataset.root / sub, target_is_directory=True)
    table = catalogue.mini_annotation_path(root)
    save_annotation(build_table([r.mat_path for r in synthetic_dataset.recordings.values()]), table)
    write_noisy_predictions(table, base / "p3.csv")
    write_noisy_2d_predictions(table, base / "p2.csv")
    common = ["--gt_path", str(table), "--report", "-q"]
    for name, argv in (("3d", ["--pred_path", str(base / "p3.csv")]), ("2d", ["--pred2d", str(base / "p2.csv")]),
                       ("tri", ["--pred2d", str(base / "p2.csv"), "--triangulate"])):  # fmt: skip
        assert run_main(compute_metrics.main, [*argv, *common, "--save_dir", str(base / name)]) == 0
    return {"root": root, "table": table, **{name: base / name for name in ("3d", "2d", "tri")}}


def _sections(page: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)">', page)


def _images(page: str) -> int:
    return len(re.findall(r'src="data:image/png;base64,', page))


def test_pred2d_report_shows_the_2d_table_and_pck_curve(runs):
    """Old: ``--pred2d --report`` wrote no report (exit 0)."""
    page = (runs["2d"] / report_mod.REPORT_NAME).read_text()
    assert _sections(page) == list(report_mod.SECTIONS_2D)
    assert "Camera6" in page and "PCK@10px" in page and "<th>AP</th>" in page and "<th>AP50</th>" in page
    assert _images(page) == 1  # the PCK curve
    assert "no worst samples: add --triangulate" in page


def test_triangulated_report_has_3d_2d_triangulation_and_the_worst_samples(runs):
    """Old: "Predictions None", "The 0 worst samples", a false "not here" line and no 2D numbers."""
    page = (runs["tri"] / report_mod.REPORT_NAME).read_text()
    expected = [*report_mod.SECTIONS[:-1], *report_mod.SECTIONS_2D, *report_mod.SECTIONS_TRIANGULATION, "worst"]
    assert _sections(page) == expected
    assert "Predictions None" not in page and "not here" not in page and "The 0 worst" not in page
    assert "The 4 worst samples" in page and "triangulated" in page and "Mode: linear DLT" in page
    assert "reprojection error (px)" in page and "PCK@0.1" in page
    assert _images(page) == 3 + 1 + 4  # 3D charts, PCK curve, 4 samples (drawn with the 2D predictions)
    summary = json.loads((runs["tri"] / "summary.json").read_text())
    assert summary["pred2d"] in page


def test_report_with_root_elsewhere_says_the_images_were_left_out(runs, tmp_path, caplog):
    """Old: ``--root`` at the wrong folder drew every sample without images, without a word."""
    out = tmp_path / "r.html"
    argv = ["report", "--metrics_dir", str(runs["3d"]), "--root", str(tmp_path), "--worst", "2", "--out", str(out)]
    assert run_main(render_main, argv) == 0
    page = out.read_text()
    assert f"12 of 12 images left out of the worst samples: {tmp_path} holds neither" in page
    assert "pass --root with the dataset folder" in caplog.text  # and said on the terminal
    # with the right root nothing is left out
    argv[4] = str(runs["root"])
    assert run_main(render_main, argv) == 0 and "left out" not in out.read_text()


def _crafted(runs, tmp_path, change) -> Path:
    """A copy of the 3D run's folder with ``change(summary dict, per-sample CSV lines)`` applied."""
    folder = tmp_path / "crafted"
    shutil.copytree(runs["3d"], folder)
    (folder / report_mod.REPORT_NAME).unlink()
    summary = json.loads((folder / "summary.json").read_text())
    lines = (folder / "per_sample_metrics.csv").read_text().splitlines()
    result = change(summary, lines)
    text = result if isinstance(result, _Raw) else json.dumps(summary)
    (folder / "summary.json").write_text(text)
    (folder / "per_sample_metrics.csv").write_text("\n".join(lines) + "\n")
    return folder


class _Raw(str):
    """The text of summary.json, as given (not the edited dict)."""


def _set_sample(lines: list[str], line: int, value: str) -> None:
    cells = lines[line - 1].split(",")
    cells[2] = value  # recording,frame,sample,...
    lines[line - 1] = ",".join(cells)


CRAFTED = {
    # old: KeyError: 'metrics'
    "no_metrics": (lambda s, lines: s.pop("metrics"), "summary.json: field metrics is missing"),
    # old: TypeError: 'int' object is not iterable
    "joints_not_a_list": (lambda s, lines: s.update(per_joint_mpjpe=5),
                          "field per_joint_mpjpe is 5; expected a list of 20 entries"),
    # old: KeyError: 20
    "forty_joints": (lambda s, lines: s.update(per_joint_mpjpe=s["per_joint_mpjpe"] * 2),
                     "field per_joint_mpjpe is a list of 40; expected 20 entries"),
    # old: AttributeError: 'list' object has no attribute 'items'
    "recordings_list": (lambda s, lines: s.update(recordings=[]), "field recordings is list; expected an object"),
    "mean_text": (lambda s, lines: s["recordings"]["s5-d1"]["metrics"]["mpjpe"].update(mean="x"),
                  "field recordings['s5-d1'].metrics.mpjpe.mean is 'x'; expected a number in [-1e+100, 1e+100]"),
    # old: RecursionError in json.loads
    "deep_json": (lambda s, lines: _Raw('{"metrics": ' + "[" * 100_000 + "]" * 100_000 + "}"),
                  "JSON nested 100001 deep"),
    # old: IndexError: index 1000000 is out of bounds
    "sample_out_of_range": (lambda s, lines: _set_sample(lines, 2, "1000000"),
                            "per_sample_metrics.csv line 2: sample 1000000 is outside the split's 58 samples"),
    # old: rows[-1], the last sample, drawn and labelled as sample -1
    "negative_sample": (lambda s, lines: _set_sample(lines, 3, "-1"),
                        "per_sample_metrics.csv line 3, column sample: '-1' is not a whole number >= 0"),
    "rows_of_another_run": (lambda s, lines: lines.pop(), "has 57 samples; summary.json says n_samples 58"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_metrics_folder_is_one_line_naming_the_field(runs, tmp_path, capsys, case):
    change, expected = CRAFTED[case]
    folder = _crafted(runs, tmp_path, change)
    code = run_main(render_main, ["report", "--metrics_dir", str(folder), "--worst", "1", "--root", str(runs["root"])])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line and not line.startswith("dataset root: ")]  # said once
    assert expected in err and "Traceback" not in err and len(lines) == 1, err
    assert not (folder / report_mod.REPORT_NAME).exists()


@pytest.mark.parametrize("name", ["$\\foo$", "$" + "{" * 1500 + "x" + "}" * 1500 + "$", "a$b$c"])
def test_text_from_the_files_is_drawn_as_plain_text(runs, tmp_path, name):
    """Old: ParseFatalException for ``$\\foo$``, RecursionError for nested mathtext."""
    folder = _crafted(runs, tmp_path, lambda s, lines: s["per_joint_mpjpe"][3].update(joint=name))
    assert run_main(render_main, ["report", "--metrics_dir", str(folder), "--worst", "0"]) == 0
    page = (folder / report_mod.REPORT_NAME).read_text()
    assert f"<td>{name}</td>" in page and "None asked for (--worst 0)" in page


def test_worst_must_not_be_negative(runs, tmp_path):
    with pytest.raises(ValueError, match="--worst -3: expected a whole number >= 0"):
        report_mod.build_report(runs["3d"], worst=-3)


def _run_limited(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """A command in a child with 1.5 GB of address space and a 60 s timeout (a hang fails the test)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=60,
                          preexec_fn=limit_address_space(1536), env=env)  # fmt: skip


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "loop"])
def test_summary_that_is_not_a_regular_file_is_one_line(runs, tmp_path, kind):
    """Old: a FIFO hung, ``/dev/zero`` read until MemoryError, a link loop was a traceback."""
    folder = tmp_path / "m"
    shutil.copytree(runs["3d"], folder)
    (folder / "summary.json").unlink()
    if kind == "fifo":
        os.mkfifo(folder / "summary.json")
    elif kind == "dev_zero":
        (folder / "summary.json").symlink_to("/dev/zero")
    else:
        (folder / "summary.json").symlink_to("summary.json")
    proc = _run_limited(["-m", "rat7m.render", "report", "--metrics_dir", str(folder)], tmp_path)
    assert proc.returncode == 2, proc.stderr
    expected = {"fifo": "is a FIFO (named pipe); expected a regular file",
                "dev_zero": "is a character device; expected a regular file",
                "loop": "cannot read (a symbolic link loop"}[kind]  # fmt: skip
    assert f"summary.json {folder / 'summary.json'} {expected}" in proc.stderr.replace(": cannot", " cannot")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_gt_path_and_check_table_that_are_fifos_are_one_line(runs, tmp_path):
    """Old: ``build_annotation.py --check FIFO`` hung; ``--gt_path FIFO`` said "not found"."""
    fifo = tmp_path / "table.pkl"
    os.mkfifo(fifo)
    proc = _run_limited([str(REPO / "build_annotation.py"), "--check", str(fifo)], tmp_path)
    assert proc.returncode == 2 and f"table {fifo} is a FIFO (named pipe)" in proc.stderr, proc.stderr
    argv = [str(REPO / "metric_utils" / "compute_metrics.py"), "--pred_path", str(runs["3d"].parent / "p3.csv"),
            "--gt_path", str(fifo), "--save_dir", str(tmp_path / "out")]  # fmt: skip
    proc = _run_limited(argv, tmp_path)
    assert proc.returncode == 2 and f"annotation table {fifo} is a FIFO (named pipe)" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_run_of_one_other_metric_charts_that_metric(runs, tmp_path):
    """Old: ``--metric pa_mpjpe --report`` ended in ``KeyError: 'mpjpe'`` (the per-sample CSV has no such column)."""
    argv = ["--pred_path", str(runs["3d"].parent / "p3.csv"), "--gt_path", str(runs["table"]), "--metric", "pa_mpjpe",
            "--save_dir", str(tmp_path / "pa"), "--report", "-q"]  # fmt: skip
    assert run_main(compute_metrics.main, argv) == 0
    page = (tmp_path / "pa" / report_mod.REPORT_NAME).read_text()
    assert _sections(page) == list(report_mod.SECTIONS) and "PA-MPJPE mean (mm)" in page
    assert _images(page) == 3 + 4


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _paths(value, prefix=()):
    """Every (path, value) in a JSON value, the root included."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_summary_is_a_page_or_one_bad_input_line(runs, data):
    """One field of a real summary.json replaced by any JSON value: a page, or BadInputError; nothing else."""
    summary = json.loads((runs["3d"] / "summary.json").read_text())
    paths = list(_paths(summary))
    path = data.draw(st.sampled_from(paths), label="field")
    value = data.draw(_JSON | st.sampled_from([1e100, 1e300, -1e300, 1e-300, 2**70]), label="value")
    if path:
        holder = summary
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = value
    else:
        summary = value
    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(runs["3d"] / "per_sample_metrics.csv", folder)
        Path(folder, "summary.json").write_text(json.dumps(summary))
        try:
            page = report_mod.build_report(folder, worst=0)
        except BadInputError as exc:
            assert "\n" not in str(exc) and "summary.json" in str(exc)
        else:
            assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")


def test_report_into_a_folder_or_under_a_file_is_one_line(runs, tmp_path, capsys):
    base = ["report", "--metrics_dir", str(runs["3d"]), "--worst", "0", "--out"]
    assert run_main(render_main, [*base, str(tmp_path)]) == 2
    assert f"--out {tmp_path} is a folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert run_main(render_main, [*base, str(tmp_path / "file" / "r.html")]) == 2
    err = capsys.readouterr().err
    assert f"cannot write the report r.html to {tmp_path / 'file'}: " in err and "Traceback" not in err


def test_an_unwritable_out_is_refused_before_the_metrics_folder_is_read(runs, tmp_path, capsys):
    """Old: the whole report was drawn (seconds of figures), then the write failed; a bad summary.json hid it."""
    folder = tmp_path / "metrics"
    shutil.copytree(runs["3d"], folder)
    (folder / "summary.json").write_text("{not json")  # reading it would be the first step of the drawing
    (tmp_path / "file").write_text("")
    argv = ["report", "--metrics_dir", str(folder), "--out", str(tmp_path / "file" / "r.html")]
    assert run_main(render_main, argv) == 2
    err = capsys.readouterr().err
    assert f"cannot write the report r.html to {tmp_path / 'file'}: " in err and "summary.json" not in err, err


_CELL = st.sampled_from(["0", "1", "-1", "2.5", "nan", "inf", "-inf", "1e300", "x", "", "s5-d1", "9" * 30, " 3", "1.0"])


@settings(max_examples=200, deadline=None)
@given(header=st.just(["recording", "frame", "sample", "excluded_joints", "mpjpe"])
       | st.lists(st.sampled_from(["recording", "frame", "sample", "excluded_joints", "mpjpe", "pa_mpjpe", "?"]),
                  max_size=6),
       rows=st.lists(st.lists(_CELL, max_size=7), max_size=6), n_samples=st.none() | st.integers(0, 10))  # fmt: skip
def test_fuzzed_per_sample_csv_is_columns_or_one_bad_input_line(header, rows, n_samples):
    from rat7m.render.report_inputs import read_per_sample

    with tempfile.TemporaryDirectory() as folder:
        text = "\n".join(",".join(row) for row in [header, *rows]) + "\n"
        Path(folder, "per_sample_metrics.csv").write_text(text)
        try:
            columns = read_per_sample(folder, n_samples)
        except BadInputError as exc:
            assert "\n" not in str(exc)
        else:
            n = len(columns["sample"])
            assert n == len(rows) and all(len(v) == n for v in columns.values())
            assert columns["sample"].dtype == np.int64 and (columns["sample"] >= 0).all()
            assert n_samples is None or (columns["sample"] < n_samples).all()
