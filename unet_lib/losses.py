"""Loss functions: small pure functions, plus a thin ``nn.Module`` wrapper.

Conventions: every function takes ``logits`` (the network's raw output, never
probabilities) and a ``target``, and returns a scalar averaged over the batch.
Binary tasks use one output channel and a sigmoid; multi-class tasks use
``num_classes`` channels and a softmax (``target`` then holds class indices).

Chapter 03 introduces BCE and soft Dice, chapter 04 the weighted cross-entropy,
chapter 06 the focal, MS-SSIM, IoU and hybrid losses and the UNet 3+ training loss
(:func:`unet3plus_loss`, with the classification-guided module's BCE).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_binary_target, check_class_target, check_weights

__all__ = ["bce_loss", "soft_dice_loss", "bce_dice_loss", "weighted_cross_entropy", "deep_supervision_loss", "Loss",
           "focal_loss", "ssim", "ms_ssim", "ms_ssim_scales", "MS_SSIM_WEIGHTS", "ms_ssim_loss", "iou_loss",
           "hybrid_loss", "unet3plus_loss"]


def _check_logits(logits, loss: str) -> torch.Tensor:
    """``logits`` must be one ``(B, C, H, W)`` tensor; a list of heads gets the deep-supervision hint."""
    if isinstance(logits, (list, tuple)):
        raise TypeError(f"{loss} takes one logit map (B, C, H, W), got a {type(logits).__name__} of {len(logits)} "
                        f"(deep-supervision heads, or a (segmentation, classification) pair?): score every head with "
                        f"losses.deep_supervision_loss(outputs, target, {loss}), or pick one head, e.g. outputs[-1]")
    if not torch.is_tensor(logits):
        raise TypeError(f"{loss} takes logits as a torch.Tensor (B, C, H, W), got {type(logits).__name__}")
    if logits.ndim != 4:
        raise ValueError(f"{loss} expects logits (B, C, H, W), got shape {tuple(logits.shape)}"
                         + ("; add the channel dimension: logits.unsqueeze(1)" if logits.ndim == 3 else ""))
    return logits


def _binary_target(logits: torch.Tensor, target: torch.Tensor, loss: str = "binary loss") -> torch.Tensor:
    """The target as a float ``(B, 1, H, W)`` tensor in [0, 1] like ``logits``, or a named error."""
    _check_logits(logits, loss)
    if logits.shape[1] != 1:
        raise ValueError(f"{loss} is a binary loss and expects logits (B, 1, H, W), got {tuple(logits.shape)}: "
                         f"for {logits.shape[1]} classes use weighted_cross_entropy or soft_dice_loss (softmax), or "
                         "build the network with num_classes=1")
    if not torch.is_tensor(target):
        raise TypeError(f"{loss}: the target must be a torch.Tensor, got {type(target).__name__}")
    if target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)
    if target.shape != logits.shape:
        raise ValueError(f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}")
    check_binary_target(target, f"the target of {loss}")
    return target.to(logits.dtype)


def _class_target(logits: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Class indices ``(B, H, W)`` (int64) for logits ``(B, C, H, W)``, ``C >= 2``, or a named error."""
    if not torch.is_tensor(target):
        raise TypeError(f"{loss}: the target must be a torch.Tensor, got {type(target).__name__}")
    if target.ndim == 4 and target.shape[1] == 1:
        target = target[:, 0]
    expected = (logits.shape[0],) + tuple(logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"{loss}: target shape {tuple(target.shape)} does not fit logits {tuple(logits.shape)}: "
                         f"class indices must be (B, H, W) = {expected} (or (B, 1, H, W))")
    check_class_target(target, logits.shape[1], f"the target of {loss}")
    return target.long()


