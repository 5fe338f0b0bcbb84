"""Build a mini-RAT7M annotation table from the raw ``mocap-s{S}-d{D}.mat`` files.

The official table comes as a pickle from a Google Drive link; this builds an equivalent one, in
exactly its layout (see :mod:`rat7m.table`), from the motion capture and cameras every RAT7M
download has. What goes in is explicit and reproducible: mocap sample ``i`` of a recording
becomes a table row when ``i % stride == 0`` and, with ``complete_only``, all 20 markers of
sample ``i`` are finite. Rows keep recording order, then sample order.

Dtypes, chosen to be what a researcher expects and what numpy makes by default:
``subject_idx``, ``day_idx``, ``frame_idx``: int64; ``2D_keypoints``, ``2D_com``, ``3D_keypoints``
and camera parameters: float64 (pixels, mm; NaN where a marker was lost); ``train_test``,
``image_path``, ``camera_names``: numpy unicode (``<U``) arrays.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rat7m import catalogue
from rat7m.cli import command
from rat7m.doctor import hint
from rat7m.errors import BadInputError
from rat7m.geometry import project
from rat7m.matfile import MocapRecording, load_recording
from rat7m.model import Table, camera_param, with_both_spellings
from rat7m.table import CAMERA_PARAM_SIZES, validate_annotation

__all__ = [
    "build_table",
    "centre_of_markers",
    "find_mocap_files",
    "format_summary",
    "parse_split",
    "select_samples",
    "summarize",
]

log = logging.getLogger(__name__)


def parse_split(text: str | None) -> dict[str, str]:
    """Parse ``--split``: ``official`` (or None) or overrides such as ``s4-d1=test,s5-d2=train``.

    Returns:
        ``{recording name: "train" | "test"}`` for all seven recordings: the official split
        with the named recordings overridden.

    Raises:
        BadInputError: an unknown recording or split name.
    """
    split = {rec.name: rec.split for rec in catalogue.RECORDINGS}
    if text is None or text.strip().lower() in ("", "official"):
        return split
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        value = value.strip().lower()
        if not sep or value not in catalogue.SPLITS:
            msg = f"--split: {item.strip()!r} is not RECORDING=train or RECORDING=test (e.g. 's4-d1=test')"
            raise BadInputError(msg)
        try:
            split[catalogue.recording_by_name(name.strip()).name] = value
        except KeyError as exc:
            raise BadInputError(f"--split: {exc.args[0]}") from None
    return split


def select_samples(mocap: np.ndarray, *, stride: int = 1, complete_only: bool = False) -> np.ndarray:
    """Indices of the mocap samples that become table rows.

    Args:
        mocap: ``(n_samples, 20, 3)`` positions.
        stride: keep sample ``i`` only when ``i % stride == 0``.
        complete_only: also require all 20 markers of the sample to be finite.

    Returns:
        ``(n_rows,)`` int64 sample indices, increasing.
    """
    if stride < 1:
        raise BadInputError(f"stride must be a positive integer, got {stride}")
    indices = np.arange(0, len(mocap), stride, dtype=np.int64)
    if complete_only:
        indices = indices[np.isfinite(mocap[indices]).all(axis=(1, 2))]
    return indices


def centre_of_markers(points_3d: np.ndarray) -> np.ndarray:
    """Per-sample mean of the finite markers: ``(..., 20, 3)`` -> ``(..., 3)``, NaN if none is finite."""
    finite = np.isfinite(points_3d).all(axis=-1, keepdims=True)
    count = finite.sum(axis=-2)
    total = np.where(finite, points_3d, 0.0).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _table_camera(params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A camera as stored in the table: its parameters (float64), without the per-sample frame map.

    Under the ``.mat``'s spellings and, in memory, the documentation's too (same arrays).
    """
    return with_both_spellings({key: np.array(camera_param(params, key), dtype=np.float64)
                                for key in CAMERA_PARAM_SIZES})  # fmt: skip


