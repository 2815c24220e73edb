"""Checkers for the exercises of chapter 06 (UNet 3+: full-scale skips, the hybrid loss, the CGM).

Usage::

    from unet_lib.exercises import ch06
    ch06.check_skip_sources(my_skip_sources)
    ch06.check_decoder_parameters(my_decoder_parameters)
    ch06.check_soft_iou_loss(my_soft_iou_loss)
    ch06.check_gate(my_gate)

Each checker calls the student's function on several cases, compares it with the
library's reference, and returns a :class:`~unet_lib.exercises.Feedback`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..losses import iou_loss
from ..models import count_parameters
from ..models.unet3plus import UNet3Plus, gate_logits
from ._core import Feedback, check, checker

__all__ = ["skip_sources", "decoder_parameters", "check_skip_sources", "check_decoder_parameters",
           "check_soft_iou_loss", "check_gate"]


def skip_sources(stage: int) -> list[tuple[str, str, int]]:
    """Reference for exercise 1: the five inputs of decoder stage ``hd{stage}``, shallowest scale first.

    Returns:
        ``(tensor, operation, factor)`` for scales 1..5: ``("h{j}", "pool", 2**(stage-j))`` for the
        shallower encoder maps, ``("h{stage}", "cat", 1)`` for the same scale, and
        ``("hd{j}", "up", 2**(j-stage))`` for the deeper decoder maps (``hd5`` is the bottleneck ``h5``).
    """
    out = []
    for j in range(1, 6):
        if j < stage:
            out.append((f"h{j}", "pool", 2 ** (stage - j)))
        elif j == stage:
            out.append((f"h{j}", "cat", 1))
        else:
            out.append((f"hd{j}", "up", 2 ** (j - stage)))
    return out


def _decoder_modules(net: UNet3Plus) -> list[torch.nn.Module]:
    return [m for name, m in net.named_children() if "_hd" in name or name in ("conv4d", "conv3d", "conv2d", "conv1d")]


def decoder_parameters(features: Sequence[int]) -> int:
    """Reference for exercise 2: parameters of the four UNet 3+ decoder stages (skip convs + fusion convs, no heads)."""
    net = UNet3Plus(3, 1, features=tuple(features))
    return sum(count_parameters(m) for m in _decoder_modules(net))


@checker
def check_skip_sources(fn: Callable[[int], Sequence[tuple[str, str, int]]]) -> Feedback:
    """Exercise 1: ``fn(stage)`` lists the five ``(tensor, operation, factor)`` inputs of decoder stage ``hd{stage}``."""
    for stage in (4, 3, 2, 1):
        expected = skip_sources(stage)
        got = [tuple(s) for s in fn(stage)]
        if len(got) != 5:
            return check(False, "", f"stage hd{stage} gathers FIVE maps, one per scale (h1 ... h5); you returned "
                                    f"{len(got)}.")
        for j, (exp, g) in enumerate(zip(expected, got), start=1):
            name, op, factor = g[0], str(g[1]), int(g[2])
            if j == 5 and name == "h5":
                name = "hd5"  # the bottleneck is both h5 and hd5
            if (name, op, factor) != exp:
                if op != exp[1]:
                    why = {"pool": f"h{j} is shallower (larger) than hd{stage}: it is max-pooled down",
                           "cat": f"h{stage} already has hd{stage}'s size: it is taken as it is ('cat', factor 1)",
                           "up": f"scale {j} is deeper (smaller) than hd{stage}: its DECODER map hd{j} is upsampled"}
                    hint = why[exp[1]]
                else:
                    hint = f"the sizes differ by a factor 2 per scale: |{j} - {stage}| scales apart gives {exp[2]}"
                return check(False, "", f"stage hd{stage}, scale {j}: expected {exp}, got {g}. {hint}.")
    return check(True, "every decoder stage reads all five scales: shallower encoder maps pooled, the same-scale "
                       "encoder map, and the deeper decoder maps upsampled.", "")


@checker
def check_decoder_parameters(fn: Callable[[Sequence[int]], int]) -> Feedback:
    """Exercise 2: ``fn(features)`` counts the decoder's parameters (no heads); checked against built networks."""
    for features in ((64, 128, 256, 512, 1024), (8, 16, 32, 64, 128), (3, 5, 7, 11, 13)):
        expected = decoder_parameters(features)
        got = fn(tuple(features))
        if got != expected:
            cat = features[0]
            hint = (f"for features={features} the decoder has {expected:,} parameters, you counted {got!r}. "
                    f"Each stage has five ConvBlocks (3x3 conv without bias, in -> {cat}, + batch norm: 2 x {cat}) "
                    f"and one fusion ConvBlock {5 * cat} -> {5 * cat}. The inputs: the encoder maps have "
                    f"features[j] channels, the deeper decoder maps {5 * cat}, hd5 has features[4].")
            return check(False, "", hint)
    return check(True, "right: the decoder's size depends on features[0] (64 channels per skip) and the encoder "
                       "widths, never on a 512- or 1024-channel decoder stage as in U-Net.", "")


