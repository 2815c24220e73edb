"""One seeded dataset of training crops (chapters 03, 04 and 06).

:class:`RandomCrops` cuts random windows (or whole images) out of arrays held in memory, with
optional per-pixel extras (a weight map) and per-image extras (an image-level label), a margin
of mirrored context for valid-padding networks, and a joint augmentation. Item ``index`` of
epoch ``epoch`` is drawn from its own generator ``np.random.default_rng([seed, epoch, index])``,
so a crop never depends on the order items are read, on the number of DataLoader workers or on
whether training was resumed; :func:`unet_lib.train.fit` announces each epoch (``set_epoch``).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["RandomCrops"]


def _check_item(i: int, image: np.ndarray, target: np.ndarray, kind: str) -> None:
    """Image ``i``: uint8, or float in [0, 1]; its target: boolean, or integer class indices >= 0 (same kind)."""
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise TypeError(f"image {i} is {image.dtype}: images must be uint8 (0-255) or float in [0, 1]")
        lo, hi = (float(image.min()), float(image.max())) if image.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"image {i} is float with values from {lo:g} to {hi:g}, but float images must lie in "
                             "[0, 1] (they are not divided by 255 again): divide a 0-255 image by 255, or pass uint8")
    if (target.dtype == bool) != (kind == "mask"):
        raise TypeError(f"target {i} is {target.dtype} but target 0 is {'bool' if kind == 'mask' else 'integer'}: "
                        "give all targets as boolean masks or all as integer class indices")
    if kind == "classes":
        if not np.issubdtype(target.dtype, np.integer):
            raise TypeError(f"targets must be boolean masks or integer class indices, got {target.dtype} (target "
                            f"{i}): use mask > 0.5 for a float mask")
        if target.size and target.min() < 0:
            raise ValueError(f"target {i} holds the class index {target.min()}: class indices are >= 0")


class RandomCrops(torch.utils.data.Dataset):
    """Seeded training crops ``(image, target, *extras)`` of images held in memory.

    Args:
        images: ``N`` images ``(H, W)`` or ``(H, W, C)``, uint8 (scaled to [0, 1]) or float in [0, 1]
            (kept as it is, never divided by 255 again);
            a stacked array or a list (sizes may differ from image to image).
        targets: ``N`` targets ``(H, W)`` of the same sizes. Boolean targets are masks and come out as
            float ``(1, h, w)`` (for BCE and Dice losses); integer targets are class indices and come
            out as int64 ``(h, w)`` (for cross-entropy).
        *extras: per-pixel arrays (``N`` arrays ``(H, W)``, e.g. weight maps; cut like the target,
            returned float32 ``(h, w)``) or per-image values (a length-``N`` sequence of numbers, e.g.
            "has a polyp"; returned as a float32 scalar).
        crop: side of the target window; ``None``: the whole image, item ``k`` is image ``k % N``.
        margin: context on each side for a valid-padding network (``model.margin``): the input is
            ``crop + 2 * margin`` pixels, cut from the image mirror-padded by ``margin``, so border
            pixels get mirrored context exactly as in overlap-tile inference.
        length: items per epoch (default ``N``).
        transform: joint augmentation ``transform(image, target, *pixel_extras, rng=rng)`` on the
            input window (e.g. :class:`unet_lib.augment.FlipRotate`), applied before the margin is
            cut from the target.
        deform: like ``transform`` but applied to the whole padded image with
            ``window=(top, left, height, width)`` and returning that window only (e.g.
            ``functools.partial(augment.elastic_deform, grid=3, sigma=10.0)``: the paper's 3x3 grid
            spans the whole image, not the crop); runs before ``transform``.
        seed: the run's seed.

    Returns (per item):
        ``(image (C, h + 2m, w + 2m) float32, target, *extras)``.

    Example:
        >>> crops = RandomCrops(images, labels.astype(np.int64), crop=96, length=400, seed=0,
        ...                     transform=augment.FlipRotate())
    """

    def __init__(self, images, targets, *extras, crop: int | None = None, margin: int = 0,
                 length: int | None = None, transform: Callable | None = None, deform: Callable | None = None,
                 seed: int = 0):
        images, targets = list(images), list(targets)
        n = len(images)
        if n == 0:
            raise ValueError("RandomCrops needs at least one image, got none")
        if len(targets) != n:
            raise ValueError(f"got {n} images but {len(targets)} targets: give one target per image")
        self.pixel_extras: list[list[np.ndarray]] = []
        self.image_extras: list[np.ndarray] = []
        for k, extra in enumerate(extras):
            extra = list(extra)
            if len(extra) != n:
                raise ValueError(f"extra {k} has {len(extra)} entries for {n} images: give one per image")
            if np.ndim(extra[0]) == 0:
                self.image_extras.append(np.asarray(extra, dtype=np.float32))
            elif self.image_extras:
                raise ValueError("give the per-pixel extras (weight maps) before the per-image values (labels): "
                                 "items return them in that order")
            else:
                self.pixel_extras.append([np.asarray(e) for e in extra])
        for i, (image, target) in enumerate(zip(images, targets)):
            shapes = [np.shape(image)[:2], np.shape(target)] + [np.shape(e[i]) for e in self.pixel_extras]
            if any(s != shapes[0] for s in shapes) or len(shapes[0]) != 2:
                raise ValueError(f"image {i}: image {np.shape(image)}, target {np.shape(target)} and per-pixel "
                                 f"extras {shapes[2:]} must share (H, W)")
            if crop is not None and min(shapes[0]) < crop:
                raise ValueError(f"image {i} is {shapes[0][0]}x{shapes[0][1]}, smaller than the crop {crop}: "
                                 "choose a smaller crop or resize the image")
        if crop is None and margin:
            raise ValueError("margin needs a crop size: whole images have no border to mirror around a window")
        self.kind = "mask" if np.asarray(targets[0]).dtype == bool else "classes"
        for i, (image, target) in enumerate(zip(images, targets)):
            _check_item(i, np.asarray(image), np.asarray(target), self.kind)
        for k, extra in enumerate(self.pixel_extras):
            for i, e in enumerate(extra):
                if e.size and not (np.isfinite(e).all() and e.min() >= 0):
                    raise ValueError(f"per-pixel extra {k} of image {i} (a weight map?) holds negative or non-finite "
                                     f"values (min {e.min():g}): weights must be finite and >= 0")
        m = int(margin)
        pad = (lambda a: np.pad(a, ((m, m), (m, m)) + ((0, 0),) * (a.ndim - 2), mode="reflect")) if m else np.asarray
        self.images = [pad(np.asarray(im)) for im in images]
        self.targets = [pad(np.asarray(t)) for t in targets]
        self.pixel_extras = [[pad(e) for e in extra] for extra in self.pixel_extras]
        self.crop, self.margin, self.transform, self.deform, self.seed = crop, m, transform, deform, int(seed)
        self.length = n if length is None else int(length)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch that begins (called by :func:`unet_lib.train.fit`); it enters every item's seed."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} crops")
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        n = len(self.images)
        i = index % n if self.crop is None else int(rng.integers(n))
        image, target = self.images[i], self.targets[i]
        pixels = [extra[i] for extra in self.pixel_extras]
        m = self.margin
        if self.crop is None:
            window = (0, 0) + image.shape[:2]
        else:
            h, w = image.shape[0] - 2 * m, image.shape[1] - 2 * m
            top, left = int(rng.integers(h - self.crop + 1)), int(rng.integers(w - self.crop + 1))
            window = (top, left, self.crop + 2 * m, self.crop + 2 * m)
        if self.deform is not None:
            image, target, *pixels = self.deform(image, target, *pixels, rng=rng, window=window)
        else:
            top, left, hh, ww = window
            image, target, *pixels = [a[top:top + hh, left:left + ww] for a in (image, target, *pixels)]
        if self.transform is not None:
            image, target, *pixels = self.transform(image, target, *pixels, rng=rng)
        if m:
            target, *pixels = [a[m:-m, m:-m] for a in (target, *pixels)]
        image = np.asarray(image)
        x = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
        x = torch.from_numpy(np.ascontiguousarray(x if x.ndim == 3 else x[..., None])).permute(2, 0, 1)
        if self.kind == "mask":
            y = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32))[None]
        else:
            y = torch.from_numpy(np.ascontiguousarray(target).astype(np.int64))
        out = [x, y] + [torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32)) for p in pixels]
        return tuple(out + [torch.tensor(extra[i]) for extra in self.image_extras])
