"""Benchmark triangulation at the official test-split size: 24536 samples x 20 joints x 6 views.

Side by side, in one process on the same points (distorted, skewed synthetic cameras; 1 px noise):

- ``rat7m.triangulate.triangulate`` (undistortion, batched DLT, reprojection error and view counts),
  and its linear solve alone (``dlt``) on the undistorted coordinates;
- the usual per-point loop: for every (sample, joint), build the 12 x 4 DLT matrix and call
  ``np.linalg.svd`` on it (on the same undistorted coordinates, so only the solve is compared);
- with ``--robust``: the robust mode (two-view hypotheses + least squares) on ``--robust_samples``.

The loop and the batched solve are checked to agree. Run from the repository root:
``python bench/bench_triangulate.py [--repeat 3] [--robust]``.
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
from rat7m.geometry import project
from rat7m.synthetic import make_cameras
from rat7m.triangulate import _projection_matrices, dlt, triangulate, undistort_points

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
    parser.add_argument("--repeat", type=int, default=3, help="runs of the batched code; best is kept")
    parser.add_argument("--robust", action="store_true", help="also time the robust mode")
    parser.add_argument("--robust_samples", type=int, default=2000, help="samples for --robust (default: %(default)s)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    rig = make_cameras(rng, 1328, 1048)
    cameras = [rig[name] for name in catalogue.CAMERA_NAMES]
    X = np.array([-125.0, 55.0, 100.0]) + rng.normal(0, 60, size=(N_TEST, catalogue.N_JOINTS, 3))
    pixels = np.stack([project(X, c) for c in cameras], axis=-2)
    pixels += rng.normal(0, 1.0, pixels.shape)
    n_points = N_TEST * catalogue.N_JOINTS
    print(f"{N_TEST} samples x {catalogue.N_JOINTS} joints x {len(cameras)} views = {n_points} points")

    whole, result = _best(lambda: triangulate(pixels, cameras), args.repeat)
    error = np.linalg.norm(result.points - X, axis=-1).mean()
    print(f"triangulate() whole (undistort + DLT + reprojection): {whole:.2f} s, mean 3D error {error:.3f} mm")

    flat = pixels.reshape(-1, len(cameras), 2)
    normalised = np.stack([undistort_points(np.ascontiguousarray(flat[:, v]), c) for v, c in enumerate(cameras)], 1)
    P = _projection_matrices(cameras)
    weights = np.ones(flat.shape[:2])
    batched, points = _best(lambda: dlt(normalised, P, weights), args.repeat)
    started = time.perf_counter()
    looped = _loop(normalised, P)
    loop_time = time.perf_counter() - started
    agree = np.abs(points - looped).max()
    print(f"DLT solve, batched: {batched:.2f} s; per-point loop of SVDs: {loop_time:.2f} s; "
          f"loop / batched = {loop_time / batched:.1f}x; agree to {agree:.1e} mm")  # fmt: skip

    if args.robust:
        n = args.robust_samples
        robust, res = _best(lambda: triangulate(pixels[:n], cameras, robust=True, refine=True), 1)
        error = np.linalg.norm(res.points - X[:n], axis=-1).mean()
        print(f"robust + refine on {n} samples: {robust:.2f} s ({robust / n * N_TEST:.0f} s scaled to the split), "
              f"mean 3D error {error:.3f} mm")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
