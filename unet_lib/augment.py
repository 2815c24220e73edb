"""Joint image/mask(/weight) augmentations on numpy arrays (chapters 03 and 04).

Geometric transforms move the image, the mask and any weight map together;
photometric transforms touch the image only. Every transform takes a
``numpy.random.Generator`` so that runs are reproducible.

Chapter 04 adds the U-Net paper's elastic deformation (:func:`elastic_deform`):
random displacement vectors on a coarse 3x3 grid, drawn from a Gaussian with a
10-pixel standard deviation, interpolated to a smooth per-pixel field with cubic
splines, and one field applied to the image (cubic) and to its mask and weight
map (nearest neighbour, so labels stay labels); and rotations by any angle
(:func:`rotate`).

Arrays: ``image`` is ``(H, W)`` or ``(H, W, C)`` (uint8 in [0, 255] or float in [0, 1]), ``mask``
and ``weight`` are ``(H, W)``; every array of one call shares ``(H, W)``.

The transform classes (:class:`FlipRotate`, :class:`Photometric`, :class:`ElasticDeform`,
:class:`RandomRotate`, :class:`Compose`) take ``rng=`` per call: a dataset that seeds each item by
``(seed, epoch, index)`` (:class:`unet_lib.data.RandomCrops`, :class:`unet_lib.data.KvasirSEG`,
:class:`unet_lib.data.ISBIEM`) passes it, so an item's augmentation depends on neither the order
of reading, the number of DataLoader workers nor a resumed run. Called without ``rng`` they draw
from their own generator, whose state ``state_dict()`` / ``load_state_dict()`` save and restore
(:func:`unet_lib.train.fit` keeps it in ``last.pt``).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

__all__ = ["SeededTransform", "flip_rotate", "photometric", "Compose", "FlipRotate", "Photometric",
           "random_displacement_field", "warp", "elastic_deform", "ElasticDeform", "rotate", "RandomRotate"]


def _same_size(fn: str, image: np.ndarray, others) -> None:
    """Every array of a joint transform must share the image's ``(H, W)``."""
    if np.ndim(image) not in (2, 3):
        raise ValueError(f"{fn}: the image must be (H, W) or (H, W, C), got shape {np.shape(image)}")
    for k, o in enumerate(others):
        if np.shape(o)[:2] != np.shape(image)[:2]:
            raise ValueError(f"{fn}: array {k + 1} (a mask or weight map) has shape {np.shape(o)}, but the image is "
                             f"{np.shape(image)}: every array must share (H, W) = {np.shape(image)[:2]} (resize the "
                             "mask with data.resize_mask, or crop both alike)")


