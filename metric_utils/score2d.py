"""``compute_metrics.py --pred2d``: score 2D predictions per camera, and optionally triangulate them to 3D.

The 2D table comes from :mod:`metric_utils.metrics2d`; with ``--triangulate`` the six views are
triangulated with the table's own cameras (:mod:`rat7m.triangulate`) and the 3D result is scored by
exactly the code that scores a ``--pred_path`` file, so the two kinds of prediction compare.

Predictions are 0-based image pixels unless ``--pred2d-convention matlab`` says otherwise; they are
moved into the table's convention (detected from the table, :func:`rat7m.pixels.convention_of`)
before scoring, and into MATLAB's, the cameras' own, before triangulating.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from metric_utils import compute_metrics as cm
from metric_utils.metrics2d import format_2d, score_2d
from metric_utils.pred2d import Predictions2D, read_predictions_2d
from rat7m import catalogue, pixels
from rat7m.cli import ROOT_ENV
from rat7m.errors import BadInputError
from rat7m.fileio import atomic_write
from rat7m.triangulate import triangulate_rows

#: File written to ``--save_dir`` with the 2D results.
SUMMARY_2D_JSON = "summary_2d.json"
#: File written to ``--save_dir`` with the triangulation diagnostics.
TRIANGULATION_JSON = "triangulation.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The 2D options of compute_metrics.py (``--pred2d`` itself is in its prediction group)."""
    parser.add_argument("--pred2d_convention", "--pred2d-convention", choices=pixels.CONVENTIONS,
                        default=pixels.ZERO_BASED,
                        help="pixel convention of --pred2d: zero-based (the top-left pixel's centre at (0, 0), as "
                        "every detector writes) or matlab (1-based, as the RAT7M cameras) (default: %(default)s)")
    parser.add_argument("--triangulate", action="store_true",
                        help="with --pred2d: triangulate the views to 3D with the table's cameras and score that too")
    parser.add_argument("--robust", action="store_true",
                        help="with --triangulate: keep agreeing views (two-view hypotheses), refine by least squares")
    parser.add_argument("--inlier_px", "--inlier-px", type=positive_px, default=20.0,
                        help="with --robust: reprojection radius (px) of an agreeing view (default: %(default)s)")
    parser.add_argument("--triangulated_out", "--triangulated-out", type=Path, default=None,
                        help="with --triangulate: also write the 3D points as the N x 60 CSV (or .npy) of --pred_path "
                        "(default: not written)")


