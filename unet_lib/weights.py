"""The U-Net paper's pixel weight map: class balance plus a border term (chapter 04).

Ronneberger, Fischer & Brox (2015), eq. 2::

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

``d1`` and ``d2`` are the distances from pixel ``x`` to the nearest and to the
second-nearest object (cell, nucleus). The border term is large only in the
narrow background gaps between two objects that (almost) touch, so the loss pays
most for the pixels that keep touching objects apart. The paper uses
``w0 = 10`` and ``sigma ~ 5`` pixels. ``w_c`` balances the class frequencies; the
paper does not say how, so :func:`class_balance_weights` makes it explicit.

Speed: a distance transform per object over the whole image costs
``O(N * H * W)`` for ``N`` objects. :func:`border_weight_map` instead computes each
object's distance transform only inside its bounding box grown by the distance
``D = sigma * sqrt(2 * ln(w0 / tol))`` beyond which the border term is below ``tol``,
and keeps the two smallest distances per pixel. The result equals the exact map
to within ``tol`` everywhere (the tests compare it with a brute-force reference).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["class_balance_weights", "class_weight_map", "nearest_two_distances", "border_term",
           "border_weight_map", "border_reach"]


def _check_instances(instances: np.ndarray) -> np.ndarray:
    a = np.asarray(instances)
    if a.ndim != 2:
        raise ValueError(f"expected an instance label image (H, W), got shape {a.shape}: "
                         "pass one image at a time (loop over a batch)")
    if a.dtype == bool:
        raise ValueError("got a boolean mask, not instance labels: label its objects first, "
                         "e.g. scipy.ndimage.label(mask)[0], or unet_lib.instances.label_instances(mask)")
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.mod(a, 1) == 0):
            raise ValueError("instance labels must be integers (0 = background, 1..N = objects)")
        a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise ValueError("instance labels must be >= 0 (0 = background, 1..N = objects)")
    return a


def class_balance_weights(masks: np.ndarray | Sequence[np.ndarray]) -> tuple[float, float]:
    """Class weights ``(w_background, w_foreground)`` from the class frequencies of one or more masks.

    The paper says only that ``w_c`` is "the weight map to balance the class frequencies".
    We use inverse-frequency weights normalised so that both classes carry the same total
    weight and the mean weight over all pixels is 1::

        w_k = 1 / (K * f_k),   f_k = fraction of pixels of class k,   K = 2 classes

    e.g. 20 % foreground gives ``w_fg = 2.5`` and ``w_bg = 0.625``. A class that does not occur
    gets weight 1 (it touches no pixel anyway) and the others are normalised among themselves.

    Args:
        masks: a foreground mask ``(H, W)`` (bool, or instance labels: > 0 is foreground), or a
            list/stack of them; frequencies are pooled over all pixels (use the training set).

    Returns:
        ``(w_background, w_foreground)``.
    """
    if isinstance(masks, np.ndarray):
        masks = [masks]
    fg = sum(int(np.count_nonzero(np.asarray(m))) for m in masks)
    total = sum(int(np.asarray(m).size) for m in masks)
    if total == 0:
        raise ValueError("no pixels: pass at least one non-empty mask")
    counts = [total - fg, fg]
    present = [c for c in counts if c > 0]
    return tuple(total / (len(present) * c) if c > 0 else 1.0 for c in counts)  # type: ignore[return-value]


def class_weight_map(instances: np.ndarray, class_weights: Sequence[float] | None = None) -> np.ndarray:
    """The class-balance part ``w_c(x)`` of the weight map, per pixel.

    Args:
        instances: instance labels ``(H, W)`` (0 = background) or a boolean foreground mask.
        class_weights: ``(w_background, w_foreground)``; ``None`` computes them from this
            image's own frequencies with :func:`class_balance_weights`. Pass ``(1.0, 1.0)``
            for no class balancing, or weights pooled over the training set.

    Returns:
        ``float32 (H, W)``.
    """
    fg = np.asarray(instances) > 0
    if class_weights is None:
        class_weights = class_balance_weights(fg)
    if len(class_weights) != 2:
        raise ValueError(f"class_weights must be (w_background, w_foreground), got {class_weights!r}")
    w_bg, w_fg = (float(w) for w in class_weights)
    return np.where(fg, np.float32(w_fg), np.float32(w_bg)).astype(np.float32)


def border_reach(w0: float, sigma: float, tol: float = 1e-3) -> float:
    """Distance ``D`` with ``w0 * exp(-D**2 / (2 sigma**2)) = tol``: beyond ``d1 + d2 > D`` the
    border term is below ``tol`` (``~21.5`` px for ``w0=10, sigma=5, tol=1e-3``)."""
    if w0 <= tol:
        return 0.0
    return float(sigma * math.sqrt(2.0 * math.log(w0 / tol)))


def nearest_two_distances(instances: np.ndarray, max_distance: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distances ``d1 <= d2`` from every pixel to the nearest and second-nearest object.

    The distance to object ``k`` is the Euclidean distance from the pixel's centre to the
    nearest pixel centre of ``k`` (0 on the object itself). Each object's distance transform
    is computed only inside its bounding box grown by ``max_distance``; distances larger than
    that are reported as ``inf`` (they are exact up to ``max_distance``).

    Args:
        instances: ``int (H, W)``, 0 = background, 1..N = objects (labels need not be consecutive).
        max_distance: the reach; ``None`` = the whole image (exact everywhere, slow for many objects).

    Returns:
        ``(d1, d2)``, two ``float64 (H, W)`` arrays; ``inf`` where fewer than one/two objects are in reach.
    """
    inst = _check_instances(instances)
    h, w = inst.shape
    d1 = np.full((h, w), np.inf)
    d2 = np.full((h, w), np.inf)
    grow = int(math.ceil(max_distance)) if max_distance is not None else max(h, w)
    for label, box in enumerate(ndimage.find_objects(inst), start=1):
        if box is None:  # a label that does not occur
            continue
        rows, cols = box
        r0, r1 = max(rows.start - grow, 0), min(rows.stop + grow, h)
        c0, c1 = max(cols.start - grow, 0), min(cols.stop + grow, w)
        window = (slice(r0, r1), slice(c0, c1))
        # distance to object `label` for every pixel of the window (the whole object lies inside it)
        d = ndimage.distance_transform_edt(inst[window] != label)
        if max_distance is not None:
            d[d > max_distance] = np.inf
        a, b = d1[window], d2[window]           # views: updated in place
        closer = d < a
        b[:] = np.where(closer, a, np.minimum(b, d))   # the old nearest becomes second, or d competes for second
        a[:] = np.where(closer, d, a)
    return d1, d2


