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

Both are read with the 3D reader's own helpers, so the readers accept the same number syntax, keep
the same bound (coordinates at most :data:`~metric_utils.metrics.MAX_MAGNITUDE` in absolute value,
so no pixel error can overflow to inf and drop out of a mean) and the same memory: the CSV is parsed
in blocks into an array of the expected size (labels checked in bulk, numbers by numpy's C parser
once their bytes are known to be safe), and an ``.npz`` member is read only after its declared
shape, its header and its uncompressed size agree with the split (a small file cannot declare a
huge array, nor a zip member inflate beyond it). Confidences lie in ``[0, MAX_CONFIDENCE]``.
"""

from __future__ import annotations

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


def _bounds(width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-column ``(low, high)`` of ``width`` values per joint (x, y, and a confidence if 3)."""
    low = np.array([-MAX_MAGNITUDE, -MAX_MAGNITUDE, 0.0][:width])
    high = np.array([MAX_MAGNITUDE, MAX_MAGNITUDE, MAX_CONFIDENCE][:width])
    return low, high


def _problem(value: float, is_confidence: bool) -> str:
    """Why ``value`` is refused (it is outside :func:`_bounds`)."""
    if not np.isfinite(value):
        return f"{str(value)!r} is not a finite number"
    if is_confidence:
        return f"confidence {value:g} is below 0" if value < 0 else f"confidence {value:g} is above {MAX_CONFIDENCE:g}"
    return f"{value:g} is beyond the bound {MAX_MAGNITUDE:g} (larger values overflow the error arithmetic)"


# --------------------------------------------------------------------------------------------- .npz


def _read_npz(path: Path, n_samples: int, n_views: int) -> np.ndarray:
    want = f"({n_samples}, {n_views}, {catalogue.N_JOINTS}, 2 or 3)"
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            key = NPZ_KEY if NPZ_KEY in members else (next(iter(members)) if len(members) == 1 else None)
            if key is None:
                raise BadInputError(f"{path} holds arrays {list(members)}; name the prediction array {NPZ_KEY!r}")
            info = members[key]
            with archive.open(info) as handle:  # reads at most info.file_size bytes, whatever it inflates to
                array = cm.read_npy_data(
                    handle, f"{path} array {key!r}",
                    lambda shape: shape[:3] == (n_samples, n_views, catalogue.N_JOINTS) and shape[3:] in ((2,), (3,)),
                    want, info.file_size,
                )  # fmt: skip
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
        raise BadInputError(f"{path} is not a readable .npz archive ({str(exc).splitlines()[0][:200]})") from None
    array = array.astype(np.float64, copy=False)
    bad = cm.first_out_of_bounds(array, *_bounds(array.shape[3]))
    if bad is not None:
        sample, view, joint, k = bad
        msg = (f"{path} array {key!r} sample {sample}, camera {view + 1}, joint {joint}: "
               f"{_problem(array[bad], k == 2)}; coordinates must be finite and confidences at least 0")  # fmt: skip
        raise BadInputError(msg)
    return array


# --------------------------------------------------------------------------------------------- CSV


