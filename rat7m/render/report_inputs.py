"""Reading a scoring run's folder for the report: every file is untrusted, every field is checked.

A ``--metrics_dir`` may come from anywhere (a colleague's tarball, a crafted folder), so the files in
it are read as hostile input:

- only regular files, size-capped, never a FIFO or a device (:func:`rat7m.fileio.read_input`);
- JSON nesting bounded *before* parsing (a 100 000-deep ``[[[...`` is refused, not a RecursionError);
- every field the report uses checked for its type and range, and copied into a fresh dict, so the
  page code never meets a missing key or a wrong type; an error is one line naming file and field,
  e.g. ``summary.json: field recordings['s5-d1'].metrics.mpjpe.mean is 'x'; expected a number or null``;
- text from the files (joint and recording names, paths) is short plain text; the page escapes it
  and the figures draw it without mathtext.

The folder holds ``summary.json`` and ``per_sample_metrics.csv`` (3D scores, of ``--pred_path`` or of
``--pred2d --triangulate``), ``summary_2d.json`` (2D scores) and ``triangulation.json`` (diagnostics of
the triangulation); the file names are those ``compute_metrics.py`` writes.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.fileio import read_input
from rat7m.toolpreds.common import is_float

__all__ = [
    "MAX_CSV_BYTES",
    "MAX_ENTRIES",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_NUMBER",
    "MAX_TEXT",
    "PER_SAMPLE_CSV",
    "SUMMARY_2D_JSON",
    "SUMMARY_JSON",
    "TRIANGULATION_JSON",
    "json_depth",
    "parse_summary",
    "parse_summary_2d",
    "parse_triangulation",
    "read_json",
    "read_per_sample",
    "read_run",
]

#: File names inside a metrics folder (as compute_metrics.py and its 2D scorer write them).
SUMMARY_JSON = "summary.json"
SUMMARY_2D_JSON = "summary_2d.json"
TRIANGULATION_JSON = "triangulation.json"
PER_SAMPLE_CSV = "per_sample_metrics.csv"
#: Largest JSON file read: a real summary is a few kB.
MAX_JSON_BYTES = 4 << 20
#: Deepest JSON nesting accepted: a real summary nests 4 levels.
MAX_JSON_DEPTH = 16
#: Largest per-sample CSV read: the whole mini-RAT7M (112730 samples) is ~7 MB.
MAX_CSV_BYTES = 64 << 20
#: Longest text field (names, paths) accepted.
MAX_TEXT = 4096
#: Largest magnitude of a number (the metrics' own bound): charts scale by it without overflowing.
MAX_NUMBER = 1e100
#: Most entries of a name -> group mapping (recordings, cameras, metrics).
MAX_ENTRIES = 64
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    """Deepest nesting of ``[`` and ``{`` in JSON text (brackets inside strings do not count)."""
    codes = np.frombuffer(_STRINGS.sub(b'""', data), dtype=np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def read_json(path: Path) -> Any:
    """Parse a small JSON file safely (regular file, size cap, depth bound); ``NaN`` reads as None."""
    data = read_input(path, path.name, max_bytes=MAX_JSON_BYTES)
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise BadInputError(f"{path}: JSON nested {depth} deep (a scoring summary nests at most {MAX_JSON_DEPTH})")
    try:
        return json.loads(data, parse_constant=lambda name: None)  # NaN/Infinity: "no value"
    except (ValueError, RecursionError) as exc:
        raise BadInputError(f"{path}: not valid JSON ({exc})") from None


class _Fields:
    """Checks the fields of one file; each error names the file and the field's path in it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, value: Any, expected: str) -> BadInputError:
        shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
        return BadInputError(f"{self.path}: field {where} is {shown[:60]}; expected {expected}")

    def get(self, mapping: Mapping, key: str, where: str) -> Any:
        if key not in mapping:
            return self.missing(where)
        return mapping[key]

    def missing(self, where: str) -> Any:
        raise BadInputError(f"{self.path}: field {where} is missing; is this a compute_metrics --save_dir file?")

    def mapping(self, value: Any, where: str, most: int = MAX_ENTRIES) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, value, "an object")
        if len(value) > most:
            raise BadInputError(f"{self.path}: field {where} has {len(value)} entries; expected at most {most}")
        return value

    def items(self, value: Any, where: str, length: int) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, value, f"a list of {length} entries")
        if len(value) != length:
            raise BadInputError(f"{self.path}: field {where} is a list of {len(value)}; expected {length} entries")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise self.fail(where, value, f"text of at most {MAX_TEXT} characters")
        return value

    def count(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(where, value, "a whole number >= 0")
        return value

    def number(self, value: Any, where: str, low: float = -MAX_NUMBER, high: float = MAX_NUMBER) -> float | None:
        """A number within [low, high], or None (JSON null or NaN)."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise self.fail(where, value, f"a number in [{low:g}, {high:g}] or null")
        return float(value)

    def optional_text(self, mapping: Mapping, key: str) -> str | None:
        return None if mapping.get(key) is None else self.text(mapping[key], key)


def _group_3d(f: _Fields, raw: Any, where: str, names: list[str] | None) -> dict[str, Any]:
    prefix = f"{where}." if where else ""
    raw = f.mapping(raw, where or "(top level)")
    metrics = f.mapping(f.get(raw, "metrics", f"{prefix}metrics"), f"{prefix}metrics")
    if not metrics:
        raise f.fail(f"{prefix}metrics", metrics, "at least one metric")
    names = names if names is not None else [f.text(n, f"{prefix}metrics") for n in metrics]
    key = "n_excluded_joints"
    group: dict[str, Any] = {
        "n_samples": f.count(f.get(raw, "n_samples", f"{prefix}n_samples"), f"{prefix}n_samples"),
        "n_excluded_joints": f.count(f.get(raw, key, f"{prefix}{key}"), f"{prefix}{key}"),
        "metrics": {},
    }
    for name in names:
        at = f"{prefix}metrics.{name}"
        stats = f.mapping(f.get(metrics, name, at), at)
        group["metrics"][name] = {k: f.number(f.get(stats, k, f"{at}.{k}"), f"{at}.{k}") for k in ("mean", "median")}
    return group


def parse_summary(raw: Any, path: Path) -> dict[str, Any]:
    """The checked fields of a ``summary.json`` (3D scores), as a fresh dict."""
    f = _Fields(path)
    summary = _group_3d(f, raw, "", None)
    names = list(summary["metrics"])
    summary["split"] = f.text(f.get(raw, "split", "split"), "split")
    for key in ("pred_path", "pred2d", "gt_path"):
        summary[key] = f.optional_text(raw, key)
    recordings = f.mapping(f.get(raw, "recordings", "recordings"), "recordings")
    summary["recordings"] = {f.text(k, "recordings"): _group_3d(f, v, f"recordings[{k!r}]", names)
                             for k, v in recordings.items()}  # fmt: skip
    per_joint = f.items(f.get(raw, "per_joint_mpjpe", "per_joint_mpjpe"), "per_joint_mpjpe", catalogue.N_JOINTS)
    summary["per_joint_mpjpe"] = []
    for j, entry in enumerate(per_joint):
        at = f"per_joint_mpjpe[{j}]"
        entry = f.mapping(entry, at)
        summary["per_joint_mpjpe"].append({
            "joint": f.text(f.get(entry, "joint", f"{at}.joint"), f"{at}.joint"),
            "mpjpe": f.number(f.get(entry, "mpjpe", f"{at}.mpjpe"), f"{at}.mpjpe", 0.0),
            "n_samples": f.count(f.get(entry, "n_samples", f"{at}.n_samples"), f"{at}.n_samples"),
        })  # fmt: skip
    return summary


def _group_2d(f: _Fields, raw: Any, where: str) -> dict[str, Any]:
    raw = f.mapping(raw, where)
    group: dict[str, Any] = {"n_images": f.count(f.get(raw, "n_images", f"{where}.n_images"), f"{where}.n_images")}
    for key in ("mpjpe_px", "median_px"):
        group[key] = f.number(f.get(raw, key, f"{where}.{key}"), f"{where}.{key}", 0.0)
    for key, value in raw.items():
        if isinstance(key, str) and (key.startswith("pck@") or key in ("ap", "ap50", "ap75", "ar")):
            group[key] = f.number(value, f"{where}.{key}", 0.0, 1.0)
    return group


def parse_summary_2d(raw: Any, path: Path) -> dict[str, Any]:
    """The checked fields of a ``summary_2d.json`` (2D scores per camera), as a fresh dict."""
    f = _Fields(path)
    raw = f.mapping(raw, "(top level)")
    cameras = f.mapping(f.get(raw, "cameras", "cameras"), "cameras", most=16)
    return {
        "pred2d": f.optional_text(raw, "pred2d"),
        "gt_path": f.optional_text(raw, "gt_path"),
        "split": f.text(f.get(raw, "split", "split"), "split"),
        "cameras": {f.text(k, "cameras"): _group_2d(f, v, f"cameras[{k!r}]") for k, v in cameras.items()},
        "all": _group_2d(f, f.get(raw, "all", "all"), "all"),
        "ap_note": f.optional_text(raw, "ap_note"),
    }


def parse_triangulation(raw: Any, path: Path) -> dict[str, Any]:
    """The checked fields of a ``triangulation.json`` (reprojection error and views used), as a fresh dict."""
    f = _Fields(path)
    raw = f.mapping(raw, "(top level)")
    per_joint = f.items(f.get(raw, "per_joint", "per_joint"), "per_joint", catalogue.N_JOINTS)
    joints = []
    for j, entry in enumerate(per_joint):
        at = f"per_joint[{j}]"
        entry = f.mapping(entry, at)
        joints.append({
            "joint": f.text(f.get(entry, "joint", f"{at}.joint"), f"{at}.joint"),
            "reprojection_error_px": f.number(f.get(entry, "reprojection_error_px", f"{at}.reprojection_error_px"),
                                              f"{at}.reprojection_error_px", 0.0),
            "views_used": f.number(f.get(entry, "views_used", f"{at}.views_used"), f"{at}.views_used", 0.0),
        })  # fmt: skip
    mean = "reprojection_error_px_mean"
    return {
        "mode": f.text(f.get(raw, "mode", "mode"), "mode"),
        "reprojection_error_px_mean": f.number(f.get(raw, mean, mean), mean, 0.0),
        "views_used_mean": f.number(f.get(raw, "views_used_mean", "views_used_mean"), "views_used_mean", 0.0),
        "per_joint": joints,
    }


def read_per_sample(metrics_dir: str | Path, n_samples: int | None = None) -> dict[str, np.ndarray]:
    """The checked columns of ``per_sample_metrics.csv``: ``recording`` (text), ``frame`` and ``sample`` (int),
    and each metric column, ``mpjpe`` unless the run chose another (float, NaN for an unscored sample).

    Args:
        metrics_dir: a ``compute_metrics.py --save_dir`` folder.
        n_samples: when given, every ``sample`` must be below it (the split's size).

    Raises:
        BadInputError: unreadable file, missing column, or a bad cell (naming its line and column).
    """
    path = Path(metrics_dir) / PER_SAMPLE_CSV
    text = read_input(path, PER_SAMPLE_CSV, max_bytes=MAX_CSV_BYTES).decode("utf-8", errors="replace")
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise BadInputError(f"{path}: not a readable CSV ({exc})") from None
    if len(rows) < 2:
        raise BadInputError(f"{path} has no samples")
    header = rows[0]
    missing = [c for c in ("recording", "frame", "sample") if c not in header]
    if missing or not set(header) - {"recording", "frame", "sample", "excluded_joints"}:
        what = ", ".join(missing) if missing else "of a metric (mpjpe, pa_mpjpe, n_mpjpe)"
        raise BadInputError(f"{path}: no column {what} in its header line")
    body = rows[1:]
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise BadInputError(f"{path} line {number} has {len(row)} cells; the header has {len(header)}")
    columns: dict[str, np.ndarray] = {}
    for c, name in enumerate(header):
        cells = [row[c] for row in body]
        if name == "recording":
            columns[name] = np.asarray([cell[:64] for cell in cells])
            continue
        try:
            values = np.asarray(cells, dtype=np.float64)
        except ValueError:
            line = next(i for i, cell in enumerate(cells, start=2) if not is_float(cell))
            msg = f"{path} line {line}, column {name}: {cells[line - 2][:30]!r} is not a number"
            raise BadInputError(msg) from None
        if name in ("frame", "sample", "excluded_joints"):
            bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values)) | (values > 2**53)
            if bad.any():
                line = int(np.flatnonzero(bad)[0]) + 2
                msg = f"{path} line {line}, column {name}: {cells[line - 2][:30]!r} is not a whole number >= 0"
                raise BadInputError(msg)
            values = values.astype(np.int64)
        elif (np.abs(values) > MAX_NUMBER).any():  # inf too; NaN (an unscored sample) passes
            line = int(np.flatnonzero(np.abs(values) > MAX_NUMBER)[0]) + 2
            msg = f"{path} line {line}, column {name}: {cells[line - 2][:30]!r} is beyond {MAX_NUMBER:g}"
            raise BadInputError(msg)
        columns[name] = values
    samples = columns["sample"]
    if n_samples is not None and (samples >= n_samples).any():
        line = int(np.flatnonzero(samples >= n_samples)[0]) + 2
        msg = f"{path} line {line}: sample {samples[line - 2]} is outside the split's {n_samples} samples"
        raise BadInputError(msg)
    if len(np.unique(samples)) != len(samples):
        raise BadInputError(f"{path}: a sample appears on two lines (column sample must be unique)")
    return columns




def read_run(metrics_dir: Path) -> dict[str, Any]:
    """Everything the report draws from ``metrics_dir``: ``summary``, ``columns``, ``summary_2d``, ``triangulation``.

    Each is None when its file is absent; at least one of ``summary.json`` and ``summary_2d.json`` must be there.
    """
    present = {name: (metrics_dir / name).exists() or (metrics_dir / name).is_symlink()
               for name in (SUMMARY_JSON, SUMMARY_2D_JSON, TRIANGULATION_JSON)}  # fmt: skip
    if not present[SUMMARY_JSON] and not present[SUMMARY_2D_JSON]:
        msg = (f"cannot read {metrics_dir / SUMMARY_JSON} (nor {SUMMARY_2D_JSON}): not found; "
               f"is {metrics_dir} a compute_metrics --save_dir?")  # fmt: skip
        raise BadInputError(msg)
    run: dict[str, Any] = {"summary": None, "columns": None, "summary_2d": None, "triangulation": None}
    if present[SUMMARY_JSON]:
        run["summary"] = parse_summary(read_json(metrics_dir / SUMMARY_JSON), metrics_dir / SUMMARY_JSON)
        run["columns"] = read_per_sample(metrics_dir, run["summary"]["n_samples"])
        if len(run["columns"]["sample"]) != run["summary"]["n_samples"]:
            msg = (f"{metrics_dir / PER_SAMPLE_CSV} has {len(run['columns']['sample'])} samples; {SUMMARY_JSON} "
                   f"says n_samples {run['summary']['n_samples']}: the two files are not of the same run")  # fmt: skip
            raise BadInputError(msg)
    if present[SUMMARY_2D_JSON]:
        run["summary_2d"] = parse_summary_2d(read_json(metrics_dir / SUMMARY_2D_JSON), metrics_dir / SUMMARY_2D_JSON)
    if present[TRIANGULATION_JSON]:
        path = metrics_dir / TRIANGULATION_JSON
        run["triangulation"] = parse_triangulation(read_json(path), path)
    return run
