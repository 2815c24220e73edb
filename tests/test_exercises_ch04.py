"""The chapter 04 checkers accept right answers and give the intended hints for typical wrong ones."""
from __future__ import annotations

import numpy as np
import torch

from unet_lib.exercises import ch04
from unet_lib.instances import f1_from_iou


# ------------------------------------------------------------------------------ weighted cross-entropy
def wce_right(logits, target, weight):
    log_p = logits.log_softmax(1).gather(1, target[:, None].long())[:, 0]
    return -(weight * log_p).mean()


def test_weighted_cross_entropy_checker():
    assert ch04.check_weighted_cross_entropy(wce_right)
    no_minus = ch04.check_weighted_cross_entropy(lambda lg, t, w: -wce_right(lg, t, w))
    assert not no_minus and "sign" in no_minus.message
    by_weight_sum = ch04.check_weighted_cross_entropy(lambda lg, t, w: wce_right(lg, t, w) * t.numel() / w.sum())
    assert not by_weight_sum and "sum of the weights" in by_weight_sum.message
    summed = ch04.check_weighted_cross_entropy(lambda lg, t, w: wce_right(lg, t, w) * t.numel())
    assert not summed and "summed" in summed.message
    unweighted = ch04.check_weighted_cross_entropy(lambda lg, t, w: wce_right(lg, t, torch.ones_like(w)))
    assert not unweighted and "weight map" in unweighted.message


def test_stub_and_crash_give_feedback():
    def stub(*args):
        raise NotImplementedError

    fb = ch04.check_weighted_cross_entropy(stub)
    assert not fb and "NotImplementedError" in fb.message
    fb = ch04.check_border_term(lambda d1, d2, w0, sigma: d1 + undefined_name)  # noqa: F821
    assert not fb and "raised" in fb.message


# ------------------------------------------------------------------------------ border term
def test_border_term_checker():
    assert ch04.check_border_term(lambda d1, d2, w0, sigma: w0 * np.exp(-(d1 + d2) ** 2 / (2 * sigma ** 2)))
    fb = ch04.check_border_term(lambda d1, d2, w0, sigma: w0 * np.exp(-(d1 ** 2 + d2 ** 2) / (2 * sigma ** 2)))
    assert not fb and "sum" in fb.message
    fb = ch04.check_border_term(lambda d1, d2, w0, sigma: w0 * np.exp(-(d1 + d2) ** 2 / sigma ** 2))
    assert not fb and "2 * sigma**2" in fb.message


# ------------------------------------------------------------------------------ two smallest
def test_two_smallest_checker():
    def right(d1, d2, d):
        closer = d < d1
        return np.where(closer, d, d1), np.where(closer, d1, np.minimum(d2, d))

    def forgets_old_nearest(d1, d2, d):
        return np.minimum(d1, d), np.where(d < d1, d2, np.minimum(d2, d))

    assert ch04.check_two_smallest(right)
    fb = ch04.check_two_smallest(forgets_old_nearest)
    assert not fb and "old d1 becomes the second" in fb.message


# ------------------------------------------------------------------------------ object F1
def test_object_f1_checker():
    def right(iou, threshold=0.5):
        pairs, used_p, used_t = 0, set(), set()
        rows, cols = np.nonzero(iou >= threshold)
        for k in np.argsort(-iou[rows, cols]):
            i, j = rows[k], cols[k]
            if i not in used_p and j not in used_t:
                used_p.add(i), used_t.add(j)
                pairs += 1
        d = sum(iou.shape)
        return 2 * pairs / d if d else 1.0

    def counts_all(iou, threshold=0.5):
        return 2 * int((iou >= threshold).sum()) / sum(iou.shape) if sum(iou.shape) else 1.0

    assert ch04.check_object_f1(right)
    fb = ch04.check_object_f1(counts_all)
    assert not fb and "only once" in fb.message


def test_wrong_types_are_named():
    fb = ch04.check_weighted_cross_entropy(lambda lg, t, w: float(wce_right(lg, t, w)))
    assert not fb and "returned a float" in fb.message and "scalar tensor" in fb.message
    fb = ch04.check_weighted_cross_entropy(lambda lg, t, w: -(w * lg[:, 0]))
    assert not fb and "returned a tensor of shape" in fb.message
    fb = ch04.check_border_term(lambda d1, d2, w0, sigma: (d1 + d2)[0])
    assert not fb and "expected shape (6, 7), got (7,)" in fb.message
    fb = ch04.check_two_smallest(lambda d1, d2, d: np.minimum(d1, d))
    assert not fb and "a tuple (d1_new, d2_new) of two arrays" in fb.message
    fb = ch04.check_object_f1(lambda iou, threshold=0.5: f1_from_iou(iou, threshold) if iou.size else float("nan"))
    assert not fb and "returned nan" in fb.message and "With no predictions F1 is 0" in fb.message
