"""See results: per-sample overlays, labelled videos, and a one-page report of a scoring run.

    python -m rat7m.render samples --gt_path TABLE --pred_path preds.csv --root DATA --worst 4 \\
        --metrics_dir metrics_output --out figures/            # or --samples 0,17 / --random 5; --format pdf
    python -m rat7m.render video --root DATA --recording s5-d1 --camera 1 --start 0 --stop 300 --out s5-d1.mp4 \\
        [--gt_path TABLE --pred_path preds.csv]                # prediction drawn too
    python -m rat7m.render report --metrics_dir metrics_output [--root DATA] [--worst 4]

Exit codes: 0 written, 2 bad arguments or bad input.
"""

from __future__ import annotations

if __name__ == "__main__":  # first: a Ctrl-C or SIGTERM during the imports below is one line, exit 130 / 143
    from rat7m import interrupt

    interrupt.at_start()

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rat7m import catalogue
from rat7m.cli import ArgumentParser, add_verbosity_arguments, progress_enabled, run_main, setup_logging
from rat7m.errors import BadInputError


def _indices(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def build_parser() -> ArgumentParser:
    """The command line of ``python -m rat7m.render`` / ``rat7m-render``."""
    parser = ArgumentParser(prog="rat7m-render", description=__doc__)
    modes = parser.add_subparsers(dest="mode", required=True)

    samples = modes.add_parser("samples", help="a figure per sample: six views, ground truth and prediction")
    samples.add_argument("--gt_path", type=Path, default=Path(catalogue.MINI_ANNOTATION_NAME), help="annotation table")
    samples.add_argument("--pred_path", type=Path, required=True,
                         help="3D predictions (CSV/.npy as compute_metrics reads) or 2D .npy (N, cameras, 20, 2)")
    samples.add_argument("--split", choices=("test", "train", "all"), default="test")
    samples.add_argument("--root", type=Path, default=None, help="dataset root for images (default: table's folder)")
    samples.add_argument("--samples", type=_indices, default=[], help="sample indices in the split, e.g. 0,17")
    samples.add_argument("--worst", type=int, default=0, help="the N samples with the highest MPJPE")
    samples.add_argument("--random", type=int, default=0, help="N samples at random (--seed)")
    samples.add_argument("--seed", type=int, default=0)
    samples.add_argument("--metrics_dir", type=Path, default=None, help="compute_metrics --save_dir (for --worst)")
    samples.add_argument("--format", choices=("png", "pdf", "svg"), default="png", help="pdf and svg are vector")
    samples.add_argument("--out", type=Path, default=Path("render_samples"), help="output folder")

    video = modes.add_parser("video", help="a labelled MP4 of one recording and camera, from the chunks")
    video.add_argument("--root", type=Path, default=Path("."), help="dataset root (video_sequences/, annotations/)")
    video.add_argument("--recording", required=True, help="e.g. s5-d1")
    video.add_argument("--camera", required=True, help="1..6 or Camera1..Camera6")
    video.add_argument("--start", type=int, default=0, help="first frame (default 0)")
    video.add_argument("--stop", type=int, required=True, help="frame after the last one")
    video.add_argument("--gt_path", type=Path, default=None, help="annotation table (needed with --pred_path)")
    video.add_argument("--pred_path", type=Path, default=None, help="3D predictions of --split to draw too")
    video.add_argument("--split", choices=("test", "train", "all"), default="test")
    video.add_argument("--fps", type=int, default=120)
    video.add_argument("--codec", choices=("auto", "pyav", "opencv"), default="auto")
    video.add_argument("--out", type=Path, required=True, help="output .mp4")

    report = modes.add_parser("report", help="one self-contained HTML page for a compute_metrics --save_dir")
    report.add_argument("--metrics_dir", type=Path, required=True)
    report.add_argument("--root", type=Path, default=None, help="dataset root for images (default: table's folder)")
    report.add_argument("--worst", type=int, default=4, help="worst samples drawn (default: %(default)s)")
    report.add_argument("--out", type=Path, default=None, help="default: <metrics_dir>/report.html")
    for sub in (samples, video, report):
        add_verbosity_arguments(sub, progress_bars=sub is video)
    return parser


def _samples(args) -> str:
    from metric_utils.compute_metrics import split_rows
    from rat7m.render.report import read_per_sample
    from rat7m.render.samples import choose_samples, frame_images, load_predictions, sample_figure, save_figure
    from rat7m.table import load_annotation
    from rat7m.video import ChunkIndex

    table = load_annotation(args.gt_path)
    rows = split_rows(table, args.split)
    predictions = load_predictions(args.pred_path, [str(c) for c in table["camera_names"]])
    if len(predictions) != len(rows):
        raise BadInputError(f"{args.pred_path} has {len(predictions)} rows; the {args.split} split has {len(rows)}")
    scores = None
    if args.metrics_dir is not None:
        columns = read_per_sample(args.metrics_dir)
        scores = np.full(len(rows), np.nan)
        scores[columns["sample"].astype(int)] = columns["mpjpe"]
    chosen = choose_samples(len(rows), indices=args.samples, worst=args.worst, random=args.random, scores=scores,
                            seed=args.seed)  # fmt: skip
    if not chosen:
        raise BadInputError("no sample chosen: give --samples, --worst or --random")
    root = args.root if args.root is not None else args.gt_path.parent
    index = ChunkIndex.from_dir(root / catalogue.VIDEO_DIR)
    for i in chosen:
        row = int(rows[i])
        fig = sample_figure(table, row, predictions, i, frame_images(table, row, root, index), label=f" (sample {i})")
        save_figure(fig, args.out / f"sample_{i:06d}.{args.format}")
    return f"wrote {len(chosen)} figure(s) to {args.out}"


def _video(args) -> str:
    from rat7m.geometry import project
    from rat7m.render.samples import camera_params, load_predictions
    from rat7m.render.video import render_video

    try:
        recording = catalogue.recording_by_name(args.recording)
        camera = catalogue.camera_name(catalogue.camera_number(args.camera))
    except KeyError as exc:
        raise BadInputError(exc.args[0]) from None
    predictions = None
    if args.pred_path is not None:
        predictions = _video_predictions(args, recording, camera, load_predictions, project, camera_params)
    n = render_video(args.root, recording, camera, args.start, args.stop, args.out, predictions, fps=args.fps,
                     progress=progress_enabled(args), codec=args.codec)  # fmt: skip
    return f"wrote {n} frames of {recording.name} {camera} to {args.out}"


def _video_predictions(args, recording, camera, load_predictions, project, camera_params) -> dict[int, np.ndarray]:
    """``{video frame: (20, 2) px}`` of the prediction rows of ``recording`` (3D projected, 2D as given)."""
    from metric_utils.compute_metrics import split_rows
    from rat7m.table import load_annotation

    if args.gt_path is None:
        raise BadInputError("--pred_path needs --gt_path (the table says which frame each prediction row is)")
    table = load_annotation(args.gt_path)
    columns = table["table"]
    rows = split_rows(table, args.split)
    predictions = load_predictions(args.pred_path, [str(c) for c in table["camera_names"]])
    if len(predictions) != len(rows):
        raise BadInputError(f"{args.pred_path} has {len(predictions)} rows; the {args.split} split has {len(rows)}")
    subjects, days = np.asarray(columns["subject_idx"])[rows], np.asarray(columns["day_idx"])[rows]
    mine = np.flatnonzero((subjects == recording.subject) & (days == recording.day))
    frames = np.asarray(columns["frame_idx"][camera])[rows[mine]]
    if predictions.points_3d is not None:
        points = project(predictions.points_3d[mine], camera_params(table, recording.subject, recording.day, camera))
    else:
        points = predictions.points_2d[camera][mine]
    return {int(f): p for f, p in zip(frames, points, strict=True)}


def _report(args) -> str:
    from rat7m.render.report import write_report

    return f"wrote {write_report(args.metrics_dir, args.out, args.root, args.worst)}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one mode; print one line saying what was written."""
    args = build_parser().parse_args(argv)
    setup_logging(args)
    print({"samples": _samples, "video": _video, "report": _report}[args.mode](args))
    return 0


def main_entry() -> int:
    """The ``rat7m-render`` console command: :func:`main` with the toolkit's error messages and exit codes."""
    return run_main(main)


if __name__ == "__main__":
    sys.exit(main_entry())
