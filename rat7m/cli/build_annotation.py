"""Build the mini-RAT7M annotation table from annotations/mocap-*.mat, or check a table.

    python build_annotation.py                          # all mocap files under ./annotations
    python build_annotation.py --root /data/rat7m --stride 10 --complete-only
    python build_annotation.py --recordings s1-d1 s5-d2 --out two_recordings.pkl
    python build_annotation.py --check --root /data/rat7m      # check /data/rat7m/mini_rat7m_train_test_annotation.pkl

An existing table is never replaced unless --overwrite is given (it may be the official one).
The check compares the table's 2D keypoints with its 3D keypoints projected through its own
cameras, its image paths with the naming convention, and (with --root holding video_sequences/)
every frame_idx with the video chunks on disk.

Exit codes: 0 done (all checks passed), 1 a check failed or the table could not be written
(disk full: the message names the file and the space it needs, and nothing partial is left),
2 bad input (bad argument, missing or unreadable file, table already there).
"""

from __future__ import annotations

# isort: split
import argparse
import errno
import logging
import pickle
import shutil
from collections.abc import Sequence
from pathlib import Path

from rat7m import catalogue
from rat7m.cli import (
    EXIT_FAILED,
    ArgumentParser,
    add_recordings_argument,
    add_root_argument,
    add_verbosity_arguments,
    check_writable,
    non_negative_float,
    positive_int,
    progress_enabled,
    resolve_root,
    setup_logging,
)
from rat7m.errors import BadInputError, Rat7mError
from rat7m.table import PICKLE_PROTOCOL, load_annotation, save_annotation
from rat7m.table_build import build_table, find_mocap_files, format_summary, parse_split
from rat7m.table_check import DEFAULT_TOLERANCE_PX, check_table

__all__ = ["build_parser", "main"]

log = logging.getLogger("build_annotation")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``build_annotation.py``."""
    parser = ArgumentParser(prog="build_annotation.py", description=__doc__)
    add_root_argument(parser)
    parser.add_argument("--out", type=Path, help=f"table to write (default: <root>/{catalogue.MINI_ANNOTATION_NAME})")
    parser.add_argument("--overwrite", action="store_true", help="replace the --out table if it exists")
    parser.add_argument(
        "--stride", type=positive_int, default=1, metavar="K",
        help="keep mocap sample i when i %% K == 0 (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--complete-only", action="store_true", help="keep only samples with all 20 markers finite")
    parser.add_argument(
        "--split", default="official", help="'official' or overrides such as 's4-d1=test,s5-d2=train' "
        "(default: %(default)s)",
    )  # fmt: skip
    add_recordings_argument(parser, default="every mocap file found")
    parser.add_argument(
        "--check",
        nargs="?",
        const="",
        metavar="TABLE",
        help=f"check TABLE (default: <root>/{catalogue.MINI_ANNOTATION_NAME}) instead of building a table",
    )
    parser.add_argument(
        "--tolerance", type=non_negative_float, default=DEFAULT_TOLERANCE_PX,
        help="largest reprojection error --check accepts, px (default: %(default)s px)",
    )  # fmt: skip
    add_verbosity_arguments(parser, progress_bars=True)
    return parser


def _check(args: argparse.Namespace) -> int:
    path = Path(args.check) if args.check else catalogue.mini_annotation_path(args.root)
    table = load_annotation(path)
    results = check_table(table, args.root, args.tolerance)
    print(f"{path}: {len(table['table']['subject_idx'])} samples")
    print(format_summary(table))
    for result in results:
        print(result.format())
    return EXIT_FAILED if any(r.ok is False for r in results) else 0


class _CountingSink:
    """A write-only file that only counts bytes: the size of a pickle without holding it in memory."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


def _save(table: dict, out: Path) -> None:
    """Write the table atomically; a full disk (or quota) is one line naming the file and the space needed."""
    try:
        save_annotation(table, out)
    except OSError as exc:  # atomic_write has removed its temporary file: nothing partial is left
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise Rat7mError(f"cannot write {out}: {exc.strerror or exc}") from None
        sink = _CountingSink()
        pickle.dump(dict(table), sink, protocol=PICKLE_PROTOCOL)
        try:
            free = f", {shutil.disk_usage(out.parent).free / 1e6:.1f} MB free there"
        except OSError:
            free = ""
        needs = f"the table needs {sink.size / 1e6:.1f} MB{free}"
        msg = f"cannot write {out}: {exc.strerror} ({needs}); nothing was written"
        raise Rat7mError(msg) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Build (or with ``--check``, check) a table; the exit code says how it went."""
    args = build_parser().parse_args(argv)
    setup_logging(args)
    args.root = resolve_root(args.root, quiet=args.quiet)
    if args.check is not None:
        return _check(args)
    paths = find_mocap_files(args.root, args.recordings)
    split = parse_split(args.split)
    out = args.out if args.out is not None else catalogue.mini_annotation_path(args.root)
    if out.exists() and not args.overwrite:
        raise BadInputError(f"{out} exists; use --overwrite to replace it, or --out to write elsewhere")
    check_writable(out.parent, "the table", "pass --out PATH in a folder you can write")  # before the build
    table = build_table(
        paths, stride=args.stride, complete_only=args.complete_only, split=split, progress=progress_enabled(args)
    )
    _save(table, out)
    print(f"wrote {out}: {len(table['table']['subject_idx'])} samples from {len(paths)} recordings")
    print(format_summary(table))
    return 0

