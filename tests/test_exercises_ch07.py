"""The chapter 07 checkers accept the reference answers and reject typical mistakes."""
import numpy as np

from unet_lib import compare, metrics
from unet_lib.exercises import ch07


def reference_interval(a, b, n_boot=2000, seed=0):
    d = compare.paired_difference(a, b, n_boot=n_boot, seed=seed)
    return d["ci_low"], d["ci_high"]


def test_paired_interval_checker():
    assert ch07.check_paired_interval(reference_interval)

    def handwritten(a, b, n_boot=2000, seed=0):
        rng = np.random.default_rng(seed)
        d = np.asarray(a) - np.asarray(b)
        means = d[rng.integers(0, d.size, (n_boot, d.size))].mean(1)
        return tuple(np.quantile(means, [0.025, 0.975]))

    assert ch07.check_paired_interval(handwritten)

    def unpaired(a, b, n_boot=2000, seed=0):  # resamples a and b independently
        rng = np.random.default_rng(seed)
        a, b = np.asarray(a), np.asarray(b)
        means = (a[rng.integers(0, a.size, (n_boot, a.size))].mean(1)
                 - b[rng.integers(0, b.size, (n_boot, b.size))].mean(1))
        return tuple(np.quantile(means, [0.025, 0.975]))

    def unseeded(a, b, n_boot=2000, seed=0):
        return handwritten(a, b, n_boot, seed=None)

    def std_interval(a, b, n_boot=2000, seed=0):  # mean +- 2 std of the images: not an interval of the mean
        d = np.asarray(a) - np.asarray(b)
        return d.mean() - 2 * d.std(), d.mean() + 2 * d.std()

    for wrong in (unpaired, unseeded, std_interval, lambda a, b, **k: (0.0, 1.0)):
        fb = ch07.check_paired_interval(wrong)
        assert not fb and fb.message


def test_pooled_dice_checker():
    assert ch07.check_pooled_dice(metrics.pooled_dice)

    def per_image_mean(p, t):
        return float(metrics.dice(p, t).mean())

    def no_empty_case(p, t):
        p, t = np.asarray(p, bool), np.asarray(t, bool)
        with np.errstate(invalid="ignore"):
            return 2 * (p & t).sum() / (p.sum() + t.sum())

    def iou_instead(p, t):
        p, t = np.asarray(p, bool), np.asarray(t, bool)
        return (p & t).sum() / max((p | t).sum(), 1)

    for wrong in (per_image_mean, no_empty_case, iou_instead):
        fb = ch07.check_pooled_dice(wrong)
        assert not fb and fb.message


def test_dice_by_size_checker():
    assert ch07.check_dice_by_size(compare.dice_by_size)

    def edges_in_lower_stratum(dice, fractions, edges=(0.05, 0.20)):
        f, d = np.asarray(fractions), np.asarray(dice)
        labels = np.where(f <= edges[0], "small", np.where(f <= edges[1], "medium", "large"))
        return {s: float(d[labels == s].mean()) for s in ("small", "medium", "large") if (labels == s).any()}

    def fixed_edges(dice, fractions, edges=(0.05, 0.20)):
        return compare.dice_by_size(dice, fractions)

    def keeps_empty_strata(dice, fractions, edges=(0.05, 0.20)):
        out = {"small": float("nan"), "medium": float("nan"), "large": float("nan")}
        return {**out, **compare.dice_by_size(dice, fractions, edges)}

    for wrong in (edges_in_lower_stratum, fixed_edges, keeps_empty_strata, lambda d, f, edges=None: [1, 2, 3]):
        fb = ch07.check_dice_by_size(wrong)
        assert not fb and fb.message


def test_wrong_types_are_named():
    fb = ch07.check_paired_interval(lambda a, b, n_boot=2000, seed=0: float(np.mean(a) - np.mean(b)))
    assert not fb and "it should return a pair (low, high) of floats" in fb.message
    as_array = lambda a, b, n_boot=2000, seed=0: np.asarray(reference_interval(a, b, n_boot, seed))  # noqa: E731
    assert ch07.check_paired_interval(as_array)
    fb = ch07.check_pooled_dice(lambda p, t: metrics.dice(p, t))
    assert not fb and "returned a tensor of shape (2,); it should return a float" in fb.message
    fb = ch07.check_dice_by_size(lambda d, f, edges=(0.05, 0.20): list(compare.dice_by_size(d, f, edges).values()))
    assert not fb and "returned a list" in fb.message and "it should return a dict" in fb.message
