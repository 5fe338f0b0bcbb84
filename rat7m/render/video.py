"""Labelled videos: one recording and camera over a frame range, decoded straight from the chunks.

Each frame ``f`` of the range is decoded exactly (:func:`rat7m.video.read_frames`, frames found by
position, never by seeking), the ground truth of the motion-capture samples the camera's
``frame`` map puts on ``f`` is projected through the camera and drawn, and, when given, the
prediction of that frame. The colours and marks are those of every figure
(:func:`rat7m.plotting.draw_overlay_2d`): ground truth sky blue (filled circles, solid bones),
prediction vermillion (crosses, dashed bones). Sizes and strokes follow the frame size and every
mark has a dark outline, so a prediction stays visible after H.264 halves the colour resolution,
even at 192x152. A strip below the frame names the frame and the two colours (the legend). The
result is H.264 (PyAV's libx264, else OpenCV's writer), one output frame per input frame.

The range is checked against the chunks before anything is decoded: the last chunk's header says
how many frames it holds, so ``--stop 50000000`` is one line, not a list of fifty million offsets.
The video is written to a temporary name that keeps the ``.mp4`` suffix (OpenCV's writer picks the
container from it) and renamed when complete; leftovers of a killed run are removed by the next.

Synthetic frames carry their frame index as a barcode in a strip at the top: that strip is kept
as decoded, so the output video can itself be checked frame by frame.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from rat7m import barcode, catalogue, extras, pixels
from rat7m.errors import BadInputError
from rat7m.fileio import remove_stale_temporaries, temporary_name
from rat7m.geometry import project
from rat7m.matfile import load_recording
from rat7m.video import ChunkIndex, header_frame_count, read_frames

__all__ = [
    "DEFAULT_FPS",
    "OPENCV_FOURCCS",
    "check_range",
    "decode_range",
    "draw_labels",
    "ground_truth_by_frame",
    "legend_strip",
    "mark_sizes",
    "render_video",
    "write_video",
]

log = logging.getLogger(__name__)

#: Frame rate written into the MP4 (the rig's cameras run at 120 fps).
DEFAULT_FPS = 120


def _bgr(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    return (colour[2], colour[1], colour[0])


def decode_range(video_dir: str | os.PathLike, recording: catalogue.Recording, camera: str,
                 start: int, stop: int) -> Iterator[tuple[int, np.ndarray]]:  # fmt: skip
    """Yield ``(frame, BGR image)`` for frames ``start .. stop - 1`` of one camera, exactly, across chunks.

    Raises:
        BadInputError: no chunk holds a frame of the range.
        ChunkReadError: a chunk ends or breaks before a wanted frame.
    """
    index = ChunkIndex.from_dir(video_dir)
    check_range(index, video_dir, recording, camera, start, stop)
    frame = start
    while frame < stop:
        found = index.locate(recording, camera, frame)
        if found is None:
            raise BadInputError(f"no video chunk of {recording.name} {camera} holds frame {frame} in {video_dir}")
        chunk, offset = found
        following = index.next_start(chunk)
        last = stop if following is None else min(stop, following)
        for got, image in read_frames(chunk.path, range(offset, offset + last - frame)):
            yield chunk.start + got, image
        frame = last


def check_range(index: ChunkIndex, video_dir: str | os.PathLike, recording: catalogue.Recording, camera: str,
                start: int, stop: int) -> None:  # fmt: skip
    """Refuse a range the chunks cannot hold, by arithmetic on their starts and the last one's frame count.

    Raises:
        BadInputError: no chunk of this camera, ``start`` before the first chunk, or ``stop`` past the end
            of the last chunk (its header's frame count; :data:`rat7m.catalogue.CHUNK_LENGTH` if it has none).
    """
    chunks = index.chunks(recording, camera)
    if not chunks:
        raise BadInputError(f"no video chunk of {recording.name} {camera} in {video_dir}")
    if start < chunks[0].start:
        raise BadInputError(f"{recording.name} {camera} starts at frame {chunks[0].start} in {video_dir}; "
                            f"give --start >= {chunks[0].start}")  # fmt: skip
    last = chunks[-1]
    end = last.start + (max(0, header_frame_count(last.path) or 0) or catalogue.CHUNK_LENGTH)
    if stop > end:
        msg = (f"{recording.name} {camera} ends after frame {end - 1} (its last chunk {last.name} starts at "
               f"{last.start}); give --stop <= {end}")  # fmt: skip
        raise BadInputError(msg)


def mark_sizes(height: int, width: int) -> tuple[int, int]:
    """``(radius, stroke)`` in pixels of the marks on a ``width x height`` frame: from the frame's size,
    never below what survives H.264's halved colour resolution (a 1 px line of colour does not)."""
    side = min(height, width)
    return max(3, round(side / 100)), max(2, round(side / 350))


def draw_labels(image: np.ndarray, truth_2d: np.ndarray | None, predicted_2d: np.ndarray | None) -> None:
    """Draw ground truth (sky blue circles, solid bones) and a prediction (vermillion crosses, dashed
    bones) on a BGR image, in place; every mark over a dark outline."""
    height, width = image.shape[:2]
    radius, stroke = mark_sizes(height, width)
    outline = (0, 0, 0)

    def pixel(point: np.ndarray) -> tuple[int, int]:
        x, y = np.round(point * 16)  # 4 bits of sub-pixel precision
        return int(x), int(y)

    def ok(point: np.ndarray) -> bool:
        return bool(np.isfinite(point).all() and (np.abs(point) < 10 * max(width, height)).all())

    truth_colour, pred_colour = _bgr(catalogue.GT_COLOUR), _bgr(catalogue.PRED_COLOUR)
    # bones first (ground truth, then the prediction over it), joints last: no joint is hidden by a bone
    if truth_2d is not None:
        for a, b in catalogue.BONES:
            if ok(truth_2d[a]) and ok(truth_2d[b]):
                for colour, extra in ((outline, 2), (truth_colour, 0)):
                    cv2.line(image, pixel(truth_2d[a]), pixel(truth_2d[b]), colour, stroke + extra, cv2.LINE_AA, 4)
    if predicted_2d is not None:
        for a, b in catalogue.BONES:
            if ok(predicted_2d[a]) and ok(predicted_2d[b]):
                for colour, extra in ((outline, 2), (pred_colour, 0)):
                    _dashed(image, predicted_2d[a], predicted_2d[b], colour, stroke + extra, 3 * radius)
    if truth_2d is not None:
        for point in truth_2d:
            if ok(point):
                cv2.circle(image, pixel(point), radius * 16, truth_colour, -1, cv2.LINE_AA, 4)
                if radius > 3:  # on a small frame an outline would leave no colour inside
                    cv2.circle(image, pixel(point), radius * 16, outline, 1, cv2.LINE_AA, 4)
    if predicted_2d is not None:
        for point in predicted_2d:
            if ok(point):
                _cross(image, point, radius + 1, stroke, pred_colour, outline)


def _cross(image: np.ndarray, point: np.ndarray, half: int, stroke: int, colour: tuple[int, int, int],
           outline: tuple[int, int, int]) -> None:  # fmt: skip
    """A tilted cross of half-size ``half`` centred on ``point``, over a dark outline."""
    x, y = (round(float(v)) for v in point)
    for c, extra in ((outline, 1), (colour, 0)):
        cv2.drawMarker(image, (x, y), c, cv2.MARKER_TILTED_CROSS, 2 * half + 1, stroke + extra, cv2.LINE_AA)


def _dashed(image: np.ndarray, a: np.ndarray, b: np.ndarray, colour: tuple[int, int, int], thickness: int,
            dash: int = 6) -> None:  # fmt: skip
    length = float(np.linalg.norm(b - a))
    pieces = max(1, int(length // dash))
    for i in range(0, pieces, 2):
        p, q = a + (b - a) * i / pieces, a + (b - a) * min(i + 1, pieces) / pieces
        cv2.line(image, tuple(int(v) for v in np.round(p)), tuple(int(v) for v in np.round(q)), colour, thickness,
                 cv2.LINE_AA)  # fmt: skip


def ground_truth_by_frame(mat_path: str | os.PathLike, camera: str) -> dict[int, np.ndarray]:
    """``{video frame: (20, 2) 0-based px}`` of one camera: every mocap sample of a ``.mat`` file, projected.

    When several samples map to one frame, the last is kept.
    """
    rec = load_recording(mat_path)
    params = rec.cameras[camera]
    points = pixels.to_zero_based(project(rec.mocap, params), pixels.MATLAB)  # the cameras are MATLAB's
    return {int(f): points[i] for i, f in enumerate(np.asarray(params["frame"]).reshape(-1))}


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: int = DEFAULT_FPS,
                codec: str = "auto") -> int:  # fmt: skip
    """Encode BGR frames as an H.264 MP4 (PyAV libx264; OpenCV's writer as fallback), atomically.

    Returns:
        The number of frames written.

    Raises:
        BadInputError: ``--codec pyav`` without PyAV, OpenCV's writer cannot open the file, or no frame.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, {path.name})  # what a killed run left
    tmp = temporary_name(path, keep_suffix=True)  # OpenCV's writer picks the container from the extension
    try:
        av: ModuleType | None
        if codec == "pyav":
            av = extras.require("av", extra="render", feature="--codec pyav", package="av")
        elif codec == "auto":
            av = extras.optional("av")
            if av is None:
                log.info("PyAV is not installed; writing with OpenCV's video writer")
        else:
            av = None
        count = _write_pyav(av, frames, tmp, fps) if av is not None else _write_opencv(frames, tmp, fps)
        if not count:
            raise BadInputError(f"no frame to write to {path}")
        os.replace(tmp, path)
        return count
    finally:
        tmp.unlink(missing_ok=True)


def _write_pyav(av, frames: Iterable[np.ndarray], tmp: Path, fps: int) -> int:
    count = 0
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = None
        for image in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=fps, options={"crf": "18", "preset": "veryfast"})
                stream.height, stream.width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
                stream.pix_fmt = "yuv420p"
            image = np.ascontiguousarray(image[: stream.height, : stream.width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
            count += 1
        if stream is not None:
            container.mux(stream.encode())
    return count


#: FourCCs tried in turn by OpenCV's writer: H.264 where its FFmpeg has an encoder for it, else MPEG-4.
OPENCV_FOURCCS = ("avc1", "mp4v")


def _write_opencv(frames: Iterable[np.ndarray], tmp: Path, fps: int) -> int:
    """Write with OpenCV's writer, then read the file back: the writer reports no error (a full disk
    gives a short file and a silent success), so the frames the file holds are counted."""
    writer, count = None, 0
    try:
        for image in frames:
            if writer is None:
                writer = _open_opencv_writer(tmp, fps, image.shape[1], image.shape[0])
            writer.write(image)
            count += 1
    finally:
        if writer is not None:
            writer.release()
    if count:
        written = max(0, header_frame_count(tmp) or 0)
        if written != count:
            msg = (f"OpenCV's video writer put {written} of {count} frames into its file in {tmp.parent} (disk full?); "
                   "free some space or choose another --out")  # fmt: skip
            raise BadInputError(msg)
    return count


def _open_opencv_writer(tmp: Path, fps: int, width: int, height: int) -> cv2.VideoWriter:
    """The first of :data:`OPENCV_FOURCCS` OpenCV can write (its failed attempts are not printed)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # "could not open codec": we try the next
    try:
        for fourcc in OPENCV_FOURCCS:
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*fourcc), fps, (width, height))
            if writer.isOpened():
                log.debug("OpenCV writes %s with %s", tmp.name, fourcc)
                return writer
            writer.release()
    finally:
        cv2.utils.logging.setLogLevel(level)
    msg = (f"OpenCV's video writer cannot write {tmp.parent} (no {' or '.join(OPENCV_FOURCCS)} encoder in this "
           "OpenCV, or the folder is not writable); install PyAV (pip install av) for H.264")  # fmt: skip
    raise BadInputError(msg)


