"""Download RAT7M (videos and motion-capture annotations) from Figshare: resumable and verified.

Each file is fetched on its own into ``video_sequences/`` and ``annotations/`` under ``--out``,
checked against the MD5 that Figshare lists, and only then given its final name. Rerun the same
command after an interruption: finished files are skipped, partial ones resume where they stopped.

Examples::

    python download_all.py --out /data/rat7m
    python download_all.py --out /data/rat7m --recordings s5-d1,s5-d2 --cameras 1,2 --dry-run
    python download_all.py --out /data/rat7m --what annotations --mini-annotation

Exit codes: 0 everything asked for is there and verified, 1 some files failed (listed in the
summary; rerun to retry them), 2 bad arguments or an unusable --out folder.
"""

from __future__ import annotations

# isort: split
import argparse
import logging
from collections.abc import Sequence

from rat7m import catalogue as cat
from rat7m.cli import (
    EXIT_FAILED,
    ArgumentParser,
    add_cameras_argument,
    add_recordings_argument,
    add_root_argument,
    add_verbosity_arguments,
    resolve_root,
    setup_logging,
)
from rat7m.download import Options, download_dataset, format_plan, format_summary
from rat7m.download.listing import WHAT_CHOICES
from rat7m.download.run import ZIP_URL
from rat7m.errors import BadInputError

__all__ = [
    "MAX_JOBS",
    "build_parser",
    "main",
    "parse_options",
]

#: Most parallel downloads allowed (Figshare is one server; more does not help).
MAX_JOBS = 32


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``download_all.py``."""
    parser = ArgumentParser(prog="download_all.py", description=__doc__)
    add_root_argument(parser, "--out", "dataset folder")
    parser.add_argument("--api-url", default=cat.FIGSHARE_API_URL, help="Figshare API root (default: %(default)s)")
    parser.add_argument("--zip-url", default=ZIP_URL, help="Figshare whole-article zip root, for --via-zip "
                        "(default: %(default)s)")  # fmt: skip
    parser.add_argument("--drive-url", default=None, help="Google Drive root for --mini-annotation, for testing "
                        "(default: Google's)")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=4, help="files downloaded at once (default: %(default)s)")
    add_recordings_argument(parser)
    parser.add_argument("--what", choices=WHAT_CHOICES, help="videos, annotations or all (default: all)")
    add_cameras_argument(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the plan (files, sizes, what is done); "
                        "download nothing")  # fmt: skip
    parser.add_argument("--verify", action="store_true", help="rehash every present file, even ones verified before")
    parser.add_argument("--via-zip", action="store_true", help="download whole-article zips and unzip them "
                        "(for when the API is unreachable)")  # fmt: skip
    parser.add_argument(
        "--mini-annotation",
        action="store_true",
        help=f"also fetch {cat.MINI_ANNOTATION_NAME} from Google Drive (alone: only that file)",
    )
    add_verbosity_arguments(parser, progress_bars=True)
    return parser


def parse_options(argv: Sequence[str] | None) -> tuple[Options, argparse.Namespace]:
    """Check the command line and turn it into :class:`Options`.

    Raises:
        BadInputError: a bad argument, with what is wrong and what is valid.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.out = resolve_root(args.out, "--out", args.quiet)
    if not 1 <= args.jobs <= MAX_JOBS:
        parser.error(f"--jobs must be between 1 and {MAX_JOBS}, not {args.jobs}")
    for name in ("api_url", "zip_url", "drive_url"):
        url = getattr(args, name)
        if url is not None and not url.startswith(("http://", "https://")):
            parser.error(f"--{name.replace('_', '-')} must be an http:// or https:// URL, not {url!r}")
    recordings = args.recordings or cat.RECORDINGS
    cameras = args.cameras or cat.CAMERA_NAMES
    if args.verify and args.via_zip:
        parser.error("--verify checks files against the API's MD5s; it cannot be combined with --via-zip")
    if args.out.exists() and not args.out.is_dir():
        raise BadInputError(f"--out {args.out} exists and is not a folder")
    selected = args.what is not None or args.recordings is not None or args.cameras is not None
    options = Options(
        out=args.out,
        api_url=args.api_url,
        zip_url=args.zip_url,
        jobs=args.jobs,
        recordings=recordings,
        what=args.what or "all",
        cameras=cameras,
        dry_run=args.dry_run,
        verify=args.verify,
        via_zip=args.via_zip,
        figshare=selected or not args.mini_annotation,
        mini_annotation=args.mini_annotation,
        drive_url=args.drive_url,
        quiet=args.quiet,
    )
    return options, args


def main(argv: Sequence[str] | None = None) -> int:
    """Download what the command line asks for; 0 if everything is there and verified, else 1."""
    options, args = parse_options(argv)
    setup_logging(args)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    report = download_dataset(options)
    print(format_plan(report) if options.dry_run else format_summary(report))
    return EXIT_FAILED if report.failed else 0

