"""A typed model of the mini-RAT7M table and its cameras: :class:`Table` and :class:`Camera`.

The table on disk is a nested dict (see :mod:`rat7m.table`), and its cameras come in two spellings:
the ``.mat`` files' (and, by the evidence, the official pickle's) ``rotationMatrix`` /
``translationVector``, and the dataset documentation's ``RotationMatrix`` / ``TranslationVector``.
This module is the one place that knows the spellings (:data:`SPELLINGS`) and the one place that
selects rows by split or recording (:meth:`Table.split_rows`, :meth:`Table.recording_rows`), so no
other module re-derives them.

A :class:`Camera` is normalised once, at construction (float64, MATLAB's layout and row-vector
convention, its pixel convention named), as sleap-io's camera model does. A :class:`Table` is the
table dict itself (a ``dict`` subclass): it behaves as the old mapping (``table["table"]``,
``table["cameras"]``, the ``pixel_convention`` cache key) so code that indexes the dict keeps
working, pickles as the plain dict, and :attr:`Table.raw` (or :meth:`Table.to_dict`) is that dict.

Layers: this module imports only :mod:`rat7m.catalogue`, :mod:`rat7m.pixels` (the conventions and
conversions) and :mod:`rat7m.errors`; :mod:`rat7m.geometry` and :mod:`rat7m.table` build on it. So the
projection itself is :meth:`Camera.project` (``geometry.project`` delegates), and the detection of a
table's pixel convention, which projects the table's 3D through its cameras, is
:meth:`Table.detect_pixel_convention` / :attr:`Table.pixel_convention`.

Raw camera parameters are read two ways, on purpose: :func:`camera_param` returns a value as stored,
so validation can say what is wrong with it (a string, a wrong size); :meth:`Camera.from_dict` and
:func:`canonical` give float64 for computing. (The two ``camera_param`` functions this replaces,
``geometry``'s and ``triangulate``'s, differed exactly so.)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rat7m import catalogue, pixels
from rat7m.errors import BadInputError

__all__ = ["MAT_SPELLING", "MEANINGS", "SIZES", "SPELLINGS", "Camera", "CameraLike", "Table", "camera_param",
           "canonical", "extrinsics", "mat_spellings", "unique_pairs", "with_both_spellings"]  # fmt: skip

log = logging.getLogger(__name__)

#: Each camera parameter under its canonical (documentation) name, with every spelling a table or
#: ``.mat`` file may use for it, canonical first.
SPELLINGS: dict[str, tuple[str, ...]] = {
    "IntrinsicMatrix": ("IntrinsicMatrix",),
    "RotationMatrix": ("RotationMatrix", "rotationMatrix"),
    "TranslationVector": ("TranslationVector", "translationVector"),
    "TangentialDistortion": ("TangentialDistortion",),
    "RadialDistortion": ("RadialDistortion",),
}
#: Sizes (any 1-row or matrix shape) each parameter may have: 3x3 matrices, 1x3 translation, 2
#: tangential and 2 or 3 radial coefficients.
SIZES: dict[str, tuple[int, ...]] = {
    "IntrinsicMatrix": (9,),
    "RotationMatrix": (9,),
    "TranslationVector": (3,),
    "TangentialDistortion": (2,),
    "RadialDistortion": (2, 3),
}
#: What each parameter is, in words (for reports such as ``rat7m-doctor``'s).
MEANINGS: dict[str, str] = {
    "IntrinsicMatrix": "intrinsics",
    "RotationMatrix": "rotation",
    "TranslationVector": "translation",
    "TangentialDistortion": "tangential",
    "RadialDistortion": "radial",
}
#: The spelling the ``.mat`` files (and so the tables we write) use, per canonical name.
MAT_SPELLING: dict[str, str] = {name: spellings[-1] for name, spellings in SPELLINGS.items()}
#: Spelling -> canonical name.
_CANONICAL: dict[str, str] = {spelling: name for name, spellings in SPELLINGS.items() for spelling in spellings}


def camera_param(camera: Mapping[str, Any], key: str) -> Any:
    """``camera[key]`` as stored (dtype untouched, for validation), under any spelling of ``key``.

    The canonical spelling wins when a raw dict holds both (a loaded table binds both to the same
    array; :func:`rat7m.table.validate_annotation` refuses a table where they differ).

    Raises:
        KeyError: the camera has no spelling of ``key``.
    """
    for spelling in SPELLINGS.get(_CANONICAL.get(key, key), (key,)):
        if spelling in camera:
            return camera[spelling]
    raise KeyError(key)


def canonical(camera: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A raw camera's parameters as float64 arrays (shapes as stored) under their canonical names only.

    Raises:
        KeyError: a parameter is missing under every spelling (its canonical name).
    """
    return {name: np.asarray(camera_param(camera, name), dtype=np.float64) for name in SPELLINGS}


