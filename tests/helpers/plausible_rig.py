"""Random but plausible RAT7M recordings for the table and geometry tests.

Six cameras on a ring around the arena, looking at its centre, with focal lengths, principal
points and distortion in the ranges of the real s1-d1 calibration; a rat-sized cloud of 20
markers wandering over the arena, some markers lost (NaN); video frames at half the mocap rate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rat7m import catalogue
from rat7m.matfile import save_recording

#: Where the markers are, roughly (mm): the real rig's arena.
ARENA_CENTRE = np.array([-125.0, 55.0, 100.0])


def look_at_camera(position: np.ndarray, rng: np.random.Generator, skew: float = 0.0) -> dict[str, np.ndarray]:
    """A camera at ``position`` looking at the arena centre, in MATLAB conventions."""
    forward = ARENA_CENTRE - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation_cv = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    fx = rng.uniform(2000, 4100)
    K_cv = np.array([[fx, skew, rng.uniform(400, 920)], [0, fx * rng.uniform(0.995, 1.005), rng.uniform(500, 830)],
                     [0, 0, 1]])  # fmt: skip
    return {
        "IntrinsicMatrix": K_cv.T,
        "RotationMatrix": rotation_cv.T,
        "TranslationVector": (-(rotation_cv @ position)).reshape(1, 3),
        "TangentialDistortion": rng.normal(0, 1e-3, size=(1, 2)),
        "RadialDistortion": np.array([[rng.uniform(-0.25, 0.1), rng.uniform(-0.3, 0.3), rng.uniform(-0.5, 0.5)]]),
    }


def make_cameras(seed: int = 0, n_samples: int = 0, skewed: tuple[str, ...] = ()) -> dict[str, dict[str, np.ndarray]]:
    """Six cameras on a ring (radius ~2 m, ~1 m up); ``frame`` maps at half the mocap rate."""
    rng = np.random.default_rng(seed)
    cameras = {}
    for i, cam in enumerate(catalogue.CAMERA_NAMES):
        angle = 2 * np.pi * i / len(catalogue.CAMERA_NAMES) + rng.uniform(-0.2, 0.2)
        position = ARENA_CENTRE + np.array([2000 * np.cos(angle), 2000 * np.sin(angle), rng.uniform(800, 1200)])
        cameras[cam] = look_at_camera(position, rng, skew=rng.uniform(0.3, 1.0) if cam in skewed else 0.0)
        cameras[cam]["frame"] = np.arange(n_samples, dtype=np.int64) // 2 + i % 2
    return cameras


def make_mocap(n_samples: int, seed: int = 0, lost: float = 0.05) -> np.ndarray:
    """``(n_samples, 20, 3)`` mm: a wandering body, each marker lost with probability ``lost``."""
    rng = np.random.default_rng(seed)
    body = rng.normal(0, 30, size=(catalogue.N_JOINTS, 3))
    path = ARENA_CENTRE + np.cumsum(rng.normal(0, 2, size=(n_samples, 3)), axis=0).clip(-100, 100)
    mocap = path[:, None, :] + body[None] + rng.normal(0, 2, size=(n_samples, catalogue.N_JOINTS, 3))
    mocap[rng.random((n_samples, catalogue.N_JOINTS)) < lost] = np.nan
    if n_samples > 3:
        mocap[3] = np.nan  # one sample with every marker lost
    return mocap


def write_recordings(root: Path, sizes: dict[str, int]) -> list[Path]:
    """Write ``<root>/annotations/mocap-sS-dD.mat`` for ``{recording name: n_samples}``."""
    paths = []
    for k, (name, n) in enumerate(sizes.items()):
        rec = catalogue.recording_by_name(name)
        path = root / catalogue.ANNOTATION_DIR / catalogue.mocap_file_name(rec)
        save_recording(path, f"Subject{rec.subject}-Day{rec.day}", make_cameras(k, n), make_mocap(n, k))
        paths.append(path)
    return paths
