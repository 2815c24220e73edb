"""Cheap checks of what goes into a loss or a training step: targets, class indices, weights.

Every check is vectorised: one ``aminmax`` (and at most one element-wise comparison) per tensor,
then one transfer of two numbers to the host, never a Python loop over pixels. The losses call
them on every call and :func:`unet_lib.train.fit` and :func:`unet_lib.train.evaluate` on every
batch, so a 0/255 mask, a -1/1 target, a class index the network has no channel for or a negative
weight fails at once, with the values found and the fix, instead of training on without a word.

Conventions (the book's, chapter 03): a binary target holds 0 (background) and 1 (foreground);
a multi-class target holds class indices ``0..num_classes-1``; a weight map holds weights >= 0.
"""
from __future__ import annotations

import torch

__all__ = ["value_range", "check_binary_target", "check_class_target", "check_weights", "check_finite"]


def value_range(x: torch.Tensor) -> tuple[float, float]:
    """``(min, max)`` of a tensor in one pass (NaN if it holds a NaN); ``(0, 0)`` when it is empty."""
    if x.numel() == 0:
        return 0.0, 0.0
    x = x.detach()
    if x.dtype == torch.bool:
        x = x.to(torch.uint8)
    lo, hi = torch.aminmax(x)
    lo, hi = torch.stack([lo.double(), hi.double()]).tolist()
    return lo, hi


def _nan(lo: float, hi: float) -> bool:
    return lo != lo or hi != hi


def _scale_hint(lo: float, hi: float) -> str:
    if lo < 0:
        return "; -1/1 targets? use (target > 0).float()"
    if hi > 1:
        return "; a 0/255 mask? use (mask > 127).float()" if hi <= 255 else ""
    return ""


def check_finite(x: torch.Tensor, what: str = "tensor") -> None:
    """Raise ``ValueError`` naming ``what`` when ``x`` holds NaN or infinity."""
    if x.is_floating_point() and x.numel() and not bool(torch.isfinite(x).all()):
        n_nan = int(torch.isnan(x).sum())
        kind = f"{n_nan} NaN" if n_nan else "infinite values"
        raise ValueError(f"{what} holds {kind} (shape {tuple(x.shape)}): check the data that produced it")


def check_binary_target(target: torch.Tensor, what: str = "target", exact: bool = False) -> None:
    """Check that a binary target holds values in [0, 1] (``exact=True``: only 0 and 1).

    The losses accept soft targets in [0, 1]; :func:`unet_lib.train.fit` asks for ``exact`` masks,
    which also catches a mask divided by 255 twice or resized with bilinear interpolation.

    Raises:
        ValueError: names the values found (NaN, the range, a value strictly between 0 and 1) and the fix.
    """
    lo, hi = value_range(target)
    if _nan(lo, hi):
        raise ValueError(f"{what} holds NaN (shape {tuple(target.shape)}): check the masks")
    if lo < 0 or hi > 1:
        raise ValueError(f"{what} holds values from {lo:g} to {hi:g}, but a binary target must hold 0 (background) "
                         f"and 1 (foreground){_scale_hint(lo, hi)}")
    if exact and target.is_floating_point() and target.numel():
        soft = (target != 0) & (target != 1)
        if bool(soft.any()):
            v = float(target[soft].flatten()[0])
            raise ValueError(f"{what} holds values strictly between 0 and 1 (e.g. {v:g}), but a mask must be 0 or 1: "
                             "a mask divided by 255 twice, or resized with bilinear interpolation? resize masks with "
                             "nearest neighbour (data.resize_mask) and threshold them, e.g. (mask > 0.5).float(); "
                             "soft targets: pass check_targets=False")


def check_class_target(target: torch.Tensor, num_classes: int, what: str = "target") -> None:
    """Check that a target holds class indices ``0..num_classes-1`` (whole numbers, any dtype).

    Raises:
        ValueError: names the range found, the network's number of classes and the fix.
    """
    lo, hi = value_range(target)
    if _nan(lo, hi):
        raise ValueError(f"{what} holds NaN (shape {tuple(target.shape)}): check the labels")
    hint = _scale_hint(lo, hi) if num_classes == 2 else ""
    if lo < 0:
        raise ValueError(f"{what} holds class indices from {lo:g} to {hi:g}, but class indices are "
                         f"0..{num_classes - 1}{hint}")
    if hi > num_classes - 1:
        raise ValueError(f"{what} holds class indices from {lo:g} to {hi:g}, but the network has {num_classes} "
                         f"class{'es' if num_classes != 1 else ''} (indices 0..{num_classes - 1}){hint}; "
                         f"or build the network with num_classes={int(hi) + 1}")
    if target.is_floating_point() and target.numel() and bool((target != target.round()).any()):
        raise ValueError(f"{what} holds fractional values, but class indices are whole numbers 0..{num_classes - 1}: "
                         "resize label images with nearest neighbour (data.resize_mask)")


def check_weights(weight: torch.Tensor, what: str = "weight map") -> None:
    """Check that per-pixel (or per-image) weights are finite and >= 0.

    Raises:
        ValueError: names the smallest weight (or the NaN) and the fix.
    """
    lo, hi = value_range(weight)
    if _nan(lo, hi) or hi == float("inf"):
        raise ValueError(f"{what} holds NaN or infinite values (shape {tuple(weight.shape)}): "
                         "check how it was computed")
    if lo < 0:
        raise ValueError(f"{what} holds negative values (min {lo:g}): weights must be >= 0 (a negative weight "
                         "rewards the wrong class); border_weight_map gives weights >= 1")
