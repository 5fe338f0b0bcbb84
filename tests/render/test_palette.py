"""The catalogue's palette stays readable under simulated colour-blindness.

Each colour is passed through the Machado et al. (2009) simulation of deuteranopia, protanopia and
tritanopia at full severity (colorspacious's ``sRGB1+CVD`` space), then compared in CIELAB (CIE76
Delta E). Pairs a reader must tell apart (left vs right limbs, ground truth vs prediction, the error
line vs both) need a large distance; every pair of body parts a clearly visible one.
"""

import itertools

import numpy as np
import pytest
from colorspacious import cspace_convert

from rat7m import catalogue

CVD = ("deuteranomaly", "protanomaly", "tritanomaly")
#: Delta E (CIE76) above which two colours are clearly different at a glance.
MUST_DIFFER = 30.0
#: Delta E every pair of part colours keeps (fore and hind limbs of a side also differ in place).
VISIBLE = 15.0


def _lab(colour, cvd):
    srgb = np.asarray(colour, dtype=float) / 255
    if cvd is not None:
        srgb = np.clip(cspace_convert(srgb, {"name": "sRGB1+CVD", "cvd_type": cvd, "severity": 100}, "sRGB1"), 0, 1)
    return cspace_convert(srgb, "sRGB1", "CIELab")


def _delta_e(a, b, cvd):
    return float(np.linalg.norm(_lab(a, cvd) - _lab(b, cvd)))


def _must_differ():
    parts = catalogue.PART_COLOURS
    yield "fore left/right", parts["fore_left"], parts["fore_right"]
    yield "hind left/right", parts["hind_left"], parts["hind_right"]
    yield "fore left/hind right", parts["fore_left"], parts["hind_right"]
    yield "hind left/fore right", parts["hind_left"], parts["fore_right"]
    yield "truth/prediction", catalogue.GT_COLOUR, catalogue.PRED_COLOUR
    yield "error/truth", catalogue.ERROR_COLOUR, catalogue.GT_COLOUR
    yield "error/prediction", catalogue.ERROR_COLOUR, catalogue.PRED_COLOUR


@pytest.mark.parametrize("cvd", [None, *CVD])
def test_colours_that_must_be_told_apart_stay_apart(cvd):
    for name, a, b in _must_differ():
        assert _delta_e(a, b, cvd) >= MUST_DIFFER, (name, cvd, _delta_e(a, b, cvd))
    for (p, a), (q, b) in itertools.combinations(catalogue.PART_COLOURS.items(), 2):
        assert _delta_e(a, b, cvd) >= VISIBLE, (p, q, cvd, _delta_e(a, b, cvd))
    assert catalogue.GT_MARKER != catalogue.PRED_MARKER  # told apart by marker too


def test_the_check_catches_palettes_that_fail_colour_blind_readers():
    """A red/green truth/prediction pair, and the old palette's hind-left green vs fore-left cyan, fail it."""
    red, green = (220, 40, 40), (40, 160, 40)
    assert _delta_e(red, green, None) > 100  # plainly different to most readers ...
    assert _delta_e(red, green, "deuteranomaly") < MUST_DIFFER  # ... but not with deuteranopia
    assert _delta_e((60, 220, 60), (0, 200, 255), None) > 100
    assert _delta_e((60, 220, 60), (0, 200, 255), "tritanomaly") < MUST_DIFFER


def test_bone_colours_follow_the_parts():
    assert catalogue.BONE_COLOURS == tuple(catalogue.PART_COLOURS[p] for p in catalogue.BONE_PARTS)
    assert set(catalogue.PART_COLOURS.values()) <= set(catalogue.OKABE_ITO.values())
