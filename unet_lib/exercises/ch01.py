"""Checkers for the exercises of chapter 01 (the thresholding baseline).

Usage::

    from unet_lib.exercises import ch01
    ch01.check_dice_iou(my_dice, my_iou)
    ch01.check_all_foreground_dice(my_all_foreground_dice)
    ch01.check_otsu(my_otsu)
    ch01.check_oracle(my_oracle)

Each checker calls the student's function on several cases, compares with a
reference, and returns a :class:`~unet_lib.exercises.Feedback`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .. import classical, metrics
from ._core import Feedback, Mismatch, checker, close, correct, first_mismatch, number, pair

__all__ = ["check_dice_iou", "check_all_foreground_dice", "check_otsu", "check_oracle", "between_class_variance"]

_EMPTY_RULE = "When both masks are empty there is nothing to find and nothing was found: return 1.0."


def _mask_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1)
    t = np.zeros((4, 4), bool)
    t[:2, :2] = True
    p = np.zeros((4, 4), bool)
    p[:2, 1:3] = True
    return {
        "the 4x4 example (2 of 4 pixels overlap)": (p, t),
        "a perfect prediction": (t.copy(), t),
        "no overlap at all": (~t, t),
        "an empty prediction of a non-empty target": (np.zeros_like(t), t),
        "both masks empty": (np.zeros((3, 5), bool), np.zeros((3, 5), bool)),
        "random 7x9 masks": (rng.random((7, 9)) < 0.4, rng.random((7, 9)) < 0.3),
    }


def _dice_hint(m: Mismatch) -> str:
    want_iou = metrics.iou(*m.args).item()
    hint = (" (Did you compute IoU instead? Dice counts the overlap twice: 2|P∩T| / (|P| + |T|).)"
            if close(m.got, want_iou, 1e-9) and not close(m.want, want_iou, 1e-9) else
            " Dice = 2 TP / (2 TP + FP + FN) = 2|P∩T| / (|P| + |T|).")
    return f"Dice is wrong for {m.name}: expected {m.want:.4f}, got {m.got:.4f}.{hint}"


def _iou_hint(m: Mismatch) -> str:
    return (f"IoU is wrong for {m.name}: expected {m.want:.4f}, got {m.got:.4f}. "
            "IoU = TP / (TP + FP + FN) = |P∩T| / |P∪T|.")


@checker
def check_dice_iou(dice_fn: Callable[[np.ndarray, np.ndarray], float],
                   iou_fn: Callable[[np.ndarray, np.ndarray], float]) -> Feedback:
    """Exercise 1: ``dice_fn(pred, target)`` and ``iou_fn(pred, target)`` for two boolean ``(H, W)`` masks.

    Checked against :func:`unet_lib.metrics.dice` / :func:`~unet_lib.metrics.iou` on six
    cases, including both masks empty (both scores 1.0 by the book's convention).
    """
    cases = _mask_cases()
    mismatch = first_mismatch(dice_fn, cases, lambda p, t: metrics.dice(p, t).item(), describe=_dice_hint,
                              nan_hint=_EMPTY_RULE, who="your Dice function")
    if mismatch is None:
        mismatch = first_mismatch(iou_fn, cases, lambda p, t: metrics.iou(p, t).item(), describe=_iou_hint,
                                  nan_hint=_EMPTY_RULE, who="your IoU function")
    if mismatch is not None:
        return mismatch
    return correct("your Dice and IoU agree with unet_lib.metrics on all six cases, empty masks included.")


def _all_foreground_hint(m: Mismatch) -> str:
    f = m.args[0]
    extra = ""
    if close(m.got, f, 1e-9):
        extra = " You returned the IoU (TP / (TP + FP + FN) = f): Dice counts TP twice."
    elif close(m.got, 2 * f, 1e-9):
        extra = " Check the denominator: |P| + |T| = (whole image) + (object) = 1 + f in image fractions."
    return (f"for f={f} the Dice should be {m.want:.4f}, got {m.got:.4f}. Write TP, FP and FN as fractions of the "
            f"image: TP = f, FP = 1 - f, FN = 0.{extra}")


@checker
def check_all_foreground_dice(fn: Callable[[float], float]) -> Feedback:
    """Exercise 2: ``fn(f)`` = Dice of the "everything is foreground" mask when the object covers a fraction ``f``."""
    cases = {f"f={f}": (f,) for f in (0.5, 0.1, 0.153, 0.22, 1.0, 0.01)}
    mismatch = first_mismatch(fn, cases, lambda f: 2 * f / (1 + f), describe=_all_foreground_hint,
                              nan_hint="With FN = 0 the denominator 2 TP + FP + FN = 1 + f is never 0.")
    if mismatch is not None:
        return mismatch
    return correct("Dice = 2f / (1 + f): a polyp covering 15% of the image gives 0.26 for free, "
                   "so any method must beat that floor.")


def between_class_variance(image: np.ndarray, t: float) -> float:
    """Otsu's criterion ``w0 w1 (mu0 - mu1)^2`` of the cut ``image <= t`` / ``image > t`` (0 if a class is empty)."""
    v = np.asarray(image, dtype=np.float64).ravel()
    lo, hi = v[v <= t], v[v > t]
    if lo.size == 0 or hi.size == 0:
        return 0.0
    w0, w1 = lo.size / v.size, hi.size / v.size
    return float(w0 * w1 * (lo.mean() - hi.mean()) ** 2)


def _otsu_cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    bimodal = np.concatenate([rng.normal(60, 12, 3000), rng.normal(170, 20, 1000)])
    skewed = np.concatenate([rng.normal(40, 8, 4500), rng.normal(200, 10, 300)])
    three = np.concatenate([rng.normal(30, 5, 1000), rng.normal(120, 5, 1000), rng.normal(220, 5, 1000)])
    return {
        "a bimodal image (dark 75%, bright 25%)": np.clip(bimodal, 0, 255).astype(np.uint8).reshape(40, 100),
        "a skewed image (a few bright pixels)": np.clip(skewed, 0, 255).astype(np.uint8).reshape(60, 80),
        "an image with three intensity levels": np.clip(three, 0, 255).astype(np.uint8).reshape(30, 100),
        "two values only (10 and 240)": np.array([[10, 10, 240], [10, 240, 10]], np.uint8),
    }


def _best_cut(img: np.ndarray) -> tuple[np.ndarray, float]:
    """The image and the best between-class variance over its integer cuts (the reference of exercise 3)."""
    cuts = np.arange(int(img.min()), int(img.max()))
    return img, max(between_class_variance(img, c) for c in cuts)


def _reaches_best(t: float, ref: tuple[np.ndarray, float]) -> bool:
    img, best = ref
    return between_class_variance(img, t) >= best * 0.999


def _otsu_hint(m: Mismatch) -> str:
    img, best = m.want
    got = between_class_variance(img, m.got)
    return (f"on {m.name} your threshold {m.got:g} separates the classes with between-class variance {got:.1f}, "
            f"but a cut reaches {best:.1f}. For every cut t of the histogram, compute w0 = P(x <= t), w1 = 1 - w0 "
            "and the two class means, and keep the t that maximises w0 * w1 * (mu0 - mu1)**2 (not the "
            "within-class variance, which must be minimised).")


@checker
def check_otsu(fn: Callable[[np.ndarray], float]) -> Feedback:
    """Exercise 3: ``fn(image)`` returns Otsu's threshold ``t`` of a ``uint8`` image (foreground ``image > t``).

    Any ``t`` whose between-class variance is within 0.1% of the best one over all
    integer cuts is accepted (several cuts can tie: every ``t`` between two empty
    histogram bins gives the same split).
    """
    cases = {name: (img,) for name, img in _otsu_cases().items()}
    answer = number().judged_by(_reaches_best, "a threshold (one number)")
    mismatch = first_mismatch(fn, cases, _best_cut, compare=answer, describe=_otsu_hint)
    if mismatch is not None:
        return mismatch
    return correct("your threshold maximises the between-class variance on all four images, as Otsu (1979) "
                   "prescribes.")


_THRESHOLDS = np.linspace(0, 1, 41)


def _oracle_cases() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:40, :50]
    disk = (yy - 18) ** 2 + (xx - 22) ** 2 <= 100
    noisy = np.clip(np.where(disk, 0.65, 0.35) + 0.12 * rng.standard_normal(disk.shape), 0, 1)
    return {
        "a bright disk on a noisy background": (noisy, disk, _THRESHOLDS),
        "a gradient image with an off-centre object": (xx / 49.0 * 0.7 + 0.3 * disk, disk, _THRESHOLDS),
        "random values with a random target": (rng.random((20, 30)), rng.random((20, 30)) < 0.3, _THRESHOLDS),
    }


