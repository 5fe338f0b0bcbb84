"""Evaluation of a split's predictions: 3D scores (MPJPE, PA-MPJPE, N-MPJPE), 2D scores per camera,
triangulated 2D scored as 3D, and the result files.

The layers import only downwards: :mod:`rat7m.metrics` and :mod:`rat7m.metrics2d` (the numbers),
:mod:`rat7m.predictions` (the files), then this module (a split of a table scored and written), then
the command line (``metric_utils/compute_metrics.py``), which parses arguments and calls
:func:`score_3d_file` or :func:`score_2d_file` with keyword arguments.

Results go to a save folder: ``per_sample_metrics.csv``, ``summary.json``, ``per_joint_mpjpe.csv``
and ``per_joint_mpjpe.png`` for 3D; ``summary_2d.json`` for 2D, and with triangulation the 3D files
and ``triangulation.json``. Each is written under a temporary name, then renamed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from rat7m import catalogue, pixels
from rat7m.errors import BadInputError
from rat7m.fileio import atomic_write
from rat7m.metrics import finite_joints, mpjpe, n_mpjpe, pa_mpjpe
from rat7m.metrics import scores as metric_scores
from rat7m.model import Table, unique_pairs
from rat7m.predictions import (
    Predictions2D,
    read_predictions,
    read_predictions_2d,
    read_tool_2d,
    read_tool_3d,
    save_predictions,
    tool_format,
)

__all__ = [
    "METRICS",
    "METRIC_TITLES",
    "OUTPUT_NAMES",
    "Evaluation",
    "evaluate",
    "format_summary",
    "json_safe",
    "score_2d_file",
    "score_3d_file",
    "summarise",
    "write_outputs",
]

#: Metric functions by command-line name, in the order they are reported.
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mpjpe": mpjpe,
    "pa_mpjpe": pa_mpjpe,
    "n_mpjpe": n_mpjpe,
}
#: Column titles of the printed table.
METRIC_TITLES = {"mpjpe": "MPJPE", "pa_mpjpe": "PA-MPJPE", "n_mpjpe": "N-MPJPE"}
#: Names of the files written to the save directory.
PER_SAMPLE_CSV = "per_sample_metrics.csv"
SUMMARY_JSON = "summary.json"
PER_JOINT_CSV = "per_joint_mpjpe.csv"
PER_JOINT_PNG = "per_joint_mpjpe.png"
#: File written with the 2D results.
SUMMARY_2D_JSON = "summary_2d.json"
#: File written with the triangulation diagnostics.
TRIANGULATION_JSON = "triangulation.json"
#: Every file a run may write to ``--save_dir`` (3D, ``--pred2d``, ``--triangulate``, ``--report``).
OUTPUT_NAMES = (PER_SAMPLE_CSV, SUMMARY_JSON, PER_JOINT_CSV, PER_JOINT_PNG, SUMMARY_2D_JSON, TRIANGULATION_JSON,
                "report.html")  # fmt: skip


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


def _recording_names(subjects: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Recording name of every sample, looked up once per (subject, day) pair."""
    pairs, inverse = unique_pairs(subjects, days)
    try:
        names = [catalogue.recording_for(s, d).name for s, d in pairs.tolist()]
    except KeyError as exc:
        raise BadInputError(f"annotation table: {exc.args[0]}") from None
    return np.asarray(names, dtype=object)[inverse]


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
    rows = Table.of(table).split_rows(split)
    if len(rows) == 0:
        raise BadInputError(f"{gt_name} has no {split!r} samples (its train_test column)")
    if len(predicted) != len(rows):
        msg = (
            f"predictions have {len(predicted)} rows but the {split!r} split of {gt_name} has {len(rows)} "
            f"samples; expected one row per sample, in table order, without a header"
        )
        other = [
            s for s in ("test", "train", "all") if s != split and len(Table.of(table).split_rows(s)) == len(predicted)
        ]
        if other:
            msg += f"; {len(predicted)} is the size of the {other[0]!r} split: did you mean --split {other[0]}?"
        raise BadInputError(msg)
    columns = table["table"]
    target = np.asarray(columns["3D_keypoints"], dtype=np.float64)[rows]  # one copy, the split's rows
    if missing is not None:
        target = np.where(missing[..., None], np.nan, target)
        predicted = np.where(missing[..., None], 0.0, predicted)
    try:
        joint_error, scores = metric_scores(predicted, target, metrics)  # inputs checked once, not per metric
    except ValueError as exc:  # a prediction (or target) beyond the metrics' magnitude bound
        raise BadInputError(f"{exc} (split {split!r} of {gt_name})") from None
    finite = finite_joints(target)
    scored = finite.any(axis=1)
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
        excluded_joints=finite.shape[1] - finite.sum(axis=1),
        metrics=scores,
        joint_error=joint_error,
    )


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


def _plot_per_joint(summary: dict[str, Any], handle: IO[bytes]) -> None:
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
# scoring a prediction file


