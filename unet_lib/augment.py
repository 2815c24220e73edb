"""Joint image/mask(/weight) augmentations on numpy arrays (chapters 03 and 04).

Geometric transforms move the image, the mask and any weight map together;
photometric transforms touch the image only. Every transform takes a
``numpy.random.Generator`` so that runs are reproducible.

Arrays: ``image`` is ``(H, W)`` or ``(H, W, C)`` (uint8 or float), ``mask`` and
``weight`` are ``(H, W)``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

__all__ = ["flip_rotate", "photometric", "Compose", "FlipRotate", "Photometric"]


def flip_rotate(image: np.ndarray, *others: np.ndarray, rng: np.random.Generator | None = None
                ) -> tuple[np.ndarray, ...]:
    """One of the 8 symmetries of the square (flips and 90-degree turns), the same for every array.

    Returns:
        ``(image, *others)`` transformed, as contiguous arrays.
    """
    rng = rng if rng is not None else np.random.default_rng()
    k, flip = int(rng.integers(4)), bool(rng.integers(2))

    def apply(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, k, axes=(0, 1))
        return np.ascontiguousarray(a[:, ::-1] if flip else a)

    return (apply(image),) + tuple(apply(o) for o in others)


def photometric(image: np.ndarray, rng: np.random.Generator | None = None, brightness: float = 0.2,
                contrast: float = 0.2, gamma: float = 0.2) -> np.ndarray:
    """Random brightness, contrast and gamma changes of the image only (masks are untouched).

    Args:
        image: uint8 in [0, 255] or float in [0, 1].
        brightness: additive shift drawn from ``U(-brightness, brightness)`` (in [0, 1] units).
        contrast: multiplicative factor ``U(1 - contrast, 1 + contrast)`` around the mean.
        gamma: exponent ``exp(U(-gamma, gamma))``.

    Returns:
        An image of the same dtype and range.
    """
    rng = rng if rng is not None else np.random.default_rng()
    is_uint8 = image.dtype == np.uint8
    x = image.astype(np.float32) / 255.0 if is_uint8 else image.astype(np.float32)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean + rng.uniform(-brightness, brightness)
    x = np.clip(x, 0.0, 1.0) ** np.exp(rng.uniform(-gamma, gamma))
    return (x * 255.0 + 0.5).astype(np.uint8) if is_uint8 else x.astype(image.dtype)


class FlipRotate:
    """Callable transform ``(image, mask, *others) -> (image, mask, *others)`` for datasets."""

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
        return flip_rotate(image, *others, rng=self.rng)


class Photometric:
    """Callable transform that changes the image only; masks and weights pass through."""

    def __init__(self, seed: int | None = None, **kwargs):
        self.rng, self.kwargs = np.random.default_rng(seed), kwargs

    def __call__(self, image: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
        return (photometric(image, self.rng, **self.kwargs),) + others


class Compose:
    """Apply transforms in order: ``Compose([FlipRotate(0), Photometric(1)])(image, mask)``."""

    def __init__(self, transforms: Sequence[Callable[..., tuple]]):
        self.transforms = list(transforms)

    def __call__(self, image: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
        arrays = (image,) + others
        for t in self.transforms:
            arrays = t(*arrays)
        return arrays
