"""Pixel conventions: MATLAB's 1-based pixel centres, the 0-based world's, and which one a table uses.

RAT7M's cameras are MATLAB calibrations: MATLAB puts the centre of the top-left pixel at (1, 1).
OpenCV, NumPy, COCO, DeepLabCut, SLEAP, YOLO and every Python image library put it at (0, 0).
MATLAB's own ``cameraIntrinsicsToOpenCV`` subtracts 1 from the principal point for this reason, and
DANNCE's ``prepare_data`` subtracts 1 from label3d's ``data_2d``. Projecting the real rig's label3d
``data_3d`` with the MATLAB parameters gives its ``data_2d`` to 5e-13 px, so 2D keypoints computed
from these cameras (``build_annotation.py``'s, and very probably the official table's) are 1-based:
a 0-based image position is the MATLAB coordinate minus 1.

A table can tell which convention its 2D columns use: project some rows' 3D keypoints through
their cameras and compare with the stored 2D (:func:`detect`). An offset of ~(0, 0) means the
cameras' own (MATLAB) convention; ~(-1, -1) means the table was stored 0-based.
:func:`convention_of` detects once and remembers the answer in the table dict under
:data:`TABLE_KEY` (never saved to disk: :func:`rat7m.table.save_annotation` drops it).

Every boundary to the 0-based world converts with :func:`to_zero_based` / :func:`from_zero_based`;
cameras convert with :func:`camera_to_zero_based` (principal point minus 1, as MATLAB's converter).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rat7m.errors import BadInputError

__all__ = [
    "CONVENTIONS",
    "ENV",
    "MATLAB",
    "MATLAB_OFFSET",
    "SAMPLE_ROWS",
    "TABLE_KEY",
    "TOLERANCE_PX",
    "ZERO_BASED",
    "Detection",
    "camera_to_zero_based",
    "convention_of",
    "convert",
    "detect",
    "from_zero_based",
    "to_zero_based",
]

log = logging.getLogger(__name__)

#: MATLAB's convention: the centre of the top-left pixel is (1, 1). The cameras' own convention.
MATLAB = "matlab"
#: The convention of OpenCV, NumPy, COCO, DLC, SLEAP, YOLO, PIL: the centre of the top-left pixel is (0, 0).
ZERO_BASED = "zero-based"
#: Both conventions, for validation and ``--help``.
CONVENTIONS = (MATLAB, ZERO_BASED)
#: A MATLAB coordinate minus this is the 0-based one.
MATLAB_OFFSET = 1.0
#: Key under which :func:`convention_of` remembers a table's convention (a top-level key of the table dict).
TABLE_KEY = "pixel_convention"
#: How far (px, median over the sampled points) the stored 2D may be from an exact convention.
TOLERANCE_PX = 0.25
#: Rows sampled (evenly spread) per camera to detect a table's convention.
SAMPLE_ROWS = 200
#: Environment variable that states a table's convention instead of detecting it (``matlab`` or
#: ``zero-based``): the way out for a table whose 2D agree with neither (``--check`` says by how much).
ENV = "RAT7M_PIXEL_CONVENTION"


def _offset(convention: str) -> float:
    if convention == MATLAB:
        return MATLAB_OFFSET
    if convention == ZERO_BASED:
        return 0.0
    raise ValueError(f"unknown pixel convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")


def to_zero_based(xy: np.ndarray, convention: str) -> np.ndarray:
    """Pixel coordinates ``(..., 2)`` (or any array of x/y values) in ``convention`` as 0-based ones (a new array)."""
    return np.asarray(xy, dtype=np.float64) - _offset(convention)


def from_zero_based(xy: np.ndarray, convention: str) -> np.ndarray:
    """0-based pixel coordinates as ``convention``'s (a new array): the inverse of :func:`to_zero_based`."""
    return np.asarray(xy, dtype=np.float64) + _offset(convention)


def convert(xy: np.ndarray, source: str, target: str) -> np.ndarray:
    """Pixel coordinates from one convention to another (a new array)."""
    return np.asarray(xy, dtype=np.float64) - _offset(source) + _offset(target)


