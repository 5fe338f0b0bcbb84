"""See results: per-sample overlays, labelled videos, and a one-page report of a scoring run.

    rat7m-render samples --pred-path preds.csv --root DATA --worst 4 \\
        --metrics-dir metrics_output --out figures/            # or --samples 0,17 / --random 5; --format pdf
    rat7m-render video --root DATA --recording s5-d1 --camera 1 --start 0 --stop 300 --out s5-d1.mp4 \\
        [--pred-path preds.csv]                                # prediction drawn too
    rat7m-render report --metrics-dir metrics_output [--root DATA] [--worst 4]

(``python -m rat7m.render`` is the same.) Every flag has both spellings, ``--gt_path`` and ``--gt-path``.
The dataset root is ``--root``, else ``$RAT7M_ROOT``, else (samples) the folder of ``--gt-path`` or the
current folder; it is said once on stderr. The table defaults to the root's mini-RAT7M table.

Exit codes: 0 written, 2 bad arguments, bad input or an output that cannot be written, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rat7m import catalogue
from rat7m.cli import (
    ROOT_ENV,
    ArgumentParser,
    add_verbosity_arguments,
    check_writable,
    positive_int,
    progress_enabled,
    resolve_root,
    setup_logging,
)
from rat7m.errors import BadInputError, Rat7mError
from rat7m.fileio import remove_stale_temporaries
from rat7m.untrusted import check_output

__all__ = [
    "EXIT_CODES",
    "build_parser",
    "main",
]

EXIT_CODES = "Exit codes: 0 written, 2 bad arguments, bad input or an output that cannot be written, 130 interrupted."


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written, and each option's default in its help line (unless it says it already)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default is argparse.SUPPRESS or default == []
        if "default" in text or unset or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _count(text: str) -> int:
    """An argparse ``type``: a whole number of at least 0 (a count of samples)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, not {text}")
    return value


def _indices(text: str) -> list[int]:
    """An argparse ``type``: sample indices such as ``0,17`` (each >= 0; the split's size is checked later)."""
    return [_count(t.strip()) for t in text.split(",") if t.strip()]


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """Add ``--name_with_underscores`` and ``--name-with-hyphens`` as one option."""
    spellings = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    parser.add_argument(*spellings, dest=name, **kwargs)


