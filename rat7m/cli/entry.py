"""Entry points: ``rat7m <command>``, the ``rat7m-*`` console commands and the top-level scripts.

Every way in runs a command's module the same way (:func:`run_command`): Ctrl-C and SIGTERM are
made to end it with one line first (:func:`rat7m.interrupt.at_start`), then the module is imported
(numpy, OpenCV ...) and its ``main`` runs through :func:`rat7m.cli.run_main`, so errors, exit codes
and ``--help`` read the same whether the user typed ``rat7m download``, ``rat7m-download`` or
``python download_all.py``; each names itself as typed.

This module imports nothing heavy, so that a signal during start-up is already one line.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

from rat7m import extras, interrupt

__all__ = [
    "COMMANDS",
    "build_annotation",
    "doctor",
    "download",
    "export",
    "extract",
    "main",
    "metrics",
    "render",
    "run_command",
    "script",
]

#: Each command: the module that holds it, the function that runs it, and one line for ``rat7m --help``.
COMMANDS = {
    "download": ("rat7m.cli.download", "main", "download RAT7M from Figshare, resumable and verified"),
    "build-annotation": ("rat7m.cli.build_annotation", "main", "build the mini-RAT7M table, or check one"),
    "extract": ("rat7m.cli.extract", "main", "extract the frames the table wants from the videos"),
    "metrics": ("rat7m.cli.metrics", "main", "score predictions (MPJPE, PA-MPJPE, N-MPJPE, 2D OKS AP)"),
    "doctor": ("rat7m.cli.doctor", "main", "explain a dataset folder: what is there and what is missing"),
    "export": ("rat7m.cli.export", "run", "export the table to COCO, DeepLabCut, YOLO, SLEAP, anipose, DANNCE"),
    "render": ("rat7m.cli.render", "main", "draw overlays, labelled videos and a report of a scoring run"),
}
#: Exit code of bad input (an unknown command, a command missing from this installation).
EXIT_BAD_INPUT = 2


def one_blas_thread() -> None:
    """Let OpenBLAS start one thread, not one per core, unless ``OPENBLAS_NUM_THREADS`` says otherwise.

    The commands' linear algebra is small (3x3 SVDs and solves, projections), while OpenBLAS starting
    its threads costs ~80 ms of CPU at numpy's import (``import numpy``: 170 ms of CPU, 93 ms with one
    thread, on 2 cores), in every command and every worker process it starts (they inherit it). Set
    before numpy is imported: this module imports nothing that imports it.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def run_command(name: str, prog: str | None = None, argv: Sequence[str] | None = None) -> int:
    """Run command ``name`` (a key of :data:`COMMANDS`) on ``argv`` (default: ``sys.argv[1:]``).

    Args:
        name: the command.
        prog: what ``--help`` and error lines call it (default: the command's own script name).
        argv: its arguments.

    Returns:
        The exit code.
    """
    interrupt.at_start()
    one_blas_thread()
    extras.require_runtime()  # a missing runtime dependency is one line saying how to install it
    module_name, function, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"{prog or name}: not part of this version of the toolkit (no module {module_name})", file=sys.stderr)
        return EXIT_BAD_INPUT
    from rat7m.cli import command_name, run_main

    if prog is None:
        return run_main(getattr(module, function), argv)
    with command_name(prog):
        return run_main(getattr(module, function), argv)


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {about}" for name, (_, _, about) in COMMANDS.items()]
    return "\n".join([
        "usage: rat7m <command> [options]   (rat7m <command> --help: its options)",
        "",
        "The RAT7M toolkit. Commands:",
        *lines,
        "",
        "Each is also a console command (rat7m-download ...). Exit codes: 0 done, 1 some work failed,",
        "2 bad input, 130 interrupted (Ctrl-C), 143 terminated.",
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """``rat7m <command> [options]``: run one command; ``rat7m --help`` lists them."""
    interrupt.at_start()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else EXIT_BAD_INPUT
    if args[0] == "--version":
        from rat7m import __version__

        print(f"rat7m {__version__}")
        return 0
    name = args[0]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        maybe = f"; did you mean {close[0]}?" if close else ""
        print(f"rat7m: error: no command {name!r}{maybe} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_command(name, f"rat7m {name}", args[1:])


def script(module: str, name: str) -> None:
    """The body of a top-level script such as ``download_all.py``: one line, so the scripts cannot drift apart.

    Run (``python download_all.py``), it runs command ``name`` and exits with its code; imported
    (``import download_all``), the script becomes the command's module itself, so code and tests that use its
    names keep working.

    Args:
        module: the script's ``__name__``.
        name: the command (a key of :data:`COMMANDS`).
    """
    if module == "__main__":
        sys.exit(run_command(name))
    sys.modules[module] = importlib.import_module(COMMANDS[name][0])


def _console(name: str) -> Callable[[], int]:
    """The ``rat7m-<name>`` console command, named as typed (the entry points in pyproject.toml)."""

    def command() -> int:
        return run_command(name, f"rat7m-{name}")

    command.__name__ = command.__qualname__ = name.replace("-", "_")
    command.__doc__ = f"``rat7m-{name}``."
    return command


download = _console("download")
build_annotation = _console("build-annotation")
extract = _console("extract")
metrics = _console("metrics")
doctor = _console("doctor")
export = _console("export")
render = _console("render")
