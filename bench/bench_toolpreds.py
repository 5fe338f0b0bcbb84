"""Benchmark reading the tools' prediction files at the official test-split size (24536 samples x 6 cameras).

Side by side, in one process on the same files (best of ``--repeat`` runs): each reader of
:mod:`rat7m.toolpreds`, called as ``compute_metrics.py`` calls it (table index included), against
the bare parse its format needs anyway (``json.loads`` for COCO results, ``pandas.read_hdf`` /
``pandas.read_csv`` for DeepLabCut tables), so the ratio is the cost of validating, mapping back
and placing 147k predictions on top of parsing them.

The table is synthetic (``tests/helpers/tables2d.make_table``). Run from the repository root:
``python bench/bench_toolpreds.py [--samples N]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import tempfile

import numpy as np

from bench.timing import best_of
from rat7m import catalogue, pixels, toolpreds
from rat7m.model import Table
from tests.helpers.tables2d import make_table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=24536)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    import pandas as pd

    table = make_table([("s5-d1", "test", args.samples)])
    convention = Table.of(table).pixel_convention
    rows = np.arange(args.samples)
    entries, keys, values = [], [], []
    for number, camera in enumerate(catalogue.CAMERA_NAMES, start=1):
        xy = pixels.to_zero_based(np.asarray(table["table"]["2D_keypoints"][camera], dtype=np.float64), convention)
        triples = np.concatenate([np.nan_to_num(xy), np.full((*xy.shape[:2], 1), 0.9)], axis=-1)
        entries += [{"image_id": int(r) * 10 + number, "category_id": 1, "keypoints": t, "score": 0.9}
                    for r, t in zip(rows, triples.reshape(len(rows), -1).tolist(), strict=True)]  # fmt: skip
        keys += [f"/data/rat7m/{p}" for p in np.asarray(table["table"]["image_path"][camera]).astype(str)]
        values.append(triples.reshape(len(rows), -1))
    levels = [["scorer"], ["animal"], list(catalogue.JOINT_NAMES), ["x", "y", "likelihood"]]
    columns = pd.MultiIndex.from_product(levels, names=["scorer", "individuals", "bodyparts", "coords"])
    frame = pd.DataFrame(np.concatenate(values), index=keys, columns=columns)
    with tempfile.TemporaryDirectory() as folder:
        results, h5, csv = Path(folder) / "results.json", Path(folder) / "pred.h5", Path(folder) / "pred.csv"
        results.write_text(json.dumps(entries))
        frame.to_hdf(h5, key="predictions", mode="w")
        frame.to_csv(csv)
        print(f"{len(entries)} predictions; results.json {results.stat().st_size / 1e6:.0f} MB, "
              f"pred.h5 {h5.stat().st_size / 1e6:.0f} MB, pred.csv {csv.stat().st_size / 1e6:.0f} MB")  # fmt: skip
        cases = [
            ("COCO results JSON", lambda: toolpreds.read_2d(results, "coco", table, rows),
             "json.loads", lambda: json.loads(results.read_text())),
            ("DLC .h5 (image paths)", lambda: toolpreds.read_2d(h5, "dlc", table, rows),
             "pandas.read_hdf", lambda: pd.read_hdf(h5)),
            ("DLC .csv (image paths)", lambda: toolpreds.read_2d(csv, "dlc", table, rows),
             "pandas.read_csv", lambda: pd.read_csv(csv, header=[0, 1, 2, 3], index_col=0)),
        ]  # fmt: skip
        print(f"{'reader':<24} {'ours s':>8}  {'baseline':<16} {'base s':>8}  ratio")
        for name, ours, base_name, base in cases:
            (t_ours, _), (t_base, _) = best_of(args.repeat, ours), best_of(args.repeat, base)
            print(f"{name:<24} {t_ours:8.2f}  {base_name:<16} {t_base:8.2f}  {t_ours / t_base:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
