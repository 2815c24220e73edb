"""Segmentation metrics, all from one confusion function (chapter 01 defines them).

Every metric is per image: a batch of ``B`` masks gives a tensor of shape ``(B,)``,
so that means, confidence intervals and per-image distributions are all possible.
Conventions for empty masks: when the prediction and the target are both empty,
every score is 1.0 (nothing to find, nothing found); when a denominator is zero
but the other mask is not empty, the score is 0.0.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["Confusion", "confusion", "dice", "iou", "precision", "recall", "pooled_dice", "binarize",
           "summarize"]


class Confusion(NamedTuple):
    """Per-image pixel counts, each of shape ``(B,)``."""

    tp: torch.Tensor
    fp: torch.Tensor
    fn: torch.Tensor
    tn: torch.Tensor


def _as_batch(x) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim == 2:           # one (H, W) mask
        t = t[None]
    elif t.ndim == 4:         # (B, 1, H, W)
        if t.shape[1] != 1:
            raise ValueError(f"expected binary masks (B, 1, H, W), got {tuple(t.shape)}: take argmax over classes "
                             "or pick one class channel first")
        t = t[:, 0]
    elif t.ndim != 3:
        raise ValueError(f"expected a mask (H, W), (B, H, W) or (B, 1, H, W), got shape {tuple(t.shape)}")
    return t


def binarize(x, threshold: float = 0.5) -> torch.Tensor:
    """Boolean mask from probabilities (``> threshold``) or from booleans/0-1 integers.

    Raises:
        ValueError: the probabilities hold NaN (a diverged network): NaN is neither above nor below
            the threshold, so it would silently count as background; or values outside [0, 1] (logits
            thresholded at 0.5 would be scored wrongly without a word).
    """
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.dtype == torch.bool:
        return t
    if t.is_floating_point() and bool(torch.isnan(t).any()):
        raise ValueError(f"cannot binarize: {int(torch.isnan(t).sum())} of {t.numel()} probabilities are NaN "
                         f"(shape {tuple(t.shape)}): the network diverged or its input held NaN; "
                         "check the logits before scoring them")
    if t.is_floating_point() and t.numel():
        lo, hi = float(t.min()), float(t.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"cannot binarize: probabilities lie in [0, 1], but these run from {lo:g} to {hi:g}: "
                             "logits? pass torch.sigmoid(logits) (or train.masks_from_logits(logits)); a 0/255 "
                             "mask? use mask > 127")
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold is a probability in [0, 1], got {threshold}")
    return t > threshold


def confusion(pred, target) -> Confusion:
    """True/false positives/negatives per image.

    Args:
        pred: predicted binary mask(s): bool or {0, 1}; ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)``;
            numpy arrays and tensors are both accepted.
        target: ground-truth mask(s) of the same shape.

    Returns:
        :class:`Confusion` with four float64 tensors of shape ``(B,)``.
    """
    p, t = _as_batch(pred), _as_batch(target)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {tuple(p.shape)} differs from target shape {tuple(t.shape)}")
    for name, m in (("prediction", p), ("target", t)):
        if m.dtype != torch.bool and m.numel() and not bool(((m == 0) | (m == 1)).all()):
            if m.is_floating_point() and bool(torch.isnan(m).any()):
                raise ValueError(f"{name} holds NaN: the network diverged or its input held NaN; NaN is not a "
                                 "mask value (scores would count it as background)")
            lo, hi = float(m.min()), float(m.max())
            hint = ("a 0/255 mask? use mask > 127; probabilities? metrics.binarize(probs)" if hi > 1
                    else "probabilities? threshold them with metrics.binarize(probs)")
            raise ValueError(f"{name} is not binary (values from {lo:g} to {hi:g}, not only 0 and 1): {hint}")
    p, t = p.bool().flatten(1), t.bool().flatten(1)
    tp = (p & t).sum(1).double()
    fp = (p & ~t).sum(1).double()
    fn = (~p & t).sum(1).double()
    tn = (~p & ~t).sum(1).double()
    return Confusion(tp, fp, fn, tn)


def _ratio(num: torch.Tensor, den: torch.Tensor, both_empty: torch.Tensor) -> torch.Tensor:
    out = num / den.clamp_min(1)
    return torch.where(den == 0, both_empty.double(), out)


def dice(pred, target) -> torch.Tensor:
    """Dice = 2 TP / (2 TP + FP + FN), per image, shape ``(B,)``; 1.0 when both masks are empty."""
    c = confusion(pred, target)
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn, torch.ones_like(c.tp))


def iou(pred, target) -> torch.Tensor:
    """Intersection over union (Jaccard) = TP / (TP + FP + FN), per image; 1.0 when both masks are empty."""
    c = confusion(pred, target)
    return _ratio(c.tp, c.tp + c.fp + c.fn, torch.ones_like(c.tp))


def precision(pred, target) -> torch.Tensor:
    """TP / (TP + FP), per image; with nothing predicted: 1.0 if the target is empty too, else 0.0."""
    c = confusion(pred, target)
    return _ratio(c.tp, c.tp + c.fp, c.fn == 0)


def recall(pred, target) -> torch.Tensor:
    """TP / (TP + FN), per image; with an empty target: 1.0 if nothing was predicted, else 0.0."""
    c = confusion(pred, target)
    return _ratio(c.tp, c.tp + c.fn, c.fp == 0)


def pooled_dice(pred, target) -> float:
    """Dice of all pixels of a set pooled: 2 sum TP / (2 sum TP + sum FP + sum FN), one number for the set.

    Unlike the per-image :func:`dice`, large objects dominate it: a missed small object barely
    lowers it (chapter 07 contrasts the two). 1.0 when every prediction and target is empty.

    Args:
        pred: predicted binary masks, any shape :func:`confusion` accepts.
        target: ground-truth masks of the same shape.

    Returns:
        A Python float.
    """
    c = confusion(pred, target)
    tp, fp, fn = c.tp.sum().item(), c.fp.sum().item(), c.fn.sum().item()
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def summarize(values, n_boot: int = 2000, seed: int = 0, ci: float = 0.95) -> dict[str, float]:
    """Mean, standard deviation and a bootstrap confidence interval of per-image scores.

    Returns:
        ``{"mean", "std", "ci_low", "ci_high", "n"}`` as plain floats (``n`` as int).
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().double().cpu().numpy()
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        raise ValueError("no values to summarize")
    if not np.isfinite(v).all():
        bad = np.flatnonzero(~np.isfinite(v))
        raise ValueError(f"{bad.size} of {v.size} values are NaN or infinite (first at index {bad[0]}): a mean "
                         "and interval over them would be NaN; find where they come from (an empty loader, a "
                         "diverged network) or drop them explicitly")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be at least 1 bootstrap resample (2000 is usual), got {n_boot}")
    if not 0 < ci < 1:
        raise ValueError(f"ci is a coverage in (0, 1), e.g. 0.95, got {ci}")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(1)
    lo, hi = np.quantile(means, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "ci_low": float(lo), "ci_high": float(hi), "n": int(v.size)}
