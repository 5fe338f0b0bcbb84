"""OKS AP/AR in closed form against pycocotools' own COCOeval: equal to 1e-12 (in fact to the bit) on
random and adversarial cases, per camera and overall, and not gameable where pycocotools is.

pycocotools is the reference here, run on the COCO dicts of the same data with the area range
``[0, inf]`` (see :mod:`rat7m.metrics2d`); it is a test-time dependency only.
"""

import contextlib
import io

import numpy as np
import pytest

from rat7m import catalogue
from rat7m.metrics2d import average_precision, coco_dicts, oks, oks_ap, score_2d

KEYS = ("ap", "ap50", "ap75", "ar")


def coco_reference(pred, target, confidence, camera=None, area_max=np.inf) -> tuple[np.ndarray, dict]:
    """pycocotools' AP, AP50, AP75, AR (its ``stats``) and its per-image OKS, by image id."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset, results = coco_dicts(pred, target, confidence)
    V = target.shape[1]
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(over="ignore", invalid="ignore"):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(catalogue.KEYPOINT_SIGMAS)
        evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0.0, area_max]], ["all"]
        if camera is not None:
            evaluator.params.imgIds = [i for i in sorted(gt.getImgIds()) if (i - 1) % V == camera]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ious = {image: float(value[0, 0]) for (image, _), value in evaluator.ious.items() if len(value)}
    return evaluator.stats[[0, 1, 2, 5]], ious


def assert_equal_to_coco(pred, target, confidence, cameras=(None, 0, 2)):
    ours = oks_ap(pred, target, confidence)
    V = target.shape[1]
    for camera in cameras:
        stats, ious = coco_reference(pred, target, confidence, camera)
        group = ours["all"] if camera is None else ours["cameras"][camera]
        np.testing.assert_allclose([group[k] for k in KEYS], stats, rtol=0, atol=1e-12, err_msg=f"camera {camera}")
    similarity = oks(pred, target)
    for image, value in ious.items():  # the last reference run's images
        np.testing.assert_array_equal(similarity[(image - 1) // V, (image - 1) % V], value)
    return ours


def random_case(seed: int, n: int = 150, lost: float = 0.2):
    rng = np.random.default_rng(seed)
    target = rng.uniform(0, 600, size=(n, 6, 20, 2))
    target[rng.random((n, 6, 20)) < lost] = np.nan
    scale = rng.uniform(0.0, 80.0, size=(n, 6))[..., None, None]  # OKS spread over 0..1
    pred = np.nan_to_num(target) + rng.normal(size=target.shape) * scale
    return pred, target, rng.uniform(0.0, 1.0, size=(n, 6, 20))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_cases_equal_pycocotools(seed):
    pred, target, confidence = random_case(seed)
    ours = assert_equal_to_coco(pred, target, confidence)
    assert 0.1 < ours["all"]["ap"] < 0.95  # the ranking matters


def test_adversarial_cases_equal_pycocotools():
    """Ties in score, missing joints, empty images, zero-area boxes, exact hits, far misses, no confidences."""
    pred, target, confidence = random_case(3, n=120, lost=0.5)
    target[:10] = np.nan  # samples with no label in any camera
    target[10:20, 1] = np.nan  # empty images of one camera
    target[20:40, :, 1:] = np.nan  # one labelled joint: a zero-area box (exact only if the prediction is)
    pred[20:30] = np.nan_to_num(target[20:30])
    target[40:50, :, :, 1] = 100.0  # collinear keypoints: zero area, width > 0
    pred[50:60] = np.nan_to_num(target[50:60])  # perfect predictions: OKS exactly 1
    pred[60:65] += 1e6  # far off: OKS 0
    pred[65:68] = np.inf  # infinite: an infinite error, a detection with OKS 0 (never no detection)
    pred[68:70, :, :3] = np.nan  # three joints a tool did not predict: 0 in the OKS
    pred[70:72] = np.nan  # nothing predicted: no detection
    confidence[::2] = 0.5  # many exact ties in score, across cameras and samples
    confidence[70:80] = 0.0
    assert_equal_to_coco(pred, target, confidence, cameras=(None, 0, 1, 5))
    assert_equal_to_coco(pred, target, None, cameras=(None, 1))  # every score 1: the order is the image order


def test_a_score_tie_is_broken_by_image_order_as_coco_does():
    """Two images with the same score, one hit and one miss: which is ranked first changes AP."""
    similarity, score = np.array([1.0, 0.0]), np.array([0.5, 0.5])
    first = average_precision(similarity, score)
    second = average_precision(similarity[::-1], score)
    assert first["ap"] > second["ap"]
    target = np.full((1, 2, 20, 2), 50.0) + np.arange(20)[:, None] * [1, 2]
    pred = target.copy()
    pred[0, 1] += 1000.0  # camera 2 misses; same score
    for order in (slice(None), slice(None, None, -1)):
        assert_equal_to_coco(pred[:, order], target[:, order], None, cameras=(None,))


def test_a_full_split_gives_the_ap_its_ranking_implies():
    """24536 x 6 images (the official test split; speed in bench/bench_oks.py): half exact, ranked first, half
    far off. Precision is 1 up to recall 0.5 and the curve ends there: AP = 51 / 101 recall points, AR = 0.5."""
    rng = np.random.default_rng(7)
    target = rng.uniform(0, 1000, size=(24536, 6, 20, 2))
    pred = target.copy()
    wrong = rng.permutation(24536 * 6)[: 24536 * 3]
    pred.reshape(-1, 20, 2)[wrong] += 5000.0
    confidence = np.ones(target.shape[:3])
    confidence.reshape(-1, 20)[wrong] = 0.5
    result = oks_ap(pred, target, confidence)["all"]
    assert result == {"ap": pytest.approx(51 / 101, abs=1e-12), "ap50": pytest.approx(51 / 101, abs=1e-12),
                      "ap75": pytest.approx(51 / 101, abs=1e-12), "ar": 0.5}  # fmt: skip


def test_far_off_predictions_are_false_positives_not_ignored():
    """pycocotools' "all" area range ends at 1e10 px^2 and ignores an unmatched detection with a larger box:
    a file that sends its doubtful images to 1e200 px would then score a higher AP than the honest file."""
    pred, target, confidence = random_case(4)
    gamed = pred.copy()
    miss = oks(pred, target) < 0.5
    gamed[miss] *= 1e200  # the images it would miss anyway, sent far away (boxes of ~1e400 px^2)
    honest = oks_ap(pred, target, confidence)["all"]
    cheat = oks_ap(gamed, target, confidence)["all"]
    assert cheat["ap"] <= honest["ap"] and cheat["ar"] <= honest["ar"]
    # pycocotools with its own default range is fooled; with [0, inf] it agrees with us
    fooled, _ = coco_reference(gamed, target, confidence, area_max=1e5**2)
    assert fooled[0] > honest["ap"] + 0.01
    assert_equal_to_coco(gamed, target, confidence, cameras=(None,))


def test_a_nan_prediction_is_a_miss():
    """pycocotools compares ``oks < threshold`` and so matches a NaN OKS at every threshold; we count a miss.

    A NaN joint is one a tool did not predict: a miss for PCK, 0 in the OKS, out of MPJPE; a view with
    no joint predicted is no detection at all.
    """
    pred, target, confidence = random_case(5, n=40)
    honest = score_2d(pred, target, list(catalogue.CAMERA_NAMES), confidence)["all"]
    pred[:, :, 0] = np.nan  # joint 0 not predicted anywhere
    partial = score_2d(pred, target, list(catalogue.CAMERA_NAMES), confidence)["all"]
    assert partial["pck@20px"] < honest["pck@20px"] and partial["ap"] < honest["ap"]
    pred[:] = np.nan  # nothing predicted
    result = score_2d(pred, target, list(catalogue.CAMERA_NAMES), confidence)["all"]
    assert result["ap"] == 0.0 and result["ar"] == 0.0
    assert result["mpjpe_px"] is None and result["pck@20px"] == 0.0


def test_huge_confidences_rank_like_any_others():
    pred, target, confidence = random_case(6, n=60)
    base = oks_ap(pred, target, confidence)["all"]
    assert oks_ap(pred, target, confidence * 1e200)["all"] == base  # the ranking is all a score decides
    huge = np.full_like(confidence, 1e308)  # a mean that overflows to inf: every image tied
    assert oks_ap(pred, target, huge)["all"] == oks_ap(pred, target, None)["all"]
