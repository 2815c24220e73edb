"""Building blocks shared by every architecture in the book.

U-Net (chapter 03), UNet++ (chapter 05), UNet 3+ (chapter 06) and FCN
(chapter 02) are all assembled from the few pieces below, so each model file
only says how the pieces are wired.
"""
from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Norm", "Padding", "Up", "norm_layer", "conv3x3", "ConvBlock", "DoubleConv", "UpConv", "center_crop",
           "match_size", "paper_init_", "nearest_multiples", "check_input", "check_positive_ints",
           "check_batch_norm"]

Norm = Literal["batch", "instance", None]
Padding = Literal["same", "valid"]
Up = Literal["transpose", "bilinear"]


def norm_layer(norm: Norm, channels: int) -> nn.Module:
    """The normalisation layer named by ``norm`` (``nn.Identity`` for ``None``)."""
    if norm in (None, "none"):
        return nn.Identity()
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    raise ValueError(f"unknown norm {norm!r}: use 'batch', 'instance' or None")


def _check_padding(padding: str) -> int:
    if padding == "same":
        return 1
    if padding == "valid":
        return 0
    raise ValueError(f"unknown padding {padding!r}: use 'same' (keeps the size) or 'valid' (the 2015 paper)")


def conv3x3(in_channels: int, out_channels: int, padding: Padding = "same", bias: bool = True) -> nn.Conv2d:
    """A 3x3 convolution; ``padding="valid"`` shrinks each side by one pixel."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=_check_padding(padding), bias=bias)


class ConvBlock(nn.Sequential):
    """3x3 conv -> norm -> ReLU. The conv has no bias when a norm follows (the norm's shift replaces it).

    Shape: ``(B, in_channels, H, W) -> (B, out_channels, H', W')`` with ``H' = H`` ("same") or ``H - 2`` ("valid").
    """

    def __init__(self, in_channels: int, out_channels: int, padding: Padding = "same", norm: Norm = "batch"):
        has_norm = norm not in (None, "none")
        super().__init__(
            conv3x3(in_channels, out_channels, padding, bias=not has_norm),
            norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two :class:`ConvBlock` in a row: the unit of every U-Net stage (Ronneberger et al. 2015, Fig. 1).

    Args:
        in_channels: channels in.
        out_channels: channels out (both convs).
        padding: ``"same"`` or ``"valid"`` (each conv then removes a 1-pixel border: 4 pixels in all).
        norm: ``"batch"``, ``"instance"`` or ``None`` (the 2015 network has none).
        mid_channels: channels after the first conv (default ``out_channels``).
    """

    def __init__(self, in_channels: int, out_channels: int, padding: Padding = "same", norm: Norm = "batch",
                 mid_channels: int | None = None):
        mid = mid_channels or out_channels
        super().__init__(ConvBlock(in_channels, mid, padding, norm), ConvBlock(mid, out_channels, padding, norm))


class UpConv(nn.Module):
    """Double the spatial size: a 2x2 transposed conv ("up-convolution", the 2015 paper) or
    bilinear upsampling followed by a 1x1 conv (fewer parameters, no checkerboard artefacts).

    Shape: ``(B, in_channels, H, W) -> (B, out_channels, 2H, 2W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, up: Up = "transpose"):
        super().__init__()
        if up == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        elif up == "bilinear":
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                    nn.Conv2d(in_channels, out_channels, kernel_size=1))
        else:
            raise ValueError(f"unknown up {up!r}: use 'transpose' or 'bilinear'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop the centre ``height x width`` of ``x`` (the 2015 paper's "crop" before "copy and concatenate")."""
    h, w = x.shape[-2:]
    if height > h or width > w:
        raise ValueError(f"cannot crop {h}x{w} to the larger {height}x{width}")
    top, left = (h - height) // 2, (w - width) // 2
    return x[..., top:top + height, left:left + width]


def match_size(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Zero-pad (or crop) ``x`` so that its last two dimensions equal ``reference``'s.

    With "same" padding an odd size (e.g. 25) pools to 12 and upsamples to 24; one
    row of zeros restores 25 so that skip connections line up for any input size.
    """
    height, width = reference.shape[-2:]
    if x.shape[-2:] == (height, width):
        return x
    x = center_crop(x, min(height, x.shape[-2]), min(width, x.shape[-1]))  # crop sides that are too large
    dh, dw = height - x.shape[-2], width - x.shape[-1]                     # pad sides that are too small
    return F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])


@torch.no_grad()
def paper_init_(model: nn.Module) -> nn.Module:
    """Initialise every convolution as the 2015 U-Net paper does, in place, and return the model.

    The paper (section 3) draws the weights "from a Gaussian distribution with a standard deviation
    of sqrt(2/N), where N denotes the number of incoming nodes of one neuron" (He et al. 2015), e.g.
    N = 9 * 64 = 576 for a 3x3 convolution reading 64 channels; biases start at zero. For an
    up-convolution a neuron receives ``in_channels * 2 * 2 / 4`` inputs on average (each output pixel
    sees one kernel tap per input channel), so N = ``in_channels``. PyTorch's default
    (Kaiming-uniform with a = sqrt(5)) starts with weights about sqrt(6) times smaller.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.ConvTranspose2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1] // (m.stride[0] * m.stride[1])
        else:
            continue
        m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
        if m.bias is not None:
            m.bias.zero_()
    return model


# -- input checks ---------------------------------------------------------------------------------
def check_positive_ints(model: str, **values) -> None:
    """Check constructor arguments such as ``in_channels``, ``num_classes`` and ``features``: positive ints.

    Raises:
        TypeError: a value that is not an int (e.g. ``"3"`` or ``2.5``), naming the argument.
        ValueError: a value < 1, naming the argument.
    """
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int,)) and not hasattr(value, "__index__"):
            raise TypeError(f"{model}: {name} must be a positive int, got {value!r} ({type(value).__name__})")
        if int(value) < 1:
            raise ValueError(f"{model}: {name} must be a positive int (at least 1), got {value!r}")


