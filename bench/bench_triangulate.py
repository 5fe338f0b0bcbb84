"""Benchmark triangulation at the official test-split size: 24536 samples x 20 joints x 6 views.

Side by side, in one process on the same points (distorted, skewed synthetic cameras; 1 px noise, and
``--outliers`` of the views, 10% by default, replaced by a uniformly random pixel as a detector's misses):

- the linear DLT, ``rat7m.triangulate.triangulate`` whole (undistortion, DLT, reprojection error), against
  the implementation before vectorisation (``tests/helpers/triangulate_reference.py``: one LAPACK eigensolve a
  point), and the linear solve alone against it and (``--loop``) against a per-point loop of SVDs;
- the robust mode (``--robust``: two-view hypotheses + least-squares refinement) on the whole split,
  against the old implementation (15 hypotheses for every point, ``scipy.optimize.least_squares``) on
  ``--old_samples`` samples, scaled to the split, and the linear DLT of the same run.

Ours and the old code are checked to agree. Run from the repository root:
``python bench/bench_triangulate.py [--repeat 3] [--robust] [--loop]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import time

import numpy as np

from rat7m import catalogue
from rat7m.demo.synthetic import make_cameras
from rat7m.geometry import project
from rat7m.triangulate import _projection_matrices, dlt, triangulate, undistort_points
from tests.helpers import triangulate_reference as old

#: The official test split: s5-d1 10445 + s5-d2 14091 samples.
N_TEST = 24536


def _best(function, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def _loop(normalised: np.ndarray, P: np.ndarray) -> np.ndarray:
    """One SVD per point: the straightforward DLT."""
    out = np.empty((len(normalised), 3))
    for m, xy in enumerate(normalised):
        A = np.concatenate([xy[:, :1] * P[:, 2] - P[:, 0], xy[:, 1:] * P[:, 2] - P[:, 1]])
        h = np.linalg.svd(A)[2][-1]
        out[m] = h[:3] / h[3] * 1e3  # P is in metres (see rat7m.triangulate)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each fast step; the best is kept")
    parser.add_argument("--robust", action="store_true", help="also time the robust mode")
    parser.add_argument("--old_samples", type=int, default=2000,
                        help="samples for the old robust code (default: %(default)s)")
    parser.add_argument("--outliers", type=float, default=0.1,
                        help="share of views replaced by garbage (default: %(default)s)")
    parser.add_argument("--loop", action="store_true", help="also time the per-point loop of SVDs (~30 s)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    rig = make_cameras(rng, 1328, 1048)
    cameras = [rig[name] for name in catalogue.CAMERA_NAMES]
    X = np.array([-125.0, 55.0, 100.0]) + rng.normal(0, 60, size=(N_TEST, catalogue.N_JOINTS, 3))
    pixels = np.stack([project(X, c) for c in cameras], axis=-2)
    pixels += rng.normal(0, 1.0, pixels.shape)
    wrong = rng.random(pixels.shape[:3]) < args.outliers
    pixels[wrong] = rng.uniform([0, 0], [1328, 1048], size=(int(wrong.sum()), 2))
    n_points = N_TEST * catalogue.N_JOINTS
    print(f"{N_TEST} samples x {catalogue.N_JOINTS} joints x {len(cameras)} views = {n_points} points, "
          f"{args.outliers:.0%} of the views garbage")  # fmt: skip

    whole, result = _best(lambda: triangulate(pixels, cameras), args.repeat)
    before, previous = _best(lambda: old.triangulate(pixels, cameras), 1)
    agree = np.nanmax(np.abs(result.points - previous))
    print(f"linear DLT, whole: ours {whole:.2f} s, old {before:.2f} s, old / ours = {before / whole:.2f}x; "
          f"agree to {agree:.1e} mm")  # fmt: skip

    flat = pixels.reshape(-1, len(cameras), 2)
    normalised = np.stack([undistort_points(np.ascontiguousarray(flat[:, v]), c) for v, c in enumerate(cameras)], 1)
    P = _projection_matrices(cameras)
    weights = np.ones(flat.shape[:2])
    solve, points = _best(lambda: dlt(normalised, P, weights), args.repeat)
    solve_old, points_old = _best(lambda: old.dlt(normalised, P, weights), args.repeat)
    print(f"DLT solve alone: ours {solve:.2f} s, old (LAPACK eigh per point) {solve_old:.2f} s, "
          f"old / ours = {solve_old / solve:.2f}x; agree to {np.abs(points - points_old).max():.1e} mm")  # fmt: skip
    if args.loop:
        started = time.perf_counter()
        looped = _loop(normalised, P)
        loop_time = time.perf_counter() - started
        print(f"per-point loop of SVDs: {loop_time:.2f} s, loop / ours = {loop_time / solve:.1f}x; "
              f"agree to {np.abs(points - looped).max():.1e} mm")  # fmt: skip

    if args.robust:
        fast, res = _best(lambda: triangulate(pixels, cameras, robust=True, refine=True), 1)
        error = np.linalg.norm(res.points - X, axis=-1).mean()
        linear_error = np.linalg.norm(result.points - X, axis=-1).mean()
        n = args.old_samples
        slow, res_old = _best(lambda: old.triangulate(pixels[:n], cameras, robust=True, refine=True), 1)
        scaled = slow / n * N_TEST
        agree = np.abs(res.points[:n] - res_old).max()
        print(f"robust + refine, whole split: ours {fast:.2f} s ({fast / whole:.1f}x the linear DLT), old "
              f"{slow:.2f} s on {n} samples = {scaled:.0f} s scaled to the split, old / ours = {scaled / fast:.1f}x; "
              f"agree to {agree:.1e} mm; mean 3D error {error:.3f} mm (linear DLT: {linear_error:.3f} mm)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
