"""2D keypoint scoring per camera: pixel MPJPE, PCK and COCO-style OKS AP/AR.

Each (sample, camera) with at least one finite ground-truth keypoint is one "image" with one
rat. Its ground-truth box is the bounding box of its finite keypoints; PCK@alpha counts a joint as
correct within ``alpha * max(box width, box height)``, PCK@r px within ``r`` pixels. A joint with
no finite ground truth is left out of every number, as in the 3D metrics.

OKS AP/AR is pycocotools' own ``COCOeval`` (``iouType="keypoints"``) with
``catalogue.KEYPOINT_SIGMAS``, one area range ("all": RAT7M has no person-size classes) and the
box area as the object area (there are no segmentations). The prediction's score is the mean of its
keypoint confidences when given, else 1. Without pycocotools the pixel metrics are still computed
and AP/AR are reported as missing.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from rat7m import catalogue

#: PCK thresholds as fractions of the longer side of the ground-truth box.
PCK_ALPHAS: tuple[float, ...] = (0.05, 0.1, 0.2)
#: PCK thresholds in pixels.
PCK_PIXELS: tuple[float, ...] = (5.0, 10.0, 20.0)
#: Where a missing predicted keypoint is put for OKS (px): far enough that its OKS term is 0.
MISSING_AT = -1e6
#: What to install for AP/AR.
AP_HINT = "OKS AP/AR need pycocotools: pip install 'rat7m-toolkit[scoring]' (or pip install pycocotools)"


def pixel_errors(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(N, V, J)`` Euclidean pixel error, NaN where the target is not finite."""
    with np.errstate(invalid="ignore"):
        return np.linalg.norm(np.asarray(predicted, np.float64) - np.asarray(target, np.float64), axis=-1)