def render_video(root: str | os.PathLike, recording: catalogue.Recording, camera: str, start: int, stop: int,
                 out: str | os.PathLike, predictions: Mapping[int, np.ndarray] | None = None,
                 fps: int = DEFAULT_FPS, progress: bool = False, codec: str = "auto") -> int:  # fmt: skip
    """Write the labelled video of ``camera`` of ``recording``, frames ``start .. stop - 1``.

    Args:
        root: dataset root (``video_sequences/`` and ``annotations/mocap-*.mat``).
        predictions: optional ``{video frame: (20, 2) px}`` to draw too.
        progress: show a tqdm bar.

    Returns:
        Frames written (``stop - start``).

    Raises:
        BadInputError: empty range, a range the chunks do not hold, ``fps`` below 1, missing ``.mat``
            file or chunk.
    """
    if stop <= start or start < 0:
        raise BadInputError(f"frame range {start}..{stop} is empty; give 0 <= --start < --stop")
    if fps < 1:
        raise BadInputError(f"--fps {fps}: a frame rate is at least 1")
    video_dir = Path(root) / catalogue.VIDEO_DIR
    check_range(ChunkIndex.from_dir(video_dir), video_dir, recording, camera, start, stop)
    mat = Path(root) / catalogue.ANNOTATION_DIR / catalogue.mocap_file_name(recording)
    truth = ground_truth_by_frame(mat, camera)
    predictions = predictions or {}

    def labelled() -> Iterator[np.ndarray]:
        from tqdm import tqdm

        decoded = decode_range(video_dir, recording, camera, start, stop)
        for frame, image in tqdm(decoded, total=stop - start, unit="frame", disable=not progress):
            out_image = image.copy()
            draw_labels(out_image, truth.get(frame), predictions.get(frame))
            strip = _barcode_strip(image)
            if strip:  # a synthetic frame: keep its barcode readable in the output
                out_image[:strip] = image[:strip]
            yield legend_strip(out_image, f"{recording.name} {camera} frame {frame}", bool(predictions))

    return write_video(labelled(), out, fps, codec)


