"""Where the synthetic pictures' joint markers really are: centroids of the white dots, measured in the image.

A test of a pixel convention must not trust the code under test to say where a marker is drawn:
it measures. The synthetic frames draw each joint as a white anti-aliased disc
(:func:`rat7m.demo.synthetic.draw_skeleton`) over a dull floor and coloured bones; the centroid of
"whiteness" (the smallest of the three channels above :data:`THRESHOLD`) around a marker is its
centre in 0-based image coordinates (OpenCV's and NumPy's: pixel ``(i, j)`` has its centre at
``x = j, y = i``). Only isolated markers are measured (no other joint within :data:`CLEARANCE`
radii), away from the borders and the barcode strip, so neighbours cannot pull a centroid.
"""

from __future__ import annotations

import numpy as np

from rat7m.barcode import barcode_height
from rat7m.demo.synthetic import joint_radius

#: Whiteness below this (smallest channel, 0-255) is floor or bone: a white disc is ~255, the floor ~100-140,
#: the palest bone colour 153.
THRESHOLD = 175.0
#: A marker is measured only when no other joint of the picture is closer than this many disc radii.
CLEARANCE = 3.5


def centroids(image_bgr: np.ndarray, near: np.ndarray, others: np.ndarray | None = None) -> np.ndarray:
    """Measured centres ``(n, 2)`` (0-based px) of the white discs near ``near`` ``(n, 2)``; NaN where unmeasurable.

    Args:
        image_bgr: the picture ``(H, W, 3)``.
        near: roughly where each disc is (0-based px, within about a pixel); NaN for none.
        others: every joint drawn in the picture (for the isolation test); default ``near``.
    """
    height, width = image_bgr.shape[:2]
    radius = joint_radius(width)
    half = radius + 3
    whiteness = np.clip(image_bgr.min(axis=2).astype(np.float64) - THRESHOLD, 0, None)
    near = np.asarray(near, dtype=np.float64).reshape(-1, 2)
    others = near if others is None else np.asarray(others, dtype=np.float64).reshape(-1, 2)
    others = others[np.isfinite(others).all(axis=1)]
    out = np.full_like(near, np.nan)
    top = barcode_height(width) + half + 2
    for k, (x, y) in enumerate(near):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        if not (half + 1 <= x < width - half - 1 and top <= y < height - half - 1):
            continue
        distances = np.hypot(others[:, 0] - x, others[:, 1] - y)
        if np.sort(distances)[1:2].min(initial=np.inf) < CLEARANCE * radius + 2:
            continue
        cx, cy = round(x), round(y)
        patch = whiteness[cy - half : cy + half + 1, cx - half : cx + half + 1]
        total = patch.sum()
        if total <= 0:
            continue
        offsets = np.arange(-half, half + 1, dtype=np.float64)
        out[k] = cx + (patch.sum(axis=0) @ offsets) / total, cy + (patch.sum(axis=1) @ offsets) / total
    return out
