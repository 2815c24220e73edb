"""The UNet 3+ hybrid loss (chapter 06): focal, SSIM / MS-SSIM, IoU and their sum, on hand-checkable cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from unet_lib import losses
from unet_lib.losses import (
    MS_SSIM_WEIGHTS,
    focal_loss,
    hybrid_loss,
    iou_loss,
    ms_ssim,
    ms_ssim_loss,
    ms_ssim_scales,
    ssim,
)

BIG = 1.0e4  # sigmoid(+-1e4) is exactly 1 / 0 in float32
C1, C2 = 0.01 ** 2, 0.03 ** 2


def _disk(size: int, radius: float, cy: float | None = None, cx: float | None = None) -> torch.Tensor:
    cy = size / 2 if cy is None else cy
    cx = size / 2 if cx is None else cx
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (((yy - cy) ** 2 + (xx - cx) ** 2) <= radius ** 2).float()[None, None]


def _logits_of(mask: torch.Tensor) -> torch.Tensor:
    """A perfect, confident prediction of a binary mask."""
    return (mask * 2 - 1) * BIG


# -- focal ---------------------------------------------------------------------------------
def test_focal_hand_values():
    one, zero = torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1)
    # p = 0.5 on a foreground pixel: alpha * (1 - 0.5)^2 * log 2
    assert focal_loss(torch.zeros(1, 1, 1, 1), one).item() == pytest.approx(0.25 * 0.25 * math.log(2))
    # p = 0.75 (logit log 3): foreground -> 0.25 * 0.25^2 * log(4/3); background -> 0.75 * 0.75^2 * log 4
    logit = torch.full((1, 1, 1, 1), math.log(3.0))
    assert focal_loss(logit, one).item() == pytest.approx(0.25 * 0.25 ** 2 * math.log(4 / 3), rel=1e-5)
    assert focal_loss(logit, zero).item() == pytest.approx(0.75 * 0.75 ** 2 * math.log(4), rel=1e-5)
    # no class weight
    assert focal_loss(logit, zero, alpha=None).item() == pytest.approx(0.75 ** 2 * math.log(4), rel=1e-5)


def test_focal_with_gamma_0_is_bce_and_focal_shrinks_easy_pixels():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 1, 8, 8) * 3, (torch.rand(2, 1, 8, 8) > 0.5).float()
    torch.testing.assert_close(focal_loss(logits, target, gamma=0.0, alpha=None), losses.bce_loss(logits, target))
    assert focal_loss(logits, target, alpha=None) < losses.bce_loss(logits, target)


# -- SSIM / MS-SSIM ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(11, 11), (24, 31), (40, 40)])
def test_ssim_matches_skimage(shape):
    skimage_metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    x = ndimage.gaussian_filter(rng.random(shape), 2)
    y = np.clip(x + 0.1 * rng.standard_normal(shape), 0, 1)
    expected = skimage_metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
                                                     use_sample_covariance=False, data_range=1.0)
    got = ssim(torch.tensor(x)[None, None], torch.tensor(y)[None, None])
    assert got.item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("size,scales", [(176, 5), (175, 4), (256, 5), (96, 4), (32, 2), (22, 2), (21, 1), (11, 1),
                                         (10, 0)])
def test_ms_ssim_scales(size, scales):
    assert ms_ssim_scales(size, size) == scales
    assert ms_ssim_scales(size, 1000) == scales


@pytest.mark.parametrize("size", [176, 96, 32, 8])
def test_ms_ssim_of_constant_images_by_hand(size):
    # constant images: every cs = 1 (no variance), luminance l = (2ab + C1) / (a^2 + b^2 + C1) at the coarsest scale
    a, b = 0.8, 0.3
    x = torch.full((1, 1, size, size), a, dtype=torch.float64)
    y = torch.full((1, 1, size, size), b, dtype=torch.float64)
    lum = (2 * a * b + C1) / (a * a + b * b + C1)
    scales = max(1, ms_ssim_scales(size, size))
    w_last = MS_SSIM_WEIGHTS[scales - 1] / (sum(MS_SSIM_WEIGHTS[:scales]) if scales < 5 else 1.0)
    assert ms_ssim(x, y).item() == pytest.approx(lum ** w_last, rel=1e-9)
    if size == 176:
        assert ms_ssim(x, y).item() == pytest.approx(lum ** 0.1333, rel=1e-9)   # standard five scales
    assert ms_ssim(x, x).item() == pytest.approx(1.0)


def _numpy_ms_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Independent MS-SSIM: scipy Gaussian filter (truncate 3.5 -> 11 taps), valid part, 2x2 mean pooling."""
    weights = np.array(MS_SSIM_WEIGHTS)
    out = 1.0
    for j, w in enumerate(weights):
        if j:
            h, wd = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
            x = x[:h, :wd].reshape(h // 2, 2, wd // 2, 2).mean((1, 3))
            y = y[:h, :wd].reshape(h // 2, 2, wd // 2, 2).mean((1, 3))
        filt = lambda a: ndimage.gaussian_filter(a, 1.5, truncate=3.5)[5:-5, 5:-5]  # noqa: E731
        mx, my = filt(x), filt(y)
        vx, vy, cxy = filt(x * x) - mx ** 2, filt(y * y) - my ** 2, filt(x * y) - mx * my
        cs = (2 * cxy + C2) / (vx + vy + C2)
        if j < len(weights) - 1:
            out *= cs.mean() ** w
        else:
            out *= (((2 * mx * my + C1) / (mx ** 2 + my ** 2 + C1)) * cs).mean() ** w
    return float(out)


def test_ms_ssim_matches_independent_numpy_implementation():
    rng = np.random.default_rng(1)
    x = ndimage.gaussian_filter(rng.random((192, 180)), 3)
    x = (x - x.min()) / (x.max() - x.min())
    y = np.clip(0.7 * x + 0.3 * ndimage.gaussian_filter(rng.random((192, 180)), 4), 0, 1)
    got = ms_ssim(torch.tensor(x)[None, None], torch.tensor(y)[None, None]).item()
    assert got == pytest.approx(_numpy_ms_ssim(x, y), rel=1e-9)
    assert 0.0 < got < 1.0


def test_ms_ssim_is_per_image_and_checks_shapes():
    x = torch.rand(3, 1, 32, 32)
    y = x.clone()
    y[1] = 1 - y[1]
    values = ms_ssim(x, y)
    assert values.shape == (3,) and values[0].item() == pytest.approx(1.0) and values[1] < 0.5
    with pytest.raises(ValueError, match="same shape"):
        ms_ssim(x, y[:, :, :16])
    with pytest.raises(ValueError, match="smaller"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))


# -- IoU ------------------------------------------------------------------------------------
def test_iou_loss_by_hand():
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :2] = 1                                  # 4 pixels
    pred = torch.zeros(1, 1, 4, 4)
    pred[..., :2, :3] = 1                                    # 6 pixels, 4 of them right
    logits = _logits_of(pred)
    assert iou_loss(logits, target, smooth=0.0).item() == pytest.approx(1 - 4 / 6)
    assert iou_loss(logits, target).item() == pytest.approx(1 - 5 / 7)
    # soft: p = 0.5 everywhere on a 4-pixel target in 16 pixels: I = 2, U = 8 + 4 - 2 = 10
    assert iou_loss(torch.zeros(1, 1, 4, 4), target, smooth=0.0).item() == pytest.approx(1 - 2 / 10)
    # empty target predicted empty: 0 (thanks to smooth)
    assert iou_loss(_logits_of(torch.zeros(1, 1, 4, 4)), torch.zeros(1, 1, 4, 4)).item() == 0.0


