"""Read 2D keypoint predictions (one row per sample and camera) for ``compute_metrics.py --pred2d``.

Two layouts, both in table order of the scored split and the table's camera order:

* CSV, one row per (sample, camera): ``sample,camera,x1,y1,...,x20,y20`` (42 cells) or, with a
  confidence per joint, ``sample,camera,x1,y1,c1,...,x20,y20,c20`` (62 cells). ``sample`` is the
  0-based index of the sample within the split, ``camera`` the table's camera name (``Camera1``);
  rows go sample 0 Camera1..Camera6, sample 1 Camera1..Camera6, ... An optional first line starting
  with ``sample`` is a header and is skipped. Pixel coordinates of the distorted image (x right,
  y down); every number finite, coordinates within the 3D reader's bound (1e100); confidences
  from 0 (not detected, the view is left out of triangulation) to 1e6, the tools' readers' bound.
* ``.npz`` holding one array (or one named ``keypoints_2d``) of shape ``(N, V, 20, 2)``, or
  ``(N, V, 20, 3)`` with the confidence last.

Pixels are 0-based image coordinates by default (the top-left pixel's centre is (0, 0)), as every
detector, OpenCV, COCO, DeepLabCut, SLEAP and YOLO write them; ``--pred2d-convention matlab`` reads
a file in MATLAB's 1-based convention (the RAT7M cameras', and so the table's own ``2D_keypoints``).
``compute_metrics.py`` converts them to the table's convention before scoring and to MATLAB's
before triangulating through the table's cameras (:mod:`rat7m.pixels`).

Numbers are checked with the 3D reader's own helpers, so both readers accept the same number syntax.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metric_utils import compute_metrics as cm
from metric_utils.metrics import MAX_MAGNITUDE
from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.fileio import check_input
from rat7m.toolpreds.common import MAX_CONFIDENCE

#: Name of the array in an ``.npz`` prediction file when it holds more than one.
NPZ_KEY = "keypoints_2d"
#: Leading label cells of a CSV row.
LABELS = ("sample", "camera")


@dataclass(frozen=True)
class Predictions2D:
    """2D predictions of a split: ``points`` (N, V, J, 2) px and ``confidence`` (N, V, J) or None."""

    points: np.ndarray
    confidence: np.ndarray | None


def read_predictions_2d(path: str | Path, n_samples: int, camera_names: list[str]) -> Predictions2D:
    """Read and check a 2D prediction file against the split it scores.

    Args:
        path: ``.npz`` by suffix, anything else CSV (see the module docstring).
        n_samples: samples in the split (rows expected: ``n_samples * len(camera_names)``).
        camera_names: the table's camera names in order.

    Raises:
        BadInputError: naming the line and column (CSV) of the first problem.
    """
    path = check_input(path, "2D prediction file", max_bytes=None)  # a FIFO or a link loop: said as such
    if path.suffix.lower() == ".npz":
        values = _read_npz(path, n_samples, len(camera_names))
    else:
        values = _read_csv(path, n_samples, camera_names)
    points, confidence = values[..., :2], (values[..., 2] if values.shape[-1] == 3 else None)
    big = np.abs(points) > MAX_MAGNITUDE  # the 3D reader's bound: beyond it, squares overflow the error arithmetic
    if big.any():
        sample, view, joint, axis = np.argwhere(big)[0]
        msg = (f"{path} sample {sample}, {camera_names[view]}, joint {joint}: {'xy'[axis]} = "
               f"{points[sample, view, joint, axis]:g} px is beyond the bound {MAX_MAGNITUDE:g}; check its units")
        raise BadInputError(msg)
    if confidence is not None and (confidence > MAX_CONFIDENCE).any():  # the tools' readers' bound
        sample, view, joint = np.argwhere(confidence > MAX_CONFIDENCE)[0]
        msg = (f"{path} sample {sample}, {camera_names[view]}, joint {joint}: confidence "
               f"{confidence[sample, view, joint]:g} is above {MAX_CONFIDENCE:g}; confidences are weights, 0 to 1")
        raise BadInputError(msg)
    return Predictions2D(np.ascontiguousarray(points), confidence)


def _read_npz(path: Path, n_samples: int, n_views: int) -> np.ndarray:
    """The one prediction array of an ``.npz``: its declared shape and its member's size checked before reading.

    Only the expected ``(n_samples, n_views, 20, 2|3)`` array is ever read, so neither a header
    declaring petabytes nor a zip bomb (a member that inflates far beyond its file) costs memory.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = {name[: -len(".npy")]: name for name in archive.namelist() if name.endswith(".npy")}
            key = NPZ_KEY if NPZ_KEY in members else (next(iter(members)) if len(members) == 1 else None)
            if key is None:
                raise BadInputError(f"{path} holds arrays {list(members)}; name the prediction array {NPZ_KEY!r}")
            info = archive.getinfo(members[key])
            with archive.open(info) as handle:
                shape, dtype, fortran = cm.npy_header(handle, info.file_size, f"{path} array {key!r}")
                want = f"({n_samples}, {n_views}, {catalogue.N_JOINTS}, 2 or 3)"
                if len(shape) != 4 or shape[:3] != (n_samples, n_views, catalogue.N_JOINTS) or shape[3] not in (2, 3):
                    raise BadInputError(f"{path} array {key!r} has shape {shape}; expected {want}")
                size = int(np.prod(shape)) * dtype.itemsize
                data = handle.read(size + 1)
    except BadInputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BadInputError(f"{path} is not a readable .npz archive ({str(exc).splitlines()[0][:200]})") from None
    if len(data) != size:
        raise BadInputError(f"{path} array {key!r} holds {len(data)} bytes of data; its shape {shape} needs {size}")
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").astype(np.float64)
    bad = ~np.isfinite(array) | ((np.arange(array.shape[3]) == 2) & (array < 0))
    if bad.any():
        sample, view, joint, k = np.argwhere(bad)[0]
        value = array[sample, view, joint, k]
        msg = (f"{path} array {key!r} sample {sample}, camera {view + 1}, joint {joint}: {value} is not allowed; "
               "coordinates must be finite and confidences at least 0")  # fmt: skip
        raise BadInputError(msg)
    return array