def box_sizes(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(width, height)`` of the ground-truth box of each (sample, camera), each ``(N, V)``; NaN if empty."""
    with _quiet_nan_warnings():
        low, high = np.nanmin(target, axis=-2), np.nanmax(target, axis=-2)
    return high[..., 0] - low[..., 0], high[..., 1] - low[..., 1]


@contextlib.contextmanager
def _quiet_nan_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices are expected (unlabelled views)
        yield


def _group(error: np.ndarray, longer: np.ndarray, labelled: np.ndarray | None = None) -> dict[str, Any]:
    """MPJPE and PCKs over one group: ``error`` (n, J) with NaN for excluded joints, ``longer`` (n,).

    ``labelled`` (n, J): joints with a finite target. A labelled joint whose error is NaN was not
    predicted (a tool's missing joint): left out of MPJPE, a miss for every PCK.
    """
    valid = np.isfinite(error)
    labelled = valid if labelled is None else labelled
    count = valid.sum(axis=1)
    scored = count > 0
    per_image = np.where(valid, error, 0.0).sum(axis=1)[scored] / count[scored]
    n_joints = int(labelled.sum())
    out: dict[str, Any] = {
        "n_images": int(labelled.any(axis=1).sum()),
        "n_joints": n_joints,
        "mpjpe_px": float(per_image.mean()) if len(per_image) else None,
        "median_px": float(np.median(per_image)) if len(per_image) else None,
    }
    for alpha in PCK_ALPHAS:
        hit = valid & (error <= alpha * longer[:, None])
        out[f"pck@{alpha:g}"] = float(hit.sum() / n_joints) if n_joints else None
    for radius in PCK_PIXELS:
        hit = valid & (error <= radius)
        out[f"pck@{radius:g}px"] = float(hit.sum() / n_joints) if n_joints else None
    return out


def score_2d(predicted: np.ndarray, target: np.ndarray, camera_names: Sequence[str],
             confidence: np.ndarray | None = None, *, with_ap: bool = True,
             scores: np.ndarray | None = None) -> dict[str, Any]:  # fmt: skip
    """Score 2D predictions per camera and over all cameras.

    Args:
        predicted: ``(N, V, J, 2)`` pixel predictions; NaN where a tool did not predict the joint (a miss:
            left out of MPJPE, wrong for every PCK, no detection for AP when the whole view is NaN).
        target: ``(N, V, J, 2)`` ground truth, NaN where unlabelled.
        camera_names: the V camera names (keys of the per-camera results).
        confidence: ``(N, V, J)`` per-keypoint confidence, or None.
        scores: ``(N, V)`` each view's detection score for ranking in AP (a tool's own), else the mean confidence.
        with_ap: compute OKS AP/AR (needs pycocotools; without it ``ap`` is None and ``ap_note`` says why).

    Returns:
        ``{"cameras": {name: group}, "all": group}`` where a group has ``n_images``, ``n_joints``,
        ``mpjpe_px`` (mean over images of the mean joint error), ``median_px``, ``pck@...`` and,
        with pycocotools, ``ap``, ``ap50``, ``ap75``, ``ar``.
    """
    error = pixel_errors(predicted, target)
    labelled = np.isfinite(np.asarray(target, np.float64)).all(axis=-1)
    width, height = box_sizes(target)
    longer = np.fmax(width, height)
    N, V, J = error.shape
    result: dict[str, Any] = {
        "cameras": {name: _group(error[:, v], longer[:, v], labelled[:, v]) for v, name in enumerate(camera_names)},
        "all": _group(error.reshape(N * V, J), longer.reshape(-1), labelled.reshape(N * V, J)),
    }
    if with_ap:
        ap = oks_ap(predicted, target, confidence, scores)
        if ap is None:
            result["ap_note"] = AP_HINT
        else:
            for v, name in enumerate(camera_names):
                result["cameras"][name].update(ap["cameras"][v])
            result["all"].update(ap["all"])
    return result


def coco_dicts(predicted: np.ndarray, target: np.ndarray, confidence: np.ndarray | None = None,
               scores: np.ndarray | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:  # fmt: skip
    """The ground truth as a COCO keypoint dataset and the predictions as COCO results.

    Image id ``n * V + v + 1`` is sample n, camera v; only (sample, camera) pairs with a finite
    ground-truth keypoint are included. Ground-truth visibility is 2 where finite, else 0. A
    prediction with no finite keypoint is no detection (no result); a non-finite predicted keypoint
    (a tool's missing joint) is put :data:`MISSING_AT` px away, so it adds nothing to the OKS.
    """
    N, V, J = target.shape[:3]
    finite = np.isfinite(target).all(axis=-1)
    width, height = box_sizes(target)
    with _quiet_nan_warnings():
        x0, y0 = np.nanmin(target[..., 0], axis=-1), np.nanmin(target[..., 1], axis=-1)
    images, annotations, results = [], [], []
    gt_xyv = np.concatenate([np.where(finite[..., None], target, 0.0), 2.0 * finite[..., None]], axis=-1)
    score = np.ones((N, V)) if confidence is None else np.asarray(confidence, np.float64).mean(axis=-1)
    if scores is not None:
        score = np.asarray(scores, np.float64)
    dt_v = np.ones((N, V, J, 1)) if confidence is None else np.asarray(confidence, np.float64)[..., None]
    predicted = np.asarray(predicted, np.float64)
    detected = np.isfinite(predicted).all(axis=-1)
    dt_xyv = np.concatenate([np.where(detected[..., None], predicted, MISSING_AT), dt_v], axis=-1)
    detected = detected.any(axis=-1)
    for n, v in np.argwhere(finite.any(axis=-1)).tolist():
        image_id = n * V + v + 1
        images.append({"id": image_id})
        box = [float(x0[n, v]), float(y0[n, v]), float(width[n, v]), float(height[n, v])]
        annotations.append({
            "id": image_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": box,
            "area": box[2] * box[3], "num_keypoints": int(finite[n, v].sum()),
            "keypoints": gt_xyv[n, v].ravel().tolist(),
        })  # fmt: skip
        if detected[n, v]:
            results.append({"image_id": image_id, "category_id": 1, "keypoints": dt_xyv[n, v].ravel().tolist(),
                            "score": float(score[n, v])})  # fmt: skip
    dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "rat", "keypoints": list(catalogue.JOINT_NAMES), "skeleton": []}],
    }
    return dataset, results


def _summarise_eval(evaluator: Any) -> dict[str, float | None]:
    """AP (mean over OKS 0.50:0.95), AP50, AP75 and AR from an accumulated COCOeval (one area, one maxDets)."""
    precision = evaluator.eval["precision"][:, :, 0, 0, -1]  # (T, R)
    recall = evaluator.eval["recall"][:, 0, 0, -1]  # (T,)

    def mean(values: np.ndarray) -> float | None:
        kept = values[values > -1]
        return float(kept.mean()) if kept.size else None

    thresholds = evaluator.params.iouThrs
    return {
        "ap": mean(precision),
        "ap50": mean(precision[np.isclose(thresholds, 0.5)]),
        "ap75": mean(precision[np.isclose(thresholds, 0.75)]),
        "ar": mean(recall),
    }


def oks_ap(predicted: np.ndarray, target: np.ndarray, confidence: np.ndarray | None = None,
           scores: np.ndarray | None = None) -> dict[str, Any] | None:  # fmt: skip
    """OKS AP/AR with pycocotools, per camera (``"cameras"``: list by view index) and overall; None without it."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        return None
    dataset, results = coco_dicts(predicted, target, confidence, scores)
    if not dataset["images"]:
        return None
    if not results:  # nothing detected: pycocotools' loadRes cannot take an empty list
        nothing = {"ap": 0.0, "ap50": 0.0, "ap75": 0.0, "ar": 0.0}
        return {"cameras": [dict(nothing) for _ in range(target.shape[1])], "all": nothing}
    V = target.shape[1]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(catalogue.KEYPOINT_SIGMAS)
        evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0.0, 1e12]], ["all"]
        evaluator.params.imgIds = sorted(gt.getImgIds())
        evaluator.evaluate()  # image by image in Python: the slow part (~0.3 ms an image)
        evaluator.accumulate()
        overall = _summarise_eval(evaluator)
        per_camera = [_accumulate_subset(evaluator, v, V) for v in range(V)]
    return {"cameras": per_camera, "all": overall}


