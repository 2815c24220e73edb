"""Checkers for the exercises of chapter 03 (U-Net from scratch)."""
from __future__ import annotations

from typing import Callable

import torch

from ..models import count_parameters
from ..models.blocks import DoubleConv, center_crop
from ..models.unet import valid_output_size
from ._core import Feedback, Mismatch, checker, correct, first_mismatch, integer, optional, tensor

__all__ = ["check_output_size", "check_center_crop", "check_double_conv_params"]


def _reference_output(size: int) -> int | None:
    try:
        return valid_output_size(size)
    except ValueError:
        return None


def _output_size_hint(m: Mismatch) -> str:
    why = "it cannot be processed" if m.want is None else f"the output is {m.want}"
    return (f"for input {m.args[0]} you returned {m.got!r}, but {why}. Follow the size through all 4 stages: "
            "each pair of 3x3 convs removes 4 pixels, each max-pool needs an even size, each up-conv doubles it.")


@checker
def check_output_size(fn: Callable[[int], int | None]) -> Feedback:
    """Exercise 1: ``fn(input_size)`` returns the output side of the 2015 U-Net, or ``None`` if the size
    does not fit (an odd size before a max-pool, or nothing left at the bottom)."""
    cases = {f"input {size}": (size,) for size in list(range(150, 700)) + [572, 188, 10, 1]}
    mismatch = first_mismatch(fn, cases, _reference_output, compare=optional(integer()), describe=_output_size_hint)
    if mismatch is not None:
        return mismatch
    return correct("your function agrees with the network for every input size from 150 to 699 "
                   "(valid inputs are 16k + 124: 188, 204, ..., 572, ...).")


def _crop_hint(m: Mismatch) -> str:
    if tuple(m.got.shape) != tuple(m.want.shape):
        return f"{m.name} gave shape {tuple(m.got.shape)}, expected {tuple(m.want.shape)}."
    return (f"{m.name}: right shape, wrong pixels. The crop starts at (H - height) // 2 from the top and "
            "(W - width) // 2 from the left.")


@checker
def check_center_crop(fn: Callable[[torch.Tensor, int, int], torch.Tensor]) -> Feedback:
    """Exercise 2: ``fn(x, height, width)`` crops the centre of a ``(B, C, H, W)`` tensor."""
    g = torch.Generator().manual_seed(0)
    shapes = [((1, 2, 64, 64), 56, 56), ((2, 3, 136, 136), 104, 104), ((1, 1, 9, 7), 5, 3), ((1, 1, 8, 8), 8, 8)]
    cases = {f"cropping {shape} to {h}x{w}": (torch.randn(shape, generator=g), h, w) for shape, h, w in shapes}
    mismatch = first_mismatch(fn, cases, center_crop, compare=tensor(exact=True), describe=_crop_hint)
    if mismatch is not None:
        return mismatch
    return correct("the crop keeps the centre, as in the paper's 'copy and crop' arrows (64 -> 56 at the "
                   "fourth stage of the 572 tile).")


def _double_conv_params(cin: int, cout: int, batch_norm: bool) -> int:
    return count_parameters(DoubleConv(cin, cout, norm="batch" if batch_norm else None))


def _double_conv_hint(m: Mismatch) -> str:
    bn = m.args[2]
    hint = ("with batch norm the convs have no bias, and each BN layer adds a scale and a shift per "
            "channel" if bn else "each 3x3 conv has 3*3*in*out weights plus one bias per output channel")
    return f"{m.name} has {m.want:,} parameters, you counted {m.got:,}: {hint}."


@checker
def check_double_conv_params(fn: Callable[[int, int, bool], int]) -> Feedback:
    """Exercise 3: ``fn(in_channels, out_channels, batch_norm)`` counts the parameters of a DoubleConv."""
    cases = {f"DoubleConv({cin}, {cout}, batch_norm={bn})": (cin, cout, bn)
             for cin, cout in [(1, 64), (64, 128), (512, 1024), (3, 16), (1024, 512)] for bn in (False, True)}
    mismatch = first_mismatch(fn, cases, _double_conv_params, compare=integer(), describe=_double_conv_hint)
    if mismatch is not None:
        return mismatch
    return correct("you can count a U-Net stage by hand; the 2015 network's 31,030,658 parameters are the "
                   "sum of such blocks, 4 up-convolutions and a 1x1 output layer.")