def build_parser() -> ArgumentParser:
    """The command line of ``python -m rat7m.render`` / ``rat7m-render``."""
    parser = ArgumentParser(prog="rat7m-render", description=__doc__)
    modes = parser.add_subparsers(dest="mode", required=True, metavar="{samples,video,report}")
    parser.modes = {}

    def mode(name: str, summary: str) -> ArgumentParser:
        sub = modes.add_parser(name, help=summary, description=f"{summary}.\n\n{EXIT_CODES}",
                               formatter_class=_HelpFormatter)  # fmt: skip
        sub.prog = f"{parser.prog} {name}"
        parser.modes[name] = sub
        return sub

    root_help = f"dataset root (default: ${ROOT_ENV}, else the current folder)"

    def predictions(sub: ArgumentParser, table_for: str, required: bool, what: str) -> None:
        """--gt-path, --pred-path and --split: samples and video read predictions the same way."""
        _flag(sub, "gt_path", type=Path, default=None,
              help=f"annotation table{table_for} (default: ROOT/{catalogue.MINI_ANNOTATION_NAME})")  # fmt: skip
        _flag(sub, "pred_path", type=Path, default=None, required=required, help=what)
        _flag(sub, "split", choices=("test", "train", "all"), default="test",
              help="rows the predictions are of (default: %(default)s)")  # fmt: skip

    samples = mode("samples", "a figure per sample: six views, ground truth and prediction")
    predictions(samples, "", required=True,
                what="3D predictions (CSV/.npy as compute_metrics reads) or 2D .npy (N, cameras, 20, 2)")  # fmt: skip
    _flag(samples, "root", type=Path, default=None,
          help=f"dataset root for images (default: ${ROOT_ENV}, else the folder of --gt-path, else .)")  # fmt: skip
    _flag(samples, "samples", type=_indices, default=[], help="sample indices in the split, e.g. 0,17 (default: none)")
    _flag(samples, "worst", type=_count, default=0, help="the N samples with the highest MPJPE (default: %(default)s)")
    _flag(samples, "random", type=_count, default=0, help="N samples at random (--seed) (default: %(default)s)")
    _flag(samples, "seed", type=int, default=0, help="seed of --random (default: %(default)s)")
    _flag(samples, "metrics_dir", type=Path, default=None,
          help="compute_metrics --save_dir (for --worst) (default: none)")  # fmt: skip
    _flag(samples, "format", choices=("png", "pdf", "svg"), default="png",
          help="pdf and svg are vector (default: %(default)s)")  # fmt: skip
    _flag(samples, "out", type=Path, default=Path("render_samples"), help="output folder (default: %(default)s)")

    video = mode("video", "a labelled MP4 of one recording and camera, from the chunks")
    _flag(video, "root", type=Path, default=None, help=f"{root_help}: video_sequences/, annotations/")
    _flag(video, "recording", required=True, help="e.g. s5-d1")
    _flag(video, "camera", required=True, help="1..6 or Camera1..Camera6")
    _flag(video, "start", type=_count, default=0, help="first frame (default: %(default)s)")
    _flag(video, "stop", type=positive_int, required=True, help="frame after the last one")
    predictions(video, ", for --pred-path", required=False,
                what="predictions of --split to draw too (default: none, ground truth only)")  # fmt: skip
    _flag(video, "fps", type=positive_int, default=120, help="frame rate written into the MP4 (default: %(default)s)")
    _flag(video, "codec", choices=("auto", "pyav", "opencv"), default="auto",
          help="auto: PyAV's H.264 when installed, else OpenCV's writer (default: %(default)s)")  # fmt: skip
    _flag(video, "out", type=Path, required=True, help="output .mp4")

    report = mode("report", "one self-contained HTML page for a compute_metrics --save_dir")
    _flag(report, "metrics_dir", type=Path, required=True, help="compute_metrics --save_dir")
    _flag(report, "root", type=Path, default=None, help="dataset root for images (default: table's folder)")
    _flag(report, "worst", type=_count, default=4, help="worst samples drawn (default: %(default)s)")
    _flag(report, "out", type=Path, default=None, help="default: <metrics_dir>/report.html")
    for sub in (samples, video, report):
        add_verbosity_arguments(sub, progress_bars=sub is video)
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, letting the mode's own parser report an unknown option (so ``did you mean`` names its flags)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.modes[args.mode].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _samples_root(args: argparse.Namespace) -> Path:
    """``--root``, else ``$RAT7M_ROOT``, else the folder of ``--gt-path``, else the current folder (said once)."""
    if args.root is None and not os.environ.get(ROOT_ENV) and args.gt_path is not None:
        return resolve_root(args.gt_path.parent, flag="the folder of --gt-path", quiet=args.quiet)
    return resolve_root(args.root, quiet=args.quiet)


def _check_out_folder(out: Path, root: Path, inputs: Sequence[Path]) -> None:
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file, not a folder; choose a folder for the figures")
    check_output(out, root, inputs)
    check_writable(out, "the figures", "choose another --out")


def _samples(args: argparse.Namespace) -> str:
    from rat7m.model import Table
    from rat7m.render.report import read_per_sample
    from rat7m.render.samples import (
        check_rows,
        choose_samples,
        frame_images,
        load_predictions,
        sample_figure,
        save_figure,
    )
    from rat7m.table import load_annotation
    from rat7m.video import ChunkIndex

    root = _samples_root(args)
    gt_path = args.gt_path or catalogue.mini_annotation_path(root)
    _check_out_folder(args.out, root, [gt_path, args.pred_path])
    table = load_annotation(gt_path)
    rows = Table.of(table).split_rows(args.split)
    predictions = load_predictions(args.pred_path, [str(c) for c in table["camera_names"]])
    if len(predictions) != len(rows):
        raise BadInputError(f"{args.pred_path} has {len(predictions)} rows; the {args.split} split has {len(rows)}")
    scores = None
    if args.metrics_dir is not None:
        columns = read_per_sample(args.metrics_dir)
        scores = np.full(len(rows), np.nan)
        samples = columns["sample"].astype(int)
        if len(samples) and (samples.min() < 0 or samples.max() >= len(rows)):
            raise BadInputError(f"{args.metrics_dir}: sample numbers outside the {args.split} split's {len(rows)} "
                                "samples; was it scored on another table or split?")  # fmt: skip
        scores[samples] = columns["mpjpe"]
    chosen = choose_samples(len(rows), indices=args.samples, worst=args.worst, random=args.random, scores=scores,
                            seed=args.seed)  # fmt: skip
    if not chosen:
        raise BadInputError("no sample chosen: give --samples, --worst or --random")
    check_rows(table, [int(rows[i]) for i in chosen])
    index = ChunkIndex.from_dir(root / catalogue.VIDEO_DIR)
    names = {i: f"sample_{i:06d}.{args.format}" for i in chosen}
    remove_stale_temporaries(args.out, set(names.values()))  # a killed run's, for the figures drawn now
    for i in chosen:
        row = int(rows[i])
        fig = sample_figure(table, row, predictions, i, frame_images(table, row, root, index), label=f" (sample {i})")
        path = args.out / names[i]
        try:
            save_figure(fig, path)
        except OSError as exc:
            msg = f"cannot write {path}: {exc.strerror or exc}; free some space or choose another --out"
            raise BadInputError(msg) from None
    return f"wrote {len(chosen)} figure(s) to {args.out}"


