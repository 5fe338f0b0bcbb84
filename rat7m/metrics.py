"""Pose-error metrics of the RAT7M benchmark: MPJPE, PA-MPJPE and N-MPJPE, per sample.

Motion capture loses markers, so targets carry NaN. A joint whose target is not finite is left out
of its sample: out of the alignment (centroids, rotation, scale) and out of the mean. Every sum runs
over all samples at once with a per-joint weight (1 for a valid joint, 0 for an excluded one), so
there is no Python loop over samples. A sample with no finite target joint scores NaN.

Predictions are the user's output and must be finite: a NaN there would otherwise vanish into an
average, so it is an error that names the first bad sample. They must also be at most
:data:`MAX_MAGNITUDE` in absolute value (as must finite targets): beyond that, squares and products of
coordinates overflow to inf, a wildly wrong pose would then score inf or NaN and drop out of a mean,
and an inf reaching ``np.linalg.svd`` can hang it. No real pose is anywhere near the bound.

This module needs only numpy, so ``from metric_utils.metrics import mpjpe, pa_mpjpe, n_mpjpe`` works as the dataset
documentation says (a shim re-exports these), and so does this file copied next to your script.

All three functions take ``(predicted, target)`` of shape ``(n_samples, n_joints, 2 or 3)`` and return
``(n_samples, 1)`` float64, in the units of the input (mm for RAT7M 3D keypoints, pixels for 2D).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["MAX_MAGNITUDE", "METRIC_NAMES", "finite_joints", "joint_errors", "mpjpe", "n_mpjpe", "pa_mpjpe", "scores"]

#: Largest absolute coordinate accepted. Squared it is 1e200, so sums of squares and products over
#: thousands of joints stay far below float64's 1.8e308: every error and alignment stays finite.
MAX_MAGNITUDE = 1e100
#: The per-sample metrics, in the order they are reported.
METRIC_NAMES = ("mpjpe", "pa_mpjpe", "n_mpjpe")
#: Samples scored at a time by :func:`scores`: the (block, J, D) temporaries stay in the CPU cache
#: and are reused, where whole-split ones (~12 MB each for the test split) are fresh pages each time.
SCORE_BLOCK = 2048


def _prepare(predicted: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check shapes and predictions; return float64 copies and the valid-joint mask.

    Returns:
        ``(pred, tgt, valid)``: ``pred`` (n, J, D); ``tgt`` (n, J, D) with excluded joints set to 0
        (so sums stay finite; their weight is 0); ``valid`` (n, J) bool, True where the target is finite.
    """
    pred = np.asarray(predicted, dtype=np.float64)
    tgt = np.asarray(target, dtype=np.float64)
    if pred.shape != tgt.shape:
        msg = f"predicted has shape {pred.shape} but target has shape {tgt.shape}; they must be equal"
        raise ValueError(msg)
    if pred.ndim != 3 or pred.shape[2] not in (2, 3) or pred.shape[1] == 0:
        msg = f"poses must have shape (n_samples, n_joints, 2 or 3) with n_joints >= 1, got {pred.shape}"
        raise ValueError(msg)
    # min and max: two passes without temporaries; either is NaN if a coordinate is, and NaN compares False
    if pred.size and not (-MAX_MAGNITUDE <= pred.min() and pred.max() <= MAX_MAGNITUDE):
        finite_pred = np.isfinite(pred)
        if not finite_pred.all():
            sample, joint = np.argwhere(~finite_pred.all(axis=2))[0]
            msg = (
                f"predicted sample {sample} has a non-finite coordinate at joint {joint} "
                f"({pred[sample, joint].tolist()}); predictions must be finite"
            )
            raise ValueError(msg)
        _check_magnitude(pred, "predicted")
    valid = finite_joints(tgt)
    tgt = tgt.copy()  # never the caller's array
    tgt[~valid] = 0.0
    if tgt.size and not (-MAX_MAGNITUDE <= tgt.min() and tgt.max() <= MAX_MAGNITUDE):
        _check_magnitude(tgt, "target")
    return pred, tgt, valid


def finite_joints(points: np.ndarray) -> np.ndarray:
    """(n, J) bool: True where every coordinate of the joint is finite.

    Coordinate by coordinate: ``np.isfinite(points).all(axis=2)`` reduces over an axis of 2 or 3 and
    takes ~6x as long (8 ms for the test split).
    """
    finite = np.isfinite(points)
    valid = finite[..., 0].copy()
    for axis in range(1, points.shape[-1]):
        valid &= finite[..., axis]
    return valid


