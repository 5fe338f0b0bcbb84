"""Prediction files: every reader (3D and 2D, ours and the tools') and the writer of our 3D format.

3D (``--pred_path``): one row per sample of the scored split, in table order, as a headerless CSV
of 60 numbers per row (x, y, z of joint 0, then of joint 1, ..., in ``catalogue.JOINT_NAMES``
order), or a ``.npy`` array of shape (N, 20, 3) (or (N, 60)).

2D (``--pred2d``, and what the renderer draws), in table order of the split and the table's camera
order:

* CSV, one row per (sample, camera): ``sample,camera,x1,y1,...,x20,y20`` (42 cells) or, with a
  confidence per joint, ``sample,camera,x1,y1,c1,...,x20,y20,c20`` (62 cells). ``sample`` is the
  0-based index of the sample within the split, ``camera`` the table's camera name (``Camera1``);
  rows go sample 0 Camera1..Camera6, sample 1 Camera1..Camera6, ... An optional first line starting
  with ``sample`` is a header and is skipped.
* ``.npz`` holding one array (or one named ``keypoints_2d``), or ``.npy``, of shape ``(N, V, 20, 2)``,
  or ``(N, V, 20, 3)`` with the confidence last.

Pixel coordinates of the distorted image (x right, y down); the convention (0-based or MATLAB's)
is the caller's (:mod:`rat7m.pixels`). The tools' own files (COCO JSON, DeepLabCut, SLEAP, YOLO,
DANNCE, anipose) are read by :mod:`rat7m.toolpreds`, reached through :func:`tool_format`,
:func:`read_tool_3d` and :func:`read_tool_2d`.

Every file is untrusted: coordinates at most :data:`~rat7m.metrics.MAX_MAGNITUDE` in absolute
value (so no error can overflow to inf and drop out of a mean), confidences in ``[0,
toolpreds.common.MAX_CONFIDENCE]``, numbers in ASCII float syntax only, a CSV streamed in blocks into an array of
its counted size (numbers parsed by numpy's C parser once their bytes are known to be safe, a
line-by-line parser naming the first bad line and column otherwise), and a ``.npy`` (or ``.npz``
member) read only after its header, declared shape and size agree (a small file cannot declare a
huge array, nor a zip member inflate beyond it).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tokenize
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import ArrayLike

from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.fileio import atomic_write, check_input
from rat7m.metrics import MAX_MAGNITUDE

__all__ = [
    "MAX_MAGNITUDE",
    "NPZ_KEY",
    "N_COLUMNS",
    "PRED_FORMATS",
    "Predictions2D",
    "first_out_of_bounds",
    "is_2d_file",
    "is_number",
    "npy_header",
    "read_npy",
    "read_npy_data",
    "read_predictions",
    "read_predictions_2d",
    "read_tool_2d",
    "read_tool_3d",
    "save_predictions",
    "tool_format",
]

#: Values per 3D prediction row: x, y, z of each joint.
N_COLUMNS = catalogue.N_JOINTS * 3
#: Prediction formats: ours, then the tools' (rat7m.toolpreds).
PRED_FORMATS = ("rat7m", "coco", "dlc", "slp", "yolo-txt", "dannce", "anipose")
#: Name of the array in an ``.npz`` 2D prediction file when it holds more than one.
NPZ_KEY = "keypoints_2d"
#: Leading label cells of a 2D CSV row.
LABELS = ("sample", "camera")

# reading predictions


def read_predictions(path: str | Path) -> np.ndarray:
    """Read a prediction file: headerless CSV of N x 60 numbers, or ``.npy`` of (N, 20, 3) or (N, 60).

    Args:
        path: the file; ``.npy`` by suffix, anything else is read as CSV.

    Returns:
        (N, 20, 3) float64, finite, each coordinate at most :data:`MAX_MAGNITUDE` in absolute value.

    Raises:
        BadInputError: missing or unreadable file, header row, non-numeric cell (line and column),
            wrong column count (line), NaN, inf or a coordinate beyond the bound (line and sample).
    """
    path = check_input(path, "prediction file", max_bytes=None)  # a FIFO or a link loop: said as such
    is_npy = path.suffix.lower() == ".npy"
    if is_npy:
        rows = read_npy(path, _is_3d_shape, f"(N, {catalogue.N_JOINTS}, 3) or (N, {N_COLUMNS})")
        rows = rows.reshape(len(rows), N_COLUMNS).astype(np.float64, copy=False)
    else:
        rows = _read_csv(path)
    if not is_npy and len(rows) and np.array_equal(rows[0], np.arange(N_COLUMNS)):
        # pandas' to_csv(index=False) writes the column numbers as a header: numeric, but not a sample
        msg = f"{path} line 1 is 0,1,...,{N_COLUMNS - 1}: a header row (pandas writes one); save with header=False"
        raise BadInputError(msg)
    bad = first_out_of_bounds(rows)
    if bad is not None:
        row, col = bad
        where = f"line {row + 1}, column {col + 1}" if not is_npy else f"column {col + 1}"
        value = rows[row, col]
        if np.isfinite(value):
            msg = (f"{path} {where}: predicted sample {row} joint {col // 3} has coordinate {value:g}, beyond "
                   f"the bound {MAX_MAGNITUDE:g} (larger values overflow the error arithmetic); check its units")
        else:
            msg = f"{path} {where}: {value} in sample {row}; predictions must be finite numbers"
        raise BadInputError(msg)
    return rows.reshape(len(rows), catalogue.N_JOINTS, 3)


def first_out_of_bounds(values: np.ndarray, low: ArrayLike = -MAX_MAGNITUDE, high: ArrayLike = MAX_MAGNITUDE,
                        allow_nan: bool = False) -> tuple[int, ...] | None:  # fmt: skip
    """Index of the first value that is not a finite number in ``[low, high]`` (NaN, inf, too large), else None.

    The one bound of every prediction reader (3D and 2D): within :data:`MAX_MAGNITUDE` squares and
    products of coordinates stay finite, so no error can overflow to inf and drop out of a mean.
    ``low`` and ``high`` broadcast against ``values`` (per-column bounds, e.g. for confidences).
    Checked in bulk: a few vectorised passes, whatever the size. ``allow_nan``: NaN is a joint not
    predicted (the renderer draws nothing there), not an error.
    """
    scalar = not allow_nan and np.ndim(low) == 0 and np.ndim(high) == 0 and values.size
    # the common case in two passes without temporaries: min and max are NaN if any value is
    if scalar and low <= values.min() and values.max() <= high:
        return None
    ok = (values >= low) & (values <= high)  # NaN compares False
    if allow_nan:
        ok |= np.isnan(values)
    if ok.all():
        return None
    return tuple(int(i) for i in np.argwhere(~ok)[0])


def save_predictions(path: str | Path, predicted: np.ndarray) -> None:
    """Write predictions in the format :func:`read_predictions` reads (atomically).

    The format has no "no prediction" value: the reader refuses NaN and inf (a missing prediction
    would otherwise be dropped from the mean and flatter the score), so they are refused here too,
    before anything is written, naming the first sample and joint. Predict every joint.

    Args:
        path: ``.npy`` writes the (N, 20, 3) array; any other suffix a headerless CSV of N rows of 60
            numbers (x, y, z of joint 0, then joint 1, ...), 6 decimals.
        predicted: (N, 20, 3) finite positions in the table's 3D units (mm), in table order of the split.

    Raises:
        ValueError: wrong shape; BadInputError (a ValueError): a coordinate that is NaN or inf.
    """
    path = Path(path)
    predicted = np.asarray(predicted, dtype=np.float64)
    if predicted.ndim != 3 or predicted.shape[1:] != (catalogue.N_JOINTS, 3):
        raise ValueError(f"predictions must have shape (N, {catalogue.N_JOINTS}, 3), got {predicted.shape}")
    finite = np.isfinite(predicted)
    if not finite.all():
        sample, joint, axis = np.argwhere(~finite)[0]
        msg = (f"not writing {path}: sample {sample}, joint {catalogue.JOINT_NAMES[joint]} has {'xyz'[axis]} = "
               f"{predicted[sample, joint, axis]}; the prediction format holds finite numbers only "
               f"(compute_metrics refuses NaN and inf), so predict every joint")  # fmt: skip
        raise BadInputError(msg)
    with atomic_write(path) as handle:
        if path.suffix.lower() == ".npy":
            np.save(handle, predicted)
        else:
            np.savetxt(handle, predicted.reshape(len(predicted), -1), "%.6f", ",")


def _is_3d_shape(shape: tuple[int, ...]) -> bool:
    return (len(shape) == 3 and tuple(shape[1:]) == (catalogue.N_JOINTS, 3)) or (
        len(shape) == 2 and shape[1] == N_COLUMNS
    )


def npy_header(handle: IO[bytes], name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Read a ``.npy`` header from ``handle`` (a file or a zip member): ``(shape, fortran_order, dtype)``.

    Only the header is read (numpy caps its length), so nothing is allocated for the data yet.

    Raises:
        BadInputError: not a ``.npy`` header numpy can read (``name`` says which file or member).
    """
    try:
        version = np.lib.format.read_magic(handle)
        reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in reader:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, fortran, dtype = reader[version](handle)
    except (OSError, ValueError, SyntaxError, TypeError, EOFError, tokenize.TokenError) as exc:  # numpy parses text
        raise BadInputError(f"{name} is not a readable .npy array ({str(exc).splitlines()[0][:200]})") from None
    return tuple(shape), fortran, dtype


