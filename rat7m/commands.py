"""Console commands (``rat7m-download``, ``rat7m-extract`` ...): the same ``main`` as the top-level scripts.

``pip install .`` puts these on the PATH; each imports its script's module (``download_all``,
``extract_frames``, ``build_annotation``, ``metric_utils.compute_metrics``, ``rat7m.doctor``,
``rat7m.export.cli``, ``rat7m.render.__main__``) and runs its ``main`` through :func:`rat7m.cli.run_main`,
so errors, exit codes and Ctrl-C behave exactly as with ``python download_all.py``; ``--help`` and
error lines name the command the user typed.

This module imports nothing heavy: each command first makes Ctrl-C and SIGTERM end it with one line
(:func:`rat7m.interrupt.at_start`), then imports numpy, OpenCV and the rest.
"""

from __future__ import annotations

import importlib
import sys

from rat7m import extras, interrupt

#: Exit code of a command whose module is missing (bad installation), as for bad input.
EXIT_BAD_INPUT = 2


def _run(module: str, name: str) -> int:
    """Import ``module`` (a signal meanwhile: one line) and run its ``function`` as command ``name``."""
    interrupt.at_start()
    extras.require_runtime()
    try:
        main = importlib.import_module(module).main
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        print(f"{name}: not part of this version of the toolkit (no module {module})", file=sys.stderr)
        return EXIT_BAD_INPUT
    from rat7m.cli import command_name, run_main

    with command_name(name):
        return run_main(main)


def download() -> int:
    """``rat7m-download``: ``download_all.py``."""
    return _run("download_all", "rat7m-download")


def build_annotation() -> int:
    """``rat7m-build-annotation``: ``build_annotation.py``."""
    return _run("build_annotation", "rat7m-build-annotation")


def extract() -> int:
    """``rat7m-extract``: ``extract_frames.py``."""
    return _run("extract_frames", "rat7m-extract")


def metrics() -> int:
    """``rat7m-metrics``: ``metric_utils/compute_metrics.py``."""
    return _run("metric_utils.compute_metrics", "rat7m-metrics")


def doctor() -> int:
    """``rat7m-doctor``: ``rat7m.doctor`` (explains a dataset folder)."""
    return _run("rat7m.doctor", "rat7m-doctor")


def export() -> int:
    """``rat7m-export``: ``export.py`` (training formats)."""
    return _run("rat7m.export.cli", "rat7m-export")


def render() -> int:
    """``rat7m-render``: ``python -m rat7m.render`` (overlays, labelled videos, reports)."""
    return _run("rat7m.render.__main__", "rat7m-render")
