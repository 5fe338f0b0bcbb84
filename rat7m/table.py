"""The mini-RAT7M annotation table: its schema, atomic save, and safe, validated load.

The table is the hub of the workflow (frame extraction, training, metrics, the notebook). Its
layout is the official ``mini_rat7m_train_test_annotation.pkl``'s::

    {"cameras": {subject: {day: {"Camera1": {camera params}, ...}}},
     "camera_names": array(["Camera1", ..., "Camera6"]),
     "table": {"subject_idx": (N,), "day_idx": (N,), "train_test": (N,) "train" / "test",
               "frame_idx": {cam: (N,)}, "image_path": {cam: (N,)},
               "2D_keypoints": {cam: (N, 20, 2)}, "2D_com": {cam: (N, 2)}, "3D_keypoints": (N, 20, 3)}}

Tables are plain pickles of that dict, so ``np.load(path, allow_pickle=True)`` (as the dataset
documentation does) returns the dict too; but :func:`load_annotation` never runs code from the
file (see :mod:`rat7m.safe_pickle`) and checks the schema before anyone indexes into it.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.fileio import atomic_write, remove_stale_temporaries
from rat7m.model import (
    MAT_SPELLING,
    SIZES,
    Table,
    camera_param,
    disagreeing_spellings,
    mat_spellings,
    spellings_of,
    unique_pairs,
    with_both_spellings,
)
from rat7m.pixels import TABLE_KEY as PIXEL_CONVENTION_KEY
from rat7m.safe_pickle import safe_load

__all__ = [
    "CAMERA_COLUMNS", "CAMERA_PARAM_SIZES", "PICKLE_PROTOCOL", "SAMPLE_COLUMNS", "TABLE_KEYS", "TOP_KEYS",
    "cameras_of", "load_annotation", "save_annotation", "validate_annotation", "with_camera_spellings",
]

log = logging.getLogger(__name__)

#: Top-level keys of a table.
TOP_KEYS = ("cameras", "camera_names", "table")
#: Columns holding one value per sample.
SAMPLE_COLUMNS = ("subject_idx", "day_idx", "train_test", "3D_keypoints")
#: Columns holding a ``{camera name: per-sample array}`` dict.
CAMERA_COLUMNS = ("frame_idx", "image_path", "2D_keypoints", "2D_com")
#: Every key of ``table["table"]``.
TABLE_KEYS = SAMPLE_COLUMNS + CAMERA_COLUMNS
#: Camera parameters every table camera must carry, with their allowed sizes (any 1x/row shape).
#: Spelled as the ``.mat`` files (and, by the evidence, the official table) spell them; the
#: documentation's ``RotationMatrix`` / ``TranslationVector`` are accepted too, and a loaded table
#: carries both spellings bound to the same arrays (:func:`rat7m.geometry.with_both_spellings`).
CAMERA_PARAM_SIZES: dict[str, tuple[int, ...]] = {MAT_SPELLING[name]: sizes for name, sizes in SIZES.items()}
#: Pickle protocol of saved tables: 4 is read by every Python 3 from 3.4 and by numpy 1.x and 2.x.
PICKLE_PROTOCOL = 4


def _fail(source: str, where: str, expected: str, found: str) -> BadInputError:
    return BadInputError(f"{source}: {where}: expected {expected}, found {found}")


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    return f"a {type(value).__name__}"


def _require_dict(value: Any, source: str, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise _fail(source, where, "a dict", _describe(value))
    return value


def _require_keys(mapping: Mapping, keys: tuple[str, ...], source: str, where: str) -> None:
    missing = [k for k in keys if k not in mapping]
    if missing:
        found = ", ".join(repr(k) for k in mapping) or "no keys"
        msg = f"{source}: {where} lacks key(s) {', '.join(repr(k) for k in missing)} (found: {found})"
        raise BadInputError(msg)


def _is_whole(array: np.ndarray) -> bool:
    """True for an integer array, or a float one whose values are all finite whole numbers."""
    if array.dtype.kind in "iu":
        return True
    if array.dtype.kind != "f":
        return False
    return bool(np.all(np.isfinite(array)) and np.all(array == np.round(array)))


def _is_text(array: np.ndarray) -> bool:
    """True for a numpy unicode array, or an object array holding only ``str``."""
    if array.dtype.kind == "U":
        return True
    return array.dtype.kind == "O" and all(isinstance(v, str) for v in array.reshape(-1))


def _check_column(value: Any, n: int, tail: tuple[int, ...], kind: str, source: str, where: str) -> np.ndarray:
    """Check one per-sample array: an ndarray of shape ``(n, *tail)`` holding ``kind`` values."""
    expected_shape = "(" + ", ".join(str(d) for d in (n, *tail)) + (",)" if not tail else ")")
    if not isinstance(value, np.ndarray):
        raise _fail(source, where, f"a numpy array of shape {expected_shape}", _describe(value))
    if value.shape != (n, *tail):
        raise _fail(source, where, f"shape {expected_shape}", f"shape {value.shape}")
    if kind == "whole" and not _is_whole(value):
        raise _fail(source, where, "whole numbers (integer dtype)", f"dtype {value.dtype} with non-integer values")
    if kind == "float" and value.dtype.kind not in "fiu":
        raise _fail(source, where, "numbers (float dtype)", f"dtype {value.dtype}")
    if kind == "text" and not _is_text(value):
        raise _fail(source, where, "strings (unicode dtype)", f"dtype {value.dtype}")
    return value


def _camera_names(value: Any, source: str) -> list[str]:
    names = list(value) if isinstance(value, (np.ndarray, list, tuple)) else None
    # all-str items make a list 1-D; np.ndim on a ragged list would raise instead of answering
    if names is None or not names or not all(isinstance(v, str) for v in names) or np.ndim(value) != 1:
        raise _fail(source, "camera_names", "a non-empty 1-D array of camera names", _describe(value))
    unknown = [v for v in names if v not in catalogue.CAMERA_NAMES]
    if unknown or len(set(names)) != len(names):
        found = ", ".join(names)
        raise _fail(source, "camera_names", f"distinct names among {', '.join(catalogue.CAMERA_NAMES)}", found)
    return [str(v) for v in names]


def cameras_of(table: Mapping, subject: int, day: int) -> Mapping[str, Mapping[str, np.ndarray]]:
    """The raw ``{camera name: params}`` dict of a recording (:meth:`rat7m.model.Table.raw_cameras`).

    Subject and day keys are matched by value, so tables keyed by ``int``, numpy integers or
    whole floats all work. Typed code uses :meth:`rat7m.model.Table.cameras` instead.

    Raises:
        KeyError: the table has no cameras for that subject and day.
    """
    return Table.of(table).raw_cameras(subject, day)


def _check_cameras(table: Mapping, recordings: list[catalogue.Recording], names: list[str], source: str) -> None:
    _require_dict(table["cameras"], source, "cameras")
    for rec in recordings:
        where = f"cameras[{rec.subject}][{rec.day}]"
        try:
            cameras = _require_dict(cameras_of(table, rec.subject, rec.day), source, where)
        except KeyError:
            msg = f"{source}: cameras has no entry for subject {rec.subject}, day {rec.day} ({rec.name}) of the samples"
            raise BadInputError(msg) from None
        _require_keys(cameras, tuple(names), source, where)
        for cam in names:
            params = _require_dict(cameras[cam], source, f"{where}[{cam!r}]")
            differ = disagreeing_spellings(params)
            if differ:
                raise _fail(source, f"{where}[{cam!r}]", f"{differ[0]!r} and {differ[1]!r} equal", "different values")
            for key, sizes in CAMERA_PARAM_SIZES.items():
                try:
                    value = camera_param(params, key)
                except KeyError:
                    spelled = " or ".join(repr(s) for s in (key, *(s for s in spellings_of(key) if s != key)))
                    found = ", ".join(repr(k) for k in params) or "no keys"
                    raise BadInputError(f"{source}: {where}[{cam!r}] lacks key(s) {spelled} (found: {found})") from None
                ok = isinstance(value, np.ndarray) and value.dtype.kind in "fiu" and value.size in sizes
                if not ok:
                    want = " or ".join(str(s) for s in sizes)
                    expected = f"a numeric array of {want} values"
                    raise _fail(source, f"{where}[{cam!r}][{key!r}]", expected, _describe(value))


def validate_annotation(annotation: Any, source: str = "table") -> dict:
    """Check that ``annotation`` has the mini-RAT7M table layout; raise a precise error if not.

    Checks the keys, that every per-sample array has ``N = len(subject_idx)`` rows and the right
    trailing shape ((N, 20, 2) 2D keypoints, (N, 2) centres, (N, 20, 3) 3D keypoints), that indices
    are whole numbers, that strings are strings, that ``camera_names`` are catalogue cameras with
    a column in every per-camera dict, that ``train_test`` holds only ``"train"``/``"test"``,
    and that every (subject, day) is a catalogue recording with all its cameras in ``cameras``.
    Extra keys (e.g. an official table's extra columns) are allowed and kept.

    Args:
        annotation: the unpickled object.
        source: name used in error messages (usually the file path).

    Returns:
        ``annotation`` itself, unchanged.

    Raises:
        BadInputError: naming the key, what was expected and what was found.
    """
    top = _require_dict(annotation, source, "the table")
    _require_keys(top, TOP_KEYS, source, "the table")
    names = _camera_names(top["camera_names"], source)
    columns = _require_dict(top["table"], source, "table")
    _require_keys(columns, TABLE_KEYS, source, "table")

    subject_idx = columns["subject_idx"]
    if not isinstance(subject_idx, np.ndarray) or subject_idx.ndim != 1:
        raise _fail(source, "table['subject_idx']", "a 1-D numpy array", _describe(subject_idx))
    n = len(subject_idx)
    _check_column(subject_idx, n, (), "whole", source, "table['subject_idx']")
    day_idx = _check_column(columns["day_idx"], n, (), "whole", source, "table['day_idx']")
    split = _check_column(columns["train_test"], n, (), "text", source, "table['train_test']")
    _check_column(columns["3D_keypoints"], n, (catalogue.N_JOINTS, 3), "float", source, "table['3D_keypoints']")
    split = split.astype(str)
    known = np.zeros(n, dtype=bool)
    for name in catalogue.SPLITS:  # comparisons, not a sort of every string (np.unique)
        known |= split == name
    bad_split = sorted(set(np.unique(split[~known]).tolist()))
    if bad_split:
        raise _fail(source, "table['train_test']", "only 'train' or 'test'", ", ".join(map(repr, bad_split)))

    tails = {"frame_idx": ((), "whole"), "image_path": ((), "text"),
             "2D_keypoints": ((catalogue.N_JOINTS, 2), "float"), "2D_com": ((2,), "float")}  # fmt: skip
    for key, (tail, kind) in tails.items():
        per_camera = _require_dict(columns[key], source, f"table[{key!r}]")
        _require_keys(per_camera, tuple(names), source, f"table[{key!r}]")
        for cam in names:
            _check_column(per_camera[cam], n, tail, kind, source, f"table[{key!r}][{cam!r}]")

    subjects, days = subject_idx.astype(np.int64), day_idx.astype(np.int64)
    recordings = []
    for subject, day in unique_pairs(subjects, days)[0].tolist():
        try:
            recordings.append(catalogue.recording_for(subject, day))
        except KeyError:
            valid = ", ".join(r.name for r in catalogue.RECORDINGS)
            row = int(np.flatnonzero((subjects == subject) & (days == day))[0])
            raise _fail(source, "table['subject_idx'] and ['day_idx']", f"a RAT7M recording ({valid})",
                        f"subject {subject}, day {day} (first at row {row})") from None  # fmt: skip
    _check_cameras(top, recordings, names, source)
    extra = [repr(k) for k in top if k not in TOP_KEYS] + [f"table[{k!r}]" for k in columns if k not in TABLE_KEYS]
    if extra:
        log.debug("%s: ignoring key(s) the toolkit does not use: %s", source, ", ".join(map(str, extra)))
    return annotation


def load_annotation(path: str | os.PathLike) -> Table:
    """Load an annotation table safely (no code from the file runs) and validate its layout.

    Reads a plain pickle (the official ``mini_rat7m_train_test_annotation.pkl``, or ours) or a
    ``.npy`` file holding the dict (``np.save``); unpickling allows only numpy arrays, dtypes and
    scalars besides plain Python containers and numbers.

    Args:
        path: the table file.

    Returns:
        A :class:`rat7m.model.Table`: typed access to rows, cameras and the pixel convention, and
        the table dict itself (:attr:`~rat7m.model.Table.raw`), which it also behaves as
        (``table["table"]`` ...); cameras carry both spellings of the extrinsics (same arrays).

    Raises:
        BadInputError: unreadable, truncated or corrupt file; a pickle that names anything else
            (e.g. ``os.system``), refused before it runs; or a table whose layout is wrong, naming
            the key, what was expected and what was found.
    """
    return Table(with_camera_spellings(validate_annotation(safe_load(path), str(path))), str(path))


def with_camera_spellings(table: dict) -> dict:
    """Give every camera dict of ``table["cameras"]`` every spelling (same arrays), in place.

    So code written after the dataset documentation (``RotationMatrix``) and after the authors'
    code (``rotationMatrix``) both work, whichever spelling the file holds.
    """
    for days in table["cameras"].values():
        if isinstance(days, dict):
            for day, cameras in days.items():
                if isinstance(cameras, dict):
                    days[day] = {cam: with_both_spellings(p) if isinstance(p, Mapping) else p
                                 for cam, p in cameras.items()}  # fmt: skip
    return table


def save_annotation(table: Mapping, path: str | os.PathLike) -> None:
    """Validate ``table`` and write it as a plain pickle, atomically (temporary file, then rename).

    Cameras are written with the ``.mat``'s own spellings only (``rotationMatrix``,
    ``translationVector``), as the official table holds them, so the two are interchangeable.

    ``np.load(path, allow_pickle=True)`` and :func:`load_annotation` both return the dict.

    Raises:
        BadInputError: ``table`` does not have the mini-RAT7M layout (nothing is written).
    """
    path = Path(path)
    table = Table.of(table).raw
    validate_annotation(table, "table to save")
    out = {key: value for key, value in table.items() if key != PIXEL_CONVENTION_KEY}
    out["cameras"] = {
        subject: {day: {cam: mat_spellings(p) for cam, p in cams.items()} for day, cams in days.items()}
        for subject, days in table["cameras"].items()
    }
    remove_stale_temporaries(path.parent, {path.name})  # a killed run's (SIGKILL) partial table
    with atomic_write(path) as f:
        pickle.dump(out, f, protocol=PICKLE_PROTOCOL)