def read_npy_data(handle: IO[bytes], name: str, shape_ok: Callable[[tuple[int, ...]], bool], expected: str,
                  data_bytes: int) -> np.ndarray:  # fmt: skip
    """Check a ``.npy`` header, then read its data from ``handle`` only if the header tells the truth.

    Everything is checked before a byte of data is allocated: the dtype (numbers), the declared shape
    (``shape_ok``, which pins every dimension it can) and the declared size against ``data_bytes``,
    the bytes that follow the header (the file's size, or a zip member's uncompressed size). A
    600-byte file may declare a (10^8, 60) array, a 200-byte ``.npz`` a 1.7 PiB one, and a small zip
    member may inflate to gigabytes: none gets further than this check.

    Args:
        handle: positioned at the start of the ``.npy`` data (magic string).
        name: the file (or ``file member``) for messages.
        shape_ok: whether a declared shape is acceptable.
        expected: the shape expected, for the message (``"(N, 20, 3) or (N, 60)"``).
        data_bytes: the size of the ``.npy`` file (or member), header included.

    Raises:
        BadInputError: one line naming ``name``.
    """
    start = handle.tell()
    shape, fortran, dtype = npy_header(handle, name)
    if dtype.kind not in "fiu" or dtype.itemsize > 16:
        raise BadInputError(f"{name} holds {dtype}; expected numbers of shape {expected}")
    if not shape_ok(shape):
        raise BadInputError(f"{name} has shape {shape}; expected {expected}")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    present = data_bytes - (handle.tell() - start)
    if declared != present:
        raise BadInputError(f"{name} declares a {dtype} array of shape {shape} ({declared} bytes) "
                            f"but holds {present} bytes of data")  # fmt: skip
    array = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    view = array.reshape(-1, order="A").view(np.uint8).data  # a memoryview of the array's bytes
    filled = 0
    try:
        # a file or a zip member, both io.BufferedIOBase: typeshed's IO (ZipFile.open's type) lacks readinto
        while filled < declared and (n := handle.readinto(view[filled:])):  # type: ignore[attr-defined]
            filled += n
    except (OSError, ValueError, EOFError, zlib.error) as exc:  # a corrupt zip member fails here (bad CRC...)
        raise BadInputError(f"{name} is not a readable .npy array ({str(exc).splitlines()[0][:200]})") from None
    if filled != declared:
        raise BadInputError(f"{name} ends after {filled} of its {declared} bytes of data")
    return np.ascontiguousarray(array)


