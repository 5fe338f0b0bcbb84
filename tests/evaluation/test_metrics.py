"""MPJPE, PA-MPJPE and N-MPJPE against values worked out here, independently of the implementation.

Expected values come from the construction of each case (a shift of known length, a similarity
transform, a hand-solved 2D Procrustes problem) or from a brute-force optimiser over proper
rotations, never from a second copy of the formulas under test.
"""

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

from rat7m.metrics import joint_errors, mpjpe, n_mpjpe, pa_mpjpe

METRICS = (mpjpe, pa_mpjpe, n_mpjpe)


def _poses(n: int, dim: int = 3, seed: int = 0) -> np.ndarray:
    """Rat-sized random poses (mm) away from the origin, as real mocap is (noise uses other seeds)."""
    rng = np.random.default_rng([seed, 999])
    return rng.normal(size=(n, 20, dim)) * 40.0 + rng.uniform(-200, 200, size=(n, 1, dim))


def _rot_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_x(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def test_output_shape_and_dtype_for_lists_float32_and_2d():
    target = _poses(4)
    for metric in METRICS:
        out = metric(target.astype(np.float32) + 1, target.tolist())
        assert out.shape == (4, 1) and out.dtype == np.float64
        assert metric(target[..., :2], target[..., :2]).shape == (4, 1)
        assert metric(np.empty((0, 20, 3)), np.empty((0, 20, 3))).shape == (0, 1)


def test_hand_computed_mpjpe_and_n_mpjpe():
    target = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    pred = np.array([[[4.0, 4.0, 0.0], [0.0, 1.0, 0.0]]])  # errors |(3, 4, 0)| = 5 and 0
    assert mpjpe(pred, target)[0, 0] == pytest.approx(2.5)
    # scale = (2*1 + 1*1) / (2^2 + 1^2) = 0.6: scaled pred (1.2, 0, 0), (0, 0.6, 0); errors 0.2, 0.4
    pred = np.array([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    assert n_mpjpe(pred, target)[0, 0] == pytest.approx(0.3)


def test_uniform_shift_gives_its_length_and_is_removed_by_procrustes():
    target = _poses(50)
    rng = np.random.default_rng(1)
    direction = rng.normal(size=(50, 1, 3))
    length = rng.uniform(0.5, 30.0, size=50)
    shift = direction / np.linalg.norm(direction, axis=2, keepdims=True) * length[:, None, None]
    pred = target + shift
    np.testing.assert_allclose(mpjpe(pred, target)[:, 0], length, rtol=1e-12)
    np.testing.assert_allclose(pa_mpjpe(pred, target)[:, 0], 0.0, atol=1e-9)


def test_similarity_transformed_copy_has_zero_pa_mpjpe():
    target = _poses(30, seed=2)
    rot = _rot_z(33.0) @ _rot_x(-71.0)
    pred = 1.7 * target @ rot + np.array([12.0, -80.0, 5.0])
    assert mpjpe(pred, target).min() > 10
    np.testing.assert_allclose(pa_mpjpe(pred, target)[:, 0], 0.0, atol=1e-9)
    # 2D: rotate by 120 degrees, scale by 0.4, shift
    target2 = target[..., :2]
    pred2 = 0.4 * target2 @ _rot_z(120.0)[:2, :2] + np.array([3.0, 4.0])
    np.testing.assert_allclose(pa_mpjpe(pred2, target2)[:, 0], 0.0, atol=1e-9)


def test_scaled_copy_has_zero_n_mpjpe_but_rotation_does_not():
    target = _poses(20, seed=3)
    np.testing.assert_allclose(n_mpjpe(target / 1.9, target)[:, 0], 0.0, atol=1e-9)
    np.testing.assert_allclose(n_mpjpe(2.5 * target[..., :2], target[..., :2])[:, 0], 0.0, atol=1e-9)
    assert n_mpjpe(target @ _rot_z(40.0), target).min() > 1.0  # scale only: a rotation stays an error


def test_reflection_is_not_aligned_away_hand_computed_2d():
    # Mirror x -> -x of a 2D cross. The best proper similarity is R = I (trace of R M is 6 cos(theta)
    # with M = diag(-2, 8)), scale 6 / 10 = 0.6: errors 1.6, 1.6, 0.8, 0.8, mean 1.2.
    target = np.array([[[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]]])
    pred = target * np.array([-1.0, 1.0])
    assert pa_mpjpe(pred, target)[0, 0] == pytest.approx(1.2, abs=1e-12)


def test_reflection_in_3d_keeps_an_error_unless_the_pose_is_planar():
    target = _poses(10, seed=4)
    mirrored = target * np.array([1.0, 1.0, -1.0])
    assert pa_mpjpe(mirrored, target).min() > 1.0
    # a planar pose's mirror image is a 180-degree rotation of it, so it aligns perfectly
    planar = target.copy()
    planar[..., 2] = 7.0
    np.testing.assert_allclose(pa_mpjpe(planar * np.array([-1.0, 1.0, 1.0]), planar)[:, 0], 0.0, atol=1e-9)


def _brute_force_pa(pred: np.ndarray, target: np.ndarray) -> float:
    """Minimise the squared error over scale, rotation vector (proper rotations only) and translation."""

    def transform(params: np.ndarray) -> np.ndarray:
        # exp keeps the scale positive: a negative scale in 3D would be a reflection in disguise
        return np.exp(params[0]) * pred @ Rotation.from_rotvec(params[1:4]).as_matrix().T + params[4:7]

    def cost(params: np.ndarray) -> float:
        return float(np.sum((transform(params) - target) ** 2))

    starts = [np.concatenate([[0.0], Rotation.random(random_state=k).as_rotvec(), target.mean(0)]) for k in range(6)]
    best = min((minimize(cost, x0, method="BFGS", options={"gtol": 1e-10}) for x0 in starts), key=lambda r: r.fun)
    return float(np.linalg.norm(transform(best.x) - target, axis=1).mean())


def test_pa_mpjpe_matches_a_brute_force_optimiser_on_noisy_and_mirrored_poses():
    rng = np.random.default_rng(5)
    target = _poses(3, seed=5)
    pred = 0.8 * target @ _rot_x(25.0) + rng.normal(size=target.shape) * 15.0
    pred[2] = pred[2] * np.array([-1.0, 1.0, 1.0])  # one mirrored sample
    got = pa_mpjpe(pred, target)[:, 0]
    want = [_brute_force_pa(pred[i], target[i]) for i in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_known_gaussian_noise_gives_the_maxwell_mean():
    # error vectors of N(0, sigma^2 I_3): mean length 2 sigma sqrt(2/pi); PA and N remove a little of it
    sigma = 3.0
    rng = np.random.default_rng(6)
    target = _poses(4000, seed=6)
    pred = target + rng.normal(size=target.shape) * sigma
    expected = 2 * sigma * math.sqrt(2 / math.pi)
    assert mpjpe(pred, target).mean() == pytest.approx(expected, rel=0.01)
    assert pa_mpjpe(pred, target).mean() < mpjpe(pred, target).mean()
    assert n_mpjpe(pred, target).mean() == pytest.approx(expected, rel=0.02)
    # fixed-length noise in random directions: MPJPE is that length exactly
    noise = rng.normal(size=target.shape)
    noise *= 2.5 / np.linalg.norm(noise, axis=2, keepdims=True)
    np.testing.assert_allclose(mpjpe(target + noise, target)[:, 0], 2.5, rtol=1e-12)


def test_nan_target_joints_are_left_out_of_alignment_and_mean():
    rng = np.random.default_rng(7)
    target = _poses(6, seed=7)
    pred = 1.3 * target @ _rot_z(15.0) + rng.normal(size=target.shape) * 4.0
    holes = {0: [2, 5], 1: [0], 3: list(range(17))}
    masked = target.copy()
    for sample, joints in holes.items():
        masked[sample, joints] = np.nan
    masked[4, 9, 1] = np.inf  # one bad coordinate excludes the whole joint
    holes[4] = [9]
    masked[5] = np.nan  # no finite joint at all
    wild = pred.copy()  # predictions at excluded joints must not matter
    for sample, joints in holes.items():
        wild[sample, joints] = 1e6
    for metric in METRICS:
        got = metric(wild, masked)[:, 0]
        assert np.isnan(got[5]) and np.isfinite(got[:5]).all()
        for sample in range(5):
            keep = [j for j in range(20) if j not in holes.get(sample, [])]
            alone = metric(pred[sample : sample + 1, keep], target[sample : sample + 1, keep])[0, 0]
            assert got[sample] == pytest.approx(alone, rel=1e-12, abs=1e-12), (metric.__name__, sample)
    errors = joint_errors(wild, masked)
    assert np.isnan(errors[0, [2, 5]]).all() and np.isfinite(errors[0, [0, 1, 3]]).all()
    # hand-computed: the remaining joint errors 3 and 5 average to 4
    tiny_target = np.array([[[0.0, 0.0, 0.0], [np.nan, 0.0, 0.0], [10.0, 0.0, 0.0]]])
    tiny_pred = np.array([[[3.0, 0.0, 0.0], [99.0, 99.0, 99.0], [10.0, 5.0, 0.0]]])
    assert mpjpe(tiny_pred, tiny_target)[0, 0] == pytest.approx(4.0)


def test_one_valid_joint_and_degenerate_predictions():
    target = np.full((1, 20, 3), np.nan)
    target[0, 4] = [1.0, 2.0, 3.0]
    pred = np.zeros((1, 20, 3))
    assert pa_mpjpe(pred, target)[0, 0] == pytest.approx(0.0)  # a translation aligns one joint
    # all predicted joints at the origin: N-MPJPE scale is 0, error = distance of targets to the origin
    assert n_mpjpe(pred, target)[0, 0] == pytest.approx(math.sqrt(14.0))
    # all predicted joints at one point: PA moves them to the target centroid
    full = _poses(1, seed=8)
    centroid_error = np.linalg.norm(full[0] - full[0].mean(0), axis=1).mean()
    assert pa_mpjpe(np.ones((1, 20, 3)), full)[0, 0] == pytest.approx(centroid_error)


def test_batch_equals_one_sample_at_a_time():
    rng = np.random.default_rng(9)
    target = _poses(40, seed=9)
    target[rng.random(target.shape[:2]) < 0.2] = np.nan
    pred = np.nan_to_num(target, nan=0.0) * 0.9 + rng.normal(size=target.shape) * 6.0
    for metric in METRICS:
        whole = metric(pred, target)
        single = np.concatenate([metric(pred[i : i + 1], target[i : i + 1]) for i in range(40)])
        np.testing.assert_allclose(whole, single, rtol=1e-12)


def test_non_finite_prediction_names_the_first_bad_sample():
    target = _poses(8)
    pred = target.copy()
    pred[5, 3, 0] = np.inf
    pred[6, 0, 2] = np.nan
    for metric in (*METRICS, joint_errors):
        with pytest.raises(ValueError, match=r"predicted sample 5 .*joint 3"):
            metric(pred, target)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"\(4, 20, 3\) but target has shape \(4, 19, 3\)"):
        mpjpe(np.zeros((4, 20, 3)), np.zeros((4, 19, 3)))
    with pytest.raises(ValueError, match="n_samples, n_joints, 2 or 3"):
        pa_mpjpe(np.zeros((4, 20, 4)), np.zeros((4, 20, 4)))
    with pytest.raises(ValueError, match="n_samples, n_joints, 2 or 3"):
        n_mpjpe(np.zeros((20, 3)), np.zeros((20, 3)))


def test_metrics_module_needs_only_numpy(tmp_path):
    """The dataset documentation says `from metrics import mpjpe`: that must work without the toolkit."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    shutil.copy(Path(__file__).resolve().parents[2] / "rat7m" / "metrics.py", tmp_path / "metrics.py")
    code = "import numpy as np; from metrics import mpjpe; print(mpjpe(np.zeros((1, 20, 3)), np.ones((1, 20, 3)))[0,0])"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert abs(float(out.stdout) - 3**0.5) < 1e-12


def test_scores_in_blocks_equal_each_metric_on_the_whole_split(monkeypatch):
    """``scores`` (what compute_metrics uses) runs the metrics over blocks of samples: the blocks must not show."""
    from rat7m import metrics

    monkeypatch.setattr(metrics, "SCORE_BLOCK", 7)  # 50 samples: 7 full blocks and a partial one
    target = _poses(50, seed=3)
    target[np.random.default_rng(4).random((50, 20)) < 0.1] = np.nan
    target[11] = np.nan  # a sample with no valid joint
    pred = np.nan_to_num(target) + np.random.default_rng(5).normal(size=target.shape) * 6
    pred[20] = -pred[20]  # a mirrored pose: the reflection case of PA-MPJPE
    errors, values = metrics.scores(pred, target)
    np.testing.assert_array_equal(errors, joint_errors(pred, target))
    for name, metric in zip(metrics.METRIC_NAMES, METRICS, strict=True):
        np.testing.assert_allclose(values[name], metric(pred, target)[:, 0], rtol=1e-13, atol=0, equal_nan=True)
    assert np.isnan(values["pa_mpjpe"][11]) and np.isfinite(np.delete(values["pa_mpjpe"], 11)).all()
    with pytest.raises(ValueError, match="predicted sample 30 "):
        metrics.scores(np.where(np.arange(50)[:, None, None] == 30, np.inf, pred), target)

