"""Camera geometry against a real rig's own labels, OpenCV, and NaN-heavy input."""

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from rat7m.errors import BadInputError
from rat7m.geometry import camera_param, from_opencv, project, skew, to_opencv
from tests.helpers.plausible_rig import make_cameras, make_mocap

#: The real rig's cameras and labelled points, carried in the repository (source and licence: fixtures/README.md).
REAL_RIG = Path(__file__).resolve().parents[1] / "fixtures" / "real_rig.json"


def _array(rows: list) -> np.ndarray:
    return np.array(rows, dtype=float)  # JSON null (unlabelled) becomes NaN


@pytest.fixture(scope="module")
def real_rig():
    """``[(camera dict, points_3d (n, 22, 3), labels_2d (n, 22, 2)), ...]`` for the rig's 6 cameras."""
    data = json.loads(REAL_RIG.read_text())
    rig = []
    for cam in data["cameras"]:
        camera = {
            "IntrinsicMatrix": _array(cam["K"]),
            "RotationMatrix": _array(cam["r"]),
            "TranslationVector": _array([cam["t"]]),
            "RadialDistortion": _array([cam["RDistort"]]),
            "TangentialDistortion": _array([cam["TDistort"]]),
        }
        rig.append((camera, _array(cam["points_3d"]), _array(cam["labels_2d"])))
    assert len(rig) == 6
    return rig


def _errors(projected, labels):
    finite = np.isfinite(labels).all(axis=-1)
    assert np.array_equal(np.isfinite(projected).all(axis=-1), finite)  # NaN exactly where unlabelled
    return np.linalg.norm(projected[finite] - labels[finite], axis=-1)


def test_project_reproduces_real_rig_labels(real_rig):
    for camera, points, labels in real_rig:
        errors = _errors(project(points, camera), labels)
        assert len(errors) > 200
        assert errors.max() < 1e-6


def test_real_rig_needs_the_distortion_terms(real_rig):
    # the fixture has teeth: leaving out the distortion, or only its tangential part, is visibly wrong
    for camera, points, labels in real_rig:
        pinhole = {**camera, "RadialDistortion": np.zeros((1, 3)), "TangentialDistortion": np.zeros((1, 2))}
        assert np.median(_errors(project(points, pinhole), labels)) > 0.1
        radial_only = {**camera, "TangentialDistortion": np.zeros((1, 2))}
        assert _errors(project(points, radial_only), labels).max() > 0.1


def _cv2_project(points, K_cv, rvec, tvec, dist):
    flat = points.reshape(-1, 3)
    finite = np.isfinite(flat).all(axis=1)
    out = np.full((len(flat), 2), np.nan)
    out[finite] = cv2.projectPoints(flat[finite], rvec, tvec, K_cv, dist)[0].reshape(-1, 2)
    return out.reshape(*points.shape[:-1], 2)


def test_to_opencv_agrees_with_project_on_zero_skew_cameras(real_rig):
    # the real rig's cameras with their skew set to 0, then plausible RAT7M cameras (k3 and all)
    cases = [({**cam, "IntrinsicMatrix": cam["IntrinsicMatrix"] * [[1], [0], [1]]}, pts) for cam, pts, _ in real_rig]
    cases += [(cam, make_mocap(50, seed=3)) for cam in make_cameras(seed=4).values()]
    for camera, points in cases:
        expected = project(points, camera)  # MATLAB's 1-based pixels
        assert np.isfinite(expected).sum() > 100
        # OpenCV numbers pixels from 0: the same point is one pixel up and left (MATLAB's cameraIntrinsicsToOpenCV)
        np.testing.assert_allclose(_cv2_project(points, *to_opencv(camera)), expected - 1, atol=1e-6, rtol=0)
        matlab_cv = to_opencv(camera, zero_based=False)
        np.testing.assert_allclose(_cv2_project(points, *matlab_cv), expected, atol=1e-6, rtol=0)
        for back in (from_opencv(*to_opencv(camera)), from_opencv(*matlab_cv, zero_based=False)):
            for key, value in back.items():
                want = np.asarray(camera_param(camera, key)).reshape(value.shape)
                np.testing.assert_allclose(value, want, atol=1e-12)


