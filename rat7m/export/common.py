"""What every export format shares: the selection of rows, cameras by either spelling, image sizes,
visibility flags and boxes, and the atomic output folder.

Pixels: every format but DANNCE numbers pixels from 0 (COCO, DeepLabCut, SLEAP, YOLO, OpenCV: the
top-left pixel's centre is (0, 0)), while the RAT7M cameras and the 2D computed from them are
MATLAB's (1, 1) (:mod:`rat7m.pixels`). A :class:`View`'s keypoints are therefore 0-based image
coordinates, converted from whichever convention the table is stored in
(:attr:`rat7m.model.Table.pixel_convention`); calibrations go through :func:`rat7m.geometry.to_opencv`,
which moves the principal point by -1. DANNCE reads MATLAB's convention and converts itself.

Visibility (COCO's ``v``, used by every format that has one), per keypoint of one camera view:

* ``0`` missing: the table's 2D keypoint is NaN (the marker was lost); written as ``0, 0, 0``.
* ``1`` labelled but not seen: the point projects outside the image, or lies behind the camera
  (depth ``<= 0`` in that camera). Behind the camera a projection means nothing, but the table's
  2D value is kept as it is (it round-trips, and the flag says not to trust it).
* ``2`` seen: in front of the camera and inside ``[0, width) x [0, height)`` (0-based pixels).

Boxes are the tight box of the ``v = 2`` keypoints grown by :data:`BBOX_MARGIN` of its size on each
side (at least :data:`BBOX_MIN_MARGIN_PX`), clipped to the image: markers sit on the fur, so the
body reaches a little past them. A view without a seen keypoint gets an empty box ``[0, 0, 0, 0]``.

Image sizes come from the JPEG headers (a few hundred bytes each, never decoding): per camera
folder, the first, middle and last image are read; if they agree every image of that folder is
taken to share the size (extraction writes one camera's frames from one video stream), and if they
do not, every image of the folder is read.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from rat7m import catalogue, cli, pixels
from rat7m.errors import BadInputError
from rat7m.fileio import remove_stale_staging, staging_name
from rat7m.model import CameraLike, Table, canonical, extrinsics, spellings_of
from rat7m.untrusted import check_image_paths

__all__ = [
    "BBOX_MARGIN",
    "BBOX_MIN_MARGIN_PX",
    "MANIFEST_NAME",
    "Selection",
    "Summary",
    "View",
    "boxes",
    "camera_params",
    "depths",
    "is_complete",
    "jpeg_size",
    "link",
    "publish",
    "read_manifest",
    "read_sizes",
    "select",
    "staging_folder",
    "visibility",
]

log = logging.getLogger("rat7m.export")

#: Box margin on each side, as a fraction of the tight box's width (height) around the seen keypoints.
BBOX_MARGIN = 0.1
#: Smallest box margin on each side, in pixels (a box around one or two markers still holds a body part).
BBOX_MIN_MARGIN_PX = 4.0
#: Name of the file that marks a complete export folder (written last; holds the options used).
MANIFEST_NAME = "rat7m_export.json"

def camera_params(camera: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A camera dict with the canonical spellings only (``RotationMatrix``), whichever the table used
    (:func:`rat7m.model.canonical`): what the exporters write from.

    Raises:
        BadInputError: the camera lacks a parameter under every spelling.
    """
    try:
        return canonical(camera)
    except KeyError as exc:
        spellings = spellings_of(exc.args[0])
        also = f" (also looked for {', '.join(spellings[1:])})" if len(spellings) > 1 else ""
        raise BadInputError(f"camera lacks {exc.args[0]}{also}") from None


@dataclass(frozen=True)
class View:
    """The rows of one recording seen by one camera, with everything a format writes per image.

    Attributes:
        recording, camera: which view.
        rows: ``(n,)`` row indices into the table (sample indices), in table order.
        frames: ``(n,)`` video frame index of each row in this camera.
        paths: ``n`` image paths relative to the images root (the table's ``image_path``).
        keypoints: ``(n, 20, 2)`` the table's 2D keypoints as 0-based image coordinates (NaN where missing).
        visibility: ``(n, 20)`` int8 COCO flags (see the module docstring).
        width, height: image size in pixels.
        camera_params: the camera (canonical spellings).
    """

    recording: catalogue.Recording
    camera: str
    rows: np.ndarray
    frames: np.ndarray
    paths: list[str]
    keypoints: np.ndarray
    visibility: np.ndarray
    width: int
    height: int
    camera_params: dict[str, np.ndarray]

    @property
    def folder(self) -> str:
        """``<recording>_<camera>``: the name of this view's folder in DLC and video names elsewhere."""
        return f"{self.recording.name}_{self.camera}"


