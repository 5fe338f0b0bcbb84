"""Per-sample figures: the six views of one sample, ground truth and a prediction overlaid.

A 3D prediction (``(N, 20, 3)`` mm, as ``compute_metrics.py`` reads it) is projected through the
table's cameras; a 2D prediction (``.npy`` of shape ``(N, n_cameras, 20, 2)`` pixels, cameras in
the table's ``camera_names`` order) is drawn exactly as given, in 0-based image pixels as every
detector writes them. Everything is drawn in 0-based image coordinates (matplotlib's ``imshow``
puts the top-left pixel's centre at (0, 0)): the table's 2D and the cameras' projections are
converted from MATLAB's 1-based pixels (:mod:`rat7m.pixels`). Images come from the extracted
JPEGs when present, else are decoded straight from the video chunks, else the views are blank.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rat7m import catalogue
from rat7m.errors import BadInputError, Rat7mError
from rat7m.geometry import project
from rat7m.images import read_image
from rat7m.model import Camera, Table
from rat7m.plotting import draw_overlay_2d, overlay_legend_handles
from rat7m.predictions import is_2d_file, read_predictions, read_predictions_2d
from rat7m.untrusted import check_image_paths
from rat7m.video import ChunkIndex, read_frames

__all__ = [
    "Predictions",
    "camera_params",
    "check_rows",
    "choose_samples",
    "frame_images",
    "load_predictions",
    "sample_figure",
    "save_figure",
]

log = logging.getLogger(__name__)

def camera_params(table: Mapping, subject: int, day: int, camera: str) -> Camera:
    """One camera of a recording from a table (:meth:`rat7m.model.Table.cameras`), MATLAB conventions."""
    recording = catalogue.recording_for(subject, day)
    return Table.of(table).cameras(recording, [camera])[camera]


@dataclass(frozen=True)
class Predictions:
    """Predictions of one split: ``points_3d`` ``(N, 20, 3)`` mm, or ``points_2d`` ``{camera: (N, 20, 2)}`` px."""

    points_3d: np.ndarray | None = None
    points_2d: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        if (self.points_3d is None) == (self.points_2d is None):
            raise ValueError("Predictions takes points_3d or points_2d, one of them")

    def __len__(self) -> int:
        if self.points_3d is not None:
            return len(self.points_3d)
        return len(next(iter((self.points_2d or {}).values())))  # points_2d is set (__post_init__)


def load_predictions(path: str | os.PathLike, camera_names: Sequence[str], n_samples: int | None = None) -> Predictions:
    """Read a prediction file with the scorer's own readers (:mod:`rat7m.predictions`): 3D, or 2D (drawn as given).

    A 2D file is any that ``compute_metrics.py --pred2d`` scores (CSV, ``.npz``, or a ``.npy`` of
    ``(N, n_cameras, 20, 2 or 3)``); NaN there is a joint not drawn.

    Raises:
        BadInputError: unreadable file or wrong shape, naming the file (and line).
    """
    path = Path(path)
    if path.is_file() and is_2d_file(path):
        points = read_predictions_2d(path, n_samples, camera_names, allow_missing=True).points
        return Predictions(points_2d={str(c): points[:, i] for i, c in enumerate(camera_names)})
    return Predictions(points_3d=read_predictions(path))


def check_rows(table: Mapping, rows: Sequence[int]) -> None:
    """Check the ``image_path`` of every camera of the rows to be drawn (:func:`rat7m.untrusted.check_image_path`).

    Render only reads these paths, but a table must not make it read a file outside the images
    (``../../.ssh/id_rsa.jpg``): the rule is the one extraction and the exports keep.

    Raises:
        BadInputError: one line naming the row, camera and path.
    """
    columns = table["table"]
    for cam in (str(c) for c in table["camera_names"]):
        paths = np.asarray(columns["image_path"][cam])[list(rows)]
        check_image_paths(paths, rows, cam, images_dir=None)


def frame_images(table: Mapping, row: int, root: str | os.PathLike | None,
                 index: ChunkIndex | None = None) -> dict[str, np.ndarray | None]:  # fmt: skip
    """The RGB image of each camera of table row ``row``: extracted JPEG, else decoded from the chunks, else None."""
    columns = table["table"]
    recording = catalogue.recording_for(int(columns["subject_idx"][row]), int(columns["day_idx"][row]))
    images: dict[str, np.ndarray | None] = {}
    for cam in (str(c) for c in table["camera_names"]):
        image = None
        if root is not None:
            path = Path(root) / str(columns["image_path"][cam][row])
            if path.is_file():
                try:
                    image = read_image(path)
                except BadInputError as exc:
                    log.warning("%s; decoding the frame from the videos instead", exc)
            if image is None and index is not None:
                image = _decode(index, recording, cam, int(columns["frame_idx"][cam][row]))
                image = None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        images[cam] = image
    return images


def _decode(index: ChunkIndex, recording: catalogue.Recording, camera: str, frame: int) -> np.ndarray | None:
    found = index.locate(recording, camera, frame)
    if found is None:
        return None
    chunk, offset = found
    try:
        return next(image for _, image in read_frames(chunk.path, [offset]))
    except Rat7mError as exc:
        log.warning("no image for %s %s frame %d: %s", recording.name, camera, frame, exc)
        return None


def sample_figure(table: Mapping, row: int, predictions: Predictions, pred_row: int,
                  images: Mapping[str, np.ndarray | None] | None = None, label: str = "") -> Any:  # fmt: skip
    """The six views of table row ``row`` with prediction ``pred_row`` overlaid; MPJPE (or 2D error) in the title.

    Returns:
        A matplotlib Figure (Agg canvas attached; no pyplot state), 2 x 3 views and one legend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from rat7m.metrics import mpjpe

    table = Table.of(table)
    columns = table.columns
    recording = catalogue.recording_for(int(columns["subject_idx"][row]), int(columns["day_idx"][row]))
    cameras = table.camera_names
    rig = table.cameras(recording) if predictions.points_3d is not None else {}
    images = images or {}
    truth_3d = np.asarray(columns["3D_keypoints"][row], dtype=np.float64)
    errors_2d = []
    fig = Figure(figsize=(12, 7.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3).ravel()
    for ax, cam in zip(axes, cameras, strict=False):
        truth = table.to_zero_based(columns["2D_keypoints"][cam][row])
        if predictions.points_3d is not None:
            predicted = project(predictions.points_3d[pred_row], rig[cam].to_zero_based())
        else:
            predicted = (predictions.points_2d or {})[cam][pred_row]  # set (__post_init__)
        errors_2d.append(np.linalg.norm(predicted - truth, axis=-1))
        draw_overlay_2d(ax, images.get(cam), truth, predicted)
        ax.set_title(f"{cam} frame {int(columns['frame_idx'][cam][row])}", fontsize=9, parse_math=False)
        _zoom(ax, np.concatenate([truth, predicted]))
    for ax in axes[len(cameras) :]:
        ax.set_axis_off()
    if predictions.points_3d is not None:
        score = mpjpe(predictions.points_3d[pred_row][None], truth_3d[None])[0, 0]
        headline = f"MPJPE {score:.1f} mm"
    else:
        headline = f"mean 2D error {np.nanmean(np.concatenate(errors_2d)):.1f} px"
    fig.suptitle(f"{recording.name}, table row {row}{label}: {headline}", fontsize=11, parse_math=False)
    fig.legend(handles=overlay_legend_handles(), loc="outside lower center", ncols=3, fontsize=9)
    return fig


def _zoom(ax: Any, points: np.ndarray, margin: float = 0.35, least: float = 40.0) -> None:
    """Frame a view on the rat (the arena is mostly floor): the points' box, widened by ``margin``."""
    finite = points[np.isfinite(points).all(axis=1)]
    if not len(finite):
        return
    low, high = finite.min(axis=0), finite.max(axis=0)
    centre, half = (low + high) / 2, max(float((high - low).max()) * (0.5 + margin), least)
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] + half, centre[1] - half)  # y down, as in the image


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a figure atomically; the format (png, pdf, svg) follows the suffix: PDF and SVG are vector."""
    from rat7m.fileio import atomic_write

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".") or "png"
    if fmt not in ("png", "pdf", "svg"):
        raise BadInputError(f"{path}: figures are written as .png, .pdf or .svg")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        fig.savefig(handle, format=fmt, dpi=dpi)
    return path


def choose_samples(n_split: int, *, indices: Sequence[int] = (), worst: int = 0, random: int = 0,
                   scores: np.ndarray | None = None, seed: int = 0) -> list[int]:  # fmt: skip
    """Which samples (indices into the split) to draw: given ones, the worst N by ``scores``, and/or N at random.

    Raises:
        BadInputError: an index outside the split, or ``worst`` asked for without scores.
    """
    chosen = []
    for i in indices:
        if not 0 <= i < n_split:
            raise BadInputError(f"sample {i} is outside the split's {n_split} samples")
        chosen.append(int(i))
    if worst:
        if scores is None:
            raise BadInputError("--worst needs per-sample scores: pass --metrics_dir (compute_metrics --save_dir)")
        finite = np.where(np.isfinite(scores), scores, -np.inf)
        chosen += [int(i) for i in np.argsort(-finite, kind="stable")[:worst]]
    if random:
        rng = np.random.default_rng(seed)
        chosen += [int(i) for i in rng.choice(n_split, size=min(random, n_split), replace=False)]
    return list(dict.fromkeys(chosen))
