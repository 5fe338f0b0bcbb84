"""COCO keypoints (MMPose, Detectron2, pycocotools): one JSON per split and an MMPose dataset-info file.

``rat7m_<split>.json`` holds ``images`` (``file_name`` is the table's ``image_path``, relative to the
images root: camera folders share file names, so never a bare basename), ``annotations`` (one
rat per image: ``keypoints`` as 20 x ``[x, y, v]`` with the flags of :mod:`rat7m.export.common`,
``num_keypoints`` = labelled keypoints (v > 0), ``bbox``, ``area`` = box area, ``iscrowd`` 0, and
``recording``, ``camera``, ``frame``, ``sample`` (the table row) as extra fields) and
``categories`` (the 20 joint names and the 21 bones, 1-based). Pixels are COCO's 0-based image
coordinates (the top-left pixel's centre is (0, 0); :mod:`rat7m.export.common` converts from the
table's MATLAB convention), rounded to :data:`DECIMALS` decimals (1e-3 px), which keeps the file
small and the labels exact for training.

``rat7m_dataset_info.py`` is MMPose's ``dataset_info`` dict: ``keypoint_info`` with left/right
``swap`` partners (``catalogue.LEFT_RIGHT_PAIRS``), ``skeleton_info`` (``catalogue.BONES``),
``joint_weights`` (all 1) and ``sigmas`` (``catalogue.KEYPOINT_SIGMAS``: each marker takes the COCO
sigma of its nearest anatomical counterpart; RAT7M has no annotation study of its own).
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

import numpy as np

from rat7m import catalogue
from rat7m.export.common import Selection, Summary, View, boxes

__all__ = ["CATEGORY", "DECIMALS", "MAX_PIXEL", "dataset_info_text", "export", "image_id"]

#: Decimals kept of each pixel coordinate.
DECIMALS = 3
#: The one COCO category.
CATEGORY = {
    "id": 1,
    "name": "rat",
    "supercategory": "animal",
    "keypoints": list(catalogue.JOINT_NAMES),
    "skeleton": [[a + 1, b + 1] for a, b in catalogue.BONES],
}


def image_id(row: int, camera: str) -> int:
    """Image (and annotation) id of a table row seen by a camera: ``row * 10 + camera number``."""
    return int(row) * 10 + catalogue.camera_number(camera)


#: Largest magnitude written (px); a projection further out (a marker nearly in the camera's plane,
#: flagged v = 1 anyway) is clipped to it.
MAX_PIXEL = 1e9
_SPACE, _ZERO = ord(" "), ord("0")


def _decimal_bytes(values: np.ndarray) -> np.ndarray:
    """``values`` ``(...)`` as right-aligned, space-padded :data:`DECIMALS`-decimal texts: ``(..., width)`` uint8.

    Formatting is the whole cost of a COCO export (40 million numbers for a full table, ~1 us
    each through ``json`` or ``%``), so the digits are computed with numpy for all numbers at once.
    JSON allows spaces before a number, so fixed-width fields are valid JSON.
    """
    values = np.clip(values, -MAX_PIXEL, MAX_PIXEL)
    scaled = np.round(np.abs(values) * 10**DECIMALS).astype(np.int64)
    negative = (values < 0) & (scaled > 0)
    whole = scaled // 10**DECIMALS
    n_digits = np.ones(whole.shape, dtype=np.int64)
    for k in range(1, 10):
        n_digits += whole >= 10**k
    int_width = int((n_digits + negative).max(initial=1))
    width = int_width + 1 + DECIMALS
    out = np.full((*values.shape, width), _SPACE, dtype=np.uint8)
    for k in range(DECIMALS):
        out[..., width - 1 - k] = _ZERO + (scaled // 10**k) % 10
    out[..., int_width] = ord(".")
    for k in range(int_width):
        digit = _ZERO + (whole // 10**k) % 10
        sign = np.where(negative & (n_digits == k), ord("-"), _SPACE)
        out[..., int_width - 1 - k] = np.where(k < n_digits, digit, sign)
    return out


def _keypoint_texts(xy: np.ndarray, flags: np.ndarray) -> list[str]:
    """Per row, ``x,y,v,x,y,v,...`` of ``xy`` ``(n, J, 2)`` and ``flags`` ``(n, J)``."""
    n, joints = flags.shape
    digits = _decimal_bytes(xy)  # (n, J, 2, w)
    width = digits.shape[-1]
    block = np.full((n, joints, 2 * width + 4), ord(","), dtype=np.uint8)
    block[:, :, :width] = digits[:, :, 0]
    block[:, :, width + 1 : 2 * width + 1] = digits[:, :, 1]
    block[:, :, 2 * width + 2] = _ZERO + flags
    rows = np.ascontiguousarray(block.reshape(n, -1)[:, :-1])
    return [b.decode("ascii") for b in rows.view(f"S{rows.shape[1]}").reshape(n).tolist()]


def _view_records(view: View) -> tuple[list[str], list[str], int]:
    """The ``images`` and ``annotations`` entries of one view, as JSON texts (see :func:`_decimal_bytes`)."""
    flags = view.visibility
    labelled = flags > 0
    keypoints = _keypoint_texts(np.where(labelled[..., None], view.keypoints, 0.0), flags)
    bbox = np.round(boxes(view.keypoints, flags, view.width, view.height), DECIMALS)
    areas = np.round(bbox[:, 2] * bbox[:, 3], DECIMALS).tolist()
    ids = (view.rows * 10 + catalogue.camera_number(view.camera)).tolist()
    counts, frames, rows = labelled.sum(axis=1).tolist(), view.frames.tolist(), view.rows.tolist()
    rec, cam = json.dumps(view.recording.name), json.dumps(view.camera)
    tail = f',"iscrowd":0,"recording":{rec},"camera":{cam},'
    annotations = [
        f'{{"id":{i},"image_id":{i},"category_id":1,"keypoints":[{k}],"num_keypoints":{c},'
        f'"bbox":[{b[0]!r},{b[1]!r},{b[2]!r},{b[3]!r}],"area":{a!r}{tail}"frame":{f},"sample":{r}}}'
        for i, k, c, b, a, f, r in zip(ids, keypoints, counts, bbox.tolist(), areas, frames, rows, strict=True)
    ]
    size = f'"width":{view.width},"height":{view.height},"recording":{rec},"camera":{cam}'
    images = [
        f'{{"id":{i},"file_name":{json.dumps(p)},{size},"frame":{f}}}'
        for i, p, f in zip(ids, view.paths, frames, strict=True)
    ]
    return images, annotations, int((flags == 0).sum())


def dataset_info_text() -> str:
    """The MMPose dataset-info python file (``dataset_info = dict(...)``)."""
    swap = {}
    for left, right in catalogue.LEFT_RIGHT_PAIRS:
        swap[left], swap[right] = right, left
    keypoints = {}
    for i, name in enumerate(catalogue.JOINT_NAMES):
        part = "upper" if i < 8 or 10 <= i < 16 else "lower"
        partner = catalogue.JOINT_NAMES[swap[i]] if i in swap else ""
        colour = list(catalogue.PART_COLOURS["head" if i < 3 else "spine"])
        keypoints[i] = {"name": name, "id": i, "color": colour, "type": part, "swap": partner}
    skeleton = {
        i: {"link": (catalogue.JOINT_NAMES[a], catalogue.JOINT_NAMES[b]), "id": i,
            "color": list(catalogue.BONE_COLOURS[i])}
        for i, (a, b) in enumerate(catalogue.BONES)
    }  # fmt: skip
    info = {
        "dataset_name": "rat7m",
        "paper_info": {
            "author": "Dunn, Timothy W. and Marshall, Jesse D. and others",
            "title": "Geometric deep learning enables 3D kinematic profiling across species and environments",
            "container": "Nature Methods",
            "year": "2021",
            "homepage": "https://doi.org/10.6084/m9.figshare.c.5295370",
        },
        "keypoint_info": keypoints,
        "skeleton_info": skeleton,
        "joint_weights": [1.0] * catalogue.N_JOINTS,
        "sigmas": list(catalogue.KEYPOINT_SIGMAS),
    }
    header = (
        "# MMPose dataset info for RAT7M, written by rat7m-export (rat7m.export.coco).\n"
        "# sigmas: rat7m.catalogue.KEYPOINT_SIGMAS, the COCO sigma of each marker's nearest anatomical\n"
        "# counterpart (snout ~ nose, head ~ ears, shoulders, hips, elbows, forearms ~ wrists, knees,\n"
        "# shins ~ ankles).\n"
    )
    return header + f"dataset_info = {info!r}\n"


def export(selection: Selection, out: Path, *, final: Path) -> Summary:
    """Write ``rat7m_<split>.json`` per split present and ``rat7m_dataset_info.py`` into ``out``."""
    summary = Summary("coco", final)
    split_of = selection.table.split_of()
    per_split: dict[str, tuple[list[str], list[str]]] = {}
    for view in selection.views():
        gc.disable()  # millions of small objects and no cycles: the collector would only walk them again and again
        try:
            images, annotations, missing = _view_records(view)
        finally:
            gc.enable()
        view_splits = split_of[view.rows]
        for split in np.unique(view_splits).tolist():
            take = np.flatnonzero(view_splits == split).tolist()
            whole = len(take) == len(images)
            entry = per_split.setdefault(split, ([], []))
            entry[0].extend(images if whole else [images[i] for i in take])
            entry[1].extend(annotations if whole else [annotations[i] for i in take])
        summary.images += len(images)
        summary.instances += len(annotations)
        summary.missing_keypoints += missing
    for split, (images, annotations) in sorted(per_split.items()):
        info = {"description": f"RAT7M {split} split, exported by rat7m-export", "version": "1.0"}
        with open(out / f"rat7m_{split}.json", "w") as f:
            f.write(f'{{"info":{json.dumps(info)},"categories":[{json.dumps(CATEGORY)}],"images":[')
            f.write(",".join(images))
            f.write('],"annotations":[')
            f.write(",".join(annotations))
            f.write("]}")
        summary.files += 1
    (out / "rat7m_dataset_info.py").write_text(dataset_info_text())
    summary.files += 1
    return summary