@dataclass
class Selection:
    """The table rows and cameras an export covers."""

    table: Table
    rows: np.ndarray
    recordings: tuple[catalogue.Recording, ...]
    cameras: tuple[str, ...]
    split: str
    sizes: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    progress: bool = False

    def __post_init__(self) -> None:
        self.table = Table.of(self.table)

    @property
    def columns(self) -> Mapping[str, Any]:
        """The table's columns."""
        return self.table.columns

    @property
    def convention(self) -> str:
        """The pixel convention of the table's 2D columns (:attr:`rat7m.model.Table.pixel_convention`)."""
        return self.table.pixel_convention

    def recording_rows(self, recording: catalogue.Recording) -> np.ndarray:
        """Selected rows of one recording, in table order."""
        return self.table.recording_rows(recording, self.rows)

    def cameras_of(self, recording: catalogue.Recording) -> dict[str, dict[str, np.ndarray]]:
        """The selected cameras of a recording, as dicts under the canonical spellings (:func:`camera_params`)."""
        cams = self.table.raw_cameras(recording.subject, recording.day)
        return {cam: camera_params(cams[cam]) for cam in self.cameras}

    def views(self, *, with_sizes: bool = True) -> Iterable[View]:
        """Every (recording, camera) view with rows, in catalogue order."""
        columns = self.columns
        points_3d = np.asarray(columns["3D_keypoints"], dtype=np.float64)
        from tqdm import tqdm  # here: a refused export does not pay for its import

        bar = tqdm(total=len(self.recordings) * len(self.cameras), unit="view", disable=not self.progress)
        for recording in self.recordings:
            rows = self.recording_rows(recording)
            if not len(rows):
                continue
            for camera, params in self.cameras_of(recording).items():
                bar.update()
                width, height = self.sizes.get((recording.name, camera), (0, 0)) if with_sizes else (0, 0)
                keypoints = pixels.to_zero_based(np.asarray(columns["2D_keypoints"][camera])[rows], self.convention)
                yield View(
                    recording=recording,
                    camera=camera,
                    rows=rows,
                    frames=np.asarray(columns["frame_idx"][camera])[rows].astype(np.int64),
                    paths=[str(p) for p in np.asarray(columns["image_path"][camera])[rows]],
                    keypoints=keypoints,
                    visibility=visibility(keypoints, points_3d[rows], params, width, height),
                    width=width,
                    height=height,
                    camera_params=params,
                )


def select(
    table: Mapping[str, Any],
    *,
    split: str = "all",
    recordings: Sequence[catalogue.Recording] | None = None,
    cameras: Sequence[str] | None = None,
) -> Selection:
    """Choose rows by split and recording, and cameras; the order of rows is the table's.

    Raises:
        BadInputError: a camera the table lacks, nothing left to export, or an ``image_path`` of a
            chosen row and camera that :func:`rat7m.untrusted.check_image_path` refuses.
    """
    table = Table.of(table)
    columns = table.columns
    names = table.camera_names
    cameras = tuple(cameras or names)
    lacking = [c for c in cameras if c not in names]
    if lacking:
        raise BadInputError(f"the table has no {', '.join(lacking)} (it has {', '.join(names)}); see --cameras")
    present = dict(table.recordings(table.split_rows(split)))
    chosen = tuple(r for r in (recordings or catalogue.RECORDINGS) if r in present)
    rows = np.sort(np.concatenate([present[r] for r in chosen])) if chosen else np.empty(0, dtype=np.int64)
    if not len(rows):
        wanted = ", ".join(r.name for r in recordings) if recordings else "any recording"
        raise BadInputError(f"the table has no {split} rows of {wanted}; check --split and --recordings")
    for camera in cameras:  # every row, whatever the flags: the paths name files, links and folders we write
        check_image_paths(np.asarray(columns["image_path"][camera])[rows], rows.tolist(), camera, images_dir=None)
    return Selection(table, rows, chosen, cameras, split)


# ------------------------------------------------------------------------------------- visibility


def depths(points_3d: np.ndarray, camera: CameraLike) -> np.ndarray:
    """Depth (mm) of each point along the camera's axis: ``(X @ R + t)[..., 2]`` (NaN for NaN points)."""
    R, t = extrinsics(camera)
    return points_3d @ R[:, 2] + t[2]


