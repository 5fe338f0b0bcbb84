"""Prediction files as the field's tools write them, mapped back to table rows and cameras.

``compute_metrics.py --pred2d FILE --pred-format FORMAT`` (2D formats) and ``--pred_path FILE
--pred-format FORMAT`` (3D formats) read them; ``auto`` (the default for a file that is not our own
CSV/npy/npz) detects the format from the file. One module per tool:

=============  ====  ==========================================================================
format         dim   written by
=============  ====  ==========================================================================
``coco``       2D    MMPose ``CocoMetric(outfile_prefix=...)``, Ultralytics ``val(save_json=True)``
``dlc``        2D    DeepLabCut ``evaluate_network``, ``analyze_images``, ``analyze_videos`` (.h5/.csv/folder)
``slp``        2D    SLEAP / sleap-nn predictions ``.slp``
``yolo-txt``   2D    Ultralytics ``predict(save_txt=True, save_conf=True)`` (a labels folder)
``dannce``     3D    DANNCE ``save_data_AVG.mat`` / ``save_data_MAX.mat``
``anipose``    3D    anipose ``pose-3d/<recording>.csv``
=============  ====  ==========================================================================

How names map back, how missing joints, duplicates and unmatched predictions are handled, and the
bounds on hostile files: :mod:`rat7m.toolpreds.common`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rat7m.errors import BadInputError
from rat7m.fileio import check_input
from rat7m.toolpreds import anipose, coco, dannce, dlc, slp, yolo
from rat7m.toolpreds.common import Report, TableIndex, ToolPredictions2D, ToolPredictions3D, no_gc

__all__ = ["FORMATS_2D", "FORMATS_3D", "Report", "TableIndex", "ToolPredictions2D", "ToolPredictions3D",
           "detect_format", "read_2d", "read_3d"]  # fmt: skip

#: 2D readers by format name.
FORMATS_2D = {m.FORMAT: m for m in (coco, dlc, slp, yolo)}
#: 3D readers by format name.
FORMATS_3D = {m.FORMAT: m for m in (dannce, anipose)}
#: Bytes of a file's head that format detection looks at.
HEAD_BYTES = 4096


def detect_format(path: str | Path) -> str | None:
    """The tool format of ``path`` (a name of :data:`FORMATS_2D` or :data:`FORMATS_3D`), None if none fits."""
    path = Path(path)
    head = b""
    if path.is_file():
        with path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
    for name, module in {**FORMATS_3D, **FORMATS_2D}.items():  # anipose before DLC (both CSV), DLC before yolo
        if module.sniff(path, head):
            return name
    return None


def _format(path: Path, fmt: str, formats: dict[str, Any], other: dict[str, Any], flag: str) -> Any:
    if not path.is_dir():  # a folder is yolo-txt's; anything else must be a regular file
        check_input(path, "prediction file")  # not found, a FIFO, a link loop: said as such, never a hang
    name = detect_format(path) if fmt == "auto" else fmt
    if name is None:
        known = ", ".join([*FORMATS_2D, *FORMATS_3D])
        raise BadInputError(f"cannot tell the format of {path}; pass --pred-format (one of {known})")
    if name in other:
        dim, other_flag = ("3D", "--pred_path") if flag == "--pred2d" else ("2D", "--pred2d")
        raise BadInputError(f"{path} holds {name} predictions ({dim}); pass it with {other_flag}")
    return formats[name]


def read_2d(path: str | Path, fmt: str, table: dict[str, Any], rows: np.ndarray, *,
            images_root: Path | None = None) -> ToolPredictions2D:  # fmt: skip
    """2D predictions of a tool for ``rows`` of ``table``, in the table's pixel convention.

    Args:
        path: the tool's file (a folder for ``yolo-txt``).
        fmt: a name of :data:`FORMATS_2D`, or ``"auto"``.
        table: the annotation table; rows: the split's rows in table order.
        images_root: where the table's ``image_path`` are (``yolo-txt`` reads image sizes there).

    Raises:
        BadInputError: unknown format, unreadable or hostile file (one line naming where).
    """
    path = Path(path)
    module = _format(path, fmt, FORMATS_2D, FORMATS_3D, "--pred2d")
    index = TableIndex(table, rows)
    names = index.cameras
    target = np.stack([np.asarray(table["table"]["2D_keypoints"][n])[index.rows] for n in names], axis=1)
    with no_gc():  # a full split is ~1.5 million small acyclic objects: the collector would walk them repeatedly
        if module is yolo:
            return yolo.read(path, index, target, sizes=_image_sizes(table, index, images_root))
        return module.read(path, index, target.astype(np.float64))


def read_3d(path: str | Path, fmt: str, table: dict[str, Any], rows: np.ndarray) -> ToolPredictions3D:
    """3D predictions (mm) of a tool for ``rows`` of ``table``; NaN where missing."""
    path = Path(path)
    module = _format(path, fmt, FORMATS_3D, FORMATS_2D, "--pred_path")
    index = TableIndex(table, rows)
    target = np.asarray(table["table"]["3D_keypoints"])[index.rows].astype(np.float64)
    with no_gc():
        return module.read(path, index, target)


def _image_sizes(table: dict[str, Any], index: TableIndex, images_root: Path | None) -> dict[tuple[str, str], tuple]:
    """(recording, camera) -> (width, height) of the table's images, from their JPEG headers."""
    from rat7m import catalogue
    from rat7m.export.common import Selection, read_sizes
    from rat7m.model import Table

    if images_root is None:
        raise BadInputError("YOLO label files are normalised: pass --root (the dataset root with the images)")
    recordings = tuple(r for r in catalogue.RECORDINGS if r.name in set(index.recording))
    selection = Selection(Table.of(table), index.rows, recordings, tuple(index.cameras), "all")
    read_sizes(selection, images_root)
    return selection.sizes