@checker
def check_soft_iou_loss(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    """Exercise 3: ``fn(probs, target)``: 1 - soft IoU per image (smooth 1), averaged over the batch."""
    g = torch.Generator().manual_seed(6)
    cases = {
        "random probabilities": (torch.rand(3, 1, 8, 8, generator=g), (torch.rand(3, 1, 8, 8, generator=g) > 0.6).float()),
        "a perfect binary prediction": (torch.eye(6)[None, None], torch.eye(6)[None, None]),
        "an empty target predicted empty": (torch.zeros(2, 1, 5, 5), torch.zeros(2, 1, 5, 5)),
        "images of different sizes of objects": (torch.cat([torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)]),
                                                 torch.cat([torch.ones(1, 1, 4, 4), torch.ones(1, 1, 4, 4)])),
    }
    for name, (probs, target) in cases.items():
        logits = torch.logit(probs.double().clamp(1e-12, 1 - 1e-12))
        logits = torch.where(probs == 0, torch.full_like(logits, -1e4), torch.where(probs == 1, 1e4, logits))
        expected = iou_loss(logits, target.double()).item()
        got = fn(probs.clone(), target.clone())
        got = float(got.item() if torch.is_tensor(got) else got)
        if abs(got - expected) > 1e-5:
            if name == "an empty target predicted empty" and got != got:
                hint = "0 / 0 gives nan: add smooth = 1 to the intersection AND to the union."
            elif name == "images of different sizes of objects":
                hint = ("compute the IoU of each image separately (sum over H and W only), then average the "
                        "B losses; summing over the whole batch mixes the images.")
            else:
                hint = ("soft IoU = (sum p*t + 1) / (sum (p + t - p*t) + 1) per image; the loss is 1 minus it, "
                        "averaged over the batch.")
            return check(False, "", f"on {name} you got {got:.6f}, expected {expected:.6f}: {hint}")
    return check(True, "your soft Jaccard loss matches unet_lib.losses.iou_loss on every case.", "")


@checker
def check_gate(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    """Exercise 4: ``fn(logits, cls_logits)`` gates segmentation logits with the CGM's decision (argmax)."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 1, 6, 6, generator=g) * 3
    cls_logits = torch.tensor([[0.1, 2.0], [3.0, -1.0], [0.0, 0.5], [1.2, 1.1]])  # polyp, empty, polyp, empty
    got = fn(logits.clone(), cls_logits.clone())
    if not torch.is_tensor(got) or got.shape != logits.shape:
        return check(False, "", f"return logits of the same shape {tuple(logits.shape)}.")
    expected = gate_logits(logits, cls_logits)
    keep = torch.tensor([True, False, True, False])
    if not torch.allclose(got[keep], logits[keep]):
        return check(False, "", "images 0 and 2 are classified 'polyp' (argmax = 1): their logits must stay "
                                "exactly as they were.")
    probs = torch.sigmoid(got[~keep])
    if torch.allclose(probs, torch.full_like(probs, 0.5)):
        return check(False, "", "your gated images have logits 0, i.e. probability sigmoid(0) = 0.5 everywhere: "
                                "multiplying logits by the 0/1 decision does not give an empty mask. Replace them "
                                "by a large negative logit instead.")
    if not torch.isfinite(got).all():
        return check(False, "", "-inf does give probability 0, but any loss computed on it becomes nan or inf: "
                                "use a large FINITE negative value such as -1e4.")
    if not (probs == 0).all():
        return check(False, "", f"the gated images still have probabilities up to {probs.max().item():.3g}; choose a "
                                "logit so negative that sigmoid gives exactly 0 (e.g. -1e4).")
    assert torch.equal(torch.sigmoid(expected[~keep]), probs)
    return check(True, "images judged empty now have probability exactly 0 and an all-zero mask; the others are "
                       "untouched.", "")
