"""The chapter 01 checkers accept the reference answers and reject typical mistakes."""
import numpy as np
import pytest
from skimage import filters

from unet_lib import classical, metrics
from unet_lib.exercises import Feedback, ch01


def _not_implemented(*args):
    raise NotImplementedError


# -- exercise 1: Dice and IoU -------------------------------------------------------------------
def _dice(p, t):
    tp, s = (p & t).sum(), p.sum() + t.sum()
    return 1.0 if s == 0 else 2 * tp / s


def _iou(p, t):
    u = (p | t).sum()
    return 1.0 if u == 0 else (p & t).sum() / u


def test_dice_iou_checker_accepts_reference_and_library():
    assert ch01.check_dice_iou(_dice, _iou)
    assert ch01.check_dice_iou(lambda p, t: metrics.dice(p, t), lambda p, t: metrics.iou(p, t))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_dice_iou_checker_rejects_mistakes():
    no_empty_rule = lambda p, t: 2 * (p & t).sum() / (p.sum() + t.sum())  # noqa: E731  0/0 -> nan
    swapped = ch01.check_dice_iou(_iou, _dice)
    assert not swapped and "IoU instead" in swapped.message
    assert not ch01.check_dice_iou(no_empty_rule, _iou)
    assert not ch01.check_dice_iou(_dice, lambda p, t: (p & t).sum() / max(1, (p | t).sum()))  # empty -> 0
    assert not ch01.check_dice_iou(_dice, lambda p, t: (p & t).sum() / max(1, p.sum() + t.sum()))
    fb = ch01.check_dice_iou(_not_implemented, _iou)
    assert not fb and "NotImplementedError" in fb.message


# -- exercise 2: the all-foreground floor -------------------------------------------------------
def test_all_foreground_checker():
    assert ch01.check_all_foreground_dice(lambda f: 2 * f / (1 + f))
    wrong_iou = ch01.check_all_foreground_dice(lambda f: f)
    assert not wrong_iou and "IoU" in wrong_iou.message
    assert not ch01.check_all_foreground_dice(lambda f: 2 * f)
    assert not ch01.check_all_foreground_dice(lambda f: np.array([2 * f / (1 + f)] * 2))


# -- exercise 3: Otsu ---------------------------------------------------------------------------
def _otsu(img):
    hist = np.bincount(img.ravel(), minlength=256).astype(float)
    p = hist / hist.sum()
    w0 = np.cumsum(p)
    m = np.cumsum(p * np.arange(256))
    mu_t = m[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        sb = (mu_t * w0 - m) ** 2 / (w0 * (1 - w0))
    return int(np.nanargmax(np.where(np.isfinite(sb), sb, np.nan)))


def test_otsu_checker_accepts_correct_thresholds():
    assert ch01.check_otsu(_otsu)
    assert ch01.check_otsu(lambda img: filters.threshold_otsu(img))  # the library answer is accepted too


def test_otsu_checker_rejects_mistakes():
    def within_max(img):  # maximises the within-class variance instead of minimising it
        cuts = np.arange(img.min(), img.max())
        def within(t):
            lo, hi = img[img <= t].astype(float), img[img > t].astype(float)
            return lo.size * lo.var() + hi.size * hi.var()
        return cuts[int(np.argmax([within(t) for t in cuts]))]

    for wrong in (lambda img: img.mean(), lambda img: 127, lambda img: np.median(img), within_max, _not_implemented):
        fb = ch01.check_otsu(wrong)
        assert not fb and fb.message


def test_between_class_variance_by_hand():
    img = np.array([[0, 0, 10, 10]])
    assert ch01.between_class_variance(img, 5) == 0.5 * 0.5 * 100
    assert ch01.between_class_variance(img, 10) == 0.0


# -- exercise 4: the per-image oracle -----------------------------------------------------------
def test_oracle_checker():
    def oracle(x, target, thresholds):
        d = classical.dice_curve(x, target, thresholds)
        return thresholds[int(np.argmax(d))], d.max()

    def loop_oracle(x, target, thresholds):
        scores = [metrics.dice(x > t, target).item() for t in thresholds]
        j = int(np.argmax(scores))
        return float(thresholds[j]), scores[j]

    assert ch01.check_oracle(oracle)
    assert ch01.check_oracle(loop_oracle)
    below = lambda x, t, th: loop_oracle(1 - x, t, th)  # noqa: E731  wrong polarity
    wrong_t = lambda x, t, th: (0.123, loop_oracle(x, t, th)[1])  # noqa: E731
    for wrong in (below, wrong_t, lambda x, t, th: 0.5, _not_implemented):
        fb = ch01.check_oracle(wrong)
        assert not fb and fb.message


# -- unusable answers: None, nan and a wrong type are "not yet" with the problem named -----------
def check_dice(fn):
    return ch01.check_dice_iou(fn, _iou)


def check_iou(fn):
    return ch01.check_dice_iou(_dice, fn)


BAD_ANSWERS = {
    "None": (lambda *args, **kwargs: None, "returned None"),
    "nan": (lambda *args, **kwargs: float("nan"), "returned nan (not a number)"),
    "a string": (lambda *args, **kwargs: "0.5", "returned a str ('0.5')"),
}


@pytest.mark.parametrize("bad", BAD_ANSWERS)
@pytest.mark.parametrize("check", [check_dice, check_iou, ch01.check_all_foreground_dice, ch01.check_otsu,
                                   ch01.check_oracle], ids=lambda check: check.__name__)
def test_unusable_answers_are_named(check, bad):
    fn, problem = BAD_ANSWERS[bad]
    fb = check(fn)
    assert isinstance(fb, Feedback) and not fb and str(fb).startswith("Not yet: ")
    assert problem in fb.message and "raised" not in fb.message    # the checker itself never crashes


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_all_foreground_checker_rejects_nan_and_none():
    # abs(nan - want) > tol is False: a nan must still never pass
    def nan_at_one(f):
        return np.float64(0) / np.float64(0) if f == 1.0 else 2 * f / (1 + f)

    nan_at_one = ch01.check_all_foreground_dice(nan_at_one)
    assert not nan_at_one and "for f=1.0" in nan_at_one.message and "nan" in nan_at_one.message
    forgot_return = ch01.check_all_foreground_dice(lambda f: print(2 * f / (1 + f)))
    assert not forgot_return and "returned None; it should return a float" in forgot_return.message
    as_text = ch01.check_all_foreground_dice(lambda f: f"{2 * f / (1 + f):.4f}")
    assert not as_text and "returned a str ('0.6667'); it should return a float" in as_text.message


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_dice_iou_checker_names_the_nan_of_both_masks_empty():
    no_empty_rule = lambda p, t: 2 * (p & t).sum() / (p.sum() + t.sum())  # noqa: E731
    fb = ch01.check_dice_iou(no_empty_rule, _iou)
    assert not fb and fb.message.startswith("for both masks empty your Dice function returned nan")
    assert "return 1.0" in fb.message
    fb = ch01.check_dice_iou(_dice, lambda p, t: (p & t).sum() / (p | t).sum())
    assert not fb and "your IoU function returned nan" in fb.message
