"""Checkers for chapter 04: the weighted loss, the border weight map and instance F1.

Usage in the notebook::

    from unet_lib.exercises import ch04
    ch04.check_weighted_cross_entropy(my_weighted_cross_entropy)
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..instances import f1_from_iou
from ..losses import weighted_cross_entropy
from ..weights import border_term
from ._core import (
    Feedback,
    Mismatch,
    array,
    checker,
    close,
    correct,
    first_mismatch,
    not_yet,
    number,
    pair,
    scalar_tensor,
)

__all__ = ["check_weighted_cross_entropy", "check_border_term", "check_two_smallest", "check_object_f1"]


def _close(a, b, tol: float = 1e-5) -> bool:
    return close(a, b, tol, tol)


def _wce_cases() -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(4)
    cases = {}
    for b, h, w in [(1, 3, 4), (2, 5, 7), (3, 8, 6)]:
        logits = torch.randn(b, 2, h, w, generator=gen) * 2
        target = torch.randint(0, 2, (b, h, w), generator=gen)
        unit, random = torch.ones(b, h, w), torch.rand(b, h, w, generator=gen) * 10 + 0.5
        cases[f"logits of shape {(b, 2, h, w)} with unit weights"] = (logits, target, unit)
        cases[f"logits of shape {(b, 2, h, w)} with a random weight map"] = (logits, target, random)
    return cases


def _wce_hint(m: Mismatch) -> str:
    _, target, weight = m.args
    out_v, ref_v = m.got, m.want
    n, sw = target.numel(), float(weight.sum())
    if _close(out_v, -ref_v):
        return ("the sign is flipped: the paper's E = sum w log p is an energy to maximise "
                "(it is <= 0); the loss to minimise is its negative.")
    if _close(out_v, ref_v * n / sw):
        return ("you divided by the sum of the weights: divide by the number of pixels N "
                "instead, so the weights move the gradient without rescaling the loss.")
    if _close(out_v, ref_v * n):
        return ("you summed over the pixels: average instead (divide by the number of "
                "pixels B*H*W), so the loss does not grow with the image size.")
    if bool((weight == 1).all()):
        return ("even with all weights equal to 1 the value differs from the usual "
                "cross-entropy: take log_softmax over the class dimension (dim=1) and pick "
                "the entry of the true class, e.g. log_p.gather(1, target[:, None]).")
    return ("correct with unit weights but not with a weight map: multiply each pixel's "
            "-log p by its own weight w(x) before averaging.")


@checker
def check_weighted_cross_entropy(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    """Exercise 1: ``fn(logits (B, 2, H, W), target (B, H, W), weight (B, H, W)) -> scalar`` must equal
    ``-(1/N) sum_x w(x) log p_{l(x)}(x)`` (the paper's eq. 1 with a minus sign, averaged over pixels)."""
    mismatch = first_mismatch(fn, _wce_cases(), lambda *args: float(weighted_cross_entropy(*args)),
                              compare=scalar_tensor(tol=1e-5, rel_tol=1e-5), describe=_wce_hint)
    if mismatch is not None:
        return mismatch
    return correct("your loss is -(1/N) sum_x w(x) log p_l(x)(x): sign and normalisation match.")


def _border_cases() -> dict[str, tuple[np.ndarray, np.ndarray, float, float]]:
    rng = np.random.default_rng(2)
    cases = {}
    for w0, sigma in [(10.0, 5.0), (3.0, 2.0), (10.0, 8.0)]:
        d1 = rng.uniform(0, 12, (6, 7))
        d2 = d1 + rng.uniform(0, 12, (6, 7))
        cases[f"w0={w0}, sigma={sigma}"] = (d1, d2, w0, sigma)
    return cases


def _border_hint(m: Mismatch) -> str:
    d1, d2, w0, sigma = m.args
    out, ref = m.got, m.want
    if out.shape != ref.shape:
        return f"return one weight per pixel: expected shape {ref.shape}, got {out.shape}"
    if _close(out, w0 * np.exp(-(d1 ** 2 + d2 ** 2) / (2 * sigma ** 2))):
        return "you squared d1 and d2 separately: the paper squares their sum, (d1 + d2)**2."
    if (_close(out, w0 * np.exp(-(d1 + d2) ** 2 / sigma ** 2))
            or _close(out, w0 * np.exp(-(d1 + d2) ** 2 / (2 * sigma)))):
        return "check the denominator: it is 2 * sigma**2."
    if _close(out, w0 * np.exp(-(2 * d1) ** 2 / (2 * sigma ** 2))):
        return "use both distances: d1 to the nearest and d2 to the second-nearest object."
    return ("not yet equal to w0 * exp(-(d1 + d2)**2 / (2 * sigma**2)): compare a single pixel "
            "by hand, e.g. d1 = d2 = 1, w0 = 10, sigma = 5 gives 9.231.")


@checker
def check_border_term(fn: Callable[..., np.ndarray]) -> Feedback:
    """Exercise 2: ``fn(d1, d2, w0, sigma)`` must return ``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))``."""
    mismatch = first_mismatch(fn, _border_cases(), border_term, compare=array(tol=1e-5), describe=_border_hint)
    if mismatch is not None:
        return mismatch
    return correct("w0 * exp(-(d1 + d2)^2 / (2 sigma^2)): at d1 = d2 = 1 that is 92 % of w0, at d1 + d2 = 20 "
                   "it is already below 0.004.")


@checker
def check_two_smallest(fn: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple]) -> Feedback:
    """Exercise 3: ``fn(d1, d2, d) -> (d1_new, d2_new)`` keeps the two smallest distances per pixel.

    Not a :func:`first_mismatch` loop: each call continues from the arrays the previous call returned.
    """
    rng = np.random.default_rng(3)
    stack = rng.uniform(0, 20, (6, 5, 4))
    stack[2, 0, 0] = stack[1, 0, 0]                     # a tie
    answer = pair(array(allow_inf=True), array(allow_inf=True), "a tuple (d1_new, d2_new) of two arrays")
    d1, d2 = np.full((5, 4), np.inf), np.full((5, 4), np.inf)
    for k, d in enumerate(stack):
        d1, d2 = answer.read(fn(d1.copy(), d2.copy(), d.copy()))
        ref = np.sort(stack[:k + 1], axis=0)
        ref1, ref2 = ref[0], ref[1] if k else np.full((5, 4), np.inf)
        if d1.shape != ref1.shape or d2.shape != ref2.shape:
            return not_yet(f"after {k + 1} objects you returned arrays of shapes {d1.shape} and {d2.shape}; both "
                           f"should have the image's shape {ref1.shape}: one distance per pixel.")
        if not close(d1, ref1):
            return not_yet(f"after {k + 1} objects d1 is not the smallest distance: d1_new = min(d1, d).")
        if not close(d2, ref2):
            return not_yet(f"after {k + 1} objects d2 is not the second-smallest distance. Where d is the "
                           "new nearest (d < d1), the old d1 becomes the second: d2_new = d1; elsewhere "
                           "d2_new = min(d2, d).")
    return correct("one pass over the objects, two arrays of memory: this is how border_weight_map avoids "
                   "sorting N distance maps.")


