"""The frame-index barcode: exact round trip, through JPEG at the qualities extraction uses, and refusal of junk."""

import cv2
import numpy as np
import pytest

from rat7m.barcode import BITS, barcode_height, draw_barcode, read_barcode

INDICES = [0, 1, 2, 3499, 3500, 10_500, 123_456, 2**BITS - 1]


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A busy picture (noise over a gradient), so the barcode has to survive its neighbours."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(30, 220, width)[None, :, None]
    return np.clip(ramp + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


@pytest.mark.parametrize("width,height", [(192, 152), (384, 304), (1328, 1048), (100, 60)])
def test_round_trip_exact(width, height):
    background = textured(height, width)
    for index in INDICES:
        image = background.copy()
        draw_barcode(image, index)
        assert read_barcode(image) == index
        assert read_barcode(image[..., ::-1]) == index  # RGB or BGR: the code is black and white
        assert read_barcode(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)) == index


@pytest.mark.parametrize("quality", [75, 95])
@pytest.mark.parametrize("width,height", [(192, 152), (384, 304)])
def test_survives_jpeg(quality, width, height):
    rng = np.random.default_rng(quality)
    for index in [*INDICES, *rng.integers(0, 2**BITS, 20).tolist()]:
        image = textured(height, width, seed=index % 11)
        draw_barcode(image, index)
        assert read_barcode(jpeg(image, quality)) == index


def test_draw_changes_only_the_strip():
    image = textured(152, 192)
    before = image.copy()
    draw_barcode(image, 777)
    strip = barcode_height(192)
    assert strip < 152 // 4
    np.testing.assert_array_equal(image[strip:], before[strip:])
    assert not np.array_equal(image[:strip], before[:strip])


def test_refuses_pictures_without_a_valid_code():
    with pytest.raises(ValueError, match="grey"):
        read_barcode(np.full((152, 192, 3), 128, np.uint8))
    with pytest.raises(ValueError):
        read_barcode(textured(152, 192))
    image = textured(152, 192)
    draw_barcode(image, 5)
    cell = 192 // BITS
    image[: barcode_height(192) // 2, :cell] = 255  # flip the top data bit without its check bit
    with pytest.raises(ValueError, match="check row disagrees at bits \\[0\\]"):
        read_barcode(image)


def test_bad_arguments():
    with pytest.raises(ValueError, match="outside"):
        draw_barcode(np.zeros((152, 192, 3), np.uint8), 2**BITS)
    with pytest.raises(ValueError, match="outside"):
        draw_barcode(np.zeros((152, 192, 3), np.uint8), -1)
    with pytest.raises(ValueError, match="px wide"):
        draw_barcode(np.zeros((152, 80, 3), np.uint8), 1)
    with pytest.raises(ValueError, match="px wide"):
        read_barcode(np.zeros((152, 80, 3), np.uint8))
