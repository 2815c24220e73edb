"""Fully convolutional networks (Long, Shelhamer & Darrell, CVPR 2015), chapter 02.

``FCN(in_channels, num_classes, variant)`` builds FCN-32s, FCN-16s or FCN-8s from
scratch on a VGG16-style backbone (Simonyan & Zisserman 2015):

* the classifier's ``fc6``/``fc7`` become convolutions, so the network takes any
  image size and returns a coarse map of class scores (stride 32);
* a 1x1 ``score_fr`` layer gives ``num_classes`` scores per stride-32 cell;
* transposed convolutions initialised to bilinear interpolation upsample the
  scores: 2x (learned) to fuse with the 1x1 scores of ``pool4`` (FCN-16s) and
  ``pool3`` (FCN-8s) by addition, then a fixed 32x / 16x / 8x bilinear step to
  the input's size;
* every upsampled map is cropped at the transposed convolution's overhang
  (``factor // 2`` pixels) so it lines up with the finer map, for any input size.

Differences from the paper, chosen for a from-scratch course on small images and
all exposed as arguments:

``fc_kernel=3`` (paper: 7)
    VGG16's ``fc6`` is a 7x7x512 -> 4096 layer. As a convolution it needs a
    ``pool5`` map of at least 7x7, i.e. an input of at least 224 px, which is why
    the reference FCN pads every input by 100 px and crops the output back with
    large offsets. Our images are 96-256 px, so ``pool5`` is 3x3 to 8x8 and a 7x7
    kernel would mostly look at padding. A 3x3 ``"same"`` convolution keeps the
    stride-32 map's size for any input, needs no 100-px padding (all crop
    offsets become the transposed convolutions' overhang), has 49/9 = 5.4x fewer
    weights in ``fc6``, and still sees 276 px (``fc_kernel=7``: 404 px).
    ``fc_kernel=7`` gives the paper's layer (with "same" padding).
``norm="batch"`` (paper: ``None``)
    The paper fine-tunes an ImageNet-trained VGG16; we train from scratch, and
    batch normalisation (Ioffe & Szegedy 2015) is what makes a 15-layer plain
    network train in a few epochs. ``norm=None`` gives the paper's layers.
``features`` (paper: 64)
    The width of the first stage; the stages have ``features * (1, 2, 4, 8, 8)``
    channels and ``fc6``/``fc7`` ``64 * features`` (4096 for VGG16) unless
    ``fc_channels`` says otherwise. Narrow widths make CPU training possible.

As in the paper, the skip score layers (and ``score_fr``) start at zero, so at
initialisation FCN-16s and FCN-8s predict what FCN-32s predicts; the 2x
upsampling layers start as bilinear interpolation and are learned; the final
upsampling is fixed bilinear interpolation (a buffer, not a parameter).
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvBlock, Norm, check_input, norm_layer

__all__ = ["FCN", "Variant", "VARIANTS", "bilinear_kernel", "BilinearUpsample", "crop", "vgg16_layers",
           "receptive_field", "receptive_field_table"]

Variant = Literal["32s", "16s", "8s"]
VARIANTS: tuple[str, ...] = ("32s", "16s", "8s")
#: convolutions per VGG16 stage, and each stage's width in units of ``features``
VGG16_CONVS: tuple[int, ...] = (2, 2, 3, 3, 3)
VGG16_WIDTHS: tuple[int, ...] = (1, 2, 4, 8, 8)


# ----------------------------------------------------------------------------------------
# Bilinear upsampling as a transposed convolution
# ----------------------------------------------------------------------------------------
def bilinear_kernel(factor: int) -> torch.Tensor:
    """The 2-D bilinear interpolation kernel of an upsampling by ``factor`` (FCN's ``upsample_filt``).

    The kernel has side ``2 * factor - factor % 2`` and is the outer product of a
    triangle ``1 - |i - centre| / factor``. For ``factor=2`` the 1-D kernel is
    ``[0.25, 0.75, 0.75, 0.25]``.

    Args:
        factor: the upsampling factor (stride of the transposed convolution), >= 1.

    Returns:
        ``(k, k)`` float32 tensor.
    """
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive int, got {factor!r}")
    size = 2 * factor - factor % 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    triangle = 1 - (torch.arange(size, dtype=torch.float64) - centre).abs() / factor
    return torch.outer(triangle, triangle).float()


def crop(x: torch.Tensor, like: torch.Tensor | Sequence[int], offset: int) -> torch.Tensor:
    """Crop ``x`` to the spatial size of ``like`` starting ``offset`` pixels from the top-left (Caffe's Crop layer).

    Args:
        x: ``(B, C, H, W)``.
        like: a tensor whose last two dimensions give the size, or ``(h, w)``.
        offset: rows and columns skipped at the top and on the left.

    Returns:
        ``x[..., offset:offset + h, offset:offset + w]``.
    """
    h, w = (like.shape[-2:] if isinstance(like, torch.Tensor) else like)
    if offset < 0 or offset + h > x.shape[-2] or offset + w > x.shape[-1]:
        raise ValueError(f"cannot crop {h}x{w} at offset {offset} from a {x.shape[-2]}x{x.shape[-1]} map")
    return x[..., offset:offset + h, offset:offset + w]


class BilinearUpsample(nn.Module):
    """Upsampling by an even ``factor`` as a transposed convolution initialised to bilinear interpolation.

    A ``ConvTranspose2d`` with kernel ``2 * factor`` and stride ``factor`` (no padding)
    turns an ``n``-pixel map into ``(n + 1) * factor`` pixels: each input pixel's
    kernel overhangs by ``factor / 2`` on each side of the exact ``n * factor``
    grid. Cropping at ``offset = factor // 2`` (:func:`crop`) gives the map that
    ``F.interpolate(scale_factor=factor, mode="bilinear", align_corners=False)``
    gives, except in the outer ``factor // 2`` pixels where the transposed
    convolution fades to zero instead of repeating the edge.

    Args:
        channels: channels in and out (class scores).
        factor: even upsampling factor (2, 8, 16, 32 in FCN).
        learnable: ``True``: a full ``channels x channels`` weight that starts as
            channel-wise bilinear interpolation and is trained (FCN's 2x layers);
            ``False``: a fixed per-channel bilinear kernel kept as a buffer (FCN's final layer).

    Shape:
        ``(B, channels, h, w) -> (B, channels, (h + 1) * factor, (w + 1) * factor)`` (crop afterwards).
    """

    def __init__(self, channels: int, factor: int, learnable: bool = True):
        super().__init__()
        if factor < 2 or factor % 2:
            raise ValueError(f"factor must be even and >= 2 (2, 8, 16, 32 in FCN), got {factor}")
        self.channels, self.factor, self.learnable = channels, factor, learnable
        self.offset = factor // 2  # the kernel's overhang: crop this many pixels at the top and on the left
        kernel = bilinear_kernel(factor)
        if learnable:
            weight = torch.zeros(channels, channels, *kernel.shape)
            weight[range(channels), range(channels)] = kernel  # class c -> class c only
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", kernel.expand(channels, 1, *kernel.shape).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = 1 if self.learnable else self.channels
        return F.conv_transpose2d(x, self.weight.to(x.dtype), stride=self.factor, groups=groups)

    def extra_repr(self) -> str:
        return f"{self.channels}, factor={self.factor}, learnable={self.learnable}, offset={self.offset}"


# ----------------------------------------------------------------------------------------
# Receptive field and output stride
# ----------------------------------------------------------------------------------------
def vgg16_layers(fc_kernel: int = 3) -> list[tuple[str, int, int]]:
    """The backbone of :class:`FCN` as ``(name, kernel, stride)`` rows, input to ``fc7``.

    Args:
        fc_kernel: kernel of ``fc6`` (3 here, 7 in the paper).
    """
    rows: list[tuple[str, int, int]] = []
    for stage, n_convs in enumerate(VGG16_CONVS, start=1):
        rows += [(f"conv{stage}_{i}", 3, 1) for i in range(1, n_convs + 1)]
        rows.append((f"pool{stage}", 2, 2))
    return rows + [("fc6", fc_kernel, 1), ("fc7", 1, 1)]


def receptive_field(layers: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """Theoretical receptive field and output stride of a chain of convolutions/poolings.

    With ``r`` the receptive field and ``j`` the jump (the distance in input pixels
    between neighbouring outputs), a layer of kernel ``k`` and stride ``s`` gives
    ``r <- r + (k - 1) * j`` and ``j <- j * s``, starting from ``r = j = 1``.

    Args:
        layers: ``(kernel, stride)`` pairs, input first.

    Returns:
        ``(receptive_field, output_stride)`` in input pixels.
    """
    r, j = 1, 1
    for k, s in layers:
        r, j = r + (k - 1) * j, j * s
    return r, j


def receptive_field_table(fc_kernel: int = 3) -> list[dict]:
    """Receptive field and output stride after every layer of the FCN backbone (:func:`vgg16_layers`).

    Returns:
        One dict per layer: ``{"layer", "kernel", "stride", "receptive_field", "output_stride"}``.
        VGG16 gives 212 px at ``pool5`` and 404 px at ``fc6`` with the paper's 7x7 kernel (276 px with 3x3).
    """
    rows, chain = [], []
    for name, k, s in vgg16_layers(fc_kernel):
        chain.append((k, s))
        r, j = receptive_field(chain)
        rows.append({"layer": name, "kernel": k, "stride": s, "receptive_field": r, "output_stride": j})
    return rows


# ----------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------
def _vgg_stage(in_channels: int, out_channels: int, n_convs: int, norm: Norm) -> nn.Sequential:
    layers = [ConvBlock(in_channels if i == 0 else out_channels, out_channels, "same", norm) for i in range(n_convs)]
    return nn.Sequential(*layers)


def _fc(in_channels: int, out_channels: int, kernel: int, norm: Norm, dropout: float) -> nn.Sequential:
    """A fully connected layer of VGG16 seen as a convolution: conv -> (norm) -> ReLU -> dropout."""
    has_norm = norm not in (None, "none")
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=not has_norm)]
    if has_norm:
        layers.append(norm_layer(norm, out_channels))
    layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class FCN(nn.Module):
    """FCN-32s / FCN-16s / FCN-8s (Long, Shelhamer & Darrell, CVPR 2015) on a VGG16-style backbone.

    Args:
        in_channels: image channels (3 for RGB endoscopy).
        num_classes: score channels (1 for a binary mask with a sigmoid; 21 for PASCAL VOC).
        variant: ``"32s"`` (upsample the stride-32 scores 32x), ``"16s"`` (fuse with ``pool4``
            scores, upsample 16x) or ``"8s"`` (fuse with ``pool4`` and ``pool3``, upsample 8x).
        features: channels of the first stage; stages have ``features * (1, 2, 4, 8, 8)`` (64 = VGG16).
        fc_channels: channels of ``fc6``/``fc7`` (default ``64 * features``: 4096 for VGG16).
        fc_kernel: odd kernel of ``fc6`` (default 3; the paper's 7 needs >= 224-px inputs, see the module doc).
        norm: ``"batch"`` (default, for training from scratch), ``"instance"`` or ``None`` (the paper).
        dropout: dropout after ``fc6`` and ``fc7`` (0.5 in the paper).

    Shape:
        ``(B, in_channels, H, W) -> (B, num_classes, H, W)`` logits, for any ``H, W >= 1``
        (poolings round up, the upsampled scores are cropped back).

    Example:
        >>> FCN(3, 1, "8s", features=8)(torch.zeros(2, 3, 97, 75)).shape
        torch.Size([2, 1, 97, 75])
    """

    def __init__(self, in_channels: int, num_classes: int, variant: Variant = "8s", features: int = 64,
                 fc_channels: int | None = None, fc_kernel: int = 3, norm: Norm = "batch", dropout: float = 0.5):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}: use one of {VARIANTS}")
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("features", features)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if fc_kernel < 1 or fc_kernel % 2 == 0:
            raise ValueError(f"fc_kernel must be odd (3, or the paper's 7), got {fc_kernel}")
        f = [features * w for w in VGG16_WIDTHS]             # 64, 128, 256, 512, 512
        fc = fc_channels or 64 * features                     # 4096
        self.in_channels, self.num_classes, self.variant = in_channels, num_classes, variant
        self.stride = int(variant[:-1])                       # 32, 16, 8: the final upsampling factor
        # VGG16 backbone; 2x2 max-pools round up (Caffe's ceil mode) so that any size works
        self.conv1 = _vgg_stage(in_channels, f[0], VGG16_CONVS[0], norm)
        self.conv2 = _vgg_stage(f[0], f[1], VGG16_CONVS[1], norm)
        self.conv3 = _vgg_stage(f[1], f[2], VGG16_CONVS[2], norm)
        self.conv4 = _vgg_stage(f[2], f[3], VGG16_CONVS[3], norm)
        self.conv5 = _vgg_stage(f[3], f[4], VGG16_CONVS[4], norm)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        # the classifier, convolutionalised
        self.fc6 = _fc(f[4], fc, fc_kernel, norm, dropout)
        self.fc7 = _fc(fc, fc, 1, norm, dropout)
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        # skip branches: 1x1 scores of pool4 / pool3 and learned 2x upsampling
        if variant in ("16s", "8s"):
            self.score_pool4 = nn.Conv2d(f[3], num_classes, 1)
            self.upscore2 = BilinearUpsample(num_classes, 2, learnable=True)
        if variant == "8s":
            self.score_pool3 = nn.Conv2d(f[2], num_classes, 1)
            self.upscore_pool4 = BilinearUpsample(num_classes, 2, learnable=True)
        # final upsampling to the input size: fixed bilinear interpolation
        self.upscore = BilinearUpsample(num_classes, self.stride, learnable=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")  # He et al. 2015
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # the paper: score layers start at zero, so FCN-16s/8s start as FCN-32s
        for name in ("score_fr", "score_pool4", "score_pool3"):
            layer = getattr(self, name, None)
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, model=f"FCN-{self.variant}",  # (B, C_in, H, W)
                    suggest=lambda side: "the image is empty (any size >= 1 works: the poolings round up)",
                    dtype=self.score_fr.weight.dtype)
        pool1 = self.pool(self.conv1(x))                      # (B, 64, H/2, W/2)   sizes round up
        pool2 = self.pool(self.conv2(pool1))                  # (B, 128, H/4, W/4)
        pool3 = self.pool(self.conv3(pool2))                  # (B, 256, H/8, W/8)
        pool4 = self.pool(self.conv4(pool3))                  # (B, 512, H/16, W/16)
        pool5 = self.pool(self.conv5(pool4))                  # (B, 512, H/32, W/32)
        fc7 = self.fc7(self.fc6(pool5))                       # (B, 4096, H/32, W/32)
        score = self.score_fr(fc7)                            # (B, K, H/32, W/32)  K = num_classes
        if self.variant in ("16s", "8s"):
            upscore2 = self.upscore2(score)                   # (B, K, 2 (H/32 + 1), ...)
            score_pool4 = self.score_pool4(pool4)             # (B, K, H/16, W/16)
            score = crop(upscore2, score_pool4, self.upscore2.offset) + score_pool4            # fuse_pool4
        if self.variant == "8s":
            upscore_pool4 = self.upscore_pool4(score)         # (B, K, 2 (H/16 + 1), ...)
            score_pool3 = self.score_pool3(pool3)             # (B, K, H/8, W/8)
            score = crop(upscore_pool4, score_pool3, self.upscore_pool4.offset) + score_pool3  # fuse_pool3
        upscore = self.upscore(score)                         # (B, K, (H/stride + 1) stride, ...)
        return crop(upscore, x, self.upscore.offset)          # (B, K, H, W) logits
