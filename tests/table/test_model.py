"""The typed model (rat7m.model): Cameras from either spelling, the OpenCV and pixel conversions, the
Table's row selection, its old-mapping behaviour, and that spellings and selection live in one place."""

import ast
import copy
import functools
import json
import pickle
import re
import tokenize
from pathlib import Path

import cv2
import numpy as np
import pytest

from rat7m import catalogue, pixels
from rat7m.errors import BadInputError
from rat7m.geometry import project, to_opencv
from rat7m.model import MAT_SPELLING, Camera, Table, camera_param
from rat7m.table import load_annotation, save_annotation
from rat7m.table_build import build_table
from tests.helpers.numpy1_pickle import numpy1_dumps, official_style
from tests.helpers.plausible_rig import write_recordings

ROOT = Path(__file__).resolve().parents[2]
REAL_RIG = ROOT / "tests" / "fixtures" / "real_rig.json"


def real_rig() -> list[tuple[dict, np.ndarray, np.ndarray]]:
    """The real rig's cameras in the documentation's spelling, with their labelled 3D and 2D points."""
    rig = []
    for cam in json.loads(REAL_RIG.read_text())["cameras"]:
        array = lambda rows: np.array(rows, dtype=float)  # noqa: E731  (JSON null -> NaN)
        camera = {"IntrinsicMatrix": array(cam["K"]), "RotationMatrix": array(cam["r"]),
                  "TranslationVector": array([cam["t"]]), "RadialDistortion": array([cam["RDistort"]]),
                  "TangentialDistortion": array([cam["TDistort"]])}  # fmt: skip
        rig.append((camera, array(cam["points_3d"]), array(cam["labels_2d"])))
    return rig


def mat_spelled(camera: dict) -> dict:
    """The same camera under the .mat's spellings only (what the official pickle very probably holds)."""
    return {MAT_SPELLING[key]: value for key, value in camera.items()}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    write_recordings(root, {"s1-d1": 30, "s4-d1": 20, "s5-d2": 25})
    path = root / "table.pkl"
    save_annotation(build_table(sorted((root / catalogue.ANNOTATION_DIR).glob("mocap-*.mat"))), path)
    return load_annotation(path)


# ------------------------------------------------------------------------------------------- Camera


def test_both_spellings_give_equal_cameras_that_reproduce_the_real_rig():
    for camera, points, labels in real_rig():
        lower = mat_spelled(camera)
        assert "RotationMatrix" not in lower and "rotationMatrix" in lower
        assert Camera.from_dict(lower) == Camera.from_dict(camera) == Camera.from_dict({**lower, **camera})
        typed = Camera.from_dict(lower)
        finite = np.isfinite(labels).all(axis=-1)
        assert np.abs(project(points, typed) - labels)[finite].max() < 1e-9  # the rig's own labels
        np.testing.assert_array_equal(project(points, typed), project(points, camera))
        np.testing.assert_array_equal(typed.project(points), project(points, camera))  # geometry delegates


def test_a_camera_differs_when_a_parameter_does():
    camera = real_rig()[0][0]
    moved = {**camera, "TranslationVector": camera["TranslationVector"] + 1e-9}
    assert Camera.from_dict(moved) != Camera.from_dict(camera)
    assert Camera.from_dict(camera).to_zero_based() != Camera.from_dict(camera)  # conventions differ


def test_to_opencv_is_the_documented_conversion():
    """K_cv = K.T with the principal point minus 1, rvec = Rodrigues(R.T), tvec = t, dist = [k1, k2, p1, p2, k3]."""
    for camera, _, _ in real_rig():
        K = camera["IntrinsicMatrix"]
        expected_K = K.T.copy()
        expected_K[:2, 2] -= 1.0
        rvec = cv2.Rodrigues(np.ascontiguousarray(camera["RotationMatrix"].T))[0]
        k1, k2, k3 = camera["RadialDistortion"].ravel()
        p1, p2 = camera["TangentialDistortion"].ravel()
        for source in (camera, mat_spelled(camera), Camera.from_dict(camera)):
            K_cv, r, t, dist = to_opencv(source, allow_skew=True)
            np.testing.assert_array_equal(K_cv, expected_K)
            np.testing.assert_array_equal(r, rvec)
            np.testing.assert_array_equal(t, camera["TranslationVector"].reshape(3, 1))
            np.testing.assert_array_equal(dist, [k1, k2, p1, p2, k3])
        matlab_K = Camera.from_dict(camera).to_opencv(zero_based=False, allow_skew=True)[0]
        np.testing.assert_array_equal(matlab_K, K.T)
        with pytest.raises(BadInputError, match="skew"):
            Camera.from_dict(camera).to_opencv()  # the real rig is skewed: cv2.projectPoints would ignore it


