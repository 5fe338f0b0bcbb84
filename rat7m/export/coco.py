"""COCO keypoints (MMPose, Detectron2, pycocotools): one JSON per split and an MMPose dataset-info file.

``rat7m_<split>.json`` holds ``images`` (``file_name`` is the table's ``image_path``, relative to the
images root: camera folders share file names, so never a bare basename), ``annotations`` (one
rat per image: ``keypoints`` as 20 x ``[x, y, v]`` with the flags of :mod:`rat7m.export.common`,
``num_keypoints`` = labelled keypoints (v > 0), ``bbox``, ``area`` = box area, ``iscrowd`` 0, and
``recording``, ``camera``, ``frame``, ``sample`` (the table row) as extra fields) and
``categories`` (the 20 joint names and the 21 bones, 1-based). Pixels are rounded to
:data:`DECIMALS` decimals (1e-3 px), which keeps the file small and the labels exact for training.

``rat7m_dataset_info.py`` is MMPose's ``dataset_info`` dict: ``keypoint_info`` with left/right
``swap`` partners (``catalogue.LEFT_RIGHT_PAIRS``), ``skeleton_info`` (``catalogue.BONES``),
``joint_weights`` (all 1) and ``sigmas`` (``catalogue.KEYPOINT_SIGMAS``: each marker takes the COCO
sigma of its nearest anatomical counterpart; RAT7M has no annotation study of its own).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rat7m import catalogue
from rat7m.export.common import Selection, Summary, View, boxes

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
NEEDS_IMAGES = True


def image_id(row: int, camera: str) -> int:
    """Image (and annotation) id of a table row seen by a camera: ``row * 10 + camera number``."""
    return int(row) * 10 + catalogue.camera_number(camera)


def _view_records(view: View) -> tuple[list[dict], list[dict], int]:
    """The ``images`` and ``annotations`` entries of one view, vectorised up to the dict building."""
    flags = view.visibility
    labelled = flags > 0
    xy = np.where(labelled[..., None], np.round(view.keypoints, DECIMALS), 0.0)
    triples = np.concatenate([xy, flags[..., None].astype(np.float64)], axis=2).reshape(len(flags), -1)
    keypoint_lists = triples.tolist()
    for kp in keypoint_lists:  # flags as ints: pycocotools does not mind, MMPose's checks and people do
        kp[2::3] = [int(v) for v in kp[2::3]]
    bbox = np.round(boxes(view.keypoints, flags, view.width, view.height), DECIMALS)
    area = np.round(bbox[:, 2] * bbox[:, 3], DECIMALS).tolist()
    counts = labelled.sum(axis=1).tolist()
    ids = (view.rows * 10 + catalogue.camera_number(view.camera)).tolist()
    rows, frames = view.rows.tolist(), view.frames.tolist()
    rec, cam = view.recording.name, view.camera
    images = [
        {"id": i, "file_name": p, "width": view.width, "height": view.height, "recording": rec, "camera": cam,
         "frame": f}
        for i, p, f in zip(ids, view.paths, frames, strict=True)
    ]  # fmt: skip
    annotations = [
        {"id": i, "image_id": i, "category_id": 1, "keypoints": kp, "num_keypoints": c, "bbox": b, "area": a,
         "iscrowd": 0, "recording": rec, "camera": cam, "frame": f, "sample": r}
        for i, kp, c, b, a, f, r in zip(ids, keypoint_lists, counts, bbox.tolist(), area, frames, rows, strict=True)
    ]  # fmt: skip
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


def export(selection: Selection, out: Path, *, final: Path, **_: object) -> Summary:
    """Write ``rat7m_<split>.json`` per split present and ``rat7m_dataset_info.py`` into ``out``."""
    summary = Summary("coco", final)
    split_of = np.asarray(selection.columns["train_test"]).astype(str)
    per_split: dict[str, tuple[list, list]] = {}
    for view in selection.views():
        images, annotations, missing = _view_records(view)
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
        document = {
            "info": {"description": f"RAT7M {split} split, exported by rat7m-export", "version": "1.0"},
            "images": images,
            "annotations": annotations,
            "categories": [CATEGORY],
        }
        # one dumps then one write: json.dump would write hundreds of thousands of small pieces
        (out / f"rat7m_{split}.json").write_text(json.dumps(document, separators=(",", ":")))
        summary.files += 1
    (out / "rat7m_dataset_info.py").write_text(dataset_info_text())
    summary.files += 1
    return summary
