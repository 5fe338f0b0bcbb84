"""The command line's one home: shared helpers, one module per command, and the ``rat7m`` entry points.

- :mod:`rat7m.cli.common`: what every command shares (:func:`run_main`, :class:`ArgumentParser`,
  :func:`resolve_root`, :func:`check_writable`, ...), importable from here as ``from rat7m.cli import X``;
- one module per command, each with ``build_parser()`` and ``main(argv) -> int``: :mod:`~rat7m.cli.download`,
  :mod:`~rat7m.cli.build_annotation`, :mod:`~rat7m.cli.extract`, :mod:`~rat7m.cli.doctor`,
  :mod:`~rat7m.cli.export`, :mod:`~rat7m.cli.render` (the metrics command is still
  ``metric_utils/compute_metrics.py``);
- :mod:`rat7m.cli.entry`: ``rat7m <command>`` and the ``rat7m-*`` console commands.

The helpers are loaded on first use, not by ``import rat7m.cli``: an entry point must set up Ctrl-C
handling (:func:`rat7m.interrupt.at_start`) before anything slow is imported.
"""

from __future__ import annotations

from typing import Any

#: The modules of the package; the helpers (``common.__all__``) are served from here too, when first used.
__all__ = ["build_annotation", "common", "doctor", "download", "entry", "export", "extract", "render"]


def __getattr__(name: str) -> Any:
    """``rat7m.cli.run_main`` and the other helpers of :mod:`rat7m.cli.common`, imported when first asked for."""
    if not name.startswith("_") and name not in __all__:  # a submodule not imported yet is the import system's
        from rat7m.cli import common

        if name in common.__all__:
            return getattr(common, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
