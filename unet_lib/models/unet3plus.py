"""UNet 3+ (Huang et al., ICASSP 2020), chapter 06.

Three ideas on top of U-Net:

* **Full-scale skip connections.** Every decoder stage ``hd_i`` gathers all five scales:
  the shallower encoder maps ``h1..h_{i-1}`` max-pooled down to its size ("PT", pooling
  then conv), the encoder map ``h_i`` of its own size ("Cat"), and the deeper decoder
  maps ``hd_{i+1}..hd5`` bilinearly upsampled ("UT"). Each of the five is squeezed to
  ``cat_channels = features[0]`` (64) channels by a 3x3 conv + BN + ReLU, the five are
  concatenated (``5 * 64 = 320`` channels) and fused by one 3x3 conv + BN + ReLU.
* **Full-scale deep supervision.** A 3x3 conv head on every decoder stage and on the
  bottleneck ``hd5``, bilinearly upsampled to full resolution; a loss on each
  (:func:`unet_lib.losses.unet3plus_loss`).
* **Classification-guided module (CGM).** Dropout, a 1x1 conv to two channels and a global
  max-pool on the deepest features ``hd5`` answer "is there anything to segment?"; at
  inference an image judged empty gets an all-zero mask.

``UNet3Plus(3, 1)`` has 26,965,249 parameters, the paper's 26.97M (Table 1). The authors'
code (ZJUGiveLab/UNet-Version, ``models/UNet_3Plus.py``) gives every conv a bias, also the
ones followed by batch norm, where the norm's shift makes it redundant; it counts 6,528
more, 26,971,777, which rounds to the same 26.97M. Deep supervision adds 17,860
parameters (four more heads), the CGM 2,050. Our convs before a norm have no bias,
as everywhere in the book (:class:`unet_lib.models.blocks.ConvBlock`).

Two things we do differently from the authors' code, on purpose: ``forward`` returns
*logits* (the authors return ``sigmoid`` probabilities, which the numerically stable
losses of :mod:`unet_lib.losses` cannot use), and the CGM gates the *mask*, not the logits:
the authors multiply the logits by the classifier's 0/1 decision, so an image judged
empty gets logits 0, i.e. probability ``sigmoid(0) = 0.5`` everywhere, a map that is
neither empty nor full. We replace its logits by :data:`GATE_LOGIT` (``-1e4``), whose
sigmoid is exactly 0: probabilities 0, mask all zero.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvBlock, DoubleConv, check_batch_norm, check_input, check_positive_ints

__all__ = ["UNet3Plus", "GATE_LOGIT", "gate_logits", "cgm_decision"]

#: logit given to every pixel of an image the CGM judges empty: ``sigmoid(-1e4) == 0`` exactly in float32
#: (and in float16, whose range it fits), so probabilities are 0 and the mask is empty, while any loss
#: computed on it stays finite (``-inf`` would give ``nan``).
GATE_LOGIT = -1.0e4

DEPTH = 4  # four 2x2 max-pools: the input side must be divisible by 16


def cgm_decision(cls_logits: torch.Tensor) -> torch.Tensor:
    """The CGM's verdict: ``True`` where the image contains something to segment.

    Args:
        cls_logits: ``(B, 2)`` logits of the classification-guided module (channel 1 = "polyp").

    Returns:
        ``(B,)`` bool, the argmax over the two classes (as in the paper).
    """
    if cls_logits.ndim != 2 or cls_logits.shape[1] != 2:
        raise ValueError(f"cls_logits must have shape (B, 2), got {tuple(cls_logits.shape)}")
    return cls_logits.argmax(1) == 1


def gate_logits(logits: torch.Tensor, cls_logits: torch.Tensor) -> torch.Tensor:
    """Apply the CGM's decision to segmentation logits: images judged empty get :data:`GATE_LOGIT` everywhere.

    Multiplying the logits by the 0/1 decision (the authors' code) would give logits 0,
    i.e. a probability of 0.5 on every pixel. Replacing them by a very negative logit gives
    a probability of exactly 0 and an all-zero mask, while images judged non-empty are untouched.

    Args:
        logits: ``(B, C, H, W)`` segmentation logits.
        cls_logits: ``(B, 2)`` CGM logits.

    Returns:
        Gated logits, same shape as ``logits``.
    """
    keep = cgm_decision(cls_logits).view(-1, 1, 1, 1)
    return torch.where(keep, logits, torch.full_like(logits, GATE_LOGIT))


def _up(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Bilinear upsampling by an integer factor ("UT" in the paper's Fig. 2)."""
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class UNet3Plus(nn.Module):
    """UNet 3+: full-scale skip connections, full-scale deep supervision and the classification-guided module.

    Args:
        in_channels: image channels (3 for RGB endoscopy).
        num_classes: output channels (1 for a binary mask with a sigmoid).
        features: channels of the five encoder stages ``h1..h5`` (the paper: 64, 128, 256, 512, 1024).
            Every skip path has ``cat_channels = features[0]`` channels and every decoder stage
            ``5 * features[0]``.
        deep_supervision: also return the logits of ``hd2..hd5``, upsampled to full resolution.
        cgm: add the classification-guided module on ``hd5``.

    Shape:
        input ``(B, in_channels, H, W)`` with ``H`` and ``W`` divisible by 16. Output, all logits:

        * default: ``(B, num_classes, H, W)`` (``d1``);
        * ``deep_supervision=True``: a list ``[d1, d2, d3, d4, d5]``, finest first, each ``(B, num_classes, H, W)``;
        * ``cgm=True``: a tuple ``(segmentation, cls_logits)`` with ``cls_logits`` ``(B, 2)``
          (channel 1 = "there is something to segment"). In eval mode (``model.eval()``) and with
          ``model.gate`` true (the default) the segmentation logits of images the CGM judges empty
          are replaced by :data:`GATE_LOGIT`, so their masks are all zero; in train mode they are
          returned ungated so that the segmentation heads learn from every image.

    Paper: Huang et al., "UNet 3+: A Full-Scale Connected UNet for Medical Image Segmentation", ICASSP 2020.
    Chapter 06.

    Example:
        >>> out = UNet3Plus(3, 1, features=(8, 16, 32, 64, 128), deep_supervision=True)(torch.zeros(1, 3, 32, 32))
        >>> [tuple(d.shape) for d in out][:2]
        [(1, 1, 32, 32), (1, 1, 32, 32)]
    """

    def __init__(self, in_channels: int, num_classes: int, features: Sequence[int] = (64, 128, 256, 512, 1024),
                 deep_supervision: bool = False, cgm: bool = False):
        super().__init__()
        check_positive_ints("UNet3Plus", in_channels=in_channels, num_classes=num_classes)
        f = tuple(int(c) for c in features)
        if len(f) != DEPTH + 1 or min(f) < 1:
            raise ValueError(f"features must be five positive channel counts (h1..h5), e.g. (64, 128, 256, 512, 1024); "
                             f"got {features!r}")
        self.in_channels, self.num_classes, self.features = in_channels, num_classes, f
        self.deep_supervision, self.cgm = deep_supervision, cgm
        #: gate the masks with the CGM's decision in eval mode (only used when ``cgm=True``)
        self.gate = True
        cat = self.cat_channels = f[0]          # channels of each of the five skip paths (64)
        up = self.up_channels = 5 * cat         # channels of every decoder stage (320)

        # -- encoder: h1..h5 (hd5 = h5, the bottleneck) ------------------------------------------
        self.pool = nn.MaxPool2d(2)
        self.conv1 = DoubleConv(in_channels, f[0])
        self.conv2 = DoubleConv(f[0], f[1])
        self.conv3 = DoubleConv(f[1], f[2])
        self.conv4 = DoubleConv(f[2], f[3])
        self.conv5 = DoubleConv(f[3], f[4])

        # -- decoder stage 4: h1, h2, h3 pooled (PT), h4 as is (Cat), hd5 upsampled (UT) -----------
        self.h1_pt_hd4, self.h2_pt_hd4 = ConvBlock(f[0], cat), ConvBlock(f[1], cat)
        self.h3_pt_hd4, self.h4_cat_hd4 = ConvBlock(f[2], cat), ConvBlock(f[3], cat)
        self.hd5_ut_hd4 = ConvBlock(f[4], cat)
        self.conv4d = ConvBlock(up, up)
        # -- decoder stage 3 ------------------------------------------------------------------------
        self.h1_pt_hd3, self.h2_pt_hd3 = ConvBlock(f[0], cat), ConvBlock(f[1], cat)
        self.h3_cat_hd3 = ConvBlock(f[2], cat)
        self.hd4_ut_hd3, self.hd5_ut_hd3 = ConvBlock(up, cat), ConvBlock(f[4], cat)
        self.conv3d = ConvBlock(up, up)
        # -- decoder stage 2 ------------------------------------------------------------------------
        self.h1_pt_hd2, self.h2_cat_hd2 = ConvBlock(f[0], cat), ConvBlock(f[1], cat)
        self.hd3_ut_hd2, self.hd4_ut_hd2 = ConvBlock(up, cat), ConvBlock(up, cat)
        self.hd5_ut_hd2 = ConvBlock(f[4], cat)
        self.conv2d = ConvBlock(up, up)
        # -- decoder stage 1 ------------------------------------------------------------------------
        self.h1_cat_hd1 = ConvBlock(f[0], cat)
        self.hd2_ut_hd1, self.hd3_ut_hd1 = ConvBlock(up, cat), ConvBlock(up, cat)
        self.hd4_ut_hd1, self.hd5_ut_hd1 = ConvBlock(up, cat), ConvBlock(f[4], cat)
        self.conv1d = ConvBlock(up, up)

        # -- heads: 3x3 convs (the paper), d1 always, d2..d5 with full-scale deep supervision ----
        self.outconv1 = nn.Conv2d(up, num_classes, 3, padding=1)
        if deep_supervision:
            self.outconv2 = nn.Conv2d(up, num_classes, 3, padding=1)
            self.outconv3 = nn.Conv2d(up, num_classes, 3, padding=1)
            self.outconv4 = nn.Conv2d(up, num_classes, 3, padding=1)
            self.outconv5 = nn.Conv2d(f[4], num_classes, 3, padding=1)
        # -- classification-guided module on the deepest features ----------------------------------
        if cgm:
            self.cls = nn.Sequential(nn.Dropout(p=0.5), nn.Conv2d(f[4], 2, kernel_size=1),
                                     nn.AdaptiveMaxPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor):
        check_input(x, self.in_channels, model="UNet 3+", multiple=2 ** DEPTH, min_size=2 ** DEPTH,
                    reason="four 2x2 poolings, then x2..x16 upsampling",
                    dtype=self.conv1[0][0].weight.dtype)  # (B, 3, H, W), H = 320 in the paper
        check_batch_norm(self, x, DEPTH, model="UNet 3+")
        # -- encoder ---------------------------------------------------------------------------------
        h1 = self.conv1(x)                                        # (B, 64, H, W)
        h2 = self.conv2(self.pool(h1))                            # (B, 128, H/2, W/2)
        h3 = self.conv3(self.pool(h2))                            # (B, 256, H/4, W/4)
        h4 = self.conv4(self.pool(h3))                            # (B, 512, H/8, W/8)
        hd5 = self.conv5(self.pool(h4))                           # (B, 1024, H/16, W/16)
        # -- stage 4d: five scales -> 5 x 64 channels at H/8 -> fused -------------------------------
        h1_pt_hd4 = self.h1_pt_hd4(F.max_pool2d(h1, 8))           # (B, 64, H/8, W/8)
        h2_pt_hd4 = self.h2_pt_hd4(F.max_pool2d(h2, 4))           # (B, 64, H/8, W/8)
        h3_pt_hd4 = self.h3_pt_hd4(F.max_pool2d(h3, 2))           # (B, 64, H/8, W/8)
        h4_cat_hd4 = self.h4_cat_hd4(h4)                          # (B, 64, H/8, W/8)
        hd5_ut_hd4 = self.hd5_ut_hd4(_up(hd5, 2))                 # (B, 64, H/8, W/8)
        hd4 = self.conv4d(torch.cat([h1_pt_hd4, h2_pt_hd4, h3_pt_hd4, h4_cat_hd4, hd5_ut_hd4], 1))  # (B, 320, H/8, W/8)
        # -- stage 3d: hd3 is (B, 320, H/4, W/4) -----------------------------------------------------
        h1_pt_hd3 = self.h1_pt_hd3(F.max_pool2d(h1, 4))           # (B, 64, H/4, W/4)
        h2_pt_hd3 = self.h2_pt_hd3(F.max_pool2d(h2, 2))           # (B, 64, H/4, W/4)
        h3_cat_hd3 = self.h3_cat_hd3(h3)                          # (B, 64, H/4, W/4)
        hd4_ut_hd3 = self.hd4_ut_hd3(_up(hd4, 2))                 # (B, 64, H/4, W/4)
        hd5_ut_hd3 = self.hd5_ut_hd3(_up(hd5, 4))                 # (B, 64, H/4, W/4)
        hd3 = self.conv3d(torch.cat([h1_pt_hd3, h2_pt_hd3, h3_cat_hd3, hd4_ut_hd3, hd5_ut_hd3], 1))
        # -- stage 2d: hd2 is (B, 320, H/2, W/2) -----------------------------------------------------
        h1_pt_hd2 = self.h1_pt_hd2(F.max_pool2d(h1, 2))           # (B, 64, H/2, W/2)
        h2_cat_hd2 = self.h2_cat_hd2(h2)                          # (B, 64, H/2, W/2)
        hd3_ut_hd2 = self.hd3_ut_hd2(_up(hd3, 2))                 # (B, 64, H/2, W/2)
        hd4_ut_hd2 = self.hd4_ut_hd2(_up(hd4, 4))                 # (B, 64, H/2, W/2)
        hd5_ut_hd2 = self.hd5_ut_hd2(_up(hd5, 8))                 # (B, 64, H/2, W/2)
        hd2 = self.conv2d(torch.cat([h1_pt_hd2, h2_cat_hd2, hd3_ut_hd2, hd4_ut_hd2, hd5_ut_hd2], 1))
        # -- stage 1d --------------------------------------------------------------------------------
        h1_cat_hd1 = self.h1_cat_hd1(h1)                          # (B, 64, H, W)
        hd2_ut_hd1 = self.hd2_ut_hd1(_up(hd2, 2))                 # (B, 64, H, W)
        hd3_ut_hd1 = self.hd3_ut_hd1(_up(hd3, 4))                 # (B, 64, H, W)
        hd4_ut_hd1 = self.hd4_ut_hd1(_up(hd4, 8))                 # (B, 64, H, W)
        hd5_ut_hd1 = self.hd5_ut_hd1(_up(hd5, 16))                # (B, 64, H, W)
        hd1 = self.conv1d(torch.cat([h1_cat_hd1, hd2_ut_hd1, hd3_ut_hd1, hd4_ut_hd1, hd5_ut_hd1], 1))  # (B, 320, H, W)
        # -- outputs ---------------------------------------------------------------------------------
        d1 = self.outconv1(hd1)                                   # (B, num_classes, H, W) logits
        seg: torch.Tensor | list[torch.Tensor] = d1
        if self.deep_supervision:
            d2 = _up(self.outconv2(hd2), 2)                       # (B, num_classes, H, W)
            d3 = _up(self.outconv3(hd3), 4)                       # (B, num_classes, H, W)
            d4 = _up(self.outconv4(hd4), 8)                       # (B, num_classes, H, W)
            d5 = _up(self.outconv5(hd5), 16)                      # (B, num_classes, H, W)
            seg = [d1, d2, d3, d4, d5]
        if not self.cgm:
            return seg
        cls_logits = self.cls(hd5)                                # (B, 2): "empty" vs "something to segment"
        if not self.training and self.gate:
            seg = [gate_logits(d, cls_logits) for d in seg] if isinstance(seg, list) else gate_logits(seg, cls_logits)
        return seg, cls_logits

