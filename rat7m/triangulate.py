"""Multi-view triangulation with RAT7M's own (MATLAB-convention) cameras, skew and distortion included.

Each view's pixel is first taken back to ideal normalised coordinates: the inverse of
``[xd, yd, 1] @ K`` exactly (skew included; ``cv2.undistortPoints`` would ignore the skew and be up to
0.65 px off on the real rig), then the radial + tangential distortion is inverted by Newton's method
with the analytic 2x2 Jacobian, which converges to machine precision in a few steps where OpenCV's
fixed-point iteration stalls on strong barrel distortion.

The linear DLT then solves, for every (sample, joint) at once, the homogeneous system of the views
that see it: rows ``w * (x P3 - P1)`` and ``w * (y P3 - P2)`` with ``P = [R.T | t.T]`` (MATLAB stores
``p_cam = X @ R + t``), for all points at once: the smallest singular vector of each
``(2 * n_views, 4)`` matrix, as one batched eigensolve of its 4x4 Gram matrix. Views a joint is not
seen in (NaN pixel, confidence 0 or less) get weight 0, so the batch stays rectangular. World
coordinates are scaled to metres inside the solve so the four columns have comparable size.

Robust mode (optional): every pair of usable views proposes a point (a DLT of two views), the one
that most views agree with (reprojection within ``inlier_px``) wins, and the final point is the DLT
of its inliers. Refinement (optional) minimises the pixel reprojection error of the views used with
``scipy.optimize.least_squares``, one sparse problem for the whole batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from rat7m.errors import BadInputError
from rat7m.geometry import project

#: Camera parameter names as :func:`rat7m.geometry.project` reads them, with the ``.mat`` spellings
#: that tables may keep instead (the official pickle very probably keeps ``rotationMatrix``).
_SPELLINGS: dict[str, tuple[str, ...]] = {
    "IntrinsicMatrix": ("IntrinsicMatrix",),
    "RotationMatrix": ("RotationMatrix", "rotationMatrix"),
    "TranslationVector": ("TranslationVector", "translationVector"),
    "RadialDistortion": ("RadialDistortion",),
    "TangentialDistortion": ("TangentialDistortion",),
}
#: Metres per mm: the DLT solves for the point in metres so its columns are balanced.
_SCALE = 1e-3
#: Newton steps of the undistortion (a cap: it stops once converged).
_NEWTON_STEPS = 12
#: Residual (normalised units, ~3e-9 px) after which one last Newton step is exact to rounding.
_TOLERANCE = 1e-12
#: Points per least-squares problem of the refinement (bounds its memory).
_REFINE_CHUNK = 20000


def camera_param(camera: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """One camera parameter as float64, under either spelling (``RotationMatrix`` / ``rotationMatrix``)."""
    for key in _SPELLINGS[name]:
        if key in camera:
            return np.asarray(camera[key], dtype=np.float64)
    raise KeyError(f"camera has no {' or '.join(_SPELLINGS[name])}")


def canonical_camera(camera: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The camera with the spellings :func:`rat7m.geometry.project` reads, whatever the table used."""
    return {name: camera_param(camera, name) for name in _SPELLINGS}


