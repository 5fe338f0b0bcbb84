"""Hostile predictions and prediction files (issue 12 items 4 and 14, issue 20's 2D readers, CSV/npy fuzzing).

Huge finite coordinates, lying .npy headers, files whose first line is already wrong, non-ASCII
digits; the cases that used to hang or exhaust memory run in a subprocess under ``RLIMIT_AS`` and a
timeout, so a regression fails the test instead of the machine. The reader is also fuzzed with
Hypothesis: a clean (N, 20, 3) result or one :class:`BadInputError` line, never anything else.
"""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metric_utils import compute_metrics as cm
from rat7m import catalogue, predictions
from rat7m.cli import run_main
from rat7m.errors import BadInputError
from rat7m.metrics import MAX_MAGNITUDE, mpjpe, n_mpjpe, pa_mpjpe
from rat7m.predictions import read_predictions_2d
from rat7m.table import save_annotation
from tests.evaluation.test_compute_metrics import make_table

REPO = Path(__file__).resolve().parents[2]
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
        from rat7m.metrics import pa_mpjpe
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
    predictions.save_predictions(tmp_path / "p.npy", pred)
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
        from rat7m.predictions import read_predictions
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
        from rat7m.predictions import read_predictions
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
        from rat7m.predictions import read_predictions
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
        out = predictions.read_predictions(path)
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


# ------------------------------------------------------------------------------------- 2D predictions (issue 20)

CAMS = list(catalogue.CAMERA_NAMES)


def _csv_2d(path: Path, values: np.ndarray) -> Path:
    """``values`` (N, V, 20, 2 or 3) in the documented layout ``sample,camera,x1,y1,...``, with a header."""
    n, v = values.shape[:2]
    lines = ["sample,camera," + ",".join(f"v{k}" for k in range(values[0, 0].size))]
    lines += [f"{i},{CAMS[c]}," + ",".join(repr(float(x)) for x in values[i, c].ravel()) for i in range(n)
              for c in range(v)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def _points(n: int = 3, width: int = 2) -> np.ndarray:
    values = np.random.default_rng(0).uniform(0, 1000, size=(n, len(CAMS), catalogue.N_JOINTS, width))
    if width == 3:
        values[..., 2] = 0.9
    return values


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_2d_predictions_beyond_the_bound_are_refused_not_excluded(tmp_path, suffix):
    """1e200 px used to overflow np.linalg.norm to inf and drop out of MPJPE and PCK: a better score."""
    values = _points()
    values[1, 2, 1:] = 1e200  # 19 of 20 joints of one view
    path = tmp_path / f"p{suffix}"
    _csv_2d(path, values) if suffix == ".csv" else np.savez(path, keypoints_2d=values)
    with pytest.raises(BadInputError, match=r"1e\+200 is beyond the bound 1e\+100") as caught:
        read_predictions_2d(path, 3, CAMS)
    where = "line 10, column 5" if suffix == ".csv" else "sample 1, camera 3, joint 1"
    assert where in str(caught.value)
    values[1, 2, 1:] = MAX_MAGNITUDE  # the bound itself is a number like any other
    path.unlink()
    _csv_2d(path, values) if suffix == ".csv" else np.savez(path, keypoints_2d=values)
    assert read_predictions_2d(path, 3, CAMS).points[1, 2, 1, 0] == MAX_MAGNITUDE


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
@pytest.mark.parametrize(("confidence", "expected"), [(1e200, "confidence 1e+200 is above 1e+06"),
                                                      (-1.0, "confidence -1 is below 0")])  # fmt: skip
def test_2d_confidences_are_bounded(tmp_path, suffix, confidence, expected):
    values = _points(width=3)
    values[2, 0, 7, 2] = confidence
    path = tmp_path / f"p{suffix}"
    _csv_2d(path, values) if suffix == ".csv" else np.savez(path, values)
    with pytest.raises(BadInputError, match=re.escape(expected)) as caught:
        read_predictions_2d(path, 3, CAMS)
    assert ("line 14, column 26" if suffix == ".csv" else "sample 2, camera 1, joint 7") in str(caught.value)


def _read_2d_limited(path: Path, n_samples: int, memory_mb: int) -> subprocess.CompletedProcess:
    return _limited(f"""
        import resource
        from rat7m.predictions import read_predictions_2d
        from rat7m.errors import BadInputError
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            out = read_predictions_2d({str(path)!r}, {n_samples}, {CAMS!r})
        except BadInputError as exc:
            print(exc)
        else:
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
            print(out.points.shape, float(out.points.sum()), grown // 1024)
    """, memory_mb=memory_mb)


def test_a_tiny_npz_declaring_a_huge_shape_is_refused_before_allocating(tmp_path):
    """208 bytes declaring (10^12, 6, 20, 2): numpy's np.load tried to allocate 1.71 PiB."""
    path = tmp_path / "p.npz"
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**12, 6, 20, 2)})  # fmt: skip
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("keypoints_2d.npy", member.getvalue())
    assert path.stat().st_size < 400
    done = _read_2d_limited(path, 5, memory_mb=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"{path} array 'keypoints_2d' has shape (1000000000000, 6, 20, 2); "
                                   "expected (5, 6, 20, 2 or 3)")  # fmt: skip


