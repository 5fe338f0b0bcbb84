"""Score 3D keypoint predictions against the mini-RAT7M table: MPJPE, PA-MPJPE and N-MPJPE.

Usage (from any folder; the table is ``--gt_path``, else in ``--root``, else in ``$RAT7M_ROOT``, else here)::

    python metric_utils/compute_metrics.py --pred_path preds.csv
    rat7m-metrics --pred-path preds.npy --split test --save-dir metrics_output   # after pip install .
    python metric_utils/compute_metrics.py --pred2d preds2d.csv --triangulate   # 2D per camera, and 3D

Each flag has its documented spelling (``--pred_path``, ``--gt_path``, ``--save_dir``) and a
hyphenated one (``--pred-path`` ...), like every other script's flags.

2D predictions (``--pred2d``): one CSV row per (sample, camera) in table order,
``sample,camera,x1,y1,...,x20,y20`` (or ``x1,y1,c1,...`` with a confidence per joint), or an ``.npz``
of shape (N, 6, 20, 2 or 3); see ``rat7m/predictions.py``. Prints pixel MPJPE, PCK and OKS AP/AR
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

This module is the command line only (``python metric_utils/compute_metrics.py``, ``rat7m metrics``,
``rat7m-metrics``): the readers are in :mod:`rat7m.predictions`, the scoring and
the result files in :mod:`rat7m.evaluate`, the metrics in :mod:`rat7m.metrics`.
"""


from __future__ import annotations

import argparse
import ctypes
import os
from collections.abc import Sequence
from pathlib import Path

from rat7m import catalogue, evaluate, pixels
from rat7m.cli import (
    ROOT_ENV,
    ArgumentParser,
    add_root_argument,
    add_verbosity_arguments,
    check_writable,
    resolve_root,
    setup_logging,
)
from rat7m.errors import BadInputError
from rat7m.fileio import check_input, remove_stale_temporaries
from rat7m.predictions import PRED_FORMATS, read_predictions, save_predictions  # noqa: F401  README names the last two here
from rat7m.table import load_annotation
from rat7m.untrusted import check_output

__all__ = ["DEFAULT_SAVE_DIR", "build_parser", "main"]

#: Where results go unless ``--save_dir`` says otherwise (relative to the current directory).
DEFAULT_SAVE_DIR = "metrics_output"


def build_parser() -> argparse.ArgumentParser:
    """The script's argument parser."""
    parser = ArgumentParser(prog="compute_metrics.py", description=__doc__)
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
        "--metric", choices=("all", *evaluate.METRICS), default="all", help="metric(s) to report (default: %(default)s)"
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
    add_verbosity_arguments(parser)
    return parser



def positive_px(text: str) -> float:
    """An argparse ``type``: a radius in pixels, a finite number above 0 (checked before anything is read)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of pixels above 0, not {text}")
    return value


def keep_freed_memory() -> None:
    """Let glibc's malloc reuse freed memory for numpy's temporaries instead of unmapping it each time.

    Scoring a split makes dozens of (N, 20, 3) temporaries of ~12 MB each: above glibc's default
    mmap threshold, so each is a fresh mapping whose pages the kernel faults in and zeroes again.
    Raised thresholds keep them in the heap, where the next one reuses the same pages: evaluation of
    the test split in a fresh process drops from ~0.42 to ~0.25 s CPU (bench/bench_metrics.py). The
    peak stays that of the largest arrays alive at once; freed pages are returned at exit. Elsewhere
    than glibc there is no ``mallopt`` and nothing to do.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of freed heap for reuse
    mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: allocations below 1 GiB come from the heap


def _check_triangulated_out(args: argparse.Namespace) -> None:
    """Refuse, before any work, a ``--triangulated_out`` that cannot be written or would replace an input."""
    out = args.triangulated_out
    if args.pred2d is None or not args.triangulate:
        raise BadInputError("--triangulated_out writes triangulated points: use it with --pred2d PATH --triangulate")
    if out.is_dir():
        raise BadInputError(f"--triangulated_out {out} is a folder; name the file to write (NAME.csv or NAME.npy)")
    check_output(out, None, [args.gt_path, args.pred2d], what="--triangulated_out")
    check_writable(out.parent, "the triangulated points", "choose another --triangulated_out")


def main(argv: Sequence[str] | None = None) -> int:
    """Score a prediction file; print the table and write the result files (and the report with ``--report``)."""
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    setup_logging(args)
    if args.gt_path is None:
        args.gt_path = catalogue.mini_annotation_path(resolve_root(args.root, quiet=args.quiet))
    check_writable(args.save_dir, "results", "pass --save_dir DIR")  # before reading anything
    if args.triangulated_out is not None:
        _check_triangulated_out(args)
    remove_stale_temporaries(args.save_dir, set(evaluate.OUTPUT_NAMES))  # what a killed run (SIGKILL) left
    if not args.gt_path.exists() and not args.gt_path.is_symlink():
        msg = f"annotation table {args.gt_path} not found; pass --gt_path to {catalogue.MINI_ANNOTATION_NAME}"
        raise BadInputError(msg)
    check_input(args.gt_path, "annotation table", max_bytes=None)  # a FIFO or a device: one line, not a hang
    common = {"gt_path": args.gt_path, "save_dir": args.save_dir, "split": args.split, "pred_format": args.pred_format}
    if args.pred2d is not None:
        images_root = args.root or (Path(os.environ[ROOT_ENV]) if os.environ.get(ROOT_ENV) else None)
        evaluate.score_2d_file(
            pred2d=args.pred2d, table=load_annotation(args.gt_path), **common,
            pred2d_convention=args.pred2d_convention, triangulate=args.triangulate, robust=args.robust,
            inlier_px=args.inlier_px, triangulated_out=args.triangulated_out, images_root=images_root,
        )  # fmt: skip
    elif args.triangulate:
        raise BadInputError("--triangulate works on 2D predictions: give them with --pred2d PATH")
    else:
        metrics = tuple(evaluate.METRICS) if args.metric == "all" else (args.metric,)
        evaluate.score_3d_file(pred_path=args.pred_path, **common, metrics=metrics)
    if args.report:
        from rat7m.render.report import write_report  # lazy: only the report needs the renderer

        print(f"wrote {write_report(args.save_dir)}")
    return 0

