"""Benchmark OKS AP/AR of a full test split: 24536 samples x 6 cameras = 147216 images, 20 keypoints.

Side by side on the same predictions (boxes of RAT7M's size, 1% of labels missing, errors of 0-10 px,
random confidences): ours (``rat7m.metrics2d.oks_ap``: closed form, overall and per camera)
against pycocotools' ``COCOeval`` (``evaluate`` + ``accumulate`` overall and per camera, as
``compute_metrics.py --pred2d`` ran it before), on ``--coco_samples`` samples (pycocotools evaluates
image by image in Python, ~1 min for the split) scaled to the split; on that subset both are checked
to agree. Run from the repository root: ``python bench/bench_oks.py [--coco_samples 4000]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import contextlib
import io
import time

import numpy as np

from rat7m import catalogue
from rat7m.metrics2d import coco_dicts, oks_ap

#: The official test split: s5-d1 10445 + s5-d2 14091 samples.
N_TEST = 24536
KEYS = ("ap", "ap50", "ap75", "ar")


def _coco(pred: np.ndarray, target: np.ndarray, confidence: np.ndarray) -> list[np.ndarray]:
    """pycocotools' AP, AP50, AP75, AR over all images, then per camera."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset, results = coco_dicts(pred, target, confidence)
    V = target.shape[1]
    out = []
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        for camera in (None, *range(V)):
            evaluator = COCOeval(gt, gt.loadRes(results), iouType="keypoints")
            evaluator.params.kpt_oks_sigmas = np.asarray(catalogue.KEYPOINT_SIGMAS)
            evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0.0, np.inf]], ["all"]
            if camera is not None:
                evaluator.params.imgIds = [i for i in sorted(gt.getImgIds()) if (i - 1) % V == camera]
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            out.append(evaluator.stats[[0, 1, 2, 5]])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours; the best is kept")
    parser.add_argument("--coco_samples", type=int, default=4000,
                        help="samples given to pycocotools, scaled to the split (default: %(default)s)")  # fmt: skip
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    centre = rng.uniform([300, 300], [1000, 800], size=(N_TEST, 6, 1, 2))
    target = centre + rng.normal(0, 60, size=(N_TEST, 6, catalogue.N_JOINTS, 2))
    target[rng.random(target.shape[:3]) < 0.01] = np.nan
    pred = np.nan_to_num(target) + rng.normal(size=target.shape) * rng.uniform(0, 10, size=(N_TEST, 6, 1, 1))
    confidence = rng.uniform(0, 1, size=target.shape[:3])
    print(f"{N_TEST} samples x 6 cameras = {N_TEST * 6} images")

    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        ours = oks_ap(pred, target, confidence)
        times.append(time.perf_counter() - started)
    print(f"ours (overall + 6 cameras): {min(times):.2f} s for the split; AP {ours['all']['ap']:.4f}")

    n = args.coco_samples
    started = time.perf_counter()
    try:
        theirs = _coco(pred[:n], target[:n], confidence[:n])
    except ImportError:
        print("pycocotools is not installed: no reference run")
        return 0
    coco_time = time.perf_counter() - started
    scaled = coco_time / n * N_TEST
    subset = oks_ap(pred[:n], target[:n], confidence[:n])
    groups = [subset["all"], *subset["cameras"]]
    agree = max(abs(g[k] - s[i]) for g, s in zip(groups, theirs, strict=True) for i, k in enumerate(KEYS))
    print(f"pycocotools on {n} samples: {coco_time:.1f} s = {scaled:.0f} s scaled to the split; "
          f"pycocotools / ours = {scaled / min(times):.0f}x; AP/AP50/AP75/AR agree to {agree:.1e}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