# -- a perfect prediction, the sum, and the adversarial cases -------------------------------------
@pytest.mark.parametrize("size", [32, 96])
def test_all_losses_are_zero_on_a_perfect_prediction(size):
    target = torch.cat([_disk(size, size / 4), torch.zeros(1, 1, size, size), torch.ones(1, 1, size, size)])
    logits = _logits_of(target)
    for fn in (focal_loss, ms_ssim_loss, iou_loss, hybrid_loss):
        assert fn(logits, target).item() == pytest.approx(0.0, abs=1e-6), fn.__name__


def test_hybrid_is_the_sum_and_refuses_extra_positional_arguments():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 1, 32, 32), _disk(32, 9).repeat(2, 1, 1, 1)
    torch.testing.assert_close(hybrid_loss(logits, target),
                               focal_loss(logits, target) + ms_ssim_loss(logits, target) + iou_loss(logits, target))
    with pytest.raises(TypeError):
        hybrid_loss(logits, target, torch.ones(2))   # e.g. a label passed by a training loop: use unet3plus_loss


def test_losses_order_predictions_sensibly():
    target = _disk(96, 20)
    shifted = _logits_of(_disk(96, 20, cy=58))
    far = _logits_of(_disk(96, 20, cy=78, cx=78))
    for fn in (ms_ssim_loss, iou_loss, hybrid_loss):
        assert 0 < fn(shifted, target) < fn(far, target), fn.__name__