def visibility(
    keypoints: np.ndarray, points_3d: np.ndarray, camera: CameraLike, width: int, height: int
) -> np.ndarray:
    """COCO flags ``(n, 20)`` int8 of one camera's 0-based 2D keypoints ``(n, 20, 2)`` (module docstring).

    ``width = height = 0`` (size unknown) counts every point in front of the camera as inside.
    """
    finite = np.isfinite(keypoints).all(axis=-1)
    with np.errstate(invalid="ignore"):
        behind = depths(points_3d, camera) <= 0  # NaN depth (3D lost, 2D kept): judged by the image alone
        x, y = keypoints[..., 0], keypoints[..., 1]
        inside = (x >= 0) & (y >= 0)
        if width and height:
            inside &= (x < width) & (y < height)
    flags = np.where(finite, 1, 0).astype(np.int8)
    flags[finite & inside & ~behind] = 2
    return flags


def boxes(keypoints: np.ndarray, flags: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(n, 4)`` COCO boxes ``[x, y, w, h]`` around the seen (``v = 2``) keypoints, with the margin.

    Rows without a seen keypoint get ``[0, 0, 0, 0]``.
    """
    seen = flags == 2
    x = np.where(seen, keypoints[..., 0], np.nan)
    y = np.where(seen, keypoints[..., 1], np.nan)
    any_seen = seen.any(axis=1)
    out = np.zeros((len(keypoints), 4))
    if not any_seen.any():
        return out
    with np.errstate(invalid="ignore"):
        x0, x1 = np.nanmin(x[any_seen], axis=1), np.nanmax(x[any_seen], axis=1)
        y0, y1 = np.nanmin(y[any_seen], axis=1), np.nanmax(y[any_seen], axis=1)
    mx = np.maximum((x1 - x0) * BBOX_MARGIN, BBOX_MIN_MARGIN_PX)
    my = np.maximum((y1 - y0) * BBOX_MARGIN, BBOX_MIN_MARGIN_PX)
    x0, x1 = np.clip(x0 - mx, 0, width), np.clip(x1 + mx, 0, width)
    y0, y1 = np.clip(y0 - my, 0, height), np.clip(y1 + my, 0, height)
    out[any_seen] = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    return out


# ------------------------------------------------------------------------------------- image sizes


def jpeg_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` from a JPEG's start-of-frame marker, reading only the header.

    Raises:
        BadInputError: not a JPEG, or no frame header before the image data.
    """
    with open(path, "rb") as f:
        data = f.read(2)
        if data != b"\xff\xd8":
            raise BadInputError(f"{path}: not a JPEG file (no SOI marker)")
        while True:
            marker = f.read(2)
            while marker[:1] == b"\xff" and marker[1:2] == b"\xff":  # fill bytes
                marker = marker[1:] + f.read(1)
            if len(marker) < 2 or marker[0] != 0xFF:
                raise BadInputError(f"{path}: corrupt JPEG header (no frame size found)")
            code = marker[1]
            length_bytes = f.read(2)
            if len(length_bytes) < 2:
                raise BadInputError(f"{path}: truncated JPEG header")
            (length,) = struct.unpack(">H", length_bytes)
            # SOF0..SOF15 carry the size, except DHT (C4), JPG (C8) and DAC (CC)
            if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):
                frame = f.read(5)
                if len(frame) < 5:
                    raise BadInputError(f"{path}: truncated JPEG frame header")
                height, width = struct.unpack(">HH", frame[1:5])
                return width, height
            if code == 0xDA:
                raise BadInputError(f"{path}: JPEG image data before any frame header")
            f.seek(length - 2, os.SEEK_CUR)


