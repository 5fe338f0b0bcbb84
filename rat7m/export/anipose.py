"""anipose / aniposelib calibration: ``<recording>/calibration.toml`` per recording.

Each ``[cam_N]`` holds ``name``, ``size`` ``[width, height]``, ``matrix`` (OpenCV's K: the
transpose of MATLAB's), ``distortions`` ``[k1, k2, p1, p2, k3]``, ``rotation`` (Rodrigues vector
of MATLAB's R transposed) and ``translation``, all from :func:`rat7m.geometry.to_opencv`, whose
principal point is MATLAB's minus 1: anipose's pixels, as OpenCV's, are 0-based.
aniposelib projects with ``cv2.projectPoints``, which ignores skew, so a camera with a non-zero
skew is refused unless ``--allow-skew`` (then written with the skew in ``matrix[0][1]``, and
anipose's pixels are off by up to the skew times the normalised y: the summary says by how much).
Numbers are written with Python's ``repr``: every digit of every float survives.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rat7m import catalogue, geometry
from rat7m.errors import BadInputError
from rat7m.export.common import Selection, Summary

__all__ = ["calibration_text", "export", "size_from_video"]


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(float(value)) if isinstance(value, float) else str(value)


def calibration_text(cameras: dict[str, dict[str, np.ndarray]], sizes: Sequence[tuple[int, int]], *,
                     allow_skew: bool = False) -> str:  # fmt: skip
    """The ``calibration.toml`` of one recording's cameras (canonical spellings), in the given order.

    Raises:
        BadInputError: a camera has skew and ``allow_skew`` is False.
    """
    parts = []
    for i, ((name, params), size) in enumerate(zip(cameras.items(), sizes, strict=True)):
        if geometry.skew(params) and not allow_skew:
            msg = (f"{name} has skew K[1, 0] = {geometry.skew(params):.6g} px, which anipose (cv2.projectPoints) "
                   "ignores; pass --allow-skew to write it anyway (its pixels will be off)")  # fmt: skip
            raise BadInputError(msg)
        K, rvec, tvec, dist = geometry.to_opencv(params, allow_skew=True)
        fields = {
            "name": name,
            "size": [int(size[0]), int(size[1])],
            "matrix": K.tolist(),
            "distortions": dist.reshape(-1).tolist(),
            "rotation": rvec.reshape(-1).tolist(),
            "translation": tvec.reshape(-1).tolist(),
        }
        parts.append(f"[cam_{i}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in fields.items()))
    parts.append("[metadata]\nadjusted = false\nerror = 0.0\n")
    return "\n".join(parts)


def export(selection: Selection, out: Path, *, final: Path, allow_skew: bool = False) -> Summary:
    """Write ``<recording>/calibration.toml`` for every chosen recording into ``out``."""
    summary = Summary("anipose", final)
    worst = 0.0
    for recording in selection.recordings:
        cameras = selection.cameras_of(recording)
        sizes = [selection.sizes[(recording.name, cam)] for cam in cameras]
        text = calibration_text(cameras, sizes, allow_skew=allow_skew)
        folder = out / recording.name
        folder.mkdir(parents=True)
        (folder / "calibration.toml").write_text(text)
        summary.files += 1
        for cam, (_, height) in zip(cameras.values(), sizes, strict=True):
            K = cam["IntrinsicMatrix"].reshape(3, 3)
            worst = max(worst, abs(geometry.skew(cam)) * max(K[2, 1], height - K[2, 1]) / K[1, 1])
    summary.notes.append(f"{len(selection.recordings)} recordings x {len(selection.cameras)} cameras")
    if worst:
        summary.notes.append(f"skew ignored by anipose: up to ~{worst:.2f} px off")
    return summary


def size_from_video(video_dir: Path, recording: catalogue.Recording, camera: str) -> tuple[int, int] | None:
    """Frame size of a camera's first video chunk (for calibrations when no image is extracted)."""
    import cv2

    chunks = sorted(video_dir.glob(f"{recording.name}-camera{catalogue.camera_number(camera)}-*.mp4"))
    if not chunks:
        return None
    capture = cv2.VideoCapture(str(chunks[0]))
    try:
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()
    return (width, height) if width and height else None
