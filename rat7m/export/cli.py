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

Exit codes: 0 every format written (or already complete), 2 bad arguments, a bad table, missing
images or a missing library.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

from rat7m import catalogue, cli
from rat7m.cli import (
    ArgumentParser,
    add_cameras_argument,
    add_recordings_argument,
    add_verbosity_arguments,
    progress_enabled,
    run_main,
    setup_logging,
)
from rat7m.errors import BadInputError
from rat7m.export import FORMATS
from rat7m.export.common import (
    MANIFEST_NAME,
    Selection,
    Summary,
    is_complete,
    publish,
    read_sizes,
    select,
    staging_folder,
)
from rat7m.table import load_annotation

log = logging.getLogger("rat7m.export")

#: Import each format needs beyond the toolkit's own requirements, and the pip line that brings it.
LIBRARIES = {"slp": ("sleap_io", "pip install sleap-io")}


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
    parser = ArgumentParser(prog="export.py", description=__doc__)
    parser.add_argument("format", metavar="FORMAT", choices=(*FORMATS, "all"), help=f"{', '.join(FORMATS)} or all")
    parser.add_argument("--annotation", type=Path, help=f"table (default: ROOT/{catalogue.MINI_ANNOTATION_NAME})")
    parser.add_argument("--root", type=Path, default=Path("."), help="dataset root (default: .)")
    parser.add_argument("--images-root", type=Path, help="folder holding the table's image_path (default: ROOT)")
    parser.add_argument("--out", type=Path, required=True, help="output folder; each format goes to OUT/<format>/")
    parser.add_argument("--split", choices=("train", "test", "all"), default="all", help="rows (default: all)")
    add_recordings_argument(parser, default="every recording in the table")
    add_cameras_argument(parser)
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
        help="take every image to be this size instead of reading the files (they need not exist)",
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="redo exports that are already complete")
    parser.add_argument("--dry-run", action="store_true", help="only say what would be written")
    add_verbosity_arguments(parser, progress_bars=True)
    return parser