def _check_smooth(smooth: float) -> None:
    if not smooth >= 0:
        raise ValueError(f"smooth must be >= 0 (it keeps an empty target predicted empty at loss 0), got {smooth}")


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits (numerically stable log-sigmoid), mean over pixels.

    Shape: logits ``(B, 1, H, W)``, target ``(B, 1, H, W)`` or ``(B, H, W)`` in {0, 1}.
    """
    return F.binary_cross_entropy_with_logits(logits, _binary_target(logits, target, "bce_loss"))


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice, computed per image and averaged (Milletari et al. 2016 use squares; we use sums).

    ``soft Dice = (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth)`` with ``p`` the probabilities.
    With one channel ``p = sigmoid(logits)``; with ``C > 1`` channels ``p = softmax(logits)`` and the
    loss averages over the foreground classes 1..C-1 (``target`` holds class indices ``(B, H, W)``).
    ``smooth`` keeps the loss defined (and 0) for an empty target predicted empty.
    The sums run in float32: under mixed precision a float16 sum over a 256x256 image
    (65,536 pixels) can overflow to ``inf``.
    """
    logits = _check_logits(logits, "soft_dice_loss").float()
    _check_smooth(smooth)
    if logits.shape[1] == 1:
        probs, onehot = torch.sigmoid(logits), _binary_target(logits, target, "soft_dice_loss")
    else:
        probs = logits.softmax(1)[:, 1:]
        classes = _class_target(logits, target, "soft_dice_loss")
        onehot = F.one_hot(classes, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
    dims = (2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    return (1 - (2 * inter + smooth) / (denom + smooth)).mean()


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice: the usual loss for binary polyp masks (pixel-wise and region-wise terms)."""
    return bce_loss(logits, target) + soft_dice_loss(logits, target)


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
                           ) -> torch.Tensor:
    """Pixel-weighted cross-entropy of the U-Net paper (Ronneberger et al. 2015, eq. 1).

    The paper prints ``E = sum_x w(x) log(p_l(x)(x))``, an energy to *maximise*. As a loss to minimise
    we take its negative and average over the pixels:

        ``L = -(1 / N) * sum_x w(x) * log p_{l(x)}(x)``,  ``N`` = number of pixels in the batch.

    Averaging over ``N`` (not over ``sum w``) keeps the size of the loss comparable across images,
    so the weights change where the gradient goes, not the effective learning rate; with all
    weights equal to 1 this is exactly the usual (unweighted) cross-entropy.

    Args:
        logits: ``(B, C, H, W)``; ``C = 1`` is treated as sigmoid/BCE, ``C >= 2`` as softmax.
        target: class indices ``(B, H, W)`` (or ``(B, 1, H, W)``).
        weight: per-pixel weights ``(B, H, W)`` (or ``(B, 1, H, W)``), e.g. from
            :func:`unet_lib.weights.border_weight_map`; ``None`` means all ones.

    Returns:
        Scalar loss.
    """
    _check_logits(logits, "weighted_cross_entropy")
    if weight is not None and not torch.is_tensor(weight):
        raise TypeError(f"weighted_cross_entropy: the weight map must be a torch.Tensor (B, H, W), got "
                        f"{type(weight).__name__}: convert it with torch.as_tensor(weight)")
    if weight is not None and weight.ndim == 4:
        weight = weight[:, 0]
    if logits.shape[1] == 1:
        target = _binary_target(logits, target, "weighted_cross_entropy")[:, 0]
        nll = F.binary_cross_entropy_with_logits(logits[:, 0], target, reduction="none")
    else:
        nll = F.cross_entropy(logits, _class_target(logits, target, "weighted_cross_entropy"), reduction="none")
    if weight is not None:
        if weight.shape != nll.shape:
            raise ValueError(f"weight map shape {tuple(weight.shape)} does not match the target {tuple(nll.shape)}")
        check_weights(weight, "the weight map of weighted_cross_entropy")
        nll = nll * weight.to(nll.dtype)
    return nll.mean()


def deep_supervision_loss(outputs: Sequence[torch.Tensor] | torch.Tensor, target: torch.Tensor,
                          loss_fn: Callable[..., torch.Tensor], weights: Sequence[float] | None = None,
                          *extra) -> torch.Tensor:
    """Apply ``loss_fn`` to every head separately and average (UNet++ and UNet 3+ deep supervision).

    This is *not* the loss of the averaged outputs: each head gets its own gradient signal.
    A single tensor is passed straight to ``loss_fn``.

    Args:
        outputs: the heads' logits (a list or tuple), or one tensor.
        target: the target every head is scored against.
        loss_fn: ``loss_fn(logits, target, *extra) -> scalar``, e.g. :func:`bce_dice_loss`.
        weights: one weight >= 0 per head (default all 1); the result is their weighted mean.
        *extra: passed on to ``loss_fn`` (a weight map).

    Raises:
        ValueError: no heads, or weights that are negative, sum to 0 or are not one per head.
    """
    if isinstance(outputs, torch.Tensor):
        return loss_fn(outputs, target, *extra)
    if not isinstance(outputs, (list, tuple)):
        raise TypeError(f"deep_supervision_loss takes a list of logits (one per head), got {type(outputs).__name__}")
    if len(outputs) == 0:
        raise ValueError("deep_supervision_loss got an empty list of heads: the model returned no outputs "
                         "(build it with deep_supervision=True, or pass its single logit map)")
    weights = list(weights) if weights is not None else [1.0] * len(outputs)
    if len(weights) != len(outputs):
        raise ValueError(f"{len(weights)} weights for {len(outputs)} outputs: give one weight per head")
    if any(not float(w) >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"head weights must be >= 0 with a positive sum, got {weights}")
    total = sum(w * loss_fn(o, target, *extra) for w, o in zip(weights, outputs))
    return total / sum(weights)


class Loss(nn.Module):
    """Wrap a loss function as a module: ``Loss(soft_dice_loss, smooth=1.0)(logits, target)``."""

    def __init__(self, fn: Callable[..., torch.Tensor], **kwargs):
        super().__init__()
        self.fn, self.kwargs = fn, kwargs

    def forward(self, logits: torch.Tensor, target: torch.Tensor, *extra) -> torch.Tensor:
        return self.fn(logits, target, *extra, **self.kwargs)

    def extra_repr(self) -> str:
        return f"{self.fn.__name__}, {self.kwargs}" if self.kwargs else self.fn.__name__


# --------------------------------------------------------------------------------------
# Chapter 06: the hybrid loss of UNet 3+ (focal + MS-SSIM + IoU)
# --------------------------------------------------------------------------------------
#: weights of the five scales of MS-SSIM, finest first (Wang, Simoncelli & Bovik 2003)
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: MS-SSIM terms are clamped to [_SSIM_EPS, 1] before the fractional powers: a negative contrast-structure
#: term (anti-correlated windows) would give ``nan`` and a zero one an infinite gradient.
_SSIM_EPS = 1e-6


def focal_loss(logits: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0, alpha: float | None = 0.25
               ) -> torch.Tensor:
    """Binary focal loss (Lin et al. 2017), mean over pixels: the pixel-level term of the UNet 3+ hybrid loss.

    ``FL = -alpha_t (1 - p_t)^gamma log(p_t)`` with ``p_t`` the probability given to the true class
    (``p`` on foreground pixels, ``1 - p`` on background) and ``alpha_t = alpha`` on foreground,
    ``1 - alpha`` on background. ``(1 - p_t)^gamma`` shrinks the loss of pixels that are already right,
    so training concentrates on the hard ones. ``gamma=0, alpha=None`` is exactly :func:`bce_loss`.
    ``log p_t`` is computed from the logits (stable for any logit).

    Args:
        logits: ``(B, 1, H, W)``.
        target: ``(B, 1, H, W)`` or ``(B, H, W)`` in {0, 1}.
        gamma: focusing parameter (``gamma >= 1`` keeps the gradient finite at ``p_t = 1``); 2 in the paper.
        alpha: foreground weight, or ``None`` for no class weighting; 0.25 in the paper.

    Returns:
        Scalar loss; 0 is its infimum (approached as the logits of a right prediction grow).
    """
    if not gamma >= 0:
        raise ValueError(f"focal_loss: gamma must be >= 0 (0 is plain BCE; the paper uses 2), got {gamma}")
    if alpha is not None and not 0 <= alpha <= 1:
        raise ValueError(f"focal_loss: alpha is the foreground weight in [0, 1] (0.25 in the paper) or None, "
                         f"got {alpha}")
    logits = _full_precision(_check_logits(logits, "focal_loss"))
    target = _binary_target(logits, target, "focal_loss")
    nll = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # -log p_t
    p_t = torch.exp(-nll)
    loss = (1 - p_t).clamp_min(0) ** gamma * nll
    if alpha is not None:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.mean()


def _full_precision(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 (mixed precision) -> float32: sums over a 256x256 map overflow float16, and SSIM's
    variances (E[x^2] - E[x]^2) lose every digit in it."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _no_autocast(device_type: str):
    """A context that turns mixed precision off (convolutions would otherwise run in float16)."""
    import contextlib

    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except RuntimeError:  # a device type without autocast support
        return contextlib.nullcontext()


def _gaussian_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean SSIM and mean contrast-structure term over the valid windows."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    channels = x.shape[1]
    maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)                   # (B, 5C, H, W)
    k = window.numel()
    groups = 5 * channels
    maps = F.conv2d(maps, window.view(1, 1, 1, k).expand(groups, 1, 1, k), groups=groups)   # rows
    maps = F.conv2d(maps, window.view(1, 1, k, 1).expand(groups, 1, k, 1), groups=groups)   # columns
    mu_x, mu_y, xx, yy, xy = maps.split(channels, dim=1)
    var_x = (xx - mu_x ** 2).clamp_min(0)
    var_y = (yy - mu_y ** 2).clamp_min(0)
    cov = xy - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    return (luminance * cs).mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, window_size: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5), per image.

    ``SSIM = l * cs`` averaged over every position where the window fits (no padding), with
    luminance ``l = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)`` and contrast-structure
    ``cs = (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2)``, ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``.
    The same numbers as ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=L)``.

    Shape: ``x``, ``y`` ``(B, C, H, W)`` with ``H, W >= window_size`` -> ``(B,)``.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) tensors of the same shape, "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < window_size:
        raise ValueError(f"image {tuple(x.shape[-2:])} is smaller than the {window_size}x{window_size} window: "
                         f"pass a smaller odd window_size")
    return _ssim_and_cs(x, y.to(x.dtype), _gaussian_window(window_size, sigma, x), data_range)[0]


def ms_ssim_scales(height: int, width: int, window_size: int = 11, max_scales: int = len(MS_SSIM_WEIGHTS)) -> int:
    """How many MS-SSIM scales fit: scale ``j`` (0-based) has side ``min(H, W) // 2**j`` and must hold one window.

    The standard five scales with an 11x11 window need sides of at least 176 (176 / 16 = 11);
    the book's ``cpu`` profile (96 px) gets 4 scales and the ``smoke`` profile (32 px) 2.
    Returns 0 when even the full-resolution image is smaller than the window.
    """
    side, scales = min(height, width), 0
    while scales < max_scales and side >= window_size:
        scales, side = scales + 1, side // 2
    return scales


def ms_ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, window_size: int = 11, sigma: float = 1.5,
            weights: Sequence[float] = MS_SSIM_WEIGHTS) -> torch.Tensor:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003), per image, numerically safe.

    ``MS-SSIM = l_M^{w_M} * prod_{j=1..M} cs_j^{w_j}``: the contrast-structure term at every scale
    (the image halved by 2x2 averaging between scales) and the luminance at the coarsest one
    (so the last factor is ``SSIM_M^{w_M}``), with the standard weights :data:`MS_SSIM_WEIGHTS`.

    Small images (documented adaptation, not in the paper): only the scales whose side still holds
    one whole window are used (:func:`ms_ssim_scales`: 4 at 96 px, 2 at 32 px, all 5 from 176 px), and
    their weights are renormalised to sum to 1 (the five standard weights are used as published; they
    sum to 1.0001). An image smaller than the window uses one scale with the window shrunk to the
    largest odd size that fits.

    Safety: every factor is clamped to ``[1e-6, 1]`` before its fractional power (anti-correlated
    windows give a negative ``cs``, whose power would be ``nan``; a zero would give an infinite
    gradient), so the value and its gradient are finite for any inputs in ``[0, data_range]``,
    constant and all-zero images included.

    Args:
        x, y: ``(B, C, H, W)`` images in ``[0, data_range]`` (probabilities and masks: ``data_range=1``).
        data_range: ``L`` in the constants ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``.
        window_size: side of the Gaussian window (11).
        sigma: its standard deviation (1.5).
        weights: per-scale exponents, finest first.

    Returns:
        ``(B,)`` MS-SSIM in ``[0, 1]``; 1 for identical images.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ms_ssim needs two (B, C, H, W) tensors of the same shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    x = _full_precision(x)
    y = y.to(x.dtype)
    scales = ms_ssim_scales(x.shape[-2], x.shape[-1], window_size, len(weights))
    if scales == 0:  # tiny image: one scale, the window shrunk to fit
        side = min(x.shape[-2:])
        window_size, scales = side if side % 2 else side - 1, 1
    w = torch.tensor(list(weights)[:scales], dtype=x.dtype, device=x.device)
    if scales < len(weights):  # fewer scales than weights: renormalise the ones used to sum to 1
        w = w / w.sum()
    window = _gaussian_window(window_size, sigma, x)
    factors = []
    with _no_autocast(x.device.type):
        for j in range(scales):
            if j > 0:
                x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
            ssim_j, cs_j = _ssim_and_cs(x, y, window, data_range)
            factors.append(ssim_j if j == scales - 1 else cs_j)
        values = torch.stack(factors, dim=1).clamp(_SSIM_EPS, 1.0)          # (B, scales)
        return (values ** w).prod(dim=1)


def ms_ssim_loss(logits: torch.Tensor, target: torch.Tensor, **kwargs) -> torch.Tensor:
    """``1 - MS-SSIM(sigmoid(logits), target)``, averaged over the batch: the region/boundary term of the hybrid loss.

    MS-SSIM compares local means, contrasts and correlations in windows at several scales, so
    it weighs the pixels near the polyp's boundary (where the mask varies) much more than the
    flat inside or outside. Keyword arguments go to :func:`ms_ssim` (see its small-image rule).

    Shape: logits ``(B, 1, H, W)``, target ``(B, 1, H, W)`` or ``(B, H, W)``. Returns a scalar in [0, 1].
    """
    logits = _full_precision(_check_logits(logits, "ms_ssim_loss"))
    target = _binary_target(logits, target, "ms_ssim_loss")
    return 1 - ms_ssim(torch.sigmoid(logits), target, data_range=1.0, **kwargs).mean()


def iou_loss(logits: torch.Tensor, target: torch.Tensor, *, smooth: float = 1.0) -> torch.Tensor:
    """Soft Jaccard loss (Rahman & Wang 2016), per image, averaged: the map-level term of the hybrid loss.

    ``1 - (sum(p t) + smooth) / (sum(p + t - p t) + smooth)`` with ``p = sigmoid(logits)``. With
    binary ``p`` it is exactly 1 - IoU; ``smooth`` makes an empty target predicted empty score 0.

    Shape: logits ``(B, 1, H, W)``, target ``(B, 1, H, W)`` or ``(B, H, W)``. Returns a scalar in [0, 1].
    """
    _check_smooth(smooth)
    logits = _full_precision(_check_logits(logits, "iou_loss"))
    target = _binary_target(logits, target, "iou_loss")
    probs = torch.sigmoid(logits)
    inter = (probs * target).sum((2, 3))
    union = (probs + target - probs * target).sum((2, 3))
    return (1 - (inter + smooth) / (union + smooth)).mean()


def hybrid_loss(logits: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0, alpha: float | None = 0.25,
                smooth: float = 1.0) -> torch.Tensor:
    """The UNet 3+ hybrid loss (Huang et al. 2020, eq. 4): focal + MS-SSIM + IoU.

    Three levels of the same mask: the focal loss works on each pixel, MS-SSIM on local
    patches (boundaries), the IoU loss on the whole map. All three are 0 for a perfect,
    confident prediction.

    Args:
        logits, target: as in :func:`focal_loss`.
        gamma, alpha: of :func:`focal_loss`.
        smooth: of :func:`iou_loss`.

    Returns:
        Scalar ``focal_loss + ms_ssim_loss + iou_loss``.
    """
    return (focal_loss(logits, target, gamma=gamma, alpha=alpha) + ms_ssim_loss(logits, target)
            + iou_loss(logits, target, smooth=smooth))


def unet3plus_loss(output, target: torch.Tensor, has_object: torch.Tensor | None = None, *,
                   seg_loss=None, cls_weight: float = 1.0) -> torch.Tensor:
    """Training loss of any :class:`~unet_lib.models.UNet3Plus` output: a loss on every head, plus BCE for the CGM.

    ``output`` is what the model returns: logits, a list of logits (deep supervision: the
    loss of each head, averaged, see :func:`deep_supervision_loss`), or a pair
    ``(segmentation, cls_logits)`` with the CGM, which adds ``cls_weight`` times the binary
    cross-entropy of the two CGM logits against the one-hot label (the paper's BCE).

    Args:
        output: the model's output.
        target: masks ``(B, 1, H, W)`` in {0, 1}.
        has_object: ``(B,)`` labels, 1 if the image contains something to segment (needed with the CGM).
        seg_loss: ``seg_loss(logits, target) -> scalar``; default :func:`hybrid_loss`.
        cls_weight: weight of the CGM's BCE.

    Returns:
        Scalar loss.
    """
    seg_loss = seg_loss or hybrid_loss
    if isinstance(output, tuple):
        seg, cls_logits = output
        if has_object is None:
            raise ValueError("a model with the CGM needs the image labels: batches (image, mask, has_object)")
        if has_object.numel() != cls_logits.shape[0]:
            raise ValueError(f"has_object holds {has_object.numel()} labels for a batch of {cls_logits.shape[0]} "
                             "images: give one label (0 or 1) per image")
        check_binary_target(has_object, "has_object (the CGM's image labels)", exact=True)
        onehot = F.one_hot(has_object.long().view(-1), 2).to(cls_logits.dtype)
        cls_loss = F.binary_cross_entropy_with_logits(cls_logits, onehot)
        return deep_supervision_loss(seg, target, seg_loss) + cls_weight * cls_loss
    return deep_supervision_loss(output, target, seg_loss)