def undistort_points(pixels: np.ndarray, camera: Mapping[str, np.ndarray]) -> np.ndarray:
    """Ideal normalised image coordinates ``(x, y) = p_cam[:2] / p_cam[2]`` of distorted pixels.

    Args:
        pixels: ``(..., 2)`` pixel coordinates; NaN stays NaN.
        camera: a camera dict (either spelling).

    Returns:
        ``(..., 2)`` float64, such that :func:`rat7m.geometry.project` of any point on the ray gives
        ``pixels`` back (to ~1e-12 px inside the image).
    """
    cam = canonical_camera(camera)
    K = cam["IntrinsicMatrix"].reshape(3, 3)
    radial = np.zeros(3)
    given = cam["RadialDistortion"].reshape(-1)
    radial[: len(given)] = given
    k1, k2, k3 = radial
    p1, p2 = cam["TangentialDistortion"].reshape(2)
    uv = np.asarray(pixels, dtype=np.float64)
    # [u, v, 1] = [xd, yd, 1] @ K  =>  v = fy yd + cy,  u = fx xd + s yd + cx (skew s = K[1, 0])
    yd = (uv[..., 1] - K[2, 1]) / K[1, 1]
    xd = (uv[..., 0] - K[2, 0] - K[1, 0] * yd) / K[0, 0]
    x, y = xd.copy(), yd.copy()
    with np.errstate(invalid="ignore", over="ignore"):
        for _ in range(_NEWTON_STEPS):
            x2, y2, xy = x * x, y * y, x * y
            r2 = x2 + y2
            s = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
            ds = k1 + r2 * (2.0 * k2 + 3.0 * k3 * r2)  # d s / d r2
            fx = x * s + 2.0 * p1 * xy + p2 * (r2 + 2.0 * x2) - xd
            fy = y * s + p1 * (r2 + 2.0 * y2) + 2.0 * p2 * xy - yd
            a = s + 2.0 * x2 * ds + 2.0 * p1 * y + 6.0 * p2 * x
            b = 2.0 * xy * ds + 2.0 * p1 * x + 2.0 * p2 * y
            d = s + 2.0 * y2 * ds + 6.0 * p1 * y + 2.0 * p2 * x
            det = a * d - b * b  # the Jacobian [[a, b], [b, d]] is symmetric
            x = x - (d * fx - b * fy) / det
            y = y - (a * fy - b * fx) / det
            if not np.nanmax(np.abs(fx) + np.abs(fy), initial=0.0) > _TOLERANCE:
                break  # this step took a residual below 1e-12 to ~1e-24: converged (4 steps on real lenses)
    return np.stack([x, y], axis=-1)


@dataclass(frozen=True)
class Triangulation:
    """Triangulated points with their diagnostics; leading shape ``S`` as the input's minus the view axis."""

    points: np.ndarray  # S + (3,) float64 mm, NaN where fewer than two views were usable
    reprojection_error: np.ndarray  # S float64, mean pixel distance over the views used
    views_used: np.ndarray  # S int, views the final point was solved from


