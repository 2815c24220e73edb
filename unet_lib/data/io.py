"""Image I/O: :func:`load_image`, :func:`load_mask`, :func:`resize_image`, :func:`resize_mask` and their helpers."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .registry import DATASETS


# --------------------------------------------------------------------------------------
# image I/O
# --------------------------------------------------------------------------------------
def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    """``size`` (int = square, or (h, w)) as a validated ``(h, w)``."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        h = w = int(size)
    else:
        try:
            h, w = (int(s) for s in size)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ValueError(f"size must be an int or an (h, w) pair, got {size!r}") from None
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


def load_mask(path: str | os.PathLike, threshold: int = 127) -> np.ndarray:
    """Read a binary mask: convert to greyscale and keep pixels ``> threshold``.

    Kvasir-SEG masks are JPEG, so their values are not exactly 0/255 (they lie in
    [0, 19] and [236, 255]); thresholding at 127 recovers the drawn mask.

    Args:
        path: mask file (PNG or JPEG, any number of channels).
        threshold: values above it are foreground.

    Returns:
        ``np.ndarray`` of ``bool``, shape ``(H, W)``.

    Raises:
        FileNotFoundError, ValueError: as :func:`load_image`.

    Used in chapters 01-07.
    """
    path = Path(path)
    with _open(path) as img:
        try:
            if img.format == "JPEG":
                img.draft("L", img.size)  # decode luma only, at full size (same result, faster)
            grey = np.asarray(img.convert("L"))
        except (OSError, SyntaxError, ValueError) as e:
            raise ValueError(_unreadable(path, e)) from e
    return grey > threshold


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


def _to_tensors(image: np.ndarray, mask: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    img = np.asarray(image)
    img_t = torch.from_numpy(np.array(img, copy=True, order="C"))
    img_t = img_t.float().div_(255.0) if img.dtype == np.uint8 else img_t.float()
    img_t = img_t.unsqueeze(0) if img_t.ndim == 2 else img_t.permute(2, 0, 1).contiguous()
    if mask is None:
        return img_t, None
    m = torch.from_numpy(np.array(mask, dtype=np.float32, copy=True, order="C"))
    return img_t, (m.unsqueeze(0) if m.ndim == 2 else m)
