"""The tools' prediction files are untrusted bytes: every reader gives a result or one BadInputError line.

Hand-made hostile cases (numbers beyond the bounds, inf, deep JSON nesting, a 5000-digit integer, a file
above the size cap that is never read) and Hypothesis fuzzing of the text formats (COCO JSON, Ultralytics
txt, DLC CSV, anipose CSV) from valid seeds mutated byte by byte.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rat7m import catalogue, pixels
from rat7m.errors import BadInputError
from rat7m.model import Table
from rat7m.toolpreds import anipose, coco, common, dlc, yolo
from rat7m.toolpreds.common import TableIndex
from tests.helpers.shared import run_limited
from tests.helpers.tables2d import make_table

#: Examples per fuzz test: a few seconds by default; RAT7M_FUZZ_EXAMPLES=5000 for a long run.
FUZZ_EXAMPLES = int(os.environ.get("RAT7M_FUZZ_EXAMPLES", "60"))
SIZE = (200, 160)
J = catalogue.N_JOINTS

TABLE = make_table([("s5-d1", "test", 3)])
INDEX = TableIndex(TABLE, np.arange(3))
SIZES = {("s5-d1", camera): SIZE for camera in catalogue.CAMERA_NAMES}


def gt(row: int, camera: str) -> np.ndarray:
    xy = np.asarray(TABLE["table"]["2D_keypoints"][camera], dtype=np.float64)[row]
    return pixels.to_zero_based(xy, Table.of(TABLE).pixel_convention)


def coco_seed() -> bytes:
    entries = []
    for row in range(3):
        for number, camera in enumerate(catalogue.CAMERA_NAMES, start=1):
            xy = gt(row, camera)
            triples = np.nan_to_num(np.column_stack([xy, np.where(np.isnan(xy[:, 0]), 0.0, 0.9)])).ravel().tolist()
            entries.append({"image_id": row * 10 + number, "category_id": 1, "keypoints": triples, "score": 0.9})
    return json.dumps(entries).encode()


def yolo_seed() -> bytes:
    xy = gt(0, "Camera1") / SIZE
    kpts = np.nan_to_num(np.column_stack([xy, np.where(np.isnan(xy[:, 0]), 0.0, 0.7)]))  # 0 0 0: missing
    values = [0, 0.5, 0.5, 0.2, 0.2, *kpts.ravel().tolist(), 0.9]
    return (("%g " * len(values)).rstrip() % tuple(values) + "\n").encode()


def dlc_seed() -> bytes:
    lines = ["scorer,," + ",".join(["net"] * 3 * J), "bodyparts,," + ",".join(j for j in catalogue.JOINT_NAMES
                                                                             for _ in range(3)),
             "coords,," + ",".join(["x", "y", "likelihood"] * J)]  # fmt: skip
    for row in (0, 2):  # rows 0 and 1 share an image: DLC labels it once
        xy = gt(row, "Camera2")
        cells = np.column_stack([xy, np.full(J, 0.8)]).ravel()
        image = str(TABLE["table"]["image_path"]["Camera2"][row]).split("/")[-1]
        lines.append(f"labeled-data,s5-d1_Camera2/{image}," + ",".join("" if c != c else repr(float(c)) for c in cells))
    return ("\n".join(lines) + "\n").encode()


def anipose_seed() -> bytes:
    header = [f"{j}_{c}" for j in catalogue.JOINT_NAMES for c in ("x", "y", "z", "error", "ncams", "score")] + ["fnum"]
    lines = [",".join(header)]
    for fnum, pose in enumerate(np.asarray(TABLE["table"]["3D_keypoints"], dtype=np.float64)):
        cells = [v for x, y, z in pose for v in (x, y, z, 1.0, 3.0, 0.9)] + [fnum]
        lines.append(",".join("" if c != c else repr(float(c)) for c in cells))
    return ("\n".join(lines) + "\n").encode()


def read(kind: str, folder: Path, data: bytes):
    """Write ``data`` as a ``kind`` prediction file under ``folder`` and read it."""
    if kind == "yolo":
        labels = folder / "labels"
        labels.mkdir(exist_ok=True)
        image = TABLE["table"]["image_path"]["Camera1"][0]
        (labels / f"s5-d1_Camera1_{Path(str(image)).stem.removeprefix('frame_')}.txt").write_bytes(data)
        return yolo.read(labels, INDEX, sizes=SIZES)
    name = {"coco": "results.json", "dlc": "pred.csv", "anipose": "s5-d1.csv"}[kind]
    path = folder / name
    path.write_bytes(data)
    module = {"coco": coco, "dlc": dlc, "anipose": anipose}[kind]
    return module.read(path, INDEX)


SEEDS = {"coco": coco_seed, "yolo": yolo_seed, "dlc": dlc_seed, "anipose": anipose_seed}


@pytest.mark.parametrize("kind", list(SEEDS))
def test_the_seeds_are_read_exactly(tmp_path, kind):
    """The fuzzers start from files the readers take, and that map back to the table."""
    result = read(kind, tmp_path, SEEDS[kind]())
    assert result.report.n_matched > 0 and result.report.n_unmatched == 0
    if kind == "anipose":
        target = np.asarray(TABLE["table"]["3D_keypoints"], dtype=np.float64)
        np.testing.assert_allclose(result.points, target, atol=1e-9)
        return
    camera = {"coco": "Camera1", "yolo": "Camera1", "dlc": "Camera2"}[kind]
    v = catalogue.CAMERA_NAMES.index(camera)
    table_xy = np.asarray(TABLE["table"]["2D_keypoints"][camera], dtype=np.float64)
    # the yolo seed is one image, DLC's two; row 1 shares row 0's image and gets its points
    rows = {"coco": [0, 1, 2], "yolo": [0], "dlc": [0, 2]}[kind]
    assert result.report.n_duplicates == 0
    seen = np.isfinite(result.points[rows, v]).all(axis=-1)
    np.testing.assert_array_equal(seen, np.isfinite(table_xy[rows]).all(axis=-1))
    assert seen.any()
    tol = 1e-3 if kind == "yolo" else 1e-9  # %g
    np.testing.assert_allclose(result.points[rows, v][seen], table_xy[rows][seen], atol=tol)


def _check(kind: str, folder: Path, data: bytes) -> None:
    try:
        result = read(kind, folder, data)
    except BadInputError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 2000
        return
    points = result.points
    finite = points[np.isfinite(points)]
    assert np.all(np.abs(finite) <= 2 * common.MAX_COORDINATE * max(SIZE))
    assert np.isfinite(result.confidence).all() and (result.confidence >= 0).all()


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(list(SEEDS)), edits=st.lists(
    st.tuples(st.integers(0, 10**6), st.integers(0, 8), st.binary(max_size=8)), max_size=6))  # fmt: skip
def test_fuzz_mutated_tool_files_give_a_result_or_one_line(tmp_path, kind, edits):
    data = bytearray(SEEDS[kind]())
    for at, cut, patch in edits:
        at %= len(data) + 1
        data[at : at + cut] = patch
    _check(kind, tmp_path, bytes(data))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(list(SEEDS)), data=st.binary(max_size=3000))
def test_fuzz_random_bytes_give_a_result_or_one_line(tmp_path, kind, data):
    _check(kind, tmp_path, data)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**30), 10**30),
                       st.text(max_size=5), st.none(), st.booleans()),
       field=st.sampled_from(["score", "image_id", "keypoint", "category_id"]))  # fmt: skip
def test_fuzz_coco_field_values(tmp_path, value, field):
    entries = json.loads(coco_seed())
    if field == "keypoint":
        entries[0]["keypoints"][4] = value
    else:
        entries[0][field] = value
    _check("coco", tmp_path, json.dumps(entries).encode())


@pytest.mark.parametrize(("kind", "data", "says"), [
    ("coco", b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ("coco", b'[{"image_id": 1' + b"1" * 5000 + b', "keypoints": []}]', "not valid JSON"),
    ("coco", b'{"annotations": []}', "holds a JSON dict"),
    ("coco", coco_seed().replace(b"0.9]", b"1e999]", 1), "inf"),
    ("yolo", yolo_seed().replace(b" 0.9\n", b" 1e308\n"), "is not allowed"),
    ("yolo", yolo_seed().replace(b" 0.9\n", b" nan\n"), "is not allowed"),
    ("yolo", yolo_seed().replace(b" 0.9\n", b" -0.5\n"), "below 0"),
    ("yolo", b"0 0.5 0.5 0.1 0.1\n", "has 5 numbers"),
    ("dlc", dlc_seed().replace(b",0.8,", b",inf,", 1), "is not allowed"),
    ("dlc", dlc_seed().replace(b"bodyparts", b"bodypart", 1), "header rows"),
    ("anipose", b"\n".join([anipose_seed().split(b"\n")[0], b"1e300" + anipose_seed().split(b"\n")[1][
        anipose_seed().split(b"\n")[1].index(b","):]]), "is not allowed"),
    ("anipose", anipose_seed() + b"1,2,3\n", "has 3 columns"),
    ("anipose", anipose_seed().rsplit(b",", 1)[0] + b",1e300\n", "not a frame number"),
])  # fmt: skip
def test_hostile_values_are_one_line_naming_the_problem(tmp_path, kind, data, says):
    with pytest.raises(BadInputError, match=says) as caught:
        read(kind, tmp_path, data)
    assert "\n" not in str(caught.value)


def test_a_file_above_the_size_cap_is_never_read(tmp_path):
    path = tmp_path / "results.json"
    with path.open("wb") as handle:  # sparse: no disk, and the reader must not try to load it
        handle.truncate(common.MAX_FILE_BYTES + 1)
    with pytest.raises(BadInputError, match=r"above the .*-byte limit"):
        coco.read(path, INDEX)
    labels = tmp_path / "labels"
    labels.mkdir()
    with (labels / "s5-d1_Camera1_000001.txt").open("wb") as handle:
        handle.truncate(yolo.MAX_LABEL_BYTES + 1)
    with pytest.raises(BadInputError, match=r"above the .*-byte limit"):
        yolo.read(labels, INDEX, sizes=SIZES)


def test_too_many_predictions_for_the_split_is_refused(tmp_path):
    entries = json.loads(coco_seed())
    path = tmp_path / "many.json"
    path.write_text(json.dumps(entries * (common.MAX_PER_IMAGE + 1)))
    with pytest.raises(BadInputError, match=r"more than .* predictions for 3 samples"):
        coco.read(path, INDEX)


def test_a_json_of_millions_of_values_is_refused_before_parsing_under_a_memory_limit(tmp_path):
    """45 million tiny values would be ~1.5 GB of Python objects: counted and refused in a 1 GiB process."""
    path = tmp_path / "results.json"
    with path.open("wb") as handle:
        handle.write(b"[")
        for _ in range(45):
            handle.write(b"0," * 1_000_000)
        handle.write(b"0]")
    code = f"""
        import numpy as np
        from pathlib import Path
        from rat7m.errors import BadInputError
        from rat7m.toolpreds import coco
        from rat7m.toolpreds.common import TableIndex
        from tests.helpers.tables2d import make_table
        index = TableIndex(make_table([("s5-d1", "test", 3)]), np.arange(3))
        try:
            coco.read(Path({str(path)!r}), index)
        except BadInputError as exc:
            print(exc)
    """
    done = run_limited(code, memory_mb=1024, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "JSON values, more than 40000000" in done.stdout and "max_det=1" in done.stdout


def test_formats_are_detected_from_the_file_and_ours_are_left_to_our_readers(tmp_path):
    from rat7m.toolpreds import detect_format

    for kind, name in (("coco", "results.json"), ("dlc", "pred.csv"), ("anipose", "s5-d1.csv")):
        (tmp_path / name).write_bytes(SEEDS[kind]())
        assert detect_format(tmp_path / name) == {"coco": "coco", "dlc": "dlc", "anipose": "anipose"}[kind]
    read("yolo", tmp_path, SEEDS["yolo"]())
    assert detect_format(tmp_path / "labels") == "yolo-txt"
    (tmp_path / "ours.csv").write_text("0,1,2\n")
    (tmp_path / "ours2d.csv").write_text("sample,camera,x1,y1\n0,Camera1,1,2\n")
    np.save(tmp_path / "ours.npy", np.zeros((2, 20, 3)))
    for name in ("ours.csv", "ours2d.csv", "ours.npy"):
        assert detect_format(tmp_path / name) is None
    # the shortcut that spares importing the tools' readers for our own files never claims a tool's file
    from rat7m.predictions import _plainly_ours

    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf1.5,-2e3\n")
    (tmp_path / "digit_joint.csv").write_text("1_x,1_y,1_z,fnum\n0,1,2,0\n")  # anipose, a joint named "1"
    np.savez(tmp_path / "ours.npz", predictions=np.zeros((2, 20, 3)))
    claimed = {p.name for p in tmp_path.rglob("*") if _plainly_ours(p)}
    assert claimed == {"ours.csv", "ours.npy", "ours.npz", "bom.csv"}
    assert all(detect_format(tmp_path / name) is None for name in claimed)


def test_recognising_our_csv_does_not_import_the_tools_readers(tmp_path):
    """~18 ms of every metrics run went to importing every tool's reader just to recognise our own CSV."""
    import subprocess
    import sys

    (tmp_path / "preds.csv").write_text("0.5,1,2\n")
    code = (
        "import sys; from pathlib import Path; from rat7m.predictions import tool_format; "
        f"print(tool_format(Path({str(tmp_path / 'preds.csv')!r}), 'auto'), 'rat7m.toolpreds' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["None", "False"]


def test_a_format_given_to_the_wrong_flag_says_which_flag(tmp_path, capsys):
    from metric_utils import compute_metrics
    from rat7m.cli import run_main
    from rat7m.table import save_annotation

    gt = tmp_path / "table.pkl"
    save_annotation(TABLE, gt)
    (tmp_path / "results.json").write_bytes(coco_seed())
    (tmp_path / "s5-d1.csv").write_bytes(anipose_seed())
    save = ["--gt_path", str(gt), "--save_dir", str(tmp_path / "out")]
    assert run_main(compute_metrics.main, ["--pred_path", str(tmp_path / "results.json"), *save]) == 2
    assert "holds coco predictions (2D); pass it with --pred2d" in capsys.readouterr().err
    assert run_main(compute_metrics.main, ["--pred2d", str(tmp_path / "s5-d1.csv"), *save]) == 2
    assert "holds anipose predictions (3D); pass it with --pred_path" in capsys.readouterr().err
    (tmp_path / "odd.bin").write_bytes(b"\x00\x01")
    assert run_main(compute_metrics.main, ["--pred2d", str(tmp_path / "odd.bin"), "--pred-format", "dlc", *save]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "says"), [
    ({"pred": np.zeros((3, 20, 3)), "sampleID": np.arange(3.0).reshape(1, 3)}, r"pred has shape \(3, 20, 3\)"),
    ({"pred": np.zeros((3, 3, 20)), "sampleID": np.arange(2.0).reshape(1, 2)}, "2 sampleIDs for 3 predictions"),
    ({"pred": np.zeros((3, 3, 20))}, "has no 'sampleID'"),
    ({"pred": np.full((1, 3, 20), np.inf), "sampleID": np.zeros((1, 1))}, "is not allowed"),
    ({"pred": np.zeros((1, 3, 20)), "sampleID": np.full((1, 1), np.nan)}, "sampleID: value nan"),
    ({"pred": np.zeros((1, 3, 20)), "sampleID": np.zeros((1, 1)), "p_max": -np.ones((1, 20))}, "below 0"),
    ({"pred": np.array([["a"]]), "sampleID": np.zeros((1, 1))}, "must be numbers"),
])  # fmt: skip
def test_hostile_dannce_files_are_one_line(tmp_path, content, says):
    import scipy.io

    from rat7m.toolpreds import dannce

    path = tmp_path / "save_data_AVG.mat"
    scipy.io.savemat(path, content)
    with pytest.raises(BadInputError, match=says) as caught:
        dannce.read(path, INDEX)
    assert "\n" not in str(caught.value)