@dataclass(frozen=True)
class _Part:
    """The rows one recording contributes."""

    recording: catalogue.Recording
    split: str
    cameras: dict[str, dict[str, np.ndarray]]
    points_3d: np.ndarray
    frame_idx: dict[str, np.ndarray]
    keypoints_2d: dict[str, np.ndarray]
    com_2d: dict[str, np.ndarray]


def _rows_of(mocap_rec: MocapRecording, rec: catalogue.Recording, split: str, stride: int,
             complete_only: bool) -> _Part:  # fmt: skip
    indices = select_samples(mocap_rec.mocap, stride=stride, complete_only=complete_only)
    points = mocap_rec.mocap[indices]
    centre = centre_of_markers(points)
    frame_idx, keypoints_2d, com_2d = {}, {}, {}
    for cam in catalogue.CAMERA_NAMES:
        params = mocap_rec.cameras[cam]
        frame_idx[cam] = np.asarray(params["frame"], dtype=np.int64)[indices]
        keypoints_2d[cam] = project(points, params)
        com_2d[cam] = project(centre, params)
    cameras = {cam: _table_camera(mocap_rec.cameras[cam]) for cam in catalogue.CAMERA_NAMES}
    return _Part(rec, split, cameras, points, frame_idx, keypoints_2d, com_2d)


def _recordings(
    items: Iterable[MocapRecording | str | os.PathLike],
) -> Iterable[tuple[MocapRecording, catalogue.Recording]]:
    """Yield recordings and which RAT7M recording each is, loading paths one at a time (a full recording's
    mocap is large)."""
    for item in items:
        mocap_rec = item if isinstance(item, MocapRecording) else load_recording(item)
        if mocap_rec.recording is None:
            msg = f"recording {mocap_rec.name!r}: cannot tell which RAT7M recording it is (name it mocap-sS-dD.mat)"
            raise BadInputError(msg)
        yield mocap_rec, mocap_rec.recording


def build_table(
    recordings: Sequence[MocapRecording | str | os.PathLike],
    *,
    stride: int = 1,
    complete_only: bool = False,
    split: Mapping[str, str] | None = None,
    progress: bool = False,
) -> dict:
    """Build a mini-RAT7M table from motion capture and cameras.

    Each selected mocap sample (see :func:`select_samples`) becomes a row: ``3D_keypoints`` are its
    markers (mm, NaN where lost); for every camera, ``frame_idx`` comes from that camera's
    ``frame`` map, ``2D_keypoints`` is the projection of the markers (:func:`rat7m.geometry.project`,
    lens distortion included), ``2D_com`` is the projection of the per-sample mean of the finite
    3D markers (NaN if none is finite), and ``image_path`` is ``catalogue.image_path``.

    Args:
        recordings: :class:`~rat7m.matfile.MocapRecording` objects or paths of ``mocap-*.mat`` files.
        stride: keep mocap sample ``i`` only when ``i % stride == 0``.
        complete_only: keep only samples with all 20 markers finite.
        split: ``{recording name: "train" | "test"}``; default the official split (catalogue).
        progress: show a progress bar over recordings.

    Returns:
        The table dict, in the layout of :mod:`rat7m.table` (dtypes in this module's docstring).

    Raises:
        BadInputError: an unreadable file, an unknown or repeated recording, a bad stride or split.
    """
    split = dict(split) if split is not None else parse_split(None)
    parts: list[_Part] = []
    seen: set[str] = set()
    from tqdm import tqdm  # here: not paid by --check or a refusal

    items = tqdm(recordings, desc="recordings", unit="rec", disable=not progress)
    for mocap_rec, rec in _recordings(items):
        if rec.name in seen:
            raise BadInputError(f"recording {rec.name} is given twice")
        seen.add(rec.name)
        if split.get(rec.name) not in catalogue.SPLITS:
            raise BadInputError(f"split: no 'train'/'test' for recording {rec.name}")
        part = _rows_of(mocap_rec, rec, split[rec.name], stride, complete_only)
        log.debug("%s: %d of %d samples (%s)", rec.name, len(part.points_3d), mocap_rec.n_samples, part.split)
        parts.append(part)
    if not parts:
        raise BadInputError("no recordings to build a table from")
    return _assemble(parts)


