"""Hostile predictions and prediction files (issue 12 items 4 and 14, and the CSV/npy fuzzing).

Huge finite coordinates, lying .npy headers, files whose first line is already wrong, non-ASCII
digits; the cases that used to hang or exhaust memory run in a subprocess under ``RLIMIT_AS`` and a
timeout, so a regression fails the test instead of the machine. The reader is also fuzzed with
Hypothesis: a clean (N, 20, 3) result or one :class:`BadInputError` line, never anything else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metric_utils import MAX_MAGNITUDE, mpjpe, n_mpjpe, pa_mpjpe
from metric_utils import compute_metrics as cm
from rat7m.cli import run_main
from rat7m.errors import BadInputError
from rat7m.table import save_annotation
from tests.test_compute_metrics import make_table

REPO = Path(__file__).resolve().parents[1]
#: Examples per fuzz test: a few seconds by default; RAT7M_FUZZ_EXAMPLES=5000 for a long run.
FUZZ_EXAMPLES = int(os.environ.get("RAT7M_FUZZ_EXAMPLES", "60"))


def _limited(code: str, memory_mb: int = 1024, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter under an address-space limit and a timeout."""
    prelude = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({memory_mb << 20}, {memory_mb << 20}))\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)  # fmt: skip


@pytest.mark.parametrize("metric", [mpjpe, pa_mpjpe, n_mpjpe])
@pytest.mark.parametrize("value", [1e308, 1e200, -1e101])
def test_huge_finite_predictions_are_refused_naming_the_sample_and_bound(metric, value):
    target = np.random.default_rng(0).normal(size=(4, 20, 3)) * 100
    pred = target.copy()
    pred[2, 5, 1] = value  # one cell
    with pytest.raises(ValueError, match=r"predicted sample 2 joint 5 has coordinate .* beyond the bound 1e\+100"):
        metric(pred, target)
    pred[2] = value  # a whole row
    with pytest.raises(ValueError, match="predicted sample 2 joint 0"):
        metric(pred, target)
    big_target = target.copy()
    big_target[1, 3] = value
    with pytest.raises(ValueError, match="target sample 1 joint 3"):
        metric(target, big_target)
    # at the bound every metric stays finite: no prediction's error can vanish from a mean
    pred = target.copy()
    pred[2] = MAX_MAGNITUDE
    assert np.isfinite(metric(pred, target)).all()


def test_a_huge_cell_does_not_hang_pa_mpjpe():
    """It used to spin forever inside np.linalg.svd (inf in a 3x3): now one ValueError, at once."""
    done = _limited("""
        import numpy as np
        from metric_utils.metrics import pa_mpjpe
        pred = np.ones((3, 20, 3)); pred[1, 4, 0] = 1e308
        try:
            pa_mpjpe(pred, np.zeros((3, 20, 3)))
        except ValueError as exc:
            print(exc)
    """, timeout=60)
    assert done.returncode == 0 and "predicted sample 1 joint 4" in done.stdout, done.stderr


def test_compute_metrics_refuses_a_huge_row_instead_of_dropping_it(tmp_path, capsys):
    table = make_table([("s5-d1", "test", 4)])
    gt = tmp_path / "table.pkl"
    save_annotation(table, gt)
    pred = np.asarray(table["table"]["3D_keypoints"], dtype=np.float64).copy()
    pred[np.isnan(pred)] = 0.0
    pred[3] = 1e200
    cm.save_predictions(tmp_path / "p.npy", pred)
    argv = ["--pred_path", str(tmp_path / "p.npy"), "--gt_path", str(gt), "--save_dir", str(tmp_path / "o")]
    code = run_main(cm.main, argv)
    err = capsys.readouterr().err
    assert code == 2 and "predicted sample 3 joint 0 has coordinate 1e+200" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_an_npy_declaring_a_huge_shape_is_refused_before_allocating(tmp_path):
    path = tmp_path / "p.npy"
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f8", "fortran_order": False, "shape": (10**8, 60)})
        handle.write(b"\0" * 480)
    assert path.stat().st_size < 1000
    done = _limited(f"""
        from metric_utils.compute_metrics import read_predictions
        from rat7m.errors import BadInputError
        try:
            read_predictions({str(path)!r})
        except BadInputError as exc:
            print(exc)
    """, memory_mb=600)
    assert done.returncode == 0, done.stderr
    assert "declares a float64 array of shape (100000000, 60) (48000000000 bytes) but holds 480 bytes" in done.stdout


