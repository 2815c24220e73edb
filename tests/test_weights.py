"""Tests of the U-Net border weight map (unet_lib.weights) and the weighted cross-entropy."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from unet_lib.losses import weighted_cross_entropy
from unet_lib.weights import (
    border_reach,
    border_term,
    border_weight_map,
    class_balance_weights,
    class_weight_map,
    nearest_two_distances,
)


def disc(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def two_discs(gap: int, shape=(40, 60), r=6):
    """Two discs on row 20; along that row ``gap`` background pixels separate them."""
    inst = np.zeros(shape, np.int32)
    inst[disc(shape, 20, 15, r)] = 1
    inst[disc(shape, 20, 15 + 2 * r + 1 + gap, r)] = 2
    return inst


def brute_force(instances, w0, sigma, class_weights):
    """Independent reference: a full-image distance transform per object, sorted per pixel."""
    labels = [k for k in np.unique(instances) if k > 0]
    w = class_weight_map(instances, class_weights).astype(np.float64)
    if len(labels) < 2:
        return w
    d = np.sort(np.stack([ndimage.distance_transform_edt(instances != k) for k in labels]), axis=0)
    term = w0 * np.exp(-(d[0] + d[1]) ** 2 / (2 * sigma ** 2))
    return w + np.where(instances == 0, term, 0.0)


def random_blobs(shape, n, seed):
    rng = np.random.default_rng(seed)
    inst = np.zeros(shape, np.int32)
    for k in range(1, n + 1):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        inst[disc(shape, cy, cx, int(rng.integers(2, 7))) & (inst == 0)] = k
    return inst


# ------------------------------------------------------------------------------------ hand-checked
def test_gap_between_two_discs_gets_w0():
    inst = two_discs(gap=1)
    assert inst[20, 21] == 1 and inst[20, 22] == 0 and inst[20, 23] == 2   # one gap pixel at (20, 22)
    w = border_weight_map(inst, w0=10.0, sigma=5.0, class_weights=(1.0, 1.0))
    # by hand: d1 = d2 = 1 at the gap pixel, so w = 1 + 10 exp(-(1 + 1)^2 / (2 * 25)) = 1 + 9.2312
    assert w[20, 22] == pytest.approx(1 + 10 * math.exp(-4 / 50), abs=1e-5)
    assert w[20, 22] == pytest.approx(10.2312, abs=1e-4)
    # far from both discs (d1 ~ 20, d2 ~ 33): the term is ~ 10 exp(-53^2/50) ~ 0
    assert w[0, 59] == pytest.approx(1.0, abs=1e-6)
    # objects keep their class weight only
    assert np.all(w[inst > 0] == 1.0)


def test_gap_of_three_pixels_by_hand():
    inst = two_discs(gap=3)
    gap = [c for c in range(60) if inst[20, c] == 0 and 15 < c < 30]
    assert gap == [22, 23, 24]
    w = border_weight_map(inst, w0=10.0, sigma=5.0, class_weights=(0.5, 2.0))
    # middle pixel: d1 = d2 = 2; side pixels: d1 = 1, d2 = 3. Both sum to 4.
    expected = 0.5 + 10 * math.exp(-16 / 50)
    assert w[20, 23] == pytest.approx(expected, abs=1e-5)
    assert w[20, 22] == pytest.approx(expected, abs=1e-5)
    assert w[20, 22] < 0.5 + 10 and w[20, 22] > 0.5 + 7
    assert np.all(w[inst > 0] == 2.0)


def test_one_disc_gets_no_border_term():
    inst = np.zeros((40, 40), np.int32)
    inst[disc(inst.shape, 20, 20, 8)] = 5
    w = border_weight_map(inst, w0=10.0, sigma=5.0)
    np.testing.assert_array_equal(w, class_weight_map(inst))
    w_bg, w_fg = class_balance_weights(inst > 0)
    assert set(np.unique(w).tolist()) == {np.float32(w_bg), np.float32(w_fg)}


def test_empty_image_is_all_one():
    w = border_weight_map(np.zeros((7, 9), np.int32))
    assert w.shape == (7, 9) and w.dtype == np.float32 and np.all(w == 1.0)


def test_class_balance_weights_by_hand():
    mask = np.zeros((10, 10), bool)
    mask[:2] = True                                     # 20 % foreground
    w_bg, w_fg = class_balance_weights(mask)
    assert (w_bg, w_fg) == pytest.approx((0.625, 2.5))  # 1 / (2 * 0.8), 1 / (2 * 0.2)
    w = class_weight_map(mask.astype(np.int32))
    assert w.mean() == pytest.approx(1.0)               # mean weight 1 ...
    assert w[mask].sum() == pytest.approx(w[~mask].sum())  # ... and equal total weight per class
    # pooled over several masks
    assert class_balance_weights([mask, np.zeros((10, 10), bool)]) == pytest.approx((1 / (2 * 0.9), 1 / (2 * 0.1)))
    # a missing class
    assert class_balance_weights(np.zeros((3, 3), bool)) == (1.0, 1.0)


# ------------------------------------------------------------------------------- against brute force
@pytest.mark.parametrize("shape,n,seed", [((31, 47), 6, 0), ((50, 33), 10, 1), ((64, 64), 16, 2), ((17, 90), 5, 3)])
def test_matches_brute_force(shape, n, seed):
    inst = random_blobs(shape, n, seed)
    for w0, sigma, cw in [(10.0, 5.0, None), (5.0, 3.0, (1.0, 1.0)), (10.0, 10.0, (0.3, 3.0))]:
        ref = brute_force(inst, w0, sigma, cw)
        fast = border_weight_map(inst, w0, sigma, cw, tol=1e-3)
        assert np.abs(fast - ref).max() <= 1e-3 + 1e-5
        exact = border_weight_map(inst, w0, sigma, cw, tol=1e-9)
        assert np.abs(exact - ref).max() <= 1e-5


def test_nearest_two_distances_exact_without_reach():
    inst = random_blobs((40, 50), 8, 4)
    labels = [k for k in np.unique(inst) if k > 0]
    d = np.sort(np.stack([ndimage.distance_transform_edt(inst != k) for k in labels]), axis=0)
    d1, d2 = nearest_two_distances(inst)
    np.testing.assert_allclose(d1, d[0])
    np.testing.assert_allclose(d2, d[1])
    # with a reach: exact below it, inf (or exact) beyond
    r1, r2 = nearest_two_distances(inst, max_distance=6.0)
    near = d[1] <= 6.0
    np.testing.assert_allclose(r2[near], d[1][near])
    assert np.all((r2 == d[1]) | np.isinf(r2))


def test_non_consecutive_labels():
    inst = two_discs(gap=1) * 7                      # labels 7 and 14
    w = border_weight_map(inst, class_weights=(1.0, 1.0))
    np.testing.assert_allclose(w, border_weight_map(two_discs(gap=1), class_weights=(1.0, 1.0)))


def test_border_term_and_reach():
    assert border_term(np.array([1.0]), np.array([np.inf]))[0] == 0.0
    assert border_term(np.array([0.0]), np.array([0.0]), w0=10.0)[0] == pytest.approx(10.0)
    reach = border_reach(10.0, 5.0, 1e-3)
    assert 10.0 * math.exp(-reach ** 2 / 50) == pytest.approx(1e-3)


def test_bad_input_raises_helpful_errors():
    with pytest.raises(ValueError, match="label"):
        border_weight_map(np.ones((5, 5), bool))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        border_weight_map(np.zeros((2, 5, 5), np.int32))
    with pytest.raises(ValueError, match=">= 0"):
        border_weight_map(-np.ones((5, 5), np.int32))


@pytest.mark.skipif(not os.environ.get("UNET_BOOK_DATA"), reason="UNET_BOOK_DATA is not set (real DSB2018 data)")
def test_real_nuclei_crop_matches_brute_force():
    from unet_lib.data import dsb_ids, load_dsb_instances

    _, inst = load_dsb_instances(dsb_ids()[0])
    crop = inst[100:196, 200:296]
    ref = brute_force(crop, 10.0, 5.0, None)
    assert np.abs(border_weight_map(crop) - ref).max() <= 1e-3 + 1e-5


# ------------------------------------------------------------------------------ weighted cross-entropy
def test_weighted_cross_entropy_with_unit_weights_is_plain_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(3, 2, 9, 11), torch.randint(0, 2, (3, 9, 11))
    ones = torch.ones(3, 9, 11)
    assert torch.allclose(weighted_cross_entropy(logits, target, ones), F.cross_entropy(logits, target))
    assert torch.allclose(weighted_cross_entropy(logits, target, None), F.cross_entropy(logits, target))


def test_weighted_cross_entropy_sign_and_normalisation_by_hand():
    torch.manual_seed(1)
    logits, target = torch.randn(2, 2, 5, 4), torch.randint(0, 2, (2, 5, 4))
    weight = torch.rand(2, 5, 4) * 10
    log_p = logits.log_softmax(1).gather(1, target[:, None])[:, 0]     # log p_{l(x)}(x)
    paper_energy = (weight * log_p).sum()                              # eq. 1 as printed: <= 0, to maximise
    loss = weighted_cross_entropy(logits, target, weight)
    assert paper_energy < 0 < loss
    assert loss.item() == pytest.approx((-paper_energy / target.numel()).item(), rel=1e-6)
    assert weighted_cross_entropy(logits, target, 2 * weight).item() == pytest.approx(2 * loss.item(), rel=1e-6)
