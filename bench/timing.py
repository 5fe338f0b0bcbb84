"""Timing helpers the benchmarks share: wall time of a call, best of several, and a spread to print."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def timed(run: Callable[[], object]) -> float:
    """Wall seconds of one call of ``run``."""
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def best_of(repeat: int, run: Callable[[], T]) -> tuple[float, T]:
    """Smallest wall time of ``repeat`` calls (the least disturbed by the machine's other work), and the last result."""
    times = []
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def spread(values: list[float], digits: int = 2) -> str:
    """``median (min-max)`` of ``values``."""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"
