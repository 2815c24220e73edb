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
from ._core import (
    Answer,
    Feedback,
    Mismatch,
    checker,
    close,
    correct,
    describe_value,
    first_mismatch,
    integer,
    not_yet,
    number,
    tensor,
    whole_number,
)

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


def _read_sources(got) -> list[tuple[str, str, int]]:
    if isinstance(got, (str, bytes)):
        raise TypeError
    sources = []
    for g in got:
        if isinstance(g, (str, bytes)):
            raise TypeError
        name, op, factor = g
        if not isinstance(name, str) or not isinstance(op, str):
            raise TypeError
        sources.append((name, op, whole_number(factor)))
    if len(sources) == 5 and sources[4][0] == "h5":
        sources[4] = ("hd5",) + sources[4][1:]   # the bottleneck is both h5 and hd5
    return sources


_SOURCES = Answer("a list of five (tensor, operation, factor) triples, e.g. ('h1', 'pool', 8)", _read_sources)


def _sources_hint(m: Mismatch) -> str:
    stage = m.args[0]
    if len(m.got) != 5:
        return (f"stage hd{stage} gathers FIVE maps, one per scale (h1 ... h5); you returned {len(m.got)}, and it "
                "should return five (tensor, operation, factor) triples.")
    j, exp, g = next((j, e, g) for j, (e, g) in enumerate(zip(m.want, m.got), start=1) if e != g)
    if g[1] != exp[1]:
        why = {"pool": f"h{j} is shallower (larger) than hd{stage}: it is max-pooled down",
               "cat": f"h{stage} already has hd{stage}'s size: it is taken as it is ('cat', factor 1)",
               "up": f"scale {j} is deeper (smaller) than hd{stage}: its DECODER map hd{j} is upsampled"}
        hint = why[exp[1]]
    else:
        hint = f"the sizes differ by a factor 2 per scale: |{j} - {stage}| scales apart gives {exp[2]}"
    return f"stage hd{stage}, scale {j}: expected {exp}, got {g}. {hint}."


@checker
def check_skip_sources(fn: Callable[[int], Sequence[tuple[str, str, int]]]) -> Feedback:
    """Exercise 1: ``fn(stage)`` lists the five ``(tensor, operation, factor)`` inputs of decoder stage
    ``hd{stage}``."""
    cases = {f"stage hd{stage}": (stage,) for stage in (4, 3, 2, 1)}
    mismatch = first_mismatch(fn, cases, skip_sources, compare=_SOURCES, describe=_sources_hint)
    if mismatch is not None:
        return mismatch
    return correct("every decoder stage reads all five scales: shallower encoder maps pooled, the same-scale "
                   "encoder map, and the deeper decoder maps upsampled.")


def _decoder_hint(m: Mismatch) -> str:
    (features,) = m.args
    cat = features[0]
    return (f"for features={features} the decoder has {m.want:,} parameters, you counted {m.got!r}. "
            f"Each stage has five ConvBlocks (3x3 conv without bias, in -> {cat}, + batch norm: 2 x {cat}) "
            f"and one fusion ConvBlock {5 * cat} -> {5 * cat}. The inputs: the encoder maps have "
            f"features[j] channels, the deeper decoder maps {5 * cat}, hd5 has features[4].")


@checker
def check_decoder_parameters(fn: Callable[[Sequence[int]], int]) -> Feedback:
    """Exercise 2: ``fn(features)`` counts the decoder's parameters (no heads); checked against built networks."""
    cases = {f"features={f}": (f,) for f in ((64, 128, 256, 512, 1024), (8, 16, 32, 64, 128), (3, 5, 7, 11, 13))}
    mismatch = first_mismatch(fn, cases, decoder_parameters, compare=integer(), describe=_decoder_hint)
    if mismatch is not None:
        return mismatch
    return correct("right: the decoder's size depends on features[0] (64 channels per skip) and the encoder "
                   "widths, never on a 512- or 1024-channel decoder stage as in U-Net.")


def _soft_iou_reference(probs: torch.Tensor, target: torch.Tensor) -> float:
    logits = torch.logit(probs.double().clamp(1e-12, 1 - 1e-12))
    logits = torch.where(probs == 0, torch.full_like(logits, -1e4), torch.where(probs == 1, 1e4, logits))
    return iou_loss(logits, target.double()).item()