def read_npy(path: Path, shape_ok: Callable[[tuple[int, ...]], bool], expected: str) -> np.ndarray:
    """A ``.npy`` file's array, read only once its header is checked (see :func:`read_npy_data`)."""
    try:
        with path.open("rb") as handle:
            return read_npy_data(handle, str(path), shape_ok, expected, os.fstat(handle.fileno()).st_size)
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}") from None


#: Bytes of CSV parsed at a time: memory stays the result array plus about this much.
CSV_BLOCK_BYTES = 8 << 20
#: A number as we accept it: ASCII float syntax only (Python's ``float`` also takes ``1_0`` and
#: non-ASCII digits such as Arabic-Indic ones, which are not what a CSV writer produces).
_NUMBER = re.compile(r"[ \t]*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|nan|inf|infinity)[ \t]*\r?",
                     re.IGNORECASE | re.ASCII)  # fmt: skip
#: Bytes that can appear in a valid block (the letters spell nan / inf / infinity and exponents).
_CSV_BYTES = b"0123456789+-.eE,\n\r \tnNaAiIfFtTyY"


def _read_csv(path: Path) -> np.ndarray:
    """(N, 60) float64 rows of a headerless CSV, read in blocks with memory bounded by the result.

    A first pass counts lines, so the result is allocated once at its true size (a 2 GB file peaks
    at about its result array, not several times the file). Each block is screened for bytes no
    number contains, then parsed by numpy's C parser; a block it refuses, or that has the wrong
    shape, goes to :func:`_parse_lines`, which is slow but names the first bad line and column and is
    the reference for what a valid line is. The first line is checked before anything is sized, so
    a huge file of the wrong shape fails at once.
    """
    with _reading(path, "prediction file") as handle:
        first = handle.readline(1 << 20)
        if first.startswith(b"\xef\xbb\xbf"):
            first = first[3:]
        if first.strip():  # header, separator, width: before anything is sized
            _parse_lines(path, [first.decode("utf-8", errors="replace")], 1)
        handle.seek(0)
        n_lines = _count_rows(handle)
        if n_lines == 0:
            raise BadInputError(f"{path} is empty; expected one row of {N_COLUMNS} numbers per sample")
        rows = np.empty((n_lines, N_COLUMNS))
        handle.seek(0)
        done, tail = 0, b""
        while True:
            chunk = handle.read(CSV_BLOCK_BYTES)
            block = tail + chunk
            if done == 0 and block.startswith(b"\xef\xbb\xbf"):
                block = block[3:]
            if chunk:
                cut = block.rfind(b"\n") + 1
                block, tail = block[:cut], block[cut:]
                if not block:
                    continue
            else:
                block, tail = block.rstrip(), b""  # trailing blank lines are harmless
                if not block:
                    break
            done += _parse_block(path, block, rows[done:], done + 1)
            if not chunk:
                break
    return rows[:done]


