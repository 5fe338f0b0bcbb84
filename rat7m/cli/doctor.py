"""``rat7m doctor`` (``rat7m-doctor``, ``python -m rat7m.doctor``): explain a dataset folder.

The report itself is :func:`rat7m.doctor.diagnose`; its module docstring is this command's ``--help``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rat7m import catalogue, doctor
from rat7m.cli import ArgumentParser, add_root_argument, add_verbosity_arguments, resolve_root, setup_logging

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The doctor's command line."""
    parser = ArgumentParser(prog="python -m rat7m.doctor", description=doctor.__doc__)
    add_root_argument(parser)
    parser.add_argument("--annotation", type=Path, help=f"table (default: <root>/{catalogue.MINI_ANNOTATION_NAME})")
    add_verbosity_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Print the report; 0 if everything the table wants can be extracted, 1 if not."""
    args = build_parser().parse_args(argv)
    setup_logging(args)
    lines, ok = doctor.diagnose(resolve_root(args.root, quiet=args.quiet), args.annotation)
    print("\n".join(lines))
    return 0 if ok else 1