def _accumulate_subset(evaluator: Any, view: int, n_views: int) -> dict[str, float | None]:
    """AP/AR of one camera's images from the evaluation already done, without evaluating again.

    With one category and one area range, ``evalImgs[i]`` is the result of ``imgIds[i]``; accumulating
    over a subset is done by giving ``accumulate`` that subset as both the evaluated and the wanted
    images (its own subset selection indexes ``evalImgs`` by position in the wanted list, which is
    only right when the two lists are the same).
    """
    params, evaluated, images = evaluator._paramsEval, evaluator.evalImgs, evaluator._paramsEval.imgIds
    keep = [i for i, image_id in enumerate(images) if (image_id - 1) % n_views == view]
    if not keep:
        return {"ap": None, "ap50": None, "ap75": None, "ar": None}
    subset = copy.deepcopy(params)
    subset.imgIds = [images[i] for i in keep]
    try:
        evaluator._paramsEval, evaluator.evalImgs = subset, [evaluated[i] for i in keep]
        evaluator.accumulate(copy.deepcopy(subset))
        return _summarise_eval(evaluator)
    finally:
        evaluator._paramsEval, evaluator.evalImgs = params, evaluated


def format_2d(result: dict[str, Any]) -> str:
    """The printed table: one line per camera and one for all cameras."""
    keys = ["n_images", "mpjpe_px", "median_px", *(f"pck@{a:g}" for a in PCK_ALPHAS),
            *(f"pck@{r:g}px" for r in PCK_PIXELS)]  # fmt: skip
    titles = ["images", "MPJPE px", "median px", *(f"PCK@{a:g}" for a in PCK_ALPHAS),
              *(f"PCK@{r:g}px" for r in PCK_PIXELS)]  # fmt: skip
    if "ap" in result["all"]:
        keys += ["ap", "ap50", "ap75", "ar"]
        titles += ["AP", "AP50", "AP75", "AR"]

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            return "-"
        return str(value) if isinstance(value, int) else f"{value:.3f}" if value <= 1.0 else f"{value:.2f}"

    def row(label: str, group: dict[str, Any]) -> list[str]:
        return [label] + [cell(group.get(k)) for k in keys]

    table = [["camera", *titles]] + [row(n, g) for n, g in result["cameras"].items()] + [row("all", result["all"])]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in table]  # fmt: skip
    if "ap_note" in result:
        lines.append(result["ap_note"])
    return "\n".join(lines)