@contextlib.contextmanager
def _reading(path: Path, what: str) -> Iterator[io.BufferedReader]:
    """``path`` open for reading; an OS error, opening or reading it, is one :class:`BadInputError` naming it."""
    try:
        with path.open("rb") as handle:
            yield handle
    except OSError as exc:
        raise BadInputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _count_rows(handle: io.BufferedReader) -> int:
    """Lines up to the last non-blank byte (trailing blank lines do not count)."""
    newlines, rows = 0, 0
    while chunk := handle.read(CSV_BLOCK_BYTES):
        count = chunk.count(b"\n")
        end = _content_end(chunk)
        if end:
            rows = newlines + count - chunk.count(b"\n", end) + 1
        newlines += count
    return rows


def _content_end(chunk: bytes) -> int:
    """Length of ``chunk`` without its trailing whitespace, without copying the whole chunk (a file's tail is short)."""
    tail = len(chunk) - 4096
    if tail > 0 and (kept := len(chunk[tail:].rstrip())):
        return tail + kept
    return len(chunk.rstrip())


def _parse_block(path: Path, block: bytes, out: np.ndarray, first_line: int) -> int:
    """Parse whole lines of CSV into ``out``; return the number of rows written."""
    n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
    if n_lines > len(out):  # the lines past the count are the file's trailing blank lines
        kept = block.split(b"\n", len(out))
        if kept[-1].strip():
            raise BadInputError(f"{path} changed while it was read; read it again")
        block, n_lines = b"\n".join(kept[:-1]) + b"\n", len(out)
    rows = _fast_parse(block, n_lines, N_COLUMNS)
    if rows is None:
        text = block.decode("utf-8", errors="replace").split("\n")
        if block.endswith(b"\n"):
            text.pop()
        rows = _parse_lines(path, text, first_line)
    out[: len(rows)] = rows
    return len(rows)


