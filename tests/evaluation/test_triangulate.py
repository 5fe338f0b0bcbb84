"""Triangulation on the real camera model: distorted, skewed cameras of the plausible ring rig.

Expected numbers come from the construction (exact projections of known points) or from an
independent first-order error propagation computed here with finite differences of
:func:`rat7m.geometry.project`, not from the code under test.
"""

import numpy as np
import pytest

from rat7m import catalogue
from rat7m.geometry import project
from rat7m.triangulate import canonical_camera, triangulate, triangulate_rows, undistort_points
from tests.helpers.plausible_rig import ARENA_CENTRE
from tests.helpers.tables2d import SKEW_PX, SKEWED, make_table, skewed_rig


def rig(seed: int = 0) -> list[dict]:
    cams = skewed_rig(seed, 0)
    return [{k: v for k, v in cams[c].items() if k != "frame"} for c in catalogue.CAMERA_NAMES]


def points(n: int, seed: int = 1) -> np.ndarray:
    return ARENA_CENTRE + np.random.default_rng(seed).normal(0, 60, size=(n, 3))


def views(X: np.ndarray, cameras: list[dict]) -> np.ndarray:
    return np.stack([project(X, c) for c in cameras], axis=-2)


def test_the_rig_is_distorted_and_skewed():
    cameras = rig()
    assert all(abs(c["RadialDistortion"][0, 0]) > 1e-3 for c in cameras)
    assert [c["IntrinsicMatrix"][1, 0] for c in cameras].count(SKEW_PX) == len(SKEWED)


def test_undistort_inverts_project_skew_included_over_the_whole_picture():
    grid = np.stack(np.meshgrid(np.linspace(0, 1328, 40), np.linspace(0, 1048, 30)), axis=-1).reshape(-1, 2)
    for cam in rig():
        xy = undistort_points(grid, cam)
        back = project(np.concatenate([xy, np.ones((len(xy), 1))], axis=1), _at_origin(cam))
        assert np.abs(back - grid).max() < 1e-9
        if cam["IntrinsicMatrix"][1, 0] != 0:  # ignoring the skew (as cv2.undistortPoints would) is visibly wrong
            unskewed = dict(cam, IntrinsicMatrix=cam["IntrinsicMatrix"] * [[1, 1, 1], [0, 1, 1], [1, 1, 1]])
            again = project(np.concatenate([undistort_points(grid, unskewed), np.ones((len(xy), 1))], axis=1),
                            _at_origin(cam))  # fmt: skip
            assert np.abs(again - grid).max() > 0.5


def _at_origin(cam: dict) -> dict:
    """The same intrinsics at the world origin looking down +z: points given in camera coordinates."""
    return dict(cam, RotationMatrix=np.eye(3), TranslationVector=np.zeros((1, 3)))


def test_exact_table_keypoints_triangulate_to_the_3d_keypoints_within_1e6_mm():
    table = make_table([("s1-d1", "train", 40), ("s5-d1", "test", 60), ("s5-d2", "test", 50)], lost=0.0)
    rows = np.arange(len(table["table"]["train_test"]))
    pixels = np.stack([table["table"]["2D_keypoints"][c] for c in catalogue.CAMERA_NAMES], axis=1)
    result = triangulate_rows(pixels, table, rows)
    truth = table["table"]["3D_keypoints"]
    finite = np.isfinite(truth).all(axis=-1)
    assert finite.sum() > 2500
    assert np.abs(result.points - truth)[finite].max() < 1e-6
    assert result.reprojection_error[finite].max() < 1e-6
    assert (result.views_used[finite] == 6).all()
    # each recording has its own rig: one rig for all rows is wrong by far more than the tolerance
    wrong = triangulate(np.moveaxis(pixels, 1, 2), [table["cameras"][5][1][c] for c in catalogue.CAMERA_NAMES])
    assert np.nanmax(np.abs(wrong.points - truth)[:40]) > 1.0