def camera_to_zero_based(camera: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A copy of a MATLAB camera whose projection gives 0-based pixels: principal point minus 1.

    In MATLAB's layout ``K = [[fx, 0, 0], [s, fy, 0], [cx, cy, 1]]``, so ``K[2, :2] -= 1``; other
    parameters are unchanged (distortion acts on normalised coordinates). This is what MATLAB's
    ``cameraIntrinsicsToOpenCV`` does.
    """
    out = dict(camera)
    K = np.array(camera["IntrinsicMatrix"], dtype=np.float64).reshape(3, 3)
    K[2, :2] -= MATLAB_OFFSET
    out["IntrinsicMatrix"] = K
    return out


@dataclass(frozen=True)
class Detection:
    """What :func:`detect` found: the convention (or None), the median offset and how many points it rests on."""

    convention: str | None
    #: Median of stored 2D minus the projection through the table's (MATLAB) cameras, per axis (px).
    offset: tuple[float, float]
    n_points: int

    def describe(self) -> str:
        """One line for ``--check`` and ``rat7m-doctor``."""
        if self.n_points == 0:
            return "pixel convention: unknown (no row has finite 3D and 2D keypoints); assuming MATLAB's 1-based"
        dx, dy = self.offset
        where = f"stored 2D minus projected 3D = ({dx:+.3g}, {dy:+.3g}) px over {self.n_points} points"
        if self.convention == MATLAB:
            return f"pixel convention: MATLAB 1-based (top-left pixel centre at (1, 1)); {where}"
        if self.convention == ZERO_BASED:
            return f"pixel convention: 0-based (top-left pixel centre at (0, 0)); {where}"
        return f"pixel convention: neither MATLAB 1-based nor 0-based: {where}"


def detect(table: Mapping, sample_rows: int = SAMPLE_ROWS) -> Detection:
    """Detect the pixel convention of a table's 2D columns from the table itself.

    Projects the 3D keypoints of up to ``sample_rows`` evenly spread rows per recording and camera
    through their (MATLAB) cameras and takes the median difference to the stored ``2D_keypoints``.
    """
    from rat7m.geometry import project
    from rat7m.table import cameras_of

    columns = table["table"]
    subjects = np.asarray(columns["subject_idx"]).astype(np.int64)
    days = np.asarray(columns["day_idx"]).astype(np.int64)
    points_3d = columns["3D_keypoints"]
    diffs: list[np.ndarray] = []
    pairs = np.unique(np.stack([subjects, days], axis=1), axis=0) if len(subjects) else np.empty((0, 2), int)
    for subject, day in pairs.tolist():
        rows = np.flatnonzero((subjects == subject) & (days == day))
        rows = rows[np.unique(np.linspace(0, len(rows) - 1, min(sample_rows, len(rows))).astype(np.int64))]
        try:
            cameras = cameras_of(table, subject, day)
        except KeyError:
            continue
        xyz = np.asarray(points_3d[rows], dtype=np.float64)
        for name in table["camera_names"]:
            name = str(name)
            if name not in cameras:
                continue
            stored = np.asarray(columns["2D_keypoints"][name][rows], dtype=np.float64)
            with np.errstate(all="ignore"):
                diff = (stored - project(xyz, cameras[name])).reshape(-1, 2)
            diffs.append(diff[np.isfinite(diff).all(axis=1) & (np.abs(diff) < 1e6).all(axis=1)])
    found = np.concatenate(diffs) if diffs else np.empty((0, 2))
    if len(found) == 0:
        return Detection(None, (float("nan"), float("nan")), 0)
    offset = np.median(found, axis=0)
    convention = None
    if np.all(np.abs(offset) <= TOLERANCE_PX):
        convention = MATLAB
    elif np.all(np.abs(offset + MATLAB_OFFSET) <= TOLERANCE_PX):
        convention = ZERO_BASED
    return Detection(convention, (float(offset[0]), float(offset[1])), len(found))


def convention_of(table: dict) -> str:
    """The pixel convention of a table's 2D columns (:data:`MATLAB` or :data:`ZERO_BASED`), detected once.

    The answer is remembered in ``table[TABLE_KEY]``. A table with no row to detect from is taken
    as MATLAB's (the RAT7M cameras' own convention). ``$RAT7M_PIXEL_CONVENTION`` (:data:`ENV`) states
    it instead of detecting it.

    Raises:
        BadInputError: the stored 2D agree with neither convention (named with the offset found).
    """
    known = table.get(TABLE_KEY)
    if known in CONVENTIONS:
        return known
    stated = os.environ.get(ENV)
    if stated:
        if stated not in CONVENTIONS:
            raise BadInputError(f"${ENV}={stated!r}; expected one of {', '.join(CONVENTIONS)}")
        log.info("pixel convention %s, as $%s says (not detected)", stated, ENV)
        table[TABLE_KEY] = stated
        return stated
    found = detect(table)
    if found.n_points == 0:
        log.debug("%s", found.describe())
        convention = MATLAB
    elif found.convention is None:
        raise BadInputError(
            f"the table's 2D keypoints match neither pixel convention ({found.describe()}); "
            f"check it with rat7m-build-annotation --check, or state it with {ENV}=matlab or {ENV}=zero-based"
        )
    else:
        convention = found.convention
    table[TABLE_KEY] = convention
    return convention