def _fast_parse(block: bytes, n_lines: int, width: int) -> np.ndarray | None:
    """``(n_lines, width)`` numbers of a block of CSV lines by numpy's C parser, or None if it is not that.

    Only a block made of bytes that numbers, commas and line ends use goes to the parser (Python's
    ``float`` syntax, which numpy shares, also takes ``1_0`` and non-ASCII digits): anything else,
    and any block of the wrong shape, is for the caller's line-by-line parser to explain.
    """
    if block.translate(None, _CSV_BYTES):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": a shape mismatch below
            rows = np.loadtxt(io.BytesIO(block), delimiter=",", comments=None, dtype=np.float64, ndmin=2)
    except ValueError:
        return None
    return rows if rows.shape == (n_lines, width) else None


def _parse_lines(path: Path, lines: list[str], first_line: int = 1) -> np.ndarray:
    """Parse CSV lines one by one; raise on the first bad line naming line and column (1-based)."""
    rows = np.empty((len(lines), N_COLUMNS))
    for number, line in enumerate(lines, start=first_line):
        line = line.rstrip("\r\n")
        cells = line.split(",")
        separator = _other_separator(line) if len(cells) == 1 else None
        if separator is not None:
            msg = f"{path} line {number}: values must be comma-separated (found {separator!r})"
            raise BadInputError(msg)
        if number == 1 and not is_number(cells[0]):
            cell = cells[0].strip()[:30]
            msg = f"{path} line 1, column 1: {cell!r} is not a number (the file must not have a header row)"
            raise BadInputError(msg)
        if len(cells) != N_COLUMNS:
            what = "is empty" if not line.strip() else f"has {len(cells)} columns"
            msg = f"{path} line {number} {what}; expected {N_COLUMNS} comma-separated numbers (x, y, z of 20 joints)"
            raise BadInputError(msg)
        for column, cell in enumerate(cells, start=1):
            if not is_number(cell):
                msg = f"{path} line {number}, column {column}: {cell.strip()[:30]!r} is not a number"
                raise BadInputError(msg)
            rows[number - first_line, column - 1] = float(cell)
    return rows


def _other_separator(line: str) -> str | None:
    """The separator of a line of numbers split by ``;``, a tab or spaces instead of commas (None if not that)."""
    for separator in (";", "\t", None):  # None: runs of spaces, as str.split() splits
        cells = line.strip().split(separator)
        if len(cells) > 1 and all(is_number(c) for c in cells[1:]):
            return " " if separator is None else separator
    return None


def is_number(cell: str) -> bool:
    """True for a number in ASCII float syntax (see :data:`_NUMBER`)."""
    return _NUMBER.fullmatch(cell) is not None


# --------------------------------------------------------------------------------------------------
# 2D