def test_dannce_sample_ids_that_are_not_rows_are_unmatched(tmp_path):
    import scipy.io

    from rat7m.toolpreds import dannce

    path = tmp_path / "save_data_AVG.mat"
    pred = np.moveaxis(np.asarray(TABLE["table"]["3D_keypoints"], dtype=np.float64), 1, 2)
    scipy.io.savemat(path, {"pred": np.concatenate([pred, pred[:2]]), "p_max": np.ones((5, 20)),
                            "sampleID": np.array([[0.0, 1.0, 2.0, 2.5, 99.0]])})  # fmt: skip
    result = dannce.read(path, INDEX)
    assert result.report.n_unmatched == 2 and result.report.first_unmatched == "sampleID 2.5"
    np.testing.assert_array_equal(result.points, np.asarray(TABLE["table"]["3D_keypoints"], dtype=np.float64))


@pytest.mark.parametrize("suffix", [".slp", ".h5", ".mat"])
def test_damaged_binary_files_are_one_line(tmp_path, suffix):
    from rat7m.toolpreds import dannce, slp

    path = tmp_path / f"pred{suffix}"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(3000) if suffix != ".mat" else b"MATLAB 5.0" + os.urandom(3000))
    module = {".slp": slp, ".h5": dlc, ".mat": dannce}[suffix]
    with pytest.raises(BadInputError) as caught:
        module.read(path, INDEX)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