def _video(args: argparse.Namespace) -> str:
    from rat7m.geometry import project
    from rat7m.render.samples import camera_params, load_predictions
    from rat7m.render.video import render_video
    from rat7m.video import quiet_decoder_logs

    quiet_decoder_logs()
    try:
        recording = catalogue.recording_by_name(args.recording)
        camera = catalogue.camera_name(catalogue.camera_number(args.camera))
    except KeyError as exc:
        raise BadInputError(exc.args[0]) from None
    args.root = resolve_root(args.root, quiet=args.quiet)
    if args.out.is_dir():
        raise BadInputError(f"--out {args.out} is a folder; name the .mp4 file to write")
    if args.out.suffix.lower() != ".mp4":
        raise BadInputError(f"--out {args.out}: the labelled video is an MP4; name it NAME.mp4")
    check_output(args.out, args.root, [p for p in (args.gt_path, args.pred_path) if p is not None])
    check_writable(args.out.parent, "the video", "choose another --out")
    predictions = None
    if args.pred_path is not None:
        predictions = _video_predictions(args, recording, camera, load_predictions, project, camera_params)
    n = render_video(args.root, recording, camera, args.start, args.stop, args.out, predictions, fps=args.fps,
                     progress=progress_enabled(args), codec=args.codec)  # fmt: skip
    return f"wrote {n} frames of {recording.name} {camera} to {args.out}"


def _video_predictions(args, recording, camera, load_predictions, project, camera_params) -> dict[int, np.ndarray]:
    """``{video frame: (20, 2) 0-based px}`` of the prediction rows of ``recording`` (3D projected, 2D as given)."""
    from rat7m import pixels
    from rat7m.model import Table
    from rat7m.table import load_annotation

    gt_path = args.gt_path or catalogue.mini_annotation_path(args.root)
    if not gt_path.is_file():
        raise BadInputError(f"--pred-path needs the table (which frame each prediction row is): no {gt_path}; "
                            "pass --gt-path TABLE")  # fmt: skip
    table = load_annotation(gt_path)
    columns = table["table"]
    rows = Table.of(table).split_rows(args.split)
    predictions = load_predictions(args.pred_path, [str(c) for c in table["camera_names"]])
    if len(predictions) != len(rows):
        raise BadInputError(f"{args.pred_path} has {len(predictions)} rows; the {args.split} split has {len(rows)}")
    mine = np.flatnonzero(Table.of(table).recording_mask(recording, rows))
    frames = np.asarray(columns["frame_idx"][camera])[rows[mine]]
    if predictions.points_3d is not None:
        points = project(predictions.points_3d[mine], camera_params(table, recording.subject, recording.day, camera))
        points = pixels.to_zero_based(points, pixels.MATLAB)  # the cameras' 1-based pixels to the picture's
    else:
        points = predictions.points_2d[camera][mine]
    return {int(f): p for f, p in zip(frames, points, strict=True)}


def _report(args: argparse.Namespace) -> str:
    from rat7m.render.report import write_report

    root = args.root  # default: the folder of the run's table (said by the report), unless $RAT7M_ROOT says
    if root is not None or os.environ.get(ROOT_ENV):
        root = resolve_root(root, quiet=getattr(args, "quiet", False))
    return f"wrote {write_report(args.metrics_dir, args.out, root, args.worst)}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one mode; print one line saying what was written.

    A file that cannot be read or written (permissions, a full disk) and a broken video chunk are bad
    input here: one line, exit 2, as the help promises.
    """
    args = _parse(argv)
    setup_logging(args)
    try:
        print({"samples": _samples, "video": _video, "report": _report}[args.mode](args))
    except BadInputError:
        raise
    except Rat7mError as exc:
        raise BadInputError(str(exc)) from None
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise BadInputError(f"cannot read or write{where}: {exc.strerror or exc}") from None
    return 0

