"""SLEAP predictions (``.slp`` with predicted instances, as sleap-nn writes them), read with sleap-io.

Each labelled frame names a video and a ``frame_idx``. On an image sequence (our SLEAP export's
videos, or any list of the table's images) ``frame_idx`` is the position in the video's image list
and the image's path names the (sample, camera); on a chunk video (``s5-d1-camera3-3500.mp4``) it is
the camera's video frame ``3500 + frame_idx``. sleap-io puts (0, 0) at the centre of the top-left
pixel. Missing points are NaN (with score 0); a point's score is the joint's confidence and the
instance's score the ranking score. User-labelled instances (no score) count with confidence 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rat7m import extras
from rat7m.toolpreds.common import (
    Collector2D,
    TableIndex,
    ToolPredictions2D,
    check_confidence,
    check_values,
    joint_order,
    library_read,
)

__all__ = ["FORMAT", "read", "sniff"]

FORMAT = "slp"


def sniff(path: Path, head: bytes) -> bool:
    """An ``.slp`` (an HDF5 file)."""
    return path.suffix.lower() == ".slp"


def read(path: Path, index: TableIndex, target: np.ndarray | None = None) -> ToolPredictions2D:
    """Read the predicted instances of an ``.slp`` and place each at its (sample, camera)."""
    with library_read(path, ".slp file"):
        sio = extras.require("sleap_io", extra="sleap", feature=f"reading {path}", package="sleap-io")
        labels = sio.load_slp(str(path), open_videos=False)
    collector = Collector2D(index, FORMAT)
    orders: dict[int, np.ndarray] = {}
    for frame in labels.labeled_frames:
        video = frame.video
        filenames = video.filename
        frame_idx = int(frame.frame_idx)
        if isinstance(filenames, list):
            name = str(filenames[frame_idx]) if 0 <= frame_idx < len(filenames) else None
            targets = index.lookup_path(name) if name else []
            label = repr(name[-100:]) if name else f"frame {frame_idx} beyond the image list of a video"
        else:
            chunk = index.chunk_video(str(filenames))
            targets = index.lookup_video_frame(chunk, frame_idx) if chunk else []
            label = f"frame {frame_idx} of {str(filenames)[-100:]!r}"
        for instance in frame.instances:
            skeleton = instance.skeleton
            if id(skeleton) not in orders:
                orders[id(skeleton)] = joint_order(skeleton.node_names, f"{path} skeleton {skeleton.name!r}")
            order = orders[id(skeleton)]
            predicted = isinstance(instance, sio.PredictedInstance)
            values = np.asarray(instance.numpy(scores=predicted), dtype=np.float64)[order]
            xy = values[:, :2]
            confidence = values[:, 2] if predicted else np.ones(len(values))
            check_values(xy, f"{path} {label} points")
            check_confidence(np.nan_to_num(confidence), f"{path} {label} point scores")
            score = float(instance.score) if predicted else 1.0
            check_values(np.array([score]), f"{path} {label} instance score", allow_nan=False)
            collector.add(targets, xy, np.where(np.isnan(xy[:, 0]), 0.0, confidence), score, label)
    return collector.finish(target)