def _zip_bomb(path: Path, header: bytes, zero_megabytes: int) -> None:
    """A zip whose one member ``keypoints_2d.npy`` is ``header`` then that many MB of zeros, deflated.

    Written by hand, so that it costs milliseconds: after a full flush, deflate turns each MB of
    zeros into the same ~1 kB, so the stream is one block repeated.
    """
    block = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    body = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    data = head + body * zero_megabytes + compressor.flush()
    crc = zlib.crc32(header)
    for _ in range(zero_megabytes):
        crc = zlib.crc32(block, crc)
    size, name = len(header) + zero_megabytes * len(block), b"keypoints_2d.npy"
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 33, crc, len(data), size, len(name), 0) + name
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 33, crc, len(data), size, len(name), 0, 0,
                          0, 0, 0, 0) + name  # fmt: skip
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)


def test_a_zip_bomb_npz_is_refused_before_inflating(tmp_path):
    """A 1 MB .npz whose member inflates to 960 MB of zeros (a well-formed array, the wrong size) took it all."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (1_000_000, 6, 20, 2)})  # fmt: skip
    path = tmp_path / "p.npz"
    _zip_bomb(path, header.getvalue(), 960)
    assert path.stat().st_size < 2e6
    with zipfile.ZipFile(path) as archive:  # a real zip: numpy (or unzip) inflates it to 960 MB
        assert archive.infolist()[0].file_size == 960 * (1 << 20) + len(header.getvalue())
    done = _read_2d_limited(path, 5, memory_mb=700)
    assert done.returncode == 0, done.stderr
    assert "has shape (1000000, 6, 20, 2); expected (5, 6, 20, 2 or 3)" in done.stdout


@pytest.mark.parametrize(("extra", "expected"), [(b"\0" * 64, "holds 1984 bytes of data"),
                                                 (None, "holds 1872 bytes of data")], ids=["longer", "shorter"])
def test_an_npz_member_whose_size_disagrees_with_its_header_is_refused(tmp_path, extra, expected):
    """The right shape in the header, but more (or fewer) bytes in the member than it declares."""
    member = io.BytesIO()
    np.save(member, _points(1, 2).astype("<f8"))
    data = member.getvalue() + extra if extra else member.getvalue()[:-48]
    path = tmp_path / "p.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("keypoints_2d.npy", data)
    with pytest.raises(BadInputError, match=r"declares a float64 array of shape \(1, 6, 20, 2\) \(1920 bytes\) but "
                       + expected):  # fmt: skip
        read_predictions_2d(path, 1, CAMS)


def test_a_large_2d_csv_is_streamed_in_memory_near_its_result(tmp_path):
    """60 MB of 2D CSV (a 37 MB result) read while memory grows by about the result: it was read whole, 3x over."""
    n = 12_800
    body = ",".join(f"{x:.10f}" for x in np.random.default_rng(2).uniform(0, 1000, 3 * catalogue.N_JOINTS))
    path = tmp_path / "p.csv"
    with path.open("w") as handle:
        handle.write("sample,camera," + ",".join(f"v{k}" for k in range(3 * catalogue.N_JOINTS)) + "\n")
        handle.writelines(f"{i // 6},{CAMS[i % 6]},{body}\n" for i in range(n * 6))
    assert path.stat().st_size > 55e6
    done = _read_2d_limited(path, n, memory_mb=1024)
    assert done.returncode == 0, done.stderr
    shape, grown_mb = done.stdout.rsplit(" ", 2)[0], int(done.stdout.split()[-1])
    assert shape.startswith(f"({n}, 6, 20, 2)")
    assert grown_mb < 37 + 40, done.stdout  # result + one block + parser slack, not the file three times


def test_render_samples_checks_a_2d_npy_header_before_allocating(tmp_path):
    """``render samples`` loaded a 2D .npy with np.load: a small file declaring a huge shape was allocated."""
    path = tmp_path / "p.npy"
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f8", "fortran_order": False,
                                                      "shape": (10**10, 6, 20, 2)})  # fmt: skip
        handle.write(b"\0" * 960)
    done = _limited(f"""
        from rat7m.errors import BadInputError
        from rat7m.render.samples import load_predictions
        try:
            load_predictions({str(path)!r}, {CAMS!r})
        except BadInputError as exc:
            print(exc)
    """, memory_mb=800)
    assert done.returncode == 0, done.stderr
    expected = "declares a float64 array of shape (10000000000, 6, 20, 2) (19200000000000 bytes) but holds 960"
    assert expected in done.stdout
