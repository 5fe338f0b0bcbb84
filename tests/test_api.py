"""The public API: ``import rat7m`` and its names, and the export called from Python with keywords."""

from __future__ import annotations

import json

import pytest
from pycocotools.coco import COCO

import rat7m
from rat7m import catalogue
from rat7m.cli import export as export_command
from rat7m.export.common import MANIFEST_NAME
from rat7m.table_build import build_table

SIZE = (192, 152)


@pytest.fixture(scope="module")
def table(synthetic_dataset):
    """A small table of s1-d1 (no image extracted: the exports are told the image size)."""
    return build_table([synthetic_dataset.recordings["s1-d1"].mat_path], stride=40)


def test_the_top_level_names_are_the_modules_functions():
    from rat7m.dataset import MiniRat7m
    from rat7m.errors import BadInputError
    from rat7m.table import load_annotation

    assert rat7m.load_annotation is load_annotation and rat7m.MiniRat7m is MiniRat7m
    assert rat7m.BadInputError is BadInputError
    from rat7m.export import coco  # a submodule import keeps rat7m.export the package (no function shadows it)

    assert rat7m.export.coco is coco and callable(rat7m.export.export)


def test_export_takes_keywords_and_writes_what_the_command_writes(table, tmp_path):
    """The keyword API and ``rat7m export coco`` give the same files (the command calls the same layer)."""
    root = tmp_path / "data"
    (root / catalogue.VIDEO_DIR).mkdir(parents=True)
    summary = rat7m.export.export("coco", table=table, out=tmp_path / "api", root=root, split="train",
                                  cameras=[1, "Camera2"], image_size=SIZE)  # fmt: skip
    assert not summary.skipped and summary.images > 0
    table_path = tmp_path / "t.pkl"
    rat7m.save_annotation(table, table_path)
    argv = ["coco", "--annotation", str(table_path), "--root", str(root), "--out", str(tmp_path / "cli"),
            "--split", "train", "--cameras", "1,2", "--image-size", "192x152", "-q"]  # fmt: skip
    assert export_command.main(argv) == 0
    api, cli = (json.loads((tmp_path / w / "coco" / MANIFEST_NAME).read_text()) for w in ("api", "cli"))
    assert api.pop("annotation") == "None" and cli.pop("annotation") == str(table_path)
    assert api == cli and api["cameras"] == ["Camera1", "Camera2"] and api["split"] == "train"
    for where in ("api", "cli"):
        (annotations,) = (tmp_path / where / "coco").glob("**/*train*.json")
        assert len(COCO(str(annotations)).getImgIds()) == summary.images
    again = rat7m.export.export("coco", table=table, out=tmp_path / "api", root=root, split="train",
                                cameras=[1, 2], image_size=SIZE)  # fmt: skip
    assert again.skipped  # complete: a rerun skips it


def test_export_refuses_bad_arguments_with_one_clear_error(table, tmp_path):
    with pytest.raises(rat7m.BadInputError, match="no export format 'cocoa'; the formats are coco, dlc"):
        rat7m.export.export("cocoa", table=table, out=tmp_path)
    with pytest.raises(rat7m.BadInputError, match="s9-d9"):
        rat7m.export.export("coco", table=table, out=tmp_path, recordings=["s9-d9"], image_size=SIZE)
    with pytest.raises(TypeError, match="image_sizes"):  # an unknown option is refused, not swallowed
        rat7m.export.export("coco", table=table, out=tmp_path, image_sizes=SIZE)
    assert not any(tmp_path.iterdir())


def test_the_exception_classes_live_in_errors_and_are_the_same_where_they_were():
    from rat7m import errors
    from rat7m.cli import UsageError
    from rat7m.download.run import NotEnoughSpaceError
    from rat7m.safe_pickle import UnsafePickleError
    from rat7m.video import ChunkReadError

    for cls in (UsageError, NotEnoughSpaceError, UnsafePickleError, ChunkReadError):
        assert cls.__module__ == "rat7m.errors" and getattr(errors, cls.__name__) is getattr(rat7m, cls.__name__) is cls
        assert issubclass(cls, rat7m.Rat7mError)
