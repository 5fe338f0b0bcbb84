"""Multi-view triangulation with RAT7M's own (MATLAB-convention) cameras, skew and distortion included.

Each view's pixel is first taken back to ideal normalised coordinates: the inverse of
``[xd, yd, 1] @ K`` exactly (skew included; ``cv2.undistortPoints`` would ignore the skew and be up to
0.65 px off on the real rig), then the radial + tangential distortion is inverted by Newton's method
with the analytic 2x2 Jacobian, which converges to machine precision in a few steps where OpenCV's
fixed-point iteration stalls on strong barrel distortion. A view whose pixel no lens maps (the
undistorted ray beyond ~89.99 degrees off axis, or not finite: e.g. a coordinate of 1e300 px) is
left out, as a view that does not see the point.

The linear DLT then solves, for every (sample, joint) at once, the homogeneous system of the views
that see it: rows ``w * (x P3 - P1)`` and ``w * (y P3 - P2)`` with ``P = [R.T | t.T]`` (MATLAB stores
``p_cam = X @ R + t``). Its solution is the eigenvector of the smallest eigenvalue of the 4x4 Gram
matrix ``G = [[B, b], [b', c]]``; with ``h = (X, 1)`` that is ``(B - l I) X = -b`` where ``l`` is the
eigenvalue, so it is found by a few Rayleigh-quotient steps on 3x3 systems solved in closed form,
elementwise over all points (about twice as fast as LAPACK's eigensolver called once a point). The
answer is accepted only if ``B - l I`` is positive definite (then ``l`` is the smallest eigenvalue);
the rare point that fails falls back to ``np.linalg.eigh``. Views a joint is not seen in get weight 0,
confidences are scaled per point so the largest is 1 (a confidence of 1e200 is just "sure"), the
Gram matrix is summed entry by entry from the rows (no BLAS), and world coordinates are in metres
inside the solve so the columns have comparable size.

Degenerate geometry gives NaN, never an exception: fewer than two views, rays nearly parallel (the
smallest eigenvalue of ``B`` below 1e-12 of its trace: identical or collinear cameras), or a point
at or behind a camera that sees it. :attr:`Triangulation.degenerate` marks the points of the last
two kinds.

Robust mode (optional): every pair of usable views proposes a point (a DLT of two views), the one
that most views agree with (reprojection within ``inlier_px``) wins, ties broken by the smaller
summed error, and the final point is the DLT of its inliers. Once a hypothesis has every usable view
as an inlier no later one can change the outcome, so only the points still in doubt try the next
pair. Refinement (optional) minimises the weighted pixel reprojection error of the views used by
Levenberg-Marquardt on the three coordinates of every point at once (analytic Jacobian of the
distorted projection, 3x3 normal equations in closed form), to the minimum
``scipy.optimize.least_squares`` approaches (at an equal or lower cost where scipy stops short).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rat7m.errors import BadInputError
from rat7m.geometry import check_camera
from rat7m.model import Camera, CameraLike, Table, canonical

__all__ = ["Triangulation", "canonical_camera", "dlt", "triangulate", "triangulate_rows", "undistort_points"]

#: Metres per mm: the DLT solves for the point in metres so its columns are balanced.
_SCALE = 1e-3
#: Newton steps of the undistortion (a cap: it stops once converged).
_NEWTON_STEPS = 12
#: Residual (normalised units, ~3e-9 px) after which one last Newton step is exact to rounding.
_TOLERANCE = 1e-12
#: Largest undistorted normalised coordinate of a usable view: tan(89.99 degrees), beyond any lens.
_MAX_NORMALISED = 5730.0
#: Smallest eigenvalue of the DLT's 3x3 block, relative to its trace, below which the rays are parallel.
_DEGENERATE = 1e-12
#: Rayleigh-quotient steps of the DLT (a cap: converged points stop; 2-3 on real data).
_RAYLEIGH_STEPS = 8
#: Levenberg-Marquardt iterations of the refinement (a cap: converged points stop; 3-5 on real data).
_REFINE_STEPS = 50
def canonical_camera(camera: CameraLike) -> dict[str, np.ndarray]:
    """The camera's parameters (float64) under their canonical names, whatever spelling the table used.

    Kept for callers of the dict API (:func:`rat7m.model.canonical`); the module works on :class:`rat7m.model.Camera`.
    """
    return canonical(camera.to_dict() if isinstance(camera, Camera) else camera)


def undistort_points(pixels: np.ndarray, camera: CameraLike) -> np.ndarray:
    """Ideal normalised image coordinates ``(x, y) = p_cam[:2] / p_cam[2]`` of distorted pixels.

    Args:
        pixels: ``(..., 2)`` pixel coordinates; NaN stays NaN.
        camera: a :class:`rat7m.model.Camera` or a camera dict (either spelling).

    Returns:
        ``(..., 2)`` float64, such that :func:`rat7m.geometry.project` of any point on the ray gives
        ``pixels`` back (to ~1e-12 px inside the image).
    """
    cam = Camera.of(camera)
    K = cam.K
    k1, k2, k3, p1, p2 = cam.distortion
    uv = np.asarray(pixels, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # absurd pixels: NaN, left out later
        # [u, v, 1] = [xd, yd, 1] @ K  =>  v = fy yd + cy,  u = fx xd + s yd + cx (skew s = K[1, 0])
        yd = (uv[..., 1] - K[2, 1]) / K[1, 1]
        xd = (uv[..., 0] - K[2, 0] - K[1, 0] * yd) / K[0, 0]
        x, y = xd.copy(), yd.copy()
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

    points: np.ndarray  # S + (3,) float64 mm, NaN where fewer than two views were usable or `degenerate`
    reprojection_error: np.ndarray  # S float64, mean pixel distance over the views used (NaN where no point)
    views_used: np.ndarray  # S int, views the final point was solved from
    degenerate: np.ndarray  # S bool: two views or more, but parallel rays or a point at or behind a camera


def _projection_matrices(cameras: Sequence[CameraLike]) -> np.ndarray:
    """``(V, 3, 4)`` column-vector projection ``[R.T | t]`` per view, world coordinates in metres."""
    out = []
    for camera in map(Camera.of, cameras):
        out.append(np.concatenate([camera.R.T / _SCALE, camera.t[:, None]], axis=1))
    return np.stack(out)


def _solve_symmetric(m: Sequence[np.ndarray], r: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Solve the symmetric 3x3 systems ``[[a, b, c], [b, d, e], [c, e, f]] x = r`` elementwise (Cramer).

    Everything is a list of ``(M,)`` component arrays (numpy is slow along a length-3 axis). Returns the
    solution's three components and the determinant; a singular system gives inf or NaN, never an exception.
    """
    a, b, c, d, e, f = m
    A00, A01, A02 = d * f - e * e, c * e - b * f, b * e - c * d
    A11, A12, A22 = a * f - c * c, b * c - a * e, a * d - b * b
    det = a * A00 + b * A01 + c * A02
    inverse = 1.0 / det
    x = [(A00 * r[0] + A01 * r[1] + A02 * r[2]) * inverse, (A01 * r[0] + A11 * r[1] + A12 * r[2]) * inverse,
         (A02 * r[0] + A12 * r[1] + A22 * r[2]) * inverse]  # fmt: skip
    return x, det


