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

from collections.abc import Mapping
from typing import Callable

import numpy as np

from ..compare import dice_by_size, paired_difference
from ..metrics import pooled_dice
from ._core import (
    Answer,
    Feedback,
    Mismatch,
    checker,
    close,
    correct,
    first_mismatch,
    not_yet,
    number,
    pair,
    real_number,
)

__all__ = ["check_paired_interval", "check_pooled_dice", "check_dice_by_size"]

_INTERVAL = pair(number(), number(), "a pair (low, high) of floats")


@checker
def check_paired_interval(fn: Callable[..., tuple[float, float]]) -> Feedback:
    """Exercise 1: ``fn(a, b, n_boot=2000, seed=0)`` returns the 95 % paired bootstrap interval of ``mean(a - b)``.

    Not a :func:`first_mismatch` loop: each call tests one property of the interval in turn.
    """
    rng = np.random.default_rng(7)
    n = 100
    # a constant difference: every resample has the same mean difference
    base = rng.random(n)
    lo, hi = _INTERVAL.read(fn(base + 0.1, base, n_boot=500, seed=0))
    if not close([lo, hi], [0.1, 0.1], 1e-9):
        return not_yet(f"when a - b is 0.1 on every image, every resample's mean difference is 0.1, so the "
                       f"interval must be (0.1, 0.1); got ({lo:.4f}, {hi:.4f}). Resample image *indices* and "
                       "take the same indices from a and b.")
    # images differ a lot, the two methods very little but consistently: pairing is what finds it
    b = rng.random(n)
    a = b + 0.02 + 0.01 * rng.standard_normal(n)
    lo, hi = _INTERVAL.read(fn(a, b, n_boot=2000, seed=0))
    mean = float((a - b).mean())
    if lo > hi:
        return not_yet(f"you returned ({lo:.4f}, {hi:.4f}): the low end comes first, (low, high).")
    if not lo <= mean <= hi:
        return not_yet(f"the interval ({lo:.4f}, {hi:.4f}) does not contain the observed mean difference "
                       f"{mean:.4f}: take the 2.5 % and 97.5 % quantiles of the resampled means of a - b.")
    if hi - lo > 0.05:
        return not_yet(f"the interval ({lo:.4f}, {hi:.4f}) is {hi - lo:.3f} wide, as wide as if a and b were "
                       "resampled independently. Pair them: draw one set of image indices per resample and "
                       "average a[idx] - b[idx].")
    ref = paired_difference(a, b, n_boot=2000, seed=0)
    width = ref["ci_high"] - ref["ci_low"]
    if not close([lo, hi], [ref["ci_low"], ref["ci_high"]], 0.25 * width):
        return not_yet(f"expected about ({ref['ci_low']:.4f}, {ref['ci_high']:.4f}), got ({lo:.4f}, {hi:.4f}): "
                       "a 95 % interval runs from the 2.5 % to the 97.5 % quantile of the bootstrap means.")
    if not close(_INTERVAL.read(fn(a, b, n_boot=2000, seed=0)), [lo, hi]):
        return not_yet("two calls with the same seed gave different intervals: make the random generator "
                       "from the seed (np.random.default_rng(seed)).")
    return correct(f"your paired interval ({lo:.4f}, {hi:.4f}) excludes 0 where the unpaired one would not "
                   "(about 0.16 wide here): the same images, compared image by image.")


def _pooled_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    big = np.zeros((2, 20, 20), bool)
    big[0, 2:18, 2:18] = True                 # a large object, found exactly (256 pixels)
    big[1, 5:7, 5:7] = True                   # a small one (4 pixels), missed entirely
    preds = big.copy()
    preds[1] = False
    rng = np.random.default_rng(3)
    t, p = rng.random((5, 16, 16)) > 0.6, rng.random((5, 16, 16)) > 0.5
    empty = np.zeros((3, 8, 8), bool)
    return {"a large object found exactly and a small one missed": (preds, big), "random masks": (p, t),
            "masks that are all empty": (empty, empty)}


