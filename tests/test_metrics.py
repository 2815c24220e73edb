"""Tests for unet_lib.metrics: hand-counted confusion matrices and the empty-mask conventions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_lib import metrics
from unet_lib.metrics import binarize, confusion, dice, iou, precision, recall, summarize

# A 3x4 hand-made case.
#   pred            target
#   1 1 0 0         1 0 0 0
#   1 1 0 0         1 1 1 0
#   0 0 0 1         0 0 0 0
# TP = 3 (0,0) (1,0) (1,1); FP = 2 (0,1) (2,3); FN = 1 (1,2); TN = 12 - 6 = 6
PRED = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1]], dtype=bool)
TARGET = np.array([[1, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=bool)
TP, FP, FN, TN = 3, 2, 1, 6


def test_confusion_hand_counted():
    c = confusion(PRED, TARGET)
    assert [c.tp.item(), c.fp.item(), c.fn.item(), c.tn.item()] == [TP, FP, FN, TN]
    assert c.tp.dtype == torch.float64 and c.tp.shape == (1,)


def test_dice_iou_precision_recall_hand_counted():
    assert dice(PRED, TARGET).item() == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))   # 6/9
    assert iou(PRED, TARGET).item() == pytest.approx(3 / (3 + 2 + 1))            # 1/2
    assert precision(PRED, TARGET).item() == pytest.approx(3 / 5)
    assert recall(PRED, TARGET).item() == pytest.approx(3 / 4)


def test_metrics_are_not_symmetric_where_they_should_not_be():
    # swapping prediction and target swaps FP and FN: precision <-> recall, Dice and IoU unchanged
    assert precision(TARGET, PRED).item() == pytest.approx(3 / 4)
    assert recall(TARGET, PRED).item() == pytest.approx(3 / 5)
    assert dice(TARGET, PRED).item() == pytest.approx(6 / 9)


def test_per_image_batch():
    # image 0: the hand case above; image 1: perfect; image 2: disjoint single pixels
    #   image 2: pred (0,0), target (2,3): TP = 0, FP = 1, FN = 1 -> Dice 0, IoU 0
    p2 = np.zeros((3, 4), bool)
    p2[0, 0] = True
    t2 = np.zeros((3, 4), bool)
    t2[2, 3] = True
    pred = np.stack([PRED, TARGET, p2])
    target = np.stack([TARGET, TARGET, t2])
    d = dice(pred, target)
    assert d.shape == (3,) and d.dtype == torch.float64
    assert d.tolist() == pytest.approx([6 / 9, 1.0, 0.0])
    assert iou(pred, target).tolist() == pytest.approx([0.5, 1.0, 0.0])
    # per image, not pooled over the batch: pooled Dice would be 2*(3+4)/(2*7 + 3 + 2) = 14/19
    assert d.mean().item() != pytest.approx(14 / 19)


def test_both_empty_is_one_and_one_empty_is_zero():
    empty = np.zeros((4, 4), bool)
    full = np.ones((4, 4), bool)
    for fn in (dice, iou, precision, recall):
        assert fn(empty, empty).item() == 1.0, fn.__name__
    assert dice(empty, full).item() == 0.0      # prediction empty, target not
    assert iou(empty, full).item() == 0.0
    assert dice(full, empty).item() == 0.0      # target empty, prediction not
    assert iou(full, empty).item() == 0.0


def test_precision_recall_conventions():
    empty = np.zeros((4, 4), bool)
    full = np.ones((4, 4), bool)
    # nothing predicted: precision = 1 when there was nothing to find, else 0
    assert precision(empty, empty).item() == 1.0
    assert precision(empty, full).item() == 0.0
    # nothing to find: recall = 1 when nothing was predicted, else 0
    assert recall(empty, empty).item() == 1.0
    assert recall(full, empty).item() == 0.0
    # defined cases: all predicted on an all-true target
    assert precision(full, full).item() == 1.0 and recall(full, full).item() == 1.0
    # predict everything on a target with 4 of 16 pixels: precision 4/16, recall 1
    t = empty.copy()
    t[:2, :2] = True
    assert precision(full, t).item() == pytest.approx(0.25)
    assert recall(full, t).item() == 1.0


@pytest.mark.parametrize("kind", ["numpy_bool", "numpy_float", "numpy_int", "torch_bool", "torch_float", "torch_long"])
def test_input_types(kind):
    conv = {
        "numpy_bool": lambda a: a,
        "numpy_float": lambda a: a.astype(np.float32),
        "numpy_int": lambda a: a.astype(np.uint8),
        "torch_bool": lambda a: torch.from_numpy(a),
        "torch_float": lambda a: torch.from_numpy(a).float(),
        "torch_long": lambda a: torch.from_numpy(a).long(),
    }[kind]
    assert dice(conv(PRED), conv(TARGET)).item() == pytest.approx(6 / 9)
    # mixed types too
    assert iou(conv(PRED), TARGET).item() == pytest.approx(0.5)


def test_b1hw_input_equals_bhw():
    rng = np.random.default_rng(0)
    p = rng.random((3, 1, 8, 9)) > 0.5
    t = rng.random((3, 1, 8, 9)) > 0.5
    assert torch.equal(dice(p, t), dice(p[:, 0], t[:, 0]))
    assert torch.equal(iou(torch.from_numpy(p), torch.from_numpy(t)), iou(p[:, 0], t[:, 0]))


def test_multichannel_input_raises_with_hint():
    x = np.zeros((2, 3, 4, 4), bool)
    with pytest.raises(ValueError, match="argmax"):
        dice(x, x)


def test_wrong_ndim_raises():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        dice(np.zeros(5, bool), np.zeros(5, bool))


@pytest.mark.parametrize("bad", [np.full((3, 4), 0.7), np.full((3, 4), 255, np.uint8), np.full((3, 4), -1.0)])
def test_non_binary_raises_with_hint(bad):
    with pytest.raises(ValueError, match="binarize"):
        dice(bad, TARGET)
    with pytest.raises(ValueError, match="target is not binary"):
        iou(PRED, bad)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="differs"):
        dice(np.zeros((3, 4), bool), np.zeros((4, 3), bool))
    with pytest.raises(ValueError, match="differs"):
        dice(np.zeros((2, 3, 4), bool), np.zeros((3, 3, 4), bool))


def test_dice_iou_identity_on_random_masks():
    # Dice = 2 IoU / (1 + IoU) holds image by image
    rng = np.random.default_rng(1)
    p = rng.random((50, 16, 16)) < rng.random((50, 1, 1))
    t = rng.random((50, 16, 16)) < rng.random((50, 1, 1))
    d, j = dice(p, t), iou(p, t)
    assert torch.allclose(d, 2 * j / (1 + j), atol=1e-12)
    assert (d >= j).all()


def test_dice_against_independent_numpy_formula():
    rng = np.random.default_rng(2)
    p = rng.random((20, 7, 11)) > 0.6
    t = rng.random((20, 7, 11)) > 0.4
    inter = (p & t).sum((1, 2))
    expected = 2 * inter / (p.sum((1, 2)) + t.sum((1, 2)))
    np.testing.assert_allclose(dice(p, t).numpy(), expected, rtol=1e-12)


def test_binarize():
    probs = torch.tensor([0.2, 0.5, 0.51, 0.9])
    assert binarize(probs).tolist() == [False, False, True, True]
    assert binarize(probs, threshold=0.1).tolist() == [True, True, True, True]
    assert binarize(np.array([True, False])).tolist() == [True, False]
    assert binarize(np.array([0, 1])).tolist() == [False, True]


def test_summarize():
    values = np.array([0.2, 0.4, 0.6, 0.8, 1.0, 0.5, 0.7])
    s = summarize(values)
    assert s["n"] == 7 and isinstance(s["n"], int)
    assert s["mean"] == pytest.approx(values.mean())
    assert s["std"] == pytest.approx(values.std(ddof=1))
    assert s["ci_low"] < s["mean"] < s["ci_high"]
    assert values.min() <= s["ci_low"] and s["ci_high"] <= values.max()
    # the CI of the mean is narrower than the spread of the values
    assert s["ci_high"] - s["ci_low"] < values.max() - values.min()
    # deterministic for a seed; torch input gives the same
    assert summarize(torch.tensor(values)) == s
    # a wider interval for a higher confidence
    s99 = summarize(values, ci=0.99)
    assert s99["ci_low"] <= s["ci_low"] and s99["ci_high"] >= s["ci_high"]


def test_summarize_edge_cases():
    s = summarize([0.5, 0.5, 0.5])
    assert s["ci_low"] == s["mean"] == s["ci_high"] == 0.5 and s["std"] == 0.0
    one = summarize([0.3])
    assert one["n"] == 1 and one["std"] == 0.0 and one["ci_low"] == pytest.approx(0.3)
    with pytest.raises(ValueError):
        summarize([])


def test_all_metrics_come_from_one_confusion():
    assert set(metrics.__all__) >= {"confusion", "dice", "iou", "precision", "recall", "binarize", "summarize"}


def test_pooled_dice_hand_counted():
    # the batch of test_per_image_batch pooled: TP = 3 + 4 + 0, FP = 2 + 0 + 1, FN = 1 + 0 + 1
    p2, t2 = np.zeros((3, 4), bool), np.zeros((3, 4), bool)
    p2[0, 0], t2[2, 3] = True, True
    pred, target = np.stack([PRED, TARGET, p2]), np.stack([TARGET, TARGET, t2])
    pooled = metrics.pooled_dice(pred, target)
    assert isinstance(pooled, float)
    assert pooled == pytest.approx(2 * 7 / (2 * 7 + 3 + 2))                      # 14/19 = 0.737
    assert dice(pred, target).mean().item() == pytest.approx((6 / 9 + 1 + 0) / 3)  # the mean per image: 5/9
    assert metrics.pooled_dice(PRED, TARGET) == pytest.approx(6 / 9)              # one image: the same as dice
    # numpy, torch and (B, 1, H, W) inputs give the same number
    assert metrics.pooled_dice(torch.from_numpy(pred)[:, None], torch.from_numpy(target)[:, None]) == pooled


def test_pooled_dice_is_dominated_by_large_objects():
    target = np.zeros((2, 20, 20), bool)
    target[0, 2:18, 2:18] = True              # 256 pixels, found exactly
    target[1, 5:7, 5:7] = True                # 4 pixels, missed entirely
    pred = target.copy()
    pred[1] = False
    assert metrics.pooled_dice(pred, target) == pytest.approx(2 * 256 / (2 * 256 + 4))   # 0.992
    assert dice(pred, target).tolist() == [1.0, 0.0]                                     # mean 0.5


def test_pooled_dice_empty_conventions():
    empty, full = np.zeros((3, 4, 4), bool), np.ones((3, 4, 4), bool)
    assert metrics.pooled_dice(empty, empty) == 1.0      # nothing to find, nothing found
    assert metrics.pooled_dice(empty, full) == 0.0
    assert metrics.pooled_dice(full, empty) == 0.0
    # an empty image in a set does not count as a perfect image: it adds nothing to the pooled counts
    target, pred = np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4), bool)
    target[0, 0, :2], pred[0, 0, 1:3] = True, True                  # image 0: TP = 1, FP = 1, FN = 1; image 1 empty
    assert metrics.pooled_dice(pred, target) == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))   # 0.5
    assert dice(pred, target).mean().item() == pytest.approx(0.75)                       # (0.5 + 1) / 2