def _assemble(parts: list[_Part]) -> dict:
    cams = catalogue.CAMERA_NAMES
    sizes = [len(p.points_3d) for p in parts]
    cameras: dict[int, dict[int, dict]] = {}
    for p in parts:
        cameras.setdefault(p.recording.subject, {})[p.recording.day] = p.cameras
    image_path = {
        cam: np.array([path for p in parts for path in catalogue.image_paths(p.recording, cam, p.frame_idx[cam])])
        for cam in cams
    }
    table = {
        "subject_idx": np.repeat([p.recording.subject for p in parts], sizes).astype(np.int64),
        "day_idx": np.repeat([p.recording.day for p in parts], sizes).astype(np.int64),
        "train_test": np.repeat(np.array([p.split for p in parts], dtype="<U5"), sizes),
        "frame_idx": {cam: np.concatenate([p.frame_idx[cam] for p in parts]) for cam in cams},
        "image_path": image_path,
        "2D_keypoints": {cam: np.concatenate([p.keypoints_2d[cam] for p in parts]) for cam in cams},
        "2D_com": {cam: np.concatenate([p.com_2d[cam] for p in parts]) for cam in cams},
        "3D_keypoints": np.concatenate([p.points_3d for p in parts]).astype(np.float64),
    }
    result = {"cameras": cameras, "camera_names": np.array(cams, dtype=str), "table": table}
    return validate_annotation(result, "built table")


def summarize(table: Mapping) -> list[tuple[str, str, int]]:
    """Rows per recording and split: ``[(recording name, split, count), ...]`` in catalogue order."""
    table = Table.of(table)
    rows = []
    split_all = table.split_of()  # the column as text once, not per recording
    for rec, mine in table.recordings():
        split = split_all[mine]
        for name in catalogue.SPLITS:
            count = int(np.count_nonzero(split == name))
            if count:
                rows.append((rec.name, name, count))
    return rows


def format_summary(table: Mapping) -> str:
    """The summary a user reads: samples per recording and split, then per split and in all."""
    rows = summarize(table)
    lines = [f"{'recording':<10} {'split':<6} {'samples':>9}"]
    lines += [f"{name:<10} {split:<6} {count:>9}" for name, split, count in rows]
    for split in catalogue.SPLITS:
        lines.append(f"{'all':<10} {split:<6} {sum(c for _, s, c in rows if s == split):>9}")
    lines.append(f"{'all':<10} {'':<6} {sum(c for _, _, c in rows):>9}")
    return "\n".join(lines)


def find_mocap_files(root: str | os.PathLike, recordings: Sequence[catalogue.Recording] | None = None) -> list[Path]:
    """Paths of ``<root>/annotations/mocap-*.mat`` files, in catalogue order.

    Args:
        root: the dataset root.
        recordings: the recordings wanted (each must be there); None: every one that is there.

    Raises:
        BadInputError: a wanted file is missing, or (with None) there is none at all.
    """
    folder = Path(root) / catalogue.ANNOTATION_DIR
    if recordings is None:
        present = {p.name for p in folder.glob("mocap-*.mat")}
        recordings = [rec for rec in catalogue.RECORDINGS if catalogue.mocap_file_name(rec) in present]
        if not recordings:
            msg = f"{folder}: no mocap-sS-dD.mat files; run {command('download')} first, or pass --root {hint(root)}"
            raise BadInputError(msg)
    paths = [folder / catalogue.mocap_file_name(rec) for rec in recordings]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        msg = f"{folder}: missing {', '.join(missing)}; run {command('download')} first, or restrict --recordings"
        msg += f" {hint(root)}"
        raise BadInputError(msg)
    return paths
