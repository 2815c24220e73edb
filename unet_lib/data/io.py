"""Image I/O: :func:`load_image`, :func:`load_mask`, :func:`resize_image`, :func:`resize_mask` and their helpers."""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .registry import DATASETS


# --------------------------------------------------------------------------------------
# image I/O
# --------------------------------------------------------------------------------------
def _side(v) -> int:
    """One side of a size: a whole number (``96``, ``np.int64(96)``, ``96.0``), never a string or ``96.5``."""
    if isinstance(v, (bool, str, bytes)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError
    if float(v) != int(v):
        raise ValueError
    return int(v)


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    """``size`` (int = square, or (h, w)) as a validated ``(h, w)``."""
    if isinstance(size, (str, bytes)):
        raise ValueError(f"size must be an int or an (h, w) pair of ints, got the string {size!r}: "
                         f"pass {size.strip() if isinstance(size, str) else size!s} without quotes")
    try:
        if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
            h = w = int(size)
        else:
            h, w = (_side(s) for s in size)  # type: ignore[union-attr]
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"size must be an int or an (h, w) pair of whole numbers, got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


def _open(path: str | os.PathLike) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        img = Image.open(path)
        img.size  # noqa: B018  (header parsed)
        return img
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(_unreadable(path, e)) from e


def _unreadable(path: Path, err: BaseException) -> str:
    hint = "python data_scripts/download.py <dataset>"
    for info in DATASETS.values():
        if info.folder in path.parts:
            hint = f"python data_scripts/download.py {info.name}"
    return (f"cannot read image {path}: {err}; the file is corrupt or not an image. "
            f"Delete it and re-download with `{hint}` (check with data_scripts/verify.py).")


def load_image(path: str | os.PathLike, mode: str = "RGB", draft: int | Sequence[int] | None = None) -> np.ndarray:
    """Read an image file as ``uint8``.

    RGBA (DSB2018) drops the constant alpha channel; greyscale files become 3 equal
    channels in ``"RGB"`` mode.

    Args:
        path: image file.
        mode: ``"RGB"`` -> ``(H, W, 3)`` or ``"L"`` -> ``(H, W)``.
        draft: JPEG only: a size (int or (h, w)); the decoder may shrink the image by 1/2,
            1/4 or 1/8 while keeping it at least that large (``Image.draft``). Ask for 4x the
            size you will :func:`resize_image` to: the result then stays within one grey
            level of a full decode on average (deeper DCT scaling drifts further), and big
            Kvasir-SEG images load up to 3x faster.

    Returns:
        ``np.ndarray`` of ``uint8``, shape ``(H, W, 3)`` or ``(H, W)``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be decoded (names it and how to re-download it).

    Used in chapters 01-07.
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    path = Path(path)
    with _open(path) as img:
        try:
            if draft is not None and img.format == "JPEG":
                h, w = _hw(draft)
                img.draft(mode, (w, h))
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # high bit depth greyscale
                arr = np.asarray(img, dtype=np.float64)
                arr = np.clip(arr / max(arr.max(), 1) * 255 + 0.5, 0, 255).astype(np.uint8)
                out = np.asarray(Image.fromarray(arr).convert(mode), dtype=np.uint8)
            else:
                out = np.asarray(img.convert(mode), dtype=np.uint8)
        except (OSError, SyntaxError, ValueError) as e:
            raise ValueError(_unreadable(path, e)) from e
    return np.ascontiguousarray(out)


def _mask_values(img: Image.Image) -> np.ndarray:
    """One value per pixel of a mask file: the brightest colour channel (so a red, green, blue or white
    mask all count), or the alpha channel when the colours are constant and only alpha draws the
    shape; 16-bit and float masks keep their raw values."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return np.asarray(img, dtype=np.float64)
    if img.mode == "P":
        img = img.convert("RGBA")
    elif img.mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    arr = np.asarray(img)
    if arr.ndim == 2:
        return arr
    has_alpha = img.mode in ("LA", "RGBA")
    colour = (arr[..., :-1] if has_alpha else arr).max(axis=-1)
    if has_alpha:
        alpha = arr[..., -1]
        if colour.min() == colour.max() and alpha.min() != alpha.max():
            return alpha
    return colour


def load_mask(path: str | os.PathLike, threshold: int = 127) -> np.ndarray:
    """Read a binary mask: keep pixels ``> threshold`` of its brightest channel.

    Kvasir-SEG masks are JPEG, so their values are not exactly 0/255 (they lie in
    [0, 19] and [236, 255]); thresholding at 127 recovers the drawn mask. A mask drawn in
    one colour (red, green, blue) counts like a white one; one drawn only in the alpha
    channel (colours constant) is read from the alpha channel. A lossless mask stored as
    0/1 (rather than 0/255) is read as such: 1 is foreground.

    Args:
        path: mask file (PNG or JPEG, any number of channels, 8 or 16 bits).
        threshold: values above it are foreground.

    Returns:
        ``np.ndarray`` of ``bool``, shape ``(H, W)``.

    Raises:
        FileNotFoundError, ValueError: as :func:`load_image`.

    Warns:
        UserWarning: the mask has non-zero values but none above ``threshold`` (and is not a 0/1
            mask): it loads as all background; the warning names the file, its largest value and the fix.

    Used in chapters 01-07.
    """
    path = Path(path)
    with _open(path) as img:
        try:
            if img.format == "JPEG" and img.mode in ("L", "RGB"):
                with Image.open(path) as luma:
                    luma.draft("L", luma.size)  # decode luma only, at full size (same result, faster)
                    grey = np.asarray(luma.convert("L"))
                if img.mode == "RGB" and not (grey > threshold).any():
                    grey = _mask_values(img)  # a coloured mask (a pure red or blue is dark in luma)
            else:
                grey = _mask_values(img)
        except (OSError, SyntaxError, ValueError) as e:
            raise ValueError(_unreadable(path, e)) from e
    mask = grey > threshold
    if not mask.any() and grey.size and grey.max() > 0:
        top = grey.max()
        if top == 1 and ((grey == 0) | (grey == 1)).all():
            return grey == 1  # a 0/1 mask: the same drawing as 0/255
        warnings.warn(f"mask {path} has values up to {top:g} but none above the threshold {threshold}, so it loads "
                      f"as all background: if its foreground is stored darker (class labels 0, 1, 2, ...?), pass "
                      f"threshold=0 or convert the file to 0/255", UserWarning, stacklevel=2)
    return mask


def resize_image(image: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """Resize an image with antialiased bilinear interpolation (PIL).

    Args:
        image: ``(H, W)`` or ``(H, W, C)``, ``uint8`` or float.
        size: int (square) or ``(h, w)``.

    Returns:
        The resized image, same dtype and number of channels, shape ``(h, w[, C])``.

    Never use this for masks or labels: see :func:`resize_mask`. Used in chapters 01-07.
    """
    h, w = _hw(size)
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if image.shape[:2] == (h, w):
        return image.copy()
    if image.dtype == np.uint8 and (image.ndim == 2 or image.shape[2] in (3, 4)):
        return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
    chans = image[..., None] if image.ndim == 2 else image
    out = np.stack([np.asarray(Image.fromarray(chans[..., c].astype(np.float32), mode="F")
                               .resize((w, h), Image.Resampling.BILINEAR)) for c in range(chans.shape[2])], axis=-1)
    out = out[..., 0] if image.ndim == 2 else out
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(image.dtype, copy=False)


def resize_mask(mask: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """Resize a mask or label image with nearest neighbour only (values never mix).

    Args:
        mask: ``(H, W)`` ``bool`` mask or integer label image (instances, classes).
        size: int (square) or ``(h, w)``.

    Returns:
        ``(h, w)`` array of the same dtype; a binary mask stays binary, labels stay labels.

    Used in chapters 01-07.
    """
    h, w = _hw(size)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    if mask.shape == (h, w):
        return mask.copy()
    # nearest neighbour by index arithmetic (pixel centres), identical to PIL NEAREST, any dtype
    rows = np.minimum(((np.arange(h) + 0.5) * mask.shape[0] / h).astype(np.int64), mask.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * mask.shape[1] / w).astype(np.int64), mask.shape[1] - 1)
    return mask[rows[:, None], cols[None, :]]




def _image_size(path: Path) -> tuple[int, int]:
    """(h, w) from the header only."""
    with _open(path) as img:
        return img.size[1], img.size[0]


def _apply_transform(transform: Callable, image: np.ndarray, mask: np.ndarray, epoch: int,
                     index: int) -> tuple[np.ndarray, np.ndarray]:
    """``transform(image, mask)``; a seeded :class:`unet_lib.augment.SeededTransform` gets its own generator
    for this item, ``default_rng([seed, epoch, index])`` (the same item of the same epoch is always
    augmented alike, whatever the reading order, the workers or a resumed run)."""
    from ..augment import SeededTransform  # augment needs no data: imported here to keep io light

    if isinstance(transform, SeededTransform) and transform.seed is not None:
        out = transform(image, mask, rng=np.random.default_rng([int(transform.seed), int(epoch), int(index)]))
    else:
        out = transform(image, mask)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"the dataset's transform {transform!r} must return (image, mask), got "
                        f"{type(out).__name__}{f' of {len(out)}' if isinstance(out, (tuple, list)) else ''}")
    return out[0], out[1]


def _to_tensors(image: np.ndarray, mask: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Image ``float32 (C, H, W)`` in [0, 1] and mask ``float32 (1, H, W)`` in {0, 1}, checked.

    Raises:
        ValueError: a float image outside [0, 1] (a 0-255 image as float? it is not divided again) or
            a mask with values other than 0 and 1 (a 0/255 mask?), e.g. returned by a transform.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8 and img.size:
        if not (np.issubdtype(img.dtype, np.floating) or img.dtype == bool):
            raise TypeError(f"images must be uint8 (0-255) or float in [0, 1], got {img.dtype}")
        lo, hi = float(img.min()), float(img.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"a float image must hold values in [0, 1], got {lo:g} to {hi:g} (a transform that "
                             "returns 0-255 values as float?): return uint8, or divide by 255 once")
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != bool and m.size and not np.isin(m, (0, 1)).all():
            raise ValueError(f"a mask must hold only 0 and 1 (or be boolean), got values from {m.min():g} to "
                             f"{m.max():g} (a 0/255 mask, or one interpolated by a transform?): return mask > 127 "
                             "or resize masks with nearest neighbour (resize_mask)")
    img_t = torch.from_numpy(np.array(img, copy=True, order="C"))
    img_t = img_t.float().div_(255.0) if img.dtype == np.uint8 else img_t.float()
    img_t = img_t.unsqueeze(0) if img_t.ndim == 2 else img_t.permute(2, 0, 1).contiguous()
    if mask is None:
        return img_t, None
    m = torch.from_numpy(np.array(mask, dtype=np.float32, copy=True, order="C"))
    return img_t, (m.unsqueeze(0) if m.ndim == 2 else m)


def _id_list(ids, what: str) -> list:
    """``ids`` as a list, refusing a lone string (``list("abc")`` would be three ids ``a``, ``b``, ``c``)."""
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        raise TypeError(f"{what} must be a list, got {type(ids).__name__} {ids!r}: wrap a single one in a list, "
                        f"e.g. [{ids!r}]")
    return list(ids)


def _check_limit(limit) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0):
        raise ValueError(f"limit must be an int >= 0 or None, got {limit!r}")