def _row_sum(values: np.ndarray) -> np.ndarray:
    """``values.sum(axis=1)`` of an ``(M, V)`` array, column by column (numpy reduces a short axis slowly)."""
    total = values[:, 0].astype(np.result_type(values.dtype, np.int64))
    for v in range(1, values.shape[1]):
        total += values[:, v]
    return total


def _largest(values: Sequence[np.ndarray]) -> np.ndarray:
    """Elementwise largest absolute value of the components."""
    return np.maximum(np.maximum(np.abs(values[0]), np.abs(values[1])), np.abs(values[2]))


#: The upper triangle of a symmetric 4x4 matrix, in the order :func:`_point_from_gram` takes it.
_UPPER = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2), (0, 3), (1, 3), (2, 3), (3, 3))


def _point_from_gram(entries: Sequence[np.ndarray]) -> np.ndarray:
    """``(M, 3)`` point (metres) of the smallest eigenvector ``(X, 1)`` of each 4x4 Gram matrix; NaN if degenerate.

    ``entries``: the ten ``(M,)`` arrays of its upper triangle, in :data:`_UPPER` order.
    """
    B, g, c = list(entries[:6]), [-entries[6], -entries[7], -entries[8]], entries[9]
    trace = B[0] + B[3] + B[5]
    minors = B[3] * B[5] - B[4] ** 2 + B[0] * B[5] - B[2] ** 2 + B[0] * B[3] - B[1] ** 2  # principal 2x2 minors
    X, det = _solve_symmetric(B, g)  # the shift-free start: the inhomogeneous least-squares point
    # smallest eigenvalue of B ~ det / minors: below 1e-12 of the trace, the rays do not meet at one point
    todo = np.flatnonzero(np.isfinite(det) & (det > _DEGENERATE * trace * minors) & (trace > 0))
    if len(todo) < len(c):  # (gathers cost as much as arithmetic: only when needed)
        B, g, c, X = [m[todo] for m in B], [v[todo] for v in g], c[todo], [x[todo] for x in X]
    rayleigh = np.zeros(len(todo))
    active = np.arange(len(todo))
    for _ in range(_RAYLEIGH_STEPS):  # each step: the Rayleigh quotient of (X, 1), then (B - l I) X = -b again
        every = len(active) == len(todo)
        x0, x1, x2 = X if every else (x[active] for x in X)
        Ba, ga = (B, g) if every else ([m[active] for m in B], [v[active] for v in g])
        BX = (Ba[0] * x0 + Ba[1] * x1 + Ba[2] * x2, Ba[1] * x0 + Ba[3] * x1 + Ba[4] * x2,
              Ba[2] * x0 + Ba[4] * x1 + Ba[5] * x2)  # fmt: skip
        quotient = (x0 * (BX[0] - 2 * ga[0]) + x1 * (BX[1] - 2 * ga[1]) + x2 * (BX[2] - 2 * ga[2]) + (
            c if every else c[active])) / (
            1.0 + x0 * x0 + x1 * x1 + x2 * x2)  # fmt: skip
        new, _ = _solve_symmetric((Ba[0] - quotient, Ba[1], Ba[2], Ba[3] - quotient, Ba[4], Ba[5] - quotient), ga)
        change = _largest([new[0] - x0, new[1] - x1, new[2] - x2])
        if every:
            X, rayleigh = new, quotient
        else:
            for k in range(3):
                X[k][active] = new[k]
            rayleigh[active] = quotient
        # the iteration converges at least quadratically: a change below 1e-8 m leaves an error of ~1e-16 m
        # (this step's result is kept); NaN counts as not converged, and is checked below
        active = active[~(change <= 1e-8 * (1.0 + _largest(new)))]
        if len(active) == 0:
            break
    # B - l I positive definite (Sylvester) means l is below every eigenvalue of B, hence the smallest of G
    a, b, c_, d, e, f = B[0] - rayleigh, B[1], B[2], B[3] - rayleigh, B[4], B[5] - rayleigh
    shifted_det = a * (d * f - e * e) + b * (c_ * e - b * f) + c_ * (b * e - c_ * d)
    smallest = (a > 0) & (a * d - b * b > 0) & (shifted_det > 0) & np.isfinite(_largest(X))
    out = np.full((len(entries[9]), 3), np.nan)
    out[todo[smallest]] = np.stack(X, axis=1)[smallest]
    check = todo[~smallest]
    if len(check):  # did not converge, or converged to another eigenvector: LAPACK decides (rare)
        gram = np.empty((len(check), 4, 4))
        for value, (i, j) in zip(entries, _UPPER, strict=True):
            gram[:, i, j] = gram[:, j, i] = value[check]
        finite = np.isfinite(gram).all(axis=(1, 2))
        gram, check = gram[finite], check[finite]
        _, vectors = np.linalg.eigh(gram)
        h = vectors[:, :, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[check] = h[:, :3] / h[:, 3:4]
    return out


def dlt(normalised: np.ndarray, P: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Batched linear triangulation from ideal normalised coordinates.

    Args:
        normalised: ``(M, V, 2)`` undistorted normalised coordinates (anything where weight is 0).
        P: ``(V, 3, 4)`` projection matrices (see :func:`_projection_matrices`).
        weights: ``(M, V)`` finite row weights of at most ~1e100 (see :func:`triangulate`), 0 for a view not
            to use.

    Returns:
        ``(M, 3)`` points in mm; NaN where fewer than two views have a positive weight or the views'
        rays are (nearly) parallel.
    """
    use = weights > 0
    # A.T A summed over the two rows w (x P3 - P1) and w (y P3 - P2) of every view, entry by entry: ten (M,)
    # arrays, no (M, 4, 4) stack and no BLAS (2 rows x 4 columns x 10 entries a view)
    entries = [np.zeros(len(weights)) for _ in _UPPER]
    for v in range(P.shape[0]):
        w = np.where(use[:, v], weights[:, v], 0.0)
        for axis in range(2):
            coordinate = np.where(use[:, v], normalised[:, v, axis], 0.0)
            row = [w * (coordinate * P[v, 2, k] - P[v, axis, k]) for k in range(4)]
            for entry, (i, j) in zip(entries, _UPPER, strict=True):
                entry += row[i] * row[j]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        points = _point_from_gram(entries) / _SCALE
    points[_row_sum(use) < 2] = np.nan
    return points


class _Camera:
    """One camera's parameters as plain floats, for projections written out component by component.

    Points are handled as three ``(M,)`` arrays: numpy is slow along a length-3 axis, and a 3x3 matrix
    product would go through BLAS, whose threads only contend on a shared machine. The pixels equal
    :func:`rat7m.geometry.project`'s to rounding (~1e-13 px).
    """

    def __init__(self, camera: CameraLike) -> None:
        camera = Camera.of(camera)
        self.R = camera.R.tolist()
        self.t = camera.t.tolist()
        K = camera.K
        self.fx, self.s, self.cx, self.fy0, self.fy, self.cy = K[0, 0], K[1, 0], K[2, 0], K[0, 1], K[1, 1], K[2, 1]
        self.k1, self.k2, self.k3, self.p1, self.p2 = camera.distortion

    def pixels(self, X: Sequence[np.ndarray], jacobian: bool = False) -> tuple[np.ndarray, ...]:
        """``(px, py)`` of the points ``X`` (three arrays, mm); with ``jacobian`` also d px / dX, d py / dX (3 + 3)."""
        R, t = self.R, self.t
        x = X[0] * R[0][0] + X[1] * R[1][0] + X[2] * R[2][0] + t[0]  # p_cam = X @ R + t
        y = X[0] * R[0][1] + X[1] * R[1][1] + X[2] * R[2][1] + t[1]
        z = X[0] * R[0][2] + X[1] * R[1][2] + X[2] * R[2][2] + t[2]
        inverse = 1.0 / z
        u, v = x * inverse, y * inverse
        u2, v2, uv = u * u, v * v, u * v
        r2 = u2 + v2
        s = 1.0 + r2 * (self.k1 + r2 * (self.k2 + r2 * self.k3))
        xd = u * s + 2.0 * self.p1 * uv + self.p2 * (r2 + 2.0 * u2)
        yd = v * s + self.p1 * (r2 + 2.0 * v2) + 2.0 * self.p2 * uv
        px = xd * self.fx + yd * self.s + self.cx
        py = xd * self.fy0 + yd * self.fy + self.cy
        if not jacobian:
            return px, py
        ds = self.k1 + r2 * (2.0 * self.k2 + 3.0 * self.k3 * r2)  # d s / d r2
        xu = s + 2.0 * u2 * ds + 2.0 * self.p1 * v + 6.0 * self.p2 * u  # d xd / du (the undistortion's Jacobian)
        cross = 2.0 * uv * ds + 2.0 * self.p1 * u + 2.0 * self.p2 * v  # d xd / dv = d yd / du
        yv = s + 2.0 * v2 * ds + 6.0 * self.p1 * v + 2.0 * self.p2 * u
        out = [px, py]
        for first, second in ((self.fx, self.s), (self.fy0, self.fy)):
            du, dv = (first * xu + second * cross) * inverse, (first * cross + second * yv) * inverse
            dz = -(du * u + dv * v)  # d(x/z)/dX = (R[:, 0] - u R[:, 2]) / z, and the same for y
            out += [du * R[j][0] + dv * R[j][1] + dz * R[j][2] for j in range(3)]
        return tuple(out)


def _reprojection(points: np.ndarray, pixels: np.ndarray, cameras: Sequence[_Camera]) -> np.ndarray:
    """``(M, V)`` pixel distance between each view's projection of ``points`` (M, 3) and ``pixels`` (M, V, 2)."""
    X = [np.ascontiguousarray(points[:, k]) for k in range(3)]
    out = np.empty(pixels.shape[:2])
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for v, camera in enumerate(cameras):
            px, py = camera.pixels(X)
            out[:, v] = np.hypot(px - pixels[:, v, 0], py - pixels[:, v, 1])
    return out


def _ransac(normalised: np.ndarray, pixels: np.ndarray, P: np.ndarray, weights: np.ndarray,
            cameras: Sequence[_Camera], inlier_px: float) -> np.ndarray:  # fmt: skip
    """Inlier mask ``(M, V)``: the views that agree with the best two-view hypothesis of each point.

    Every pair of usable views is a hypothesis (at most 15 for six cameras, so all are tried rather than
    sampled); the one with the most inliers wins, ties broken by the smaller summed inlier error. A point
    whose best hypothesis already has all its usable views as inliers is settled: a later hypothesis
    can at most tie, with the same inliers.
    """
    usable = weights > 0
    M, V = usable.shape
    n_usable = _row_sum(usable)
    best_count = np.full(M, -1)
    best_cost = np.full(M, np.inf)
    best = usable.copy()
    open_ = np.flatnonzero(n_usable >= 2)
    for a, b in itertools.combinations(range(V), 2):
        todo = open_[usable[open_, a] & usable[open_, b]]
        if len(todo) == 0:
            continue
        pair = [a, b]
        candidate = dlt(normalised[np.ix_(todo, pair)], P[pair], weights[np.ix_(todo, pair)])
        error = _reprojection(candidate, pixels[todo], cameras)
        inliers = usable[todo] & (error <= inlier_px)
        count = _row_sum(inliers)
        cost = _row_sum(np.where(inliers, error, 0.0))
        better = (count > best_count[todo]) | ((count == best_count[todo]) & (cost < best_cost[todo]))
        won = todo[better]
        best_count[won], best_cost[won], best[won] = count[better], cost[better], inliers[better]
        open_ = open_[best_count[open_] < n_usable[open_]]
    # no hypothesis with two inliers (every view disagrees): keep all usable views
    return np.where((best_count >= 2)[:, None], best, usable)


def _refine(points: np.ndarray, pixels: np.ndarray, weights: np.ndarray, cameras: Sequence[_Camera]) -> np.ndarray:
    """Minimise the weighted pixel reprojection error of every point over its views (Levenberg-Marquardt).

    The points are independent: each iteration builds every active point's 3x3 normal equations from
    the analytic Jacobian and solves them in closed form; a step is kept only if it does not raise that
    point's cost beyond rounding (else its damping grows tenfold). A point stops when its step is below
    1e-10 of its size (1e-8 mm; Gauss-Newton converges quadratically, so the point is then exact to
    rounding), or its damping passes 1e16.
    """
    out = points.copy()
    todo = np.flatnonzero(np.isfinite(_largest(points.T)) & (_row_sum(weights > 0) >= 2))
    X = [points[todo, k].copy() for k in range(3)]
    root = np.sqrt(weights[todo])
    target = np.where(root[..., None] > 0, pixels[todo], 0.0)
    V = len(cameras)

    def residuals(X: Sequence[np.ndarray], rows: np.ndarray, jacobian: bool = False) -> tuple[list, ...]:
        """Weighted residuals per view ``[(rx, ry)]`` and, with ``jacobian``, the normal equations and gradient."""
        normal = [0.0] * 6  # N00, N01, N02, N11, N12, N22
        gradient = [0.0] * 3
        pairs = []
        for v, camera in enumerate(cameras):
            out = camera.pixels(X, jacobian)
            w = root[rows, v]
            rx, ry = w * (out[0] - target[rows, v, 0]), w * (out[1] - target[rows, v, 1])
            rx, ry = np.where(w > 0, rx, 0.0), np.where(w > 0, ry, 0.0)
            pairs.append((rx, ry))
            if jacobian:
                jx, jy = [w * d for d in out[2:5]], [w * d for d in out[5:8]]
                for k, (i, j) in enumerate(((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))):
                    normal[k] = normal[k] + jx[i] * jx[j] + jy[i] * jy[j]
                for i in range(3):
                    gradient[i] = gradient[i] + jx[i] * rx + jy[i] * ry
        return pairs, normal, gradient

    def total(pairs: list) -> np.ndarray:
        return sum(rx * rx + ry * ry for rx, ry in pairs)

    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        cost = total(residuals(X, np.arange(len(todo)))[0]) if V else np.zeros(len(todo))
        damping = np.full(len(todo), 1e-3)
        active = np.flatnonzero(np.isfinite(cost))
        for _ in range(_REFINE_STEPS):
            if len(active) == 0:
                break
            here = [x[active] for x in X]
            _, normal, gradient = residuals(here, active, jacobian=True)
            lam = 1.0 + damping[active]  # Marquardt: the diagonal scaled by (1 + damping)
            system = (normal[0] * lam, normal[1], normal[2], normal[3] * lam, normal[4], normal[5] * lam)
            step, _ = _solve_symmetric(system, [-g for g in gradient])
            # a nearly undamped step below 1e-10 of the point (1e-8 mm at 100 mm) is converged: take it, no trial
            done = (_largest(step) <= 1e-10 * (1e-12 + _largest(here))) & (damping[active] <= 1.0)
            for k in range(3):
                X[k][active[done]] = here[k][done] + step[k][done]
            active, here, step = active[~done], [x[~done] for x in here], [d[~done] for d in step]
            trial = [x + d for x, d in zip(here, step, strict=True)]
            cost_trial = total(residuals(trial, active)[0])
            # a rise within rounding of the cost is no rise: near the minimum the cost cannot tell steps apart
            keep = np.isfinite(cost_trial) & (cost_trial <= cost[active] * (1.0 + 1e-13))
            kept = active[keep]
            for k in range(3):
                X[k][kept] = trial[k][keep]
            cost[kept] = cost_trial[keep]
            damping[active] = np.where(keep, np.maximum(damping[active] / 10.0, 1e-12), damping[active] * 10.0)
            active = active[damping[active] <= 1e16]
    out[todo] = np.stack(X, axis=1)
    return out


def _at_or_behind(points: np.ndarray, used: np.ndarray, cameras: Sequence[Camera]) -> np.ndarray:
    """``(M,)`` True where a finite point is at (within 1e-9 of the rig's scale) or behind a camera that uses it."""
    out = np.zeros(len(points), dtype=bool)
    for v, camera in enumerate(cameras):
        t = camera.t
        with np.errstate(invalid="ignore"):
            depth = points @ camera.R[:, 2] + t[2]
            scale = _largest(points.T) + np.abs(t).max()
            out |= used[:, v] & (depth <= 1e-9 * scale)
    return out


def _weights(confidence: np.ndarray | None, flat: np.ndarray) -> np.ndarray:
    """``(M, V)`` view weights: the confidences scaled per point so the largest is 1; 0 for an unusable view."""
    weights: np.ndarray  # (M, V), whatever shape numpy's stubs guess from np.ones
    if confidence is None:
        weights = np.ones(flat.shape[:2])
    else:
        weights = np.asarray(confidence, dtype=np.float64).reshape(flat.shape[:2])
    seen = np.isfinite(flat[..., 0]) & np.isfinite(flat[..., 1]) & np.isfinite(weights) & (weights > 0)
    weights = np.where(seen, weights, 0.0)
    largest = np.maximum.reduce([weights[:, v] for v in range(weights.shape[1])], initial=0.0)[:, None]
    weights = np.divide(weights, largest, out=np.zeros_like(weights), where=largest > 0)
    return np.where(weights > 1e-100, weights, 0.0)  # squared, anything smaller would vanish: not used


def _as_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def triangulate(pixels: np.ndarray, cameras: Sequence[CameraLike], confidence: np.ndarray | None = None,
                *, robust: bool = False, refine: bool = False, inlier_px: float = 20.0) -> Triangulation:  # fmt: skip
    """Triangulate 2D keypoints seen by several calibrated views.

    Args:
        pixels: ``(..., V, 2)`` distorted pixel coordinates, view axis second to last; NaN where a
            view does not see the point.
        cameras: the V cameras (:class:`rat7m.model.Camera` or dicts under either spelling; MATLAB
            conventions), in view-axis order; each is checked (:func:`rat7m.geometry.check_camera`).
        confidence: ``(..., V)`` weights (e.g. detector confidences); a view with 0 or less, or not
            finite, is not used. Only their ratios within a point matter (1e200 is just "sure"; a view
            below 1e-100 of the point's largest is not used). None: every finite view weighs 1.
        robust: choose the views by two-view hypotheses (see the module docstring) before solving.
        refine: polish each point by nonlinear least squares on the pixel reprojection error.
        inlier_px: robust mode's agreement radius in pixels (a positive number).

    Returns:
        The points (mm), their mean reprojection error (px) over the views used, how many views, and
        which points are degenerate (NaN although two views or more saw them).

    Raises:
        ValueError: wrong shapes, or ``inlier_px`` not a positive number.
        BadInputError: a camera the model cannot use (naming it as "camera <view number>").
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    V = len(cameras)
    if pixels.ndim < 2 or pixels.shape[-2:] != (V, 2):
        raise ValueError(f"pixels must have shape (..., {V}, 2) for {V} cameras, got {pixels.shape}")
    if not 0 < _as_float(inlier_px) < float("inf"):
        raise ValueError(f"inlier_px must be a positive number of pixels, got {inlier_px!r}")
    lead = pixels.shape[:-2]
    flat = pixels.reshape(-1, V, 2)
    if confidence is not None and np.shape(confidence) != (*lead, V):
        raise ValueError(f"confidence must have shape {(*lead, V)}, got {np.shape(confidence)}")
    for v, camera in enumerate(cameras):
        check_camera(camera, f"camera {v + 1}")
    cams = [Camera.of(c) for c in cameras]
    projectors = [_Camera(c) for c in cams]
    weights = _weights(confidence, flat)
    normalised = np.stack([undistort_points(np.ascontiguousarray(flat[:, v]), cams[v]) for v in range(V)], axis=1)
    with np.errstate(invalid="ignore"):
        mappable = (np.abs(normalised[..., 0]) <= _MAX_NORMALISED) & (np.abs(normalised[..., 1]) <= _MAX_NORMALISED)
    weights = np.where(mappable, weights, 0.0)
    P = _projection_matrices(cams)
    if robust:
        weights = np.where(_ransac(normalised, flat, P, weights, projectors, _as_float(inlier_px)), weights, 0.0)
    points = dlt(normalised, P, weights)
    if refine:
        points = _refine(points, flat, weights, projectors)
    used = weights > 0
    count = _row_sum(used)
    points[_at_or_behind(points, used, cams)] = np.nan
    degenerate = (count >= 2) & ~np.isfinite(_largest(points.T))
    error = _reprojection(points, flat, projectors)
    mean_error = np.full(len(flat), np.nan)
    np.divide(_row_sum(np.where(used, error, 0.0)), count, out=mean_error, where=count >= 2)
    return Triangulation(points.reshape(*lead, 3), mean_error.reshape(lead), count.reshape(lead),
                         degenerate.reshape(lead))  # fmt: skip


def triangulate_rows(pixels: np.ndarray, table: Mapping, rows: np.ndarray, confidence: np.ndarray | None = None,
                     **options: Any) -> Triangulation:  # fmt: skip
    """Triangulate predictions for ``rows`` of a mini-RAT7M table, each recording with its own cameras.

    Args:
        pixels: ``(N, V, J, 2)`` for the N rows, views in ``table["camera_names"]`` order.
        table: a :class:`rat7m.model.Table` (:func:`rat7m.table.load_annotation`) or its dict.
        rows: ``(N,)`` row indices into the table.
        confidence: ``(N, V, J)`` or None.
        **options: passed to :func:`triangulate` (``robust``, ``refine``, ``inlier_px``).

    Returns:
        A :class:`Triangulation` with leading shape ``(N, J)``.

    Raises:
        BadInputError: a row of no RAT7M recording, a recording without cameras, or a camera the model
            cannot use (one line naming the recording and the camera).
    """
    table = Table.of(table)
    pixels = np.asarray(pixels, dtype=np.float64)
    rows = np.asarray(rows)
    N, _, J = pixels.shape[:3]
    points = np.full((N, J, 3), np.nan)
    error = np.full((N, J), np.nan)
    used = np.zeros((N, J), dtype=np.int64)
    degenerate = np.zeros((N, J), dtype=bool)
    covered = np.zeros(N, dtype=bool)
    for recording, mask in table.recording_masks(rows):
        mine = np.flatnonzero(mask)
        covered |= mask
        try:
            raw = table.raw_cameras(recording.subject, recording.day)
            raw = {name: raw[name] for name in table.camera_names}
        except KeyError as exc:
            raise BadInputError(f"annotation table: {exc.args[0]}") from None
        for name, camera in raw.items():  # before Camera.from_dict: its message names what is wrong
            check_camera(camera, f"annotation table: cameras of {recording.name}, {name}")
        cams = {name: Camera.from_dict(camera) for name, camera in raw.items()}
        conf = None if confidence is None else np.moveaxis(np.asarray(confidence)[mine], 1, 2)
        result = triangulate(np.moveaxis(pixels[mine], 1, 2), list(cams.values()), conf, **options)
        points[mine], error[mine], used[mine] = result.points, result.reprojection_error, result.views_used
        degenerate[mine] = result.degenerate
    if not covered.all():
        raise BadInputError(f"annotation table: row {int(rows[~covered][0])} is of no RAT7M recording")
    return Triangulation(points, error, used, degenerate)
