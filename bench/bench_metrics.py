"""Benchmark compute_metrics at the official test-split size (N = 24536) against naive baselines.

Side by side, in one process on the same files (best of ``--repeat`` runs, except the slow
per-sample loop which runs once):

- reading the headerless prediction CSV: ours (``read_predictions``: validation + numpy's C parser)
  vs ``np.loadtxt`` alone vs the ``csv`` module with ``float`` per cell;
- computing MPJPE, PA-MPJPE and N-MPJPE: ours (vectorised, NaN-aware) vs a per-sample loop
  (one SVD call per sample, the usual way), also checked to agree;
- the whole CLI as a user runs it (a fresh ``python metric_utils/compute_metrics.py``), split into
  its phases measured in-process.

The table is synthetic: the 24536 test samples with one camera (the real table's train rows and
six cameras only add to the table-loading time, which is reported on its own line).

Run from the repository root: ``python bench/bench_metrics.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import csv
import subprocess
import tempfile
import time
from collections.abc import Callable

import numpy as np

from metric_utils import compute_metrics as cm
from metric_utils.metrics import mpjpe, n_mpjpe, pa_mpjpe
from rat7m import catalogue
from rat7m.table import load_annotation, save_annotation

N_TEST = {"s5-d1": 10445, "s5-d2": 14091}


def make_table(rng: np.random.Generator) -> dict:
    """A valid table holding only the official test split (one camera), ~0.5% of markers lost."""
    recs = [catalogue.recording_by_name(name) for name, n in N_TEST.items() for _ in range(n)]
    n = len(recs)
    cam = catalogue.CAMERA_NAMES[0]
    frames = np.concatenate([np.arange(count) * 5 for count in N_TEST.values()]).astype(np.int64)
    paths = np.array([catalogue.image_path(r, cam, f) for r, f in zip(recs, frames.tolist(), strict=True)])
    params = {"IntrinsicMatrix": np.eye(3), "RotationMatrix": np.eye(3), "TranslationVector": np.zeros((1, 3)),
              "TangentialDistortion": np.zeros((1, 2)), "RadialDistortion": np.zeros((1, 2))}  # fmt: skip
    keypoints = rng.normal(size=(n, 20, 3)) * 40 + np.array([-120.0, 50.0, 100.0])
    keypoints[rng.random((n, 20)) < 0.005] = np.nan
    return {
        "cameras": {5: {1: {cam: params}, 2: {cam: params}}},
        "camera_names": np.array([cam]),
        "table": {
            "subject_idx": np.array([r.subject for r in recs]),
            "day_idx": np.array([r.day for r in recs]),
            "train_test": np.full(n, "test"),
            "frame_idx": {cam: frames},
            "image_path": {cam: paths},
            "2D_keypoints": {cam: np.zeros((n, 20, 2))},
            "2D_com": {cam: np.zeros((n, 2))},
            "3D_keypoints": keypoints,
        },
    }  # fmt: skip


def best_of(repeat: int, func: Callable[[], object]) -> tuple[float, object]:
    """Smallest wall time of ``repeat`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), result


def read_with_csv_module(path: Path) -> np.ndarray:
    with open(path, newline="") as handle:
        return np.array([[float(cell) for cell in row] for row in csv.reader(handle)])


def loop_metrics(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The usual per-sample loop: drop NaN joints, Procrustes with one SVD per sample. (n, 3)."""
    out = np.full((len(pred), 3), np.nan)
    for i in range(len(pred)):
        keep = np.isfinite(target[i]).all(axis=1)
        if not keep.any():
            continue
        p, t = pred[i, keep], target[i, keep]
        out[i, 0] = np.linalg.norm(p - t, axis=1).mean()
        pc, tc = p - p.mean(0), t - t.mean(0)
        u, s, vt = np.linalg.svd(tc.T @ pc)
        d = np.sign(np.linalg.det(vt.T @ u.T))
        rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
        scale = (s[0] + s[1] + d * s[2]) / (pc**2).sum() if (pc**2).sum() > 0 else 0.0
        out[i, 1] = np.linalg.norm(scale * pc @ rot + t.mean(0) - t, axis=1).mean()
        k = (p * t).sum() / (p**2).sum()
        out[i, 2] = np.linalg.norm(k * p - t, axis=1).mean()
    return out


def ratio_line(label: str, ours: float, other: float) -> str:
    return f"  {label:<44} {other:8.3f} s   ours/this = {ours / other:5.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (best is kept)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench_metrics_") as tmp:
        root = Path(tmp)
        table = make_table(rng)
        gt = root / catalogue.MINI_ANNOTATION_NAME
        save_annotation(table, gt)
        target = table["table"]["3D_keypoints"]
        pred = np.nan_to_num(target, nan=0.0) + rng.normal(size=target.shape) * 5
        csv_path = root / "preds.csv"
        np.savetxt(csv_path, pred.reshape(len(pred), -1), delimiter=",", fmt="%.6f")
        size_mb = csv_path.stat().st_size / 1e6
        print(f"N = {len(pred)} samples, CSV {size_mb:.1f} MB, {int((~np.isfinite(target)).any(2).sum())} lost markers")

        t_read, ours_rows = best_of(args.repeat, lambda: cm.read_predictions(csv_path))
        t_loadtxt, plain = best_of(args.repeat, lambda: np.loadtxt(csv_path, delimiter=","))
        t_csv, _ = best_of(1, lambda: read_with_csv_module(csv_path))
        if not np.array_equal(ours_rows.reshape(len(plain), -1), plain):
            raise SystemExit("reader disagrees with np.loadtxt")
        print(f"read CSV: ours {t_read:.3f} s")
        print(ratio_line("np.loadtxt (no validation)", t_read, t_loadtxt))
        print(ratio_line("csv module + float per cell", t_read, t_csv))

        read_back = ours_rows

        def ours_compute() -> np.ndarray:
            return np.hstack([f(read_back, target) for f in (mpjpe, pa_mpjpe, n_mpjpe)])

        t_ours, ours_values = best_of(args.repeat, ours_compute)
        t_loop, loop_values = best_of(1, lambda: loop_metrics(read_back, target))
        diff = float(np.nanmax(np.abs(ours_values - loop_values)))
        print(f"compute 3 metrics: ours {t_ours:.3f} s (max |ours - loop| = {diff:.1e} mm)")
        print(ratio_line("per-sample loop", t_ours, t_loop))

        t_load, loaded = best_of(args.repeat, lambda: load_annotation(gt))
        t_eval, result = best_of(args.repeat, lambda: cm.evaluate(read_back, loaded, "test"))
        summary = cm.summarise(result)
        t_write, _ = best_of(args.repeat, lambda: cm.write_outputs(result, summary, root / "out"))
        t_start, _ = best_of(args.repeat, lambda: subprocess.run([sys.executable, "-c", "import numpy"], check=True))
        plt_import = "import numpy, matplotlib.figure, matplotlib.backends.backend_agg"
        t_plt, _ = best_of(args.repeat, lambda: subprocess.run([sys.executable, "-c", plt_import], check=True))
        script = Path(cm.__file__)
        command = [sys.executable, str(script), "--pred_path", str(csv_path), "--gt_path", str(gt),
                   "--save_dir", str(root / "cli"), "-q"]  # fmt: skip
        t_cli, _ = best_of(args.repeat, lambda: subprocess.run(command, check=True, capture_output=True))
        print(f"whole CLI (fresh process): {t_cli:.3f} s; phases in-process:")
        print(f"  python start + import numpy   {t_start:.3f} s")
        print(f"  import matplotlib (for PNG)   {t_plt - t_start:.3f} s")
        print(f"  read predictions              {t_read:.3f} s")
        print(f"  load_annotation (test only)   {t_load:.3f} s")
        print(f"  evaluate (3 metrics, joints)  {t_eval:.3f} s")
        print(f"  write CSV, JSON, per-joint, PNG {t_write:.3f} s")
        naive = t_csv + t_loop
        print(f"  naive read (csv) + loop compute would be {naive:.3f} s before any output: ours/naive = "
              f"{(t_read + t_ours) / naive:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
