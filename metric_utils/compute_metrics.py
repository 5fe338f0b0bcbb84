"""Score 3D keypoint predictions against the mini-RAT7M table: MPJPE, PA-MPJPE and N-MPJPE.

Usage (from any folder; the table is ``--gt_path``, else in ``--root``, else in ``$RAT7M_ROOT``, else here)::

    python metric_utils/compute_metrics.py --pred_path preds.csv
    rat7m-metrics --pred-path preds.npy --split test --save-dir metrics_output   # after pip install .
    python metric_utils/compute_metrics.py --pred2d preds2d.csv --triangulate   # 2D per camera, and 3D

Each flag has its documented spelling (``--pred_path``, ``--gt_path``, ``--save_dir``) and a
hyphenated one (``--pred-path`` ...), like every other script's flags.

2D predictions (``--pred2d``): one CSV row per (sample, camera) in table order,
``sample,camera,x1,y1,...,x20,y20`` (or ``x1,y1,c1,...`` with a confidence per joint), or an ``.npz``
of shape (N, 6, 20, 2 or 3); see ``metric_utils/pred2d.py``. Prints pixel MPJPE, PCK and OKS AP/AR
per camera; ``--triangulate`` also scores the views triangulated to 3D like a ``--pred_path`` file.
``--report`` writes the HTML report of either kind of run (see ``rat7m.render.report``).

The files the field's tools write are read as they are (``--pred-format``, detected from the file
by default): COCO results JSON (MMPose, Ultralytics ``val``), DeepLabCut ``.h5``/``.csv``, SLEAP
``.slp`` and Ultralytics ``predict`` label folders with ``--pred2d``; DANNCE ``save_data_AVG.mat`` and
anipose ``pose-3d`` CSV with ``--pred_path``. See ``rat7m/toolpreds`` and the README.

Predictions: one row per sample of the chosen split, in table order, as a headerless CSV of
60 numbers per row (x, y, z of joint 0, then of joint 1, ..., in ``catalogue.JOINT_NAMES`` order),
or a ``.npy`` array of shape (N, 20, 3) (or (N, 60)). The original script read this CSV with a
header row and so silently dropped sample 0; here every row is a sample and a header is an error.

Prints, per recording and over all samples, each metric's mean and median, the number of samples
and of excluded joints (target not finite), and writes to ``--save_dir`` (default
``metrics_output``): ``per_sample_metrics.csv``, ``summary.json``, ``per_joint_mpjpe.csv`` and
``per_joint_mpjpe.png``. Bad input (missing file, header, non-numeric cell, wrong shape, NaN) ends
with one line naming the file, line and column.

Exit codes: 0 scored and written, 2 bad arguments or bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if __name__ == "__main__":  # first: a Ctrl-C or SIGTERM during the imports below is one line, exit 130 / 143
    from rat7m import extras, interrupt

    interrupt.at_start()
    extras.require_runtime()  # a missing dependency is one line saying how to install it

# isort: split
import argparse
import io
import json
import logging
import os
import re
import tokenize
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from numpy.typing import ArrayLike

from metric_utils.metrics import MAX_MAGNITUDE, joint_errors, mpjpe, n_mpjpe, pa_mpjpe
from rat7m import catalogue
from rat7m.cli import (
    ArgumentParser,
    add_root_argument,
    add_verbosity_arguments,
    check_writable,
    resolve_root,
    run_main,
    setup_logging,
)
from rat7m.errors import BadInputError
from rat7m.fileio import atomic_write, check_input, remove_stale_temporaries
from rat7m.table import load_annotation

log = logging.getLogger(__name__)

#: Metric functions by command-line name, in the order they are reported.
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mpjpe": mpjpe,
    "pa_mpjpe": pa_mpjpe,
    "n_mpjpe": n_mpjpe,
}
#: Column titles of the printed table.
METRIC_TITLES = {"mpjpe": "MPJPE", "pa_mpjpe": "PA-MPJPE", "n_mpjpe": "N-MPJPE"}
#: Values per prediction row: x, y, z of each joint.
N_COLUMNS = catalogue.N_JOINTS * 3
#: Where results go unless ``--save_dir`` says otherwise (relative to the current directory).
DEFAULT_SAVE_DIR = "metrics_output"
#: Prediction formats: ours, then the tools' (rat7m.toolpreds).
PRED_FORMATS = ("rat7m", "coco", "dlc", "slp", "yolo-txt", "dannce", "anipose")
#: Names of the files written to the save directory.
PER_SAMPLE_CSV = "per_sample_metrics.csv"
SUMMARY_JSON = "summary.json"
PER_JOINT_CSV = "per_joint_mpjpe.csv"
PER_JOINT_PNG = "per_joint_mpjpe.png"
#: Every file a run may write to ``--save_dir`` (3D, ``--pred2d``, ``--triangulate``, ``--report``).
OUTPUT_NAMES = (PER_SAMPLE_CSV, SUMMARY_JSON, PER_JOINT_CSV, PER_JOINT_PNG, "summary_2d.json", "triangulation.json",
                "report.html")  # fmt: skip


# --------------------------------------------------------------------------------------------------
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


def first_out_of_bounds(values: np.ndarray, low: ArrayLike = -MAX_MAGNITUDE, high: ArrayLike = MAX_MAGNITUDE
                        ) -> tuple[int, ...] | None:  # fmt: skip
    """Index of the first value that is not a finite number in ``[low, high]`` (NaN, inf, too large), else None.

    The one bound of every prediction reader (3D and 2D): within :data:`MAX_MAGNITUDE` squares and
    products of coordinates stay finite, so no error can overflow to inf and drop out of a mean.
    ``low`` and ``high`` broadcast against ``values`` (per-column bounds, e.g. for confidences).
    Checked in bulk: a few vectorised passes, whatever the size.
    """
    ok = (values >= low) & (values <= high)  # NaN compares False
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
    view = memoryview(array.reshape(-1, order="A").view(np.uint8))
    filled = 0
    try:
        while filled < declared and (n := handle.readinto(view[filled:])):
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
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise BadInputError(f"cannot read prediction file {path}: {exc.strerror}") from None
    with handle:
        try:
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
        except OSError as exc:
            raise BadInputError(f"cannot read prediction file {path}: {exc.strerror or exc}") from None
    return rows[:done]


def _count_rows(handle: io.BufferedReader) -> int:
    """Lines up to the last non-blank byte (trailing blank lines do not count)."""
    newlines, rows = 0, 0
    while chunk := handle.read(CSV_BLOCK_BYTES):
        content = chunk.rstrip()
        if content:
            rows = newlines + content.count(b"\n") + 1
        newlines += chunk.count(b"\n")
    return rows


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
        if number == 1 and not _is_number(cells[0]):
            cell = cells[0].strip()[:30]
            msg = f"{path} line 1, column 1: {cell!r} is not a number (the file must not have a header row)"
            raise BadInputError(msg)
        if len(cells) != N_COLUMNS:
            what = "is empty" if not line.strip() else f"has {len(cells)} columns"
            msg = f"{path} line {number} {what}; expected {N_COLUMNS} comma-separated numbers (x, y, z of 20 joints)"
            raise BadInputError(msg)
        for column, cell in enumerate(cells, start=1):
            if not _is_number(cell):
                msg = f"{path} line {number}, column {column}: {cell.strip()[:30]!r} is not a number"
                raise BadInputError(msg)
            rows[number - first_line, column - 1] = float(cell)
    return rows


def _other_separator(line: str) -> str | None:
    """The separator of a line of numbers split by ``;``, a tab or spaces instead of commas (None if not that)."""
    for separator in (";", "\t", None):  # None: runs of spaces, as str.split() splits
        cells = line.strip().split(separator)
        if len(cells) > 1 and all(_is_number(c) for c in cells[1:]):
            return " " if separator is None else separator
    return None


def _is_number(cell: str) -> bool:
    """True for a number in ASCII float syntax (see :data:`_NUMBER`)."""
    return _NUMBER.fullmatch(cell) is not None


# --------------------------------------------------------------------------------------------------
# evaluation


@dataclass(frozen=True)
class Evaluation:
    """Per-sample results for one split; arrays are in prediction-row order (n samples)."""

    split: str
    recording: np.ndarray  # (n,) str, e.g. "s5-d1"
    frame: np.ndarray  # (n,) int, the table's frame_idx of Camera1 (of its first camera if it lacks Camera1)
    excluded_joints: np.ndarray  # (n,) int, joints whose target is not finite
    metrics: dict[str, np.ndarray]  # name -> (n,) float64, NaN for a sample with no finite target
    joint_error: np.ndarray  # (n, 20) float64 MPJPE per joint, NaN where excluded


def split_rows(table: dict[str, Any], split: str) -> np.ndarray:
    """Row indices of ``split`` ("train", "test" or "all") in a mini-RAT7M table, in table order."""
    train_test = np.asarray(table["table"]["train_test"]).astype(str)
    if split == "all":
        return np.arange(len(train_test))
    return np.flatnonzero(train_test == split)


def _recording_names(subjects: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Recording name of every sample, looked up once per (subject, day) pair."""
    pairs, inverse = np.unique(np.stack([subjects, days], axis=1), axis=0, return_inverse=True)
    try:
        names = [catalogue.recording_for(s, d).name for s, d in pairs]
    except KeyError as exc:
        raise BadInputError(f"annotation table: {exc.args[0]}") from None
    return np.asarray(names, dtype=object)[inverse.ravel()]


