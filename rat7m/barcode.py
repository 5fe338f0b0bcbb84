"""A frame index written into the picture as a barcode, so a test can prove which frame an image is.

Every frame of the synthetic videos carries its recording-wide frame index in a strip at the top:
two rows of :data:`BITS` big black/white cells, the index in binary (most significant bit first)
in the first row and the same bits inverted in the second. Cells are a few pixels wide even at
the smallest test resolution and the reader averages the middle of each cell, so the code
survives H.264 and JPEG (quality 75 and up); the inverted row is the check: a cell pair that is
not one black and one white, or a cell that is neither clearly black nor clearly white, makes
the whole read fail instead of returning a wrong number.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BITS",
    "barcode_height",
    "draw_barcode",
    "read_barcode",
]

#: Bits of the frame index (indices 0 .. 2**BITS - 1); RAT7M recordings have < 200k frames.
BITS = 24
#: A cell whose mean grey level is within this distance of mid-grey (128) is unreadable.
_MIN_CONTRAST = 40
#: Narrowest cell (pixels) we write: narrower cells do not survive compression.
_MIN_CELL_WIDTH = 4


def _layout(width: int) -> tuple[int, int, int]:
    """Cell width, cell height and left margin of the barcode for an image ``width`` pixels wide."""
    cell_w = width // BITS
    if cell_w < _MIN_CELL_WIDTH:
        msg = f"image is {width} px wide; a {BITS}-bit barcode needs at least {BITS * _MIN_CELL_WIDTH} px"
        raise ValueError(msg)
    cell_h = max(8, cell_w // 2)
    return cell_w, cell_h, (width - BITS * cell_w) // 2


def barcode_height(width: int) -> int:
    """Height in pixels of the barcode strip at the top of an image ``width`` pixels wide."""
    return 2 * _layout(width)[1]


def _bits(index: int) -> np.ndarray:
    return np.array([(index >> (BITS - 1 - i)) & 1 for i in range(BITS)], dtype=bool)


def draw_barcode(image: np.ndarray, index: int) -> None:
    """Write ``index`` as a barcode into the top rows of ``image``, in place.

    Args:
        image: (H, W, 3) uint8 picture (any channel order) or (H, W) grey picture.
        index: the number to write, 0 .. 2**BITS - 1.

    Raises:
        ValueError: if ``index`` is out of range or the image is too small for the barcode.
    """
    if not 0 <= int(index) < 2**BITS:
        raise ValueError(f"barcode index {index} is outside 0 .. {2**BITS - 1}")
    cell_w, cell_h, left = _layout(image.shape[1])
    if image.shape[0] < 4 * cell_h:
        raise ValueError(f"image is {image.shape[0]} px high; the barcode needs at least {4 * cell_h} px")
    image[: 2 * cell_h] = 0
    bits = _bits(int(index))
    for i, bit in enumerate(bits):
        x = left + i * cell_w
        row = 0 if bit else 1  # white cell in the data row for a 1, in the check row for a 0
        image[row * cell_h : (row + 1) * cell_h, x : x + cell_w] = 255


def read_barcode(image: np.ndarray) -> int:
    """Read the index that :func:`draw_barcode` wrote into ``image``.

    Args:
        image: (H, W, 3) uint8 picture (BGR or RGB, as decoded) or (H, W) grey picture.

    Returns:
        The frame index.

    Raises:
        ValueError: if the strip is not a valid barcode (a cell neither black nor white, or a
            data cell equal to its check cell): the picture is not a synthetic frame, or was
            damaged.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"expected an (H, W) or (H, W, 3) picture, got shape {image.shape}")
    cell_w, cell_h, left = _layout(image.shape[1])
    if image.shape[0] < 2 * cell_h:
        raise ValueError(f"image is {image.shape[0]} px high, lower than the {2 * cell_h} px barcode strip")
    strip = image[: 2 * cell_h].astype(np.float32)
    grey = strip if strip.ndim == 2 else strip.mean(axis=2)
    mx, my = cell_w // 4, cell_h // 4  # read the middle of each cell, away from blurred edges
    levels = np.empty((2, BITS), dtype=np.float32)
    for row in range(2):
        for i in range(BITS):
            x, y = left + i * cell_w, row * cell_h
            levels[row, i] = grey[y + my : y + cell_h - my, x + mx : x + cell_w - mx].mean()
    unclear = np.abs(levels - 128) < _MIN_CONTRAST
    if unclear.any():
        row, col = np.argwhere(unclear)[0]
        raise ValueError(f"no readable barcode: cell {col} of row {row} is grey ({levels[row, col]:.0f})")
    data, check = levels[0] > 128, levels[1] > 128
    if np.any(data == check):
        raise ValueError(f"no valid barcode: check row disagrees at bits {np.flatnonzero(data == check).tolist()}")
    return int(sum(int(b) << (BITS - 1 - i) for i, b in enumerate(data)))
