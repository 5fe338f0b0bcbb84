"""The exporter registry: each format states its options, its optional dependency and whether it needs images."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest

import export as export_script
from rat7m import extras
from rat7m.cli import run_main
from rat7m.errors import BadInputError
from rat7m.export import FORMATS, REGISTRY, get_format

KNOWN = {"coco", "dlc", "yolo", "slp", "anipose", "dannce"}


def test_every_format_declares_exactly_the_options_its_writer_takes():
    assert set(FORMATS) == KNOWN and list(FORMATS) == list(REGISTRY)
    for fmt in REGISTRY.values():
        writer = __import__(fmt.module, fromlist=["export"]).export
        params = inspect.signature(writer).parameters
        assert not any(p.kind is p.VAR_KEYWORD for p in params.values()), f"{fmt.name} swallows unknown options"
        assert set(params) - {"selection", "out", "final"} == fmt.options, fmt.name
    assert {f.name for f in REGISTRY.values() if f.needs_images} == {"coco", "dlc", "yolo", "slp"}
    assert REGISTRY["dlc"].default_split == "train" and REGISTRY["slp"].requires.extra == "sleap"


def test_unknown_options_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(BadInputError, match=r"the coco export takes no option allow_skew \(its options: none\)"):
        REGISTRY["coco"].export(None, tmp_path, final=tmp_path / "coco", allow_skew=True)
    with pytest.raises(BadInputError, match=r"anipose export takes no option val_recordng \(its options: allow_skew"):
        REGISTRY["anipose"].export(None, tmp_path, final=tmp_path / "anipose", val_recordng=None)
    with pytest.raises(BadInputError, match="unknown export format 'csv': expected one of coco, dlc"):
        get_format("csv")
    assert list(tmp_path.iterdir()) == []


def test_a_format_flag_given_to_another_format_is_one_line_and_exit_2(tmp_path, capsys):
    code = run_main(export_script.run, ["coco", "--root", str(tmp_path), "--out", str(tmp_path / "o"),
                                                "--allow-skew"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--allow-skew is an option of the anipose export, not of coco" in err
    assert not (tmp_path / "o").exists()


def test_a_missing_dependency_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sleap_io", None)  # as if sleap-io were not installed
    assert not REGISTRY["slp"].available() and REGISTRY["coco"].available()
    with pytest.raises(extras.MissingExtraError, match=r"the slp export needs sleap-io.*\[sleap\]"):
        REGISTRY["slp"].export(None, tmp_path, final=Path(tmp_path, "slp"), images_root=tmp_path)
    code = run_main(export_script.run, ["slp", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 2 and "pip install 'rat7m-toolkit[sleap]'" in capsys.readouterr().err