def _frame_camera(table: dict[str, Any]) -> str:
    """Camera whose frame index names a sample: Camera1, or the table's first camera if it lacks it."""
    names = [str(name) for name in table["camera_names"]]
    return catalogue.CAMERA_NAMES[0] if catalogue.CAMERA_NAMES[0] in names else names[0]


def evaluate(predicted: np.ndarray, table: dict[str, Any], split: str = "test", metrics: Sequence[str] = tuple(METRICS),
             gt_name: str = "the annotation table", missing: np.ndarray | None = None) -> Evaluation:  # fmt: skip
    """Score predictions against a split of a mini-RAT7M table.

    Args:
        predicted: (N, 20, 3) finite predictions, one per sample of the split, in table order.
        table: a table as returned by ``rat7m.table.load_annotation``.
        split: "test", "train" or "all".
        metrics: names from :data:`METRICS`.
        gt_name: how to name the table in error messages (its path).
        missing: (N, 20) bool, joints a tool did not predict (``rat7m.toolpreds``): left out like a lost
            target and counted by the tool's report; None when every joint is predicted.

    Returns:
        The per-sample results.

    Raises:
        BadInputError: if the row count differs from the split's sample count, or the split is empty.
    """
    rows = split_rows(table, split)
    if len(rows) == 0:
        raise BadInputError(f"{gt_name} has no {split!r} samples (its train_test column)")
    if len(predicted) != len(rows):
        msg = (
            f"predictions have {len(predicted)} rows but the {split!r} split of {gt_name} has {len(rows)} "
            f"samples; expected one row per sample, in table order, without a header"
        )
        other = [s for s in ("test", "train", "all") if s != split and len(split_rows(table, s)) == len(predicted)]
        if other:
            msg += f"; {len(predicted)} is the size of the {other[0]!r} split: did you mean --split {other[0]}?"
        raise BadInputError(msg)
    columns = table["table"]
    target = np.asarray(columns["3D_keypoints"])[rows].astype(np.float64)
    if missing is not None:
        target = np.where(missing[..., None], np.nan, target)
        predicted = np.where(missing[..., None], 0.0, predicted)
    try:
        joint_error = joint_errors(predicted, target)
        # MPJPE is the mean of the per-joint errors already at hand: the same sums, not computed twice
        scores = {name: _mean_over_joints(joint_error) if name == "mpjpe" else METRICS[name](predicted, target)[:, 0]
                  for name in metrics}  # fmt: skip
    except ValueError as exc:  # a prediction (or target) beyond the metrics' magnitude bound
        raise BadInputError(f"{exc} (split {split!r} of {gt_name})") from None
    scored = np.isfinite(target).all(axis=2).any(axis=1)
    for name, values in scores.items():  # a score may be NaN only where no target joint is finite
        lost = scored & ~np.isfinite(values)
        if lost.any():
            sample = int(np.flatnonzero(lost)[0])
            msg = f"{METRIC_TITLES[name]} of sample {sample} is not finite; its prediction is unusable"
            raise BadInputError(msg)
    return Evaluation(
        split=split,
        recording=_recording_names(np.asarray(columns["subject_idx"])[rows], np.asarray(columns["day_idx"])[rows]),
        frame=np.asarray(columns["frame_idx"][_frame_camera(table)])[rows].astype(np.int64),
        excluded_joints=(~np.isfinite(target).all(axis=2)).sum(axis=1),
        metrics=scores,
        joint_error=joint_error,
    )