def score_3d_file(*, pred_path: Path, gt_path: Path, save_dir: Path, table: dict[str, Any] | None = None,
                  split: str = "test", metrics: Sequence[str] = tuple(METRICS), pred_format: str = "auto"
                  ) -> list[Path]:  # fmt: skip
    """Score a 3D prediction file (ours, or a tool's): print the table, write the result files.

    Args:
        pred_path: the predictions (see :func:`rat7m.predictions.read_predictions`).
        gt_path: the annotation table (named in messages and the summary).
        table: the table as loaded from ``gt_path``; None: loaded here once our own file is read,
            so a bad prediction file is refused before the table is loaded.
        save_dir: folder for the result files.
        split: "test", "train" or "all".
        metrics: names from :data:`METRICS`.
        pred_format: one of :data:`rat7m.predictions.PRED_FORMATS`, or "auto".

    Returns:
        The files written.
    """
    tool = tool_format(pred_path, pred_format)
    missing, report = None, None
    predicted = read_predictions(pred_path) if tool is None else None
    if table is None:
        from rat7m.table import load_annotation  # lazy: the caller may hold the table already

        table = load_annotation(gt_path)
    if tool is not None:
        read = read_tool_3d(pred_path, tool, table, Table.of(table).split_rows(split))
        predicted, missing, report = read.points, ~np.isfinite(read.points).all(axis=-1), read.report
        print("\n".join(report.lines()))
    assert predicted is not None  # read above: our own file, or the tool's
    result = evaluate(predicted, table, split, metrics, gt_name=str(gt_path), missing=missing)
    summary = {"pred_path": str(pred_path), "gt_path": str(gt_path), **summarise(result)}
    if report is not None:
        summary["predictions"] = report.as_dict()
    print(f"{summary['n_samples']} {split} samples of {gt_path} scored from {pred_path} (errors in mm)")
    print(format_summary(summary))
    try:
        paths = write_outputs(result, summary, save_dir)
    except OSError as exc:
        raise BadInputError(f"cannot write results to {save_dir}: {exc.strerror or exc}") from None
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return paths


def score_2d_file(*, pred2d: Path, table: dict[str, Any], gt_path: Path, save_dir: Path, split: str = "test",
                  pred_format: str = "auto", pred2d_convention: str = pixels.ZERO_BASED, triangulate: bool = False,
                  robust: bool = False, inlier_px: float = 20.0, triangulated_out: Path | None = None,
                  images_root: Path | None = None) -> list[Path]:  # fmt: skip
    """Score 2D predictions per camera; with ``triangulate``, also the views triangulated to 3D. Print, write.

    Predictions are 0-based pixels unless ``pred2d_convention`` says otherwise; they are moved into
    the table's convention (:attr:`rat7m.model.Table.pixel_convention`) before scoring, and into MATLAB's,
    the cameras' own, before triangulating. The 3D result is scored by exactly the code that scores
    a 3D file (:func:`evaluate`), so the two kinds of prediction compare.

    Args:
        pred2d: the 2D predictions (:func:`rat7m.predictions.read_predictions_2d`, or a tool's file).
        table, gt_path, save_dir, split, pred_format: as :func:`score_3d_file`.
        pred2d_convention: pixel convention of our own CSV/npz (:data:`rat7m.pixels.CONVENTIONS`).
        triangulate: also triangulate the views with the table's cameras and score them in 3D.
        robust: two-view hypotheses and least-squares refinement instead of a linear DLT.
        inlier_px: with ``robust``, the reprojection radius of an agreeing view.
        triangulated_out: also write the triangulated points there (the 3D prediction format).
        images_root: the dataset root, for a tool's file that names images (YOLO labels).

    Returns:
        The files written.
    """
    from rat7m.metrics2d import format_2d, score_2d  # lazy: a 3D run needs none of it

    rows = Table.of(table).split_rows(split)
    if len(rows) == 0:
        raise BadInputError(f"{gt_path} has no {split!r} samples (its train_test column)")
    names = [str(n) for n in table["camera_names"]]
    convention = Table.of(table).pixel_convention
    tool, report, scores = tool_format(pred2d, pred_format), None, None
    if tool is None:
        pred = read_predictions_2d(pred2d, len(rows), names)
        pred = replace(pred, points=pixels.convert(pred.points, pred2d_convention, convention))  # as the table's
    elif pred2d_convention != pixels.ZERO_BASED:  # never ignored silently
        raise BadInputError(f"--pred2d-convention {pred2d_convention} is for our own CSV/npz; {pred2d} is a "
                            f"{tool} file, read in 0-based pixels as the tool writes them")  # fmt: skip
    else:  # a tool's file: its 0-based pixels come back in the table's convention
        read = read_tool_2d(pred2d, tool, table, rows, images_root=images_root or gt_path.resolve().parent)
        pred, report, scores = Predictions2D(read.points, read.confidence), read.report, read.score
        print("\n".join(report.lines()))
    target = np.stack([np.asarray(table["table"]["2D_keypoints"][n])[rows] for n in names], axis=1).astype(np.float64)
    result = score_2d(pred.points, target, names, pred.confidence, scores=scores)
    if report is not None:
        result["predictions"] = report.as_dict()
    what = f"{len(rows)} {split} samples x {len(names)} cameras of {gt_path}"
    given = pred2d_convention if tool is None else f"{tool}, 0-based"
    print(f"{what} scored from {pred2d} (2D, {given} pixels; the table's are {convention})")
    print(format_2d(result))
    # triangulation may refuse the predictions: before anything is written
    options = {"robust": robust, "refine": robust, "inlier_px": inlier_px}
    triangulated = None
    if triangulate:
        triangulated = _triangulate(pred2d, gt_path, split, table, rows, pred, options, report)
    save_dir.mkdir(parents=True, exist_ok=True)
    written = [save_dir / SUMMARY_2D_JSON]
    _write_json(written[0], {"pred2d": str(pred2d), "gt_path": str(gt_path), "split": split, **result})
    if triangulated is not None:
        written += _write_triangulated(save_dir, triangulated_out, *triangulated)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return written