def read_sizes(
    selection: Selection, images_root: Path, *, fixed: tuple[int, int] | None = None, extract_command: str = ""
) -> None:
    """Fill ``selection.sizes`` from the images' headers (module docstring), or with ``fixed``.

    ``extract_command`` is the ``extract_frames.py`` command line that makes missing images.

    Raises:
        BadInputError: images are missing (one line naming how many, the first, and the
            ``extract_frames.py`` command that makes them), or a folder has no readable JPEG.
    """
    columns = selection.columns
    missing: list[str] = []
    total = 0
    for recording in selection.recordings:
        rows = selection.recording_rows(recording)
        for camera in selection.cameras:
            paths = [str(p) for p in np.asarray(columns["image_path"][camera])[rows]]
            if fixed is not None:
                selection.sizes[(recording.name, camera)] = fixed
                continue
            total += len(paths)
            by_folder: dict[str, list[str]] = {}
            for path in paths:
                by_folder.setdefault(str(PurePosixPath(path).parent), []).append(path)
            sizes = set()
            for folder, members in by_folder.items():
                try:
                    present = set(os.listdir(images_root / folder))
                except OSError:
                    present = set()
                absent = [p for p in members if PurePosixPath(p).name not in present]
                missing.extend(absent)
                if absent:
                    continue
                sample = sorted({members[0], members[len(members) // 2], members[-1]})
                seen = {jpeg_size(images_root / p) for p in sample}
                if len(seen) > 1:  # a folder of mixed sizes: read them all
                    log.warning("%s: images of different sizes %s; reading every header", folder, sorted(seen))
                    seen = {jpeg_size(images_root / p) for p in members}
                sizes |= seen
            if len(sizes) > 1:
                msg = f"images of {recording.name} {camera} have different sizes {sorted(sizes)}; one camera, one size"
                raise BadInputError(msg)
            if sizes:
                selection.sizes[(recording.name, camera)] = sizes.pop()
    if missing:
        recs = " ".join(r.name for r in selection.recordings)
        command = extract_command or f"{cli.command('extract')} --root DATASET_ROOT --recordings {recs}"
        where = f"under {images_root}"
        if len(missing) == total:  # not one image: more likely the wrong folder than a partial extraction
            msg = (f"none of the {total} images are {where} (first: {missing[0]}); if they were extracted "
                   f"elsewhere, pass --images-root FOLDER (the folder holding {PurePosixPath(missing[0]).parts[0]}/), "
                   f"else run {command}")  # fmt: skip
        else:
            msg = f"{len(missing)} of {total} images are not {where} (first: {missing[0]}); run {command}"
        raise BadInputError(msg)


# ------------------------------------------------------------------------------------- output folder


@dataclass
class Summary:
    """What one export wrote, for the per-format summary line."""

    format: str
    out: Path
    images: int = 0
    instances: int = 0
    missing_keypoints: int = 0
    files: int = 0
    skipped: bool = False
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line: ``coco: 1200 images, 1200 instances, 37 missing keypoints, 3 files -> out/coco``."""
        if self.skipped:
            return f"{self.format}: already complete in {self.out} (skipped; --overwrite redoes it)"
        extra = "".join(f"; {n}" for n in self.notes)
        return (
            f"{self.format}: {self.images} images, {self.instances} instances, {self.missing_keypoints} missing "
            f"keypoints, {self.files} files -> {self.out}{extra}"
        )


def is_complete(folder: Path) -> bool:
    """True when ``folder`` holds a finished export (its manifest is written last)."""
    return (folder / MANIFEST_NAME).is_file()


def read_manifest(folder: Path) -> dict[str, Any]:
    """A finished export's manifest, checked to be a JSON object (it lies in ``--out``, where other hands may write)."""
    from rat7m.fileio import read_input

    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(read_input(path, "export manifest", max_bytes=1 << 20, follow_links=False))
    except (ValueError, RecursionError):  # not JSON; UnicodeDecodeError is a ValueError
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("recordings", []), list):
        raise BadInputError(f"{path}: not an export's manifest; pass --overwrite to redo the export")
    return manifest


def staging_folder(final: Path) -> Path:
    """A fresh hidden folder beside ``final`` to write an export into before renaming it.

    Leftovers of killed runs (their process is gone) are removed first.
    """
    if remove_stale_staging(final.parent, {final.name}):  # what a killed run left (SIGKILL: nothing could clean up)
        log.info("removed the leftovers of an interrupted export of %s", final)
    stage = staging_name(final)
    _inside_stage.cache_clear()  # a new stage, perhaps under an old one's name: nothing known about it yet
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


def publish(stage: Path, final: Path, manifest: Mapping[str, Any]) -> None:
    """Write the manifest into ``stage`` and rename it onto ``final`` (replacing an old export)."""
    (stage / MANIFEST_NAME).write_text(json.dumps(dict(manifest), indent=1, sort_keys=True) + "\n")
    old = None
    if final.exists() or final.is_symlink():
        old = staging_name(final, "old")
        os.replace(final, old)
    os.replace(stage, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@functools.lru_cache(maxsize=4096)
def _inside_stage(folder: Path, stage: Path) -> bool:
    """Whether ``folder`` resolves (through links made earlier in the stage) inside ``stage``.

    Cached: a folder found inside stays so, since only leaves are ever made links (a link's name that
    is already a folder fails to be made).
    """
    inside, resolved = stage.resolve(), folder.resolve()
    return resolved == inside or inside in resolved.parents


def link(target: Path, link_path: Path, stage: Path) -> None:
    """A symbolic link ``link_path -> target`` (absolute), made only inside the staging folder ``stage``.

    ``link_path`` comes from a table's (checked) path; this is the last guard: its folder must resolve
    inside ``stage``, and only a link made there is ever replaced.

    Raises:
        BadInputError: ``link_path`` would be outside ``stage``.
    """
    if not _inside_stage(link_path.parent, stage):
        raise BadInputError(f"refusing to create {link_path}: it is not inside the export folder {stage}")
    link_path.parent.mkdir(parents=True, exist_ok=True)
    if link_path.is_symlink():
        link_path.unlink()
    link_path.symlink_to(os.path.realpath(target))