#: A pickle that, loaded, creates the file its test names: code run from a prediction file.
class _Touch:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _dlc_h5(path: Path, index, fmt: str) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    columns = pd.MultiIndex.from_product([["scorer"], ["Snout"], ["x", "y", "likelihood"]],
                                         names=["scorer", "bodyparts", "coords"])  # fmt: skip
    with pytest.warns() if fmt == "fixed" and not isinstance(index[0], str) else contextlib.nullcontext():
        pd.DataFrame(np.zeros((1, 3)), index=pd.Index(index, dtype=object), columns=columns).to_hdf(
            path, key="df_with_missing", format=fmt
        )


def _evil_h5(path: Path, marker: Path, where: str) -> str:
    """A DLC .h5 whose ``where`` carries a pickle that creates ``marker``; returns where the check names it."""
    if where == "index":
        _dlc_h5(path, [_Touch(marker)], "fixed")
        return "row 0 of df_with_missing/axis1"
    _dlc_h5(path, ["img0.png"], "table")
    if where == "attribute":
        import tables

        with tables.open_file(path, "a") as f:
            f.root.df_with_missing._v_attrs.extra = _Touch(marker)
        return "attribute 'extra' of df_with_missing"
    import h5py  # a variable-length ASCII string: h5py reads it as str, PyTables as bytes it unpickles

    evil = b"cposix\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR."
    with h5py.File(path, "a") as f:
        f["df_with_missing"].attrs.create("extra", evil, dtype=h5py.string_dtype("ascii"))
    return "attribute 'extra' of df_with_missing"


