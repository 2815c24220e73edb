"""Every checker of every chapter against wrong answers: none may pass, none may crash.

For each exercise there is a right answer (the notebook's solution). From it the suite derives the wrong
answers a student hands in: ``None`` (a forgotten ``return``), ``nan`` and infinities (a 0 / 0, a log 0),
wrong types (a string, a dict, a bool, an object, an empty list), nan and inf *inside* the right answer,
the right values in a wrong shape or container, the right values as a wrong type, and near misses just
beyond the checker's tolerance. Every one must be "Not yet" (0 false passes), and the hint must never be
the checker crashing (no "raised", no line number inside unet_lib).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pytest
import torch

from unet_lib import classical, metrics
from unet_lib.exercises import Feedback, ch01, ch02, ch03, ch04, ch05, ch06, ch07


# ------------------------------------------------------------------------------ the right answers
def dice(p, t):
    s = p.sum() + t.sum()
    return 1.0 if s == 0 else 2.0 * np.logical_and(p, t).sum() / s


def iou(p, t):
    u = np.logical_or(p, t).sum()
    return 1.0 if u == 0 else np.logical_and(p, t).sum() / u


def all_foreground_dice(f):
    return 2 * f / (1 + f)


def otsu(image):
    hist = np.bincount(image.ravel(), minlength=256).astype(float)
    prob = hist / hist.sum()
    w0, m0 = np.cumsum(prob), np.cumsum(prob * np.arange(256))
    w1 = 1 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0[-1] * w0 - m0) ** 2 / (w0 * w1)
    between[(w0 == 0) | (w1 <= 1e-12)] = -1
    return int(np.argmax(between))


def oracle(x, target, thresholds):
    d = classical.dice_curve(x, target, thresholds, "above")
    j = int(np.argmax(d))
    return float(thresholds[j]), float(d[j])


def bilinear_kernel(factor):
    k = 2 * factor - factor % 2
    centre = factor - 1 if k % 2 == 1 else factor - 0.5
    tent = 1 - np.abs(np.arange(k) - centre) / factor
    return np.outer(tent, tent)


def receptive_field(layers):
    r, jump = 1, 1
    for kernel, stride in layers:
        r += (kernel - 1) * jump
        jump *= stride
    return r, jump


def skip_parameters(features, num_classes, variant):
    return ch02.skip_parameters(features, num_classes, variant)


def output_size(n):
    for _ in range(4):
        n -= 4
        if n <= 0 or n % 2:
            return None
        n //= 2
    n -= 4
    for _ in range(4):
        n = 2 * n - 4
    return n if n > 0 else None


def center_crop(x, height, width):
    top, left = (x.shape[-2] - height) // 2, (x.shape[-1] - width) // 2
    return x[..., top:top + height, left:left + width]


def double_conv_params(cin, cout, batch_norm):
    extra = 2 * cout if batch_norm else cout
    return 9 * cin * cout + extra + 9 * cout * cout + extra


def weighted_cross_entropy(logits, target, weight):
    log_p = logits.log_softmax(1).gather(1, target[:, None].long())[:, 0]
    return -(weight * log_p).mean()


def border_term(d1, d2, w0, sigma):
    return w0 * np.exp(-(d1 + d2) ** 2 / (2 * sigma ** 2))


def two_smallest(d1, d2, d):
    closer = d < d1
    return np.where(closer, d, d1), np.where(closer, d1, np.minimum(d2, d))


def object_f1(iou_matrix, threshold=0.5):
    rows, cols = np.nonzero(iou_matrix >= threshold)
    used_p, used_t, tp = set(), set(), 0
    for k in np.argsort(-iou_matrix[rows, cols], kind="stable"):
        i, j = rows[k], cols[k]
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            tp += 1
    p, t = iou_matrix.shape
    return 2 * tp / (p + t) if p + t else 1.0


def node_in_channels(i, j, features, in_channels):
    if j == 0:
        return in_channels if i == 0 else features[i - 1]
    return (j + 1) * features[i]


def pruned_nodes(depth):
    return {(i, j) for i in range(depth + 1) for j in range(depth + 1 - i)}


def deep_supervision_loss(outputs, target, loss_fn):
    return torch.stack([loss_fn(head, target) for head in outputs]).mean()


def count_macs(model, input_size):
    from unet_lib.measure import count_macs as reference
    return reference(model, input_size)


def skip_sources(stage):
    return ch06.skip_sources(stage)


def decoder_parameters(features):
    return ch06.decoder_parameters(features)


def soft_iou_loss(probs, target):
    inter = (probs * target).sum(dim=(2, 3))
    union = (probs + target - probs * target).sum(dim=(2, 3))
    return (1 - (inter + 1) / (union + 1)).mean()


def gate(logits, cls_logits):
    keep = (cls_logits.argmax(dim=1) == 1).view(-1, 1, 1, 1)
    return torch.where(keep, logits, torch.full_like(logits, -1e4))


def paired_interval(a, b, n_boot=2000, seed=0):
    rng = np.random.default_rng(seed)
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def pooled_dice(preds, targets):
    c = metrics.confusion(preds, targets)
    tp, fp, fn = c.tp.sum().item(), c.fp.sum().item(), c.fn.sum().item()
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def dice_by_size(dice_values, fractions, edges=(0.05, 0.20)):
    dice_values, fractions = np.asarray(dice_values, dtype=float), np.asarray(fractions, dtype=float)
    labels = np.where(fractions < edges[0], "small", np.where(fractions < edges[1], "medium", "large"))
    return {s: float(dice_values[labels == s].mean()) for s in ("small", "medium", "large") if (labels == s).any()}


# ------------------------------------------------------------------------------ the exercises
def _first(fn):        # check_dice_iou takes two functions: wrong Dice, right IoU
    return lambda dice_fn: ch01.check_dice_iou(dice_fn, iou)


def _second(fn):       # right Dice, wrong IoU
    return lambda iou_fn: ch01.check_dice_iou(dice, iou_fn)


# name -> (checker taking one function, the right answer, near misses {name: wrong function})
EXERCISES: dict[str, tuple[Callable[[Callable], Feedback], Callable, dict[str, Callable]]] = {
    "ch01.dice": (_first(dice), dice, {"dice + 1e-7": lambda p, t: dice(p, t) + 1e-7,
                                       "iou for dice": iou}),
    "ch01.iou": (_second(iou), iou, {"iou + 1e-7": lambda p, t: iou(p, t) + 1e-7,
                                     "empty -> 0": lambda p, t: iou(p, t) if (p | t).any() else 0.0}),
    "ch01.all_foreground_dice": (ch01.check_all_foreground_dice, all_foreground_dice,
                                 {"+1e-7": lambda f: all_foreground_dice(f) + 1e-7, "iou": lambda f: f}),
    "ch01.otsu": (ch01.check_otsu, otsu, {"t + 15": lambda img: otsu(img) + 15, "mean": lambda img: img.mean()}),
    "ch01.oracle": (ch01.check_oracle, oracle,
                    {"dice + 1e-7": lambda x, t, th: (oracle(x, t, th)[0], oracle(x, t, th)[1] + 1e-7),
                     "next threshold": lambda x, t, th: (oracle(x, t, th)[0] + 0.025, oracle(x, t, th)[1])}),
    "ch02.bilinear_kernel": (ch02.check_bilinear_kernel, bilinear_kernel,
                             {"one tap + 1e-4": lambda f: bilinear_kernel(f) + np.eye(2 * f - f % 2)[0] * 1e-4,
                              "normalised": lambda f: bilinear_kernel(f) / bilinear_kernel(f).sum()}),
    "ch02.receptive_field": (ch02.check_receptive_field, receptive_field,
                             {"r + 1": lambda layers: (receptive_field(layers)[0] + 1, receptive_field(layers)[1]),
                              "swapped": lambda layers: receptive_field(layers)[::-1]}),
    "ch02.skip_parameters": (ch02.check_skip_parameters, skip_parameters,
                             {"+1": lambda *a: skip_parameters(*a) + 1}),
    "ch03.output_size": (ch03.check_output_size, output_size,
                         {"+1": lambda n: None if output_size(n) is None else output_size(n) + 1,
                          "0 for None": lambda n: output_size(n) or 0}),
    "ch03.center_crop": (ch03.check_center_crop, center_crop,
                         {"one pixel off": lambda x, h, w: center_crop(torch.roll(x, 1, -1), h, w),
                          "+1e-6": lambda x, h, w: center_crop(x, h, w) + 1e-6}),
    "ch03.double_conv_params": (ch03.check_double_conv_params, double_conv_params,
                                {"+1": lambda *a: double_conv_params(*a) + 1}),
    "ch04.weighted_cross_entropy": (ch04.check_weighted_cross_entropy, weighted_cross_entropy,
                                    {"x (1 + 1e-3)": lambda *a: weighted_cross_entropy(*a) * (1 + 1e-3),
                                     "sign": lambda *a: -weighted_cross_entropy(*a)}),
    "ch04.border_term": (ch04.check_border_term, border_term,
                         {"x (1 + 1e-3)": lambda *a: border_term(*a) * (1 + 1e-3)}),
    "ch04.two_smallest": (ch04.check_two_smallest, two_smallest,
                          {"d2 + 1e-9": lambda *a: (two_smallest(*a)[0], two_smallest(*a)[1] + 1e-9),
                           "swapped": lambda *a: two_smallest(*a)[::-1]}),
    "ch04.object_f1": (ch04.check_object_f1, object_f1, {"+1e-7": lambda *a: object_f1(*a) + 1e-7}),
    "ch05.node_in_channels": (ch05.check_node_in_channels, node_in_channels,
                              {"+1": lambda *a: node_in_channels(*a) + 1}),
    "ch05.pruned_nodes": (ch05.check_pruned_nodes, pruned_nodes,
                          {"one node too many": lambda d: pruned_nodes(d) | {(d, d)},
                           "one node short": lambda d: pruned_nodes(d) - {(0, 0)}}),
    "ch05.deep_supervision_loss": (ch05.check_deep_supervision_loss, deep_supervision_loss,
                                   {"x (1 + 1e-3)": lambda *a: deep_supervision_loss(*a) * (1 + 1e-3),
                                    "detached": lambda *a: deep_supervision_loss(*a).detach()}),
    "ch05.count_macs": (ch05.check_count_macs, count_macs, {"+1": lambda *a: count_macs(*a) + 1}),
    "ch06.skip_sources": (ch06.check_skip_sources, skip_sources,
                          {"factor x 2": lambda s: [(n, o, f * 2 if o == "pool" else f) for n, o, f in
                                                    skip_sources(s)]}),
    "ch06.decoder_parameters": (ch06.check_decoder_parameters, decoder_parameters,
                                {"+1": lambda f: decoder_parameters(f) + 1}),
    "ch06.soft_iou_loss": (ch06.check_soft_iou_loss, soft_iou_loss,
                           {"+1e-4": lambda *a: soft_iou_loss(*a) + 1e-4}),
    "ch06.gate": (ch06.check_gate, gate,
                  {"kept x 1.001": lambda lg, c: torch.where((c.argmax(1) == 1).view(-1, 1, 1, 1), lg * 1.001,
                                                             torch.full_like(lg, -1e4)),
                   "-50 (not exactly 0)": lambda lg, c: torch.where((c.argmax(1) == 1).view(-1, 1, 1, 1), lg,
                                                                    torch.full_like(lg, -50.0))}),
    "ch07.paired_interval": (ch07.check_paired_interval, paired_interval,
                             {"shifted by 40% of its width": lambda *a, **k: _shift(paired_interval(*a, **k))}),
    "ch07.pooled_dice": (ch07.check_pooled_dice, pooled_dice, {"+1e-5": lambda *a: pooled_dice(*a) + 1e-5}),
    "ch07.dice_by_size": (ch07.check_dice_by_size, dice_by_size,
                          {"+1e-7": lambda *a: {k: v + 1e-7 for k, v in dice_by_size(*a).items()}}),
}


def _shift(interval):
    lo, hi = interval
    return lo + 0.4 * (hi - lo) + 1e-3, hi + 0.4 * (hi - lo) + 1e-3


# ------------------------------------------------------------------------------ wrong answers from right ones
def _constant(value: Any) -> Callable:
    return lambda *args, **kwargs: value


CONSTANTS = {
    "None": None, "nan": float("nan"), "inf": float("inf"), "-inf": -float("inf"), "np.nan": np.float64("nan"),
    "a str": "0.5", "a dict": {"answer": 1}, "an object": object(), "a bool": True, "an empty list": [],
    "a nan tensor": torch.tensor(float("nan")), "an inf tensor": torch.tensor(float("inf")),
}


def _poison(value: Any, bad: float) -> Any:
    """The right answer with one entry replaced by ``bad`` (nan or inf)."""
    if isinstance(value, torch.Tensor):
        out = value.detach().clone().double() if not value.is_floating_point() else value.clone()
        out.view(-1)[0] = bad
        return out
    if isinstance(value, np.ndarray):
        out = value.astype(np.float64, copy=True)
        out.reshape(-1)[0] = bad
        return out
    if isinstance(value, tuple):
        return (_poison(value[0], bad),) + value[1:]
    if isinstance(value, list):
        return [_poison(value[0], bad)] + value[1:] if value else [bad]
    if isinstance(value, dict):
        k = next(iter(value))
        return {**value, k: bad}
    if isinstance(value, (set, frozenset)):
        return set(value) | {(bad, 0)}
    if isinstance(value, str):
        return bad
    return bad


def _reshape(value: Any) -> Any:
    """The right values in a wrong shape or container."""
    if isinstance(value, torch.Tensor):
        return value.reshape(1).expand(2) if value.numel() == 1 else value.reshape(-1)
    if isinstance(value, np.ndarray):
        return value.reshape(-1)[:-1]
    if isinstance(value, tuple):
        return value + value[-1:]
    if isinstance(value, list):
        return value[:-1]
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (set, frozenset)):
        return [i for node in sorted(value) for i in node]
    if value is None:
        return []
    return np.array([value, value])


def _retype(value: Any) -> Any:
    """The right values as a type the exercise does not ask for."""
    if isinstance(value, torch.Tensor):
        return value.detach().numpy() if value.ndim else str(value.item())
    if isinstance(value, np.ndarray):
        return str(value.tolist())
    if isinstance(value, (tuple, list)):
        return {k: v for k, v in enumerate(value)}
    if isinstance(value, dict):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return str(sorted(value))
    if value is None:
        return "None"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return [value]              # a list holding the number (and 17829.5 for an int is a near miss)
    return str(value)


DERIVED = {
    "nan inside": lambda v: _poison(v, float("nan")),
    "inf inside": lambda v: _poison(v, float("inf")),
    "-inf inside": lambda v: _poison(v, -float("inf")),
    "wrong shape": _reshape,
    "wrong type": _retype,
}


def _derived(right: Callable, transform: Callable) -> Callable:
    def wrong(*args, **kwargs):
        return transform(right(*args, **kwargs))
    return wrong


def wrong_answers() -> list[tuple[str, str, Callable]]:
    """Every (exercise, wrong answer, function) of the suite."""
    out = []
    for name, (_, right, near) in EXERCISES.items():
        out += [(name, kind, _constant(value)) for kind, value in CONSTANTS.items()]
        out += [(name, kind, _derived(right, transform)) for kind, transform in DERIVED.items()]
        out += [(name, f"near miss: {kind}", fn) for kind, fn in near.items()]
    return out


WRONG = wrong_answers()


@pytest.mark.parametrize("exercise", EXERCISES)
def test_the_right_answer_passes(exercise):
    check, right, _ = EXERCISES[exercise]
    fb = check(right)
    assert fb, fb


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("exercise, kind, wrong", WRONG, ids=[f"{e}-{k}" for e, k, _ in WRONG])
def test_a_wrong_answer_is_not_yet_with_a_hint(exercise, kind, wrong):
    check = EXERCISES[exercise][0]
    fb = check(wrong)
    assert isinstance(fb, Feedback) and not fb, f"{exercise} passed the wrong answer '{kind}': {fb}"
    assert str(fb).startswith("Not yet: ") and len(fb.message) > 20
    # the wrong answers never raise: "raised" or a line number would be the checker itself crashing
    assert "raised" not in fb.message and "(line " not in fb.message, fb.message
    if kind in CONSTANTS:          # says what came back and what was expected
        said = fb.message
        assert ("returned" in said or "got" in said) and any(w in said for w in ("should", "expected", "but")), said


def test_every_checker_of_every_chapter_is_covered():
    checkers = {f"{m.__name__.rsplit('.', 1)[1]}.{n}" for m in (ch01, ch02, ch03, ch04, ch05, ch06, ch07)
                for n in m.__all__ if n.startswith("check_")}
    covered = {e.replace("ch01.dice", "ch01.dice_iou").replace("ch01.iou", "ch01.dice_iou") for e in EXERCISES}
    covered = {f"{e.split('.')[0]}.check_{e.split('.')[1]}" for e in covered}
    assert checkers == covered
    assert len(WRONG) >= 10 * len(EXERCISES)


def test_no_line_number_inside_unet_lib_for_a_crash_in_the_students_code():
    def buggy(f):
        return math.log(-f)         # raises ValueError in the student's line

    fb = ch01.check_all_foreground_dice(buggy)
    assert not fb and "ValueError" in fb.message
    assert "unet_lib" not in fb.message


# ------------------------------------------------------------------------------ what the hint says
# The three answers students hand in most (a forgotten return, a 0 / 0, a number as text): each checker of
# chapters 02-07 names the problem in the student's terms, never its own crash.
BAD_ANSWERS = {
    "None": (lambda *args, **kwargs: None, "returned None"),
    "nan": (lambda *args, **kwargs: float("nan"), "returned nan (not a number)"),
    "a string": (lambda *args, **kwargs: "0.5", "returned a str ('0.5')"),
}
NAMED_CHECKERS = [
    ch02.check_bilinear_kernel, ch02.check_receptive_field, ch02.check_skip_parameters,
    ch04.check_weighted_cross_entropy, ch04.check_border_term, ch04.check_two_smallest, ch04.check_object_f1,
    ch05.check_node_in_channels, ch05.check_pruned_nodes, ch05.check_deep_supervision_loss, ch05.check_count_macs,
    ch06.check_skip_sources, ch06.check_decoder_parameters, ch06.check_soft_iou_loss, ch06.check_gate,
    ch07.check_paired_interval, ch07.check_pooled_dice, ch07.check_dice_by_size,
]


@pytest.mark.parametrize("bad", BAD_ANSWERS)
@pytest.mark.parametrize("check", NAMED_CHECKERS, ids=lambda check: f"{check.__module__.rsplit('.', 1)[-1]}."
                                                                     f"{check.__name__}")
def test_unusable_answers_are_named(check, bad):
    fn, problem = BAD_ANSWERS[bad]
    fb = check(fn)
    assert isinstance(fb, Feedback) and not fb and str(fb).startswith("Not yet: ")
    assert problem in fb.message and "raised" not in fb.message    # the checker itself never crashes
