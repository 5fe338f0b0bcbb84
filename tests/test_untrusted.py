"""The one rule for paths from a table (:func:`rat7m.untrusted.check_image_paths`): its fast path over
all paths at once never accepts a path that the path-by-path check refuses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rat7m.errors import BadInputError
from rat7m.untrusted import _all_plain, check_image_path, check_image_paths

PARTS = st.sampled_from(["images_unpacked", "s1-d1", "camera1", "frame_000001.jpg", ".", "..", "", " x", "a.jpg",
                         ".jpg", "x\n", "b,c", "d\\e", "f:g", "\x00", "é", "/", "h.png"])  # fmt: skip
PATHS = st.lists(PARTS, min_size=1, max_size=5).map("/".join)


def _accepted(path: str, images_dir: str | None) -> bool:
    try:
        check_image_path(path, 0, "Camera1", images_dir)
    except BadInputError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(st.lists(PATHS, min_size=1, max_size=6), st.sampled_from([None, "images_unpacked"]))
def test_the_fast_path_accepts_only_what_the_rule_accepts(paths, images_dir):
    prefix = images_dir + "/" if images_dir else ""
    if _all_plain(paths, prefix):
        assert all(_accepted(p, images_dir) for p in paths), paths
    every = all(_accepted(p, images_dir) for p in paths)
    try:
        check_image_paths(paths, range(len(paths)), "Camera1", images_dir)
    except BadInputError:
        assert not every
    else:
        assert every


def test_the_first_refused_path_is_named():
    paths = ["images_unpacked/a/x.jpg"] * 5 + ["images_unpacked/a/../../y.jpg"]
    with pytest.raises(BadInputError, match=r"image_path\['Camera2'\]\[15\] = 'images_unpacked/a/\.\./\.\./y\.jpg'"):
        check_image_paths(paths, range(10, 16), "Camera2")