def test_a_huge_csv_with_a_wrong_first_line_fails_at_once_in_bounded_memory(tmp_path):
    path = tmp_path / "p.csv"
    with path.open("wb") as handle:
        for _ in range(50):
            handle.write(b"1\n" * (1 << 20))  # 100 MB of one-column lines
    done = _limited(f"""
        from metric_utils.compute_metrics import read_predictions
        from rat7m.errors import BadInputError
        try:
            read_predictions({str(path)!r})
        except BadInputError as exc:
            print(exc)
    """, memory_mb=400)
    assert done.returncode == 0, done.stderr
    expected = f"{path} line 1 has 1 columns; expected 60 comma-separated numbers (x, y, z of 20 joints)"
    assert done.stdout.strip() == expected


def test_a_valid_csv_is_read_in_memory_near_its_result(tmp_path):
    """35 MB of CSV (a 19 MB result) read while memory grows by about the result, not the file twice."""
    rows = np.random.default_rng(1).normal(size=(40_000, 60)) * 100
    path = tmp_path / "p.csv"
    np.savetxt(path, rows, "%.10f", ",")
    assert path.stat().st_size > 30e6
    done = _limited(f"""
        import resource
        import numpy as np
        from metric_utils.compute_metrics import read_predictions
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = read_predictions({str(path)!r})
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
        print(out.shape == (40000, 20, 3), float(np.abs(out).sum()), grown // 1024)
    """, memory_mb=1024)
    assert done.returncode == 0, done.stderr
    ok, total, grown_mb = done.stdout.split()
    assert ok == "True" and float(total) == pytest.approx(np.abs(np.loadtxt(path, delimiter=",")).sum())
    assert int(grown_mb) < 19 + 40, done.stdout  # result + one block + parser slack, not the file twice


# --------------------------------------------------------------------------------------------- fuzzing

_cell = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**30, 10**30).map(str),
    st.text(alphabet="0123456789+-.eE_ nainf\u0661\u0662\uff11\t;x", max_size=8),
)
_line = st.one_of(
    st.lists(_cell, min_size=58, max_size=61).map(",".join),
    st.lists(_cell, max_size=4).map(",".join),
)
_csv = st.lists(_line, max_size=6).map(lambda lines: "\n".join(lines)).map(str.encode) | st.binary(max_size=300)


def _check(path: Path) -> None:
    try:
        out = cm.read_predictions(path)
    except BadInputError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    else:
        assert out.dtype == np.float64 and out.shape[1:] == (20, 3) and np.isfinite(out).all()


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_csv)
def test_fuzz_csv_reader_gives_a_result_or_one_line_of_our_own(tmp_path, data):
    path = tmp_path / "p.csv"
    path.write_bytes(data)
    _check(path)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.lists(st.integers(0, 10**12), min_size=0, max_size=4),
    descr=st.sampled_from(["<f8", ">f4", "<i8", "|u1", "|O", "<c16", "<U3", "|b1", "<f2"]),
    fortran=st.booleans(),
    body=st.binary(max_size=2000),
    mutate=st.tuples(st.integers(0, 200), st.binary(min_size=1, max_size=4)),
)
def test_fuzz_npy_reader_gives_a_result_or_one_line_of_our_own(tmp_path, shape, descr, fortran, body, mutate):
    path = tmp_path / "p.npy"
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": descr, "fortran_order": fortran, "shape": tuple(shape)})
        handle.write(body)
    data = bytearray(path.read_bytes())
    at, patch = mutate
    if at < len(data) and at % 3 == 0:  # sometimes corrupt the header itself
        data[at : at + len(patch)] = patch
        path.write_bytes(bytes(data))
    _check(path)