def border_term(d1: np.ndarray, d2: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` (0 where ``d2`` is infinite)."""
    s = np.asarray(d1, dtype=np.float64) + np.asarray(d2, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        out = w0 * np.exp(-(s ** 2) / (2.0 * sigma ** 2))
    return np.where(np.isfinite(s), out, 0.0)


def border_weight_map(instances: np.ndarray, w0: float = 10.0, sigma: float = 5.0,
                      class_weights: Sequence[float] | None = None, *, tol: float = 1e-3) -> np.ndarray:
    """The U-Net weight map ``w(x) = w_c(x) + w0 exp(-(d1 + d2)^2 / (2 sigma^2))`` (paper eq. 2).

    The border term is added on background pixels only (on an object ``d1 = 0`` and the term
    would only re-weight its border pixels; the paper's separating borders are background).
    An image with fewer than two objects gets no border term at all.

    To make touching objects separable, first turn their shared border into background
    (:func:`unet_lib.instances.separate_touching`), then compute the map on the result:
    the ridge pixels then sit between two objects at ``d1 ~ d2 ~ 1`` and get weight ``~ w_c + w0``.

    Args:
        instances: ``int (H, W)`` instance labels, 0 = background, 1..N = objects.
        w0: height of the border term (paper: 10).
        sigma: width of the border term in pixels (paper: "approximately 5").
        class_weights: ``(w_background, w_foreground)``, or ``None`` to balance this image's own
            class frequencies (:func:`class_balance_weights`).
        tol: the border term is computed to within this absolute error (it is truncated where
            ``d1 + d2 > border_reach(w0, sigma, tol)``).

    Returns:
        ``float32 (H, W)`` weights, ``>= min(class_weights)``.

    Shape:
        ``(H, W) -> (H, W)``.

    Example:
        Two discs one pixel apart: the gap pixel between them has ``d1 = d2 = 1`` and weight
        ``w_bg + 10 * exp(-4 / 50) = w_bg + 9.23``.
    """
    inst = _check_instances(instances)
    if w0 < 0 or sigma <= 0 or tol <= 0:
        raise ValueError(f"need w0 >= 0, sigma > 0 and tol > 0, got w0={w0}, sigma={sigma}, tol={tol}")
    weight = class_weight_map(inst, class_weights).astype(np.float64)
    reach = border_reach(w0, sigma, tol)
    if reach > 0 and np.count_nonzero(np.bincount(inst.ravel())[1:]) >= 2:
        d1, d2 = nearest_two_distances(inst, max_distance=reach)
        background = inst == 0
        weight[background] += border_term(d1[background], d2[background], w0, sigma)
    return weight.astype(np.float32)
