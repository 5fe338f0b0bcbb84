"""What every script shares: logging set-up and turning errors into messages and exit codes.

Scripts are thin: ``main(argv) -> int`` parses arguments and calls the layer; ``run_main``
wraps it so that bad input prints one clear line and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from rat7m.errors import BadInputError, Rat7mError

#: Exit code for bad input (a file or argument that is not what it should be).
EXIT_BAD_INPUT = 2
#: Exit code when the run finished but some work failed (listed in the summary).
EXIT_FAILED = 1


def add_verbosity_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``-v/--verbose`` and ``-q/--quiet`` to a script's parser."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", help="print diagnostic messages")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bars, only the summary and errors")


def setup_logging(args: argparse.Namespace) -> None:
    """Set the log level from ``--verbose``/``--quiet``; messages go to stderr."""
    level = logging.INFO
    if getattr(args, "verbose", False):
        level = logging.DEBUG
    elif getattr(args, "quiet", False):
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Call a script's ``main`` and map the toolkit's errors onto messages and exit codes."""
    try:
        return main(argv)
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Rat7mError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