def _soft_iou_hint(m: Mismatch) -> str:
    if m.name == "images of different sizes of objects":
        hint = ("compute the IoU of each image separately (sum over H and W only), then average the "
                "B losses; summing over the whole batch mixes the images.")
    else:
        hint = ("soft IoU = (sum p*t + 1) / (sum (p + t - p*t) + 1) per image; the loss is 1 minus it, "
                "averaged over the batch.")
    return f"on {m.name} you got {m.got:.6f}, expected {m.want:.6f}: {hint}"


@checker
def check_soft_iou_loss(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    """Exercise 3: ``fn(probs, target)``: 1 - soft IoU per image (smooth 1), averaged over the batch."""
    g = torch.Generator().manual_seed(6)
    cases = {
        "random probabilities": (torch.rand(3, 1, 8, 8, generator=g),
                                 (torch.rand(3, 1, 8, 8, generator=g) > 0.6).float()),
        "a perfect binary prediction": (torch.eye(6)[None, None], torch.eye(6)[None, None]),
        "an empty target predicted empty": (torch.zeros(2, 1, 5, 5), torch.zeros(2, 1, 5, 5)),
        "images of different sizes of objects": (torch.cat([torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)]),
                                                 torch.cat([torch.ones(1, 1, 4, 4), torch.ones(1, 1, 4, 4)])),
    }
    mismatch = first_mismatch(fn, cases, _soft_iou_reference, compare=number(tol=1e-5), describe=_soft_iou_hint,
                              nan_hint="On empty images it is 0 / 0: add smooth = 1 to the intersection AND "
                                       "to the union.")
    if mismatch is not None:
        return mismatch
    return correct("your soft Jaccard loss matches unet_lib.losses.iou_loss on every case.")


@checker
def check_gate(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    """Exercise 4: ``fn(logits, cls_logits)`` gates segmentation logits with the CGM's decision (argmax).

    Not a :func:`first_mismatch` loop: one case, examined for the typical mistakes in turn.
    """
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 1, 6, 6, generator=g) * 3
    cls_logits = torch.tensor([[0.1, 2.0], [3.0, -1.0], [0.0, 0.5], [1.2, 1.1]])  # polyp, empty, polyp, empty
    got = tensor(allow_inf=True).read(fn(logits.clone(), cls_logits.clone()))   # -inf gets its own hint below
    if got.shape != logits.shape:
        return not_yet(f"your function returned {describe_value(got)}; it should return logits of the same shape "
                       f"{tuple(logits.shape)} as its input.")
    got = got.detach().cpu()
    expected = gate_logits(logits, cls_logits)
    keep = torch.tensor([True, False, True, False])
    if not close(got[keep], logits[keep], 1e-6, 1e-6):
        return not_yet("images 0 and 2 are classified 'polyp' (argmax = 1): their logits must stay "
                       "exactly as they were.")
    probs = torch.sigmoid(got[~keep])
    if close(probs, torch.full_like(probs, 0.5), 1e-6):
        return not_yet("your gated images have logits 0, i.e. probability sigmoid(0) = 0.5 everywhere: "
                       "multiplying logits by the 0/1 decision does not give an empty mask. Replace them "
                       "by a large negative logit instead.")
    gated = got[~keep]
    if (gated == -float("inf")).any():
        return not_yet("-inf does give probability 0, but any loss computed on it becomes nan or inf: "
                       "use a large FINITE negative value such as -1e4.")
    if not torch.isfinite(gated).all():
        return not_yet("the gated images' logits contain +inf, i.e. probability 1: an image judged empty needs "
                       "a large negative logit everywhere, such as -1e4.")
    if not (probs == 0).all():
        return not_yet(f"the gated images still have probabilities up to {probs.max().item():.3g}; choose a "
                       "logit so negative that sigmoid gives exactly 0 (e.g. -1e4).")
    if not close(torch.sigmoid(got), torch.sigmoid(expected)):
        return not_yet("your gated probabilities differ from the CGM's: keep the images with argmax = 1 as they "
                       "are and give the others a large negative logit.")
    return correct("images judged empty now have probability exactly 0 and an all-zero mask; the others are "
                   "untouched.")