#: Rows parsed at a time: memory stays the result array plus one block of text.
BLOCK_ROWS = 1 << 15
#: Longest row read (characters): 62 numbers at full precision take ~1.5 KB.
MAX_LINE = 1 << 16


def _read_csv(path: Path, n_samples: int, camera_names: list[str]) -> np.ndarray:
    """``(n_samples, V, 20, 2|3)`` values, streamed: the file is read in blocks of rows into the result array."""
    V, J = len(camera_names), catalogue.N_JOINTS
    expected = n_samples * V
    out: np.ndarray | None = None
    bodies: list[str] = []
    first = 1
    count = 0
    try:
        with path.open("r", encoding="utf-8-sig", newline=None) as handle:
            for number, line in enumerate(iter(lambda: handle.readline(MAX_LINE + 1), ""), start=1):
                if len(line) > MAX_LINE:
                    raise BadInputError(f"{path} line {number} is longer than {MAX_LINE} characters: not a row")
                line = line.rstrip("\n")
                if number == 1 and line.split(",", 1)[0].strip().lower() == LABELS[0]:
                    first = 2  # the optional header
                    continue
                if not line.strip():
                    if count >= expected:
                        continue  # trailing blank lines
                    raise BadInputError(f"{path} line {number} is empty; expected sample,camera,x1,y1,...")
                index = count
                count += 1
                if count > expected:
                    continue  # counted only, for the message below
                bodies.append(_body(path, line, number, index, camera_names))
                if out is None:
                    out = _allocate(path, bodies[0], expected, first)
                if len(bodies) == BLOCK_ROWS:
                    start = index + 1 - len(bodies)
                    out[start : index + 1] = _numbers(path, bodies, out.shape[1], start + first)
                    bodies = []
    except OSError as exc:
        raise BadInputError(f"cannot read 2D prediction file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BadInputError(f"{path} is not UTF-8 text; expected a CSV of numbers") from None
    if count != expected:
        msg = (f"{path} has {count} prediction rows; the split has {n_samples} samples x {V} cameras = "
               f"{expected} (one row per sample and camera, in table order)")  # fmt: skip
        raise BadInputError(msg)
    if out is None:
        out = np.empty((0, 2 * J))
    if bodies:
        out[count - len(bodies) :] = _numbers(path, bodies, out.shape[1], count - len(bodies) + first)
    return out.reshape(n_samples, V, J, out.shape[1] // J)


def _body(path: Path, line: str, number: int, index: int, camera_names: list[str]) -> str:
    """The numbers of one row (text after ``sample,camera``), its labels checked against its place."""
    cells = line.split(",", 2)
    if len(cells) < 3:
        # the label cells are not numbers, so the 3D reader's separator sniffing does not apply
        separator = next((s for s in (";", "\t", " ") if s in line.strip()), None)
        if separator is not None:
            raise BadInputError(f"{path} line {number}: values must be comma-separated (found {separator!r})")
        raise BadInputError(f"{path} line {number} has {len(cells)} columns; expected sample,camera,x1,y1,...")
    V = len(camera_names)
    sample, camera = index // V, camera_names[index % V]
    if cells[0].strip() != str(sample):
        found = cells[0].strip()[:30]
        msg = f"{path} line {number}, column 1: {found!r}; expected sample {sample} (rows in table order)"
        raise BadInputError(msg)
    if cells[1].strip() != camera:
        found = cells[1].strip()[:30]
        msg = f"{path} line {number}, column 2: {found!r}; expected camera {camera} (table camera order)"
        raise BadInputError(msg)
    return cells[2]


def _allocate(path: Path, body: str, rows: int, first: int) -> np.ndarray:
    """The result array, its width (x,y or x,y,c per joint) from the first row."""
    J = catalogue.N_JOINTS
    width = body.count(",") + 1
    if width not in (2 * J, 3 * J):
        msg = f"{path} line {first} has {width + 2} columns; expected {2 + 2 * J} (x,y) or {2 + 3 * J} (x,y,c)"
        raise BadInputError(msg)
    return np.empty((rows, width))


def _numbers(path: Path, bodies: list[str], width: int, first: int) -> np.ndarray:
    """``(rows, width)`` numbers: numpy's parser first, then line by line to name the first bad cell."""
    try:
        rows = np.loadtxt(io.StringIO("\n".join(bodies)), delimiter=",", comments=None, dtype=np.float64, ndmin=2)
    except ValueError:
        rows = None
    parsed = rows is not None and rows.shape == (len(bodies), width)
    if parsed and np.isfinite(rows).all() and _confidence_ok(rows, width):
        return rows
    for index, body in enumerate(bodies):
        cells = body.split(",")
        number = index + first
        if len(cells) != width:
            raise BadInputError(f"{path} line {number} has {len(cells) + 2} columns; expected {width + 2}")
        for column, cell in enumerate(cells, start=3):
            if not cm._is_number(cell) or not np.isfinite(float(cell)):
                msg = f"{path} line {number}, column {column}: {cell.strip()[:30]!r} is not a finite number"
                raise BadInputError(msg)
            if width % 3 == 0 and width != 2 * catalogue.N_JOINTS and (column - 3) % 3 == 2 and float(cell) < 0:
                raise BadInputError(f"{path} line {number}, column {column}: confidence {cell.strip()} is below 0")
    raise BadInputError(f"{path}: not a CSV of numbers")  # unreachable in practice: numpy and the check disagree


def _confidence_ok(rows: np.ndarray, width: int) -> bool:
    return width == 2 * catalogue.N_JOINTS or bool((rows[:, 2::3] >= 0).all())
