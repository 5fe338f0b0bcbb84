"""The pixel convention of a table, detected from the table itself (:class:`rat7m.model.Table`), and the
conversions to the 0-based world (:mod:`rat7m.pixels`)."""

from __future__ import annotations

import copy
from types import MappingProxyType

import numpy as np
import pytest

from rat7m import pixels
from rat7m.errors import BadInputError
from rat7m.geometry import project
from rat7m.model import Camera, Table
from tests.helpers.tables2d import make_table


def _shifted(table: dict, by: float) -> dict:
    out = copy.deepcopy(table)
    for key in ("2D_keypoints", "2D_com"):
        out["table"][key] = {cam: value + by for cam, value in out["table"][key].items()}
    return out


def test_a_table_projected_through_its_cameras_is_matlab() -> None:
    table = make_table([("s1-d1", "train", 30), ("s5-d1", "test", 20)])
    found = Table.of(table).detect_pixel_convention()
    assert found.convention == pixels.MATLAB
    assert np.abs(found.offset).max() < 1e-9
    assert Table.of(table).pixel_convention == pixels.MATLAB
    assert table[pixels.TABLE_KEY] == pixels.MATLAB  # remembered in the plain dict too


def test_a_table_stored_zero_based_is_detected() -> None:
    table = _shifted(make_table([("s1-d1", "train", 30)]), -1.0)
    found = Table.of(table).detect_pixel_convention()
    assert found.convention == pixels.ZERO_BASED
    assert found.offset == pytest.approx((-1.0, -1.0), abs=1e-9)
    assert "0-based" in found.describe()


def test_a_table_in_neither_convention_is_refused() -> None:
    table = _shifted(make_table([("s1-d1", "train", 30)]), 0.5)
    assert Table.of(table).detect_pixel_convention().convention is None
    with pytest.raises(BadInputError, match="neither pixel convention"):
        Table.of(table).pixel_convention  # noqa: B018


def test_conversions_are_inverse_and_offset_by_one() -> None:
    xy = np.array([[1.0, 1.0], [10.5, 3.25]])
    assert np.array_equal(pixels.to_zero_based(xy, pixels.MATLAB), xy - 1)
    assert np.array_equal(pixels.to_zero_based(xy, pixels.ZERO_BASED), xy)
    assert np.array_equal(pixels.from_zero_based(pixels.to_zero_based(xy, pixels.MATLAB), pixels.MATLAB), xy)
    assert np.array_equal(pixels.convert(xy, pixels.ZERO_BASED, pixels.MATLAB), xy + 1)
    with pytest.raises(ValueError, match="unknown pixel convention"):
        pixels.to_zero_based(xy, "one-based")


def test_zero_based_camera_projects_one_pixel_up_and_left() -> None:
    table = make_table([("s1-d1", "train", 10)])
    camera = table["cameras"][1][1]["Camera2"]  # skewed
    points = table["table"]["3D_keypoints"]
    assert np.allclose(Camera.of(camera).to_zero_based().project(points), project(points, camera) - 1,
                       atol=1e-9, equal_nan=True)  # fmt: skip


def test_the_convention_can_be_stated_for_a_table_in_neither(monkeypatch) -> None:
    table = _shifted(make_table([("s1-d1", "train", 30)]), 0.5)
    monkeypatch.setenv(pixels.ENV, pixels.ZERO_BASED)
    assert Table.of(table).pixel_convention == pixels.ZERO_BASED
    monkeypatch.setenv(pixels.ENV, "one-based")
    with pytest.raises(BadInputError, match="RAT7M_PIXEL_CONVENTION='one-based'"):
        Table.of(_shifted(make_table([("s1-d1", "train", 30)]), 0.5)).pixel_convention  # noqa: B018


def test_a_read_only_mapping_is_detected_without_being_written() -> None:
    """``Table.of`` takes any mapping: the answer is remembered where it can be, never in a read-only one."""
    table = make_table([("s1-d1", "train", 10)])
    assert Table.of(MappingProxyType(table)).pixel_convention == pixels.MATLAB
    assert pixels.TABLE_KEY not in table
