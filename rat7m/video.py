"""Video chunks: which file holds a frame, and decoding a chunk's wanted frames exactly.

RAT7M cuts each camera's video into MP4 chunks named ``s1-d1-camera1-3500.mp4``, where the number
is the recording-wide index of the chunk's first frame. Frame ``f`` lives in the chunk with the
largest start ``<= f``, at offset ``f - start``. The starts come from the file names and are sorted
as numbers (a string sort puts ``10500`` before ``3500`` and silently shifts frames); a chunk is
never assumed to be full.

Inside a chunk, a frame is found by its position in presentation order, never by seeking:
seeking in H.264 with B-frames lands on key frames and is not frame-exact. Two decoders do it:

- OpenCV (always there): frames are counted in the decoder's output; frames before the wanted
  ones are only ``grab()``-ed (decoded, not converted to BGR).
- PyAV (optional, ``pip install av``; used when installed): frame ``i`` of a chunk is the packet
  with the ``i``-th smallest pts among all the chunk's packets (read first by a demux pass, which
  decodes nothing), and decoded frames are identified by their pts, never counted. That allows
  skipping what OpenCV must decode: every packet whose pts is not wanted is sent with
  ``skip_frame = NONREF``, so the decoder drops unwanted non-reference frames (most B-frames)
  without decoding them. (Skipping NONREF for a whole file would also drop wanted B-frames.)
  A chunk the pts approach cannot vouch for (a packet without pts, duplicate pts, discarded
  packets, a packet count differing from the header's frame count, a decoded frame whose pts
  is no packet's, or any PyAV error) is handed to the OpenCV reader, for the frames not yet
  delivered, so faults are reported the same way by both. But when the packets are sound and the
  decoder never outputs a wanted frame (an open-GOP chunk's leading B-frames, which reference the
  previous chunk, are dropped), that frame and the later wanted ones are a fault: OpenCV counts the
  decoder's output, so it would shift every later frame by the dropped ones.

Which one decodes a chunk is decided per chunk (``auto``, :func:`choose_decoder`) from what the
stream is: PyAV's only advantage is skipping non-reference frames, and a stream without frame
reordering (no B-frames, like the rig's own ``x264 --preset ultrafast`` capture files) has none
to skip: every P-frame is a reference, so PyAV would decode every frame too, paying Python per
packet and frame, while OpenCV's ``grab()`` loop runs in C. Measured on 1328x1048 capture-encoded
chunks (bench/bench_extract.py): see README's Benchmarks.

Both stop decoding after the last wanted frame, and both convert YUV to BGR with FFmpeg's
swscale honouring the stream's colour tags: measured on the synthetic chunks and on untagged,
BT.709-tagged and full-range clips, their images are identical bit for bit
(opencv-python-headless 5.0, PyAV 18.1).
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rat7m import catalogue, extras, images
from rat7m.catalogue import Recording
from rat7m.errors import BadInputError, ChunkReadError

__all__ = [
    "DECODERS",
    "PROBE_PACKETS",
    "Chunk",
    "ChunkIndex",
    "ChunkReadError",
    "choose_decoder",
    "header_frame_count",
    "open_capture",
    "quiet_decoder_logs",
    "read_frames",
    "resolve_decoder",
]

log = logging.getLogger(__name__)

#: The decoders :func:`read_frames` knows; ``auto`` picks one per chunk (:func:`choose_decoder`).
DECODERS = ("auto", "opencv", "pyav")
#: The largest frame decoded, as for an image (4096 x 4096; RAT7M's cameras record 1328 x 1048): a stream declaring
#: more is refused before its first frame (a decoder keeps up to 16 reference frames of that size, per thread).
MAX_FRAME_PIXELS = images.MAX_IMAGE_PIXELS
#: Packets :func:`choose_decoder` reads to see whether a stream reorders frames (B-frames show in the first GOP).
PROBE_PACKETS = 32


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
            try:
                entries = list(os.scandir(video_dir))
            except OSError as exc:
                raise BadInputError(f"cannot list {video_dir}: {exc.strerror or exc}") from None
            for entry in entries:
                parsed = catalogue.parse_video_chunk_name(entry.name)
                if parsed is None or not _is_file(entry):
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


def _is_file(entry: os.DirEntry) -> bool:
    """Whether a folder entry is (or links to) a regular file; a symbolic link loop is not one."""
    try:
        return entry.is_file()
    except OSError:
        return False


def quiet_decoder_logs() -> None:
    """Silence FFmpeg's and OpenCV's own messages about broken videos (callers report them precisely).

    Sets ``OPENCV_FFMPEG_LOGLEVEL`` and ``OPENCV_LOG_LEVEL`` unless already set, so that worker
    processes started afterwards inherit them; call it before the first video is opened.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        os.environ["OPENCV_LOG_LEVEL"] = "ERROR"
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


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
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    try:
        check_frame_size(path, width, height)
    except ChunkReadError:
        capture.release()
        raise
    return capture


