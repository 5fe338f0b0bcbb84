"""Triangulation on hostile numbers: absurd pixels and confidences, broken cameras, degenerate rigs, bad options.

Each case once raised ``LinAlgError: Eigenvalues did not converge`` or scipy's ``Residuals are not finite``,
wrote ``nan`` into ``triangulation.json``, or blamed the wrong thing. Now: a view no lens can map is left
out, a broken camera is refused in one line naming recording and camera, degenerate geometry is NaN
(``degenerate``) and, on the command line, one clear line with nothing written.
"""

import json
import math

import numpy as np
import pytest

from metric_utils import compute_metrics as cm
from rat7m import catalogue
from rat7m.cli import run_main
from rat7m.errors import BadInputError
from rat7m.evaluate import _write_json
from rat7m.table import save_annotation
from rat7m.triangulate import triangulate
from tests.evaluation.test_triangulate import points, rig, views
from tests.helpers.tables2d import make_table

CAMS = list(catalogue.CAMERA_NAMES)


@pytest.mark.parametrize("value", [1e300, 1e150, -1e300, 1e20, np.inf])
@pytest.mark.parametrize("options", [{}, {"robust": True, "refine": True}])
def test_an_absurd_coordinate_leaves_that_view_out(value, options):
    cameras, X = rig(), points(200, seed=11)
    pixels = views(X, cameras)
    pixels[:, 3, 1] = value  # camera 4 reports nonsense for every point
    result = triangulate(pixels, cameras, **options)
    alone = triangulate(np.delete(pixels, 3, axis=1), cameras[:3] + cameras[4:], **options)
    if value == 1e20:  # finite and mapped by the lens model, so used (the robust mode then drops it)
        assert np.isfinite(result.points).all()
        if options:
            np.testing.assert_allclose(result.points, alone.points, atol=1e-9)
        return
    np.testing.assert_allclose(result.points, alone.points, atol=1e-9)
    assert np.abs(result.points - X).max() < 1e-6 and (result.views_used == 5).all()


def test_huge_confidences_weigh_as_their_ratios():
    cameras, X = rig(), points(300, seed=12)
    pixels = views(X, cameras) + np.random.default_rng(13).normal(0, 1.0, size=(300, 6, 2))
    confidence = np.random.default_rng(14).uniform(0.1, 1.0, size=(300, 6))
    base = triangulate(pixels, cameras, confidence)
    for scale in (1e200, 1e-200, 1e300):
        scaled = triangulate(pixels, cameras, confidence * scale, robust=True, refine=True)
        reference = triangulate(pixels, cameras, confidence, robust=True, refine=True)
        np.testing.assert_allclose(scaled.points, reference.points, atol=1e-6)
    np.testing.assert_allclose(triangulate(pixels, cameras, confidence * 1e200).points, base.points, atol=1e-9)
    odd = confidence.copy()
    odd[:, 0] = np.inf  # not a confidence: that view is not used (as NaN), never a crash
    odd[:, 1] = np.nan
    without = triangulate(pixels[:, 2:], cameras[2:], confidence[:, 2:])
    np.testing.assert_allclose(triangulate(pixels, cameras, odd).points, without.points, atol=1e-9)


def test_random_magnitudes_anywhere_never_raise():
    """Coordinates and confidences from 1e-300 to 1e300, either sign, NaN and inf, in random places."""
    cameras, X = rig(), points(400, seed=15)
    rng = np.random.default_rng(16)
    pixels = views(X, cameras)
    hit = rng.random(pixels.shape) < 0.2
    pixels[hit] = rng.choice([-1, 1], hit.sum()) * 10.0 ** rng.uniform(-300, 300, hit.sum())
    pixels[rng.random(pixels.shape) < 0.02] = np.nan
    confidence = 10.0 ** rng.uniform(-300, 300, size=(400, 6))
    confidence[rng.random(confidence.shape) < 0.05] = np.inf
    for options in ({}, {"refine": True}, {"robust": True, "refine": True}):
        result = triangulate(pixels, cameras, confidence, **options)
        finite = np.isfinite(result.points).all(axis=1)
        assert (finite | (result.views_used < 2) | result.degenerate).all()
        assert np.isfinite(result.reprojection_error[finite]).all()


@pytest.mark.parametrize("robust", [False, True])
def test_six_identical_cameras_are_degenerate_not_an_exception(robust):
    cameras, X = rig(), points(100, seed=17)
    pixels = views(X, cameras)  # seen by six different cameras...
    same = [cameras[0]] * 6  # ...triangulated as if all were camera 1: every ray through one centre
    result = triangulate(pixels, same, robust=robust, refine=robust)
    assert np.isnan(result.points).all() and result.degenerate.all() and np.isnan(result.reprojection_error).all()
    exact = triangulate(views(X, same), same, robust=robust, refine=robust)  # identical rays: parallel
    assert np.isnan(exact.points).all() and exact.degenerate.all()


def test_nearly_parallel_but_fine_cameras_still_triangulate():
    """Two cameras 2 degrees apart are a poor but valid rig: finite points, not "degenerate"."""
    cameras, X = rig(), points(100, seed=18)
    turned = dict(cameras[0])
    angle = np.deg2rad(2.0)
    spin = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    turned["RotationMatrix"] = spin @ cameras[0]["RotationMatrix"]  # the camera moved 2 degrees round the z axis
    pair = [cameras[0], turned]
    result = triangulate(views(X, pair), pair)
    assert not result.degenerate.any() and np.abs(result.points - X).max() < 1e-6


