"""A small six-camera mini-RAT7M table whose 2D keypoints are exact projections of its 3D keypoints.

Cameras are the plausible ring rig (distortion, and skew on some cameras), so scoring and
triangulation tests run on the real camera model, not an identity camera.
"""

from __future__ import annotations

import warnings

import numpy as np

from rat7m import catalogue
from rat7m.geometry import project
from tests.helpers.plausible_rig import make_cameras, make_mocap

#: Cameras given a non-zero skew, and how much (px; the synthetic rig draws -6..2, real ones are ~0.65 px off).
SKEWED = ("Camera2", "Camera5")
SKEW_PX = 4.0


def skewed_rig(seed: int, n_samples: int) -> dict[str, dict[str, np.ndarray]]:
    """The plausible ring rig with a clear skew ``K[1, 0] = SKEW_PX`` on the :data:`SKEWED` cameras."""
    cameras = make_cameras(seed, n_samples, skewed=SKEWED)
    for name in SKEWED:
        cameras[name]["IntrinsicMatrix"][1, 0] = SKEW_PX
    return cameras


def make_table(groups: list[tuple[str, str, int]], seed: int = 0, lost: float = 0.03) -> dict:
    """A valid six-camera table with rows in ``groups`` order (recording, split, n_samples)."""
    cameras: dict = {}
    columns: dict = {"subject_idx": [], "day_idx": [], "train_test": [], "3D_keypoints": []}
    per_cam: dict = {key: {cam: [] for cam in catalogue.CAMERA_NAMES}
                     for key in ("frame_idx", "image_path", "2D_keypoints", "2D_com")}  # fmt: skip
    for k, (name, split, n) in enumerate(groups):
        rec = catalogue.recording_by_name(name)
        rig = skewed_rig(seed + k, n)
        cameras.setdefault(rec.subject, {})[rec.day] = {c: {p: v for p, v in rig[c].items() if p != "frame"}
                                                       for c in catalogue.CAMERA_NAMES}  # fmt: skip
        mocap = make_mocap(n, seed + k, lost=lost)
        columns["subject_idx"].append(np.full(n, rec.subject))
        columns["day_idx"].append(np.full(n, rec.day))
        columns["train_test"].append(np.full(n, split))
        columns["3D_keypoints"].append(mocap)
        for cam in catalogue.CAMERA_NAMES:
            frames = rig[cam]["frame"]
            per_cam["frame_idx"][cam].append(frames)
            per_cam["image_path"][cam].append(np.array(catalogue.image_paths(rec, cam, frames.tolist())))
            keypoints = project(mocap, rig[cam])
            per_cam["2D_keypoints"][cam].append(keypoints)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a sample with every marker lost has no centre
                per_cam["2D_com"][cam].append(np.nanmean(keypoints, axis=1))
    table = {key: np.concatenate(value) for key, value in columns.items()}
    table["subject_idx"] = table["subject_idx"].astype(np.int64)
    table["day_idx"] = table["day_idx"].astype(np.int64)
    for key, value in per_cam.items():
        table[key] = {cam: np.concatenate(parts) for cam, parts in value.items()}
    table["2D_com"] = {cam: np.nan_to_num(v) for cam, v in table["2D_com"].items()}
    return {"cameras": cameras, "camera_names": np.array(catalogue.CAMERA_NAMES), "table": table}