def test_either_spelling_of_the_camera_fields_gives_the_same_points():
    cameras, X = rig(), points(200)
    lower = [{("rotationMatrix" if k == "RotationMatrix" else "translationVector" if k == "TranslationVector" else k): v
              for k, v in c.items()} for c in cameras]  # fmt: skip
    assert "RotationMatrix" not in lower[0] and canonical_camera(lower[0]).keys() == canonical_camera(cameras[0]).keys()
    pixels = views(X, cameras)
    np.testing.assert_array_equal(triangulate(pixels, lower).points, triangulate(pixels, cameras).points)


def _expected_squared_error(X: np.ndarray, cameras: list[dict], sigma: float) -> np.ndarray:
    """First-order E||error||^2 per point of least-squares triangulation: sigma^2 trace((J^T J)^-1)."""
    h = 1e-4
    J = np.stack([(views(X + h * e, cameras) - views(X - h * e, cameras)).reshape(len(X), -1) / (2 * h)
                  for e in np.eye(3)], axis=-1)  # fmt: skip  (n, 2V, 3) pixels per mm
    return sigma**2 * np.trace(np.linalg.inv(np.swapaxes(J, 1, 2) @ J), axis1=1, axis2=2)


@pytest.mark.parametrize(("refine", "low", "high"), [(True, 0.9, 1.1), (False, 1.0, 1.25)])
def test_one_pixel_noise_gives_the_error_a_monte_carlo_expectation_predicts(refine, low, high):
    """3000 noisy draws against the first-order error of the least-squares estimate (sigma^2 tr (J^T J)^-1).

    Refined points reach it (to Monte Carlo precision, ~3%); the DLT, which minimises an algebraic
    error weighted by depth instead of pixels, is a little worse, never better.
    """
    cameras, X = rig(), points(3000, seed=2)
    noisy = views(X, cameras) + np.random.default_rng(3).normal(0, 1.0, size=(len(X), 6, 2))
    result = triangulate(noisy, cameras, refine=refine)
    observed = np.mean(np.sum((result.points - X) ** 2, axis=1))
    expected = np.mean(_expected_squared_error(X, cameras, 1.0))
    assert low < observed / expected < high, (observed, expected)
    # reprojection error over 6 views with 3 unknowns: E r^2 = 2 sigma^2 (1 - 3/12) per view and coordinate pair
    assert 0.8 < np.mean(result.reprojection_error) / np.sqrt(np.pi / 2 * 0.75) < 1.2


def test_one_garbage_view_robust_recovers_plain_dlt_does_not():
    cameras, X = rig(), points(2000, seed=4)
    rng = np.random.default_rng(5)
    clean = views(X, cameras) + rng.normal(0, 1.0, size=(len(X), 6, 2))
    garbage = clean.copy()
    garbage[:, 2] = rng.uniform([0, 0], [1328, 1048], size=(len(X), 2))  # one camera reports nonsense
    clean_error = np.linalg.norm(triangulate(clean, cameras).points - X, axis=1).mean()
    plain = np.linalg.norm(triangulate(garbage, cameras).points - X, axis=1).mean()
    result = triangulate(garbage, cameras, robust=True, refine=True)
    robust = np.linalg.norm(result.points - X, axis=1).mean()
    assert robust < 2 * clean_error < plain, (clean_error, robust, plain)
    assert np.mean(result.views_used == 5) > 0.95
    assert np.median(result.reprojection_error) < 3.0


def test_confidence_zero_drops_a_view_and_weights_pull_towards_confident_views():
    cameras, X = rig(), points(300, seed=6)
    pixels = views(X, cameras)
    pixels[:, 0] += 40.0  # camera 1 is off by 40 px
    confidence = np.ones((len(X), 6))
    confidence[:, 0] = 0.0
    dropped = triangulate(pixels, cameras, confidence)
    np.testing.assert_allclose(dropped.points, triangulate(pixels[:, 1:], cameras[1:]).points, atol=1e-9)
    assert (dropped.views_used == 5).all() and np.abs(dropped.points - X).max() < 1e-6
    full = np.linalg.norm(triangulate(pixels, cameras).points - X, axis=1).mean()
    confidence[:, 0] = 0.1
    weighted = np.linalg.norm(triangulate(pixels, cameras, confidence).points - X, axis=1).mean()
    assert weighted < full / 3
    # a point seen by one view only cannot be triangulated: NaN, with its count
    confidence[:, 1:] = 0.0
    lonely = triangulate(pixels, cameras, confidence)
    assert np.isnan(lonely.points).all() and (lonely.views_used == 1).all()


