"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015), chapter 03.

``UNet(1, 2, padding="valid", norm=None)`` is the network of the paper's Fig. 1:
23 convolutional layers, 31,030,658 parameters, a 572x572 tile in and a 388x388
segmentation map out. ``padding="same"`` with batch norm is the variant most
code uses today: the output has the input's size, for any size.
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import (
    DoubleConv,
    Norm,
    Padding,
    Up,
    UpConv,
    center_crop,
    check_batch_norm,
    check_input,
    check_positive_ints,
    match_size,
)

__all__ = ["UNet", "valid_output_size", "valid_input_size", "nearest_valid_input_sizes", "width_matching"]

DEPTH = 4  # four 2x2 max-pools: sizes must survive halving four times
#: the valid-padding U-Net takes sides ``VALID_STEP * k + VALID_OFFSET`` from ``VALID_MIN`` on (188, 204, ..., 572)
VALID_STEP, VALID_OFFSET, VALID_MIN = 16, 124, 188


def valid_output_size(input_size: int) -> int:
    """Output side of the valid-padding U-Net for an input side, or raise ValueError.

    Each stage's two unpadded 3x3 convs remove 4 pixels; every size entering a
    2x2 max-pool must be even. Valid inputs are ``16 * b + 124`` (b >= 4 gives 188, ..., 572).
    """
    size = input_size
    for _ in range(DEPTH):
        size -= 4
        if size <= 0 or size % 2:
            raise ValueError(f"input size {input_size} does not fit the valid-padding U-Net: "
                             f"{_suggest(input_size)}")
        size //= 2
    size -= 4
    if size < 4:
        raise ValueError(f"input size {input_size} is too small for the valid-padding U-Net: {_suggest(input_size)}")
    for _ in range(DEPTH):
        size = size * 2 - 4
    return size


def valid_input_size(output_size: int) -> int:
    """Input side that gives ``output_size`` (``output_size + 184``); the output must be ``16k + 4``."""
    if output_size < 4 or (output_size - 4) % 16:
        lo = max(4, output_size - (output_size - 4) % 16)
        raise ValueError(f"output size {output_size} is impossible for the valid-padding U-Net; "
                         f"valid outputs are 16k+4, e.g. {lo} or {lo + 16}")
    return output_size + 184


def nearest_valid_input_sizes(input_size: int) -> tuple[int, int]:
    """The input sides of the valid-padding (unpadded) U-Net just below and just above ``input_size``.

    A side is valid when every step is exact: each unpadded 3x3 conv removes 2 pixels and every
    2x2 max-pool meets an even size, which leaves the sides ``16k + 124`` from 188 on (see
    :func:`valid_output_size`). ``(input_size, input_size)`` when it is valid, ``(188, 188)`` below 188.
    The padded networks follow another rule: :func:`unet_lib.models.blocks.nearest_multiples`.

    Example:
        >>> nearest_valid_input_sizes(500), nearest_valid_input_sizes(572)
        ((492, 508), (572, 572))
    """
    below = max(VALID_MIN, input_size - (input_size - VALID_OFFSET) % VALID_STEP)
    return below, below if below >= input_size else below + VALID_STEP


def _suggest(input_size: int) -> str:
    lo, hi = nearest_valid_input_sizes(input_size)
    sizes = f"{lo}" if lo == hi else f"{lo} or {hi}"
    return f"use {sizes} (valid inputs are 16k+124, from 188), or padding='same'"