def flip_rotate(image: np.ndarray, *others: np.ndarray, rng: np.random.Generator | None = None
                ) -> tuple[np.ndarray, ...]:
    """One of the 8 symmetries of the square (flips and 90-degree turns), the same for every array.

    Returns:
        ``(image, *others)`` transformed, as contiguous arrays.

    Raises:
        ValueError: an array whose ``(H, W)`` differs from the image's (names both shapes).
    """
    _same_size("flip_rotate", image, others)
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
        brightness: additive shift drawn from ``U(-brightness, brightness)`` (in [0, 1] units), >= 0.
        contrast: multiplicative factor ``U(1 - contrast, 1 + contrast)`` around the mean, in [0, 1).
        gamma: exponent ``exp(U(-gamma, gamma))``, >= 0.

    Returns:
        An image of the same dtype and range.

    Raises:
        ValueError: a float image outside [0, 1] (e.g. 0-255 values stored as float: it would be
            clipped to white) or a parameter out of its range.
    """
    image = np.asarray(image)
    if not brightness >= 0 or not gamma >= 0 or not 0 <= contrast < 1:
        raise ValueError(f"photometric needs brightness >= 0, 0 <= contrast < 1 (1 or more can invert the image) and "
                         f"gamma >= 0, got brightness={brightness}, contrast={contrast}, gamma={gamma}")
    is_uint8 = image.dtype == np.uint8
    if not is_uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise TypeError(f"photometric takes uint8 images (0-255) or float images in [0, 1], got {image.dtype}")
        lo, hi = (float(image.min()), float(image.max())) if image.size else (0.0, 0.0)
        if not (lo >= -1e-6 and hi <= 1 + 1e-6):
            raise ValueError(f"photometric: a float image must hold values in [0, 1], got {lo:g} to {hi:g}: divide a "
                             "0-255 image by 255 first (or pass it as uint8)")
    rng = rng if rng is not None else np.random.default_rng()
    x = image.astype(np.float32) / 255.0 if is_uint8 else image.astype(np.float32)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean + rng.uniform(-brightness, brightness)
    x = np.clip(x, 0.0, 1.0) ** np.exp(rng.uniform(-gamma, gamma))
    return (x * 255.0 + 0.5).astype(np.uint8) if is_uint8 else x.astype(image.dtype)


class SeededTransform:
    """Base of the transform classes: a ``seed``, an own generator, ``rng=`` per call, a saveable state.

    Args:
        seed: seed of the own generator; a dataset that seeds items by ``(seed, epoch, index)``
            uses it too (``None``: fresh entropy, not reproducible).
    """

    def __init__(self, seed: int | None = None):
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def _rng(self, rng: np.random.Generator | None) -> np.random.Generator:
        return self.rng if rng is None else rng

    def state_dict(self) -> dict:
        """The own generator's state (plain numbers: it goes into a checkpoint)."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        """Restore the own generator's state saved by :meth:`state_dict`."""
        self.rng.bit_generator.state = state["rng"]


class FlipRotate(SeededTransform):
    """Callable transform ``(image, mask, *others) -> (image, mask, *others)`` for datasets.

    Draws from its own generator (seeded with ``seed``), or from the ``rng`` a dataset passes
    per item (e.g. :class:`unet_lib.data.RandomCrops`, seeded by ``(seed, epoch, index)``).
    """

    def __call__(self, image: np.ndarray, *others: np.ndarray, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, ...]:
        return flip_rotate(image, *others, rng=self._rng(rng))


class Photometric(SeededTransform):
    """Callable transform that changes the image only; masks and weights pass through."""

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(seed)
        self.kwargs = kwargs

    def __call__(self, image: np.ndarray, *others: np.ndarray, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, ...]:
        return (photometric(image, self._rng(rng), **self.kwargs),) + others


class Compose(SeededTransform):
    """Apply transforms in order: ``Compose([FlipRotate(0), Photometric(1)])(image, mask)``.

    A per-call ``rng`` is passed on to every :class:`SeededTransform` inside; other callables are
    called as ``t(*arrays)``. Each must return as many arrays as it was given.
    """

    def __init__(self, transforms: Sequence[Callable[..., tuple]]):
        super().__init__(None)
        self.transforms = list(transforms)
        self.seed = next((t.seed for t in self.transforms if isinstance(t, SeededTransform)), None)

    def __call__(self, image: np.ndarray, *others: np.ndarray, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, ...]:
        arrays = (image,) + others
        for t in self.transforms:
            out = t(*arrays, rng=rng) if isinstance(t, SeededTransform) and rng is not None else t(*arrays)
            if not isinstance(out, tuple) or len(out) != len(arrays):
                got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
                raise TypeError(f"Compose: {t!r} returned {got} for {len(arrays)} arrays: a transform must return "
                                "(image, *others), one array for each it was given")
            arrays = out
        return arrays

    def state_dict(self) -> dict:
        return {"transforms": [t.state_dict() if hasattr(t, "state_dict") else {} for t in self.transforms]}

    def load_state_dict(self, state: dict) -> None:
        for t, s in zip(self.transforms, state["transforms"]):
            if hasattr(t, "load_state_dict"):
                t.load_state_dict(s)


# ---------------------------------------------------------------------------------------------
# elastic deformation and rotations by any angle (chapter 04)
# ---------------------------------------------------------------------------------------------
def _cubic_upsampling_matrix(n: int, grid: int) -> np.ndarray:
    """``(n, grid)`` matrix ``A`` with ``A @ v`` = the cubic-spline interpolation of the ``grid`` node
    values ``v`` (nodes at pixels ``0, (n-1)/(grid-1), ..., n-1``) at every pixel ``0..n-1``."""
    coords = np.linspace(0.0, grid - 1.0, n)[None]          # pixel -> position on the coarse grid
    cols = [ndimage.map_coordinates(np.eye(grid)[i], coords, order=3, mode="mirror")
            for i in range(grid)]
    return np.stack(cols, axis=1)


def random_displacement_field(shape: tuple[int, int], grid: int = 3, sigma: float = 10.0,
                              rng: np.random.Generator | None = None,
                              window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A smooth random displacement field: the U-Net paper's elastic deformation.

    Displacement vectors ``(dy, dx)`` are drawn from ``N(0, sigma^2)`` (independently per node and
    component) on a ``grid x grid`` lattice of nodes spread evenly over the image, corners included,
    and interpolated to every pixel with cubic splines. The field passes exactly through the drawn
    vectors at the nodes; between nodes it is smooth (tensor-product cubic spline, computed as
    ``A_y @ D @ A_x^T`` with two small interpolation matrices).

    Args:
        shape: ``(H, W)`` of the image.
        grid: nodes per side (paper: 3); at least 2.
        sigma: standard deviation of the node displacements in pixels (paper: 10).
        rng: the random generator (seeded for reproducible fields).
        window: ``(top, left, height, width)``: return only this part of the image's field (the
            nodes still span the whole ``shape``), e.g. for a training crop of a deformed image.

    Returns:
        ``float64 (2, H, W)``: ``field[0]`` = ``dy``, ``field[1]`` = ``dx`` in pixels
        (``(2, height, width)`` with a window).
    """
    if len(shape) != 2 or min(shape) < 2:
        raise ValueError(f"shape must be (H, W) with H, W >= 2, got {shape}")
    if grid < 2:
        raise ValueError(f"grid must be >= 2 nodes per side (the paper uses 3), got {grid}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0 pixels, got {sigma}")
    rng = rng if rng is not None else np.random.default_rng()
    h, w = int(shape[0]), int(shape[1])
    nodes = rng.normal(0.0, sigma, size=(2, grid, grid))       # (2, grid, grid) displacements at the nodes
    a_y, a_x = _cubic_upsampling_matrix(h, grid), _cubic_upsampling_matrix(w, grid)
    if window is not None:
        top, left, wh, ww = (int(v) for v in window)
        if top < 0 or left < 0 or wh < 1 or ww < 1 or top + wh > h or left + ww > w:
            raise ValueError(f"window {window} (top, left, height, width) does not fit in an image of shape {shape}")
        a_y, a_x = a_y[top:top + wh], a_x[left:left + ww]
    return np.stack([a_y @ nodes[c] @ a_x.T for c in range(2)])  # (2, H, W)


