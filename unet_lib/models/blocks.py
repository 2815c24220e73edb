"""Building blocks shared by every architecture in the book.

U-Net (chapter 03), UNet++ (chapter 05), UNet 3+ (chapter 06) and FCN
(chapter 02) are all assembled from the few pieces below, so each model file
only says how the pieces are wired.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Norm", "Padding", "Up", "norm_layer", "conv3x3", "ConvBlock", "DoubleConv", "UpConv", "center_crop",
           "match_size", "paper_init_"]

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