@dataclass(frozen=True)
class Predictions2D:
    """2D predictions of a split: ``points`` (N, V, J, 2) px and ``confidence`` (N, V, J) or None."""

    points: np.ndarray
    confidence: np.ndarray | None


def read_predictions_2d(path: str | Path, n_samples: int | None, camera_names: Sequence[str],
                        allow_missing: bool = False) -> Predictions2D:  # fmt: skip
    """Read and check a 2D prediction file: the one reader of ``--pred2d`` scoring and of the renderer.

    Args:
        path: ``.npz`` or ``.npy`` by suffix, anything else CSV (see the module docstring).
        n_samples: samples in the split (rows expected: ``n_samples * len(camera_names)``); None: as
            many as the file holds (the caller compares them with the split).
        camera_names: the table's camera names in order.
        allow_missing: NaN is a joint not predicted (drawing); scoring refuses it (False), as a NaN
            would otherwise drop out of a mean.

    Raises:
        BadInputError: naming the line and column (CSV) of the first problem.
    """
    path = check_input(path, "2D prediction file", max_bytes=None)  # a FIFO or a link loop: said as such
    camera_names = [str(c) for c in camera_names]
    if path.suffix.lower() in (".npz", ".npy"):
        values = _read_npz(path, n_samples, len(camera_names), allow_missing)
    else:
        values = _read_csv_2d(path, n_samples, camera_names, allow_missing)
    points, confidence = values[..., :2], (values[..., 2] if values.shape[-1] == 3 else None)
    big = np.abs(points) > MAX_MAGNITUDE  # the 3D reader's bound: beyond it, squares overflow the error arithmetic
    if big.any():
        sample, view, joint, axis = np.argwhere(big)[0]
        msg = (f"{path} sample {sample}, {camera_names[view]}, joint {joint}: {'xy'[axis]} = "
               f"{points[sample, view, joint, axis]:g} px is beyond the bound {MAX_MAGNITUDE:g}; check its units")
        raise BadInputError(msg)
    high = _bounds(3)[1][2]  # the tools' readers' bound
    if confidence is not None and (confidence > high).any():
        sample, view, joint = np.argwhere(confidence > high)[0]
        msg = (f"{path} sample {sample}, {camera_names[view]}, joint {joint}: confidence "
               f"{confidence[sample, view, joint]:g} is above {high:g}; confidences are weights, 0 to 1")
        raise BadInputError(msg)
    return Predictions2D(np.ascontiguousarray(points), confidence)


