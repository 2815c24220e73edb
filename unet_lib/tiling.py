"""Overlap-tile prediction for valid-padding networks (Ronneberger et al. 2015, Fig. 2; chapter 03).

A valid-padding U-Net sees ``margin`` pixels of context on every side of each
output pixel (92 for the 2015 network), so an output tile of 388x388 needs an
input tile of 572x572. To segment an image of any size we mirror the image at
its borders to invent the missing context, cut overlapping input tiles whose
output tiles cover the image, and stitch the outputs.

Tiles start on multiples of 16 in the padded image: the four 2x2 max-pools then
see the same pixel grid in every tile, so the stitched result is *exactly* the
network applied to the whole mirror-padded image at once (tested), only with a
bounded memory footprint.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TilePlan", "plan_tiles", "mirror_pad", "predict_tiled", "predict_whole"]

ALIGN = 16  # 2 ** (number of max-pools): tile offsets must be multiples of this


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles go. All coordinates refer to the padded output grid (= the image grid)."""

    height: int          # image height
    width: int           # image width
    tile: int            # output tile side (the network maps tile + 2 * margin to tile)
    margin: int          # context pixels on each side (92 for the 2015 U-Net)
    out_height: int      # padded output height covered by the tiles (>= height)
    out_width: int       # padded output width covered by the tiles (>= width)
    rows: tuple[int, ...]  # top offsets of the tiles
    cols: tuple[int, ...]  # left offsets of the tiles

    @property
    def boxes(self) -> list[tuple[int, int, int, int]]:
        """Output tiles as ``(top, left, bottom, right)``; the input tile is the same box grown by ``margin``."""
        return [(r, c, r + self.tile, c + self.tile) for r in self.rows for c in self.cols]


def _offsets(extent: int, tile: int) -> tuple[int, ...]:
    stride = tile - tile % ALIGN
    offsets = list(range(0, max(extent - tile, 0) + 1, stride))
    if offsets[-1] + tile < extent:
        offsets.append(extent - tile)
    return tuple(offsets)


def _valid_extent(size: int, tile: int) -> int:
    """Smallest output extent >= size that the network can produce in one piece (tile + a multiple of 16)."""
    if size <= tile:
        return tile
    return tile + -(-(size - tile) // ALIGN) * ALIGN


def plan_tiles(height: int, width: int, tile: int, margin: int) -> TilePlan:
    """Plan output tiles of side ``tile`` that cover a ``height x width`` image.

    Args:
        height, width: image size.
        tile: output tile side; it must be a valid output size of the network (``16k + 4`` for the
            valid U-Net, e.g. 388).
        margin: context on each side (``model.margin``).

    Returns:
        A :class:`TilePlan` whose tile offsets are multiples of 16.
    """
    if tile < ALIGN or margin < 0:
        raise ValueError(f"tile must be at least {ALIGN} (tiles start on a {ALIGN}-pixel grid; use 20 or more for "
                         f"the valid U-Net) and margin non-negative, got tile={tile}, margin={margin}")
    out_h, out_w = _valid_extent(height, tile), _valid_extent(width, tile)
    return TilePlan(height, width, tile, margin, out_h, out_w, _offsets(out_h, tile), _offsets(out_w, tile))


def mirror_pad(image: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Mirror (reflect) padding of any width, even wider than the image (reflection is repeated).

    Shape: ``(B, C, H, W) -> (B, C, H + top + bottom, W + left + right)``.
    """
    x = image
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        t, b = min(top, h - 1), min(bottom, h - 1)
        l, r = min(left, w - 1), min(right, w - 1)
        if not (t or b or l or r):
            raise ValueError(f"cannot mirror-pad an image of size {h}x{w}: it needs at least 2 pixels per side")
        x = F.pad(x, [l, r, t, b], mode="reflect")
        top, bottom, left, right = top - t, bottom - b, left - l, right - r
    return x


def _padded_input(image: torch.Tensor, plan: TilePlan) -> torch.Tensor:
    m = plan.margin
    return mirror_pad(image, m, plan.out_height - plan.height + m, m, plan.out_width - plan.width + m)


def _as_batch(image: torch.Tensor) -> torch.Tensor:
    if image.ndim == 3:
        return image[None]
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"expected one image (C, H, W) or (1, C, H, W), got {tuple(image.shape)}")
    return image


@torch.no_grad()
def predict_tiled(model: nn.Module, image: torch.Tensor, tile: int | None = None, batch_size: int = 4
                  ) -> torch.Tensor:
    """Segment an image of any size with overlapping tiles (the 2015 paper's overlap-tile strategy).

    Args:
        model: a network whose output is ``2 * model.margin`` smaller than its input, e.g.
            ``UNet(..., padding="valid")``.
        image: ``(C, H, W)`` or ``(1, C, H, W)``.
        tile: output tile side (default 388, the paper's); must be a valid output size.
        batch_size: tiles per forward pass.

    Returns:
        Logits ``(1, num_classes, H, W)`` on the CPU.
    """
    image = _as_batch(image)
    margin = int(getattr(model, "margin", 0))
    tile = tile or 388
    if hasattr(model, "output_size"):
        model.output_size(tile + 2 * margin)  # raises with a helpful message for an impossible tile
    plan = plan_tiles(image.shape[-2], image.shape[-1], tile, margin)
    device = next(model.parameters()).device
    padded = _padded_input(image, plan)
    boxes = plan.boxes
    out = None
    was_training = model.training
    model.eval()
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i:i + batch_size]
        inputs = torch.cat([padded[..., t:b + 2 * margin, l:r + 2 * margin] for t, l, b, r in chunk])
        logits = model(inputs.to(device)).float().cpu()
        if out is None:
            out = torch.zeros(1, logits.shape[1], plan.out_height, plan.out_width)
        for (t, l, b, r), y in zip(chunk, logits):
            out[0, :, t:b, l:r] = y
    model.train(was_training)
    return out[..., :plan.height, :plan.width]


@torch.no_grad()
def predict_whole(model: nn.Module, image: torch.Tensor, tile: int | None = None) -> torch.Tensor:
    """The reference for :func:`predict_tiled`: the network applied once to the whole mirror-padded image
    (same padding as the tiled version), cropped to the image. Needs memory for the whole image.
    """
    image = _as_batch(image)
    margin = int(getattr(model, "margin", 0))
    plan = plan_tiles(image.shape[-2], image.shape[-1], tile or 388, margin)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = model(_padded_input(image, plan).to(device)).float().cpu()
    model.train(was_training)
    return out[..., :plan.height, :plan.width]
