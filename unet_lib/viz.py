"""Figures used across the book: overlays, image grids, training curves, tile layouts.

Every function returns the matplotlib ``Figure`` (notebooks call ``plt.show()``);
nothing is printed. Colours: ground truth is drawn as a green outline, the
prediction as a translucent magenta fill, so both stay visible on endoscopy
images.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle
from scipy import ndimage

__all__ = ["to_numpy_image", "overlay", "show_grid", "show_overlays", "plot_history", "draw_tiles"]

GT_COLOUR = np.array([0.1, 0.95, 0.2])
PRED_COLOUR = np.array([1.0, 0.1, 0.9])


def to_numpy_image(x) -> np.ndarray:
    """``(C, H, W)`` / ``(H, W)`` tensor or array -> ``(H, W, 3)`` or ``(H, W)`` float array in [0, 1]."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = np.moveaxis(x, 0, -1)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if x.dtype == bool:
        return x.astype(np.float32)
    return np.clip(x.astype(np.float32), 0.0, 1.0)


def _mask(x) -> np.ndarray | None:
    if x is None:
        return None
    m = to_numpy_image(x) if not (isinstance(x, np.ndarray) and x.dtype == bool) else x
    return np.asarray(m) > 0.5


def overlay(image, mask=None, pred=None, alpha: float = 0.45) -> np.ndarray:
    """An RGB picture of ``image`` with the ground-truth outline (green) and the prediction (magenta fill).

    Args:
        image: ``(H, W)``, ``(H, W, 3)`` or ``(C, H, W)``.
        mask: ground truth ``(H, W)`` (bool or {0, 1}), optional.
        pred: predicted mask ``(H, W)``, optional.
        alpha: opacity of the prediction fill.

    Returns:
        ``(H, W, 3)`` float array in [0, 1].
    """
    rgb = to_numpy_image(image)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    rgb = rgb.copy()
    p = _mask(pred)
    if p is not None:
        rgb[p] = (1 - alpha) * rgb[p] + alpha * PRED_COLOUR
    g = _mask(mask)
    if g is not None:
        width = max(1, round(max(g.shape) / 200))
        edge = g & ~ndimage.binary_erosion(g, iterations=width, border_value=0)
        rgb[edge] = GT_COLOUR
    return rgb


def show_grid(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 4, size: float = 2.6,
              suptitle: str | None = None, cmap: str = "gray"):
    """Show images in a grid; returns the figure."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, img in enumerate(images):
        ax = axes.flat[i]
        arr = to_numpy_image(img)
        ax.imshow(arr, cmap=cmap if arr.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_overlays(images: Sequence, masks: Sequence | None = None, preds: Sequence | None = None,
                  titles: Sequence[str] | None = None, ncols: int = 4, size: float = 2.6, suptitle: str | None = None):
    """A grid of :func:`overlay` pictures (green outline = ground truth, magenta = prediction)."""
    pics = [overlay(img, None if masks is None else masks[i], None if preds is None else preds[i])
            for i, img in enumerate(images)]
    return show_grid(pics, titles, ncols=ncols, size=size, suptitle=suptitle)


def plot_history(histories, title: str | None = None):
    """Training loss and validation Dice per epoch for one :class:`~unet_lib.train.History` or a
    ``{label: History}`` mapping; returns the figure."""
    if not isinstance(histories, Mapping):
        histories = {"": histories}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    for label, h in histories.items():
        epochs = np.asarray(h.epoch) + 1
        ax1.plot(epochs, h.train_loss, marker=".", label=label or None)
        ax2.plot(epochs, h.val_dice, marker=".", label=label or None)
    ax1.set(xlabel="epoch", ylabel="training loss", title="training loss")
    ax2.set(xlabel="epoch", ylabel="mean per-image Dice", title="validation Dice", ylim=(0, 1))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if any(histories):
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def draw_tiles(image, plan, max_boxes: int | None = None, title: str | None = None):
    """Draw the overlap-tile layout of :func:`unet_lib.tiling.plan_tiles` on the mirror-padded image.

    Solid boxes are the output tiles, dashed boxes the (larger) input tiles they need.
    """
    from .tiling import _padded_input  # the same padding the prediction uses

    x = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image, dtype=np.float32))
    if x.ndim == 2:
        x = x[None]
    padded = to_numpy_image(_padded_input(x[None].float(), plan)[0])
    m = plan.margin
    fig, ax = plt.subplots(figsize=(6.5, 6.5))
    ax.imshow(padded, cmap="gray" if padded.ndim == 2 else None)
    ax.add_patch(Rectangle((m - 0.5, m - 0.5), plan.width, plan.height, fill=False, ec="white", lw=2, ls=":"))
    colours = plt.cm.tab10(np.linspace(0, 1, 10))
    for k, (t, l, b, r) in enumerate(plan.boxes[:max_boxes]):
        c = colours[k % 10]
        ax.add_patch(Rectangle((l + m - 0.5, t + m - 0.5), r - l, b - t, fill=False, ec=c, lw=2))
        ax.add_patch(Rectangle((l - 0.5, t - 0.5), r - l + 2 * m, b - t + 2 * m, fill=False, ec=c, lw=1.2, ls="--"))
    ax.set_title(title or f"{len(plan.boxes)} output tiles of {plan.tile} px (solid) and their input tiles (dashed)",
                 fontsize=10)
    ax.axis("off")
    fig.tight_layout()
    return fig
