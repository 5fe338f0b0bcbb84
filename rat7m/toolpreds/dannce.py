"""DANNCE predictions: ``save_data_AVG.mat`` / ``save_data_MAX.mat`` (its own ``savedata_expval``).

``pred`` (N, 3, 20) world mm, ``p_max`` (N, 20) the confidence per joint, ``sampleID`` (1, N) as
floats: the label3d ``data_sampleID`` of our DANNCE export, which is the table row. DANNCE can drop
or reorder samples, so predictions are joined on ``sampleID``, never on order; a sample the file
lacks is missing. A NaN coordinate is a missing joint.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.matfile import check_variables
from rat7m.toolpreds import common

__all__ = ["FORMAT", "read", "sniff"]

FORMAT = "dannce"


def sniff(path: Path, head: bytes) -> bool:
    """A MATLAB ``.mat`` file."""
    return path.suffix.lower() == ".mat" and head.startswith(b"MATLAB")


def read(path: Path, index: common.TableIndex, target: np.ndarray | None = None) -> common.ToolPredictions3D:
    """Read ``pred``, ``p_max`` and ``sampleID`` and place each prediction at its table row."""
    import scipy.io

    with common.library_read(path, ".mat file"):
        data = path.read_bytes()  # within the size cap (library_read): checked, then parsed, the same bytes
        if data.startswith(b"MATLAB 7.3"):
            raise BadInputError(f"{path} is a MATLAB v7.3 (HDF5) file; save it with -v7 (DANNCE writes v5)")
        wanted = ("pred", "p_max", "sampleID")
        readable = check_variables(path, strict=wanted, data=data)  # scipy trusts the headers (a crash, gigabytes)
        try:
            stream = io.BytesIO(data)  # loadmat takes an open file too (scipy's docs); scipy-stubs types only paths
            content = scipy.io.loadmat(stream, variable_names=[v for v in wanted if v in readable])  # type: ignore[arg-type]
        except NotImplementedError:
            raise BadInputError(f"{path} is a MATLAB v7.3 (HDF5) file; save it with -v7 (DANNCE writes v5)") from None
    J = catalogue.N_JOINTS
    for name in ("pred", "sampleID"):
        if name not in content:
            raise BadInputError(f"{path} has no {name!r}; expected DANNCE's save_data_AVG.mat (pred, p_max, sampleID)")
    pred, ids = content["pred"], content["sampleID"]
    if pred.dtype.kind not in "fiu" or ids.dtype.kind not in "fiu":
        raise BadInputError(f"{path}: pred and sampleID must be numbers")
    pred = np.asarray(pred, dtype=np.float64)
    if pred.ndim != 3 or pred.shape[1:] != (3, J):
        raise BadInputError(f"{path}: pred has shape {pred.shape}; expected (N, 3, {J})")
    ids = np.asarray(ids, dtype=np.float64).reshape(-1)
    if len(ids) != len(pred):
        raise BadInputError(f"{path}: {len(ids)} sampleIDs for {len(pred)} predictions")
    p_max = content.get("p_max")
    if p_max is None:
        p_max = np.ones((len(pred), J))
    p_max = np.asarray(p_max, dtype=np.float64) if p_max.dtype.kind in "fiu" else None
    if p_max is None or p_max.shape != (len(pred), J):
        raise BadInputError(f"{path}: p_max must be numbers of shape ({len(pred)}, {J})")
    common.check_values(pred, f"{path} pred")
    common.check_values(ids, f"{path} sampleID", allow_nan=False)
    common.check_confidence(p_max, f"{path} p_max")
    points = np.moveaxis(pred, 1, 2)
    collector = common.Collector3D(index, FORMAT)
    for k in range(len(pred)):
        sample = ids[k]
        row = int(sample) if sample == int(sample) else None
        positions = [] if row is None or not 0 <= row < index.n_table_rows else [index.position.get(row, -1)]
        score = float(np.nan_to_num(np.nanmean(p_max[k]))) if np.isfinite(p_max[k]).any() else 0.0
        collector.add(positions, points[k], p_max[k], score, f"sampleID {sample:g}")
    return collector.finish(target)
