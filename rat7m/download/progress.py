"""Progress display: an overall bytes bar (rate, ETA) plus one bar per active file.

On a terminal, tqdm bars; in a log (stderr not a TTY) tqdm's carriage-return redraws would make
one endless line, so a plain log line is written every :data:`LOG_INTERVAL` seconds instead.
``--quiet`` turns both off.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

__all__ = [
    "LOG_INTERVAL",
    "FileBar",
    "Progress",
    "human_bytes",
]

log = logging.getLogger(__name__)

#: Seconds between two progress lines when stderr is not a terminal.
LOG_INTERVAL = 30.0


def human_bytes(n: float) -> str:
    """``1234567`` -> ``"1.23 MB"`` (decimal units, as disk sizes are sold)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


class Progress:
    """Overall and per-file progress of one run; safe to update from several threads.

    Args:
        total: Bytes the run expects to transfer.
        enabled: ``False`` for ``--quiet``.
        tty: Draw bars (``None``: when stderr is a terminal).
    """

    def __init__(self, total: int, *, enabled: bool = True, tty: bool | None = None) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.total = total
        self.done = 0
        self._lock = threading.Lock()
        self._free_positions: list[int] = []
        self._next_position = 1
        self._start = time.monotonic()
        self._last_log = self._start
        self._bar = None
        if enabled and self.tty:
            self._bar = tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1000, desc="total", dynamic_ncols=True
            )

    def advance(self, n: int) -> None:
        """Count ``n`` transferred bytes (negative: bytes thrown away by a restart)."""
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(n)
            elif self.enabled and time.monotonic() - self._last_log >= LOG_INTERVAL:
                self._last_log = time.monotonic()
                log.info("progress: %s", self.describe())

    def describe(self) -> str:
        """One line: done of total, rate and ETA."""
        elapsed = max(time.monotonic() - self._start, 1e-6)
        rate = self.done / elapsed
        left = max(self.total - self.done, 0)
        eta = time.strftime("%H:%M:%S", time.gmtime(left / rate)) if rate > 0 else "?"
        share = 100 * self.done / self.total if self.total else 100.0
        return f"{human_bytes(self.done)} of {human_bytes(self.total)} ({share:.1f}%), {human_bytes(rate)}/s, ETA {eta}"

    @contextmanager
    def file(self, name: str, total: int | None, initial: int = 0, verb: str = "get") -> Iterator[FileBar]:
        """A bar for one file while it is being transferred or hashed (``total`` ``None``: size unknown)."""
        bar = None
        if self.enabled and self.tty:
            with self._lock:
                position = self._free_positions.pop() if self._free_positions else self._next_position
                self._next_position = max(self._next_position, position + 1)
            bar = tqdm(
                total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1000,
                desc=f"{verb} {name}", position=position, leave=False, dynamic_ncols=True,
            )  # fmt: skip
        try:
            yield FileBar(bar)
        finally:
            if bar is not None:
                bar.close()
                with self._lock:
                    self._free_positions.append(position)

    def logging_above_bars(self) -> contextlib.AbstractContextManager:
        """While bars are drawn, route log messages through tqdm so they print above the bars."""
        if self._bar is None:
            return contextlib.nullcontext()
        # here, not at the top: it imports tqdm.auto and with it asyncio, a third of the command's start-up
        from tqdm.contrib.logging import logging_redirect_tqdm

        return logging_redirect_tqdm()

    def close(self) -> None:
        """Close the bars (the summary is printed after this)."""
        if self._bar is not None:
            self._bar.close()


class FileBar:
    """The per-file bar handed to the transfer code (a no-op when bars are off)."""

    def __init__(self, bar: tqdm | None) -> None:
        self._bar = bar

    def update(self, n: int) -> None:
        """Move by ``n`` bytes."""
        if self._bar is not None:
            self._bar.update(n)

    def reset(self) -> None:
        """Back to zero (the file restarts from byte 0)."""
        if self._bar is not None:
            self._bar.reset()