def test_the_zero_based_camera_projects_one_pixel_up_and_left_and_converts_back():
    for camera, points, _ in real_rig():
        typed = Camera.from_dict(camera)
        zero = typed.to_zero_based()
        assert zero.convention == pixels.ZERO_BASED and typed.convention == pixels.MATLAB
        np.testing.assert_allclose(project(points, zero), project(points, typed) - 1.0, atol=1e-9, rtol=0)
        assert zero.to_matlab() == typed
        back = Camera.from_opencv(*typed.to_opencv(allow_skew=True))  # Rodrigues both ways: equal to rounding
        assert back.convention == typed.convention
        for field in ("K", "R", "t", "radial", "tangential"):
            np.testing.assert_allclose(getattr(back, field), getattr(typed, field), atol=1e-12, rtol=0)
        as_dict = typed.to_dict()
        assert as_dict["RotationMatrix"] is as_dict["rotationMatrix"]  # both spellings, one array
        assert Camera.from_dict(as_dict) == typed


# -------------------------------------------------------------------------------------------- Table


def test_disagreeing_spellings_are_refused_as_before(table, tmp_path):
    raw = official_style(table.to_dict())
    raw = copy.deepcopy(raw)
    camera = next(iter(next(iter(raw["cameras"].values())).values()))["Camera3"]
    camera["RotationMatrix"] = np.asarray(camera["rotationMatrix"])[::-1].copy()
    path = tmp_path / "disagree.pkl"
    path.write_bytes(numpy1_dumps(raw, 4))
    with pytest.raises(BadInputError, match=r"'RotationMatrix' and 'rotationMatrix' equal, found different values"):
        load_annotation(path)


def test_the_table_is_still_the_dict(table, tmp_path):
    assert isinstance(table, Table) and isinstance(table, dict)
    assert table["table"] is table.columns and table.raw["cameras"] is table["cameras"]
    assert table.camera_names == list(catalogue.CAMERA_NAMES)
    loaded = pickle.loads(pickle.dumps(table))
    assert type(loaded) is dict and loaded.keys() == table.keys()  # pickled as the plain dict
    assert type(copy.deepcopy(table)) is Table
    for saved, write in ((tmp_path / "dumped.pkl", pickle.dump), (tmp_path / "saved.npy", None)):
        with saved.open("wb") as f:
            write(table, f) if write else np.save(f, table, allow_pickle=True)  # what users may do with it
        again = load_annotation(saved)  # our safe loader reads it back
        np.testing.assert_array_equal(again["table"]["3D_keypoints"], table["table"]["3D_keypoints"])
    cam = table["cameras"][5][2]["Camera2"]
    assert cam["RotationMatrix"] is cam["rotationMatrix"]  # users index either spelling
    convention = table.pixel_convention
    assert table[pixels.TABLE_KEY] == convention == pixels.MATLAB  # the old cache key
    save_annotation(table, tmp_path / "again.pkl")
    assert pixels.TABLE_KEY not in np.load(tmp_path / "again.pkl", allow_pickle=True)


def test_a_table_over_a_read_only_mapping_detects_its_convention(table):
    """The convention is remembered in the dict a Table wraps, when it can be written to; else in the Table only."""
    from types import MappingProxyType

    raw = {key: value for key, value in table.raw.items() if key != pixels.TABLE_KEY}
    wrapped = Table(MappingProxyType(raw))  # once: AttributeError, a mappingproxy has no setdefault
    assert wrapped.pixel_convention == pixels.MATLAB and pixels.TABLE_KEY not in raw
    assert Table(raw).pixel_convention == raw[pixels.TABLE_KEY] == pixels.MATLAB  # a plain dict remembers it


def test_split_and_recording_rows_match_the_columns(table):
    split = np.asarray(table["table"]["train_test"]).astype(str)
    subject, day = table["table"]["subject_idx"], table["table"]["day_idx"]
    for name in ("train", "test"):
        np.testing.assert_array_equal(table.split_rows(name), np.flatnonzero(split == name))
    np.testing.assert_array_equal(table.split_rows("all"), np.arange(75))
    assert [(rec.name, len(rows)) for rec, rows in table.recordings()] == [("s1-d1", 30), ("s4-d1", 20), ("s5-d2", 25)]
    s4 = catalogue.recording_for(4, 1)
    np.testing.assert_array_equal(table.recording_rows(s4), np.flatnonzero((subject == 4) & (day == 1)))
    some = np.array([74, 3, 40, 41, 0])
    np.testing.assert_array_equal(table.recording_rows(s4, some), [40, 41])
    assert [rec.name for rec, _ in table.recordings(table.split_rows("test"))] == ["s5-d2"]