def _bounds(width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-column ``(low, high)`` of ``width`` values per joint (x, y, and a confidence if 3)."""
    from rat7m.toolpreds.common import MAX_CONFIDENCE  # lazy: a 3D file needs none of the tools' readers

    low = np.array([-MAX_MAGNITUDE, -MAX_MAGNITUDE, 0.0][:width])
    high = np.array([MAX_MAGNITUDE, MAX_MAGNITUDE, MAX_CONFIDENCE][:width])
    return low, high


def _problem(value: float, is_confidence: bool) -> str:
    """Why ``value`` is refused (it is outside :func:`_bounds`)."""
    from rat7m.toolpreds.common import MAX_CONFIDENCE
    if not np.isfinite(value):
        return f"{str(value)!r} is not a finite number"
    if is_confidence:
        return f"confidence {value:g} is below 0" if value < 0 else f"confidence {value:g} is above {MAX_CONFIDENCE:g}"
    return f"{value:g} is beyond the bound {MAX_MAGNITUDE:g} (larger values overflow the error arithmetic)"


def is_2d_file(path: str | Path) -> bool:
    """Whether a prediction file of ours is 2D: an ``.npz``, a 4-D ``.npy``, or a CSV whose second cell is a camera.

    Only the ``.npy`` header or the CSV's first line is read, so the choice costs nothing.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return True
    try:
        with path.open("rb") as handle:
            if suffix == ".npy":
                return len(npy_header(handle, str(path))[0]) == 4
            cells = handle.readline(1 << 20).removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace").split(",", 2)
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return len(cells) > 2 and not is_number(cells[1])


# --------------------------------------------------------------------------------------------- .npz


def _read_npz(path: Path, n_samples: int | None, n_views: int, allow_missing: bool) -> np.ndarray:
    """(N, V, J, 2 or 3) values of an ``.npz`` member or an ``.npy`` file, its header checked first."""
    want = f"({'N' if n_samples is None else n_samples}, {n_views}, {catalogue.N_JOINTS}, 2 or 3)"

    def shape_ok(shape: tuple[int, ...]) -> bool:
        return (len(shape) == 4 and n_samples in (None, shape[0]) and shape[1:3] == (n_views, catalogue.N_JOINTS)
                and shape[3] in (2, 3))  # fmt: skip

    key = None
    if path.suffix.lower() == ".npy":
        array = read_npy(path, shape_ok, want)
    else:
        key, array = _npz_member(path, shape_ok, want)
    array = array.astype(np.float64, copy=False)
    bad = first_out_of_bounds(array, *_bounds(array.shape[3]), allow_nan=allow_missing)
    if bad is not None:
        sample, view, joint, k = bad
        where = f"{path}" if key is None else f"{path} array {key!r}"
        msg = (f"{where} sample {sample}, camera {view + 1}, joint {joint}: "
               f"{_problem(array[bad], k == 2)}; coordinates must be finite and confidences at least 0")  # fmt: skip
        raise BadInputError(msg)
    return array


def _npz_member(path: Path, shape_ok: Callable[[tuple[int, ...]], bool], want: str) -> tuple[str, np.ndarray]:
    """The prediction array of an ``.npz`` (its only one, or :data:`NPZ_KEY`), inflated only up to its declared size."""
    import zipfile  # lazy: only an .npz needs it

    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            key = NPZ_KEY if NPZ_KEY in members else (next(iter(members)) if len(members) == 1 else None)
            if key is None:
                raise BadInputError(f"{path} holds arrays {list(members)}; name the prediction array {NPZ_KEY!r}")
            info = members[key]
            with archive.open(info) as handle:  # reads at most info.file_size bytes, whatever it inflates to
                array = read_npy_data(handle, f"{path} array {key!r}", shape_ok, want, info.file_size)
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
        raise BadInputError(f"{path} is not a readable .npz archive ({str(exc).splitlines()[0][:200]})") from None
    return key, array


# --------------------------------------------------------------------------------------------- CSV


def _read_csv_2d(path: Path, n_samples: int | None, camera_names: list[str], allow_missing: bool) -> np.ndarray:
    """(N, V, J, 2 or 3) values of a CSV, read in blocks: memory is the result plus one block."""
    V, J = len(camera_names), catalogue.N_JOINTS
    with _reading(path, "2D prediction file") as handle:
        first = handle.readline(1 << 20)
        bom = 3 if first.startswith(b"\xef\xbb\xbf") else 0
        header = first[bom:].split(b",", 1)[0].strip().lower() == LABELS[0].encode()
        handle.seek(0)
        n_rows = _count_rows(handle) - header
        if n_samples is None and n_rows > 0 and n_rows % V == 0:
            n_samples = n_rows // V
        if n_samples is None or n_rows != n_samples * V:
            expected = (f"expected a multiple of the {V} cameras" if n_samples is None
                        else f"the split has {n_samples} samples x {V} cameras = {n_samples * V}")  # fmt: skip
            msg = (f"{path} has {max(n_rows, 0)} prediction rows; {expected} "
                   "(one row per sample and camera, in table order)")  # fmt: skip
            raise BadInputError(msg)
        handle.seek(bom + (len(first) - bom if header else 0))
        reader = _CsvReader2D(path, n_rows, camera_names, first=1 + header, allow_missing=allow_missing)
        while chunk := handle.read(CSV_BLOCK_BYTES):
            reader.feed(chunk)
        values = reader.finish()
    return values.reshape(n_samples, V, J, values.shape[1] // J)


class _CsvReader2D:
    """Blocks of whole lines in, rows of numbers out; the first problem raised with its line and column."""

    def __init__(self, path: Path, n_rows: int, camera_names: list[str], first: int, allow_missing: bool) -> None:
        self.path, self.n_rows, self.cameras, self.first = path, n_rows, camera_names, first
        self.allow_missing = allow_missing
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
        width = self.values.shape[1]
        rows = _fast_parse(b"\n".join(bodies), len(bodies), width)
        if rows is None:
            rows = self._slow_parse(bodies, width)
        low, high = _bounds(width // catalogue.N_JOINTS)
        bad = first_out_of_bounds(rows.reshape(len(rows), -1, len(low)), low, high, allow_nan=self.allow_missing)
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

    def _slow_parse(self, bodies: list[bytes], width: int) -> np.ndarray:
        """Line by line: name the first line of the wrong width or the first cell that is not a number."""
        rows = np.empty((len(bodies), width))
        for index, body in enumerate(bodies):
            cells = body.decode("utf-8", errors="replace").rstrip("\r").split(",")
            number = self.first + self.done + index
            if len(cells) != width:
                raise BadInputError(f"{self.path} line {number} has {len(cells) + 2} columns; expected {width + 2}")
            for column, cell in enumerate(cells, start=3):
                if not is_number(cell):
                    msg = f"{self.path} line {number}, column {column}: {cell.strip()[:30]!r} is not a finite number"
                    raise BadInputError(msg)
                rows[index, column - 3] = float(cell)
        return rows


# --------------------------------------------------------------------------------------------------
# the tools' own files (rat7m.toolpreds)


def tool_format(path: Path, fmt: str) -> str | None:
    """The tool format of a prediction file (``rat7m.toolpreds``), or None for our own CSV/npy/npz.

    Args:
        path: the prediction file.
        fmt: one of :data:`PRED_FORMATS`, or ``"auto"``: detected from the file.
    """
    if fmt == "rat7m" or (fmt == "auto" and _plainly_ours(path)):
        return None
    from rat7m import toolpreds  # lazy: only a tool's file needs its reader

    return toolpreds.detect_format(path) if fmt == "auto" else fmt


def _plainly_ours(path: Path) -> bool:
    """A file none of the tools writes: ``.npy``/``.npz``, or a ``.csv`` whose first line is only numbers.

    The tools' CSVs (DeepLabCut, anipose) open with a header row of names, and a name has letters or
    an underscore (``1_x``): a first line of digits, signs, dots, exponents and commas is our CSV.
    Recognising it here spares importing every tool's reader (~18 ms of a metrics run).
    """
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        return True
    if suffix != ".csv" or not path.is_file():  # a FIFO is never opened here (it would block)
        return False
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEAD_BYTES).removeprefix(b"\xef\xbb\xbf")
    except OSError:
        return False
    first = head.split(b"\n", 1)[0]
    return first[:1].isdigit() and not first.translate(None, b"0123456789+-.eE, \t\r")


#: Bytes of a CSV's first line that :func:`_plainly_ours` looks at (a line of 60 numbers is ~700).
_HEAD_BYTES = 4096


def read_tool_3d(path: Path, tool: str, table: dict[str, Any], rows: np.ndarray) -> Any:
    """A tool's 3D file for ``rows`` of ``table`` (:func:`rat7m.toolpreds.read_3d`): points NaN where not predicted."""
    from rat7m import toolpreds

    return toolpreds.read_3d(path, tool, table, rows)


def read_tool_2d(path: Path, tool: str, table: dict[str, Any], rows: np.ndarray, images_root: Path | None) -> Any:
    """A tool's 2D file for ``rows`` of ``table`` (:func:`rat7m.toolpreds.read_2d`), in the table's pixel convention."""
    from rat7m import toolpreds

    return toolpreds.read_2d(path, tool, table, rows, images_root=images_root)
