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

from ._core import Feedback, check, checker

__all__ = ["check_dice_iou", "check_all_foreground_dice", "check_otsu", "check_oracle", "between_class_variance"]


def _scalar(v) -> float:
    """A float from a Python number, a 0-d/1-element numpy array or torch tensor."""
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    a = np.asarray(v, dtype=np.float64)
    if a.size != 1:
        raise ValueError(f"expected one number, got an array of shape {a.shape}")
    return float(a.reshape(()))


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


@checker
def check_dice_iou(dice_fn: Callable[[np.ndarray, np.ndarray], float],
                   iou_fn: Callable[[np.ndarray, np.ndarray], float]) -> Feedback:
    """Exercise 1: ``dice_fn(pred, target)`` and ``iou_fn(pred, target)`` for two boolean ``(H, W)`` masks.

    Checked against :func:`unet_lib.metrics.dice` / :func:`~unet_lib.metrics.iou` on six
    cases, including both masks empty (both scores 1.0 by the book's convention).
    """
    from .. import metrics

    for name, (p, t) in _mask_cases().items():
        want_d, want_i = metrics.dice(p, t).item(), metrics.iou(p, t).item()
        got_d, got_i = _scalar(dice_fn(p.copy(), t.copy())), _scalar(iou_fn(p.copy(), t.copy()))
        if not np.isfinite(got_d) or not np.isfinite(got_i):
            return check(False, "", f"for {name} you returned Dice={got_d}, IoU={got_i}: a 0/0 division. "
                                    "When both masks are empty there is nothing to find and nothing was found: "
                                    "return 1.0.")
        if abs(got_d - want_d) > 1e-9:
            hint = (" (Did you compute IoU instead? Dice counts the overlap twice: 2|P∩T| / (|P| + |T|).)"
                    if abs(got_d - want_i) < 1e-9 and want_d != want_i else
                    " Dice = 2 TP / (2 TP + FP + FN) = 2|P∩T| / (|P| + |T|).")
            return check(False, "", f"Dice is wrong for {name}: expected {want_d:.4f}, got {got_d:.4f}.{hint}")
        if abs(got_i - want_i) > 1e-9:
            return check(False, "", f"IoU is wrong for {name}: expected {want_i:.4f}, got {got_i:.4f}. "
                                    "IoU = TP / (TP + FP + FN) = |P∩T| / |P∪T|.")
    return check(True, "your Dice and IoU agree with unet_lib.metrics on all six cases, empty masks included.", "")


@checker
def check_all_foreground_dice(fn: Callable[[float], float]) -> Feedback:
    """Exercise 2: ``fn(f)`` = Dice of the "everything is foreground" mask when the object covers a fraction ``f``."""
    for f in (0.5, 0.1, 0.153, 0.22, 1.0, 0.01):
        want = 2 * f / (1 + f)
        got = _scalar(fn(f))
        if abs(got - want) > 1e-9:
            extra = ""
            if abs(got - f) < 1e-9:
                extra = " You returned the IoU (TP / (TP + FP + FN) = f): Dice counts TP twice."
            elif abs(got - 2 * f) < 1e-9:
                extra = " Check the denominator: |P| + |T| = (whole image) + (object) = 1 + f in image fractions."
            return check(False, "", f"for f={f} the Dice should be {want:.4f}, got {got:.4f}. Write TP, FP and FN "
                                    f"as fractions of the image: TP = f, FP = 1 - f, FN = 0.{extra}")
    return check(True, "Dice = 2f / (1 + f): a polyp covering 15% of the image gives 0.26 for free, "
                       "so any method must beat that floor.", "")


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


@checker
def check_otsu(fn: Callable[[np.ndarray], float]) -> Feedback:
    """Exercise 3: ``fn(image)`` returns Otsu's threshold ``t`` of a ``uint8`` image (foreground ``image > t``).

    Any ``t`` whose between-class variance is within 0.1% of the best one over all
    integer cuts is accepted (several cuts can tie: every ``t`` between two empty
    histogram bins gives the same split).
    """
    for name, img in _otsu_cases().items():
        cuts = np.arange(int(img.min()), int(img.max()))
        best = max(between_class_variance(img, c) for c in cuts)
        got_t = _scalar(fn(img.copy()))
        got = between_class_variance(img, got_t)
        if got < best * 0.999:
            return check(False, "", f"on {name} your threshold {got_t:g} separates the classes with between-class "
                                    f"variance {got:.1f}, but a cut reaches {best:.1f}. For every cut t of the "
                                    "histogram, compute w0 = P(x <= t), w1 = 1 - w0 and the two class means, and "
                                    "keep the t that maximises w0 * w1 * (mu0 - mu1)**2 (not the within-class "
                                    "variance, which must be minimised).")
    return check(True, "your threshold maximises the between-class variance on all four images, as Otsu (1979) "
                       "prescribes.", "")


@checker
def check_oracle(fn: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[float, float]]) -> Feedback:
    """Exercise 4: ``fn(x, target, thresholds) -> (best_t, best_dice)``: the per-image oracle, foreground ``x > t``.

    Checked against :func:`unet_lib.classical.dice_curve` on three feature maps.
    """
    from .. import classical

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:40, :50]
    disk = (yy - 18) ** 2 + (xx - 22) ** 2 <= 100
    cases = {
        "a bright disk on a noisy background": (np.clip(np.where(disk, 0.65, 0.35) + 0.12 * rng.standard_normal(disk.shape), 0, 1), disk),
        "a gradient image with an off-centre object": (xx / 49.0 * 0.7 + 0.3 * disk, disk),
        "random values with a random target": (rng.random((20, 30)), rng.random((20, 30)) < 0.3),
    }
    thresholds = np.linspace(0, 1, 41)
    for name, (x, target) in cases.items():
        curve = classical.dice_curve(x, target, thresholds, "above")
        got = fn(x.copy(), target.copy(), thresholds.copy())
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return check(False, "", "return a pair (best_threshold, best_dice).")
        t, d = _scalar(got[0]), _scalar(got[1])
        if abs(d - curve.max()) > 1e-9:
            return check(False, "", f"on {name} the best Dice over the thresholds is {curve.max():.4f}, you returned "
                                    f"{d:.4f}. Loop over every threshold, build x > t, compute its Dice with the "
                                    "target and keep the largest.")
        j = np.flatnonzero(np.isclose(thresholds, t))
        if j.size == 0 or abs(curve[j[0]] - d) > 1e-9:
            return check(False, "", f"on {name} your Dice {d:.4f} is right but the threshold {t:g} does not give it: "
                                    "return the threshold at which the best Dice occurs.")
    return check(True, "your oracle finds the best threshold of each image. Remember that it reads the ground "
                       "truth: it is a ceiling for thresholding, not a method.", "")