def test_cameras_of_a_recording_project_the_tables_2d(table):
    rec = catalogue.recording_for(5, 2)
    rows = table.recording_rows(rec)
    for name, camera in table.cameras(rec).items():
        assert camera == Camera.from_dict(table.raw_cameras(5, 2)[name])
        stored = table["table"]["2D_keypoints"][name][rows]
        finite = np.isfinite(stored).all(axis=-1)
        projected = project(table["table"]["3D_keypoints"][rows], camera.to_zero_based())
        np.testing.assert_allclose(projected[finite], table.to_zero_based(stored)[finite], atol=1e-9, rtol=0)
    with pytest.raises(KeyError):
        table.cameras(catalogue.recording_for(2, 1))


# ------------------------------------------------------------- one place for spellings and selection

#: The .mat-only spellings: a string literal holding one is code that knows the spellings.
MAT_ONLY = {"rotationMatrix", "translationVector"}
#: The documentation's spellings: indexing a raw camera dict by one (``camera["RotationMatrix"]``) assumes it.
DOC = {"RotationMatrix", "TranslationVector"}
#: Code that matches rows to a recording by hand (the split is found by its column's name, below).
RECORDING_MATCH = re.compile(r"==\s*\w+\s*\.\s*subject\b")
#: Where each may stay: the model itself, the table's schema (validation) and builder (which writes the column).
HOME = {"rat7m/model.py"}
SCHEMA = {"rat7m/table.py", "rat7m/table_build.py"}
#: Known places elsewhere still to move into the model (none now: a new one must not appear).
ALLOWED_ELSEWHERE: set[str] = set()


@functools.cache  # the sources do not change during a run: tokenized once, not by each of the tests below
def _modules() -> list[tuple[str, list[tokenize.TokenInfo]]]:
    paths = [*(ROOT / "rat7m").rglob("*.py"), *(ROOT / "metric_utils").rglob("*.py")]
    out = []
    for path in sorted(paths):
        with path.open("rb") as f:
            tokens = [t for t in tokenize.tokenize(f.readline) if t.type not in (tokenize.NL, tokenize.COMMENT)]
        out.append((path.relative_to(ROOT).as_posix(), tokens))
    return out


def _string(token: tokenize.TokenInfo) -> str | None:
    """The value of a plain string literal token (docstrings included: they never equal a key)."""
    if token.type != tokenize.STRING:
        return None
    try:
        value = ast.literal_eval(token.string)
    except ValueError:  # an f-string (a STRING token before Python 3.12)
        return None
    return value if isinstance(value, str) else None


@functools.cache
def _spelling_offenders() -> frozenset[str]:
    found = set()
    for name, tokens in _modules():
        for before, token, after in zip(tokens, tokens[1:], tokens[2:], strict=False):
            value = _string(token)
            subscript = before.string == "[" and after.string == "]"
            if value in MAT_ONLY or (value in DOC and subscript):
                found.add(name)
    return frozenset(found)


@functools.cache
def _selection_offenders() -> frozenset[str]:
    found = set()
    for name, tokens in _modules():
        code = " ".join(t.string for t in tokens if t.type != tokenize.STRING)
        if any(_string(t) == "train_test" for t in tokens) or RECORDING_MATCH.search(code):
            found.add(name)
    return frozenset(found)


def test_camera_spellings_live_in_the_model():
    assert _spelling_offenders() - HOME - ALLOWED_ELSEWHERE == set()
    assert camera_param({"rotationMatrix": 1}, "RotationMatrix") == 1  # the model does know them


def test_split_and_recording_selection_live_in_the_model():
    assert _selection_offenders() - HOME - SCHEMA - ALLOWED_ELSEWHERE == set()


def test_the_allow_list_names_only_files_that_still_need_it():
    assert ALLOWED_ELSEWHERE <= _spelling_offenders() | _selection_offenders()
    assert {"rat7m/model.py"} <= _spelling_offenders() & _selection_offenders()  # the searches do find things


@pytest.mark.parametrize("dtype", [np.int64, np.float64, np.uint8])
def test_unique_pairs_is_numpys_unique_over_rows(dtype):
    """The fast (subject, day) grouping gives exactly np.unique(..., axis=0)'s pairs and inverse."""
    from rat7m.model import unique_pairs

    rng = np.random.default_rng(3)
    for n in (0, 1, 500):
        first, second = rng.integers(0, 7, n).astype(dtype), rng.integers(0, 3, n).astype(dtype)
        pairs, inverse = unique_pairs(first, second)
        expected, expected_inverse = np.unique(np.stack([first, second], axis=1), axis=0, return_inverse=True)
        assert pairs.shape == expected.shape and (pairs == expected).all()
        assert (inverse == expected_inverse.ravel()).all()
