"""Benchmark the COCO export at the official mini-RAT7M size (112,730 rows x 6 cameras = 676,380 images).

The table is built in memory (synthetic cameras at 1328x1048 and poses of the real per-recording
row counts, 2% of markers lost); images are not needed: the size is fixed as ``--image-size``
does. Side by side, in one process:

- ours: ``rat7m.export.coco.export`` on the whole table (vectorised visibility, boxes and rounding,
  one ``json.dumps`` per split);
- baseline: the usual per-row, per-camera, per-joint Python loop building the same records and
  ``json.dump`` into the file, run on every ``--baseline-stride``-th row and scaled to the full size.

Run from the repository root: ``python bench/bench_export.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import tempfile
import time

import numpy as np

from rat7m import catalogue, geometry
from rat7m.demo.synthetic import FULL_HEIGHT, FULL_WIDTH, make_cameras, make_motion
from rat7m.export import coco
from rat7m.export.common import select

#: Rows per recording in the official mini-RAT7M table.
ROWS = {"s1-d1": 17812, "s2-d1": 17441, "s2-d2": 19728, "s3-d1": 19845, "s4-d1": 13368, "s5-d1": 10445,
        "s5-d2": 14091}  # fmt: skip


def full_table(seed: int = 0) -> dict:
    """An official-size table in memory."""
    rng = np.random.default_rng(seed)
    columns: dict = {"subject_idx": [], "day_idx": [], "train_test": [], "3D_keypoints": [],
                     "frame_idx": {}, "image_path": {}, "2D_keypoints": {}, "2D_com": {}}  # fmt: skip
    cameras: dict = {}
    for name, n in ROWS.items():
        rec = catalogue.recording_by_name(name)
        cams = make_cameras(rng, FULL_WIDTH, FULL_HEIGHT)
        cameras.setdefault(rec.subject, {})[rec.day] = cams
        points = make_motion(rng, n, 120.0)
        points[rng.random(points.shape[:2]) < 0.02] = np.nan
        columns["subject_idx"].append(np.full(n, rec.subject))
        columns["day_idx"].append(np.full(n, rec.day))
        columns["train_test"].append(np.full(n, rec.split))
        columns["3D_keypoints"].append(points)
        frames = np.arange(n) * 10
        for cam, params in cams.items():
            columns["frame_idx"].setdefault(cam, []).append(frames)
            columns["image_path"].setdefault(cam, []).append(np.array(catalogue.image_paths(rec, cam, frames)))
            kp = geometry.project(points, params)
            columns["2D_keypoints"].setdefault(cam, []).append(kp)
            columns["2D_com"].setdefault(cam, []).append(np.nanmean(kp, axis=1))
    table = {key: np.concatenate(v) if isinstance(v, list) else {c: np.concatenate(a) for c, a in v.items()}
             for key, v in columns.items()}  # fmt: skip
    return {"cameras": cameras, "camera_names": np.array(catalogue.CAMERA_NAMES), "table": table}


def baseline(table: dict, out: Path, stride: int) -> int:
    """The usual converter: loops over rows, cameras and joints in Python; returns the images written."""
    columns = table["table"]
    images, annotations = [], []
    for row in range(0, len(columns["subject_idx"]), stride):
        subject, day = int(columns["subject_idx"][row]), int(columns["day_idx"][row])
        for cam in catalogue.CAMERA_NAMES:
            params = table["cameras"][subject][day][cam]
            keypoints: list[float] = []
            xs: list[float] = []
            ys: list[float] = []
            for j in range(catalogue.N_JOINTS):
                x, y = columns["2D_keypoints"][cam][row][j]
                depth = (columns["3D_keypoints"][row][j] @ params["RotationMatrix"] + params["TranslationVector"])[0, 2]
                if np.isnan(x) or np.isnan(y):
                    keypoints += [0, 0, 0]
                elif depth > 0 and 0 <= x < FULL_WIDTH and 0 <= y < FULL_HEIGHT:
                    keypoints += [round(float(x), 3), round(float(y), 3), 2]
                    xs.append(float(x))
                    ys.append(float(y))
                else:
                    keypoints += [round(float(x), 3), round(float(y), 3), 1]
            box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)] if xs else [0, 0, 0, 0]
            image_id = row * 10 + catalogue.camera_number(cam)
            images.append({"id": image_id, "file_name": str(columns["image_path"][cam][row]),
                           "width": FULL_WIDTH, "height": FULL_HEIGHT})  # fmt: skip
            annotations.append({"id": image_id, "image_id": image_id, "category_id": 1, "keypoints": keypoints,
                                "num_keypoints": sum(1 for v in keypoints[2::3] if v), "bbox": box,
                                "area": box[2] * box[3], "iscrowd": 0})  # fmt: skip
    with open(out / "baseline.json", "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": [coco.CATEGORY]}, f)
    return len(images)


def main() -> int:
    """Build the table, run both, print the figures side by side."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-stride", type=int, default=20, help="baseline on every N-th row (default: 20)")
    args = parser.parse_args()
    started = time.perf_counter()
    table = full_table()
    n = len(table["table"]["subject_idx"])
    print(f"table: {n} rows x 6 cameras = {6 * n} images, built in {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        started = time.perf_counter()
        selection = select(table)
        size_of = (FULL_WIDTH, FULL_HEIGHT)
        selection.sizes = {(r.name, c): size_of for r in selection.recordings for c in selection.cameras}
        summary = coco.export(selection, out, final=out)
        ours = time.perf_counter() - started
        size = sum(p.stat().st_size for p in out.glob("*.json")) / 1e6
        started = time.perf_counter()
        done = baseline(table, out, args.baseline_stride)
        naive = (time.perf_counter() - started) * (6 * n) / done
    print(f"{'':28s}{'images/s':>12s}{'full table (s)':>16s}")
    print(f"{'ours (rat7m.export.coco)':28s}{summary.images / ours:12.0f}{ours:16.1f}   ({size:.0f} MB of JSON)")
    scaled = f"(1 row in {args.baseline_stride}, scaled)"
    print(f"{'baseline (per-row loop)':28s}{6 * n / naive:12.0f}{naive:16.1f}   {scaled}")
    print(f"speed-up: {naive / ours:.1f}x; budget 30 s: {'met' if ours < 30 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