def _check_magnitude(points: np.ndarray, name: str) -> None:
    """Raise ValueError naming the first sample with a coordinate beyond :data:`MAX_MAGNITUDE`."""
    if points.size == 0:
        return
    big = np.abs(points) > MAX_MAGNITUDE
    if big.any():
        sample, joint, axis = np.argwhere(big)[0]
        msg = (
            f"{name} sample {sample} joint {joint} has coordinate {points[sample, joint, axis]:g}, beyond "
            f"the bound {MAX_MAGNITUDE:g} (larger values overflow the error arithmetic); check its units"
        )
        raise ValueError(msg)


def _errors(aligned: np.ndarray, tgt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Euclidean error per joint, (n, J), NaN where the joint is excluded."""
    return _norms(aligned - tgt, valid)


def _norms(diff: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Euclidean norm of each joint's difference, (n, J), NaN where the joint is excluded."""
    err = np.sqrt(np.einsum("njd,njd->nj", diff, diff))
    err[~valid] = np.nan
    return err


def _sample_mean(err: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean over each sample's valid joints, (n, 1); NaN for a sample with none."""
    count = valid.sum(axis=1, keepdims=True)
    total = np.where(valid, err, 0.0).sum(axis=1, keepdims=True)
    out = np.full(count.shape, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def _per_sample(errors: Callable[..., np.ndarray], predicted: ArrayLike, target: ArrayLike) -> np.ndarray:
    """The metrics' one recipe: check the inputs, per-joint ``errors(pred, tgt, valid)``, mean per sample."""
    pred, tgt, valid = _prepare(predicted, target)
    return _sample_mean(errors(pred, tgt, valid), valid)


def joint_errors(predicted: ArrayLike, target: ArrayLike) -> np.ndarray:
    """Euclidean distance between prediction and target for every joint of every sample.

    Args:
        predicted: (n_samples, n_joints, 2 or 3) predicted positions; must be finite.
        target: same shape; joints that are not finite are excluded.

    Returns:
        (n_samples, n_joints) float64, NaN at excluded joints. Its per-sample mean over the
        non-NaN joints is :func:`mpjpe`; its per-joint mean over samples is the per-joint MPJPE.

    Raises:
        ValueError: if the shapes differ or are not (n, J, 2|3).
        ValueError: if a prediction is not finite (names the first bad sample).
        ValueError: if a coordinate exceeds :data:`MAX_MAGNITUDE` (names the sample).
    """
    pred, tgt, valid = _prepare(predicted, target)
    return _errors(pred, tgt, valid)


def mpjpe(predicted: ArrayLike, target: ArrayLike) -> np.ndarray:
    """Mean per-joint position error: mean Euclidean distance over each sample's valid joints.

    Args:
        predicted: (n_samples, n_joints, 2 or 3) predicted positions; must be finite.
        target: same shape; joints that are not finite are excluded from that sample's mean.

    Returns:
        (n_samples, 1) float64; NaN for a sample with no finite target joint.

    Raises:
        ValueError: if the shapes differ or are not (n, J, 2|3).
        ValueError: if a prediction is not finite (names the first bad sample).
        ValueError: if a coordinate exceeds :data:`MAX_MAGNITUDE` (names the sample).
    """
    return _per_sample(_errors, predicted, target)


def pa_mpjpe(predicted: ArrayLike, target: ArrayLike) -> np.ndarray:
    """MPJPE after the similarity transform that best aligns each predicted pose to its target.

    The transform (scale ``s``, rotation ``R``, translation ``t``) minimises the squared error
    ``sum_j |s p_j R + t - x_j|^2`` over the valid joints (Umeyama / orthogonal Procrustes). ``R`` is a
    proper rotation: when the best orthogonal matrix is a reflection (``det < 0``), the last singular
    direction is flipped, as in VideoPose3D's ``p_mpjpe``, so a mirrored pose keeps its error.
    Works for 2D and 3D poses. Degenerate cases: a sample whose valid predicted joints all coincide
    gets ``s = 0`` (every joint moved to the target centroid).

    Takes, returns and raises as :func:`mpjpe` (``(n_samples, 1)``, each sample's mean error once aligned); a
    target joint that is not finite is left out of the alignment as well as of the mean.
    """
    return _per_sample(_pa_errors, predicted, target)


def _pa_errors(pred: np.ndarray, tgt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-joint errors after the Procrustes alignment of :func:`pa_mpjpe`, (n, J), NaN where excluded."""
    # Weighted sums as batched matrix products (much faster than reductions over the joint axis).
    w = valid.astype(np.float64)  # (n, J): 1 for a valid joint, 0 for an excluded one
    count = np.maximum(w.sum(axis=1), 1.0)[:, None, None]
    mu_p = (w[:, None, :] @ pred) / count  # (n, 1, D) centroids over valid joints
    mu_t = (w[:, None, :] @ tgt) / count
    y = pred - mu_p
    x = tgt - mu_t
    x *= w[:, :, None]  # excluded joints zeroed, so they add nothing to x^T y (a product: no boolean indexing)
    cross = np.swapaxes(x, 1, 2) @ y  # x^T y, (n, D, D)
    del x  # each (n, J, D) temporary is fresh memory to fault in: keep few alive
    if not np.isfinite(cross).all():  # cannot happen within MAX_MAGNITUDE; an inf would hang LAPACK's SVD
        sample = int(np.argwhere(~np.isfinite(cross).all(axis=(1, 2)))[0, 0])
        raise ValueError(f"sample {sample}: alignment overflowed; coordinates are too large to align")
    u, sv, vt = np.linalg.svd(cross)  # x^T y = U S V^T
    v, ut = np.swapaxes(vt, 1, 2), np.swapaxes(u, 1, 2)
    # R = V U^T maximises trace(R x^T y); if it is a reflection, flip the weakest direction instead.
    sign = np.sign(_det(v @ ut))
    v[:, :, -1] *= sign[:, None]
    sv[:, -1] *= sign
    norm_y = np.einsum("nj,nj->n", w, np.einsum("njd,njd->nj", y, y))
    scale = np.zeros_like(norm_y)
    np.divide(sv.sum(axis=1), norm_y, out=scale, where=norm_y > 0)
    aligned = y @ (scale[:, None, None] * (v @ ut))  # scaled as a 3 x 3, not as every joint
    aligned += mu_t
    aligned -= tgt
    return _norms(aligned, valid)


def _det(m: np.ndarray) -> np.ndarray:
    """Determinants of (n, D, D) matrices, D = 2 or 3, written out: LAPACK's per-matrix call costs ~50x more here."""
    if m.shape[-1] == 2:
        return m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    g, h, i = m[:, 2, 0], m[:, 2, 1], m[:, 2, 2]
    return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)


def n_mpjpe(predicted: ArrayLike, target: ArrayLike) -> np.ndarray:
    """MPJPE after scaling each predicted pose by the least-squares scale, without centring.

    ``scale = sum_j p_j . x_j / sum_j |p_j|^2`` over the sample's valid joints: the scale about the
    coordinate origin that minimises the squared error. This is exactly VideoPose3D's ``n_mpjpe``
    (there the means over joints cancel in the ratio; here the sums skip excluded joints). We keep
    it uncentred on purpose: it is the published definition, so numbers stay comparable, and the
    issue asks for "scale only" (centring would add a translation). With absolute coordinates the
    scale pivots about the world origin; give root-relative poses if you want the scale of the body
    alone. A sample whose valid predicted joints are all at the origin gets ``scale = 0``. Arguments, result
    (each sample's mean error once scaled) and errors are those of :func:`mpjpe`; a target joint that is not
    finite is left out of the scale as well as of the mean.
    """
    return _per_sample(_n_errors, predicted, target)


def _n_errors(pred: np.ndarray, tgt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-joint errors after the least-squares scale of :func:`n_mpjpe`, (n, J), NaN where excluded."""
    num = np.einsum("njd,njd->n", pred, tgt)  # excluded targets are 0, so they add nothing
    den = np.einsum("nj,nj->n", valid.astype(np.float64), np.einsum("njd,njd->nj", pred, pred))
    scale = np.zeros_like(den)
    np.divide(num, den, out=scale, where=den > 0)
    diff = scale[:, None, None] * pred
    diff -= tgt
    return _norms(diff, valid)


def scores(predicted: ArrayLike, target: ArrayLike, names: Sequence[str] = METRIC_NAMES
           ) -> tuple[np.ndarray, dict[str, np.ndarray]]:  # fmt: skip
    """Per-joint errors and several per-sample metrics at once: the inputs are checked and prepared once.

    Args:
        predicted, target: as :func:`mpjpe`.
        names: metrics from :data:`METRIC_NAMES`.

    Returns:
        ``(joint_errors, {name: (n_samples,) float64})``: exactly what :func:`joint_errors` and each
        metric (its column) return.

    Raises:
        ValueError: as :func:`mpjpe`.
    """
    pred, tgt, valid = _prepare(predicted, target)
    errors = np.empty(valid.shape)
    results = {name: np.empty(len(pred)) for name in names}
    for start in range(0, len(pred), SCORE_BLOCK):  # small temporaries, reused: no fresh memory to fault in
        block = slice(start, start + SCORE_BLOCK)
        p, t, v = pred[block], tgt[block], valid[block]
        errors[block] = _errors(p, t, v)
        kernels = {"mpjpe": lambda: errors[block], "pa_mpjpe": lambda: _pa_errors(p, t, v),  # noqa: B023
                   "n_mpjpe": lambda: _n_errors(p, t, v)}  # noqa: B023  # fmt: skip
        for name in names:
            results[name][block] = _sample_mean(kernels[name](), v)[:, 0]
    return errors, results
