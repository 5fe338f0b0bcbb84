"""COCO keypoint results JSON: what MMPose's ``CocoMetric(outfile_prefix=...)`` and Ultralytics'
``val(save_json=True)`` write.

A list of ``{"image_id", "category_id", "keypoints": [x, y, score] x 20, "score"}`` (Ultralytics adds
``file_name`` and ``bbox``). ``image_id`` is our COCO export's integer id (MMPose) or the image's file
stem (Ultralytics: the YOLO export's unique stem; an int only if the stem is numeric, so a
``file_name`` is preferred when present). Pixels are 0-based. A keypoint ``[0, 0, 0]`` (COCO's
visibility 0) or with a non-finite coordinate is missing; the third number is the joint's confidence
(the triangulation weight) and ``score`` the ranking score of OKS AP (the mean joint confidence when
absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.toolpreds.common import (
    MAX_CONFIDENCE,
    Collector2D,
    TableIndex,
    ToolPredictions2D,
    check_confidence,
    check_values,
    no_gc,
    one_line,
    read_text,
)

__all__ = [
    "FORMAT",
    "MAX_JSON_BYTES",
    "MAX_JSON_VALUES",
    "read",
    "sniff",
]

FORMAT = "coco"
#: Largest results file (bytes); one prediction is ~0.5-1.5 KB, so ~500k predictions at full precision.
MAX_JSON_BYTES = 512 << 20
#: Most JSON values parsed (a prediction is ~65): bounds the Python objects json builds, ~32 bytes each.
MAX_JSON_VALUES = 40_000_000


def sniff(path: Path, head: bytes) -> bool:
    """A JSON list of objects with ``keypoints``."""
    return path.suffix.lower() == ".json" and head.lstrip().startswith(b"[") and b'"keypoints"' in head


def read(path: Path, index: TableIndex, target: np.ndarray | None = None) -> ToolPredictions2D:
    """Read a COCO results file and place every prediction at its (sample, camera)."""
    text = read_text(path, MAX_JSON_BYTES)
    n_values = text.count(",") + 1  # every JSON value but the last is followed by a comma
    if n_values > MAX_JSON_VALUES:
        msg = (f"{path} holds about {n_values} JSON values, more than {MAX_JSON_VALUES} (~{MAX_JSON_VALUES // 65} "
               "predictions); keep one detection per image (Ultralytics: max_det=1)")  # fmt: skip
        raise BadInputError(msg)
    try:
        with no_gc():
            entries = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError; so is a 5000-digit int
        raise BadInputError(f"{path} is not valid JSON ({one_line(exc)})") from None
    except MemoryError:
        raise BadInputError(f"{path} is too large to parse in the memory available") from None
    del text
    if not isinstance(entries, list):
        raise BadInputError(f"{path} holds a JSON {type(entries).__name__}; COCO results are a list of predictions")
    J = catalogue.N_JOINTS
    targets, labels = [], []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "keypoints" not in entry or "image_id" not in entry:
            raise BadInputError(f"{path} prediction {i} is not an object with image_id and keypoints")
        image_id, file_name = entry["image_id"], entry.get("file_name")
        if isinstance(file_name, str) and file_name:
            targets.append(index.lookup_path(file_name))
            labels.append(f"file_name {file_name[:100]!r}")
        elif isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
            msg = f"{path} prediction {i}: image_id {str(image_id)[:50]!r} is neither an integer nor a file stem"
            raise BadInputError(msg)
        elif isinstance(image_id, int):
            targets.append(index.lookup_coco_id(image_id))
            labels.append(f"image_id {image_id}")
        else:
            targets.append(index.lookup_path(image_id))
            labels.append(f"image_id {image_id[:100]!r}")
    triples = _keypoints(path, entries).reshape(len(entries), J, 3)
    xy, confidence = triples[..., :2].copy(), triples[..., 2].copy()
    check_values(xy, f"{path} keypoints (prediction, joint, axis)")
    missing = (triples == 0).all(axis=-1) | ~np.isfinite(xy).all(axis=-1)
    xy[missing], confidence[missing] = np.nan, 0.0
    check_confidence(confidence, f"{path} keypoint scores (prediction, joint)")
    scores = _scores(path, entries, confidence)
    collector = Collector2D(index, FORMAT)
    collector.add_many(targets, xy, confidence, scores, labels)
    return collector.finish(target)


def _keypoints(path: Path, entries: list[dict]) -> np.ndarray:
    """(M, 3 * 20) float64 keypoints of every entry, in one numpy call (per value checks only on failure)."""
    width = 3 * catalogue.N_JOINTS
    if not entries:
        return np.empty((0, width))
    try:
        values = np.array([entry["keypoints"] for entry in entries], dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        values = None
    if values is not None and values.shape == (len(entries), width):
        return values
    for i, entry in enumerate(entries):  # the slow path names the first bad entry
        _numbers(entry["keypoints"], width, f"{path} prediction {i} keypoints")
    raise BadInputError(f"{path}: keypoints are not lists of {width} numbers")


def _scores(path: Path, entries: list[dict], confidence: np.ndarray) -> np.ndarray:
    """Each entry's ``score`` (the mean keypoint confidence when absent); finite, in [0, MAX_CONFIDENCE]."""
    given = [entry.get("score") for entry in entries]
    if all(type(v) in (int, float) for v in given):  # exact types: a bool is not a score
        values = np.array(given, dtype=np.float64)
    else:
        values = np.array([confidence[i].mean() if v is None else _numbers([v], 1, f"{path} prediction {i} score")[0]
                           for i, v in enumerate(given)], dtype=np.float64)  # fmt: skip
    bad = ~np.isfinite(values) | (values < 0) | (values > MAX_CONFIDENCE)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BadInputError(f"{path} prediction {i} score {values[i]} is not a number in [0, {MAX_CONFIDENCE:g}]")
    return values


def _numbers(value: object, count: int, what: str) -> np.ndarray:
    """``count`` JSON numbers as float64 (NaN allowed, checked by the caller)."""
    if not isinstance(value, list) or len(value) != count:
        size = len(value) if isinstance(value, list) else type(value).__name__
        raise BadInputError(f"{what}: expected a list of {count} numbers, found {size}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise BadInputError(f"{what}: expected numbers only")
    try:
        return np.array(value, dtype=np.float64)
    except OverflowError:
        raise BadInputError(f"{what}: a number is too large") from None
