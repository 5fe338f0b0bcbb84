"""Decoding images from elsewhere: their header checked before any pixel is decoded, errors that name them.

The JPEGs a loader reads come from an extraction, a shard someone shared or a downloaded mini-RAT7M
folder: bytes to distrust like any other. A JPEG's header declares its size, and a decoder allocates
that much before it reads a pixel: 600 bytes declaring 60000 x 60000 px made simplejpeg allocate
10.8 GB and work 35 s before it failed (OpenCV's own bound, 2**30 px, still lets one image take 3 GB).
So the header is read first (simplejpeg: ~1.5 us; PIL for any format: ~25 us, next to a decode of
~5 ms) and an image over :data:`MAX_IMAGE_PIXELS` is refused. A file larger than
:data:`MAX_IMAGE_BYTES` is refused before it is read.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Callable

import cv2
import numpy as np

from rat7m.errors import BadInputError

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "check_image_size",
    "decode_jpeg",
    "read_image",
    "read_image_bytes",
]

#: The most pixels an image may declare: PIL's own decompression-bomb bound (``Image.MAX_IMAGE_PIXELS``,
#: 268 MB as RGB). A RAT7M frame has 1328 x 1048 = 1.4 Mpx.
MAX_IMAGE_PIXELS = 89_478_485
#: The largest image file read (a RAT7M frame's JPEG is ~0.1-1.6 MB).
MAX_IMAGE_BYTES = 64 * 1024 * 1024


def check_image_size(width: int, height: int, where: str) -> None:
    """Refuse an image whose header declares no pixels, or more than :data:`MAX_IMAGE_PIXELS`."""
    if width <= 0 or height <= 0 or width * height > MAX_IMAGE_PIXELS:
        raise BadInputError(
            f"{where}: the image declares {width} x {height} px (at most {MAX_IMAGE_PIXELS:,} px are decoded: "
            "a decoder would allocate that much first); replace the file"
        )


def _decode_simplejpeg(data: bytes, where: str) -> np.ndarray:
    import simplejpeg

    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        raise BadInputError(f"{where}: not a JPEG ({exc})") from None
    check_image_size(width, height, where)
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError as exc:  # strict: libjpeg's warnings (a truncated or corrupt scan) are errors too
        raise BadInputError(f"{where}: corrupt JPEG ({exc})") from None


def _decode_opencv(data: bytes, where: str) -> np.ndarray:
    image = cv2.imdecode(_checked_buffer(data, where), cv2.IMREAD_COLOR)
    if image is None:  # not an image OpenCV can read; cvtColor would fail with "!_src.empty()"
        raise BadInputError(f"{where}: cannot decode the image ({len(data)} bytes)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _checked_buffer(data: bytes, where: str) -> np.ndarray:
    """The bytes as a buffer for cv2.imdecode, once their header (read by PIL, any format) is within bounds."""
    from PIL import Image, UnidentifiedImageError

    try:
        # PIL's own bomb warning would print above its bound: ours is checked next (a filter only for it)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:  # reads the header only
                width, height = image.size
    except Image.DecompressionBombError:
        raise BadInputError(f"{where}: the image declares over {MAX_IMAGE_PIXELS:,} px; replace the file") from None
    except UnidentifiedImageError:
        raise BadInputError(f"{where}: not an image ({len(data)} bytes)") from None
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's own: truncated header, bad fields
        raise BadInputError(f"{where}: not a readable image ({exc})") from None
    check_image_size(width, height, where)
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
    """An image file's bytes, refused if it is not a regular file or is over :data:`MAX_IMAGE_BYTES`.

    Raises:
        BadInputError: naming the file (missing, unreadable, not a regular file, too large).
    """
    where = str(path)
    try:  # non-blocking: a FIFO planted under an image's name must not hang the reader
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb", buffering=0) as f:
            status = os.fstat(f.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise BadInputError(f"{where}: not a regular file")
            if status.st_size > MAX_IMAGE_BYTES:
                too_big = f"{status.st_size:,} bytes, more than an image may have ({MAX_IMAGE_BYTES:,})"
                raise BadInputError(f"{where}: {too_big}")
            # its size exactly, in one read: a buffered read of the bound allocated 64 MB a call (2x the time)
            return f.read(status.st_size)
    except OSError as exc:
        raise BadInputError(f"{where}: missing or unreadable image ({exc.strerror or exc})") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file (any format OpenCV reads) as an ``(H, W, 3)`` uint8 RGB array, decoded by OpenCV.

    Raises:
        BadInputError: naming the file: missing, unreadable, over :data:`MAX_IMAGE_BYTES` or
            :data:`MAX_IMAGE_PIXELS`, or not an image.
    """
    return _decode_opencv(read_image_bytes(path), str(path))