def _f1_hint(m: Mismatch) -> str:
    iou, threshold = m.args
    out, ref = m.got, m.want
    p, t = iou.shape
    if p == 0:
        return "with no predictions and 3 true objects, TP = 0, FP = 0, FN = 3, so F1 = 0."
    many = int((iou >= threshold).sum())
    if close(out, 2 * many / (p + t), 1e-9):
        return ("a prediction (or a true object) may be matched only once: count pairs one-to-one "
                "(greedy from the highest IoU works), not every entry above the threshold.")
    if close(out, 2 * int((iou > threshold).sum()) / (p + t), 1e-9):
        return "a match needs IoU >= threshold (greater than *or equal*)."
    return (f"for {m.name} expected F1 = {ref:.4f}, got {out:.4f}."
            " Use F1 = 2 TP / (2 TP + FP + FN) with FP = P - TP and FN = T - TP.")


@checker
def check_object_f1(fn: Callable[..., float]) -> Feedback:
    """Exercise 4: ``fn(iou, threshold=0.5) -> F1`` over objects, one-to-one matching at IoU >= threshold."""
    cases = [
        (np.array([[0.9, 0.1], [0.05, 0.7]]), 0.5),                 # two clean matches
        (np.array([[0.9, 0.6], [0.7, 0.2], [0.0, 0.1]]), 0.5),      # one prediction would match twice
        (np.array([[0.5, 0.0]]), 0.5),                              # exactly at the threshold
        (np.array([[0.45, 0.3], [0.2, 0.8]]), 0.5),
        (np.array([[0.8, 0.0], [0.0, 0.6]]), 0.7),
        (np.zeros((0, 3)), 0.5),                                    # nothing predicted
    ]
    named = {f"iou={iou.tolist()} and threshold {threshold}": (iou, threshold) for iou, threshold in cases}
    mismatch = first_mismatch(fn, named, f1_from_iou, compare=number(tol=1e-9), describe=_f1_hint,
                              nan_hint="With no predictions F1 is 0 (TP = FP = 0, FN = 3), not 0 / 0: compute "
                                       "2 TP / (2 TP + FP + FN) rather than from precision and recall.")
    if mismatch is not None:
        return mismatch
    return correct("F1 over objects with one-to-one matching at IoU >= 0.5: a merged pair of nuclei costs one "
                   "FN (and often an FP), however good its pixel Dice.")