def _oracle_curve(x: np.ndarray, target: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return classical.dice_curve(x, target, thresholds, "above")


def _threshold_gives(t: float, d: float, curve: np.ndarray) -> bool:
    j = [k for k, threshold in enumerate(_THRESHOLDS) if close(t, threshold, 1e-8, 1e-5)]
    return bool(j) and close(d, curve[j[0]], 1e-9)


def _oracle_right(got: tuple[float, float], curve: np.ndarray) -> bool:
    t, d = got
    return close(d, curve.max(), 1e-9) and _threshold_gives(t, d, curve)


def _oracle_hint(m: Mismatch) -> str:
    t, d = m.got
    if not close(d, m.want.max(), 1e-9):
        return (f"on {m.name} the best Dice over the thresholds is {m.want.max():.4f}, you returned {d:.4f}. "
                "Loop over every threshold, build x > t, compute its Dice with the target and keep the largest.")
    return (f"on {m.name} your Dice {d:.4f} is right but the threshold {t:g} does not give it: return the threshold "
            "at which the best Dice occurs.")


@checker
def check_oracle(fn: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[float, float]]) -> Feedback:
    """Exercise 4: ``fn(x, target, thresholds) -> (best_t, best_dice)``: the per-image oracle, foreground ``x > t``.

    Checked against :func:`unet_lib.classical.dice_curve` on three feature maps.
    """
    answer = pair(number(), number(), "a pair (best_threshold, best_dice)").judged_by(_oracle_right)
    mismatch = first_mismatch(fn, _oracle_cases(), _oracle_curve, compare=answer, describe=_oracle_hint)
    if mismatch is not None:
        return mismatch
    return correct("your oracle finds the best threshold of each image. Remember that it reads the ground "
                   "truth: it is a ceiling for thresholding, not a method.")