def _projection_matrices(cameras: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:
    """``(V, 3, 4)`` column-vector projection ``[R.T | t]`` per view, world coordinates in metres."""
    out = []
    for camera in cameras:
        R = camera_param(camera, "RotationMatrix").reshape(3, 3)
        t = camera_param(camera, "TranslationVector").reshape(3)
        out.append(np.concatenate([R.T / _SCALE, t[:, None]], axis=1))
    return np.stack(out)


def dlt(normalised: np.ndarray, P: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Batched linear triangulation from ideal normalised coordinates.

    Args:
        normalised: ``(M, V, 2)`` undistorted normalised coordinates (NaN allowed where weight is 0).
        P: ``(V, 3, 4)`` projection matrices (see :func:`_projection_matrices`).
        weights: ``(M, V)`` row weights, 0 for a view not to use.

    Returns:
        ``(M, 3)`` points in mm; NaN where fewer than two views have a positive weight.
    """
    x = np.where(weights > 0, normalised[..., 0], 0.0)
    y = np.where(weights > 0, normalised[..., 1], 0.0)
    w2 = weights * weights
    # A.T A = sum over views of w^2 [(x^2 + y^2) P3 P3' - x (P3 P1' + P1 P3') - y (P3 P2' + P2 P3') + P1 P1' + P2 P2']:
    # four coefficients per view times constant 4x4 matrices, i.e. one (M, 4V) @ (4V, 16) product
    outer = np.einsum("vai,vbj->vabij", P, P)  # (V, 3, 3, 4, 4): P_a P_b'
    basis = np.stack([outer[:, 2, 2], -(outer[:, 2, 0] + outer[:, 0, 2]), -(outer[:, 2, 1] + outer[:, 1, 2]),
                      outer[:, 0, 0] + outer[:, 1, 1]], axis=1)  # fmt: skip
    coefficients = np.stack([w2 * (x * x + y * y), w2 * x, w2 * y, w2], axis=-1)  # (M, V, 4)
    gram = (coefficients.reshape(len(x), -1) @ basis.reshape(-1, 16)).reshape(-1, 4, 4)
    # the right singular vector of A's smallest singular value is the eigenvector of A.T A's smallest
    # eigenvalue: one batched 4x4 symmetric eigensolve is ~3x faster than a batched SVD of A, and with
    # the columns balanced (metres) it keeps ~1e-12 relative precision on exact data
    _, vectors = np.linalg.eigh(gram)
    h = vectors[:, :, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        points = h[:, :3] / h[:, 3:4] / _SCALE
    points[(weights > 0).sum(axis=1) < 2] = np.nan
    return points


def _reprojection(points: np.ndarray, pixels: np.ndarray, cameras: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:
    """``(M, V)`` pixel distance between each view's projection of ``points`` (M, 3) and ``pixels`` (M, V, 2)."""
    projected = np.stack([project(points, canonical_camera(c)) for c in cameras], axis=1)
    return np.linalg.norm(projected - pixels, axis=-1)


def _ransac(normalised: np.ndarray, pixels: np.ndarray, P: np.ndarray, weights: np.ndarray,
            cameras: Sequence[Mapping[str, np.ndarray]], inlier_px: float) -> np.ndarray:  # fmt: skip
    """Inlier mask ``(M, V)``: the views that agree with the best two-view hypothesis of each point.

    Every pair of usable views is a hypothesis (at most 15 for six cameras, so all are tried rather than
    sampled); the one with the most inliers wins, ties broken by the smaller summed inlier error.
    """
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
    # no hypothesis with two inliers (every view disagrees): keep all usable views
    return np.where((best_count >= 2)[:, None], best, usable)


def _refine(points: np.ndarray, pixels: np.ndarray, weights: np.ndarray,
            cameras: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:  # fmt: skip
    """Minimise the weighted pixel reprojection error of every point over its views.

    The points are independent, so each chunk of :data:`_REFINE_CHUNK` points is one sparse problem
    (block-diagonal Jacobian: scipy needs only three residual evaluations per Jacobian).
    """
    out = points.copy()
    finite = np.flatnonzero(np.isfinite(points).all(axis=1))
    for start in range(0, len(finite), _REFINE_CHUNK):
        todo = finite[start : start + _REFINE_CHUNK]
        out[todo] = _refine_chunk(points[todo], pixels[todo], weights[todo], cameras)
    return out


def _refine_chunk(points: np.ndarray, pixels: np.ndarray, weights: np.ndarray,
                  cameras: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:  # fmt: skip
    from scipy.optimize import least_squares
    from scipy.sparse import block_diag

    todo = np.arange(len(points))
    V = pixels.shape[1]
    sqrt_w = np.sqrt(weights[todo])[..., None]  # (m, V, 1)
    target = np.where(sqrt_w > 0, pixels[todo], 0.0)
    cams = [canonical_camera(c) for c in cameras]

    def residuals(flat: np.ndarray) -> np.ndarray:
        X = flat.reshape(-1, 3)
        projected = np.stack([project(X, c) for c in cams], axis=1)
        return (sqrt_w * np.where(sqrt_w > 0, projected - target, 0.0)).ravel()

    sparsity = block_diag([np.ones((2 * V, 3))] * len(todo), format="csr")
    fit = least_squares(residuals, points[todo].ravel(), jac_sparsity=sparsity, method="trf",
                        x_scale=1.0, xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=50)  # fmt: skip
    return fit.x.reshape(-1, 3)


def triangulate(pixels: np.ndarray, cameras: Sequence[Mapping[str, np.ndarray]], confidence: np.ndarray | None = None,
                *, robust: bool = False, refine: bool = False, inlier_px: float = 20.0) -> Triangulation:  # fmt: skip
    """Triangulate 2D keypoints seen by several calibrated views.

    Args:
        pixels: ``(..., V, 2)`` distorted pixel coordinates, view axis second to last; NaN where a
            view does not see the point.
        cameras: the V camera dicts (MATLAB conventions, either spelling), in view-axis order.
        confidence: ``(..., V)`` weights (e.g. detector confidences); a view with 0 or less is not
            used. None: every finite view weighs 1.
        robust: choose the views by two-view hypotheses (see the module docstring) before solving.
        refine: polish each point by nonlinear least squares on the pixel reprojection error.
        inlier_px: robust mode's agreement radius in pixels.

    Returns:
        The points (mm), their mean reprojection error (px) over the views used, and how many views.
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    V = len(cameras)
    if pixels.ndim < 2 or pixels.shape[-2:] != (V, 2):
        raise ValueError(f"pixels must have shape (..., {V}, 2) for {V} cameras, got {pixels.shape}")
    lead = pixels.shape[:-2]
    flat = pixels.reshape(-1, V, 2)
    if confidence is None:
        weights = np.ones(flat.shape[:2])
    else:
        weights = np.asarray(confidence, dtype=np.float64).reshape(-1, V)
        if weights.shape != flat.shape[:2]:
            raise ValueError(f"confidence must have shape {(*lead, V)}, got {np.shape(confidence)}")
    weights = np.where(np.isfinite(flat).all(axis=2) & (weights > 0), weights, 0.0)
    normalised = np.stack([undistort_points(np.ascontiguousarray(flat[:, v]), cameras[v]) for v in range(V)], axis=1)
    P = _projection_matrices(cameras)
    if robust:
        weights = np.where(_ransac(normalised, flat, P, weights, cameras, inlier_px), weights, 0.0)
    points = dlt(normalised, P, weights)
    if refine:
        points = _refine(points, flat, weights, cameras)
    used = weights > 0
    with np.errstate(invalid="ignore"):
        error = _reprojection(points, flat, cameras)
    count = used.sum(axis=1)
    mean_error = np.full(len(flat), np.nan)
    np.divide(np.where(used, error, 0.0).sum(axis=1), count, out=mean_error, where=count >= 2)
    return Triangulation(points.reshape(*lead, 3), mean_error.reshape(lead), count.reshape(lead))


def triangulate_rows(pixels: np.ndarray, table: Mapping, rows: np.ndarray, confidence: np.ndarray | None = None,
                     **options: object) -> Triangulation:  # fmt: skip
    """Triangulate predictions for ``rows`` of a mini-RAT7M table, each recording with its own cameras.

    Args:
        pixels: ``(N, V, J, 2)`` for the N rows, views in ``table["camera_names"]`` order.
        table: a table from :func:`rat7m.table.load_annotation`.
        rows: ``(N,)`` row indices into the table.
        confidence: ``(N, V, J)`` or None.
        **options: passed to :func:`triangulate` (``robust``, ``refine``, ``inlier_px``).

    Returns:
        A :class:`Triangulation` with leading shape ``(N, J)``.
    """
    from rat7m.table import cameras_of  # the table module is heavy; only this function needs it

    pixels = np.asarray(pixels, dtype=np.float64)
    names = [str(n) for n in table["camera_names"]]
    N, _, J = pixels.shape[:3]
    points = np.full((N, J, 3), np.nan)
    error = np.full((N, J), np.nan)
    used = np.zeros((N, J), dtype=np.int64)
    subjects = np.asarray(table["table"]["subject_idx"])[rows]
    days = np.asarray(table["table"]["day_idx"])[rows]
    for subject, day in sorted(set(zip(subjects.tolist(), days.tolist(), strict=True))):
        mine = np.flatnonzero((subjects == subject) & (days == day))
        try:
            recording_cameras = cameras_of(table, int(subject), int(day))
        except KeyError as exc:
            raise BadInputError(f"annotation table: {exc.args[0]}") from None
        cams = [recording_cameras[name] for name in names]
        conf = None if confidence is None else np.moveaxis(np.asarray(confidence)[mine], 1, 2)
        result = triangulate(np.moveaxis(pixels[mine], 1, 2), cams, conf, **options)
        points[mine], error[mine], used[mine] = result.points, result.reprojection_error, result.views_used
    return Triangulation(points, error, used)
