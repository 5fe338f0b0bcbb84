"""Camera geometry in RAT7M's (MATLAB's) conventions: 3D points in mm to distorted pixels.

MATLAB uses row vectors: ``p_cam = X @ R + t``; normalised ``x, y = p_cam[:2] / p_cam[2]``;
radial ``1 + k1 r^2 + k2 r^4 (+ k3 r^6)`` and tangential ``p1, p2`` exactly as MATLAB and OpenCV;
pixels ``[xd, yd, 1] @ K`` with ``K = [[fx, 0, 0], [s, fy, 0], [cx, cy, 1]]`` (the transpose of
OpenCV's matrix). Cameras are the dicts :func:`rat7m.matfile.load_cameras` returns.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def project(points_3d: np.ndarray, camera: Mapping[str, np.ndarray]) -> np.ndarray:
    """Project 3D points through one camera, lens distortion included.

    Args:
        points_3d: ``(..., 3)`` positions in mm (world frame); NaN rows give NaN pixels.
        camera: ``IntrinsicMatrix``, ``RotationMatrix``, ``TranslationVector``,
            ``RadialDistortion`` (k1, k2[, k3]) and ``TangentialDistortion`` (p1, p2).

    Returns:
        ``(..., 2)`` float64 pixel coordinates (x right, y down).
    """
    points = np.asarray(points_3d, dtype=np.float64)
    if points.shape[-1:] != (3,):
        raise ValueError(f"points_3d must have shape (..., 3), got {points.shape}")
    K = np.asarray(camera["IntrinsicMatrix"], dtype=np.float64).reshape(3, 3)
    R = np.asarray(camera["RotationMatrix"], dtype=np.float64).reshape(3, 3)
    t = np.asarray(camera["TranslationVector"], dtype=np.float64).reshape(3)
    radial = np.zeros(3)
    given = np.asarray(camera["RadialDistortion"], dtype=np.float64).reshape(-1)
    radial[: len(given)] = given
    p1, p2 = np.asarray(camera["TangentialDistortion"], dtype=np.float64).reshape(2)

    cam = points.reshape(-1, 3) @ R + t
    with np.errstate(invalid="ignore", divide="ignore"):
        x = cam[:, 0] / cam[:, 2]
        y = cam[:, 1] / cam[:, 2]
    r2 = x * x + y * y
    scale = 1.0 + r2 * (radial[0] + r2 * (radial[1] + r2 * radial[2]))
    xd = x * scale + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * scale + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    u = xd * K[0, 0] + yd * K[1, 0] + K[2, 0]
    v = xd * K[0, 1] + yd * K[1, 1] + K[2, 1]
    return np.stack([u, v], axis=-1).reshape(*points.shape[:-1], 2)
