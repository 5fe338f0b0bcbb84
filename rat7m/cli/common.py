"""What every script shares: its argument parser, logging set-up, and errors as messages and exit codes.

Scripts are thin: ``main(argv) -> int`` parses arguments and calls the layer; ``run_main``
wraps it so that bad input prints one clear line and exits 2, never a traceback. Every script
builds its parser with :class:`ArgumentParser` (``--help`` shows the module docstring; an
argument error is one line, ``<prog>: error: <message> (see --help)``, exit 2) and takes
recordings and cameras through :func:`add_recordings_argument` and :func:`add_cameras_argument`,
so ``--recordings s1-d1 s5-d2`` and ``--recordings s1-d1,s5-d2`` mean the same everywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rat7m import catalogue, interrupt
from rat7m.errors import BadInputError, Rat7mError, UsageError

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "ROOT_ENV",
    "SCRIPTS",
    "ArgumentParser",
    "UsageError",
    "add_cameras_argument",
    "add_recordings_argument",
    "add_root_argument",
    "add_table_selection_arguments",
    "add_verbosity_arguments",
    "check_writable",
    "command",
    "command_name",
    "default_root",
    "non_negative_float",
    "positive_int",
    "progress_enabled",
    "resolve_root",
    "run_main",
    "setup_logging",
]

#: Exit code for bad input (a file or argument that is not what it should be).
EXIT_BAD_INPUT = 2
#: Exit code when the run finished but some work failed (listed in the summary).
EXIT_FAILED = 1
#: Exit code after Ctrl-C (128 + SIGINT, what a shell reports for a process stopped by it).
EXIT_INTERRUPTED = interrupt.EXIT_INTERRUPTED
#: Exit code after SIGTERM (128 + SIGTERM).
EXIT_TERMINATED = interrupt.EXIT_TERMINATED
#: Environment variable naming the dataset root every script uses when no ``--root``/``--out`` is given.
ROOT_ENV = "RAT7M_ROOT"

#: The console command being run (``rat7m-extract``), so ``--help`` and errors name what the user typed.
_COMMAND: str | None = None


@contextlib.contextmanager
def command_name(name: str) -> Iterator[None]:
    """Within the block, every :class:`ArgumentParser` calls itself ``name`` (a console command)."""
    global _COMMAND
    previous, _COMMAND = _COMMAND, name
    try:
        yield
    finally:
        _COMMAND = previous


#: Each console command ``rat7m-<name>`` and the same command without an install (from the repository folder).
SCRIPTS = {
    "download": "python download_all.py",
    "build-annotation": "python build_annotation.py",
    "extract": "python extract_frames.py",
    "metrics": "python metric_utils/compute_metrics.py",
    "doctor": "python -m rat7m.doctor",
    "export": "python export.py",
    "render": "python -m rat7m.render",
}


@functools.cache
def command(name: str) -> str:
    """How a hint names toolkit command ``name`` (a key of :data:`SCRIPTS`): what the user can type here.

    ``rat7m-build-annotation`` when that console command is on the PATH (the toolkit is installed
    and its environment active), else ``python build_annotation.py`` (a clone run with its venv's python).
    """
    console = f"rat7m-{name}"
    return console if shutil.which(console) else SCRIPTS[name]


class ArgumentParser(argparse.ArgumentParser):
    """The parser of every script: full module docstring in ``--help``, one-line errors.

    argparse's own errors print the usage block and exit from inside ``parse_args``; here an error
    raises :class:`UsageError`, which :func:`run_main` prints as ``<prog>: error: <message> (see --help)``
    and turns into exit code 2. Scripts call :meth:`error` for their own argument checks too, so
    every argument error reads the same.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        if _COMMAND is not None:
            kwargs["prog"] = _COMMAND
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Raise :class:`UsageError` with one line: ``<prog>: error: <message> (see --help)``.

        An unknown option gets a ``did you mean`` naming the closest option of this parser.
        """
        message += _suggestion(getattr(self, "_argv", ()), self._option_string_actions)
        raise UsageError(f"{self.prog}: error: {message} (see --help)")

    # argparse's overloads differ only in the namespace's type, which this passes through
    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        """argparse's, remembering the arguments so that an error can name the option a typo meant."""
        self._argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
        return super().parse_known_args(args, namespace)


def _suggestion(words: Sequence[str], options: Collection[str]) -> str:
    """``; did you mean --x?`` for the first unknown option close to a known one, else ``""``.

    Checked on every error, not only "unrecognized arguments": a mistyped required option
    (``--pred-pth``) is first reported as the required one missing.
    """
    for word in words:
        flag = word.split("=", 1)[0]
        if word.startswith("--") and flag not in options:
            close = difflib.get_close_matches(flag, list(options), n=1, cutoff=0.6)
            if close:
                return f"; did you mean {close[0]}?"
    return ""


def default_root() -> Path:
    """The dataset root when none is given: ``$RAT7M_ROOT`` if set (and not empty), else the current folder."""
    return Path(os.environ.get(ROOT_ENV) or ".")


def add_root_argument(parser: argparse.ArgumentParser, flag: str = "--root", what: str = "dataset root") -> None:
    """Add ``--root`` (or the download's ``--out``), defaulting to :func:`default_root`."""
    parser.add_argument(
        flag, type=Path, default=None,
        help=f"{what} (default: ${ROOT_ENV} if set, else the current folder)",
    )  # fmt: skip


def resolve_root(value: Path | None, flag: str = "--root", quiet: bool = False) -> Path:
    """The root a script uses (its flag, else :func:`default_root`); says once on stderr which and why (not with -q)."""
    if value is not None:
        root, why = value, flag
    elif os.environ.get(ROOT_ENV):
        root, why = default_root(), f"${ROOT_ENV}"
    else:
        root, why = Path("."), "the current folder"
    if not quiet:
        print(f"dataset root: {root.resolve()} (from {why})", file=sys.stderr)
    return root


def check_writable(folder: Path, what: str, hint: str = "") -> None:
    """Refuse, before any work, a folder this run must write into but cannot (read-only, not ours).

    Nothing is created: the folder, or the nearest folder above it that exists (where it will be
    made), must take a temporary file, which is created and removed at once.

    Raises:
        BadInputError: one line naming the folder, what it is for, and the way out.
    """
    where = folder.absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        with tempfile.NamedTemporaryFile(dir=where, prefix=".rat7m-write-test-"):
            pass
    except OSError as exc:
        msg = f"cannot write {what} to {folder}: {exc.strerror or exc}" + (f"; {hint}" if hint else "")
        raise BadInputError(msg) from None


class _NamesAction(argparse.Action):
    """Join ``--x a b`` and ``--x a,b`` into one comma-separated text and parse it with ``self.const``."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        text = ",".join(values)
        try:
            parsed = self.const(text)
        except KeyError as exc:
            raise argparse.ArgumentError(self, str(exc.args[0])) from None
        if not parsed:
            raise argparse.ArgumentError(self, f"no names in {text!r}")
        setattr(namespace, self.dest, parsed)


def add_recordings_argument(parser: argparse.ArgumentParser, default: str = "all seven") -> None:
    """Add ``--recordings``: names such as ``s1-d1 s5-d2`` or ``s1-d1,s5-d2`` (or ``all``).

    The value is a tuple of :class:`~rat7m.catalogue.Recording`, or None when the option is not
    given (the script decides what that means; ``default`` says it in ``--help``). An unknown name
    is a one-line argument error listing the valid ones.
    """
    parser.add_argument(
        "--recordings", nargs="+", metavar="REC", action=_NamesAction, const=catalogue.parse_recordings,
        help=f"recordings, e.g. s1-d1 s5-d2 or s1-d1,s5-d2 (default: {default})",
    )  # fmt: skip


def add_cameras_argument(parser: argparse.ArgumentParser, default: str = "all six") -> None:
    """Add ``--cameras``: ``1 3``, ``1,3`` or ``Camera1`` (or ``all``); a tuple of camera names, None if not given."""
    parser.add_argument(
        "--cameras", nargs="+", metavar="CAM", action=_NamesAction, const=catalogue.parse_cameras,
        help=f"cameras, e.g. 1 3, 1,3 or Camera1 (default: {default})",
    )  # fmt: skip


def add_table_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--recordings`` and ``--cameras`` for a command that works on a table: by default all of it."""
    add_recordings_argument(parser, default="every recording in the table")
    add_cameras_argument(parser)


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse ``type``: a finite number >= 0."""
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, not {text}")
    return value


def add_verbosity_arguments(parser: argparse.ArgumentParser, progress_bars: bool = False) -> None:
    """Add ``-v/--verbose`` and ``-q/--quiet`` to a script's parser.

    Args:
        parser: the script's parser.
        progress_bars: the script draws progress bars (``-q`` then says it hides them).
    """
    quiet = "no progress bars; only the summary and errors" if progress_bars else "only the summary and errors"
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", help="print diagnostic messages")
    group.add_argument("-q", "--quiet", action="store_true", help=quiet)


def progress_enabled(args: argparse.Namespace) -> bool:
    """Draw tqdm bars only without ``--quiet`` and when stderr is a terminal (a log gets no carriage returns)."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def setup_logging(args: argparse.Namespace) -> None:
    """Set the log level from ``--verbose``/``--quiet``; messages go to stderr."""
    level = logging.INFO
    if getattr(args, "verbose", False):
        level = logging.DEBUG
    elif getattr(args, "quiet", False):
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Call a script's ``main`` and map the toolkit's errors onto messages and exit codes.

    Ctrl-C ends the run with one line and :data:`EXIT_INTERRUPTED`, SIGTERM with one line and
    :data:`EXIT_TERMINATED`: both are raised as exceptions inside ``main`` (:func:`rat7m.interrupt.raising`),
    so its clean-up runs first; a second signal after that ends the process without a second line.
    """
    try:
        with interrupt.raising():
            return main(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Rat7mError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # output piped into `head` that has had enough: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's recipe: no error at exit flush
        return EXIT_FAILED
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (interrupt.Terminated)
        interrupt.reported()
        print(interrupt.message(exc), file=sys.stderr)
        return interrupt.exit_code(exc)
    except RuntimeError as exc:
        # Python before 3.12 wraps what a class body's __set_name__ raises (a signal landing while a module that
        # defines a cached_property is imported) in a RuntimeError: the signal is its cause
        if not isinstance(exc.__cause__, KeyboardInterrupt):
            raise
        interrupt.reported()
        print(interrupt.message(exc.__cause__), file=sys.stderr)
        return interrupt.exit_code(exc.__cause__)