def _pooled_hint(m: Mismatch) -> str:
    if m.name.startswith("a large object"):
        if close(m.got, 0.5, 1e-6):
            return ("you returned the mean of the per-image Dice (1 and 0). Pool first: add up TP, FP "
                    "and FN over all images, then take 2 TP / (2 TP + FP + FN) once.")
        return (f"for a large object found exactly and a small one missed, expected "
                f"2*256 / (2*256 + 0 + 4) = {m.want:.4f}, got {m.got:.4f}.")
    if m.name == "random masks":
        return (f"on random masks expected {m.want:.4f}, got {m.got:.4f}: TP = pred & target, "
                "FP = pred & ~target, FN = ~pred & target, summed over every pixel of every image.")
    return (f"with nothing to find and nothing found the book's convention is 1.0, got {m.got}: "
            "handle 2 TP + FP + FN = 0 before dividing.")


@checker
def check_pooled_dice(fn: Callable[..., float]) -> Feedback:
    """Exercise 2: ``fn(preds, targets)`` returns the Dice of all pixels pooled over a set of masks.

    Checked against :func:`unet_lib.metrics.pooled_dice`.
    """
    mismatch = first_mismatch(fn, _pooled_cases(), pooled_dice, compare=number(tol=1e-9, rel_tol=1e-6),
                              describe=_pooled_hint,
                              nan_hint="With nothing to find and nothing found the book's convention is 1.0: "
                                       "handle 2 TP + FP + FN = 0 before dividing.")
    if mismatch is not None:
        return mismatch
    return correct("pooled Dice is dominated by the large objects: the missed small polyp barely lowers it. "
                   "That is why the book reports the mean per-image Dice.")


def _read_strata(got) -> dict[str, float]:
    if not isinstance(got, Mapping):
        raise TypeError
    return {str(k): real_number(v) for k, v in got.items()}


def _same_strata(got: dict[str, float], want: dict[str, float]) -> bool:
    return set(got) == set(want) and all(close(got[s], v, 1e-9) for s, v in want.items())


# nan is read (not refused) so that a stratum kept with a nan mean gets the "leave it out" hint
_STRATA = Answer("a dict of numbers such as {'small': 0.61, 'medium': 0.82, 'large': 0.93}", _read_strata, _same_strata,
                 allow_nan=True)


def _strata_hint(m: Mismatch) -> str:
    if m.name == "objects that are all large" and set(m.got) != set(m.want):
        return ("when every object is large, return only the 'large' stratum (an empty stratum has no mean), "
                f"got the keys {sorted(m.got)}")
    if m.name.startswith("edges="):
        return "use the edges that are passed in, not fixed numbers."
    if set(m.got) != set(m.want):
        return f"expected the keys {sorted(m.want)}, got {sorted(m.got)}"
    s, v = next((s, v) for s, v in m.want.items() if not close(m.got[s], v, 1e-9))
    return (f"{s}: expected {v:.4f}, got {m.got[s]:.4f}. The edges belong to the upper stratum: fraction 0.05 is "
            "medium, 0.20 is large (fraction < 0.05 small, < 0.20 medium).")


@checker
def check_dice_by_size(fn: Callable[..., dict]) -> Feedback:
    """Exercise 3: ``fn(dice, fractions, edges=(0.05, 0.20))`` returns the mean Dice per size stratum.

    Checked against :func:`unet_lib.compare.dice_by_size`.
    """
    dice = np.array([0.1, 0.3, 0.6, 0.8, 0.9, 0.95])
    fractions = np.array([0.01, 0.049, 0.05, 0.19, 0.20, 0.6])
    cases = {
        "six images on both sides of the edges": (dice, fractions),
        "objects that are all large": (np.array([0.5, 0.7]), np.array([0.3, 0.4])),
        "edges=(0.1, 0.5)": (dice, fractions, (0.1, 0.5)),
    }
    mismatch = first_mismatch(fn, cases, dice_by_size, compare=_STRATA, describe=_strata_hint)
    if mismatch is not None:
        return mismatch
    return correct("these are the strata of the size table in this chapter.")
