"""Deciding, per file, what a run must do: one pure function, tested without a network.

:func:`decide` looks only at the listing's entry, what is on disk (sizes and mtime of the final
file and of ``NAME.part``) and the verification record, and returns a :class:`Step`:

- ``SKIP``: the final file is there and verified earlier with the same size, mtime and MD5;
- ``VERIFY``: the final file is there with the right size but not (or no longer) known to be
  good, or ``--verify`` asks: hash it (and download again if it is bad);
- ``RESUME``: a partial download is there: continue it from its size with HTTP Range;
- ``RESTART``: what is there cannot be continued (a wrong-sized final file, a partial longer than
  the file or aimed at another MD5): delete it and start from byte 0;
- ``FETCH``: nothing is there yet.

Never is "the file exists" taken to mean "the download is done".
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rat7m.download.listing import RemoteFile
from rat7m.download.record import Partial, VerificationRecord, Verified

__all__ = [
    "PART_SUFFIX",
    "Action",
    "LocalState",
    "Step",
    "decide",
    "local_state",
    "part_path",
    "plan_downloads",
]

#: Suffix of a download in progress (``s1-d1-camera1-0.mp4.part``).
PART_SUFFIX = ".part"


class Action(enum.Enum):
    """What to do about one file."""

    SKIP = "skip"
    VERIFY = "verify"
    RESUME = "resume"
    RESTART = "restart"
    FETCH = "fetch"


@dataclass(frozen=True)
class LocalState:
    """What is on disk for one file: sizes (``None``: absent) and the final file's mtime."""

    final_size: int | None = None
    final_mtime_ns: int | None = None
    part_size: int | None = None


@dataclass(frozen=True)
class Step:
    """The decision for one file: the action, the byte to start from and why."""

    file: RemoteFile
    action: Action
    offset: int = 0
    reason: str = ""

    @property
    def remaining(self) -> int:
        """Bytes still to transfer (and to find room for on disk)."""
        if self.action in (Action.SKIP, Action.VERIFY) or self.file.size is None:
            return 0
        return self.file.size - self.offset


def part_path(final: Path) -> Path:
    """Where the download of ``final`` is written until it verifies."""
    return final.with_name(final.name + PART_SUFFIX)


def local_state(final: Path) -> LocalState:
    """Read sizes and mtime of ``final`` and its ``.part`` from disk."""
    final_size = final_mtime = part_size = None
    try:
        stat = final.stat()
        final_size, final_mtime = stat.st_size, stat.st_mtime_ns
    except FileNotFoundError:
        pass
    with contextlib.suppress(FileNotFoundError):
        part_size = os.stat(part_path(final)).st_size
    return LocalState(final_size, final_mtime, part_size)


def decide(
    remote: RemoteFile,
    local: LocalState,
    verified: Verified | None = None,
    partial: Partial | None = None,
    verify: bool = False,
) -> Step:
    """Decide what to do about one file (pure: no disk, no network).

    Args:
        remote: The listing's entry.
        local: What is on disk.
        verified: The record's entry for the final file, if any.
        partial: The record's entry for the partial download, if any.
        verify: ``--verify``: distrust the record and hash every present file.

    Returns:
        The :class:`Step` to carry out.
    """
    if local.final_size is not None:
        if remote.size is not None and local.final_size != remote.size:
            why = f"present with {local.final_size} bytes instead of {remote.size}"
            return Step(remote, Action.RESTART, 0, why)
        if verify:
            return Step(remote, Action.VERIFY, 0, "--verify")
        if verified is None:
            return Step(remote, Action.VERIFY, 0, "present, never verified")
        if (verified.size, verified.md5, verified.mtime_ns) == (remote.size, remote.md5, local.final_mtime_ns):
            return Step(remote, Action.SKIP, 0, "verified earlier")
        return Step(remote, Action.VERIFY, 0, "changed since it was verified")
    if local.part_size is None or local.part_size == 0:
        return Step(remote, Action.FETCH, 0, "not downloaded yet")
    if partial is not None and partial.md5 != remote.md5:
        return Step(remote, Action.RESTART, 0, "partial download of a different version of the file")
    if remote.size is not None and local.part_size > remote.size:
        return Step(remote, Action.RESTART, 0, f"partial download longer ({local.part_size} bytes) than the file")
    return Step(remote, Action.RESUME, local.part_size, f"partial download, {local.part_size} bytes there")


def plan_downloads(files: Iterable[RemoteFile], root: Path, record: VerificationRecord, verify: bool) -> list[Step]:
    """Read the disk and the record for each listed file and :func:`decide` what to do."""
    return [
        decide(f, local_state(root / f.path), record.verified(f.path), record.partial(f.path), verify) for f in files
    ]
