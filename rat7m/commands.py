"""The console commands' old home; they are :mod:`rat7m.cli.entry` now (kept for code that imports them)."""

from rat7m.cli.entry import build_annotation, doctor, download, export, extract, metrics, render

__all__ = ["build_annotation", "doctor", "download", "export", "extract", "metrics", "render"]