class UNet(nn.Module):
    """The U-Net: a contracting path, an expanding path, and skip connections between them.

    Args:
        in_channels: image channels (1 for EM, 3 for RGB endoscopy).
        num_classes: output channels. The paper uses 2 (softmax over background/foreground);
            a single channel with a sigmoid is equivalent for binary tasks.
        features: channels of the first stage; stage ``i`` has ``features * 2**i`` (64 ... 1024 in the paper).
        padding: ``"same"`` keeps the size; ``"valid"`` is the 2015 network (572 -> 388).
        norm: ``"batch"`` (default), ``"instance"`` or ``None`` (the 2015 network has no normalisation).
        up: ``"transpose"`` (2x2 up-convolution, the paper) or ``"bilinear"`` (+1x1 conv).
        dropout: drop probability after the last two contracting stages (the paper: "drop-out layers
            at the end of the contracting path", 0.5 in the authors' Caffe model); 0 turns them off.
            Dropout has no parameters: the parameter count does not change.

    Shape:
        ``(B, in_channels, H, W) -> (B, num_classes, H', W')`` logits; ``H' = H`` for "same",
        ``H' = H - 184`` for "valid".

    Example:
        >>> UNet(1, 2, padding="valid", norm=None)(torch.zeros(1, 1, 572, 572)).shape
        torch.Size([1, 2, 388, 388])
    """

    def __init__(self, in_channels: int, num_classes: int, features: int = 64, padding: Padding = "same",
                 norm: Norm = "batch", up: Up = "transpose", dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        check_positive_ints("UNet", in_channels=in_channels, num_classes=num_classes, features=features)
        f = [features * 2 ** i for i in range(DEPTH + 1)]  # 64, 128, 256, 512, 1024
        self.in_channels, self.num_classes, self.padding = in_channels, num_classes, padding
        self.pool = nn.MaxPool2d(2)
        # contracting path
        self.enc1 = DoubleConv(in_channels, f[0], padding, norm)
        self.enc2 = DoubleConv(f[0], f[1], padding, norm)
        self.enc3 = DoubleConv(f[1], f[2], padding, norm)
        self.enc4 = DoubleConv(f[2], f[3], padding, norm)
        self.bottleneck = DoubleConv(f[3], f[4], padding, norm)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        # expanding path: up-conv halves the channels, concatenation doubles them again
        self.up4, self.dec4 = UpConv(f[4], f[3], up), DoubleConv(2 * f[3], f[3], padding, norm)
        self.up3, self.dec3 = UpConv(f[3], f[2], up), DoubleConv(2 * f[2], f[2], padding, norm)
        self.up2, self.dec2 = UpConv(f[2], f[1], up), DoubleConv(2 * f[1], f[1], padding, norm)
        self.up1, self.dec1 = UpConv(f[1], f[0], up), DoubleConv(2 * f[0], f[0], padding, norm)
        self.head = nn.Conv2d(f[0], num_classes, kernel_size=1)

    # -- sizes -------------------------------------------------------------
    @property
    def margin(self) -> int:
        """Pixels lost on each side of the input (92 for "valid", 0 for "same")."""
        return 92 if self.padding == "valid" else 0

    def output_size(self, input_size: int) -> int:
        """Side of the output for a square input side (checks the size)."""
        if self.padding == "valid":
            return valid_output_size(input_size)
        if input_size < 2 ** DEPTH:
            raise ValueError(f"input size {input_size} is too small: four 2x2 poolings need at least 16 pixels")
        return input_size

    def _check_input(self, x: torch.Tensor) -> None:
        if self.padding == "valid":
            check_input(x, self.in_channels, model="the valid-padding U-Net", multiple=VALID_STEP,
                        offset=VALID_OFFSET, min_size=VALID_MIN,
                        reason="four stages of unpadded convs and 2x2 poolings", suggest=_suggest,
                        dtype=self.head.weight.dtype)
        else:
            check_input(x, self.in_channels, model="U-Net", min_size=2 ** DEPTH, reason="four 2x2 poolings",
                        dtype=self.head.weight.dtype)
            check_batch_norm(self, x, DEPTH, model="U-Net")

    def _skip(self, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """Copy and concatenate: crop the encoder map to the upsampled map ("valid", the paper), or
        pad the upsampled map to the encoder map (odd sizes with "same")."""
        if self.padding == "valid":
            skip = center_crop(skip, up.shape[-2], up.shape[-1])
        else:
            up = match_size(up, skip)
        return torch.cat([skip, up], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)                                 # (B, C, 572, 572) for the paper's tile
        x1 = self.enc1(x)                                    # (B, 64, 568, 568)
        x2 = self.enc2(self.pool(x1))                        # (B, 128, 280, 280)
        x3 = self.enc3(self.pool(x2))                        # (B, 256, 136, 136)
        x4 = self.drop(self.enc4(self.pool(x3)))             # (B, 512, 64, 64)
        x5 = self.drop(self.bottleneck(self.pool(x4)))       # (B, 1024, 28, 28)
        d4 = self.dec4(self._skip(x4, self.up4(x5)))         # (B, 512, 52, 52)
        d3 = self.dec3(self._skip(x3, self.up3(d4)))         # (B, 256, 100, 100)
        d2 = self.dec2(self._skip(x2, self.up2(d3)))         # (B, 128, 196, 196)
        d1 = self.dec1(self._skip(x1, self.up1(d2)))         # (B, 64, 388, 388)
        return self.head(d1)                                 # (B, num_classes, 388, 388) logits


#: GPU tensor cores multiply in blocks of 8 channels: widths of 16 and more are rounded to a multiple of 8
TENSOR_CORE_MULTIPLE = 8


def width_matching(parameters: int, in_channels: int = 3, num_classes: int = 1, multiple: int = TENSOR_CORE_MULTIPLE,
                   **kwargs) -> int:
    """The base width of a same-padding U-Net whose parameter count comes closest to ``parameters``.

    Widths below ``2 * multiple`` (16) are matched exactly, channel by channel; from there on the width is
    the multiple of ``multiple`` just below or just above the exact match, whichever count is closer, so
    that a network compared at GPU widths also runs at tensor-core speed. The parameter match is then
    approximate: for chapter 02's full profile 40 instead of 41 channels, 4 % fewer parameters than FCN-8s.
    Chapter 02 gives its U-Net the parameters of FCN-8s this way.

    Args:
        parameters: the parameter count to match.
        in_channels, num_classes, **kwargs: passed to :class:`UNet`.
        multiple: the rounding from width 16 on (1 = exact match everywhere).

    Example:
        >>> from unet_lib.models import FCN, count_parameters
        >>> width_matching(count_parameters(FCN(3, 1, "8s", features=32)))   # exactly: 41
        40
    """
    from ..measure import count_parameters

    check_positive_ints("width_matching", parameters=parameters, multiple=multiple)

    def count(width: int) -> int:
        with torch.device("meta"):
            return count_parameters(UNet(in_channels, num_classes, features=width, **kwargs))

    width, best = 1, abs(count(1) - parameters)
    while True:                                  # parameters grow with the width: stop once past the target
        n = count(width + 1)
        if abs(n - parameters) > best and n > parameters:
            break
        width, best = width + 1, abs(n - parameters)
    if width < 2 * multiple or multiple == 1:
        return width
    below = multiple * (width // multiple)
    return min((below, below + multiple), key=lambda w: abs(count(w) - parameters))