def _read_csv(path: Path, n_samples: int, camera_names: list[str]) -> np.ndarray:
    """(N, V, J, 2 or 3) values of a CSV, read in blocks: memory is the result plus one block."""
    V, J = len(camera_names), catalogue.N_JOINTS
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise BadInputError(f"cannot read 2D prediction file {path}: {exc.strerror}") from None
    with handle:
        try:
            first = handle.readline(1 << 20)
            bom = 3 if first.startswith(b"\xef\xbb\xbf") else 0
            header = first[bom:].split(b",", 1)[0].strip().lower() == LABELS[0].encode()
            handle.seek(0)
            n_rows = cm._count_rows(handle) - header
            if n_rows != n_samples * V:
                msg = (f"{path} has {max(n_rows, 0)} prediction rows; the split has {n_samples} samples x {V} cameras "
                       f"= {n_samples * V} (one row per sample and camera, in table order)")  # fmt: skip
                raise BadInputError(msg)
            handle.seek(bom + (len(first) - bom if header else 0))
            reader = _CsvReader(path, n_rows, camera_names, first=1 + header)
            while chunk := handle.read(cm.CSV_BLOCK_BYTES):
                reader.feed(chunk)
            values = reader.finish()
        except OSError as exc:
            raise BadInputError(f"cannot read 2D prediction file {path}: {exc.strerror or exc}") from None
    return values.reshape(n_samples, V, J, values.shape[1] // J)


class _CsvReader:
    """Blocks of whole lines in, rows of numbers out; the first problem raised with its line and column."""

    def __init__(self, path: Path, n_rows: int, camera_names: list[str], first: int) -> None:
        self.path, self.n_rows, self.cameras, self.first = path, n_rows, camera_names, first
        self.prefixes = [f",{camera},".encode() for camera in camera_names]
        self.values: np.ndarray | None = None
        self.done = 0
        self.tail = b""

    def feed(self, chunk: bytes) -> None:
        block = self.tail + chunk
        cut = block.rfind(b"\n") + 1
        self.block(block[:cut])
        self.tail = block[cut:]

    def finish(self) -> np.ndarray:
        self.block(self.tail)
        if self.values is None or self.done != self.n_rows:  # the file changed between counting and reading
            raise BadInputError(f"{self.path} changed while it was read; read it again")
        return self.values

    def block(self, block: bytes) -> None:
        lines = block.split(b"\n")
        if lines and not lines[-1]:
            lines.pop()
        lines, past = lines[: self.n_rows - self.done], lines[self.n_rows - self.done :]
        if any(line.strip() for line in past):  # past the count may be only the file's trailing blank lines
            raise BadInputError(f"{self.path} changed while it was read; read it again")
        if not lines:
            return
        bodies = [self._body(line, self.done + i) for i, line in enumerate(lines)]
        if self.values is None:
            self.values = np.empty((self.n_rows, self._width(bodies[0])))
        rows = cm._fast_parse(b"\n".join(bodies), len(bodies), self.values.shape[1])
        if rows is None:
            rows = self._slow_parse(bodies)
        low, high = _bounds(self.values.shape[1] // catalogue.N_JOINTS)
        bad = cm.first_out_of_bounds(rows.reshape(len(rows), -1, len(low)), low, high)
        if bad is not None:
            row, joint, k = bad
            column = 3 + joint * len(low) + k
            cell = rows[row].reshape(-1, len(low))[joint, k]
            number = self.first + self.done + row
            raise BadInputError(f"{self.path} line {number}, column {column}: {_problem(cell, k == 2)}")
        self.values[self.done : self.done + len(rows)] = rows
        self.done += len(rows)

    def _body(self, line: bytes, index: int) -> bytes:
        """The numbers of a line, once its labels are the expected ``sample,camera``."""
        sample, camera = divmod(index, len(self.cameras))
        label = str(sample).encode()
        prefix = self.prefixes[camera]
        if line.startswith(label) and line.startswith(prefix, len(label)):
            return line[len(label) + len(prefix) :]
        number = self.first + index
        text = line.decode("utf-8", errors="replace").rstrip("\r")
        cells = text.split(",", 2)
        if len(cells) < 3:
            # the label cells are not numbers, so the 3D reader's separator sniffing does not apply
            separator = next((s for s in (";", "\t", " ") if s in text.strip()), None)
            if separator is not None:
                raise BadInputError(f"{self.path} line {number}: values must be comma-separated (found {separator!r})")
            msg = f"{self.path} line {number} has {len(cells)} columns; expected sample,camera,x1,y1,..."
            raise BadInputError(msg)
        if cells[0].strip() != str(sample):
            found = cells[0].strip()[:30]
            msg = f"{self.path} line {number}, column 1: {found!r}; expected sample {sample} (rows in table order)"
            raise BadInputError(msg)
        if cells[1].strip() != self.cameras[camera]:
            found = cells[1].strip()[:30]
            msg = (f"{self.path} line {number}, column 2: {found!r}; expected camera {self.cameras[camera]} "
                   "(table camera order)")  # fmt: skip
            raise BadInputError(msg)
        return cells[2].encode()

    def _width(self, body: bytes) -> int:
        width = body.count(b",") + 1
        if width not in (2 * catalogue.N_JOINTS, 3 * catalogue.N_JOINTS):
            msg = (f"{self.path} line {self.first} has {width + 2} columns; expected {2 + 2 * catalogue.N_JOINTS} "
                   f"(x,y) or {2 + 3 * catalogue.N_JOINTS} (x,y,c)")  # fmt: skip
            raise BadInputError(msg)
        return width

    def _slow_parse(self, bodies: list[bytes]) -> np.ndarray:
        """Line by line: name the first line of the wrong width or the first cell that is not a number."""
        width = self.values.shape[1]
        rows = np.empty((len(bodies), width))
        for index, body in enumerate(bodies):
            cells = body.decode("utf-8", errors="replace").rstrip("\r").split(",")
            number = self.first + self.done + index
            if len(cells) != width:
                raise BadInputError(f"{self.path} line {number} has {len(cells) + 2} columns; expected {width + 2}")
            for column, cell in enumerate(cells, start=3):
                if not cm._is_number(cell):
                    msg = f"{self.path} line {number}, column {column}: {cell.strip()[:30]!r} is not a finite number"
                    raise BadInputError(msg)
                rows[index, column - 3] = float(cell)
        return rows