def _existing_cases() -> dict[str, tuple[np.ndarray, list[dict], np.ndarray | None]]:
    """The data of the tests above: exact, 1 px noise, one garbage camera, weighted."""
    cameras, rng = rig(), np.random.default_rng(5)
    X = points(2000, seed=4)
    clean = views(X, cameras) + rng.normal(0, 1.0, size=(len(X), 6, 2))
    garbage = clean.copy()
    garbage[:, 2] = rng.uniform([0, 0], [1328, 1048], size=(len(X), 2))
    confidence = np.ones((len(X), 6))
    confidence[:, 0] = 0.1
    return {"exact": (views(X, cameras), cameras, None), "noisy": (clean, cameras, None),
            "garbage": (garbage, cameras, None), "weighted": (garbage, cameras, confidence)}  # fmt: skip


@pytest.mark.parametrize("case", ["exact", "noisy", "garbage", "weighted"])
def test_the_fast_code_gives_what_the_old_code_gave(case):
    """Against the implementation before vectorisation (tests/helpers/triangulate_reference.py, eigh + scipy).

    The DLT and the robust choice of views equal it to 1e-9 mm. The refined points agree to 1e-6 mm for
    most points where the old least-squares run had converged; where it had not (its tolerances were
    global over a 20000-point problem: up to 3e-6 mm off on clean data, 8e-4 mm with an outlier in every
    point), ours has the lower cost at every point, and no per-point scipy run does better.
    """
    from scipy.optimize import least_squares

    from tests.helpers import triangulate_reference as old

    pixels, cameras, confidence = _existing_cases()[case]
    for options in ({}, {"robust": True}):
        new = triangulate(pixels, cameras, confidence, **options).points
        np.testing.assert_allclose(new, old.triangulate(pixels, cameras, confidence, **options), rtol=0, atol=1e-9)
    # robust + refine = the choice of views (equal, above) + the refinement, compared here on all views
    ours = triangulate(pixels, cameras, confidence, refine=True).points
    theirs = old.triangulate(pixels, cameras, confidence, refine=True)
    weights = np.ones(pixels.shape[:2]) if confidence is None else confidence

    def cost(X: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
        return np.sum(weights[rows] * np.sum((views(X, cameras) - pixels[rows]) ** 2, axis=-1), axis=1)

    close = np.abs(ours - theirs).max(axis=1) <= 1e-6
    if case in ("exact", "noisy"):  # with an outlier in every point the old run stopped early (up to 8e-4 mm)
        assert close.mean() > 0.9, close.mean()
    assert (cost(ours) <= cost(theirs) * (1 + 1e-12) + 1e-20).all()  # where they differ, ours is the lower
    for m in np.flatnonzero(~close)[:10]:  # and no per-point scipy run from the old point gets lower
        row = slice(m, m + 1)
        def residual(x: np.ndarray, m: int = m) -> np.ndarray:
            return (np.sqrt(weights[m])[:, None] * (views(x[None], cameras)[0] - pixels[m])).ravel()

        fit = least_squares(residual, theirs[m], method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
        assert cost(ours[row], row)[0] <= 2 * fit.cost * (1 + 1e-12) + 1e-20  # ours is at least that minimum


def test_the_refinement_projection_and_jacobian_are_project_and_its_derivative():
    from rat7m.triangulate import _Camera

    X, h = points(500, seed=9), 1e-4
    for camera in rig():
        cam = canonical_camera(camera)
        out = _Camera(cam).pixels([X[:, 0], X[:, 1], X[:, 2]], jacobian=True)
        np.testing.assert_allclose(np.stack(out[:2], axis=-1), project(X, cam), rtol=0, atol=1e-9)
        numeric = np.stack([(project(X + h * e, cam) - project(X - h * e, cam)) / (2 * h) for e in np.eye(3)], -1)
        analytic = np.stack([np.stack(out[2:5], -1), np.stack(out[5:8], -1)], axis=1)  # (M, 2, 3)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)
