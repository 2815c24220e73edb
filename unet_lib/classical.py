"""Thresholding baselines: the methods every learned segmenter must beat (chapter 01).

Everything here works on numpy arrays with scikit-image and scipy; no training.

* :func:`channel` / :func:`channels` turn an RGB image into one feature map in [0, 1]:
  grey, the R/G/B channels, H/S/V of HSV or L*/a*/b* of CIELAB.
* :func:`threshold_mask` cuts a feature map at a threshold, keeping the pixels
  ``above`` it (foreground brighter than background) or ``below`` it (darker).
* :func:`otsu_threshold` and :func:`otsu_mask` pick the threshold without labels, by
  Otsu's criterion (maximal between-class variance of the histogram,
  Otsu 1979); :func:`multi_otsu_labels` / :func:`multi_otsu_mask` split the histogram
  into several classes.
* :func:`clean_mask` and :func:`largest_component` are the usual morphological clean-up.
* :func:`dice_curve`, :func:`oracle_threshold` and :func:`best_global_threshold` use the
  ground truth: the Dice of *every* threshold at once, the best threshold for one image
  (the "oracle", an upper bound for any thresholding rule) and the best single
  threshold for a whole set of images (a fair, learned baseline when chosen on a
  training split and applied to another).
* :func:`score_masks` gives per-image Dice and IoU for lists of masks of any sizes.

Conventions: a *feature map* ``x`` is a float ``(H, W)`` array (values in [0, 1] for the
default threshold grid); masks are ``bool (H, W)``; ``polarity="above"`` means
``mask = x > t`` and ``polarity="below"`` means ``mask = x <= t`` (the exact complement).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage
from skimage import color, filters, morphology

__all__ = [
    "CHANNELS",
    "POLARITIES",
    "DEFAULT_THRESHOLDS",
    "channel",
    "channels",
    "threshold_mask",
    "otsu_threshold",
    "otsu_mask",
    "multi_otsu_labels",
    "multi_otsu_mask",
    "largest_component",
    "clean_mask",
    "specular_highlights",
    "dice_curve",
    "oracle_threshold",
    "best_global_threshold",
    "score_masks",
]

#: names accepted by :func:`channel`: grey, RGB, HSV and CIELAB channels
CHANNELS: tuple[str, ...] = ("grey", "R", "G", "B", "H", "S", "V", "L*", "a*", "b*")
#: ``"above"``: foreground is ``x > t``; ``"below"``: foreground is ``x <= t``
POLARITIES: tuple[str, ...] = ("above", "below")
#: the threshold grid of the oracle searches: 257 values from 0 to 1 in steps of 1/256
DEFAULT_THRESHOLDS: np.ndarray = np.linspace(0.0, 1.0, 257)

_HSV = {"H": 0, "S": 1, "V": 2}
_LAB = {"L*": 0, "a*": 1, "b*": 2}


# --------------------------------------------------------------------------------------
# feature maps
# --------------------------------------------------------------------------------------
def _as_rgb_float(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4):
        raise ValueError(f"expected an image (H, W), (H, W, 3) or (H, W, 4), got shape {img.shape}; "
                         "a (3, H, W) tensor must be moved to channels-last first (e.g. x.permute(1, 2, 0))")
    img = img[..., :3]
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    if img.dtype == bool or not np.issubdtype(img.dtype, np.number):
        raise ValueError(f"expected a uint8 or float image, got dtype {img.dtype}")
    img = img.astype(np.float64)
    if img.size and (img.min() < 0 or img.max() > 1):
        raise ValueError(f"a float image must lie in [0, 1], got values in [{img.min():.3g}, {img.max():.3g}]; "
                         "divide uint8-range data by 255")
    return img


def _check_name(name: str) -> None:
    if name not in CHANNELS:
        raise ValueError(f"unknown channel {name!r}; choose one of {list(CHANNELS)}")


def channels(image: np.ndarray, names: Iterable[str] = CHANNELS) -> dict[str, np.ndarray]:
    """Several feature maps of one image, each scaled to [0, 1] (HSV and Lab computed once).

    Scaling: grey is the luminance ``0.2125 R + 0.7154 G + 0.0721 B`` (scikit-image
    ``rgb2gray``); R, G, B are divided by 255; H, S, V are scikit-image's HSV (hue is
    circular: red sits at both 0 and 1); L* is divided by 100; a* and b* are mapped
    from [-128, 127] to [0, 1] by ``(v + 128) / 255`` (0.502 = neutral grey).

    Args:
        image: ``(H, W, 3)`` RGB (``uint8``, or float in [0, 1]); RGBA drops alpha; a
            greyscale ``(H, W)`` image is treated as grey RGB.
        names: channel names from :data:`CHANNELS`.

    Returns:
        ``{name: float64 (H, W) array in [0, 1]}`` in the order of ``names``.

    Used in chapter 01.
    """
    names = list(names)
    for n in names:
        _check_name(n)
    rgb = _as_rgb_float(image)
    hsv = color.rgb2hsv(rgb) if any(n in _HSV for n in names) else None
    lab = color.rgb2lab(rgb) if any(n in _LAB for n in names) else None
    out: dict[str, np.ndarray] = {}
    for n in names:
        if n == "grey":
            x = color.rgb2gray(rgb)
        elif n in ("R", "G", "B"):
            x = rgb[..., "RGB".index(n)]
        elif n in _HSV:
            x = hsv[..., _HSV[n]]  # type: ignore[index]
        elif n == "L*":
            x = lab[..., 0] / 100.0  # type: ignore[index]
        else:
            x = (lab[..., _LAB[n]] + 128.0) / 255.0  # type: ignore[index]
        out[n] = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    return out


def channel(image: np.ndarray, name: str = "grey") -> np.ndarray:
    """One feature map of an image, scaled to [0, 1] (see :func:`channels` for the scaling).

    Args:
        image: ``(H, W, 3)`` RGB (``uint8`` or float in [0, 1]) or greyscale ``(H, W)``.
        name: one of :data:`CHANNELS`.

    Returns:
        ``float64 (H, W)`` in [0, 1].

    Example:
        >>> channel(np.full((2, 2, 3), 255, np.uint8), "grey").tolist()
        [[1.0, 1.0], [1.0, 1.0]]

    Used in chapter 01.
    """
    return channels(image, (name,))[name]


# --------------------------------------------------------------------------------------
# thresholds
# --------------------------------------------------------------------------------------
def _check_polarity(polarity: str) -> None:
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be one of {list(POLARITIES)} ('above': foreground brighter than "
                         f"the threshold, 'below': darker), got {polarity!r}")


def _feature(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected one feature map (H, W), got shape {x.shape}; "
                         "pick a channel first with classical.channel(image, name)")
    return x


def threshold_mask(x: np.ndarray, threshold: float, polarity: str = "above") -> np.ndarray:
    """Foreground mask of a feature map cut at one threshold.

    Args:
        x: feature map ``(H, W)``.
        threshold: the cut.
        polarity: ``"above"`` -> ``x > threshold``; ``"below"`` -> ``x <= threshold``.

    Returns:
        ``bool (H, W)``.

    Used in chapter 01.
    """
    _check_polarity(polarity)
    x = _feature(x)
    return x > threshold if polarity == "above" else x <= threshold


def otsu_threshold(x: np.ndarray, nbins: int = 256) -> float:
    """Otsu's threshold: the cut of the histogram that maximises the between-class variance.

    With class weights ``w0(t), w1(t)`` and means ``mu0(t), mu1(t)`` of the pixels at or
    below and above ``t``, Otsu (1979) picks ``argmax_t w0 w1 (mu0 - mu1)^2``. This wraps
    :func:`skimage.filters.threshold_otsu`; pixels ``> t`` form the bright class.

    Args:
        x: feature map ``(H, W)`` (any range).
        nbins: histogram bins.

    Returns:
        The threshold (a float in the range of ``x``).

    Raises:
        ValueError: a constant image (no threshold separates anything).

    Used in chapter 01.
    """
    x = _feature(x)
    if x.size == 0 or np.all(x == x.flat[0]):
        raise ValueError("Otsu needs at least two different values: the feature map is constant")
    return float(filters.threshold_otsu(x, nbins=nbins))


def otsu_mask(x: np.ndarray, polarity: str = "above", nbins: int = 256) -> np.ndarray:
    """Mask of one feature map thresholded at its own Otsu threshold.

    Args:
        x: feature map ``(H, W)``.
        polarity: which side is foreground: ``"above"`` (bright) or ``"below"`` (dark).
        nbins: histogram bins.

    Returns:
        ``bool (H, W)``; a constant map gives an empty mask for ``"above"`` and a full
        one for ``"below"`` (every pixel is at or below the only value).

    Used in chapter 01.
    """
    _check_polarity(polarity)
    x = _feature(x)
    if x.size == 0 or np.all(x == x.flat[0]):
        return np.zeros(x.shape, bool) if polarity == "above" else np.ones(x.shape, bool)
    return threshold_mask(x, otsu_threshold(x, nbins), polarity)


def multi_otsu_labels(x: np.ndarray, classes: int = 3, nbins: int = 256) -> np.ndarray:
    """Multi-Otsu: split the histogram into ``classes`` intensity classes.

    :func:`skimage.filters.threshold_multiotsu` finds the ``classes - 1`` thresholds that
    maximise the between-class variance (Otsu's criterion for several classes). A pixel
    equal to a threshold joins the darker class, as in :func:`otsu_mask`.

    Args:
        x: feature map ``(H, W)``.
        classes: number of intensity classes (>= 2; 2 is plain Otsu).
        nbins: histogram bins.

    Returns:
        ``int64 (H, W)`` class labels, 0 = darkest ... ``classes - 1`` = brightest.

    Raises:
        ValueError: ``classes < 2`` or fewer distinct values than classes.

    Used in chapter 01.
    """
    x = _feature(x)
    if classes < 2:
        raise ValueError(f"classes must be >= 2, got {classes}")
    try:
        thresholds = filters.threshold_multiotsu(x, classes=classes, nbins=nbins)
    except ValueError as e:  # scikit-image: too few distinct values for that many classes
        raise ValueError(f"the feature map has too few distinct values for {classes} classes: use fewer "
                         f"classes ({e})") from None
    return np.digitize(x, thresholds, right=True)


def multi_otsu_mask(x: np.ndarray, classes: int = 3, keep: int | Sequence[int] = -1, nbins: int = 256) -> np.ndarray:
    """Multi-Otsu foreground: the pixels of some of the ``classes`` intensity classes.

    Args:
        x: feature map ``(H, W)``.
        classes: number of intensity classes (see :func:`multi_otsu_labels`).
        keep: class index or indices that form the foreground (negative counts from the
            brightest: ``-1`` = brightest class, ``0`` = darkest).
        nbins: histogram bins.

    Returns:
        ``bool (H, W)``.

    Raises:
        ValueError: ``classes < 2``, a ``keep`` index out of range, or too few distinct
            values for that many classes.

    Used in chapter 01.
    """
    if classes < 2:
        raise ValueError(f"classes must be >= 2, got {classes}")
    idx = [keep] if isinstance(keep, (int, np.integer)) else list(keep)
    wanted = set()
    for k in idx:
        if not -classes <= int(k) < classes:
            raise ValueError(f"keep index {k} out of range for {classes} classes (use 0..{classes - 1} or negatives)")
        wanted.add(int(k) % classes)
    return np.isin(multi_otsu_labels(x, classes, nbins), sorted(wanted))


# --------------------------------------------------------------------------------------
# clean-up
# --------------------------------------------------------------------------------------
def _mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"expected a mask (H, W), got shape {m.shape}")
    if m.dtype != bool:
        if m.size and not np.isin(np.unique(m), (0, 1)).all():
            raise ValueError("mask is not binary: threshold it first (values other than 0 and 1)")
        m = m.astype(bool)
    return m


def largest_component(mask: np.ndarray, connectivity: int = 2) -> np.ndarray:
    """Keep only the largest connected component of a mask.

    Args:
        mask: ``bool (H, W)``.
        connectivity: 1 (4-neighbours) or 2 (8-neighbours).

    Returns:
        ``bool (H, W)``; an empty mask stays empty. Ties go to the component met first
        in raster order.

    Used in chapter 01.
    """
    m = _mask(mask)
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 or 2, got {connectivity}")
    labels, n = ndimage.label(m, structure=ndimage.generate_binary_structure(2, connectivity))
    if n <= 1:
        return m.copy()
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def clean_mask(mask: np.ndarray, opening: int = 0, closing: int = 0, fill_holes: bool = False,
               min_size: int = 0, largest: bool = False) -> np.ndarray:
    """Morphological clean-up of a thresholded mask, in a fixed order.

    1. opening with a disk of radius ``opening`` (removes specks and thin bridges),
    2. closing with a disk of radius ``closing`` (closes small gaps),
    3. hole filling,
    4. removal of components smaller than ``min_size`` pixels,
    5. keeping only the largest component.

    Args:
        mask: ``bool (H, W)``.
        opening: disk radius in pixels (0 = skip).
        closing: disk radius in pixels (0 = skip).
        fill_holes: fill holes not connected to the border.
        min_size: smallest component kept, in pixels (0 = skip).
        largest: keep only the largest component (one object per image, as for most polyps).

    Returns:
        ``bool (H, W)``.

    Used in chapter 01.
    """
    m = _mask(mask)
    if opening < 0 or closing < 0 or min_size < 0:
        raise ValueError("opening, closing and min_size must be >= 0")
    if opening:
        m = ndimage.binary_opening(m, structure=morphology.disk(opening), border_value=0)
    if closing:
        # pad so that closing does not glue objects to the image border
        r = int(closing)
        m = ndimage.binary_closing(np.pad(m, r), structure=morphology.disk(r))[r:-r, r:-r]
    if fill_holes:
        m = ndimage.binary_fill_holes(m)
    if min_size:
        labels, n = ndimage.label(m, structure=np.ones((3, 3), bool))
        if n:
            sizes = np.bincount(labels.ravel())
            keep = sizes >= min_size
            keep[0] = False
            m = keep[labels]
    if largest:
        m = largest_component(m)
    return np.asarray(m, dtype=bool)


def specular_highlights(image: np.ndarray, v_min: float = 0.9, s_max: float = 0.25) -> np.ndarray:
    """Pixels that look like specular reflections: very bright (HSV value) and nearly white (low saturation).

    Args:
        image: ``(H, W, 3)`` RGB, ``uint8`` or float in [0, 1].
        v_min: smallest HSV value (brightness) of a highlight.
        s_max: largest HSV saturation of a highlight.

    Returns:
        ``bool (H, W)``.

    Used in chapter 01 (the failure gallery).
    """
    c = channels(image, ("S", "V"))
    return (c["V"] >= v_min) & (c["S"] <= s_max)


# --------------------------------------------------------------------------------------
# thresholds chosen with the ground truth
# --------------------------------------------------------------------------------------
def _thresholds(thresholds: Sequence[float] | np.ndarray | None) -> np.ndarray:
    t = DEFAULT_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=np.float64).ravel()
    if t.size == 0:
        raise ValueError("thresholds must not be empty")
    if np.any(np.diff(t) <= 0):
        raise ValueError("thresholds must be strictly increasing")
    return t


def _rank(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``np.searchsorted(t, v, side="left")`` (how many thresholds lie strictly below each value),
    several times faster for an evenly spaced grid: an estimate from the spacing, made exact by
    one correction step in each direction."""
    step = (t[-1] - t[0]) / (t.size - 1) if t.size > 1 else 0.0
    if t.size < 3 or not np.allclose(np.diff(t), step, rtol=1e-9, atol=0):
        return np.searchsorted(t, v, side="left")
    k = np.clip(np.ceil((v - t[0]) / step), 0, t.size).astype(np.int64)
    k -= (k > 0) & (t[np.maximum(k - 1, 0)] >= v)           # estimate one too high
    k += (k < t.size) & (t[np.minimum(k, t.size - 1)] < v)  # estimate one too low
    return k


def dice_curve(x: np.ndarray, target: np.ndarray, thresholds: Sequence[float] | np.ndarray | None = None,
               polarity: str = "above") -> np.ndarray:
    """The Dice of ``threshold_mask(x, t, polarity)`` against ``target`` for every ``t`` at once.

    Exact, and as fast as one histogram: each pixel is placed between two thresholds
    (``searchsorted``), the counts of foreground and background pixels above each
    threshold are cumulative sums, and ``Dice(t) = 2 TP / (2 TP + FP + FN)``. Both masks
    empty gives 1.0, as in :func:`unet_lib.metrics.dice`.

    Args:
        x: feature map ``(H, W)``.
        target: ``bool (H, W)`` ground truth.
        thresholds: increasing thresholds (default :data:`DEFAULT_THRESHOLDS`).
        polarity: ``"above"`` or ``"below"``.

    Returns:
        ``float64 (T,)``, one Dice per threshold.

    Used in chapter 01.
    """
    _check_polarity(polarity)
    x = _feature(x)
    target = _mask(target)
    if x.shape != target.shape:
        raise ValueError(f"feature map {x.shape} and target {target.shape} differ in shape: resize the mask "
                         "with data.resize_mask (nearest neighbour) to the image size")
    t = _thresholds(thresholds)
    # k = number of thresholds strictly below the pixel: the pixel is > t[j] exactly for j < k
    k = _rank(x.ravel(), t)
    fg = target.ravel()
    h_fg = np.bincount(k[fg], minlength=t.size + 1)
    h_bg = np.bincount(k[~fg], minlength=t.size + 1)
    fg_above = np.cumsum(h_fg[::-1])[::-1][1:]  # foreground pixels with x > t[j]
    bg_above = np.cumsum(h_bg[::-1])[::-1][1:]
    n_fg = int(fg.sum())
    if polarity == "above":
        tp, fp = fg_above, bg_above
    else:
        tp, fp = n_fg - fg_above, int(fg.size - n_fg) - bg_above
    tp = tp.astype(np.float64)
    den = 2 * tp + fp + (n_fg - tp)
    return np.where(den == 0, 1.0, 2 * tp / np.maximum(den, 1))


def oracle_threshold(x: np.ndarray, target: np.ndarray, thresholds: Sequence[float] | np.ndarray | None = None,
                     polarity: str = "both") -> tuple[float, str, float]:
    """The best threshold for one image, chosen *with its ground truth* (an upper bound, not a method).

    Args:
        x: feature map ``(H, W)``.
        target: ``bool (H, W)``.
        thresholds: candidate thresholds (default :data:`DEFAULT_THRESHOLDS`).
        polarity: ``"above"``, ``"below"`` or ``"both"`` (try both, keep the better).

    Returns:
        ``(threshold, polarity, dice)``; ties go to the smallest threshold, then to ``"above"``.

    Used in chapter 01.
    """
    pols = POLARITIES if polarity == "both" else (polarity,)
    t = _thresholds(thresholds)
    best = (float(t[0]), pols[0], -1.0)
    for pol in pols:
        d = dice_curve(x, target, t, pol)
        j = int(np.argmax(d))
        if d[j] > best[2]:
            best = (float(t[j]), pol, float(d[j]))
    return best


def best_global_threshold(xs: Iterable[np.ndarray], targets: Iterable[np.ndarray],
                          thresholds: Sequence[float] | np.ndarray | None = None,
                          polarity: str = "both") -> tuple[float, str, float]:
    """The one threshold (and polarity) that maximises the *mean per-image* Dice over a set.

    Choose it on a training split and apply it unchanged to another split: that is a
    fair "learned threshold" baseline with one (or two) fitted numbers.

    Args:
        xs: feature maps ``(H_i, W_i)``, sizes may differ.
        targets: matching ``bool`` masks.
        thresholds: candidate thresholds (default :data:`DEFAULT_THRESHOLDS`).
        polarity: ``"above"``, ``"below"`` or ``"both"``.

    Returns:
        ``(threshold, polarity, mean Dice on the given set)``.

    Raises:
        ValueError: no images, or different numbers of feature maps and targets.

    Used in chapter 01.
    """
    pols = POLARITIES if polarity == "both" else (polarity,)
    for pol in pols:
        _check_polarity(pol)
    t = _thresholds(thresholds)
    xs, targets = list(xs), list(targets)
    if not xs or len(xs) != len(targets):
        raise ValueError(f"need the same, non-zero number of feature maps and targets, "
                         f"got {len(xs)} and {len(targets)}")
    best = (float(t[0]), pols[0], -1.0)
    for pol in pols:
        mean = np.mean([dice_curve(x, m, t, pol) for x, m in zip(xs, targets)], axis=0)
        j = int(np.argmax(mean))
        if mean[j] > best[2]:
            best = (float(t[j]), pol, float(mean[j]))
    return best


def score_masks(preds: Iterable[np.ndarray], targets: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-image Dice and IoU (from :mod:`unet_lib.metrics`) for masks of possibly different sizes.

    Args:
        preds: predicted ``(H_i, W_i)`` masks.
        targets: matching ground-truth masks.

    Returns:
        ``{"dice": float64 (N,), "iou": float64 (N,)}``.

    Used in chapter 01.
    """
    from unet_lib import metrics  # torch import only when scoring

    preds, targets = list(preds), list(targets)
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions but {len(targets)} targets")
    dice = np.array([float(metrics.dice(_mask(p), _mask(t))[0]) for p, t in zip(preds, targets)])
    iou = np.array([float(metrics.iou(_mask(p), _mask(t))[0]) for p, t in zip(preds, targets)])
    return {"dice": dice, "iou": iou}
