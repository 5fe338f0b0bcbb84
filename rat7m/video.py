"""Video chunks: which file holds a frame, and decoding a chunk's wanted frames exactly.

RAT7M cuts each camera's video into MP4 chunks named ``s1-d1-camera1-3500.mp4``, where the number
is the recording-wide index of the chunk's first frame. Frame ``f`` lives in the chunk with the
largest start ``<= f``, at offset ``f - start``. The starts come from the file names and are sorted
as numbers (a string sort puts ``10500`` before ``3500`` and silently shifts frames); a chunk is
never assumed to be full.

Inside a chunk, a frame is found by its position in the decoder's output (presentation order),
never by seeking: seeking in H.264 with B-frames lands on key frames and is not frame-exact.
Frames before the wanted ones are only ``grab()``-ed (decoded, not converted to BGR), and decoding
stops after the last wanted frame.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rat7m import catalogue
from rat7m.catalogue import Recording
from rat7m.errors import BadInputError, Rat7mError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    """One MP4 chunk on disk: a camera's frames from ``start`` on."""

    recording: Recording
    camera: str
    start: int
    path: Path

    @property
    def name(self) -> str:
        """The chunk's file name, e.g. ``s1-d1-camera1-3500.mp4``."""
        return self.path.name


class ChunkIndex:
    """The chunks found under a video folder, by (recording name, camera), sorted by start as numbers."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        by_stream: dict[tuple[str, str], list[Chunk]] = {}
        for chunk in chunks:
            by_stream.setdefault((chunk.recording.name, chunk.camera), []).append(chunk)
        for stream in by_stream.values():
            stream.sort(key=lambda c: c.start)
        self._streams = by_stream
        self._starts = {key: [c.start for c in stream] for key, stream in by_stream.items()}

    @classmethod
    def from_dir(cls, video_dir: str | os.PathLike) -> ChunkIndex:
        """Index every chunk file in ``video_dir`` (other files are ignored; a missing folder is empty).

        Raises:
            BadInputError: two files claim the same recording, camera and start (e.g. ``-0350`` and ``-350``).
        """
        video_dir = Path(video_dir)
        chunks: list[Chunk] = []
        seen: dict[tuple[str, str, int], Path] = {}
        if video_dir.is_dir():
            for entry in os.scandir(video_dir):
                parsed = catalogue.parse_video_chunk_name(entry.name)
                if parsed is None or not entry.is_file():
                    continue
                key = (parsed.recording.name, parsed.camera, parsed.start)
                if key in seen:
                    msg = f"{entry.path} and {seen[key]} both claim to start at frame {parsed.start}; remove one"
                    raise BadInputError(msg)
                seen[key] = Path(entry.path)
                chunks.append(Chunk(parsed.recording, parsed.camera, parsed.start, Path(entry.path)))
        return cls(chunks)

    def chunks(self, recording: Recording, camera: str) -> list[Chunk]:
        """The chunks of one camera of one recording, sorted by start (empty if there are none)."""
        return list(self._streams.get((recording.name, camera), []))

    def locate(self, recording: Recording, camera: str, frame: int) -> tuple[Chunk, int] | None:
        """The chunk holding ``frame`` and the frame's offset in it; ``None`` if no chunk starts at or before it.

        The chunk is the one with the largest start ``<= frame``. Whether the chunk really is that
        long is only known by decoding it (:func:`read_frames` says so when it is not).
        """
        starts = self._starts.get((recording.name, camera))
        if not starts:
            return None
        i = bisect.bisect_right(starts, int(frame)) - 1
        if i < 0:
            return None
        chunk = self._streams[(recording.name, camera)][i]
        return chunk, int(frame) - chunk.start

    def next_start(self, chunk: Chunk) -> int | None:
        """Start of the chunk after ``chunk`` in its camera, or ``None`` if it is the last."""
        starts = self._starts[(chunk.recording.name, chunk.camera)]
        i = bisect.bisect_right(starts, chunk.start)
        return starts[i] if i < len(starts) else None


def quiet_decoder_logs() -> None:
    """Silence FFmpeg's and OpenCV's own messages about broken videos (callers report them precisely).

    Sets ``OPENCV_FFMPEG_LOGLEVEL`` and ``OPENCV_LOG_LEVEL`` unless already set, so that worker
    processes started afterwards inherit them; call it before the first video is opened.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        os.environ["OPENCV_LOG_LEVEL"] = "ERROR"
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class ChunkReadError(Rat7mError):
    """A chunk could not be opened, or ended before its last wanted frame.

    Attributes:
        reason: one line for the user, saying what happened.
        decoded: how many frames were decoded before the stop (offsets below it were delivered).
        at_end: the chunk ended where its header says it ends (it is complete but shorter than wanted).
    """

    def __init__(self, reason: str, decoded: int, at_end: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.decoded = decoded
        self.at_end = at_end


def open_capture(path: str | os.PathLike, threads: int | None = None) -> cv2.VideoCapture:
    """Open a video with OpenCV's FFmpeg backend.

    Args:
        path: the video file.
        threads: decoder threads; ``None`` keeps OpenCV's default (frame threads over all cores),
            ``1`` is best when one process per core decodes.

    Raises:
        ChunkReadError: the file is missing or is not a readable video (e.g. truncated before its index).
    """
    if not Path(path).is_file():
        raise ChunkReadError(f"chunk file {path} is missing", 0)
    params = [cv2.CAP_PROP_N_THREADS, int(threads)] if threads else []
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        raise ChunkReadError(f"cannot open {Path(path).name}: truncated, corrupt or not a video", 0)
    return capture


def read_frames(
    path: str | os.PathLike, offsets: Sequence[int], threads: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Decode a chunk from its start and yield its wanted frames, exactly, in order.

    Every frame up to the last wanted offset is decoded once (``grab()``); only wanted ones are
    converted to images (``retrieve()``); nothing after the last wanted offset is decoded.

    Args:
        path: the chunk file.
        offsets: wanted frame offsets in the chunk (0 = the chunk's first frame), sorted, unique.
        threads: decoder threads (see :func:`open_capture`).

    Yields:
        ``(offset, image)`` with ``image`` a (height, width, 3) uint8 BGR array, for each wanted offset.

    Raises:
        ChunkReadError: the chunk cannot be opened, or it ends (or breaks) before the last wanted
            offset; ``decoded`` says how many frames it gave, so offsets ``>= decoded`` were not yielded.
    """
    if not offsets:
        return
    capture = open_capture(path, threads)
    try:
        listed = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        position = 0
        for offset in offsets:
            while position < offset:
                if not capture.grab():
                    raise _ended(path, position, listed)
                position += 1
            if not capture.grab():
                raise _ended(path, position, listed)
            position += 1
            ok, image = capture.retrieve()
            if not ok or image is None:
                raise ChunkReadError(f"{Path(path).name}: frame {offset} decoded but could not be converted", offset)
            yield offset, image
    finally:
        capture.release()


def _ended(path: str | os.PathLike, decoded: int, listed: int) -> ChunkReadError:
    """The error for a chunk that stopped giving frames after ``decoded`` of them."""
    name = Path(path).name
    if decoded < listed:
        reason = f"{name} is truncated or corrupt: decoding stopped after {decoded} of its {listed} frames"
        return ChunkReadError(reason, decoded)
    return ChunkReadError(f"{name} ends after {decoded} frames", decoded, at_end=True)