def check_frame_size(path: str | os.PathLike, width: int, height: int, offset: int = 0) -> None:
    """Refuse a stream (or frame) whose declared size is over :data:`MAX_FRAME_PIXELS`, before it is decoded."""
    if width * height > MAX_FRAME_PIXELS:
        msg = f"{Path(path).name}: frames of {width} x {height} px, over the {MAX_FRAME_PIXELS:,} px decoded"
        raise ChunkReadError(f"{msg}; not a RAT7M chunk (1328 x 1048)", offset)


def header_frame_count(path: str | os.PathLike) -> int | None:
    """Frames a video's container header lists (nothing decoded; 0 or less: it says nothing); None if it
    cannot be opened (missing, truncated before its index, not a video). Doctor, ``--check`` and render
    video read chunk lengths with it."""
    try:
        capture = open_capture(path, threads=1)
    except ChunkReadError:
        return None
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()


def resolve_decoder(requested: str = "auto") -> str:
    """The decoder to use: ``"pyav"`` or ``"opencv"``.

    Args:
        requested: one of :data:`DECODERS`; ``auto`` picks PyAV when ``import av`` works.

    Raises:
        BadInputError: an unknown name, or ``pyav`` asked for while PyAV is not installed.
    """
    if requested not in DECODERS:
        raise BadInputError(f"unknown decoder {requested!r}: expected one of {', '.join(DECODERS)}")
    if requested == "pyav":
        extras.require("av", extra="pyav", feature="the pyav decoder", package="av")
        return "pyav"
    if requested == "opencv" or extras.optional("av") is None:
        return "opencv"
    return "pyav"


#: How the PyAV readers open a chunk: FFmpeg's smallest probe, and no frame decoded to fill in the stream's
#: parameters (``avformat_find_stream_info`` otherwise decodes frames for that: 7.8 ms of a 1328x1048
#: capture-encoded chunk's open, 35 ms of a B-frame one, against 0.5 and 0.7 ms). What the container
#: states is all they need (frame reordering shows in the packets' pts in any case), and the decoder,
#: a context of its own, learns the rest from the frames it decodes.
_OPEN_QUICKLY: dict[str, Any] = {"options": {"probesize": "32", "analyzeduration": "0"},
                                 "stream_options": [{"skip_frame": "all"}]}


def _open_quickly(av: Any, path: str | os.PathLike) -> Any:
    """``av.open`` for reading with :data:`_OPEN_QUICKLY`, or without the stream option where PyAV refuses it
    (a plain ``ValueError``: a container that shows no streams before probing, such as MPEG-PS)."""
    try:
        return av.open(str(path), **_OPEN_QUICKLY)
    except av.FFmpegError:  # some are ValueErrors too (InvalidDataError): the file's own fault, raised as it is
        raise
    except ValueError:
        return av.open(str(path), options=_OPEN_QUICKLY["options"])


def choose_decoder(path: str | os.PathLike, requested: str = "auto") -> str:
    """The decoder for one chunk: ``"pyav"`` or ``"opencv"``.

    ``opencv`` and ``pyav`` are taken as asked. ``auto`` is PyAV only when it is installed and the
    stream reorders frames (B-frames: ``has_b_frames`` in the codec parameters, or a packet whose
    pts is below an earlier one among the first :data:`PROBE_PACKETS`): only then are there
    non-reference frames for it to skip. Otherwise OpenCV, which decodes the same frames faster
    (see the module docstring). A chunk PyAV cannot even open goes to OpenCV, which reports it.

    Raises:
        BadInputError: see :func:`resolve_decoder`.
    """
    decoder = resolve_decoder(requested)
    if requested != "auto" or decoder == "opencv":
        return decoder
    import av

    try:
        with _open_quickly(av, path) as container:
            if not container.streams.video:
                return "opencv"
            stream = container.streams.video[0]
            if stream.codec_context.has_b_frames:
                return "pyav"
            latest = None
            for count, packet in enumerate(container.demux(stream)):
                if packet.pts is None or count >= PROBE_PACKETS:
                    break
                if latest is not None and packet.pts < latest:
                    return "pyav"
                latest = packet.pts if latest is None else max(latest, packet.pts)
    except (av.FFmpegError, OSError):
        return "opencv"
    return "opencv"


