"""Decoding images from elsewhere: their header checked before any pixel is decoded, errors that name them.

The JPEGs a loader reads come from an extraction, a shard someone shared or a downloaded mini-RAT7M
folder: bytes to distrust like any other. A JPEG's header declares its size, and a decoder allocates
that much before it reads a pixel: 600 bytes declaring 60000 x 60000 px made simplejpeg allocate
10.8 GB and work 35 s before it failed (OpenCV's own bound, 2**30 px, still lets one image take 3 GB;
a progressive 9400 x 9400 px JPEG of 1 MB took 800 MB to decode). So the header is read first
(simplejpeg: ~1.5 us; Pillow, JPEG and PNG only: ~25 us; next to a decode of ~5 ms) and an image over
:data:`MAX_IMAGE_PIXELS` is refused; a file over :data:`MAX_IMAGE_BYTES`, or that is not a regular
file (a FIFO would block the reader), is not read.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import cv2
import numpy as np

from rat7m.errors import BadInputError
from rat7m.fileio import read_input

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "check_image_size",
    "decode_jpeg",
    "read_image",
    "read_image_bytes",
]

#: The most pixels an image (or a video frame, :mod:`rat7m.video`) may declare: 4096 x 4096. A RAT7M frame has
#: 1328 x 1048 = 1.4 Mpx; this bounds one decoded image to 50 MB as RGB.
MAX_IMAGE_PIXELS = 4096 * 4096
#: The largest image file read (a RAT7M frame's JPEG is ~0.1-1.6 MB).
MAX_IMAGE_BYTES = 64 * 1024 * 1024
#: The formats :func:`read_image` reads: what an extraction writes, and PNG.
IMAGE_FORMATS = ("JPEG", "PNG")


def check_image_size(width: int, height: int, where: str) -> None:
    """Refuse an image whose header declares no pixels, or more than :data:`MAX_IMAGE_PIXELS`."""
    if width <= 0 or height <= 0 or width * height > MAX_IMAGE_PIXELS:
        raise BadInputError(
            f"{where}: the image declares {width} x {height} px (at most {MAX_IMAGE_PIXELS:,} px are decoded: "
            "a decoder would allocate that much first); replace the file"
        )


#: The most scans a progressive JPEG may have (libjpeg-turbo's suggested limit; a camera's JPEG has ~10): each scan
#: is a pass over the whole image, and 20000 of them in 419 KB took 6 s to decode.
MAX_SCANS = 500
#: Start-of-frame markers of progressive JPEGs (SOF2, SOF6, SOF10, SOF14); a baseline JPEG has one scan.
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})


def check_scans(data: bytes, where: str) -> None:
    """Refuse a JPEG of more than :data:`MAX_SCANS` scans.

    Its header segments are walked to the first scan (a few microseconds): a sequential frame whose first scan
    holds all its components is one scan (every camera's JPEG), and needs no more. Anything else (progressive,
    a first scan of fewer components, which libjpeg follows with any number more, or a header the walk does not
    follow as libjpeg would) has its scans counted.
    """
    at, components = 2, None
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # a fill byte before a marker
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: markers of no length
            at += 2
            continue
        if marker == 0x00 or marker in _PROGRESSIVE:
            break  # a stray byte libjpeg skips (the walk would misread what follows), or progressive: count
        if marker == 0xDA:  # the first scan: one scan of all the frame's components is the whole image
            if components is not None and at + 5 <= len(data) and data[at + 4] == components:
                return
            break
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and at + 10 <= len(data):
            components = data[at + 9]  # a sequential frame header: its number of components
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    # 0xFF in entropy-coded data is followed by 0: every 0xFF 0xDA is a scan header
    if data.count(b"\xff\xda", at) > MAX_SCANS:  # from where the walk stopped: not in the segments it passed
        raise BadInputError(f"{where}: a JPEG of over {MAX_SCANS} scans; replace the file")


def _decode_simplejpeg(data: bytes, where: str) -> np.ndarray:
    import simplejpeg

    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        raise BadInputError(f"{where}: not a JPEG ({exc})") from None
    check_image_size(width, height, where)
    check_scans(data, where)
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError as exc:  # strict: libjpeg's warnings (a truncated or corrupt scan) are errors too
        raise BadInputError(f"{where}: corrupt JPEG ({exc})") from None


def _decode_opencv(data: bytes, where: str) -> np.ndarray:
    buffer = _checked_buffer(data, where)
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # OpenCV's own checks (a side over its limit, ...): the file's fault
        raise BadInputError(f"{where}: cannot decode the image ({str(exc).strip().splitlines()[-1]})") from None
    if image is None:  # not an image OpenCV can read; cvtColor would fail with "!_src.empty()"
        raise BadInputError(f"{where}: not a JPEG or PNG image OpenCV can decode ({len(data)} bytes)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _checked_buffer(data: bytes, where: str) -> np.ndarray:
    """The bytes as a buffer for cv2.imdecode, once their header (read by Pillow, JPEG or PNG) is within bounds.

    Only those two formats' readers see the bytes (Pillow's others raised NotImplementedError, AttributeError ...
    on damaged files); anything Pillow raises while reading a header is this file's fault.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:  # reads the header only
            width, height = image.size
    except Exception as exc:  # Pillow's format readers raise many kinds on damaged bytes
        if isinstance(exc, Image.DecompressionBombError):
            raise BadInputError(f"{where}: the image declares over {MAX_IMAGE_PIXELS:,} px; replace the file") from None
        detail = f"{len(data)} bytes" if isinstance(exc, UnidentifiedImageError) else f"{type(exc).__name__}: {exc}"
        raise BadInputError(f"{where}: not a JPEG or PNG image ({detail})") from None
    check_image_size(width, height, where)
    if data[:2] == b"\xff\xd8":
        check_scans(data, where)
    return np.frombuffer(data, np.uint8)


def _decoder() -> Callable[[bytes, str], np.ndarray]:
    """The fastest JPEG decoder installed: simplejpeg (fastest in bench/bench_dataset.py), else OpenCV."""
    try:
        import simplejpeg  # noqa: F401
    except ImportError:
        return _decode_opencv
    return _decode_simplejpeg


_DECODE = _decoder()


def decode_jpeg(data: bytes, where: str = "a view's JPEG") -> np.ndarray:
    """JPEG bytes as an ``(H, W, 3)`` uint8 RGB array, with the fastest decoder installed.

    Raises:
        BadInputError: naming ``where``: not a JPEG, over :data:`MAX_IMAGE_PIXELS`, or corrupt.
    """
    return _DECODE(data, where)


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """An image file's bytes (:func:`rat7m.fileio.read_input`: a regular file, opened without blocking, at most
    :data:`MAX_IMAGE_BYTES`).

    Raises:
        BadInputError: naming the file (missing, unreadable, not a regular file, too large).
    """
    return read_input(path, "image", max_bytes=MAX_IMAGE_BYTES)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file (JPEG or PNG) as an ``(H, W, 3)`` uint8 RGB array, decoded by OpenCV.

    Raises:
        BadInputError: naming the file: missing, unreadable, over :data:`MAX_IMAGE_BYTES` or
            :data:`MAX_IMAGE_PIXELS`, or not a JPEG or PNG image.
    """
    return _decode_opencv(read_image_bytes(path), str(path))