def nearest_multiples(size: int, multiple: int = 16) -> tuple[int, int]:
    """The multiples of ``multiple`` just below and just above ``size`` (at least ``multiple``).

    The rule of the padded networks whose poolings must divide exactly (UNet 3+: four 2x2
    poolings, then x2..x16 upsampling, so sides divisible by 16). ``(size, size)`` when ``size``
    already is a multiple, ``(multiple, multiple)`` when it is smaller than one.

    Example:
        >>> nearest_multiples(100), nearest_multiples(96), nearest_multiples(5, 8)
        ((96, 112), (96, 96), (8, 8))
    """
    if multiple < 1:
        raise ValueError(f"multiple must be a positive int, got {multiple!r}")
    below = max(multiple, size - size % multiple)
    return below, below if below >= size else below + multiple


def _or(lo: int, hi: int) -> str:
    return f"{lo}" if lo == hi else f"{lo} or {hi}"


def _shape_hint(shape: tuple[int, ...], in_channels: int) -> str:
    """The usual slip behind a wrong input shape, and its fix ("" if none is recognised)."""
    if len(shape) == 3 and shape[0] == in_channels:
        return "; a single image? add the batch dimension: x.unsqueeze(0)"
    if len(shape) == 3 and shape[-1] == in_channels:
        return "; a single (H, W, C) image? use x.permute(2, 0, 1).unsqueeze(0)"
    if len(shape) == 2 and in_channels == 1:
        return "; a single grey image? add batch and channel dimensions: x[None, None]"
    if len(shape) == 4 and shape[-1] == in_channels:
        return "; channels last (B, H, W, C)? use x.permute(0, 3, 1, 2)"
    if len(shape) == 4:
        return (f"; the network was built with in_channels={in_channels} and got {shape[1]} "
                f"channel{'' if shape[1] == 1 else 's'} "
                f"(convert the images, or build it with in_channels={shape[1]})")
    return ""