def legend_strip(image: np.ndarray, caption: str, prediction: bool = True) -> np.ndarray:
    """``image`` with a black strip below it: the caption, then what the ground-truth and prediction marks are.

    Items wrap onto a second row on a narrow frame; the strip's height is even, so the frame stays a
    size H.264 (4:2:0) takes.
    """
    height, width = image.shape[:2]
    radius, stroke = mark_sizes(height, width)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.3, width / 1400)
    (_, text_h), base = cv2.getTextSize("Ag", font, scale, 1)
    row_h = max(text_h + base + 6, 2 * radius + 8)
    mark = 2 * (radius + 1) + 1  # room for a circle or a cross
    items = [(None, caption), ("truth", "ground truth")] + ([("prediction", "prediction")] if prediction else [])
    placed, x, row = [], 4, 0
    for kind, words in items:
        size = cv2.getTextSize(words, font, scale, 1)[0][0] + (mark + 4 if kind else 0)
        if x > 4 and x + size > width - 4:
            x, row = 4, row + 1
        placed.append((kind, words, x, row))
        x += size + 3 * radius + 4
    strip_h = row_h * (row + 1)
    strip = np.zeros((strip_h + strip_h % 2, width, 3), dtype=np.uint8)
    for kind, words, x, row in placed:
        middle = row * row_h + row_h // 2
        if kind == "truth":
            cv2.circle(strip, (x + mark // 2, middle), radius, _bgr(catalogue.GT_COLOUR), -1, cv2.LINE_AA)
        elif kind == "prediction":
            _cross(strip, np.array([x + mark // 2, middle]), radius + 1, stroke, _bgr(catalogue.PRED_COLOUR),
                   (0, 0, 0))  # fmt: skip
        x += mark + 4 if kind else 0
        cv2.putText(strip, words, (x, middle + text_h // 2), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([image, strip])


def _barcode_strip(image: np.ndarray) -> int:
    """Height of the barcode strip when ``image`` carries one (synthetic data), else 0."""
    try:
        barcode.read_barcode(image)
    except ValueError:
        return 0
    return barcode.barcode_height(image.shape[1])