def extrinsics(camera: CameraLike) -> tuple[np.ndarray, np.ndarray]:
    """``(R (3, 3), t (3,))`` float64 of a :class:`Camera` or a raw dict (which needs only these two)."""
    if isinstance(camera, Camera):
        return camera.R, camera.t
    R = np.asarray(camera_param(camera, "RotationMatrix"), dtype=np.float64).reshape(3, 3)
    return R, np.asarray(camera_param(camera, "TranslationVector"), dtype=np.float64).reshape(3)


def spellings_of(key: str) -> tuple[str, ...]:
    """Every spelling of a camera parameter (canonical first), for messages and reports."""
    return SPELLINGS.get(_CANONICAL.get(key, key), (key,))


def disagreeing_spellings(camera: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first pair of spellings a raw camera holds with different values, or None."""
    for spellings in SPELLINGS.values():
        held = [s for s in spellings if s in camera]
        for other in held[1:]:
            if not np.array_equal(np.asarray(camera[held[0]]), np.asarray(camera[other])):
                return held[0], other
    return None


def with_both_spellings(camera: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a raw camera where each parameter is under every spelling, bound to the same array.

    So user code written after the dataset documentation (``RotationMatrix``) and after the
    authors' code (``rotationMatrix``) both work on any camera dict we hand out.
    """
    out = dict(camera)
    for spellings in SPELLINGS.values():
        held = next((s for s in spellings if s in out), None)
        if held is not None:
            for spelling in spellings:
                out.setdefault(spelling, out[held])
    return out


def mat_spellings(camera: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a raw camera holding only the ``.mat``'s own spellings (what we write to files)."""
    out = {}
    for key, value in camera.items():
        name = _CANONICAL.get(key)
        if name is None:
            out[key] = value
        elif MAT_SPELLING[name] not in out:
            out[MAT_SPELLING[name]] = camera_param(camera, name)
    return out


@dataclass(frozen=True, eq=False)
class Camera:
    """One calibrated camera in MATLAB's conventions (row vectors: ``p_cam = X @ R + t``).

    Attributes:
        K: ``(3, 3)`` intrinsics in MATLAB's layout ``[[fx, 0, 0], [s, fy, 0], [cx, cy, 1]]``.
        R: ``(3, 3)`` rotation, row-vector convention.
        t: ``(3,)`` translation, mm.
        radial: ``(2,)`` or ``(3,)`` radial coefficients k1, k2[, k3].
        tangential: ``(2,)`` tangential coefficients p1, p2.
        convention: the pixel convention its projections give (:data:`rat7m.pixels.MATLAB` for
            RAT7M's calibrations; see :meth:`to_zero_based`).
    """

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    radial: np.ndarray
    tangential: np.ndarray
    convention: str = pixels.MATLAB

    @classmethod
    def from_dict(cls, camera: Mapping[str, Any], convention: str = pixels.MATLAB) -> Camera:
        """A camera from a raw dict under either spelling (the canonical one wins if both are there).

        Raises:
            KeyError: a parameter is missing under every spelling.
        """
        def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
            return np.array(camera_param(camera, name), dtype=np.float64).reshape(shape)

        return cls(K=get("IntrinsicMatrix", (3, 3)), R=get("RotationMatrix", (3, 3)), t=get("TranslationVector", (3,)),
                   radial=get("RadialDistortion", (-1,)), tangential=get("TangentialDistortion", (2,)),
                   convention=convention)  # fmt: skip

    @classmethod
    def of(cls, camera: CameraLike) -> Camera:
        """``camera`` itself if it is a :class:`Camera`, else one built from the raw dict."""
        return camera if isinstance(camera, Camera) else cls.from_dict(camera)

    def to_dict(self) -> dict[str, np.ndarray]:
        """The raw camera dict (MATLAB layout, both spellings bound to the same arrays)."""
        return with_both_spellings({
            "IntrinsicMatrix": self.K.copy(),
            "RotationMatrix": self.R.copy(),
            "TranslationVector": self.t.reshape(1, 3).copy(),
            "TangentialDistortion": self.tangential.reshape(1, 2).copy(),
            "RadialDistortion": self.radial.reshape(1, -1).copy(),
        })

    def project(self, points_3d: np.ndarray) -> np.ndarray:
        """Project 3D points through this camera, lens distortion included, in its own pixel convention.

        Args:
            points_3d: ``(..., 3)`` positions in mm (world frame); NaN rows give NaN pixels.

        Returns:
            ``(..., 2)`` float64 pixel coordinates (x right, y down).

        Raises:
            ValueError: ``points_3d`` does not end in 3 coordinates.
        """
        points = np.asarray(points_3d, dtype=np.float64)
        if points.shape[-1:] != (3,):
            raise ValueError(f"points_3d must have shape (..., 3), got {points.shape}")
        K = self.K
        k1, k2, k3, p1, p2 = self.distortion

        # camera coordinates as three contiguous rows: every step below streams through memory once
        x, y, z = self.R.T @ points.reshape(-1, 3).T + self.t[:, None]
        out = np.empty((len(x), 2))
        # NaN markers (and points in the camera's plane, depth 0) give NaN or inf quietly
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            x /= z
            y /= z
            xy = x * y
            x2 = x * x
            y2 = y * y
            r2 = x2 + y2
            scale = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
            xd = x * scale + 2.0 * p1 * xy + p2 * (r2 + 2.0 * x2)
            yd = y * scale + p1 * (r2 + 2.0 * y2) + 2.0 * p2 * xy
            out[:, 0] = xd * K[0, 0] + yd * K[1, 0] + K[2, 0]
            out[:, 1] = xd * K[0, 1] + yd * K[1, 1] + K[2, 1]
        return out.reshape(*points.shape[:-1], 2)

    @property
    def skew(self) -> float:
        """The skew ``s = K[1, 0]`` in pixels; 0 for most calibrations."""
        return float(self.K[1, 0])

    @property
    def distortion(self) -> tuple[float, float, float, float, float]:
        """``(k1, k2, k3, p1, p2)``; ``k3 = 0`` when the camera has two radial coefficients."""
        radial = np.zeros(3)
        radial[: len(self.radial)] = self.radial
        p1, p2 = self.tangential.tolist()
        return float(radial[0]), float(radial[1]), float(radial[2]), p1, p2

    def in_convention(self, convention: str) -> Camera:
        """The same camera giving pixels in ``convention``: only the principal point moves (MATLAB's
        ``cameraIntrinsicsToOpenCV`` subtracts 1 to go 0-based; distortion acts on normalised coordinates)."""
        if convention == self.convention:
            return self
        K = self.K.copy()
        K[2, :2] = pixels.convert(K[2, :2], self.convention, convention)
        return replace(self, K=K, convention=convention)

    def to_zero_based(self) -> Camera:
        """The same camera giving 0-based pixels (principal point minus 1 from MATLAB's)."""
        return self.in_convention(pixels.ZERO_BASED)

    def to_matlab(self) -> Camera:
        """The same camera giving MATLAB's 1-based pixels."""
        return self.in_convention(pixels.MATLAB)

    def to_opencv(self, *, zero_based: bool = True, allow_skew: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """``(K_cv (3, 3), rvec (3, 1), tvec (3, 1), dist (5,))`` for ``cv2.projectPoints`` and friends.

        ``K_cv = K.T``, ``rvec = Rodrigues(R.T)``, ``tvec = t``, ``dist = [k1, k2, p1, p2, k3]``;
        ``zero_based`` gives 0-based pixels (as OpenCV numbers them), else MATLAB's.

        Raises:
            BadInputError: a non-zero skew (``cv2.projectPoints`` ignores it, up to 0.65 px off on a
                real rig) and ``allow_skew`` is False.
        """
        import cv2  # only this method needs OpenCV

        if self.skew != 0 and not allow_skew:
            msg = (
                f"camera has skew K[1, 0] = {self.skew:.6g} px, which cv2.projectPoints ignores (its pixels would "
                "be off); pass allow_skew=True to convert anyway, or project with rat7m.geometry.project"
            )
            raise BadInputError(msg)
        camera = self.in_convention(pixels.ZERO_BASED if zero_based else pixels.MATLAB)
        rvec, _ = cv2.Rodrigues(np.ascontiguousarray(self.R.T))
        k1, k2, k3, p1, p2 = self.distortion
        return camera.K.T.copy(), rvec.astype(np.float64), self.t.reshape(3, 1).copy(), np.array([k1, k2, p1, p2, k3])

    @classmethod
    def from_opencv(cls, K_cv: np.ndarray, rvec: np.ndarray, tvec: np.ndarray, dist: np.ndarray, *,
                    zero_based: bool = True) -> Camera:  # fmt: skip
        """A MATLAB-convention camera from OpenCV's ``K``, ``rvec``, ``tvec``, ``dist``: :meth:`to_opencv` inverted.

        ``dist`` is ``[k1, k2, p1, p2(, k3)]``; longer models are refused (MATLAB's cannot carry them).
        ``zero_based``: ``K_cv`` gives 0-based pixels (OpenCV's own calibrations).
        """
        import cv2

        dist = np.asarray(dist, dtype=np.float64).reshape(-1)
        if len(dist) < 4 or np.any(dist[5:] != 0):
            raise BadInputError(f"dist must be [k1, k2, p1, p2(, k3)], further terms zero; got {dist.tolist()}")
        rotation, _ = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64).reshape(3, 1))
        radial = dist[[0, 1, 4]] if len(dist) >= 5 else dist[[0, 1]]
        given = pixels.ZERO_BASED if zero_based else pixels.MATLAB
        camera = cls(K=np.asarray(K_cv, dtype=np.float64).reshape(3, 3).T.copy(), R=rotation.T.copy(),
                     t=np.asarray(tvec, dtype=np.float64).reshape(3).copy(), radial=radial.copy(),
                     tangential=dist[2:4].copy(), convention=given)  # fmt: skip
        return camera.to_matlab()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Camera):
            return NotImplemented
        return self.convention == other.convention and all(
            np.array_equal(getattr(self, k), getattr(other, k)) for k in ("K", "R", "t", "radial", "tangential"))

    __hash__ = None  # type: ignore[assignment]  # holds arrays: not hashable


