"""Explain a dataset folder: what is there, what the table wants, and what is missing.

    python -m rat7m.doctor --root /data/rat7m
    python -m rat7m.doctor --root /data/rat7m --annotation my_table.pkl

Real downloads differ from the documentation in small ways (camera key spellings, chunks that never
arrived, a camera missing from a recording), and each shows up later as a puzzling error in another
script. The doctor looks at everything at once, without decoding video or changing anything, and
prints a short report: recordings and cameras present, chunks per camera and gaps in their starts,
the table's camera-key spellings and column dtypes, frames the table wants that no chunk holds,
images extracted and missing, and disk use. Every script's layout errors end with a hint to run it.
It reads only the chunks' headers (their frame counts), so a chunk shorter than the table needs is found
without decoding it. Nothing it meets is fatal: an unreadable folder, a symbolic link loop named
like a chunk or an unreadable chunk is a line of the report.

Exit codes: 0 everything the table wants can be extracted, 1 something is missing or the table is
unusable (the report says what), 2 bad input (no such folder or table file).
"""

from __future__ import annotations

if __name__ == "__main__":  # first: a Ctrl-C or SIGTERM during the imports below is one line, exit 130 / 143
    from rat7m import interrupt

    interrupt.at_start()

import contextlib
import errno
import itertools
import os
import shutil
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rat7m import catalogue
from rat7m.cli import command
from rat7m.errors import BadInputError
from rat7m.fileio import check_input
from rat7m.model import MEANINGS, SPELLINGS, Table

if TYPE_CHECKING:
    from rat7m.video import Chunk  # lazy at run time (OpenCV is slow to import)

__all__ = [
    "KNOWN_CAMERA_KEYS",
    "MAX_LISTED",
    "chunk_length",
    "diagnose",
    "frame_count",
    "gaps",
    "hint",
    "inspect_table",
    "inspect_video",
    "inspect_wanted",
    "loaded_table_lines",
    "unusable_chunk_names",
]

#: Camera parameter keys a table camera may carry, by what they mean (:data:`rat7m.model.SPELLINGS`).
KNOWN_CAMERA_KEYS = {MEANINGS[name]: spellings for name, spellings in SPELLINGS.items()}
#: How many examples a report line lists before "...".
MAX_LISTED = 5


def hint(root: str | os.PathLike = "DIR") -> str:
    """The hint every layout error ends with (the one place its text lives)."""
    return f"(run: {command('doctor')} --root {root})"


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a file removed meanwhile
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _listed(items: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:MAX_LISTED])
    return shown + (f", ... ({len(items)} in all)" if len(items) > MAX_LISTED else "")


def chunk_length(index: Any) -> int:
    """Frames per chunk, from the spacing of the starts on disk (3500 for RAT7M; the most common step)."""
    steps: Counter[int] = Counter()
    for rec in catalogue.RECORDINGS:
        for cam in catalogue.CAMERA_NAMES:
            starts = [c.start for c in index.chunks(rec, cam)]
            steps.update(b - a for a, b in itertools.pairwise(starts))
    return steps.most_common(1)[0][0] if steps else catalogue.CHUNK_LENGTH


def gaps(starts: Sequence[int], length: int, most: int = MAX_LISTED) -> tuple[list[int], int]:
    """The first ``most`` multiples of ``length`` up to the last start that no chunk starts at, and how many in all.

    Counted, not enumerated: a chunk named ``...-35000000000.mp4`` implies ten million missing starts,
    and listing them would take gigabytes. The loop visits at most ``len(starts) + most`` candidates.
    """
    present = {s for s in starts if s % length == 0}
    total = starts[-1] // length + 1 - len(present)
    first: list[int] = []
    k = 0
    while len(first) < min(most, total):
        if k * length not in present:
            first.append(k * length)
        k += 1
    return first, total


def _listed_of(first: Sequence[Any], total: int) -> str:
    """Like :func:`_listed`, for a list known only by its first items and its length."""
    shown = ", ".join(str(i) for i in first[:MAX_LISTED])
    return shown + (f", ... ({total} in all)" if total > MAX_LISTED else "")


def unusable_chunk_names(video_dir: Path) -> list[str]:
    """Report lines for entries named like a chunk that are no readable file (link loop, dangling link, folder)."""
    lines = []
    try:
        entries = sorted(os.scandir(video_dir), key=lambda e: e.name) if video_dir.is_dir() else []
    except OSError as exc:
        return [f"  cannot list {video_dir}: {exc.strerror or exc}; the chunks in it are unknown"]
    for entry in entries:
        if catalogue.parse_video_chunk_name(entry.name) is None:
            continue
        try:
            os.stat(entry.path)
            if entry.is_file():
                continue
            why = "a folder, not a file" if entry.is_dir() else "not a regular file"
        except OSError as exc:
            links: dict[int | None, str] = {
                errno.ELOOP: "a symbolic link loop", errno.ENOENT: "a dangling symbolic link",
            }  # fmt: skip
            why = links.get(exc.errno, exc.strerror or str(exc))
        lines.append(f"  {entry.name}: named like a chunk but {why}; left out")
    return lines


