"""``compute_metrics.py --pred2d``: score 2D predictions per camera, and optionally triangulate them to 3D.

The 2D table comes from :mod:`metric_utils.metrics2d`; with ``--triangulate`` the six views are
triangulated with the table's own cameras (:mod:`rat7m.triangulate`) and the 3D result is scored by
exactly the code that scores a ``--pred_path`` file, so the two kinds of prediction compare.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from metric_utils import compute_metrics as cm
from metric_utils.metrics2d import format_2d, score_2d
from metric_utils.pred2d import read_predictions_2d
from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.fileio import atomic_write
from rat7m.triangulate import triangulate_rows

#: File written to ``--save_dir`` with the 2D results.
SUMMARY_2D_JSON = "summary_2d.json"
#: File written to ``--save_dir`` with the triangulation diagnostics.
TRIANGULATION_JSON = "triangulation.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The 2D options of compute_metrics.py (``--pred2d`` itself is in its prediction group)."""
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
    pred = read_predictions_2d(args.pred2d, len(rows), names)
    target = np.stack([np.asarray(table["table"]["2D_keypoints"][n])[rows] for n in names], axis=1).astype(np.float64)
    result = score_2d(pred.points, target, names, pred.confidence)
    what = f"{len(rows)} {args.split} samples x {len(names)} cameras of {args.gt_path}"
    print(f"{what} scored from {args.pred2d} (2D, pixels)")
    print(format_2d(result))
    triangulated = _triangulate(args, table, rows, pred) if args.triangulate else None  # may refuse: before writing
    args.save_dir.mkdir(parents=True, exist_ok=True)
    written = [args.save_dir / SUMMARY_2D_JSON]
    _write_json(written[0], {"pred2d": str(args.pred2d), "gt_path": str(args.gt_path), "split": args.split, **result})
    if triangulated is not None:
        written += _write_triangulated(args, *triangulated)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _triangulate(args: argparse.Namespace, table: dict[str, Any], rows: np.ndarray, pred: Any) -> tuple[Any, ...]:
    """Triangulate and score as a 3D prediction; print the 3D table. Refuses points it cannot triangulate."""
    options = {"robust": args.robust, "refine": args.robust, "inlier_px": args.inlier_px}
    result = triangulate_rows(pred.points, table, rows, pred.confidence, **options)
    missing = np.argwhere(~np.isfinite(result.points).all(axis=-1))
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
    evaluation = cm.evaluate(result.points, table, args.split, tuple(cm.METRICS), gt_name=str(args.gt_path))
    summary = {"pred2d": str(args.pred2d), "gt_path": str(args.gt_path), "triangulation": options,
               **cm.summarise(evaluation)}  # fmt: skip
    mode = "robust (two-view hypotheses + least squares)" if args.robust else "linear DLT"
    print(f"\ntriangulated ({mode}): reprojection error mean {np.mean(result.reprojection_error):.2f} px, "
          f"views used mean {np.mean(result.views_used):.2f} of {pred.points.shape[1]} (errors in mm)")  # fmt: skip
    print(cm.format_summary(summary))
    return result, evaluation, summary, mode


def _write_triangulated(args: argparse.Namespace, result: Any, evaluation: Any, summary: dict[str, Any],
                        mode: str) -> list[Path]:  # fmt: skip
    """Write the 3D results, ``triangulation.json`` and ``--triangulated_out``; return the files written."""
    paths = cm.write_outputs(evaluation, summary, args.save_dir)
    diagnostics = {
        "mode": mode,
        "reprojection_error_px_mean": float(np.mean(result.reprojection_error)),
        "views_used_mean": float(np.mean(result.views_used)),
        "per_joint": [
            {"joint": name, "reprojection_error_px": float(np.mean(result.reprojection_error[:, j])),
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