def read_frames(
    path: str | os.PathLike, offsets: Sequence[int], threads: int | None = None, decoder: str = "auto"
) -> Iterator[tuple[int, np.ndarray]]:
    """Decode a chunk from its start and yield its wanted frames, exactly, in order.

    Nothing after the last wanted offset is decoded. With OpenCV every frame up to it is decoded
    once (``grab()``) and only wanted ones are converted (``retrieve()``); with PyAV unwanted
    non-reference frames are not even decoded (see the module's docstring).

    Args:
        path: the chunk file.
        offsets: wanted frame offsets in the chunk (0 = the chunk's first frame), sorted, unique.
        threads: decoder threads; ``None`` lets the decoder use all cores (frame threads), ``1``
            is best when one process per core decodes.
        decoder: ``auto`` (chosen for this chunk by :func:`choose_decoder`), ``opencv`` or ``pyav``.

    Yields:
        ``(offset, image)`` with ``image`` a (height, width, 3) uint8 BGR array, for each wanted offset.

    Raises:
        ChunkReadError: the chunk is missing or cannot be opened, or it ends (or breaks) before the
            last wanted offset; ``decoded`` says how many frames it gave, so offsets ``>= decoded``
            were not yielded. The same reasons whichever decoder is used.
        BadInputError: see :func:`resolve_decoder`.
    """
    offsets = list(offsets)
    if not offsets:
        return
    if choose_decoder(path, decoder) == "pyav":
        yield from _read_frames_pyav(path, offsets, threads)
    else:
        yield from _read_frames_opencv(path, offsets, threads)


def _read_frames_opencv(
    path: str | os.PathLike, offsets: Sequence[int], threads: int | None
) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`read_frames` with OpenCV: count the decoder's output, ``grab()`` all, ``retrieve()`` the wanted."""
    capture = open_capture(path, threads)
    position = delivered = 0
    try:
        listed = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
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
            delivered = offset + 1
    except (cv2.error, MemoryError) as exc:  # a stream that lied about its size, say: a chunk fault, not a crash
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        msg = f"{Path(path).name}: the decoder failed at frame {max(position - 1, 0)} ({reason})"
        raise ChunkReadError(msg, delivered) from None
    finally:
        capture.release()


