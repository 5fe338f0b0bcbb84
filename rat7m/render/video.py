"""Labelled videos: one recording and camera over a frame range, decoded straight from the chunks.

Each frame ``f`` of the range is decoded exactly (:func:`rat7m.video.read_frames`, frames found by
position, never by seeking), the ground truth of the motion-capture samples the camera's
``frame`` map puts on ``f`` is projected through the camera and drawn (bones by body part, white
joints), and, when given, the prediction of that frame (vermillion crosses, dashed bones). The
result is H.264 (PyAV's libx264, else OpenCV's writer), one output frame per input frame.

Synthetic frames carry their frame index as a barcode in a strip at the top: that strip is kept
as decoded, so the output video can itself be checked frame by frame.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import cv2
import numpy as np

from rat7m import barcode, catalogue
from rat7m.errors import BadInputError
from rat7m.fileio import remove_stale_temporaries, temporary_name
from rat7m.geometry import project
from rat7m.matfile import load_recording
from rat7m.video import ChunkIndex, read_frames

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


def draw_labels(image: np.ndarray, truth_2d: np.ndarray | None, predicted_2d: np.ndarray | None) -> None:
    """Draw ground truth (bones by part, white joints) and a prediction (crosses, dashed) on a BGR image, in place."""
    width = image.shape[1]
    thickness, radius = max(1, round(width / 250)), max(2, round(width / 150))

    def pixel(point: np.ndarray) -> tuple[int, int]:
        return tuple(int(v) for v in np.round(point * 16))  # 4 bits of sub-pixel precision

    def ok(point: np.ndarray) -> bool:
        return bool(np.isfinite(point).all() and (np.abs(point) < 10 * width).all())

    # the prediction first and thinner, so the ground truth stays visible where they overlap
    if predicted_2d is not None:
        colour, thin = _bgr(catalogue.PRED_COLOUR), max(1, thickness - 1)
        for a, b in catalogue.BONES:
            if ok(predicted_2d[a]) and ok(predicted_2d[b]):
                _dashed(image, predicted_2d[a], predicted_2d[b], colour, thin)
        for point in predicted_2d:
            if ok(point):
                x, y = (round(float(v)) for v in point)
                cv2.drawMarker(image, (x, y), colour, cv2.MARKER_TILTED_CROSS, 2 * radius + 1, thin, cv2.LINE_AA)
    if truth_2d is not None:
        for (a, b), colour in zip(catalogue.BONES, catalogue.BONE_COLOURS, strict=True):
            if ok(truth_2d[a]) and ok(truth_2d[b]):
                cv2.line(image, pixel(truth_2d[a]), pixel(truth_2d[b]), _bgr(colour), thickness, cv2.LINE_AA, 4)
        for point in truth_2d:
            if ok(point):
                cv2.circle(image, pixel(point), radius * 16, (255, 255, 255), -1, cv2.LINE_AA, 4)
                cv2.circle(image, pixel(point), radius * 16, (0, 0, 0), 1, cv2.LINE_AA, 4)


def _dashed(image: np.ndarray, a: np.ndarray, b: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
    length = float(np.linalg.norm(b - a))
    pieces = max(1, int(length // 6))
    for i in range(0, pieces, 2):
        p, q = a + (b - a) * i / pieces, a + (b - a) * min(i + 1, pieces) / pieces
        cv2.line(image, tuple(int(v) for v in np.round(p)), tuple(int(v) for v in np.round(q)), colour, thickness,
                 cv2.LINE_AA)  # fmt: skip


def ground_truth_by_frame(mat_path: str | os.PathLike, camera: str) -> dict[int, np.ndarray]:
    """``{video frame: (20, 2) px}`` of one camera: every mocap sample of a ``.mat`` file, projected.

    When several samples map to one frame, the last is kept.
    """
    rec = load_recording(mat_path)
    params = rec.cameras[camera]
    points = project(rec.mocap, params)
    return {int(f): points[i] for i, f in enumerate(np.asarray(params["frame"]).reshape(-1))}


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: int = DEFAULT_FPS,
                codec: str = "auto") -> int:  # fmt: skip
    """Encode BGR frames as an H.264 MP4 (PyAV libx264; OpenCV's writer as fallback), atomically.

    Returns:
        The number of frames written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, {path.name})  # what a killed run left
    tmp = temporary_name(path)
    try:
        use_pyav = codec in ("auto", "pyav")
        if use_pyav:
            try:
                import av
            except ImportError:
                if codec == "pyav":
                    raise BadInputError("--codec pyav needs PyAV: pip install av") from None
                use_pyav = False
        count = _write_pyav(av, frames, tmp, fps) if use_pyav else _write_opencv(frames, tmp, fps)
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


def _write_opencv(frames: Iterable[np.ndarray], tmp: Path, fps: int) -> int:
    writer, count = None, 0
    try:
        for image in frames:
            if writer is None:
                height, width = image.shape[:2]
                for fourcc in ("avc1", "mp4v"):  # H.264 where OpenCV's FFmpeg has an encoder for it
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
                    if writer.isOpened():
                        break
            writer.write(image)
            count += 1
    finally:
        if writer is not None:
            writer.release()
    return count


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
        BadInputError: empty range, missing ``.mat`` file or chunk.
    """
    if stop <= start or start < 0:
        raise BadInputError(f"frame range {start}..{stop} is empty; give --start < --stop")
    mat = Path(root) / catalogue.ANNOTATION_DIR / catalogue.mocap_file_name(recording)
    truth = ground_truth_by_frame(mat, camera)
    predictions = predictions or {}

    def labelled() -> Iterator[np.ndarray]:
        from tqdm import tqdm

        decoded = decode_range(Path(root) / catalogue.VIDEO_DIR, recording, camera, start, stop)
        for frame, image in tqdm(decoded, total=stop - start, unit="frame", disable=not progress):
            out_image = image.copy()
            draw_labels(out_image, truth.get(frame), predictions.get(frame))
            _caption(out_image, f"{recording.name} {camera} frame {frame}")
            strip = _barcode_strip(image)
            if strip:  # a synthetic frame: keep its barcode readable in the output
                out_image[:strip] = image[:strip]
            yield out_image

    return write_video(labelled(), out, fps, codec)


def _caption(image: np.ndarray, text: str) -> None:
    """Write ``text`` at the bottom left, white on a black box."""
    scale = max(0.35, image.shape[1] / 1400)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    y = image.shape[0] - base - 3
    cv2.rectangle(image, (0, y - h - 3), (w + 6, image.shape[0]), (0, 0, 0), -1)
    cv2.putText(image, text, (3, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _barcode_strip(image: np.ndarray) -> int:
    """Height of the barcode strip when ``image`` carries one (synthetic data), else 0."""
    try:
        barcode.read_barcode(image)
    except ValueError:
        return 0
    return barcode.barcode_height(image.shape[1])
