"""Consistency checks a user runs on an annotation table (ours or the official pickle).

Each check says what it compared and how far off things are, so a table can be trusted (or not)
before hours of frame extraction and training:

- pixel convention: whether the 2D columns are MATLAB's 1-based pixels (the cameras' own) or
  0-based ones, detected from the table (:meth:`rat7m.model.Table.detect_pixel_convention`); neither fails;
- reprojection: ``3D_keypoints`` projected through the table's own cameras against
  ``2D_keypoints`` in the table's convention (max and median pixel error per camera);
- frames in video: every ``frame_idx`` falls inside a video chunk on disk (when
  ``<root>/video_sequences`` exists);
- image paths: every ``image_path`` is ``catalogue.image_path(recording, camera, frame_idx)``;
- split: whether ``train_test`` is the official split (information only).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rat7m import catalogue, pixels
from rat7m.geometry import project
from rat7m.model import Table
from rat7m.video import ChunkIndex, header_frame_count

__all__ = [
    "DEFAULT_TOLERANCE_PX",
    "CheckResult",
    "check_frames_in_video",
    "check_image_paths",
    "check_pixel_convention",
    "check_reprojection",
    "check_split",
    "check_table",
]

#: Largest reprojection error (px) the reprojection check accepts: far above float64 round-off,
#: far below anything a wrong camera model or a swapped camera would give.
DEFAULT_TOLERANCE_PX = 0.01


@dataclass
class CheckResult:
    """The outcome of one check: ``ok`` is None when it could not run (e.g. no videos).

    ``scope`` qualifies the status when only part of the table could be checked (e.g. "for 6 of 18
    recording-cameras; ..."), so a partial pass cannot be mistaken for a full one.
    """

    name: str
    ok: bool | None
    lines: list[str] = field(default_factory=list)
    scope: str = ""

    def format(self) -> str:
        """The check's report: a status line, then its details indented."""
        status = {True: "OK", False: "FAILED", None: "skipped"}[self.ok]
        if self.scope:
            status += f" {self.scope}"
        return "\n".join([f"{self.name}: {status}", *(f"  {line}" for line in self.lines)])


def check_pixel_convention(found: pixels.Detection) -> CheckResult:
    """Name the pixel convention the table's detection found; neither MATLAB's nor 0-based fails."""
    ok = None if found.n_points == 0 else found.convention is not None
    return CheckResult("pixel convention", ok, [found.describe().removeprefix("pixel convention: ")])


def check_reprojection(
    table: Mapping, tolerance: float = DEFAULT_TOLERANCE_PX, convention: str = pixels.MATLAB
) -> CheckResult:
    """Project ``3D_keypoints`` through each row's cameras and compare with ``2D_keypoints``.

    The projections (MATLAB's 1-based pixels) are moved into the table's ``convention`` first. A
    point counts when both its 3D and 2D values are finite; a point finite in one and not the
    other is a mismatch and fails the check, as does any error above ``tolerance`` px.
    """
    table = Table.of(table)
    columns = table.columns
    points_3d = np.asarray(columns["3D_keypoints"], dtype=np.float64)
    result = CheckResult("reprojection of 3D_keypoints vs 2D_keypoints (px)", True)
    recordings = [(rec, rows, table.cameras(rec)) for rec, rows in table.recordings()]
    for cam in table.camera_names:
        stored = np.asarray(columns["2D_keypoints"][cam], dtype=np.float64)
        errors, mismatched = [], 0
        for _, rows, cameras in recordings:
            projected = project(points_3d[rows], cameras[cam].in_convention(convention))
            finite_p = np.isfinite(projected).all(axis=-1)
            finite_s = np.isfinite(stored[rows]).all(axis=-1)
            mismatched += int(np.count_nonzero(finite_p != finite_s))
            both = finite_p & finite_s
            errors.append(np.linalg.norm(projected[both] - stored[rows][both], axis=-1))
        error = np.concatenate(errors) if errors else np.zeros(0)
        if len(error):
            worst, median = float(error.max()), float(np.median(error))
            line = f"{cam}: max {worst:.3g}  median {median:.3g}  over {len(error)} points"
        else:
            worst, line = 0.0, f"{cam}: no finite points"
        if mismatched:
            line += f"; {mismatched} points finite in one of 3D/2D but not the other"
        result.lines.append(line)
        if worst > tolerance or mismatched:
            result.ok = False
    result.lines.append(f"tolerance {tolerance:g} px")
    return result


def check_image_paths(table: Mapping) -> CheckResult:
    """Check that every ``image_path`` is ``catalogue.image_path(recording, camera, frame_idx)``."""
    table = Table.of(table)
    columns = table.columns
    result = CheckResult("image_path follows images_unpacked/sS-dD/cameraN/frame_XXXXXX.jpg", True)
    recordings = table.recordings()
    for cam in table.camera_names:
        paths = np.asarray(columns["image_path"][cam]).astype(str)
        frames = np.asarray(columns["frame_idx"][cam]).astype(np.int64)
        bad, first = 0, None
        for rec, rows in recordings:
            expected = np.array(catalogue.image_paths(rec, cam, frames[rows]))
            wrong = np.flatnonzero(paths[rows] != expected)
            bad += len(wrong)
            if len(wrong) and first is None:
                row = rows[wrong[0]]
                first = f"row {row}: {str(paths[row])!r}, expected {str(expected[wrong[0]])!r}"
        if bad:
            result.ok = False
            result.lines.append(f"{cam}: {bad} of {len(paths)} paths differ (first: {first})")
    if result.ok:
        result.lines.append(f"all {table.n_samples} rows x {len(table.camera_names)} cameras")
    return result


def check_frames_in_video(table: Mapping, video_dir: str | os.PathLike) -> CheckResult:
    """Check that every ``frame_idx`` falls inside a video chunk of ``video_dir``.

    Frame ``f`` lives in the chunk with the largest start <= ``f``, at offset ``f - start``; the
    offset must be below the chunk's length: the gap to the next chunk's start (at most
    ``CHUNK_LENGTH``), and for a camera's last chunk the frame count its container reports
    (approximate: OpenCV reads it from the MP4 header, it does not decode). Recordings and cameras
    with no chunk at all are listed as not checked (a partial download), not as failures.
    """
    video_dir = Path(video_dir)
    result = CheckResult(f"frame_idx inside the video chunks of {video_dir}", True)
    index = ChunkIndex.from_dir(video_dir)
    table = Table.of(table)
    columns = table.columns
    checked, not_checked = 0, []
    recordings = table.recordings()
    for rec, rows in recordings:
        for cam in table.camera_names:
            chunks = index.chunks(rec, cam)
            if not chunks:
                not_checked.append(f"{rec.name} {cam}")
                continue
            frames = np.asarray(columns["frame_idx"][cam]).astype(np.int64)[rows]
            starts = np.array([chunk.start for chunk in chunks], dtype=np.int64)
            last_count = header_frame_count(chunks[-1].path)
            if last_count is None or last_count <= 0:
                result.ok = False
                result.lines.append(f"{rec.name} {cam}: cannot read the frame count of {chunks[-1].name}")
                continue
            lengths = np.minimum(np.diff(starts), catalogue.CHUNK_LENGTH)
            lengths = np.append(lengths, last_count)
            pos = np.searchsorted(starts, frames, side="right") - 1
            inside = pos >= 0
            inside[inside] = frames[inside] - starts[pos[inside]] < lengths[pos[inside]]
            checked += len(frames)
            outside = np.flatnonzero(~inside)
            if len(outside):
                result.ok = False
                example = int(frames[outside[0]])
                span = f"chunks start at {', '.join(map(str, starts[:5]))}{' ...' if len(starts) > 5 else ''}"
                result.lines.append(
                    f"{rec.name} {cam}: {len(outside)} of {len(frames)} frames outside every chunk "
                    f"(first: frame {example}; {span}; last chunk has ~{last_count} frames)"
                )
    if not_checked:
        result.lines.append(f"no chunks on disk (not checked): {', '.join(not_checked)}")
        total = len(recordings) * len(table.camera_names)
        if len(not_checked) < total:
            result.scope = (
                f"for {total - len(not_checked)} of {total} recording-cameras; "
                f"{len(not_checked)} not checked (no chunks on disk)"
            )
        if not checked:
            result.ok = None
    if checked and result.ok:
        result.lines.append(f"{checked} frame indices checked (last-chunk lengths from the MP4 header: approximate)")
    return result


def check_split(table: Mapping) -> CheckResult:
    """Say whether ``train_test`` is the official split; information only, it never fails."""
    table = Table.of(table)
    result = CheckResult("split", True)
    differs = []
    split = table.split_of()  # the column as text once, not per recording
    for rec, rows in table.recordings():
        values = sorted(set(np.unique(split[rows]).tolist()))
        if values != [rec.split]:
            differs.append(f"{rec.name}: {'/'.join(values)} (official: {rec.split})")
    result.lines.append("differs from the official split: " + "; ".join(differs) if differs else "the official split")
    return result


def check_table(
    table: Mapping, root: str | os.PathLike | None = None, tolerance: float = DEFAULT_TOLERANCE_PX
) -> list[CheckResult]:
    """Run every check on a validated table (see :func:`rat7m.table.load_annotation`).

    Args:
        table: the table dict.
        root: dataset root; its ``video_sequences`` folder, if there, is used to check frames.
        tolerance: largest accepted reprojection error, px.

    Returns:
        One :class:`CheckResult` per check; the table passes when none has ``ok`` False.
    """
    found = Table.of(table).detect_pixel_convention()
    results = [
        check_pixel_convention(found),
        check_reprojection(table, tolerance, found.convention or pixels.MATLAB),
        check_image_paths(table),
    ]
    video_dir = Path(root) / catalogue.VIDEO_DIR if root is not None else None
    if video_dir is not None and video_dir.is_dir():
        results.append(check_frames_in_video(table, video_dir))
    else:
        where = video_dir if video_dir is not None else f"<root>/{catalogue.VIDEO_DIR}"
        line = f"{where} not found; pass --root DIR (the dataset root holding {catalogue.VIDEO_DIR}/) to check frames"
        results.append(CheckResult("frame_idx inside the video chunks", None, [line]))
    results.append(check_split(table))
    return results
