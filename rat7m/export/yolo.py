"""Ultralytics YOLO pose: a label ``.txt`` per image, image lists per split and ``data.yaml``.

Ultralytics finds an image's labels by replacing the last ``/images/`` of its path with
``/labels/``, and names its predictions by the image's file stem (``image_id`` of ``val(save_json=True)``,
``<stem>.txt`` of ``predict(save_txt=True)``). The table's file names repeat in every camera folder
(``frame_000123.jpg``), so every image gets a unique stem (:func:`image_stem`:
``s5-d1_Camera3_000123``): the export holds ``images/<recording>_<camera>/<stem>.jpg`` as a link to
each image under the images root (nothing copied) and ``labels/<recording>_<camera>/<stem>.txt``
beside it, and :mod:`rat7m.toolpreds` maps predictions back through the same function. A label line
is ``0 cx cy w h`` (the box of :mod:`rat7m.export.common`, normalised) then 20 x ``x y v``,
normalised from 0-based image pixels (converted from the table's MATLAB convention).
Ultralytics refuses coordinates outside ``[0, 1]``, so only seen keypoints (``v = 2``) are written;
lost, out-of-image and behind-camera ones are ``0 0 0``. An image without a seen keypoint gets an
empty label file (a background image).

Splits: ``train.txt``, ``val.txt`` and ``test.txt``. Validation takes whole recordings
(``--val-recordings``; default: the last training recording chosen), so no other view of a
validation timestep is ever trained on. ``data.yaml`` has ``kpt_shape: [20, 3]`` and the real
``flip_idx`` (``catalogue.FLIP_INDEX``: left and right joints swapped).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from rat7m import catalogue
from rat7m.export.common import Selection, Summary, boxes, link

__all__ = ["export", "image_stem"]

log = logging.getLogger("rat7m.export")


def _label_lines(kp: np.ndarray, flags: np.ndarray, bbox: np.ndarray, width: int, height: int) -> list[str]:
    """One label line per row (empty for a row without a seen keypoint)."""
    seen = flags == 2
    scale = np.array([width, height], dtype=np.float64)
    xy = np.where(seen[..., None], kp / scale, 0.0)
    v = np.where(seen, 2.0, 0.0)
    box = np.stack([(bbox[:, 0] + bbox[:, 2] / 2) / width, (bbox[:, 1] + bbox[:, 3] / 2) / height,
                    bbox[:, 2] / width, bbox[:, 3] / height], axis=1)  # fmt: skip
    values = np.concatenate([box, np.concatenate([xy, v[..., None]], axis=2).reshape(len(kp), -1)], axis=1)
    lines = []
    for row, any_seen in zip(values.tolist(), seen.any(axis=1).tolist(), strict=True):
        if not any_seen:
            lines.append("")
            continue
        cells = [f"{x:.8f}" for x in row]
        cells[6::3] = ["2" if c.startswith("2") else "0" for c in cells[6::3]]
        lines.append("0 " + " ".join(cells) + "\n")
    return lines


def image_stem(recording: str, camera: str, path: str) -> str:
    """The unique file stem of a table image: ``<recording>_<camera>_<frame>`` (``s5-d1_Camera3_000123``).

    ``frame`` is the table file name's stem without its ``frame_`` prefix; the table's names repeat across
    camera folders and recordings, this never does.
    """
    name = path.rsplit("/", 1)[-1]  # string operations: the scorer names 147k images at once
    stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
    return f"{recording}_{camera}_{stem.removeprefix('frame_')}"


def _val_recordings(selection: Selection, chosen: Sequence[catalogue.Recording] | None) -> set[str]:
    if chosen:
        return {r.name for r in chosen}
    split_of = selection.table.split_of()
    train = [r for r in selection.recordings if (split_of[selection.recording_rows(r)] == "train").any()]
    if len(train) < 2:
        return set()
    return {train[-1].name}


def _data_yaml(final: Path, has_test: bool) -> str:
    lines = [
        "# Ultralytics YOLO pose dataset written by rat7m-export",
        f"path: {final.resolve()}",
        "train: train.txt",
        "val: val.txt",
    ]
    if has_test:
        lines.append("test: test.txt")
    lines += [
        f"kpt_shape: [{catalogue.N_JOINTS}, 3]",
        f"flip_idx: [{', '.join(str(i) for i in catalogue.FLIP_INDEX)}]",
        "names:",
        "  0: rat",
        "kpt_names:",
        "  0:",
    ]
    lines += [f"    - {name}" for name in catalogue.JOINT_NAMES]
    return "\n".join(lines) + "\n"


def export(
    selection: Selection,
    out: Path,
    *,
    final: Path,
    images_root: Path,
    val_recordings: Sequence[catalogue.Recording] | None = None,
) -> Summary:
    """Write links, labels, image lists and ``data.yaml`` into ``out``."""
    summary = Summary("yolo", final)
    val = _val_recordings(selection, val_recordings)
    split_of = selection.table.split_of()
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for view in selection.views():
        bbox = boxes(view.keypoints, view.visibility, view.width, view.height)
        lines = _label_lines(view.keypoints, view.visibility, bbox, view.width, view.height)
        done: set[str] = set()
        for i, path in enumerate(view.paths):
            if path in done:  # a frame two rows share is one image
                continue
            done.add(path)
            name = f"{view.folder}/{image_stem(view.recording.name, view.camera, path)}"
            link(images_root / path, out / "images" / f"{name}{PurePosixPath(path).suffix}", out)
            label = out / "labels" / f"{name}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(lines[i])
            split = "val" if view.recording.name in val else split_of[view.rows[i]]
            lists[split].append(f"./images/{name}{PurePosixPath(path).suffix}")
            summary.images += 1
            summary.instances += bool(lines[i])
            summary.missing_keypoints += int((view.visibility[i] == 0).sum())
            summary.files += 1
    if not lists["val"]:
        summary.notes.append("val.txt is empty: choose --val-recordings (whole recordings)")
    for split, paths in lists.items():
        if paths or split != "test":
            (out / f"{split}.txt").write_text("".join(p + "\n" for p in paths))
    (out / "data.yaml").write_text(_data_yaml(final, bool(lists["test"])))
    return summary