def inspect_video(root: Path) -> tuple[list[str], Any, int]:
    """Report lines about the chunks under ``video_sequences/``, the chunk index and the chunk length."""
    from rat7m.video import ChunkIndex  # lazy: OpenCV is slow to import and hint() users need none of it

    problems = unusable_chunk_names(root / catalogue.VIDEO_DIR)
    listed = not any(line.startswith("  cannot list") for line in problems)
    index = ChunkIndex.from_dir(root / catalogue.VIDEO_DIR) if listed else ChunkIndex([])
    length = chunk_length(index)
    lines: list[str] = []
    for rec in catalogue.RECORDINGS:
        per_camera = {cam: index.chunks(rec, cam) for cam in catalogue.CAMERA_NAMES}
        present = [cam for cam, chunks in per_camera.items() if chunks]
        if not present:
            continue
        counts = " ".join(f"{catalogue.camera_number(c)}:{len(per_camera[c])}" for c in present)
        lines.append(f"  {rec.name}: {len(present)} cameras, chunks per camera {counts}")
        missing = [c for c in catalogue.CAMERA_NAMES if c not in present]
        if missing:
            problems.append(f"  {rec.name}: missing camera(s) {', '.join(missing)} (no chunk at all)")
        for cam in present:
            starts = [c.start for c in per_camera[cam]]
            first, total = gaps(starts, length)
            if total:
                where = f"  {rec.name} {cam}: gap, no chunk starting at {_listed_of(first, total)}"
                problems.append(f"{where} (starts {_listed(starts)})")
    if not lines:
        lines.append(f"  no video chunks under {root / catalogue.VIDEO_DIR}")
    return lines + problems, index, length


def _camera_spellings(cameras: Any) -> tuple[dict[str, int], list[str]]:
    """Count each camera-key spelling in a raw table's ``cameras``; list unknown or missing ones."""
    seen: dict[str, int] = {}
    problems: list[str] = []
    if not isinstance(cameras, Mapping):
        return seen, ["  cameras is not a dict"]
    known = {key for keys in KNOWN_CAMERA_KEYS.values() for key in keys} | {"frame"}
    for subject, days in cameras.items():
        for day, cams in (days.items() if isinstance(days, Mapping) else []):
            for cam, params in (cams.items() if isinstance(cams, Mapping) else []):
                if not isinstance(params, Mapping):
                    continue
                for key in params:
                    seen[str(key)] = seen.get(str(key), 0) + 1
                where = f"cameras[{subject}][{day}][{cam!r}]"
                for meaning, keys in KNOWN_CAMERA_KEYS.items():
                    if not any(k in params for k in keys):
                        odd = [str(k) for k in params if str(k) not in known and str(k).lower() == keys[0].lower()]
                        spelled = f" (has {odd[0]!r}: misspelled)" if odd else ""
                        problems.append(f"  {where} has no {meaning} key {' or '.join(keys)}{spelled}")
    return seen, problems


def inspect_table(path: Path) -> tuple[list[str], dict | None]:
    """Report lines about the table's raw spellings and dtypes, and the loaded table (None if unusable)."""
    from rat7m.safe_pickle import safe_load
    from rat7m.table import load_annotation

    lines = [f"table {path}:"]
    raw = safe_load(path)  # BadInputError on a file that is not a safe pickle: bad input
    if isinstance(raw, Mapping):
        seen, problems = _camera_spellings(raw.get("cameras"))
        lines.append("  camera keys: " + (", ".join(f"{k} x{n}" for k, n in sorted(seen.items())) or "none"))
        columns = raw.get("table")
        if isinstance(columns, Mapping):
            dtypes = []
            for name, value in columns.items():
                value = next(iter(value.values()), None) if isinstance(value, Mapping) else value
                if isinstance(value, np.ndarray):
                    dtypes.append(f"{name} {value.dtype}{list(value.shape)}")
            lines.append("  columns: " + ", ".join(dtypes))
        lines += problems
    try:
        table = load_annotation(path)
    except BadInputError as exc:
        lines.append(f"  unusable: {exc}")
        return lines, None
    return lines + loaded_table_lines(table), table


