"""anipose 3D poses: ``pose-3d/<name>.csv`` as ``anipose triangulate`` writes it.

Columns per joint ``<joint>_x``, ``_y``, ``_z`` (mm in the calibration's world: ours, since the
calibration is our anipose export), ``_error``, ``_ncams``, ``_score``, then ``M_00..M_22``,
``center_0..2`` and ``fnum``. ``_ncams`` and ``_score`` are NaN where fewer than 2 cameras saw the
joint, and so are its coordinates: a missing joint. ``_score`` is the joint's confidence.

``fnum`` is the row of the 2D input: the ``fnum``-th sample of the recording the file is named after
(``s5-d1.csv``, or any name starting with the recording), in table order, which is the frame index
of our SLEAP export's image sequences.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np

from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.toolpreds.common import (
    Collector3D,
    TableIndex,
    ToolPredictions3D,
    check_confidence,
    check_values,
    is_float,
    read_text,
)

__all__ = ["FORMAT", "read", "sniff"]

FORMAT = "anipose"
_RECORDING = re.compile(r"(s\d+-d\d+)")


def sniff(path: Path, head: bytes) -> bool:
    """A CSV whose header names ``_x`` columns and ``fnum``."""
    first = head.split(b"\n", 1)[0]
    return path.suffix.lower() == ".csv" and b"_x," in first and b"fnum" in first


def read(path: Path, index: TableIndex, target: np.ndarray | None = None) -> ToolPredictions3D:
    """Read an anipose CSV and place row ``fnum`` at the recording's ``fnum``-th sample."""
    match = _RECORDING.match(path.name)
    recording = match.group(1) if match else None
    if recording not in {r.name for r in catalogue.RECORDINGS}:
        msg = f"{path}: name the file after its recording (s5-d1.csv): fnum counts that recording's samples"
        raise BadInputError(msg)
    reader = csv.reader(io.StringIO(read_text(path)))
    try:
        header = next(reader, None)
        if header is None:
            raise BadInputError(f"{path} is empty")
        column = {name.strip(): i for i, name in enumerate(header)}
        wanted = [f"{j}_{axis}" for j in catalogue.JOINT_NAMES for axis in ("x", "y", "z")]
        lacking = [w for w in [*wanted, "fnum"] if w not in column]
        if lacking:
            raise BadInputError(f"{path} has no column {lacking[0]!r}; expected anipose's pose-3d CSV")
        xyz_cols = [column[w] for w in wanted]
        score_cols = [column.get(f"{j}_score") for j in catalogue.JOINT_NAMES]
        positions = index.recording_positions(recording)
        collector = Collector3D(index, FORMAT)
        for row in reader:
            if not row:
                continue
            where = f"{path} line {reader.line_num}"
            if len(row) != len(header):
                raise BadInputError(f"{where} has {len(row)} columns; the header has {len(header)}")
            values = _floats(row, where)
            xyz = values[xyz_cols].reshape(catalogue.N_JOINTS, 3)
            check_values(xyz, where)
            score = np.array([1.0 if c is None else values[c] for c in score_cols])
            check_confidence(score, where)
            fnum = values[column["fnum"]]
            if not np.isfinite(fnum) or fnum != int(fnum) or abs(fnum) > 1e12:
                raise BadInputError(f"{where}: fnum {fnum!r} is not a frame number")
            fnum = int(fnum)
            if recording not in index.split_recordings:
                found = [-1]  # a recording outside the split
            else:
                found = [int(positions[fnum])] if 0 <= fnum < len(positions) else []
            mean = float(np.nanmean(score)) if np.isfinite(score).any() else 0.0
            collector.add(found, xyz, np.nan_to_num(score), mean, f"{recording} fnum {fnum}")
    except csv.Error as exc:
        raise BadInputError(f"{path} line {reader.line_num}: {exc}") from None
    return collector.finish(target)


def _floats(row: list[str], where: str) -> np.ndarray:
    try:
        return np.array([float(c) if c.strip() else np.nan for c in row])
    except ValueError:
        bad = next(c for c in row if c.strip() and not is_float(c))
        raise BadInputError(f"{where}: {bad[:30]!r} is not a number") from None
