"""Checkers for the exercises of chapter 02 (FCN from scratch).

Usage::

    from unet_lib.exercises import ch02
    ch02.check_bilinear_kernel(my_bilinear_kernel)
    ch02.check_receptive_field(my_receptive_field)
    ch02.check_skip_parameters(my_skip_parameters)

Each checker calls the student's function on several cases, compares with a
reference, and returns a :class:`~unet_lib.exercises.Feedback`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..models.fcn import bilinear_kernel, receptive_field, vgg16_layers
from ._core import Feedback, Mismatch, array, checker, close, correct, first_mismatch, integer, pair

__all__ = ["check_bilinear_kernel", "check_receptive_field", "check_skip_parameters", "skip_parameters"]


def _reference_kernel(factor: int) -> np.ndarray:
    return bilinear_kernel(factor).numpy().astype(np.float64)


def _kernel_hint(m: Mismatch) -> str:
    factor, got, ref = m.args[0], m.got, m.want
    if got.shape != ref.shape:
        return (f"for factor={factor} the kernel should be {ref.shape[0]}x{ref.shape[1]} "
                f"(side 2*factor - factor % 2), got shape {got.shape}.")
    if not close(got, got.T, 1e-8, 1e-5) or not close(got, got[::-1, ::-1], 1e-8, 1e-5):
        return (f"for factor={factor} the kernel is not symmetric: build it as the outer "
                "product of one 1-D triangle with itself, centred in the kernel.")
    return (f"for factor={factor} the values are wrong. The 1-D triangle is "
            f"1 - |i - centre| / factor with centre = factor - 0.5 (even factor) or "
            f"factor - 1 (odd factor); e.g. factor=2 gives [0.25, 0.75, 0.75, 0.25], "
            "and the 2-D kernel is its outer product with itself.")


@checker
def check_bilinear_kernel(fn: Callable[[int], object]) -> Feedback:
    """Exercise 1: ``fn(factor)`` returns the ``(k, k)`` bilinear upsampling kernel of FCN.

    Checked for factors 2, 3, 4 and 8 against :func:`unet_lib.models.fcn.bilinear_kernel`.
    """
    cases = {f"factor={factor}": (factor,) for factor in (2, 4, 8, 3)}
    mismatch = first_mismatch(fn, cases, _reference_kernel, compare=array(tol=1e-6), describe=_kernel_hint)
    if mismatch is not None:
        return mismatch
    return correct("your kernels equal FCN's bilinear filters for factors 2, 3, 4 and 8.")


def _receptive_field_hint(m: Mismatch) -> str:
    (layers,), got, want = m.args, m.got, m.want
    if got[1] != want[1]:
        return (f"{m.name} {layers}: the output stride should be {want[1]}, got {got[1]}. "
                "It is the product of all strides.")
    return (f"{m.name} {layers}: the receptive field should be {want[0]}, got {got[0]}. "
            "Each layer adds (kernel - 1) times the stride accumulated BEFORE it "
            "(the jump between neighbouring inputs of that layer), starting from r = 1.")


@checker
def check_receptive_field(fn: Callable[[list[tuple[int, int]]], tuple[int, int]]) -> Feedback:
    """Exercise 2: ``fn(layers)`` returns ``(receptive_field, output_stride)`` for ``(kernel, stride)`` layers."""
    vgg = [(k, s) for _, k, s in vgg16_layers(fc_kernel=7)]
    cases = {
        "no layers": [],
        "one 3x3 conv": [(3, 1)],
        "two 3x3 convs": [(3, 1), (3, 1)],
        "conv, pool, conv": [(3, 1), (2, 2), (3, 1)],
        "two 2x2 pools": [(2, 2), (2, 2)],
        "a strided 7x7 conv and a 3x3 pool (ResNet stem)": [(7, 2), (3, 2)],
        "VGG16 up to pool3": vgg[:10],
        "VGG16 with fc6 7x7": vgg,
    }
    answer = pair(integer(), integer(), "a pair (receptive_field, output_stride)")
    mismatch = first_mismatch(fn, {name: (layers,) for name, layers in cases.items()}, receptive_field,
                              compare=answer, describe=_receptive_field_hint)
    if mismatch is not None:
        return mismatch
    return correct("receptive fields and strides match on all cases, including VGG16's 404 px at fc6.")


def skip_parameters(features: int, num_classes: int, variant: str, fc_channels: int | None = None) -> int:
    """Reference answer of exercise 3: trainable parameters FCN-``variant`` adds to FCN-32s."""
    if variant not in ("32s", "16s", "8s"):
        raise ValueError(f"unknown variant {variant!r}")
    k = num_classes
    pool4 = 8 * features * k + k + k * k * 4 * 4      # score_pool4 (1x1 conv + bias) + upscore2 (4x4, no bias)
    pool3 = 4 * features * k + k + k * k * 4 * 4      # score_pool3 + upscore_pool4
    return {"32s": 0, "16s": pool4, "8s": pool4 + pool3}[variant]


def _skip_hint(m: Mismatch) -> str:
    features, k, variant = m.args
    only_pool4 = skip_parameters(features, k, "16s")
    hint = f"{m.name} adds {m.want:,} parameters, you said {m.got:,}. "
    if variant == "8s" and m.got == only_pool4:
        return hint + "FCN-8s has the pool4 branch AND the pool3 branch."
    if variant == "32s":
        return hint + "FCN-32s has no skip branch."
    return hint + ("Count, per skip: a 1x1 score conv on the pool (channels = features * 8 for pool4, * 4 for "
                   "pool3) with a bias, plus a 2x transposed conv num_classes -> num_classes with a 4x4 "
                   "kernel and no bias. The final upsampling is fixed (not a parameter).")


@checker
def check_skip_parameters(fn: Callable[[int, int, str], int]) -> Feedback:
    """Exercise 3: ``fn(features, num_classes, variant)`` returns how many trainable parameters
    FCN-``variant`` has beyond FCN-32s (the skip branches)."""
    cases = {f"FCN(features={features}, num_classes={k}, variant={variant!r})": (features, k, variant)
             for features, k, variant in [(64, 21, "16s"), (64, 21, "8s"), (16, 1, "8s"), (8, 3, "16s"),
                                          (32, 5, "8s"), (64, 1, "32s")]}
    mismatch = first_mismatch(fn, cases, skip_parameters, compare=integer(), describe=_skip_hint)
    if mismatch is not None:
        return mismatch
    return correct("you can count the skip branches: e.g. 10,773 + 7,056 = 17,829 parameters for FCN-16s on "
                   "PASCAL VOC (21 classes), against 134 million in FCN-32s.")
