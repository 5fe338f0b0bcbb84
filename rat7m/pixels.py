"""Pixel conventions: MATLAB's 1-based pixel centres, the 0-based world's, and which one a table uses.

RAT7M's cameras are MATLAB calibrations: MATLAB puts the centre of the top-left pixel at (1, 1).
OpenCV, NumPy, COCO, DeepLabCut, SLEAP, YOLO and every Python image library put it at (0, 0).
MATLAB's own ``cameraIntrinsicsToOpenCV`` subtracts 1 from the principal point for this reason, and
DANNCE's ``prepare_data`` subtracts 1 from label3d's ``data_2d``. Projecting the real rig's label3d
``data_3d`` with the MATLAB parameters gives its ``data_2d`` to 5e-13 px, so 2D keypoints computed
from these cameras (``build_annotation.py``'s, and very probably the official table's) are 1-based:
a 0-based image position is the MATLAB coordinate minus 1.

A table can tell which convention its 2D columns use: project some rows' 3D keypoints through
their cameras and compare with the stored 2D. An offset of ~(0, 0) means the cameras' own (MATLAB)
convention; ~(-1, -1) means the table was stored 0-based. That detection needs the table and the
camera model, which sit above this module, so it lives with them:
:meth:`rat7m.model.Table.detect_pixel_convention` gives a :class:`Detection`, and
:attr:`rat7m.model.Table.pixel_convention` detects once and remembers the answer in the table dict
under :data:`TABLE_KEY` (never saved to disk: :func:`rat7m.table.save_annotation` drops it). This
module imports nothing of the toolkit, so every layer may use it.

Every boundary to the 0-based world converts with :func:`to_zero_based` / :func:`from_zero_based`;
cameras convert with :meth:`rat7m.model.Camera.to_zero_based` (principal point minus 1, as MATLAB's
converter).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    "convert",
    "from_zero_based",
    "to_zero_based",
]

#: MATLAB's convention: the centre of the top-left pixel is (1, 1). The cameras' own convention.
MATLAB = "matlab"
#: The convention of OpenCV, NumPy, COCO, DLC, SLEAP, YOLO, PIL: the centre of the top-left pixel is (0, 0).
ZERO_BASED = "zero-based"
#: Both conventions, for validation and ``--help``.
CONVENTIONS = (MATLAB, ZERO_BASED)
#: A MATLAB coordinate minus this is the 0-based one.
MATLAB_OFFSET = 1.0
#: Key under which :attr:`rat7m.model.Table.pixel_convention` remembers a table's convention (top level of the dict).
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


@dataclass(frozen=True)
class Detection:
    """What :meth:`rat7m.model.Table.detect_pixel_convention` found: the convention (or None), the
    median offset and how many points it rests on."""

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
