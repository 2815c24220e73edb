"""Checkers for the exercises of chapter 07 (comparing every model on Kvasir-SEG).

Usage::

    from unet_lib.exercises import ch07
    ch07.check_paired_interval(my_paired_interval)
    ch07.check_pooled_dice(my_pooled_dice)
    ch07.check_dice_by_size(my_dice_by_size)

Each checker calls the student's function on several cases, compares with a
reference, and returns a :class:`~unet_lib.exercises.Feedback`.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ._core import Feedback, check, checker

__all__ = ["check_paired_interval", "check_pooled_dice", "check_dice_by_size", "pooled_dice", "dice_by_size"]


def pooled_dice(preds, targets) -> float:
    """Reference: the Dice of all pixels of a set pooled, ``2 sum TP / (2 sum TP + sum FP + sum FN)``; 1.0 if all empty."""
    from .. import metrics

    c = metrics.confusion(preds, targets)
    tp, fp, fn = float(c.tp.sum()), float(c.fp.sum()), float(c.fn.sum())
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def dice_by_size(dice, fractions, edges=(0.05, 0.20)) -> dict[str, float]:
    """Reference: mean per-image Dice of the small, medium and large objects (strata without images are left out)."""
    from ..compare import size_strata

    labels = np.array(size_strata(fractions, edges))
    d = np.asarray(dice, dtype=float).ravel()
    return {s: float(d[labels == s].mean()) for s in ("small", "medium", "large") if (labels == s).any()}


def _pair(interval) -> tuple[float, float]:
    lo, hi = (float(v) for v in interval)
    return lo, hi


@checker
def check_paired_interval(fn: Callable[..., tuple[float, float]]) -> Feedback:
    """Exercise 1: ``fn(a, b, n_boot=2000, seed=0)`` returns the 95 % paired bootstrap interval of ``mean(a - b)``."""
    rng = np.random.default_rng(7)
    n = 100
    # a constant difference: every resample has the same mean difference
    base = rng.random(n)
    lo, hi = _pair(fn(base + 0.1, base, n_boot=500, seed=0))
    if not (math.isclose(lo, 0.1, abs_tol=1e-9) and math.isclose(hi, 0.1, abs_tol=1e-9)):
        return check(False, "", f"when a - b is 0.1 on every image, every resample's mean difference is 0.1, so the "
                                f"interval must be (0.1, 0.1); got ({lo:.4f}, {hi:.4f}). Resample image *indices* and "
                                "take the same indices from a and b.")
    # images differ a lot, the two methods very little but consistently: pairing is what finds it
    b = rng.random(n)
    a = b + 0.02 + 0.01 * rng.standard_normal(n)
    lo, hi = _pair(fn(a, b, n_boot=2000, seed=0))
    mean = float((a - b).mean())
    if not lo <= mean <= hi:
        return check(False, "", f"the interval ({lo:.4f}, {hi:.4f}) does not contain the observed mean difference "
                                f"{mean:.4f}: take the 2.5 % and 97.5 % quantiles of the resampled means of a - b.")
    if hi - lo > 0.05:
        return check(False, "", f"the interval ({lo:.4f}, {hi:.4f}) is {hi - lo:.3f} wide, as wide as if a and b were "
                                "resampled independently. Pair them: draw one set of image indices per resample and "
                                "average a[idx] - b[idx].")
    from ..compare import paired_difference

    ref = paired_difference(a, b, n_boot=2000, seed=0)
    width = ref["ci_high"] - ref["ci_low"]
    if abs(lo - ref["ci_low"]) > 0.25 * width or abs(hi - ref["ci_high"]) > 0.25 * width:
        return check(False, "", f"expected about ({ref['ci_low']:.4f}, {ref['ci_high']:.4f}), got ({lo:.4f}, {hi:.4f}): "
                                "a 95 % interval runs from the 2.5 % to the 97.5 % quantile of the bootstrap means.")
    if _pair(fn(a, b, n_boot=2000, seed=0)) != (lo, hi):
        return check(False, "", "two calls with the same seed gave different intervals: make the random generator "
                                "from the seed (np.random.default_rng(seed)).")
    return check(True, f"your paired interval ({lo:.4f}, {hi:.4f}) excludes 0 where the unpaired one would not "
                       "(about 0.16 wide here): the same images, compared image by image.", "")


@checker
def check_pooled_dice(fn: Callable[..., float]) -> Feedback:
    """Exercise 2: ``fn(preds, targets)`` returns the Dice of all pixels pooled over a set of masks."""
    big = np.zeros((2, 20, 20), bool)
    big[0, 2:18, 2:18] = True                 # a large object, found exactly (256 pixels)
    big[1, 5:7, 5:7] = True                   # a small one (4 pixels), missed entirely
    preds = big.copy()
    preds[1] = False
    got = float(fn(preds, big))
    want = pooled_dice(preds, big)
    if math.isclose(got, 0.5, abs_tol=1e-6):
        return check(False, "", "you returned the mean of the per-image Dice (1 and 0). Pool first: add up TP, FP "
                                "and FN over all images, then take 2 TP / (2 TP + FP + FN) once.")
    if not math.isclose(got, want, rel_tol=1e-6):
        return check(False, "", f"for a large object found exactly and a small one missed, expected "
                                f"2*256 / (2*256 + 0 + 4) = {want:.4f}, got {got:.4f}.")
    rng = np.random.default_rng(3)
    t, p = rng.random((5, 16, 16)) > 0.6, rng.random((5, 16, 16)) > 0.5
    got, want = float(fn(p, t)), pooled_dice(p, t)
    if not math.isclose(got, want, rel_tol=1e-6):
        return check(False, "", f"on random masks expected {want:.4f}, got {got:.4f}: TP = pred & target, "
                                "FP = pred & ~target, FN = ~pred & target, summed over every pixel of every image.")
    empty = np.zeros((3, 8, 8), bool)
    got = float(fn(empty, empty))
    if not math.isclose(got, 1.0):
        return check(False, "", f"with nothing to find and nothing found the book's convention is 1.0, got {got}: "
                                "handle 2 TP + FP + FN = 0 before dividing.")
    return check(True, "pooled Dice is dominated by the large objects: the missed small polyp barely lowers it. "
                       "That is why the book reports the mean per-image Dice.", "")


@checker
def check_dice_by_size(fn: Callable[..., dict]) -> Feedback:
    """Exercise 3: ``fn(dice, fractions, edges=(0.05, 0.20))`` returns the mean Dice per size stratum."""
    dice = np.array([0.1, 0.3, 0.6, 0.8, 0.9, 0.95])
    fractions = np.array([0.01, 0.049, 0.05, 0.19, 0.20, 0.6])
    want = dice_by_size(dice, fractions)
    got = fn(dice, fractions)
    if not isinstance(got, dict):
        return check(False, "", f"return a dict such as {{'small': ..., 'medium': ..., 'large': ...}}, got {type(got).__name__}")
    if set(got) != set(want):
        return check(False, "", f"expected the keys {sorted(want)}, got {sorted(got)}")
    for s, v in want.items():
        if not math.isclose(float(got[s]), v, abs_tol=1e-9):
            return check(False, "", f"{s}: expected {v:.4f}, got {float(got[s]):.4f}. The edges belong to the upper "
                                    "stratum: fraction 0.05 is medium, 0.20 is large (fraction < 0.05 small, "
                                    "< 0.20 medium).")
    got = fn(np.array([0.5, 0.7]), np.array([0.3, 0.4]))
    if set(got) != {"large"}:
        return check(False, "", f"when every object is large, return only the 'large' stratum (an empty stratum "
                                f"has no mean), got the keys {sorted(got)}")
    got = fn(dice, fractions, edges=(0.1, 0.5))
    want = dice_by_size(dice, fractions, (0.1, 0.5))
    if any(not math.isclose(float(got.get(s, float("nan"))), v) for s, v in want.items()):
        return check(False, "", "use the edges that are passed in, not fixed numbers.")
    return check(True, "these are the strata of the size table in this chapter.", "")
