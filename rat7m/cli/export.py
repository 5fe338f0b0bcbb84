"""Export the mini-RAT7M table to the training formats of the field (``export.py``, ``rat7m-export``).

    python export.py coco --root /data/rat7m --out exports                  # COCO + MMPose dataset info
    python export.py dlc --annotation table.pkl --root /data/rat7m --out exports --split train
    python export.py yolo --root /data/rat7m --out exports --val-recordings s4-d1
    python export.py all --root /data/rat7m --out exports --recordings s1-d1 s5-d1 --cameras 1,3
    python export.py anipose --root /data/rat7m --out exports --allow-skew  # anipose ignores skew
    python export.py coco --root /data/rat7m --out exports --dry-run        # say what would be written

FORMAT is coco, dlc, yolo, slp (needs sleap-io), anipose, dannce, or all (every format whose library
is installed). Each goes to ``OUT/<format>/``, written under a temporary name and renamed when
complete: a rerun skips a complete export, ``--overwrite`` redoes it. Images are referenced by
their table paths (links where a tool needs them beside its labels), never copied; coco, dlc,
yolo and slp need them extracted (``extract_frames.py``), anipose and dannce do not.

Rows: ``--split`` (default: every row, except for dlc, whose default is the train split:
DeepLabCut draws its own random train/test split from a project's labelled images, so test
recordings exported into a DLC project, and other views of the same timesteps, would be trained on).

The dataset root is ``--root``, else ``$RAT7M_ROOT``, else the current folder (said once on stderr).
``all`` goes on past a format it cannot write (anipose refusing cameras with skew, images not
extracted for the formats that need them) and ends with the list of what it skipped and why.

Exit codes: 0 every format written (or already complete), 2 bad arguments, a bad table, missing
images, a missing library, an output folder that cannot be written, or (``all``) any format
skipped; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rat7m import catalogue, extras
from rat7m.cli import (
    ArgumentParser,
    add_root_argument,
    add_table_selection_arguments,
    add_verbosity_arguments,
    check_writable,
    command_name,
    progress_enabled,
    resolve_root,
    run_main,
    setup_logging,
)
from rat7m.errors import BadInputError
from rat7m.export import FORMATS, REGISTRY
from rat7m.export.api import Sizes, run_export, same_options
from rat7m.export.common import Selection, is_complete, read_manifest, select
from rat7m.table import load_annotation
from rat7m.untrusted import check_output

__all__ = [
    "DLC_SPLIT_WARNING",
    "build_parser",
    "main",
    "run",
]

log = logging.getLogger("rat7m.export")

#: Why DLC gets only the train split unless told otherwise.
DLC_SPLIT_WARNING = (
    "DeepLabCut draws its own random train/test split from a project's labelled images, so test recordings "
    "in a DLC project (and other views of the same timesteps) end up in its training set"
)


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1328x1048, not {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"image size must be positive, not {text!r}")
    return width, height


def build_parser() -> ArgumentParser:
    """The command line of ``export.py``."""
    parser = ArgumentParser(prog="export.py", description=__doc__)  # rat7m-export under the console command
    parser.add_argument("format", metavar="FORMAT", choices=(*FORMATS, "all"), help=f"{', '.join(FORMATS)} or all")
    parser.add_argument("--annotation", type=Path, help=f"table (default: ROOT/{catalogue.MINI_ANNOTATION_NAME})")
    add_root_argument(parser)
    parser.add_argument("--images-root", type=Path, help="folder holding the table's image_path (default: ROOT)")
    parser.add_argument("--out", type=Path, required=True, help="output folder; each format goes to OUT/<format>/")
    parser.add_argument("--split", choices=("train", "test", "all"), default=None,
                        help="rows (default: all; dlc: train, see above)")  # fmt: skip
    add_table_selection_arguments(parser)
    parser.add_argument(
        "--val-recordings", nargs="+", metavar="REC", action=_recordings_action(),
        help="yolo: whole recordings for validation (default: the last training recording)",
    )  # fmt: skip
    parser.add_argument(
        "--allow-skew", action="store_true",
        help="anipose: write cameras with skew anyway (anipose ignores it; pixels are off)",
    )  # fmt: skip
    parser.add_argument(
        "--image-size", type=_size, metavar="WxH",
        help="take every image to be this size instead of reading the files, which then need not exist "
        "(default: read from the files)",
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="redo exports that are already complete")
    parser.add_argument("--dry-run", action="store_true", help="only say what would be written")
    add_verbosity_arguments(parser, progress_bars=True)
    return parser


def _recordings_action() -> type[argparse.Action]:
    class Action(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            try:
                setattr(namespace, self.dest, catalogue.parse_recordings(",".join(values)))
            except KeyError as exc:
                raise argparse.ArgumentError(self, str(exc.args[0])) from None

    return Action


#: Command-line flags that are some formats' options (:class:`~rat7m.export.registry.ExportFormat`).
FORMAT_FLAGS = {"allow_skew": "--allow-skew", "val_recordings": "--val-recordings"}


def _formats(args: argparse.Namespace) -> list[str]:
    """The formats to write: ``all`` skips those whose optional dependency is missing (saying so)."""
    if args.format == "all":
        skipped = [f for f in FORMATS if not REGISTRY[f].available()]
        for fmt in skipped:
            need = REGISTRY[fmt].requires
            if need is not None:  # always: a format without a requirement is available
                log.warning("%s: skipped (%s)", fmt, extras.install_hint(need.extra, need.package))
        return [f for f in FORMATS if f not in skipped]
    chosen = REGISTRY[args.format]
    for option, flag in FORMAT_FLAGS.items():
        if getattr(args, option) and option not in chosen.options:
            takers = [f for f in FORMATS if option in REGISTRY[f].options]
            raise BadInputError(f"{flag} is an option of the {', '.join(takers)} export, not of {args.format}")
    chosen.require()
    return [args.format]


def _check_out(args: argparse.Namespace, formats: list[str]) -> None:
    """Refuse an ``--out`` that is a file, cannot be written, or would land on the dataset's inputs."""
    if args.out.exists() and not args.out.is_dir():
        raise BadInputError(f"--out {args.out} is a file, not a folder; choose a folder (formats go to OUT/<format>/)")
    for fmt in formats:
        check_output(args.out / fmt, args.root, [args.annotation])
    if not args.dry_run:
        check_writable(args.out, "the exports", "choose another --out")