def _mean_over_joints(joint_error: np.ndarray) -> np.ndarray:
    """(n,) mean of each row over its joints that are not NaN (excluded), NaN where none is: ``mpjpe``'s own sums."""
    valid = ~np.isnan(joint_error)
    count = valid.sum(axis=1)
    total = np.where(valid, joint_error, 0.0).sum(axis=1)
    out = np.full(count.shape, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def _stats(values: np.ndarray) -> dict[str, float | int | None]:
    """Mean and median over the scored (finite) values; None when there are none."""
    scored = values[np.isfinite(values)]
    if len(scored) == 0:
        return {"mean": None, "median": None, "n_scored": 0}
    return {"mean": float(scored.mean()), "median": float(np.median(scored)), "n_scored": len(scored)}


def summarise(result: Evaluation) -> dict[str, Any]:
    """JSON-ready summary: each metric's mean and median overall and per recording, per-joint MPJPE."""

    def group(mask: np.ndarray) -> dict[str, Any]:
        return {
            "n_samples": int(mask.sum()),
            "n_excluded_joints": int(result.excluded_joints[mask].sum()),
            "metrics": {name: _stats(values[mask]) for name, values in result.metrics.items()},
        }

    everything = np.ones(len(result.recording), dtype=bool)
    present = set(result.recording.tolist())
    order = [rec.name for rec in catalogue.RECORDINGS if rec.name in present]
    valid = np.isfinite(result.joint_error)
    counts = valid.sum(axis=0)
    sums = np.where(valid, result.joint_error, 0.0).sum(axis=0)
    per_joint = [
        {"joint": name, "mpjpe": float(sums[j] / counts[j]) if counts[j] else None, "n_samples": int(counts[j])}
        for j, name in enumerate(catalogue.JOINT_NAMES)
    ]
    return {
        "split": result.split,
        **group(everything),
        "recordings": {name: group(result.recording == name) for name in order},
        "per_joint_mpjpe": per_joint,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The printed table: one line per recording and one for all samples."""
    names = list(summary["metrics"])
    header = ["recording", "samples", "excluded joints"]
    for name in names:
        header += [f"{METRIC_TITLES[name]} mean", f"{METRIC_TITLES[name]} median"]

    def row(label: str, group: dict[str, Any]) -> list[str]:
        cells = [label, str(group["n_samples"]), str(group["n_excluded_joints"])]
        for name in names:
            stats = group["metrics"][name]
            cells += ["-" if stats[k] is None else f"{stats[k]:.2f}" for k in ("mean", "median")]
        return cells

    table = [header] + [row(n, g) for n, g in summary["recordings"].items()] + [row("all", summary)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in table]  # fmt: skip
    unscored = summary["n_samples"] - summary["metrics"][names[0]]["n_scored"]
    if unscored:
        lines.append(f"{unscored} sample(s) have no finite target joint and are left out of the means and medians")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# writing results


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path) as handle:
        handle.write(text.encode())


def _per_sample_csv(result: Evaluation) -> str:
    names = list(result.metrics)
    lines = [",".join(["recording", "frame", "sample", "excluded_joints", *names])]
    columns = [result.recording, result.frame.tolist(), range(len(result.frame)), result.excluded_joints.tolist(),
               *(result.metrics[n].tolist() for n in names)]  # fmt: skip
    row = "%s,%d,%d,%d" + ",%.6f" * len(names) + "\n"  # one formatting call for every row: 4x faster than a loop
    return lines[0] + "\n" + (row * len(result.frame)) % tuple(v for r in zip(*columns, strict=True) for v in r)


def _per_joint_csv(summary: dict[str, Any]) -> str:
    lines = ["joint_index,joint,mpjpe,n_samples"]
    for j, entry in enumerate(summary["per_joint_mpjpe"]):
        value = "nan" if entry["mpjpe"] is None else f"{entry['mpjpe']:.6f}"
        lines.append(f"{j},{entry['joint']},{value},{entry['n_samples']}")
    return "\n".join(lines) + "\n"


def _plot_per_joint(summary: dict[str, Any], handle: io.BufferedWriter) -> None:
    """Bar chart of per-joint MPJPE as PNG (Agg canvas, no pyplot state, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib is slow to import
    from matplotlib.figure import Figure

    entries = summary["per_joint_mpjpe"]
    heights = [np.nan if e["mpjpe"] is None else e["mpjpe"] for e in entries]
    fig = Figure(figsize=(9, 4))  # fixed margins fit the rotated joint names; a layout engine costs ~80 ms
    fig.subplots_adjust(left=0.07, right=0.99, top=0.92, bottom=0.24)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.bar(range(len(entries)), np.nan_to_num(heights), color="tab:blue")
    ax.set_xticks(range(len(entries)), [e["joint"] for e in entries], rotation=60, ha="right")
    ax.set_ylabel("MPJPE (mm)")
    ax.set_title(f"Per-joint MPJPE, {summary['split']} split, {summary['n_samples']} samples")
    fig.savefig(handle, format="png", dpi=100)


def write_outputs(result: Evaluation, summary: dict[str, Any], save_dir: Path) -> list[Path]:
    """Write the per-sample CSV, JSON summary, per-joint CSV and bar chart; return their paths."""
    save_dir.mkdir(parents=True, exist_ok=True)
    paths = [save_dir / name for name in (PER_SAMPLE_CSV, SUMMARY_JSON, PER_JOINT_CSV, PER_JOINT_PNG)]
    _write_text(paths[0], _per_sample_csv(result))
    _write_text(paths[1], json.dumps(summary, indent=2, allow_nan=False) + "\n")
    _write_text(paths[2], _per_joint_csv(summary))
    with atomic_write(paths[3]) as handle:
        _plot_per_joint(summary, handle)
    return paths


# --------------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    """The script's argument parser."""
    parser = ArgumentParser(prog=Path(__file__).name, description=__doc__)
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument(
        "--pred_path", "--pred-path", type=Path,
        help="predictions: headerless CSV of N rows x 60 (x,y,z of joint 0, of joint 1, ...) or .npy of (N, 20, 3) "
        "(no default: give this or --pred2d)",
    )  # fmt: skip
    kind.add_argument(
        "--pred2d", type=Path,
        help="2D predictions: CSV rows 'sample,camera,x1,y1,...,x20,y20' (optionally x,y,c per joint), one per "
        "sample and camera in table order, or .npz of (N, 6, 20, 2|3) (no default: give this or --pred_path)",
    )  # fmt: skip
    parser.add_argument(
        "--gt_path", "--gt-path", type=Path,
        help=f"mini-RAT7M annotation table (default: ROOT/{catalogue.MINI_ANNOTATION_NAME})",
    )  # fmt: skip
    add_root_argument(parser, what="dataset root holding the annotation table")
    parser.add_argument(
        "--split", choices=("test", "train", "all"), default="test",
        help="samples to score, chosen by the table's train_test column (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--metric", choices=("all", *METRICS), default="all", help="metric(s) to report (default: %(default)s)"
    )
    parser.add_argument(
        "--save_dir", "--save-dir", type=Path, default=Path(DEFAULT_SAVE_DIR),
        help="folder for the per-sample CSV, JSON summary, per-joint CSV and PNG (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--report", action="store_true",
        help="also write <save_dir>/report.html: one self-contained page with tables, charts and the worst samples "
        "(of --pred_path, or of --pred2d: 2D table, PCK curve, AP, and with --triangulate the 3D scores)",
    )  # fmt: skip
    parser.add_argument(
        "--pred_format", "--pred-format", default="auto", choices=("auto", *PRED_FORMATS),
        help="format of --pred_path / --pred2d: rat7m (ours, above), a tool's own file (coco, dlc, slp, yolo-txt: "
        "2D; dannce, anipose: 3D; see README), or auto: detected from the file (default: %(default)s)",
    )  # fmt: skip
    from metric_utils import score2d  # lazy: it imports this module

    score2d.add_arguments(parser)
    add_verbosity_arguments(parser)
    return parser


def _tool_format(path: Path, fmt: str) -> str | None:
    """The tool format of a prediction file (``rat7m.toolpreds``), or None for our own CSV/npy/npz."""
    if fmt == "rat7m":
        return None
    from rat7m import toolpreds  # lazy: only a tool's file needs its reader

    return toolpreds.detect_format(path) if fmt == "auto" else fmt


def main(argv: Sequence[str] | None = None) -> int:
    """Score a prediction file; print the table and write the result files (and the report with ``--report``)."""
    args = build_parser().parse_args(argv)
    setup_logging(args)
    if args.gt_path is None:
        args.gt_path = catalogue.mini_annotation_path(resolve_root(args.root, quiet=args.quiet))
    check_writable(args.save_dir, "results", "pass --save_dir DIR")  # before reading anything
    remove_stale_temporaries(args.save_dir, set(OUTPUT_NAMES))  # what a killed run (SIGKILL) left
    if not args.gt_path.exists() and not args.gt_path.is_symlink():
        msg = f"annotation table {args.gt_path} not found; pass --gt_path to {catalogue.MINI_ANNOTATION_NAME}"
        raise BadInputError(msg)
    check_input(args.gt_path, "annotation table", max_bytes=None)  # a FIFO or a device: one line, not a hang
    if args.pred2d is not None or args.triangulate:
        from metric_utils import score2d

        score2d.run(args, load_annotation(args.gt_path))
    else:
        _score_3d(args)
    if args.report:
        from rat7m.render.report import write_report  # lazy: only the report needs the renderer

        print(f"wrote {write_report(args.save_dir)}")
    return 0


def _score_3d(args: argparse.Namespace) -> None:
    """Score ``args.pred_path`` (ours, or a tool's 3D file): print the table, write the result files."""
    tool = _tool_format(args.pred_path, args.pred_format)
    predicted = read_predictions(args.pred_path) if tool is None else None
    table = load_annotation(args.gt_path)
    names = tuple(METRICS) if args.metric == "all" else (args.metric,)
    missing, report = None, None
    if tool is not None:
        from rat7m import toolpreds

        read = toolpreds.read_3d(args.pred_path, tool, table, split_rows(table, args.split))
        predicted, missing, report = read.points, ~np.isfinite(read.points).all(axis=-1), read.report
        print("\n".join(report.lines()))
    result = evaluate(predicted, table, args.split, names, gt_name=str(args.gt_path), missing=missing)
    summary = {"pred_path": str(args.pred_path), "gt_path": str(args.gt_path), **summarise(result)}
    if report is not None:
        summary["predictions"] = report.as_dict()
    print(f"{summary['n_samples']} {args.split} samples of {args.gt_path} scored from {args.pred_path} (errors in mm)")
    print(format_summary(summary))
    try:
        paths = write_outputs(result, summary, args.save_dir)
    except OSError as exc:
        raise BadInputError(f"cannot write results to {args.save_dir}: {exc.strerror or exc}") from None
    print(f"wrote {', '.join(str(p) for p in paths)}")


if __name__ == "__main__":
    sys.exit(run_main(main))