@pytest.mark.parametrize("where", ["index", "attribute", "text attribute"])
def test_an_h5_whose_pickles_would_run_code_is_refused_before_pytables_reads_it(tmp_path, where):
    """PyTables unpickles an object index's rows and every attribute that looks pickled, as pandas reads the
    table: before, this file created the marker file (any code could have run). Now h5py finds each pickle
    and the allow-list unpickler refuses the global it names; the marker is never created."""
    marker, path = tmp_path / "ran", tmp_path / "s5-d1-camera1-0DLC_scorer.h5"
    named = _evil_h5(path, marker, where)
    assert not marker.exists()
    globals_ = r"(pathlib\.Path\.touch|__builtin__\.getattr|posix\.system)"
    refused = rf"a pickle PyTables would load.*names the global '{globals_}'"
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(path))}: {named}: {refused}"):
        dlc.read(path, INDEX)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["index", "attribute", "text attribute"])
def test_pytables_itself_unpickles_only_through_the_allow_list(tmp_path, monkeypatch, where):
    """The second guard alone (the h5py check switched off, as if it missed a pickle two readers see differently,
    which a review found twice): PyTables' unpickling goes through the allow-list, and nothing runs."""
    marker, path = tmp_path / "ran", tmp_path / "s5-d1-camera1-0DLC_scorer.h5"
    _evil_h5(path, marker, where)
    monkeypatch.setattr(dlc, "_check_pickles", lambda image, path: None)
    try:
        dlc.read(path, INDEX)
    except BadInputError as exc:  # an object index refused; a refused attribute is left as its bytes
        assert str(exc).startswith(str(path)), exc
    assert not marker.exists()
    import tables.atom
    import tables.attributeset

    assert tables.attributeset.pickle is pickle and tables.atom.pickle is pickle  # put back