def _triangulate(pred2d: Path, gt_path: Path, split: str, table: dict[str, Any], rows: np.ndarray,
                 pred: Predictions2D, options: dict[str, Any], tool_report: Any = None) -> tuple[Any, ...]:  # fmt: skip
    """Triangulate and score as a 3D prediction; print the 3D table. Refuses points it cannot triangulate.

    A tool's missing joints (``tool_report`` given) weigh 0; a joint seen in fewer than 2 views is then
    left out of the 3D scores and counted, where our own format (every view predicted) makes it an error.
    """
    from rat7m.triangulate import triangulate_rows  # lazy: only triangulation needs it

    points, confidence = pred.points, pred.confidence
    if tool_report is not None:
        predicted = np.isfinite(points).all(axis=-1)
        weight = 1.0 if confidence is None else confidence  # None weighs every view 1 (a tool's reader gives them)
        points, confidence = np.where(predicted[..., None], points, 0.0), np.where(predicted, weight, 0.0)
    matlab = pixels.convert(points, Table.of(table).pixel_convention, pixels.MATLAB)  # the cameras' own pixels
    result = triangulate_rows(matlab, table, rows, confidence, **options)
    missing = np.argwhere(~np.isfinite(result.points).all(axis=-1))
    untriangulated, few = None, 0
    if tool_report is not None:
        untriangulated = ~np.isfinite(result.points).all(axis=-1)
        few = int(untriangulated.sum())
        print(f"{few} joints predicted in fewer than 2 views: left out of the 3D scores")
        missing = missing[:0]
    if len(missing):
        sample, joint = missing[0]
        where = f"{pred2d}: sample {sample}, joint {catalogue.JOINT_NAMES[joint]}"
        views = result.views_used[sample, joint]
        if result.degenerate[sample, joint]:
            more = int(result.degenerate.sum()) - 1
            msg = (f"{where} and {more} more: the {views} camera(s) it is seen in give no 3D point (their rays are "
                   "parallel, or meet at or behind a camera); check the table's cameras")  # fmt: skip
        else:
            msg = f"{where} has a confidence above 0 in {views} camera(s); triangulation needs 2"
        raise BadInputError(msg)
    evaluation = evaluate(result.points, table, split, tuple(METRICS), gt_name=str(gt_path), missing=untriangulated)
    summary = {"pred2d": str(pred2d), "gt_path": str(gt_path), "triangulation": options, **summarise(evaluation)}
    if tool_report is not None:
        summary["predictions"] = tool_report.as_dict() | {"n_joints_in_fewer_than_2_views": few}
    mode = "robust (two-view hypotheses + least squares)" if options["robust"] else "linear DLT"
    print(f"\ntriangulated ({mode}): reprojection error mean {np.nanmean(result.reprojection_error):.2f} px, "
          f"views used mean {np.mean(result.views_used):.2f} of {pred.points.shape[1]} (errors in mm)")  # fmt: skip
    print(format_summary(summary))
    return result, evaluation, summary, mode


def _write_triangulated(save_dir: Path, triangulated_out: Path | None, result: Any, evaluation: Evaluation,
                        summary: dict[str, Any], mode: str) -> list[Path]:  # fmt: skip
    """Write the 3D results, ``triangulation.json`` and ``triangulated_out``; return the files written."""
    paths = write_outputs(evaluation, summary, save_dir)
    diagnostics = {
        "mode": mode,
        "reprojection_error_px_mean": float(np.nanmean(result.reprojection_error)),
        "views_used_mean": float(np.mean(result.views_used)),
        "per_joint": [
            {"joint": name, "reprojection_error_px": float(np.nanmean(result.reprojection_error[:, j])),
             "views_used": float(np.mean(result.views_used[:, j]))}
            for j, name in enumerate(catalogue.JOINT_NAMES)
        ],
    }  # fmt: skip
    paths.append(save_dir / TRIANGULATION_JSON)
    _write_json(paths[-1], diagnostics)
    if triangulated_out is not None:
        save_predictions(triangulated_out, result.points)
        paths.append(triangulated_out)
    return paths


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float as None: JSON has no NaN or infinity (``null`` is valid JSON)."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path: Path, value: dict[str, Any]) -> None:
    with atomic_write(path) as handle:
        handle.write((json.dumps(json_safe(value), indent=2, allow_nan=False) + "\n").encode())