#: What the camera functions accept: a :class:`Camera`, or a raw camera dict under either spelling.
CameraLike = Camera | Mapping[str, Any]


def unique_pairs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``(first, second)`` pairs, sorted, ``(k, 2)``, and each row's index into them, ``(n,)``.

    What ``np.unique(np.stack([first, second], axis=1), axis=0, return_inverse=True)`` gives, for a
    table's (subject, day) columns, ~10x faster: each column's distinct values, then one integer
    code per pair (sorting rows of a 2-column array is slow).
    """
    first_values, first_codes = np.unique(first, return_inverse=True)
    second_values, second_codes = np.unique(second, return_inverse=True)
    width = len(second_values)
    codes, inverse = np.unique(first_codes.ravel() * width + second_codes.ravel(), return_inverse=True)
    pairs = np.stack([first_values[codes // width], second_values[codes % width]], axis=1) if len(codes) else (
        np.empty((0, 2), dtype=np.result_type(first, second)))  # fmt: skip
    return pairs, inverse.ravel()


def _as_int(key: Any) -> int | None:
    try:
        value = float(key)
    except (TypeError, ValueError):
        return None
    return int(value) if value.is_integer() else None


class Table(dict):
    """A mini-RAT7M table: the table dict itself, with typed access to its rows and cameras.

    It is the dict (a ``dict`` subclass: ``table["table"]``, ``table["cameras"]``,
    ``table["camera_names"]``, ``isinstance(table, dict)``), so code that indexes the dict keeps
    working; what modules should use instead: :meth:`split_rows`, :meth:`recording_rows`,
    :meth:`recordings`, :meth:`cameras`, :attr:`pixel_convention` and :meth:`to_zero_based`.
    Pickled, it is the plain dict (the official layout; :func:`rat7m.table.save_annotation` writes
    tables). Built by :func:`rat7m.table.load_annotation` (validated); :meth:`of` wraps an
    unvalidated dict for functions that accept either.
    """

    def __init__(self, raw: Mapping, source: str = "table") -> None:
        super().__init__(raw)
        #: Where the table came from (its path), for messages.
        self.source = source
        # the mutable dict this Table wraps, where the detected pixel convention is remembered too
        self._origin = raw if isinstance(raw, MutableMapping) and not isinstance(raw, Table) else None

    @classmethod
    def of(cls, table: Mapping) -> Table:
        """``table`` itself if it is a :class:`Table`, else a Table over the same columns and cameras
        (not validated; the top level is copied, the arrays and inner dicts are shared)."""
        return table if isinstance(table, Table) else cls(table)

    @property
    def raw(self) -> dict:
        """The plain table dict (the official pickle's layout); its arrays and inner dicts are the table's."""
        return dict(self)

    def to_dict(self) -> dict:
        """The plain table dict (:attr:`raw`)."""
        return dict(self)

    def __reduce_ex__(self, protocol: Any) -> tuple:
        return dict, (dict(self),)  # pickled as the plain dict: what np.load and every reader expect

    def __copy__(self) -> Table:
        return Table(self, self.source)

    def __deepcopy__(self, memo: dict) -> Table:
        from copy import deepcopy

        return Table(deepcopy(dict(self), memo), self.source)

    def __repr__(self) -> str:
        return f"Table({self.source!r}, {self.n_samples} samples, cameras {', '.join(self.camera_names)})"

    # rows
    @property
    def columns(self) -> Mapping[str, Any]:
        """The per-sample columns (``table["table"]``)."""
        return self["table"]

    @property
    def camera_names(self) -> list[str]:
        """The table's cameras, in its ``camera_names`` order."""
        return [str(c) for c in self["camera_names"]]

    @property
    def n_samples(self) -> int:
        """Number of rows."""
        return len(self.columns["subject_idx"])

    def split_of(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The ``train_test`` value (``str``) of ``rows`` (default: every row)."""
        split = np.asarray(self.columns["train_test"]).astype(str)
        return split if rows is None else split[rows]

    def split_rows(self, split: str) -> np.ndarray:
        """Row indices of ``split`` (``"train"``, ``"test"`` or ``"all"``), in table order."""
        if split == "all":
            return np.arange(self.n_samples)
        return np.flatnonzero(self.split_of() == split)

    def _recording_ids(self, rows: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        columns = self.columns
        return (np.asarray(columns["subject_idx"])[rows].astype(np.int64),
                np.asarray(columns["day_idx"])[rows].astype(np.int64))  # fmt: skip

    def recording_mask(self, recording: catalogue.Recording, rows: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask over ``rows`` (default every row) of those of ``recording``: the one place
        rows are matched to recordings."""
        return self._masks([recording], rows)[0]

    def _masks(self, recordings: Sequence[catalogue.Recording], rows: np.ndarray | None) -> list[np.ndarray]:
        """Masks over ``rows`` of each recording, the columns converted once for all of them."""
        subject, day = self._recording_ids(slice(None) if rows is None else np.asarray(rows))
        return [(subject == rec.subject) & (day == rec.day) for rec in recordings]

    def recording_rows(self, recording: catalogue.Recording, rows: np.ndarray | None = None) -> np.ndarray:
        """Row indices of one recording (among ``rows``, default every row), in table order."""
        rows = np.arange(self.n_samples) if rows is None else np.asarray(rows)
        return rows[self.recording_mask(recording, rows)]

    def recording_masks(self, rows: np.ndarray | None = None) -> list[tuple[catalogue.Recording, np.ndarray]]:
        """``(recording, mask over rows)`` of every catalogue recording with rows among ``rows``, in catalogue order."""
        masks = zip(catalogue.RECORDINGS, self._masks(catalogue.RECORDINGS, rows), strict=True)
        return [(rec, mask) for rec, mask in masks if mask.any()]

    def recordings(self, rows: np.ndarray | None = None) -> list[tuple[catalogue.Recording, np.ndarray]]:
        """``(recording, row indices)`` of every catalogue recording with rows (among ``rows``), in catalogue order."""
        rows = np.arange(self.n_samples) if rows is None else np.asarray(rows)
        return [(rec, rows[mask]) for rec, mask in self.recording_masks(rows)]

    # cameras
    def raw_cameras(self, subject: int, day: int) -> Mapping[str, Mapping[str, Any]]:
        """The raw ``{camera name: params}`` dict of a recording; subject and day keys matched by value.

        Raises:
            KeyError: the table has no cameras for that subject and day.
        """
        for subject_key, days in self["cameras"].items():
            if _as_int(subject_key) == subject and isinstance(days, Mapping):
                for day_key, cameras in days.items():
                    if _as_int(day_key) == day:
                        return cameras
        raise KeyError(f"no cameras for subject {subject}, day {day}")

    def cameras(self, recording: catalogue.Recording, names: list[str] | None = None) -> dict[str, Camera]:
        """The :class:`Camera` of each of ``names`` (default the table's cameras) for a recording.

        Raises:
            KeyError: the table has no cameras for that recording.
        """
        raw = self.raw_cameras(recording.subject, recording.day)
        return {name: Camera.from_dict(raw[name]) for name in (names if names is not None else self.camera_names)}

    # pixels
    def detect_pixel_convention(self, sample_rows: int = pixels.SAMPLE_ROWS) -> pixels.Detection:
        """Detect the pixel convention of the 2D columns from the table itself (every time; see
        :attr:`pixel_convention` for the remembered answer).

        Projects the 3D keypoints of up to ``sample_rows`` evenly spread rows per recording and camera
        through their (MATLAB) cameras and takes the median difference to the stored ``2D_keypoints``:
        ~(0, 0) is MATLAB's convention, ~(-1, -1) a table stored 0-based.
        """
        columns = self.columns
        subjects = np.asarray(columns["subject_idx"]).astype(np.int64)
        days = np.asarray(columns["day_idx"]).astype(np.int64)
        points_3d = columns["3D_keypoints"]
        diffs: list[np.ndarray] = []
        pairs = unique_pairs(subjects, days)[0]
        for subject, day in pairs.tolist():  # every (subject, day) pair, catalogue recording or not
            rows = np.flatnonzero((subjects == subject) & (days == day))
            rows = rows[np.unique(np.linspace(0, len(rows) - 1, min(sample_rows, len(rows))).astype(np.int64))]
            try:
                cameras = self.raw_cameras(subject, day)
            except KeyError:
                continue
            xyz = np.asarray(points_3d[rows], dtype=np.float64)
            for name in self.camera_names:
                if name not in cameras:
                    continue
                stored = np.asarray(columns["2D_keypoints"][name][rows], dtype=np.float64)
                with np.errstate(all="ignore"):
                    diff = (stored - Camera.from_dict(cameras[name]).project(xyz)).reshape(-1, 2)
                diffs.append(diff[np.isfinite(diff).all(axis=1) & (np.abs(diff) < 1e6).all(axis=1)])
        found = np.concatenate(diffs) if diffs else np.empty((0, 2))
        if len(found) == 0:
            return pixels.Detection(None, (float("nan"), float("nan")), 0)
        offset = np.median(found, axis=0)
        convention = None
        if np.all(np.abs(offset) <= pixels.TOLERANCE_PX):
            convention = pixels.MATLAB
        elif np.all(np.abs(offset + pixels.MATLAB_OFFSET) <= pixels.TOLERANCE_PX):
            convention = pixels.ZERO_BASED
        return pixels.Detection(convention, (float(offset[0]), float(offset[1])), len(found))

    @property
    def pixel_convention(self) -> str:
        """The pixel convention of the 2D columns (:data:`rat7m.pixels.MATLAB` or ``ZERO_BASED``), detected once.

        The answer is remembered under :data:`rat7m.pixels.TABLE_KEY` (in the dict this Table wraps
        too, so ``Table.of(the_same_dict)`` does not detect again). A table with no row to detect from
        is taken as MATLAB's (the RAT7M cameras' own convention). ``$RAT7M_PIXEL_CONVENTION``
        (:data:`rat7m.pixels.ENV`) states it instead of detecting it.

        Raises:
            BadInputError: the stored 2D agree with neither convention (named with the offset found),
                or the environment variable names no convention.
        """
        convention = self.get(pixels.TABLE_KEY)
        if convention not in pixels.CONVENTIONS:
            convention = self._find_pixel_convention()
            self[pixels.TABLE_KEY] = convention
        if self._origin is not None:  # remembered in the dict this Table wraps too, for code that still passes it
            self._origin.setdefault(pixels.TABLE_KEY, convention)
        return convention

    def _find_pixel_convention(self) -> str:
        stated = os.environ.get(pixels.ENV)
        if stated:
            if stated not in pixels.CONVENTIONS:
                raise BadInputError(f"${pixels.ENV}={stated!r}; expected one of {', '.join(pixels.CONVENTIONS)}")
            log.info("pixel convention %s, as $%s says (not detected)", stated, pixels.ENV)
            return stated
        found = self.detect_pixel_convention()
        if found.n_points == 0:
            log.debug("%s", found.describe())
            return pixels.MATLAB
        if found.convention is None:
            env = pixels.ENV
            raise BadInputError(
                f"the table's 2D keypoints match neither pixel convention ({found.describe()}); "
                f"check it with rat7m-build-annotation --check, or state it with {env}=matlab or {env}=zero-based"
            )
        return found.convention

    def to_zero_based(self, xy: np.ndarray) -> np.ndarray:
        """Pixel coordinates in the table's convention as 0-based ones (a new array)."""
        return pixels.to_zero_based(xy, self.pixel_convention)

    def from_zero_based(self, xy: np.ndarray) -> np.ndarray:
        """0-based pixel coordinates as the table's convention's (a new array)."""
        return pixels.from_zero_based(xy, self.pixel_convention)