def _broken(name: str) -> dict:
    camera = dict(rig()[2])
    if name == "zero K":
        camera["IntrinsicMatrix"] = np.zeros((3, 3))
    elif name == "NaN distortion":
        camera["RadialDistortion"] = np.array([[np.nan, 0.0]])
    elif name == "far translation":
        camera["TranslationVector"] = np.array([[0.0, 0.0, 1e300]])
    elif name == "zero rotation":
        camera["RotationMatrix"] = np.zeros((3, 3))
    elif name == "reflection":
        camera["RotationMatrix"] = camera["RotationMatrix"] * [[1], [1], [-1]]
    elif name == "scaled rotation":
        camera["RotationMatrix"] = camera["RotationMatrix"] * 1.001
    return camera


BROKEN = {
    "zero K": "IntrinsicMatrix", "NaN distortion": "RadialDistortion", "far translation": "TranslationVector",
    "zero rotation": "RotationMatrix", "reflection": "RotationMatrix", "scaled rotation": "RotationMatrix",
}  # fmt: skip


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_camera_is_refused_by_name(name):
    cameras = rig()
    pixels = views(points(50, seed=19), cameras)
    cameras[2] = _broken(name)
    with pytest.raises(BadInputError, match=f"camera 3: {BROKEN[name]}"):
        triangulate(pixels, cameras)


@pytest.mark.parametrize("value", [float("nan"), -5.0, 0.0, float("inf"), "abc"])
def test_inlier_radius_must_be_a_positive_number(value):
    cameras = rig()
    with pytest.raises(ValueError, match="inlier_px must be a positive number"):
        triangulate(views(points(5), cameras), cameras, robust=True, inlier_px=value)


def test_json_results_never_hold_nan(tmp_path):
    _write_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, float("inf"), {"c": -float("inf")}], "d": 2})

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    text = (tmp_path / "x.json").read_text()
    assert json.loads(text, parse_constant=refuse) == {"a": None, "b": [1.0, None, {"c": None}], "d": 2}


# ---- the command line: one line, exit 2, nothing written ------------------------------------------------------


@pytest.fixture(scope="module")
def rig_table(tmp_path_factory):
    table = make_table([("s5-d1", "test", 6), ("s5-d2", "test", 5)], lost=0.0)
    root = tmp_path_factory.mktemp("hostile")
    target = np.nan_to_num(np.stack([table["table"]["2D_keypoints"][c] for c in CAMS], axis=1))
    lines = ["sample,camera," + ",".join(f"{a}{j}" for j in range(1, 21) for a in "xy")]
    for n in range(len(target)):
        lines += [f"{n},{cam}," + ",".join(repr(float(x)) for x in target[n, v].ravel()) for v, cam in enumerate(CAMS)]
    (root / "pred.csv").write_text("\n".join(lines) + "\n")
    return table, root


def _run(capsys, table, root, tag, *extra):
    save_annotation(table, root / f"{tag}.pkl")
    out = root / f"out_{tag}"
    argv = ["--pred2d", root / "pred.csv", "--gt_path", root / f"{tag}.pkl", "--save_dir", out, "--triangulate", *extra]
    code = run_main(cm.main, [str(a) for a in argv])
    _, err = capsys.readouterr()
    return code, err, out


def _with_cameras(table: dict, recording: str, change) -> dict:
    rec = catalogue.recording_by_name(recording)
    cameras = {s: {d: {c: dict(p) for c, p in cams.items()} for d, cams in days.items()}
               for s, days in table["cameras"].items()}  # fmt: skip
    change(cameras[rec.subject][rec.day])
    return {**table, "cameras": cameras}


@pytest.mark.parametrize("name", ["zero K", "NaN distortion", "far translation", "zero rotation"])
def test_a_broken_table_camera_is_one_line_naming_recording_and_camera(rig_table, capsys, name):
    table, root = rig_table

    def change(cams):
        cams["Camera3"]["IntrinsicMatrix" if name == "zero K" else BROKEN[name]] = _broken(name)[BROKEN[name]]
        cams["Camera3"].pop("rotationMatrix" if name == "zero rotation" else "", None)
        cams["Camera3"].pop("translationVector" if name == "far translation" else "", None)

    code, err, out = _run(capsys, _with_cameras(table, "s5-d2", change), root, name.replace(" ", "_"))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "s5-d2, Camera3" in err and BROKEN[name] in err and "confidence above 0" not in err
    assert not out.exists()


@pytest.mark.parametrize("robust", [False, True])
def test_six_identical_table_cameras_say_so_and_write_nothing(rig_table, capsys, robust):
    table, root = rig_table

    def change(cams):
        for name in CAMS:
            cams[name] = dict(cams["Camera1"])

    extra = ["--robust"] if robust else []
    code, err, out = _run(capsys, _with_cameras(table, "s5-d1", change), root, f"same{robust}", *extra)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "rays are parallel, or meet at or behind a camera" in err and "sample 0," in err
    assert not out.exists()


@pytest.mark.parametrize("value", ["nan", "-5", "0", "inf", "abc"])
def test_a_bad_inlier_radius_is_refused_before_anything_is_written(rig_table, capsys, value):
    table, root = rig_table
    code, err, out = _run(capsys, table, root, "radius", "--robust", "--inlier_px", value)
    assert code == 2 and "--inlier_px" in err and "above 0" in err and "Traceback" not in err, err
    assert not out.exists()


def test_a_good_run_writes_strict_json(rig_table, capsys):
    table, root = rig_table
    code, err, out = _run(capsys, table, root, "good", "--robust")
    assert code == 0, err
    for name in ("summary_2d.json", "triangulation.json", "summary.json"):
        json.loads((out / name).read_text(), parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))
    assert math.isfinite(json.loads((out / "triangulation.json").read_text())["reprojection_error_px_mean"])
