"""The triangulation as it was before it was vectorised (one batched eigensolve per DLT, all 15 two-view
hypotheses for every point, ``scipy.optimize.least_squares`` for the refinement): the reference the fast
code must equal (to 1e-6 mm), and the baseline of ``bench/bench_triangulate.py``. Kept verbatim in its maths.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from rat7m.geometry import project
from rat7m.triangulate import _SCALE, _projection_matrices, canonical_camera, undistort_points

#: Points per least-squares problem of the refinement (bounds its memory).
_REFINE_CHUNK = 20000


def dlt(normalised: np.ndarray, P: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Batched linear triangulation by one 4x4 eigensolve per point (``np.linalg.eigh``)."""
    x = np.where(weights > 0, normalised[..., 0], 0.0)
    y = np.where(weights > 0, normalised[..., 1], 0.0)
    w2 = weights * weights
    outer = np.einsum("vai,vbj->vabij", P, P)
    basis = np.stack([outer[:, 2, 2], -(outer[:, 2, 0] + outer[:, 0, 2]), -(outer[:, 2, 1] + outer[:, 1, 2]),
                      outer[:, 0, 0] + outer[:, 1, 1]], axis=1)  # fmt: skip
    coefficients = np.stack([w2 * (x * x + y * y), w2 * x, w2 * y, w2], axis=-1)
    gram = (coefficients.reshape(len(x), -1) @ basis.reshape(-1, 16)).reshape(-1, 4, 4)
    _, vectors = np.linalg.eigh(gram)
    h = vectors[:, :, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        points = h[:, :3] / h[:, 3:4] / _SCALE
    points[(weights > 0).sum(axis=1) < 2] = np.nan
    return points


def _reprojection(points: np.ndarray, pixels: np.ndarray, cameras: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:
    projected = np.stack([project(points, canonical_camera(c)) for c in cameras], axis=1)
    return np.linalg.norm(projected - pixels, axis=-1)


def _ransac(normalised, pixels, P, weights, cameras, inlier_px):
    usable = weights > 0
    M, V = usable.shape
    best_count = np.full(M, -1)
    best_cost = np.full(M, np.inf)
    best = usable.copy()
    for a, b in itertools.combinations(range(V), 2):
        pair = np.zeros_like(weights)
        pair[:, [a, b]] = weights[:, [a, b]]
        candidate = dlt(normalised, P, pair)
        with np.errstate(invalid="ignore"):
            error = _reprojection(candidate, pixels, cameras)
            inliers = usable & (error <= inlier_px)
        count = inliers.sum(axis=1)
        cost = np.where(inliers, error, 0.0).sum(axis=1)
        better = (usable[:, a] & usable[:, b]) & ((count > best_count) | ((count == best_count) & (cost < best_cost)))
        best_count[better], best_cost[better], best[better] = count[better], cost[better], inliers[better]
    return np.where((best_count >= 2)[:, None], best, usable)


def _refine(points, pixels, weights, cameras):
    out = points.copy()
    finite = np.flatnonzero(np.isfinite(points).all(axis=1))
    for start in range(0, len(finite), _REFINE_CHUNK):
        todo = finite[start : start + _REFINE_CHUNK]
        out[todo] = _refine_chunk(points[todo], pixels[todo], weights[todo], cameras)
    return out


def _refine_chunk(points, pixels, weights, cameras):
    from scipy.optimize import least_squares
    from scipy.sparse import block_diag

    V = pixels.shape[1]
    sqrt_w = np.sqrt(weights)[..., None]
    target = np.where(sqrt_w > 0, pixels, 0.0)
    cams = [canonical_camera(c) for c in cameras]

    def residuals(flat: np.ndarray) -> np.ndarray:
        X = flat.reshape(-1, 3)
        projected = np.stack([project(X, c) for c in cams], axis=1)
        return (sqrt_w * np.where(sqrt_w > 0, projected - target, 0.0)).ravel()

    sparsity = block_diag([np.ones((2 * V, 3))] * len(points), format="csr")
    fit = least_squares(residuals, points.ravel(), jac_sparsity=sparsity, method="trf",
                        x_scale=1.0, xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=50)  # fmt: skip
    return fit.x.reshape(-1, 3)


def triangulate(pixels: np.ndarray, cameras: Sequence[Mapping[str, np.ndarray]], confidence: np.ndarray | None = None,
                *, robust: bool = False, refine: bool = False, inlier_px: float = 20.0) -> np.ndarray:  # fmt: skip
    """``(..., 3)`` points in mm, as the old ``rat7m.triangulate.triangulate`` computed them."""
    pixels = np.asarray(pixels, dtype=np.float64)
    V = len(cameras)
    lead = pixels.shape[:-2]
    flat = pixels.reshape(-1, V, 2)
    weights = np.ones(flat.shape[:2]) if confidence is None else np.asarray(confidence, np.float64).reshape(-1, V)
    weights = np.where(np.isfinite(flat).all(axis=2) & (weights > 0), weights, 0.0)
    normalised = np.stack([undistort_points(np.ascontiguousarray(flat[:, v]), cameras[v]) for v in range(V)], axis=1)
    P = _projection_matrices(cameras)
    if robust:
        weights = np.where(_ransac(normalised, flat, P, weights, cameras, inlier_px), weights, 0.0)
    points = dlt(normalised, P, weights)
    if refine:
        points = _refine(points, flat, weights, cameras)
    return points.reshape(*lead, 3)