def test_to_opencv_moves_the_principal_point_as_matlabs_converter():
    camera = make_cameras(seed=4)["Camera1"]
    K = np.asarray(camera["IntrinsicMatrix"])
    K_cv = to_opencv(camera, allow_skew=True)[0]
    np.testing.assert_array_equal(K_cv[:2, 2], K[2, :2] - 1)  # cameraIntrinsicsToOpenCV: principal point - 1
    np.testing.assert_array_equal(K_cv[[0, 1, 0], [0, 1, 1]], K[[0, 1, 1], [0, 1, 0]])  # fx, fy, skew unchanged


def test_to_opencv_refuses_skew_that_opencv_would_ignore(real_rig):
    camera, points, _ = real_rig[0]
    assert skew(camera) != 0
    with pytest.raises(BadInputError, match=r"skew K\[1, 0\] = -5\.8"):
        to_opencv(camera)
    # why it refuses: OpenCV drops the skew, so its pixels are off
    K_cv, rvec, tvec, dist = to_opencv(camera, allow_skew=True)
    assert K_cv[0, 1] == skew(camera)
    off = np.linalg.norm(_cv2_project(points, K_cv, rvec, tvec, dist) - project(points, camera), axis=-1)
    assert np.nanmax(off) > 0.1


def test_project_any_leading_shape_and_nan_quietly():
    camera = make_cameras(seed=1)["Camera2"]
    points = make_mocap(24, seed=2).reshape(2, 3, 4, 20, 3)
    points[0, 0, 0, 0] = [np.inf, 0, 0]
    # Put the camera centre at the world origin (t = 0), so the origin has p_cam = 0 @ R + 0 = 0 exactly,
    # whatever the rounding or FMA of the matrix product: depth exactly 0, not merely close to it.
    camera = {**camera, "TranslationVector": np.zeros_like(np.asarray(camera["TranslationVector"]))}
    points[0, 0, 0, 1] = 0.0  # depth 0: the camera's own centre
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        projected = project(points, camera)
        assert project(np.full(3, np.nan), camera).shape == (2,)
        assert np.isnan(project(np.full(3, np.nan), camera)).all()
    assert projected.shape == (2, 3, 4, 20, 2) and projected.dtype == np.float64
    flat = project(points.reshape(-1, 3), camera).reshape(projected.shape)
    np.testing.assert_array_equal(projected, flat)
    lost = np.isnan(points).any(axis=-1)
    assert lost.sum() > 10 and np.isnan(projected[lost]).all()
    expected_finite = np.isfinite(points).all(axis=-1)
    expected_finite[0, 0, 0, 1] = False  # the camera centre has no image
    np.testing.assert_array_equal(np.isfinite(projected).all(axis=-1), expected_finite)


def test_two_or_three_radial_terms():
    camera = make_cameras(seed=5)["Camera4"]
    # points seen off-axis (normalised radius up to ~0.4), where k3 r^6 matters
    normalised = np.array([[0.3, 0.2, 1.0], [-0.1, 0.35, 1.0], [0.05, -0.05, 1.0]]) * 1500.0
    R, t = camera["RotationMatrix"], camera["TranslationVector"]
    points = (normalised - t) @ R.T
    two = {**camera, "RadialDistortion": camera["RadialDistortion"][:, :2]}
    three_zero = {**camera, "RadialDistortion": np.append(camera["RadialDistortion"][:, :2], [[0.0]], axis=1)}
    np.testing.assert_array_equal(project(points, two), project(points, three_zero))
    assert np.abs(project(points, camera) - project(points, two)).max() > 1e-3  # k3 is used


def test_project_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        project(np.zeros((4, 2)), make_cameras()["Camera1"])