def loaded_table_lines(table: dict) -> list[str]:
    """Report lines about a table that loaded: its size and cameras (and what else is known of it once loaded)."""
    table = Table.of(table)
    return [f"  loads: {table.n_samples} samples, cameras {', '.join(table.camera_names)}",
            f"  {table.detect_pixel_convention().describe()}"]


def frame_count(path: Path) -> int | None:
    """:func:`rat7m.video.header_frame_count`, FFmpeg's own words silenced (the report says which chunk)."""
    from rat7m.video import header_frame_count, quiet_decoder_logs

    quiet_decoder_logs()
    return header_frame_count(path)


def inspect_wanted(root: Path, table: dict, index: Any, length: int) -> tuple[list[str], int]:
    """Report lines about frames no chunk holds and images extracted; returns (lines, frames not extractable).

    A frame is held by the chunk with the largest start at or before it if its offset is below the
    frame count in that chunk's header (a truncated or short chunk lists fewer), else by no chunk.
    """
    from rat7m.extract import wanted_images

    table = Table.of(table)
    recordings = [rec for rec, _ in table.recordings()]
    cameras = table.camera_names
    wanted = wanted_images(table, recordings, cameras)
    lines, unheld, total, present = [], 0, 0, 0
    for (rec, cam), targets in wanted.items():
        lost: list[int] = []
        by_chunk: dict[Chunk, list[int]] = {}
        for target in targets:
            total += 1
            present += (root / target.path).is_file()
            found = index.locate(rec, cam, target.frame)
            if found is None or found[1] >= length:  # before the first chunk, or in a gap
                lost.append(target.frame)
            else:
                by_chunk.setdefault(found[0], []).append(found[1])
        short = []
        for chunk, offsets in by_chunk.items():
            frames = frame_count(chunk.path)
            if frames is not None and frames <= 0:
                continue  # a header without a frame count: only decoding would tell
            beyond = [chunk.start + o for o in offsets if frames is None or o >= frames]
            if beyond:
                if frames is None:
                    held = f"cannot be opened (truncated, corrupt or not a video); {len(beyond)} wanted frame(s) in it"
                else:
                    held = f"lists {frames} frames in its header; {len(beyond)} wanted frame(s) past its end"
                short.append(f"  {rec.name} {cam}: chunk {chunk.name} {held}: {_listed(beyond)}")
                unheld += len(beyond)
        if lost:
            unheld += len(lost)
            lines.append(f"  {rec.name} {cam}: {len(lost)} wanted frame(s) in no chunk: {_listed(lost)}")
        lines += short
    lines.insert(0, f"images: {present} of {total} extracted, {total - present} missing; "
                    f"{total - unheld} extractable from the chunks present, {unheld} not")  # fmt: skip
    return lines, unheld


def diagnose(root: Path, annotation: Path | None = None) -> tuple[list[str], bool]:
    """The whole report and whether everything the table wants can be extracted."""
    if not root.is_dir():
        raise BadInputError(f"--root {root} is not a folder")
    path = annotation or catalogue.mini_annotation_path(root)
    if annotation is not None:
        check_input(path, "--annotation")  # a FIFO, a device or a link loop: one line now, not a hang later
    lines = [f"rat7m doctor: {root}", "video:"]
    video_lines, index, length = inspect_video(root)
    lines += video_lines
    ok = not any("missing camera" in line or ": gap," in line for line in video_lines)
    mats = sorted(p.name for p in (root / catalogue.ANNOTATION_DIR).glob("mocap-*.mat"))
    lines.append(f"annotations: {_listed(mats) if mats else 'no mocap-sS-dD.mat files'}")
    if path.is_file():
        table_lines, table = inspect_table(path)
        lines += table_lines
        if table is None:
            ok = False
        else:
            wanted_lines, unheld = inspect_wanted(root, table, index, length)
            lines += wanted_lines
            ok = unheld == 0
    elif path.exists() or path.is_symlink():
        lines.append(f"table: {path} is not a regular file (a FIFO, device, folder or broken link?); replace it")
        ok = False
    else:
        lines.append(f"table: none at {path} (download it, or build one with {command('build-annotation')})")
        ok = False
    folders = (catalogue.VIDEO_DIR, catalogue.IMAGES_DIR, catalogue.ANNOTATION_DIR)
    usage = {name: _size(root / name) for name in folders}
    free = shutil.disk_usage(root).free
    used = ", ".join(f"{n} {b / 1e9:.2f} GB" for n, b in usage.items())
    lines.append(f"disk: {used}, {free / 1e9:.1f} GB free")
    lines.append("verdict: " + ("everything the table wants can be extracted" if ok else "problems above"))
    return lines, ok


if __name__ == "__main__":  # python -m rat7m.doctor: the command lives in rat7m/cli/doctor.py
    from rat7m.cli.entry import run_command

    sys.exit(run_command("doctor"))
