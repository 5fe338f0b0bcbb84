"""Crafted files for the hostile-input tests: MATLAB v5 elements by hand, and a JPEG that lies about its size.

Shared by the tests of several readers (the RAT7M ``.mat`` files and DANNCE's predictions; the JPEG readers of
extraction, shards and datasets), so each crafted file is built one way.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np


def element(kind: int, data: bytes) -> bytes:
    """A MATLAB v5 data element: its tag (type, size), its data, padding to 8 bytes."""
    return struct.pack("<II", kind, len(data)) + data + bytes(-len(data) % 8)


def matrix(mclass: int, dims: tuple[int, ...], body: bytes, name: bytes = b"") -> bytes:
    """A miMATRIX: flags (class), dims, name, then ``body`` (its data, or a struct's fields, or a cell's elements)."""
    head = element(6, struct.pack("<II", mclass, 0)) + element(5, struct.pack(f"<{len(dims)}i", *dims))
    return element(14, head + element(1, name) + body)


def mat_struct(fields: dict[str, bytes], dims: tuple[int, ...] = (1, 1), name: bytes = b"") -> bytes:
    names = b"".join(f.encode().ljust(32, b"\0") for f in fields)
    return matrix(2, dims, element(5, struct.pack("<i", 32)) + element(1, names) + b"".join(fields.values()), name)


def mat_double(values: list[float]) -> bytes:
    return matrix(6, (1, len(values)), element(9, struct.pack(f"<{len(values)}d", *values)))


def mat_file(path: Path, *variables: bytes, compressed: bool = True) -> None:
    """A MATLAB v5 file of ``variables`` (each zlib-compressed, as MATLAB's -v7 writes them, unless not)."""
    text = b"MATLAB 5.0 MAT-file, hostile".ljust(116, b" ") + bytes(8) + struct.pack("<H", 0x0100) + b"IM"
    body = [struct.pack("<II", 15, len(z)) + z if compressed else v for v in variables
            for z in [zlib.compress(v)]]  # fmt: skip
    path.write_bytes(text + b"".join(body))


def nested_cells(depth: int) -> bytes:
    """Cells nested ``depth`` deep around one double (built from the inside out, without recursion)."""
    built = mat_double([1.0])
    for _ in range(depth):
        built = matrix(1, (1, 1), built)
    return built


def jpeg(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    """A JPEG of noise, as OpenCV writes one at quality 95."""
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def jpeg_bomb() -> bytes:
    """A valid 64x48 JPEG whose frame header (SOF0) is rewritten to declare 60000 x 60000 px."""
    data = bytearray(jpeg(0))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") * 2
    return bytes(data)
