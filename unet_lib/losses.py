"""Loss functions: small pure functions, plus a thin ``nn.Module`` wrapper.

Conventions: every function takes ``logits`` (the network's raw output, never
probabilities) and a ``target``, and returns a scalar averaged over the batch.
Binary tasks use one output channel and a sigmoid; multi-class tasks use
``num_classes`` channels and a softmax (``target`` then holds class indices).

Chapter 03 introduces BCE and soft Dice, chapter 04 the weighted cross-entropy,
chapter 06 the focal, MS-SSIM, IoU and hybrid losses.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["bce_loss", "soft_dice_loss", "bce_dice_loss", "weighted_cross_entropy", "deep_supervision_loss", "Loss"]


def _binary_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] != 1:
        raise ValueError(f"binary loss expects logits (B, 1, H, W), got {tuple(logits.shape)}")
    if target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)
    if target.shape != logits.shape:
        raise ValueError(f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}")
    return target.to(logits.dtype)


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits (numerically stable log-sigmoid), mean over pixels.

    Shape: logits ``(B, 1, H, W)``, target ``(B, 1, H, W)`` or ``(B, H, W)`` in {0, 1}.
    """
    return F.binary_cross_entropy_with_logits(logits, _binary_target(logits, target))


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice, computed per image and averaged (Milletari et al. 2016 use squares; we use sums).

    ``soft Dice = (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth)`` with ``p`` the probabilities.
    With one channel ``p = sigmoid(logits)``; with ``C > 1`` channels ``p = softmax(logits)`` and the
    loss averages over the foreground classes 1..C-1 (``target`` holds class indices ``(B, H, W)``).
    ``smooth`` keeps the loss defined (and 0) for an empty target predicted empty.
    """
    if logits.shape[1] == 1:
        probs, onehot = torch.sigmoid(logits), _binary_target(logits, target)
    else:
        probs = logits.softmax(1)[:, 1:]
        onehot = F.one_hot(target.long(), logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
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
    if target.ndim == 4:
        target = target[:, 0]
    if weight is not None and weight.ndim == 4:
        weight = weight[:, 0]
    if logits.shape[1] == 1:
        nll = F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype), reduction="none")
    else:
        nll = F.cross_entropy(logits, target.long(), reduction="none")
    if weight is not None:
        if weight.shape != nll.shape:
            raise ValueError(f"weight map shape {tuple(weight.shape)} does not match the target {tuple(nll.shape)}")
        nll = nll * weight.to(nll.dtype)
    return nll.mean()


def deep_supervision_loss(outputs: Sequence[torch.Tensor] | torch.Tensor, target: torch.Tensor,
                          loss_fn: Callable[..., torch.Tensor], weights: Sequence[float] | None = None,
                          *extra) -> torch.Tensor:
    """Apply ``loss_fn`` to every head separately and average (UNet++ and UNet 3+ deep supervision).

    This is *not* the loss of the averaged outputs: each head gets its own gradient signal.
    A single tensor is passed straight to ``loss_fn``.
    """
    if isinstance(outputs, torch.Tensor):
        return loss_fn(outputs, target, *extra)
    weights = list(weights) if weights is not None else [1.0] * len(outputs)
    if len(weights) != len(outputs):
        raise ValueError(f"{len(weights)} weights for {len(outputs)} outputs")
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