def _adversarial_cases(size: int):
    g = torch.Generator().manual_seed(size)
    disk = _disk(size, size / 4)
    checker = ((torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2).float()[None, None]
    targets = {"disk": disk, "empty": torch.zeros_like(disk), "full": torch.ones_like(disk), "checker": checker}
    logits = {"all 0 (p=0)": torch.full_like(disk, -BIG), "all 1 (p=1)": torch.full_like(disk, BIG),
              "p=0.5": torch.zeros_like(disk), "gated": torch.full_like(disk, -1e4),
              "inverted disk": _logits_of(1 - disk), "inverted checker": _logits_of(1 - checker),
              "random": torch.randn(disk.shape, generator=g) * 20, "tiny": torch.randn(disk.shape, generator=g) * 1e-3}
    for tn, t in targets.items():
        for ln, lg in logits.items():
            yield f"{ln} vs {tn}", lg, t


@pytest.mark.parametrize("size", [32, 96, 8])
@pytest.mark.parametrize("fn", [focal_loss, ms_ssim_loss, iou_loss, hybrid_loss])
def test_finite_values_and_gradients_on_adversarial_cases(size, fn):
    for name, logits, target in _adversarial_cases(size):
        logits = logits.clone().requires_grad_(True)
        loss = fn(logits, target)
        loss.backward()
        assert torch.isfinite(loss), f"{fn.__name__}: {name} gives {loss.item()}"
        assert torch.isfinite(logits.grad).all(), f"{fn.__name__}: {name} has a non-finite gradient"
        assert -1e-6 <= loss.item() <= (1e5 if fn in (focal_loss, hybrid_loss) else 1 + 1e-6), name


def test_ms_ssim_gradient_finite_on_probabilities_at_0_and_1():
    size = 32
    for x0 in (torch.zeros(1, 1, size, size), torch.ones(1, 1, size, size), 1 - _disk(size, 8)):
        x = x0.clone().requires_grad_(True)
        value = ms_ssim(x, _disk(size, 8))
        value.backward()
        assert torch.isfinite(value) and 0 <= value.item() <= 1
        assert torch.isfinite(x.grad).all()


def test_mixed_precision_inputs_are_computed_in_float32():
    # float16 sums over a 256 x 256 map overflow (> 65504) and SSIM's variances cancel: the losses upcast
    target = torch.ones(1, 1, 256, 256)
    logits16 = torch.full((1, 1, 256, 256), 10.0, dtype=torch.float16)
    for fn in (focal_loss, ms_ssim_loss, iou_loss, hybrid_loss):
        value = fn(logits16, target)
        assert value.dtype == torch.float32 and value.item() == pytest.approx(0.0, abs=1e-3), fn.__name__
    torch.manual_seed(0)
    logits, target = torch.randn(2, 1, 64, 64), _disk(64, 16).repeat(2, 1, 1, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = ms_ssim_loss(logits, target)
    torch.testing.assert_close(value, ms_ssim_loss(logits, target))


def test_module_wrapper():
    logits, target = torch.randn(1, 1, 32, 32), _disk(32, 8)
    torch.testing.assert_close(losses.Loss(focal_loss, gamma=1.0)(logits, target),
                               focal_loss(logits, target, gamma=1.0))