def positive_px(text: str) -> float:
    """An argparse ``type``: a radius in pixels, a finite number above 0 (checked before anything is read)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of pixels above 0, not {text}")
    return value


def run(args: argparse.Namespace, table: dict[str, Any]) -> int:
    """Score ``args.pred2d``; print the 2D table (and the 3D one with ``--triangulate``); write results."""
    if args.pred2d is None:
        raise BadInputError("--triangulate works on 2D predictions: give them with --pred2d PATH")
    rows = cm.split_rows(table, args.split)
    if len(rows) == 0:
        raise BadInputError(f"{args.gt_path} has no {args.split!r} samples (its train_test column)")
    names = [str(n) for n in table["camera_names"]]
    convention = pixels.convention_of(table)
    tool, report, scores = cm._tool_format(args.pred2d, args.pred_format), None, None
    if tool is None:
        pred = read_predictions_2d(args.pred2d, len(rows), names)
        pred = replace(pred, points=pixels.convert(pred.points, args.pred2d_convention, convention))  # as the table's
    elif args.pred2d_convention != pixels.ZERO_BASED:  # never ignored silently
        raise BadInputError(f"--pred2d-convention {args.pred2d_convention} is for our own CSV/npz; {args.pred2d} is a "
                            f"{tool} file, read in 0-based pixels as the tool writes them")  # fmt: skip
    else:  # a tool's file: its 0-based pixels come back in the table's convention
        from rat7m import toolpreds

        images_root = args.root or (Path(os.environ[ROOT_ENV]) if os.environ.get(ROOT_ENV) else None)
        images_root = images_root or args.gt_path.resolve().parent  # the dataset root, as every command finds it
        read = toolpreds.read_2d(args.pred2d, tool, table, rows, images_root=images_root)
        pred, report, scores = Predictions2D(read.points, read.confidence), read.report, read.score
        print("\n".join(report.lines()))
    target = np.stack([np.asarray(table["table"]["2D_keypoints"][n])[rows] for n in names], axis=1).astype(np.float64)
    result = score_2d(pred.points, target, names, pred.confidence, scores=scores)
    if report is not None:
        result["predictions"] = report.as_dict()
    what = f"{len(rows)} {args.split} samples x {len(names)} cameras of {args.gt_path}"
    given = args.pred2d_convention if tool is None else f"{tool}, 0-based"
    print(f"{what} scored from {args.pred2d} (2D, {given} pixels; the table's are {convention})")
    print(format_2d(result))
    # triangulation may refuse the predictions: before anything is written
    triangulated = _triangulate(args, table, rows, pred, report) if args.triangulate else None
    args.save_dir.mkdir(parents=True, exist_ok=True)
    written = [args.save_dir / SUMMARY_2D_JSON]
    _write_json(written[0], {"pred2d": str(args.pred2d), "gt_path": str(args.gt_path), "split": args.split, **result})
    if triangulated is not None:
        written += _write_triangulated(args, *triangulated)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _triangulate(args: argparse.Namespace, table: dict[str, Any], rows: np.ndarray, pred: Any,
                 tool_report: Any = None) -> tuple[Any, ...]:  # fmt: skip
    """Triangulate and score as a 3D prediction; print the 3D table. Refuses points it cannot triangulate.

    A tool's missing joints (``tool_report`` given) weigh 0; a joint seen in fewer than 2 views is then
    left out of the 3D scores and counted, where our own format (every view predicted) makes it an error.
    """
    options = {"robust": args.robust, "refine": args.robust, "inlier_px": args.inlier_px}
    points, confidence = pred.points, pred.confidence
    if tool_report is not None:
        predicted = np.isfinite(points).all(axis=-1)
        points, confidence = np.where(predicted[..., None], points, 0.0), np.where(predicted, confidence, 0.0)
    matlab = pixels.convert(points, pixels.convention_of(table), pixels.MATLAB)  # the cameras' own pixels
    result = triangulate_rows(matlab, table, rows, confidence, **options)
    missing = np.argwhere(~np.isfinite(result.points).all(axis=-1))
    untriangulated = None
    if tool_report is not None:
        untriangulated = ~np.isfinite(result.points).all(axis=-1)
        print(f"{int(untriangulated.sum())} joints predicted in fewer than 2 views: left out of the 3D scores")
        missing = missing[:0]
    if len(missing):
        sample, joint = missing[0]
        where = f"{args.pred2d}: sample {sample}, joint {catalogue.JOINT_NAMES[joint]}"
        views = result.views_used[sample, joint]
        if result.degenerate[sample, joint]:
            more = int(result.degenerate.sum()) - 1
            msg = (f"{where} and {more} more: the {views} camera(s) it is seen in give no 3D point (their rays are "
                   "parallel, or meet at or behind a camera); check the table's cameras")  # fmt: skip
        else:
            msg = f"{where} has a confidence above 0 in {views} camera(s); triangulation needs 2"
        raise BadInputError(msg)
    evaluation = cm.evaluate(result.points, table, args.split, tuple(cm.METRICS), gt_name=str(args.gt_path),
                             missing=untriangulated)  # fmt: skip
    summary = {"pred2d": str(args.pred2d), "gt_path": str(args.gt_path), "triangulation": options,
               **cm.summarise(evaluation)}  # fmt: skip
    if tool_report is not None:
        summary["predictions"] = tool_report.as_dict() | {"n_joints_in_fewer_than_2_views": int(untriangulated.sum())}
    mode = "robust (two-view hypotheses + least squares)" if args.robust else "linear DLT"
    print(f"\ntriangulated ({mode}): reprojection error mean {np.nanmean(result.reprojection_error):.2f} px, "
          f"views used mean {np.mean(result.views_used):.2f} of {pred.points.shape[1]} (errors in mm)")  # fmt: skip
    print(cm.format_summary(summary))
    return result, evaluation, summary, mode


def _write_triangulated(args: argparse.Namespace, result: Any, evaluation: Any, summary: dict[str, Any],
                        mode: str) -> list[Path]:  # fmt: skip
    """Write the 3D results, ``triangulation.json`` and ``--triangulated_out``; return the files written."""
    paths = cm.write_outputs(evaluation, summary, args.save_dir)
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
    paths.append(args.save_dir / TRIANGULATION_JSON)
    _write_json(paths[-1], diagnostics)
    if args.triangulated_out is not None:
        cm.save_predictions(args.triangulated_out, result.points)
        paths.append(args.triangulated_out)
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