def check_input(x: torch.Tensor, in_channels: int, *, model: str, multiple: int = 1, offset: int = 0,
                min_size: int = 1, reason: str = "", suggest: Callable[[int], str] | None = None,
                dtype: torch.dtype | None = None) -> None:
    """Check that ``x`` is a batch the network can take, or raise an error that names the shape and the fix.

    Every architecture of the book calls it first in ``forward``. In order, ``x`` must be

    1. a floating-point tensor (of the weights' ``dtype`` when given, unless autocast is on) of shape
       ``(B, in_channels, H, W)`` (the message recognises a missing batch dimension, channels last and
       a wrong channel count);
    2. at least ``min_size`` pixels high and wide;
    3. of sides ``offset + k * multiple`` for an integer ``k``: multiples of ``multiple`` for the
       padded networks (UNet 3+: 16), ``124 + 16k`` for the valid-padding U-Net.

    Args:
        x: the input batch.
        in_channels: channels the network was built for.
        model: the network's name in the messages, e.g. ``"UNet 3+"`` or ``"UNet++ L2"``.
        multiple, offset: the valid sides are ``offset + k * multiple``.
        min_size: the smallest valid side.
        reason: why the sides are restricted, e.g. ``"four 2x2 poolings"``.
        suggest: ``suggest(side) -> str``, how to fix a bad side; default: resize or pad to the
            nearest valid sides (:func:`nearest_multiples` for ``offset = 0``).
        dtype: the dtype of the network's weights (the input must match it).

    Raises:
        TypeError: ``x`` is not a tensor.
        ValueError: the shape does not fit.

    Example:
        >>> check_input(torch.zeros(1, 3, 30, 30), 3, model="UNet 3+", multiple=16)
        Traceback (most recent call last):
        ...
        ValueError: input size 30 does not fit UNet 3+: resize or pad to 16 or 32 (sides must be multiples of 16)
    """
    if not torch.is_tensor(x):
        raise TypeError(f"{model} expects a torch.Tensor of shape (B, {in_channels}, H, W), got {type(x).__name__}")
    if not x.is_floating_point():
        fix = "x.float() / 255 (images in [0, 1])" if x.dtype == torch.uint8 else "x.float()"
        raise TypeError(f"{model} expects a floating-point image batch, got dtype {x.dtype}: convert it with {fix}")
    if dtype is not None and x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"{model} has {dtype} weights but got a {x.dtype} image batch: convert the batch with "
                        f"x.to({dtype}) (or the network with model.to({x.dtype}))")
    shape = tuple(x.shape)
    if x.ndim != 4 or shape[1] != in_channels:
        raise ValueError(f"{model} expects input of shape (B, {in_channels}, H, W), got {shape}"
                         f"{_shape_hint(shape, in_channels)}")
    height, width = shape[-2:]
    for axis, side in (("height", height), ("width", width)):
        name = f"input size {side}" if height == width else f"input {axis} {side} (of shape {shape})"
        if side >= min_size and (side - offset) % multiple == 0:
            continue
        too_small = side < min_size
        fix = (suggest(side) if suggest is not None       # the default fix repeats no reason the message gives
               else _default_fix(side, multiple, offset, min_size, "" if too_small else reason))
        if too_small:
            px = "pixel" if min_size == 1 else "pixels"
            need = (f"{reason} need sides of at least {min_size} {px}" if reason
                    else f"sides must be at least {min_size} {px}")
            raise ValueError(f"{name} is too small for {model}: {need}; {fix}")
        raise ValueError(f"{name} does not fit {model}: {fix}")


def _default_fix(side: int, multiple: int, offset: int, min_size: int, reason: str) -> str:
    why = f": {reason}" if reason else ""
    if multiple == 1:
        return f"resize or pad to at least {min_size} pixel{'' if min_size == 1 else 's'}"
    if offset == 0:
        lo, hi = nearest_multiples(max(side, min_size), multiple)
        return f"resize or pad to {_or(lo, hi)} (sides must be multiples of {multiple}{why})"
    return f"use a side of the form {offset} + {multiple}k, at least {min_size}{why}"


def check_batch_norm(module: nn.Module, x: torch.Tensor, poolings: int, *, model: str) -> None:
    """Refuse, with the fix, a batch that batch norm cannot normalise in training mode.

    Batch norm in training computes each channel's mean over the batch and the pixels; after ``poolings``
    2x2 poolings a batch of one ``H x W`` image has ``(H >> poolings) * (W >> poolings)`` values per
    channel at the deepest stage, and one value has no variance (torch fails there with "Expected more
    than 1 value per channel"). Cheap: it looks only at the shape, and at the layers only in that case.

    Raises:
        ValueError: one value per channel at the deepest stage; names the shape and the ways out.
    """
    if not module.training or x.ndim != 4:
        return
    deepest = x.shape[0] * (x.shape[-2] >> poolings) * (x.shape[-1] >> poolings)
    if deepest == 1 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        side = 2 ** (poolings + 1)
        raise ValueError(f"{model} in training mode got a batch of one {x.shape[-2]}x{x.shape[-1]} image: after "
                         f"{poolings} 2x2 poolings its deepest map is 1x1, and batch norm cannot normalise a single "
                         f"value per channel: train on batches of 2 or more (drop_last=True drops a last batch of "
                         f"one), use images of at least {side}x{side}, or call model.eval() to predict")

