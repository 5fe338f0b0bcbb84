"""2D keypoint scoring per camera: pixel MPJPE, PCK and COCO-style OKS AP/AR.

Each (sample, camera) with at least one finite ground-truth keypoint is one "image" with one
rat. Its ground-truth box is the bounding box of its finite keypoints; PCK@alpha counts a joint as
correct within ``alpha * max(box width, box height)``, PCK@r px within ``r`` pixels. A joint is
left out of every number only where its GROUND TRUTH is missing, as in the 3D metrics: a prediction
that is not finite, or so far off that its distance overflows, is an infinite error (a miss),
never an exclusion, so no prediction can improve a score by being absurd.

OKS AP/AR are COCO's (``COCOeval`` with ``iouType="keypoints"``, ``catalogue.KEYPOINT_SIGMAS``, the
box area as the object area, one area range covering every area, at most 20 detections per image),
computed here in closed form. With exactly one ground-truth rat and one prediction per image,
COCO's greedy matching pairs the two whenever their OKS reaches the threshold, so the whole
evaluation is: one OKS per image, one stable sort of the images by score (COCO's own
``argsort(-score, kind="mergesort")``, ties kept in image order), and a cumulative sum of hits per
threshold. Every floating-point step is COCO's own, in its order (the OKS sum follows numpy's
pairwise summation of the image's own joints), so the numbers equal pycocotools' to the last bit on
finite input (``tests/evaluation/test_oks_ap.py`` checks them against pycocotools itself). Two deliberate
differences, both where pycocotools can be gamed: the area range is ``[0, inf]`` (pycocotools'
"all" stops at 1e10 px^2, and an unmatched prediction whose box is larger is ignored instead of
counted as a false positive), and a NaN OKS (a NaN prediction) is a miss (pycocotools matches it).
The prediction's score is the mean of its keypoint confidences when given, else 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from rat7m import catalogue

__all__ = [
    "MISSING_AT",
    "OKS_THRESHOLDS",
    "PCK_ALPHAS",
    "PCK_PIXELS",
    "RECALL_POINTS",
    "average_precision",
    "box_sizes",
    "coco_dicts",
    "format_2d",
    "image_scores",
    "oks",
    "oks_ap",
    "pixel_errors",
    "score_2d",
]

#: PCK thresholds as fractions of the longer side of the ground-truth box.
PCK_ALPHAS: tuple[float, ...] = (0.05, 0.1, 0.2)
#: PCK thresholds in pixels.
PCK_PIXELS: tuple[float, ...] = (5.0, 10.0, 20.0)
#: COCO's OKS thresholds and recall points, built exactly as ``pycocotools.cocoeval.Params`` builds them.
OKS_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_POINTS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
#: Where a missing predicted keypoint is put in the COCO results for pycocotools (px): its OKS term is 0.
MISSING_AT = -1e6


def pixel_errors(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(N, V, J)`` Euclidean pixel error: NaN where the target is not finite or the joint was not predicted.

    A NaN prediction is a joint a tool did not predict (our own reader refuses NaN): the caller leaves
    it out of MPJPE, counts it and makes it a miss for PCK and OKS. ``np.hypot`` does not overflow before
    the distance itself does (``np.linalg.norm`` squares first and overflows from ~1.3e154 px); a
    distance that is still not finite (an infinite prediction, or one beyond ~1.8e308) is ``inf``, so it
    counts as an error and can never look like a missing target.
    """
    predicted, target = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.hypot(predicted[..., 0] - target[..., 0], predicted[..., 1] - target[..., 1])
    labelled = np.isfinite(target).all(axis=-1)
    predicted_at_all = ~np.isnan(predicted).any(axis=-1)
    return np.where(labelled & predicted_at_all, np.where(np.isnan(error), np.inf, error), np.nan)


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
    """MPJPE and PCKs over one group: ``error`` (n, J), ``longer`` (n,).

    ``error`` is NaN where the target is missing or the joint was not predicted (a tool's missing
    joint), ``inf`` for an absurd prediction. ``labelled`` (n, J): joints with a finite target. A
    labelled joint that was not predicted is left out of MPJPE (and counted by the caller) and is a
    miss for every PCK; an infinite error stays in MPJPE (which is then inf): never an exclusion.
    """
    valid = ~np.isnan(error)
    labelled = valid if labelled is None else labelled
    count = valid.sum(axis=1)
    scored = count > 0
    n_joints = int(labelled.sum())
    with np.errstate(invalid="ignore", over="ignore"):  # absurd predictions: inf, honestly
        per_image = np.where(valid, error, 0.0).sum(axis=1)[scored] / count[scored]
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
        predicted: ``(N, V, J, 2)`` pixel predictions; NaN where a tool did not predict the joint (left
            out of MPJPE, a miss for every PCK and adds 0 to OKS; a view with no joint predicted is no
            detection for AP); an infinite or absurd one is an infinite error.
        target: ``(N, V, J, 2)`` ground truth, NaN where unlabelled.
        camera_names: the V camera names (keys of the per-camera results).
        confidence: ``(N, V, J)`` per-keypoint confidence, or None.
        scores: ``(N, V)`` each view's detection score for ranking in AP (a tool's own), else the mean confidence.
        with_ap: also compute OKS AP/AR.

    Returns:
        ``{"cameras": {name: group}, "all": group}`` where a group has ``n_images``, ``n_joints``,
        ``mpjpe_px`` (mean over images of the mean joint error), ``median_px``, ``pck@...`` and
        ``ap``, ``ap50``, ``ap75``, ``ar`` (None for a group without images).
    """
    error = pixel_errors(predicted, target)
    labelled = np.all(np.isfinite(np.asarray(target, np.float64)), axis=-1)
    width, height = box_sizes(target)
    longer = np.fmax(width, height)
    N, V, J = error.shape
    result: dict[str, Any] = {
        "cameras": {name: _group(error[:, v], longer[:, v], labelled[:, v]) for v, name in enumerate(camera_names)},
        "all": _group(error.reshape(N * V, J), longer.reshape(-1), labelled.reshape(N * V, J)),
    }
    if with_ap:
        ap = oks_ap(predicted, target, confidence, scores)
        for v, name in enumerate(camera_names):
            result["cameras"][name].update(ap["cameras"][v])
        result["all"].update(ap["all"])
    return result


def image_scores(confidence: np.ndarray | None, shape: tuple[int, int], scores: np.ndarray | None = None) -> np.ndarray:
    """``(N, V)`` detection score: ``scores`` if given (a tool's own), else the mean keypoint confidence (1 without).

    Any finite confidence gives a finite or infinite score (1e200 is just a very confident detection);
    a NaN score ranks last.
    """
    if scores is not None:
        score = np.asarray(scores, np.float64)
    elif confidence is None:
        return np.ones(shape)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            score = np.nanmean(np.asarray(confidence, np.float64), axis=-1) if np.isnan(confidence).any() \
                else np.asarray(confidence, np.float64).mean(axis=-1)
    return np.where(np.isnan(score), -np.inf, score)


def oks(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(N, V)`` object keypoint similarity of each image, as ``COCOeval.computeOks``; NaN for an empty image.

    Per joint ``e = d^2 / (2 sigma)^2 / (area + eps) / 2`` over the labelled joints, OKS the mean of
    ``exp(-e)``: the same operations in the same order as pycocotools. Its mean is a sum over the image's
    labelled joints only, which numpy sums pairwise (8 partial sums from 8 values on); the joints are
    packed to the left per image and the rows of each joint count summed together, so every image is
    summed exactly as pycocotools sums it. A joint not predicted (NaN) adds 0; a NaN OKS becomes 0: a miss.
    """
    target = np.asarray(target, np.float64)
    predicted = np.asarray(predicted, np.float64)
    labelled = np.isfinite(target).all(axis=-1)  # (N, V, J)
    width, height = box_sizes(target)
    variances = (np.asarray(catalogue.KEYPOINT_SIGMAS) * 2) ** 2
    with np.errstate(over="ignore", invalid="ignore"):
        dx = predicted[..., 0] - target[..., 0]
        dy = predicted[..., 1] - target[..., 1]
        e = (dx**2 + dy**2) / variances / ((width * height)[..., None] + np.spacing(1)) / 2
    e = np.where(np.isnan(predicted).any(axis=-1) & labelled, np.inf, e)  # not predicted: exp(-inf) = 0
    shape = labelled.shape[:2]
    labelled, e = labelled.reshape(-1, labelled.shape[-1]), e.reshape(-1, labelled.shape[-1])
    count = labelled.sum(axis=1)
    # stable argsort puts each row's labelled joints first, in joint order: the values COCO keeps
    packed = np.take_along_axis(e, np.argsort(~labelled, axis=1, kind="stable"), axis=1)
    out = np.full(len(e), np.nan)
    for k in np.unique(count[count > 0]).tolist():
        rows = np.flatnonzero(count == k)
        similarity = np.exp(-np.ascontiguousarray(packed[rows, :k]))
        out[rows] = similarity.sum(axis=1) / k
    present = count > 0
    out[present & np.isnan(out)] = 0.0
    return out.reshape(shape)


def average_precision(similarity: np.ndarray, score: np.ndarray, detected: np.ndarray | None = None
                      ) -> dict[str, float | None]:  # fmt: skip
    """AP (mean over OKS 0.50:0.95 and 101 recall points), AP50, AP75 and AR of one group of images.

    Args:
        similarity: ``(n,)`` OKS of each image, in image order (COCO's sorted image ids).
        score: ``(n,)`` its detection score.
        detected: ``(n,)`` whether the image has a detection (default: all); one without is a miss
            that adds no false positive, as an image without a result in COCO.

    Returns:
        ``ap``, ``ap50``, ``ap75``, ``ar``, each COCO's ``accumulate`` + ``summarize`` number; None if n is 0.
    """
    n = len(similarity)
    if n == 0:
        return {"ap": None, "ap50": None, "ap75": None, "ar": None}
    if detected is not None:
        similarity, score = similarity[detected], score[detected]
    if len(similarity) == 0:
        return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0, "ar": 0.0}
    order = np.argsort(-score, kind="mergesort")
    hits = similarity[order][None, :] >= OKS_THRESHOLDS[:, None]  # (T, n): COCO's dtMatches, nothing ignored
    tp = np.cumsum(hits, axis=1).astype(np.float64)
    fp = np.cumsum(~hits, axis=1).astype(np.float64)
    recall = tp / n
    precision = tp / (fp + tp + np.spacing(1))
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # COCO's right-to-left envelope
    sampled = np.zeros((len(OKS_THRESHOLDS), len(RECALL_POINTS)))
    for t in range(len(OKS_THRESHOLDS)):
        at = np.searchsorted(recall[t], RECALL_POINTS, side="left")
        inside = at < recall.shape[1]  # COCO stops at the first recall point past the curve: those stay 0
        sampled[t, inside] = precision[t, at[inside]]
    fifty, seventy_five = (int(np.flatnonzero(OKS_THRESHOLDS == t)[0]) for t in (0.5, 0.75))
    return {
        "ap": float(np.mean(sampled.ravel())),
        "ap50": float(np.mean(sampled[fifty])),
        "ap75": float(np.mean(sampled[seventy_five])),
        "ar": float(np.mean(recall[:, -1])),
    }