def test_an_h5_of_pytables_1x_is_refused(tmp_path):
    """A 1.x file's FILTERS attribute is rewritten by PyTables before it is unpickled: what is checked is not what
    is loaded. No DLC file is that old."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "s5-d1-camera1-0DLC_scorer.h5"
    _dlc_h5(path, ["img0.png"], "table")
    with h5py.File(path, "a") as f:
        f.attrs["PYTABLES_FORMAT_VERSION"] = np.bytes_(b"1.6")
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(path))}: a PyTables b'1.6' file \(before 2.0\)"):
        dlc.read(path, INDEX)


def test_an_h5_that_links_to_another_file_is_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "s5-d1-camera1-0DLC_scorer.h5"
    _dlc_h5(path, ["img0.png"], "table")
    with h5py.File(path, "a") as f:
        f["elsewhere"] = h5py.ExternalLink("/etc/hostname", "/")
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(path))}: elsewhere links to another file"):
        dlc.read(path, INDEX)


def test_a_dannce_mat_that_would_crash_scipy_is_refused_by_its_layout(tmp_path):
    """DANNCE's predictions are a .mat file too, read by scipy: cells nested 20000 deep in ``pred`` killed the process
    (SIGSEGV in scipy's recursive reader). Its variables are walked first, as the RAT7M files' are (in a child)."""
    from tests.helpers.hostile_files import element, mat_file, matrix, nested_cells

    path = tmp_path / "save_data_AVG.mat"
    ids = matrix(6, (1, 1), element(9, np.float64(1).tobytes()), name=b"sampleID")
    mat_file(path, matrix(1, (1, 1), nested_cells(20000), name=b"pred"), ids)
    done = run_limited(f"""
        from pathlib import Path
        from rat7m.errors import BadInputError
        from rat7m.toolpreds import dannce
        try:
            dannce.read(Path({str(path)!r}), None)
        except BadInputError as exc:
            print(exc)
    """, memory_mb=1024)  # fmt: skip
    assert done.returncode == 0, (done.returncode, done.stderr[-1500:])
    assert done.stdout.startswith(f"{path}: pred is a cell array"), done.stdout


@pytest.mark.parametrize("how", ["unwritten rows", "pandas' shape attribute"])
def test_an_h5_declaring_gigabytes_is_refused_from_its_headers(tmp_path, how):
    """A few KB can declare what reading them allocates: chunked rows never written (read back as fill values), or
    the "shape" attribute pandas builds np.empty from; 15 KB asked for 4.7 GB before (a review's find)."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "s5-d1-camera1-0DLC_scorer.h5"
    _dlc_h5(path, ["img0.png"], "fixed")
    with h5py.File(path, "a") as f:
        if how == "unwritten rows":
            f.create_dataset("df_with_missing/pad", shape=(10**8,), dtype="f8", chunks=(1 << 16,))
        else:
            f["df_with_missing/block0_values"].attrs["shape"] = np.array([60, 10**7], dtype=np.int64)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(path))}: its tables declare more than 536,870,912"):
        dlc.read(path, INDEX)