def warp(array: np.ndarray, field: np.ndarray, order: int = 3, mode: str = "reflect",
         offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Resample ``array`` at ``(y + dy, x + dx)``: ``out[y, x] = array[y + dy[y, x], x + dx[y, x]]``.

    Args:
        array: ``(H, W)`` or ``(H, W, C)``; bool, integer or float.
        field: ``(2, h, w)`` displacements from :func:`random_displacement_field`; ``(h, w) = (H, W)``
            unless ``offset`` places a smaller output window inside the array.
        offset: ``(top, left)`` of the output window: ``out[y, x]`` reads ``array[top + y + dy, left + x + dx]``.
        order: 3 = cubic (images), 1 = linear, 0 = nearest (masks, labels: values stay in the input's set).
        mode: how to read outside the image; ``"reflect"`` mirrors it like the paper's overlap-tile input.

    Returns:
        An array of the field's ``(h, w)`` (plus the channels) and the input's dtype. With ``order > 0``
        the result is clipped to the input's value range (cubic splines overshoot at sharp edges);
        integer results are rounded.
    """
    a = np.asarray(array)
    top, left = (int(v) for v in offset)
    if a.ndim not in (2, 3) or field.ndim != 3 or field.shape[0] != 2:
        raise ValueError(f"expected an array (H, W) or (H, W, C) and a field (2, h, w), got {a.shape} "
                         f"and {field.shape}")
    if (top, left) == (0, 0) and a.shape[:2] != field.shape[1:]:
        raise ValueError(f"array {a.shape} and field {field.shape} do not match: the field must be (2, H, W) "
                         f"with (H, W) = {a.shape[:2]} (or pass offset=(top, left) for a window)")
    h, w = field.shape[1:]
    yy, xx = np.meshgrid(np.arange(top, top + h, dtype=np.float64), np.arange(left, left + w, dtype=np.float64),
                         indexing="ij")
    coords = np.stack([yy + field[0], xx + field[1]])
    if a.dtype == bool:
        return ndimage.map_coordinates(a.astype(np.uint8), coords, order=0, mode=mode).astype(bool)
    if order == 0:
        if a.ndim == 2:
            return ndimage.map_coordinates(a, coords, order=0, mode=mode)
        return np.stack([ndimage.map_coordinates(a[..., c], coords, order=0, mode=mode)
                         for c in range(a.shape[2])], axis=-1)
    x = a.astype(np.float64)
    channels = [x] if a.ndim == 2 else [x[..., c] for c in range(a.shape[2])]
    out = [ndimage.map_coordinates(c, coords, order=order, mode=mode) for c in channels]
    res = out[0] if a.ndim == 2 else np.stack(out, axis=-1)
    res = np.clip(res, x.min(), x.max()) if x.size else res
    if np.issubdtype(a.dtype, np.integer):
        return np.rint(res).astype(a.dtype)
    return res.astype(a.dtype)


def elastic_deform(image: np.ndarray, *others: np.ndarray, grid: int = 3, sigma: float = 10.0,
                   rng: np.random.Generator | None = None, order: int = 3, others_order: int = 0,
                   mode: str = "reflect", window: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, ...]:
    """The U-Net paper's elastic deformation, one random field for the image and its mask/weights.

    "We generate smooth deformations using random displacement vectors on a coarse 3 by 3 grid.
    The displacements are sampled from a Gaussian distribution with 10 pixels standard deviation.
    Per-pixel displacements are then computed using bicubic interpolation." (Ronneberger et al. 2015)

    Args:
        image: ``(H, W)`` or ``(H, W, C)``; resampled with ``order`` (cubic).
        *others: masks, weight maps, instance labels ``(H, W)``: resampled with ``others_order``
            (nearest: a binary mask stays binary, labels stay labels).
        grid: nodes per side of the coarse grid (paper: 3).
        sigma: standard deviation of the node displacements in pixels (paper: 10).
        rng: random generator; the same seed gives the same field.
        order, others_order: spline orders for the image and for the others.
        mode: boundary handling (``"reflect"``: mirror the image at its borders).
        window: ``(top, left, height, width)``: deform the whole image (nodes spread over all of it)
            but compute and return only this window; the same as deforming, then cropping, at the
            cost of the window alone (a training crop of a deformed slice).

    Returns:
        ``(image, *others)`` deformed, each with its input's dtype and shape (the window's with ``window``).

    Example:
        >>> img, mask = elastic_deform(img, mask, rng=np.random.default_rng(0))
    """
    image = np.asarray(image)
    for o in others:
        if np.asarray(o).shape[:2] != image.shape[:2]:
            raise ValueError(f"all arrays must share (H, W): image {image.shape[:2]}, got {np.asarray(o).shape}")
    field = random_displacement_field(image.shape[:2], grid, sigma, rng, window)
    offset = (0, 0) if window is None else (int(window[0]), int(window[1]))
    return (warp(image, field, order, mode, offset),) + tuple(warp(np.asarray(o), field, others_order, mode, offset)
                                                              for o in others)


class ElasticDeform(SeededTransform):
    """Callable ``(image, mask, *others) -> (image, mask, *others)`` applying :func:`elastic_deform`.

    Args:
        grid, sigma: as in :func:`elastic_deform` (paper: 3 and 10 px).
        seed: seed of the transform's own random generator.
        p: probability of deforming a sample (otherwise it passes unchanged), in [0, 1].
        order, others_order: interpolation orders for the image and the other arrays.
    """

    def __init__(self, grid: int = 3, sigma: float = 10.0, seed: int | None = None, p: float = 1.0,
                 order: int = 3, others_order: int = 0):
        if not 0 <= p <= 1:
            raise ValueError(f"ElasticDeform: p is a probability in [0, 1], got {p}")
        super().__init__(seed)
        self.grid, self.sigma, self.p, self.order, self.others_order = grid, sigma, p, order, others_order

    def __call__(self, image: np.ndarray, *others: np.ndarray, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, ...]:
        rng = self._rng(rng)
        if self.p < 1.0 and rng.random() >= self.p:
            return (image,) + others
        return elastic_deform(image, *others, grid=self.grid, sigma=self.sigma, rng=rng,
                              order=self.order, others_order=self.others_order)

    def __repr__(self) -> str:
        return f"ElasticDeform(grid={self.grid}, sigma={self.sigma}, p={self.p})"


def rotate(image: np.ndarray, *others: np.ndarray, angle: float, order: int = 3, others_order: int = 0,
           mode: str = "reflect") -> tuple[np.ndarray, ...]:
    """Rotate the image and its masks/weights by ``angle`` degrees (counter-clockwise) about the centre.

    Corners that come from outside the image are filled by mirroring (``mode="reflect"``).
    Multiples of 90 degrees are exact with :func:`flip_rotate`; use this for the angles in between.

    Returns:
        ``(image, *others)`` rotated, with their shapes and dtypes.
    """
    image = np.asarray(image)
    _same_size("rotate", image, others)
    h, w = image.shape[:2]
    t = np.deg2rad(angle)
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    # output pixel (y, x) reads the input at the position rotated back by -angle (y points down)
    src_y = cy + (yy - cy) * np.cos(t) + (xx - cx) * np.sin(t)
    src_x = cx - (yy - cy) * np.sin(t) + (xx - cx) * np.cos(t)
    field = np.stack([src_y - yy, src_x - xx])
    return (warp(image, field, order, mode),) + tuple(warp(np.asarray(o), field, others_order, mode) for o in others)


class RandomRotate(SeededTransform):
    """Callable transform: rotate by an angle drawn from ``U(-max_angle, max_angle)`` degrees."""

    def __init__(self, max_angle: float = 180.0, seed: int | None = None, order: int = 3, others_order: int = 0):
        super().__init__(seed)
        self.max_angle, self.order, self.others_order = max_angle, order, others_order

    def __call__(self, image: np.ndarray, *others: np.ndarray, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, ...]:
        angle = float(self._rng(rng).uniform(-self.max_angle, self.max_angle))
        return rotate(image, *others, angle=angle, order=self.order, others_order=self.others_order)