def _recordings_action() -> type[argparse.Action]:
    class Action(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
            try:
                setattr(namespace, self.dest, catalogue.parse_recordings(",".join(values)))
            except KeyError as exc:
                raise argparse.ArgumentError(self, str(exc.args[0])) from None

    return Action


def _available(fmt: str) -> bool:
    library = LIBRARIES.get(fmt)
    return library is None or importlib.util.find_spec(library[0]) is not None


def _formats(choice: str) -> list[str]:
    if choice == "all":
        skipped = [f for f in FORMATS if not _available(f)]
        for fmt in skipped:
            log.warning("%s: skipped (%s)", fmt, LIBRARIES[fmt][1])
        return [f for f in FORMATS if f not in skipped]
    if not _available(choice):
        raise BadInputError(f"the {choice} export needs {LIBRARIES[choice][0]}: {LIBRARIES[choice][1]}")
    return [choice]


def _sizes(selection: Selection, args: argparse.Namespace, images_root: Path, formats: list[str]) -> None:
    """Image sizes from the images; anipose alone falls back to the video headers."""
    needs_images = any(importlib.import_module(f"rat7m.export.{f}").NEEDS_IMAGES for f in formats)
    if args.image_size is not None or needs_images:
        command = (
            f"{cli.command('extract')} --root {shlex.quote(str(images_root))} "
            f"--annotation {shlex.quote(str(args.annotation))} "
            f"--recordings {' '.join(r.name for r in selection.recordings)} "
            f"--cameras {','.join(str(catalogue.camera_number(c)) for c in selection.cameras)}"
        )
        read_sizes(selection, images_root, fixed=args.image_size, extract_command=command)
        return
    if "anipose" not in formats:
        return
    from rat7m.export.anipose import size_from_video

    try:
        read_sizes(selection, images_root)
    except BadInputError:
        for recording in selection.recordings:
            for camera in selection.cameras:
                size = size_from_video(args.root / catalogue.VIDEO_DIR, recording, camera)
                if size is None:
                    msg = (f"no image or video of {recording.name} {camera} to read its size from; "
                           "pass --image-size WxH or --root DATASET_ROOT")  # fmt: skip
                    raise BadInputError(msg) from None
                selection.sizes[(recording.name, camera)] = size


def _manifest(fmt: str, args: argparse.Namespace, selection: Selection, summary: Summary) -> dict:
    return {
        "format": fmt,
        "annotation": str(args.annotation),
        "split": selection.split,
        "recordings": [r.name for r in selection.recordings],
        "cameras": list(selection.cameras),
        "images": summary.images,
        "instances": summary.instances,
        "missing_keypoints": summary.missing_keypoints,
    }


def _options(manifest: dict) -> tuple:
    return manifest.get("split"), manifest.get("recordings"), manifest.get("cameras")


def run_export(fmt: str, selection: Selection, args: argparse.Namespace, images_root: Path) -> Summary:
    """Write one format into ``OUT/<format>/`` through a staging folder (or skip a complete one)."""
    final = args.out / fmt
    if is_complete(final) and not args.overwrite:
        old = json.loads((final / MANIFEST_NAME).read_text())
        now = {"split": selection.split, "recordings": [r.name for r in selection.recordings],
               "cameras": list(selection.cameras)}  # fmt: skip
        if _options(old) != _options(now):
            msg = (f"{final} holds an export of other rows or cameras ({old.get('split')}, "
                   f"{', '.join(old.get('recordings', []))}); pass --overwrite to replace it")  # fmt: skip
            raise BadInputError(msg)
        return Summary(fmt, final, skipped=True)
    if (final.exists() or final.is_symlink()) and not is_complete(final):
        # an export is renamed into place whole, manifest included: this folder is someone else's
        raise BadInputError(f"{final} exists and is not an export made by export.py; move it or choose another --out")
    module = importlib.import_module(f"rat7m.export.{fmt}")
    stage = staging_folder(final)
    try:
        summary = module.export(selection, stage, final=final, images_root=images_root, root=args.root,
                                allow_skew=args.allow_skew, val_recordings=args.val_recordings)  # fmt: skip
        publish(stage, final, _manifest(fmt, args, selection, summary))
    except BaseException:
        import shutil

        shutil.rmtree(stage, ignore_errors=True)
        raise
    return summary


def _main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args)
    logging.getLogger("numexpr").setLevel(logging.WARNING)  # PyTables' import says how many threads at INFO
    formats = _formats(args.format)
    args.annotation = args.annotation or catalogue.mini_annotation_path(args.root)
    if not args.annotation.is_file():
        raise BadInputError(f"no annotation table at {args.annotation}; pass --annotation PKL or --root DATASET_ROOT")
    images_root = args.images_root or args.root
    table = load_annotation(args.annotation)
    selection = select(table, split=args.split, recordings=args.recordings, cameras=args.cameras)
    selection.progress = progress_enabled(args)
    _sizes(selection, args, images_root, formats)
    if args.dry_run:
        n_rows = len(selection.rows)
        for fmt in formats:
            final = args.out / fmt
            state = "complete: would skip" if is_complete(final) and not args.overwrite else "would write"
            recordings = ", ".join(r.name for r in selection.recordings)
            n_images = n_rows * len(selection.cameras)
            print(f"{fmt}: {state} {final}: {n_rows} samples x {len(selection.cameras)} cameras = {n_images} images "
                  f"of {recordings}")  # fmt: skip
        return 0
    for fmt in formats:
        started = time.perf_counter()
        summary = run_export(fmt, selection, args, images_root)
        print(summary.line() + ("" if summary.skipped else f" ({time.perf_counter() - started:.1f} s)"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``rat7m-export``: export, with errors as one line and exit code 2 (see the module docstring)."""
    return run_main(_main, argv)