def oks_ap(predicted: np.ndarray, target: np.ndarray, confidence: np.ndarray | None = None,
           scores: np.ndarray | None = None) -> dict[str, Any]:  # fmt: skip
    """OKS AP/AR per camera (``"cameras"``: a list by view index) and over all images (``"all"``).

    An image is a (sample, camera) with a labelled joint; images are taken in COCO's order (sample
    major, image id ``n * V + v + 1``), which decides ties in score. A view with no predicted joint
    is no detection.
    """
    similarity = oks(predicted, target)
    score = image_scores(confidence, similarity.shape, scores)
    present = np.any(np.all(np.isfinite(target), axis=-1), axis=-1)  # (N, V)
    detected = ~np.all(np.any(np.isnan(np.asarray(predicted, np.float64)), axis=-1), axis=-1)  # a joint predicted
    per_camera = [average_precision(similarity[present[:, v], v], score[present[:, v], v], detected[present[:, v], v])
                  for v in range(similarity.shape[1])]  # fmt: skip
    return {"cameras": per_camera, "all": average_precision(similarity[present], score[present], detected[present])}


def coco_dicts(predicted: np.ndarray, target: np.ndarray, confidence: np.ndarray | None = None,
               scores: np.ndarray | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:  # fmt: skip
    """The ground truth as a COCO keypoint dataset and the predictions as COCO results (for pycocotools).

    Image id ``n * V + v + 1`` is sample n, camera v; only (sample, camera) pairs with a finite
    ground-truth keypoint are included. Ground-truth visibility is 2 where finite, else 0. A
    prediction with every keypoint NaN is no detection (no result), as in :func:`oks_ap`; a non-finite
    predicted keypoint (NaN: a tool's missing joint; inf) is put :data:`MISSING_AT` px away, so it adds
    nothing to the OKS.
    """
    N, V, J = target.shape[:3]
    finite = np.isfinite(target).all(axis=-1)
    width, height = box_sizes(target)
    with _quiet_nan_warnings():
        x0, y0 = np.nanmin(target[..., 0], axis=-1), np.nanmin(target[..., 1], axis=-1)
    images, annotations, results = [], [], []
    gt_xyv = np.concatenate([np.where(finite[..., None], target, 0.0), 2.0 * finite[..., None]], axis=-1)
    score = image_scores(confidence, (N, V), scores)
    dt_v = np.ones((N, V, J, 1)) if confidence is None else np.asarray(confidence, np.float64)[..., None]
    predicted = np.asarray(predicted, np.float64)
    usable = np.isfinite(predicted).all(axis=-1)
    dt_xyv = np.concatenate([np.where(usable[..., None], predicted, MISSING_AT), dt_v], axis=-1)
    detected = (~np.isnan(predicted).any(axis=-1)).any(axis=-1)  # as oks_ap: some joint predicted (inf counts)
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
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return "-"
        if isinstance(value, float) and np.isinf(value):
            return "inf"
        return str(value) if isinstance(value, int) else f"{value:.3f}" if value <= 1.0 else f"{value:.2f}"

    def row(label: str, group: dict[str, Any]) -> list[str]:
        return [label] + [cell(group.get(k)) for k in keys]

    table = [["camera", *titles]] + [row(n, g) for n, g in result["cameras"].items()] + [row("all", result["all"])]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in table]  # fmt: skip
    return "\n".join(lines)