def _dry_run(formats: list[str], selection: Selection, args: argparse.Namespace, sizes: Sizes) -> int:
    """Say what each format would write (or, with ``all``, why it would be skipped); write nothing."""
    n_rows, n_cams = len(selection.rows), len(selection.cameras)
    recordings = ", ".join(r.name for r in selection.recordings)
    skipped = 0
    for fmt in formats:
        final = args.out / fmt
        try:
            sizes.for_format(fmt)
        except BadInputError as exc:
            if args.format != "all":
                raise
            print(f"{fmt}: would skip {final}: {exc}")
            skipped += 1
            continue
        state = "complete: would skip" if is_complete(final) and not args.overwrite else "would write"
        if state.startswith("complete") and not same_options(read_manifest(final), selection):
            print(f"{fmt}: would refuse {final}: it holds an export of other rows or cameras; pass --overwrite")
            skipped += 1
            continue
        print(f"{fmt}: {state} {final}: {n_rows} samples x {n_cams} cameras = {n_rows * n_cams} images of {recordings}")
    return 2 if skipped else 0


def run(argv: Sequence[str] | None = None) -> int:
    """The command itself: errors raise (:func:`main` turns them into one line and an exit code)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args)
    logging.getLogger("numexpr").setLevel(logging.WARNING)  # PyTables' import says how many threads at INFO
    formats = _formats(args)
    args.root = resolve_root(args.root, quiet=args.quiet)
    args.annotation = args.annotation or catalogue.mini_annotation_path(args.root)
    if not args.annotation.is_file():
        raise BadInputError(f"no annotation table at {args.annotation}; pass --annotation PKL or --root DATASET_ROOT")
    _check_out(args, formats)
    images_root = args.images_root or args.root
    table = load_annotation(args.annotation)
    split_of = {fmt: args.split or REGISTRY[fmt].default_split for fmt in formats}
    if "dlc" in formats:
        if args.split is None:
            log.warning("dlc: exporting the train split only (%s); --split all exports every row", DLC_SPLIT_WARNING)
        elif args.split != "train":
            log.warning("dlc: --split %s puts test rows into the project: %s", args.split, DLC_SPLIT_WARNING)
    selections: dict[str, Selection] = {}
    sizes: dict[str, Sizes] = {}
    refused: dict[str, BadInputError] = {}  # a split with no rows refuses only its formats (dlc's train split)
    for split in dict.fromkeys(split_of.values()):
        try:
            selection = select(table, split=split, recordings=args.recordings, cameras=args.cameras)
        except BadInputError as exc:
            if args.format != "all":
                raise
            refused[split] = exc
            continue
        selection.progress = progress_enabled(args)
        selections[split], sizes[split] = selection, Sizes(
            selection, images_root=images_root, root=args.root, annotation=args.annotation, image_size=args.image_size)
    if not selections:  # nothing to export at all: one line, as for a single format
        raise next(iter(refused.values()))
    if args.dry_run:
        for fmt in (f for f in formats if split_of[f] in refused):
            print(f"{fmt}: would skip {args.out / fmt}: {refused[split_of[fmt]]}")
        return max([2 if refused else 0] + [
            _dry_run([f for f in formats if split_of[f] == split], selections[split], args, sizes[split])
            for split in selections])  # fmt: skip
    skipped: list[tuple[str, str]] = []
    for fmt in formats:
        started = time.perf_counter()
        try:
            if split_of[fmt] in refused:
                raise refused[split_of[fmt]]
            sizes[split_of[fmt]].for_format(fmt)
            summary = run_export(fmt, selections[split_of[fmt]], out=args.out, root=args.root, images_root=images_root,
                                 annotation=args.annotation, allow_skew=args.allow_skew,
                                 val_recordings=args.val_recordings, overwrite=args.overwrite)  # fmt: skip
        except BadInputError as exc:
            if args.format != "all":
                raise
            skipped.append((fmt, str(exc)))
            print(f"{fmt}: skipped (why: at the end)")
            continue
        print(summary.line() + ("" if summary.skipped else f" ({time.perf_counter() - started:.1f} s)"))
    by_reason: dict[str, list[str]] = {}
    for fmt, why in skipped:  # formats refused for one reason (images not extracted) share a line
        by_reason.setdefault(why, []).append(fmt)
    for why, names in by_reason.items():
        print(f"error: {', '.join(names)} skipped: {why}", file=sys.stderr)
    return 2 if skipped else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``rat7m-export``: export, with errors as one line and exit code 2 (see the module docstring)."""
    with command_name("rat7m-export"):
        return run_main(run, argv)