def test_an_h5_whose_groups_loop_is_refused(tmp_path):
    """A group linked back to the root: h5py visits it once, PyTables' walk of the groups never ended (a review's
    find: a few KB hung the scorer)."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "s5-d1-camera1-0DLC_scorer.h5"
    _dlc_h5(path, ["img0.png"], "table")
    with h5py.File(path, "a") as f:
        f.create_group("zz")["up"] = f["/"]
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(path))}: group .* is linked from two places"):
        dlc.read(path, INDEX)


def test_an_h5_whose_object_rows_share_one_blob_is_refused(tmp_path):
    """Variable-length rows are pointers into a shared store: 10,000 rows at one 1 MB pickle (a 1.4 MB file) were
    10 GB to read and unpickle (a fifth review's find, built the same way: each row's record patched to the first's)."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "s5-d1-camera1-0DLC_scorer.h5"
    _dlc_h5(path, ["img0.png"], "table")
    rows = 10_000
    with h5py.File(path, "a") as f:
        junk = f.create_dataset("junk", (rows,), dtype=h5py.vlen_dtype(np.uint8))
        junk.attrs["PSEUDOATOM"] = np.bytes_(b"object")
        junk[0] = np.frombuffer(pickle.dumps(b"x" * 1_000_000, protocol=4), np.uint8)
        for i in range(1, rows):
            junk[i] = np.array([i % 251], np.uint8)
        offset = junk.id.get_offset()
    data = bytearray(path.read_bytes())
    record = bytes(data[offset : offset + 16])
    for i in range(1, rows):
        data[offset + 16 * i : offset + 16 * (i + 1)] = record
    path.write_bytes(bytes(data))
    assert path.stat().st_size < 2 << 20
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(path))}: its rows of junk hold more than the file"):
        dlc.read(path, INDEX)
