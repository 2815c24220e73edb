"""Tests for the chapter 03/04 losses of unet_lib.losses (BCE, soft Dice, weighted CE, deep supervision).

The chapter 06 losses (focal, MS-SSIM, IoU, hybrid) are tested in their own module.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unet_lib.losses import Loss, bce_dice_loss, bce_loss, deep_supervision_loss, soft_dice_loss, weighted_cross_entropy


def _random_binary(seed=0, shape=(2, 1, 5, 6)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    target = (torch.rand(shape, generator=g) > 0.5).double()
    return logits, target


# --------------------------------------------------------------------------- BCE
def test_bce_of_zero_logits_is_log2():
    assert bce_loss(torch.zeros(2, 1, 3, 3), torch.ones(2, 1, 3, 3)).item() == pytest.approx(math.log(2))
    assert bce_loss(torch.zeros(2, 1, 3, 3), torch.zeros(2, 3, 3)).item() == pytest.approx(math.log(2))


def test_bce_hand_value():
    # logits ln 3 -> p = 3/4; target 1 costs -ln(3/4), target 0 costs -ln(1/4); mean of the two
    logits = torch.full((1, 1, 1, 2), math.log(3.0))
    target = torch.tensor([[[[1.0, 0.0]]]])
    assert bce_loss(logits, target).item() == pytest.approx((math.log(4 / 3) + math.log(4)) / 2)


def test_bce_equals_torch_on_sigmoid():
    logits, target = _random_binary()
    expected = F.binary_cross_entropy(torch.sigmoid(logits), target)
    assert torch.allclose(bce_loss(logits, target), expected, atol=1e-10)
    # a (B, H, W) target is the same
    assert torch.allclose(bce_loss(logits, target[:, 0]), expected, atol=1e-10)


def test_bce_is_stable_for_large_logits():
    loss = bce_loss(torch.tensor([[[[200.0, -200.0]]]]), torch.tensor([[[[0.0, 1.0]]]]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(200.0)


def test_binary_losses_check_shapes():
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        bce_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="does not match"):
        bce_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))


# --------------------------------------------------------------------------- soft Dice
def test_soft_dice_perfect_and_disjoint():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    confident = (target * 2 - 1) * 30          # +30 inside, -30 outside
    assert soft_dice_loss(confident, target).item() == pytest.approx(0.0, abs=1e-6)
    # disjoint: predicted foreground exactly where the target is background
    # soft Dice = (0 + 1) / (48 + 16 + 1) -> loss = 64/65
    assert soft_dice_loss(-confident, target).item() == pytest.approx(64 / 65, abs=1e-6)


def test_soft_dice_hand_value():
    # 2x2 image, target [[1, 0], [0, 0]], logits 0 -> p = 0.5 everywhere
    # sum(p t) = 0.5, sum(p) = 2, sum(t) = 1 -> (2*0.5 + 1) / (2 + 1 + 1) = 0.5 -> loss 0.5
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert soft_dice_loss(torch.zeros(1, 1, 2, 2), target).item() == pytest.approx(0.5)
    # smooth=0: 1 / 3 soft Dice -> loss 2/3
    assert soft_dice_loss(torch.zeros(1, 1, 2, 2), target, smooth=0.0).item() == pytest.approx(2 / 3)


def test_soft_dice_is_per_image_mean():
    # image A: target all ones, predicted confidently right -> loss 0
    # image B: target all ones, predicted confidently empty -> soft Dice (0 + 1) / (0 + 4 + 1) -> loss 0.8
    # per-image mean 0.4; a batch-pooled Dice would give 1 - 9/13 = 0.308
    target = torch.ones(2, 1, 2, 2)
    logits = torch.stack([torch.full((1, 2, 2), 40.0), torch.full((1, 2, 2), -40.0)])
    assert soft_dice_loss(logits, target).item() == pytest.approx(0.4, abs=1e-6)


def test_soft_dice_empty_target_predicted_empty_is_zero():
    assert soft_dice_loss(torch.full((1, 1, 4, 4), -40.0), torch.zeros(1, 1, 4, 4)).item() == pytest.approx(0, abs=1e-6)


def test_soft_dice_multiclass_hand_value():
    # C = 3, logits 0 -> p = 1/3 for every class; target [[0, 1], [2, 2]] (class indices)
    # class 1: sum(p t) = 1/3, sum(p) = 4/3, sum(t) = 1 -> (2/3 + 1) / (4/3 + 1 + 1) = 1/2
    # class 2: sum(p t) = 2/3, sum(p) = 4/3, sum(t) = 2 -> (4/3 + 1) / (4/3 + 2 + 1) = 7/13
    # background (class 0) is ignored; loss = mean(1 - 1/2, 1 - 7/13)
    target = torch.tensor([[[0, 1], [2, 2]]])
    expected = ((1 - 0.5) + (1 - 7 / 13)) / 2
    assert soft_dice_loss(torch.zeros(1, 3, 2, 2), target).item() == pytest.approx(expected)


def test_soft_dice_multiclass_perfect():
    target = torch.tensor([[[0, 1, 2], [2, 1, 0]]])
    logits = F.one_hot(target, 3).permute(0, 3, 1, 2).double() * 60 - 30
    assert soft_dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_two_class_softmax_dice_equals_one_channel_sigmoid_dice():
    # softmax over [0, z] gives p1 = sigmoid(z): the two parametrisations must agree
    logits, target = _random_binary(3)
    two = torch.cat([torch.zeros_like(logits), logits], dim=1)
    assert torch.allclose(soft_dice_loss(two, target[:, 0].long()), soft_dice_loss(logits, target), atol=1e-10)


def test_bce_dice_is_the_sum():
    logits, target = _random_binary(4)
    assert torch.allclose(bce_dice_loss(logits, target), bce_loss(logits, target) + soft_dice_loss(logits, target))


def test_losses_have_gradients():
    logits, target = _random_binary(5)
    logits.requires_grad_(True)
    bce_dice_loss(logits, target).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


# --------------------------------------------------------------------------- weighted cross-entropy
def test_weighted_ce_all_ones_equals_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 4, 5, generator=g, dtype=torch.float64)
    target = torch.randint(0, 2, (2, 4, 5), generator=g)
    expected = F.cross_entropy(logits, target)
    assert torch.allclose(weighted_cross_entropy(logits, target), expected, atol=1e-12)
    assert torch.allclose(weighted_cross_entropy(logits, target, torch.ones(2, 4, 5)), expected, atol=1e-12)
    # (B, 1, H, W) target and weight are accepted
    assert torch.allclose(weighted_cross_entropy(logits, target[:, None], torch.ones(2, 1, 4, 5)), expected,
                          atol=1e-12)


def test_weighted_ce_one_channel_equals_bce():
    logits, target = _random_binary(6)
    assert torch.allclose(weighted_cross_entropy(logits, target, torch.ones(2, 5, 6)), bce_loss(logits, target),
                          atol=1e-12)
    assert torch.allclose(weighted_cross_entropy(logits, target[:, 0]), bce_loss(logits, target), atol=1e-12)


def test_weighted_ce_hand_value():
    # pixel A: logits [0, ln 3], label 1 -> p = 3/4, -log p = ln(4/3), weight 2
    # pixel B: logits [0, 0],    label 0 -> p = 1/2, -log p = ln 2,   weight 1
    # L = (2 ln(4/3) + ln 2) / N with N = 2 pixels (the mean over pixels, not over sum(w) = 3)
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(3.0), 0.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])
    weight = torch.tensor([[[2.0, 1.0]]])
    assert weighted_cross_entropy(logits, target, weight).item() == pytest.approx(
        (2 * math.log(4 / 3) + math.log(2)) / 2)


def test_doubling_one_pixel_weight_adds_that_pixel_term_over_n():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 4, 4), generator=g)
    weight = torch.ones(2, 4, 4, dtype=torch.float64)
    base = weighted_cross_entropy(logits, target, weight)
    weight[1, 2, 3] = 2.0
    pixel_term = -torch.log_softmax(logits[1, :, 2, 3], 0)[target[1, 2, 3]]
    n = 2 * 4 * 4
    assert (weighted_cross_entropy(logits, target, weight) - base).item() == pytest.approx(pixel_term.item() / n,
                                                                                           rel=1e-10)


def test_zero_weight_removes_pixels():
    logits = torch.tensor([[[[0.0, 5.0]], [[0.0, -5.0]]]])   # pixel 0 costs ln 2 with either label
    target = torch.tensor([[[1, 1]]])
    weight = torch.tensor([[[1.0, 0.0]]])
    assert weighted_cross_entropy(logits, target, weight).item() == pytest.approx(math.log(2) / 2)


def test_weight_shape_mismatch_raises():
    with pytest.raises(ValueError, match="weight map shape"):
        weighted_cross_entropy(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4), torch.ones(1, 4, 5))


# --------------------------------------------------------------------------- deep supervision
def test_deep_supervision_is_mean_of_losses_not_loss_of_mean():
    target = torch.ones(1, 1, 2, 2)
    heads = [torch.full((1, 1, 2, 2), 5.0), torch.full((1, 1, 2, 2), -5.0)]
    # mean of the head losses: (softplus(-5) + softplus(5)) / 2 = (ln(1 + e^-5) + ln(1 + e^5)) / 2
    expected = (math.log1p(math.exp(-5)) + math.log1p(math.exp(5))) / 2
    loss = deep_supervision_loss(heads, target, bce_loss)
    assert loss.item() == pytest.approx(expected)
    # the loss of the averaged outputs (logits 0) would be ln 2 = 0.69, far from 2.51
    assert bce_loss((heads[0] + heads[1]) / 2, target).item() == pytest.approx(math.log(2))
    assert abs(loss.item() - math.log(2)) > 1.0


def test_deep_supervision_weights_and_single_tensor():
    logits, target = _random_binary(7)
    heads = [logits, logits * 0.5, logits - 1]
    single = [bce_loss(h, target) for h in heads]
    assert torch.allclose(deep_supervision_loss(heads, target, bce_loss), sum(single) / 3)
    assert torch.allclose(deep_supervision_loss(heads, target, bce_loss, [1.0, 2.0, 1.0]),
                          (single[0] + 2 * single[1] + single[2]) / 4)
    assert torch.allclose(deep_supervision_loss(logits, target, bce_loss), single[0])
    with pytest.raises(ValueError, match="2 weights for 3 outputs"):
        deep_supervision_loss(heads, target, bce_loss, [1.0, 1.0])


def test_deep_supervision_passes_extra_arguments():
    g = torch.Generator().manual_seed(8)
    heads = [torch.randn(1, 2, 3, 3, generator=g) for _ in range(2)]
    target = torch.randint(0, 2, (1, 3, 3), generator=g)
    weight = torch.rand(1, 3, 3, generator=g) * 5
    expected = sum(weighted_cross_entropy(h, target, weight) for h in heads) / 2
    assert torch.allclose(deep_supervision_loss(heads, target, weighted_cross_entropy, None, weight), expected)


def test_deep_supervision_gives_every_head_its_own_gradient():
    target = torch.ones(1, 1, 2, 2)
    heads = [torch.full((1, 1, 2, 2), v, requires_grad=True) for v in (5.0, -5.0)]
    deep_supervision_loss(heads, target, bce_loss).backward()
    # d/dz mean BCE = (sigmoid(z) - 1) / 4 pixels, halved for the two heads
    for h, z in zip(heads, (5.0, -5.0)):
        assert torch.allclose(h.grad, torch.full_like(h, (torch.sigmoid(torch.tensor(z)).item() - 1) / 4 / 2))


# --------------------------------------------------------------------------- module wrapper
def test_loss_wrapper():
    logits, target = _random_binary(9)
    module = Loss(soft_dice_loss, smooth=0.5)
    assert isinstance(module, torch.nn.Module)
    assert torch.allclose(module(logits, target), soft_dice_loss(logits, target, smooth=0.5))
    assert "soft_dice_loss" in repr(module) and "0.5" in repr(module)
    assert "bce_loss" in repr(Loss(bce_loss))
    w = torch.rand(2, 5, 6, dtype=torch.float64)
    assert torch.allclose(Loss(weighted_cross_entropy)(logits, target, w), weighted_cross_entropy(logits, target, w))


def test_soft_dice_loss_is_computed_in_float32_for_half_precision_logits():
    from unet_lib.losses import soft_dice_loss

    logits = torch.full((1, 1, 300, 300), 5.0, dtype=torch.float16)   # 90,000 pixels: a float16 sum overflows
    target = torch.ones(1, 1, 300, 300, dtype=torch.float16)
    loss = soft_dice_loss(logits, target)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    s = torch.sigmoid(torch.tensor(5.0)).item()
    assert loss.item() == pytest.approx(1 - s * 2 / (1 + s), abs=1e-3)