def _read_frames_pyav(
    path: str | os.PathLike, offsets: Sequence[int], threads: int | None
) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`read_frames` with PyAV: frames identified by pts rank, unwanted non-reference frames skipped.

    Whatever this path cannot vouch for goes to :func:`_read_frames_opencv`, for the offsets not
    yet yielded (logged at debug level), so a fault is reported exactly as OpenCV reports it.
    """
    import av

    name = Path(path).name
    if not Path(path).is_file():
        raise ChunkReadError(f"chunk file {path} is missing", 0)
    pts, why = _presentation_pts(av, path)
    delivered = 0
    if pts is not None:
        inside = [offset for offset in offsets if offset < len(pts)]
        delivered, why = yield from _decode_by_pts(av, path, pts, inside, threads)
        if not why and len(inside) < len(offsets):
            # the header's frame count and the packets agree (checked): the chunk is complete but short
            raise ChunkReadError(f"{name} ends after {len(pts)} frames", len(pts), at_end=True)
    if why:
        log.debug("%s: PyAV cannot vouch for the frame order (%s); decoding it with OpenCV", name, why)
        yield from _read_frames_opencv(path, offsets[delivered:], threads)


def _presentation_pts(av: Any, path: str | os.PathLike) -> tuple[list[int] | None, str]:
    """The pts of every packet of the chunk's video stream, sorted (frame ``i`` has the ``i``-th), or why not.

    Only demuxes (reads packets, decodes nothing). Returns ``(None, reason)`` when the pts cannot
    be trusted to number the frames the way the OpenCV reader counts them.
    """
    pts: list[int] = []
    try:
        with _open_quickly(av, path) as container:
            if not container.streams.video:
                return None, "no video stream"
            stream = container.streams.video[0]
            listed = stream.frames
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream marker, not a frame
                if not pts and not packet.is_keyframe:
                    return None, "the first packet is not a key frame"
                if packet.pts is None:
                    return None, f"packet {len(pts)} has no pts"
                if packet.is_discard:
                    return None, f"packet {len(pts)} is marked to be discarded (edit list)"
                pts.append(packet.pts)
    except av.FFmpegError as exc:
        return None, f"PyAV cannot read it: {exc}"
    if not pts or len(pts) != listed:
        return None, f"{len(pts)} packets while the header lists {listed} frames"
    if len(set(pts)) != len(pts):
        return None, "two packets share a pts"
    return sorted(pts), ""


def _decode_by_pts(
    av: Any, path: str | os.PathLike, pts: Sequence[int], offsets: Sequence[int], threads: int | None
) -> Generator[tuple[int, np.ndarray], None, tuple[int, str]]:
    """Yield the frames at ``offsets`` (all inside the chunk), identified by ``pts[offset]``.

    Returns:
        ``(delivered, why)``: how many offsets were yielded, and ``""`` if all were, else why not
        (a reason to let OpenCV decode the rest).

    Raises:
        ChunkReadError: the decoder never outputs a wanted frame (see :func:`_dropped`).
    """
    if not offsets:
        return 0, ""
    wanted = {pts[offset]: offset for offset in offsets}
    known = set(pts)
    delivered = outputs = 0
    convert = {"format": "bgr24", "threads": 1 if threads == 1 else 0}
    try:
        with _open_quickly(av, path) as container:
            stream = container.streams.video[0]
            check_frame_size(path, stream.codec_context.width, stream.codec_context.height)
            if threads == 1:
                stream.thread_type, stream.thread_count = "NONE", 1
            else:
                stream.thread_type, stream.thread_count = "AUTO", threads or 0
            codec = stream.codec_context
            for packet in container.demux(stream):  # ends with an empty packet: flushes the decoder
                codec.skip_frame = "DEFAULT" if packet.pts in wanted else "NONREF"
                for frame in codec.decode(packet):
                    outputs += 1
                    if frame.pts not in known:
                        return delivered, f"the decoder gave a frame with pts {frame.pts}, not a packet's"
                    offset = wanted.pop(frame.pts, None)
                    if offset is None:
                        continue
                    if offset != offsets[delivered]:
                        raise _dropped(path, pts, offsets[delivered], f"but gives frame {offset}")
                    check_frame_size(path, frame.width, frame.height, offset)  # the size may change mid-stream
                    yield offset, frame.to_ndarray(**convert)
                    delivered += 1
                if delivered == len(offsets):
                    name, last = Path(path).name, offsets[-1]
                    log.debug(
                        "%s: decoder output %d frames up to frame %d; the others were skipped", name, outputs, last
                    )
                    return delivered, ""
    except av.FFmpegError as exc:
        return delivered, f"PyAV failed: {exc}"
    raise _dropped(path, pts, offsets[delivered], "up to the chunk's end")


def _dropped(path: str | os.PathLike, pts: Sequence[int], offset: int, context: str) -> ChunkReadError:
    """The error for a frame whose packet is sound but which the decoder never outputs.

    Typically an open-GOP chunk's leading B-frames, which reference the previous chunk. Counting
    the decoder's output, as the OpenCV reader does, would shift every later frame by the dropped
    ones, so this is a fault for the offsets from ``offset`` on, never a hand-over to OpenCV.
    """
    reason = (
        f"{Path(path).name}: the decoder gives no picture for frame {offset} (pts {pts[offset]}; undecodable, e.g. "
        f"an open-GOP chunk's leading frame) {context}; frames from {offset} on are not extracted, to never "
        "write a wrong frame"
    )
    return ChunkReadError(reason, offset)


def _ended(path: str | os.PathLike, decoded: int, listed: int) -> ChunkReadError:
    """The error for a chunk that stopped giving frames after ``decoded`` of them."""
    name = Path(path).name
    if decoded < listed:
        reason = f"{name} is truncated or corrupt: decoding stopped after {decoded} of its {listed} frames"
        return ChunkReadError(reason, decoded)
    return ChunkReadError(f"{name} ends after {decoded} frames", decoded, at_end=True)
