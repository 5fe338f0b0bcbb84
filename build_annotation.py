"""Build the mini-RAT7M annotation table from annotations/mocap-*.mat, or check a table.

    python build_annotation.py                          # all mocap files under ./annotations
    python build_annotation.py --root /data/rat7m --stride 10 --complete-only
    python build_annotation.py --check --root /data/rat7m      # check /data/rat7m/mini_rat7m_train_test_annotation.pkl

Exit codes: 0 done (all checks passed), 1 a check failed, 2 bad input (missing or unreadable file).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rat7m import catalogue
from rat7m.cli import EXIT_FAILED, add_verbosity_arguments, run_main, setup_logging
from rat7m.errors import BadInputError
from rat7m.table import load_annotation, save_annotation
from rat7m.table_build import build_table, find_mocap_files, format_summary, parse_split
from rat7m.table_check import DEFAULT_TOLERANCE_PX, check_table

log = logging.getLogger("build_annotation")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="dataset root (default: current folder)")
    parser.add_argument("--out", type=Path, help=f"table to write (default: <root>/{catalogue.MINI_ANNOTATION_NAME})")
    parser.add_argument("--stride", type=int, default=1, help="keep mocap sample i when i %% K == 0 (default 1)")
    parser.add_argument("--complete-only", action="store_true", help="keep only samples with all 20 markers finite")
    parser.add_argument(
        "--split", default="official", help="'official' (default) or overrides such as 's4-d1=test,s5-d2=train'"
    )
    parser.add_argument("--recordings", help="comma-separated recordings, e.g. s1-d1,s5-d2 (default: every file found)")
    parser.add_argument(
        "--check",
        nargs="?",
        const="",
        metavar="TABLE",
        help=f"check TABLE (default: <root>/{catalogue.MINI_ANNOTATION_NAME}) instead of building a table",
    )
    parser.add_argument(
        "--tolerance", type=float, default=DEFAULT_TOLERANCE_PX, help="largest reprojection error accepted, px"
    )
    add_verbosity_arguments(parser)
    return parser.parse_args(argv)


def _check(args: argparse.Namespace) -> int:
    path = Path(args.check) if args.check else catalogue.mini_annotation_path(args.root)
    table = load_annotation(path)
    results = check_table(table, args.root, args.tolerance)
    print(f"{path}: {len(table['table']['subject_idx'])} samples")
    print(format_summary(table))
    for result in results:
        print(result.format())
    return EXIT_FAILED if any(r.ok is False for r in results) else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args)
    if args.stride < 1:
        raise BadInputError(f"--stride must be a positive integer, got {args.stride}")
    if args.check is not None:
        return _check(args)
    try:
        recordings = catalogue.parse_recordings(args.recordings) if args.recordings else None
    except KeyError as exc:
        raise BadInputError(f"--recordings: {exc.args[0]}") from None
    paths = find_mocap_files(args.root, recordings)
    table = build_table(
        paths,
        stride=args.stride,
        complete_only=args.complete_only,
        split=parse_split(args.split),
        progress=not args.quiet,
    )
    out = args.out if args.out is not None else catalogue.mini_annotation_path(args.root)
    save_annotation(table, out)
    print(f"wrote {out}: {len(table['table']['subject_idx'])} samples from {len(paths)} recordings")
    print(format_summary(table))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
