"""Kvasir-SEG: the official split, paths, bounding boxes, :class:`KvasirSEG` and polyp-free crops."""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .io import (
    _apply_transform,
    _check_limit,
    _hw,
    _id_list,
    _image_size,
    _to_tensors,
    load_image,
    load_mask,
    resize_image,
    resize_mask,
)
from .registry import (
    MANIFEST_DIR,
    DatasetNotFoundError,
    UnknownIdError,
    dataset_dir,
    instructions,
)

# --------------------------------------------------------------------------------------
# Kvasir-SEG
# --------------------------------------------------------------------------------------
_SPLITS_FILE = "kvasir-seg-split.json"


def kvasir_split(split: str) -> list[str]:
    """Image ids of the official Kvasir-SEG split (MediaEval 2020, by the dataset's authors).

    Args:
        split: ``"train"`` (880 ids) or ``"val"`` (120 ids).

    Returns:
        The ids (file names without ``.jpg``) in the authors' order.

    Raises:
        ValueError: unknown split; lists the valid ones.

    Used in chapters 02, 05, 06, 07.
    """
    if split not in ("train", "val"):
        raise ValueError(f"unknown Kvasir-SEG split {split!r}; valid splits: ['train', 'val'] "
                         f"(the authors' split has no test part)")
    splits = json.loads((MANIFEST_DIR / _SPLITS_FILE).read_text(encoding="utf-8"))
    return list(splits[split])


def kvasir_paths(image_id: str, root: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Image and mask files of one Kvasir-SEG id.

    Args:
        image_id: file name without ``.jpg``, e.g. ``"cju0qkwl35piu0993l0dewei2"``.
        root: the data folder.

    Returns:
        ``(image path, mask path)``; the mask may not exist (checked by the caller).

    Raises:
        UnknownIdError: no image with that id (names the expected file).

    Used in chapters 01 and 07 (single images, failure gallery).
    """
    folder = dataset_dir("kvasir-seg", root)
    image = folder / "images" / f"{image_id}.jpg"
    if not image.is_file():
        raise UnknownIdError(f"unknown Kvasir-SEG image id {image_id!r}: expected the file {image}")
    return image, folder / "masks" / f"{image_id}.jpg"


def kvasir_bboxes(root: str | os.PathLike | None = None) -> dict[str, list[tuple[int, int, int, int]]]:
    """Polyp bounding boxes from the official ``kavsir_bboxes.json``.

    Args:
        root: the data folder.

    Returns:
        ``{image id: [(xmin, ymin, xmax, ymax), ...]}`` in pixels of the original image
        (inclusive corners).

    Raises:
        DatasetNotFoundError: no such file.
        ValueError: a truncated or corrupt file, another layout, or an impossible box (names the file and the fix).

    Used in chapter 06 (polyp-free crops).
    """
    path = dataset_dir("kvasir-seg", root) / "kavsir_bboxes.json"
    if not path.is_file():
        raise DatasetNotFoundError(f"missing {path}.\n" + instructions("kvasir-seg", root))
    fix = ("delete it and run `python data_scripts/download.py kvasir-seg` (check the folder with "
           "`python data_scripts/verify.py kvasir-seg`)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the bounding boxes {path}: {e}; the file is truncated or corrupt: {fix}") from e
    try:
        boxes = {k: [(int(b["xmin"]), int(b["ymin"]), int(b["xmax"]), int(b["ymax"])) for b in v.get("bbox", [])]
                 for k, v in raw.items()}
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"the bounding boxes {path} do not have the official layout "
                         f"{{id: {{'bbox': [{{'xmin', 'ymin', 'xmax', 'ymax'}}]}}}} ({type(e).__name__}: {e}): "
                         f"{fix}") from e
    for image_id, bxs in boxes.items():
        for xmin, ymin, xmax, ymax in bxs:
            if xmin > xmax or ymin > ymax or min(xmin, ymin) < 0:
                raise ValueError(f"the bounding boxes {path} hold an impossible box for {image_id}: (xmin, ymin, "
                                 f"xmax, ymax) = {(xmin, ymin, xmax, ymax)} (corners must be >= 0 and min <= max): "
                                 f"{fix}")
    return boxes


class KvasirSEG(torch.utils.data.Dataset):
    """Kvasir-SEG polyp images and masks, resized once and kept in memory.

    Images are decoded once at construction (tqdm bar), resized to ``size`` with
    antialiased bilinear interpolation, masks thresholded at 127 and resized with
    nearest neighbour. ``__getitem__`` then only converts to tensors.

    Args:
        split: ``"train"`` (880) or ``"val"`` (120): the authors' official split.
        size: side of the square output (int) or ``(h, w)``.
        root: the data folder (default ``$UNET_BOOK_DATA`` or ``./data``).
        ids: explicit image ids; overrides ``split``'s ids.
        limit: keep only the first ``limit`` ids (deterministic subset).
        transform: ``(image uint8 (h, w, 3), mask bool (h, w)) -> (image, mask)``, applied
            to copies of the cached numpy arrays before tensor conversion (augmentation).
            It may return the image as ``uint8`` (scaled by 1/255) or float in [0, 1]
            (kept), and the mask as ``bool`` or {0, 1}; it may change the size. A seeded
            :class:`unet_lib.augment.SeededTransform` (e.g. ``FlipRotate(seed)``) is called with
            ``rng=default_rng([seed, epoch, index])`` (see :meth:`set_epoch`).
        progress: show the loading bar.

    Attributes:
        ids: the image ids, in order.
        images: ``(N, h, w, 3)`` ``uint8``.
        masks: ``(N, h, w)`` ``bool``.

    Returns (``__getitem__``):
        ``(image, mask)``: image ``float32 (3, h, w)`` in [0, 1]; mask ``float32 (1, h, w)`` in {0, 1}.

    Raises:
        DatasetNotFoundError: no dataset folder, or no images in it.
        UnknownIdError: an id without image file; FileNotFoundError: an image without mask;
        ValueError: image and mask of different sizes, or an unreadable file.

    Used in chapters 02, 03, 05, 06, 07.
    """

    def __init__(self, split: str = "train", size: int | Sequence[int] = 96, root: str | os.PathLike | None = None,
                 ids: Sequence[str] | None = None, limit: int | None = None,
                 transform: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
                 progress: bool = True) -> None:
        self.split = split
        self.size = _hw(size)
        self.transform = transform
        self.epoch = 0
        chosen = _id_list(ids, "ids") if ids is not None else kvasir_split(split)
        _check_limit(limit)
        if limit is not None:
            chosen = chosen[:limit]
        folder = dataset_dir("kvasir-seg", root)
        if not (folder / "images").is_dir() or not any((folder / "images").glob("*.jpg")):
            raise DatasetNotFoundError(f"no Kvasir-SEG images in {folder / 'images'}.\n"
                                       + instructions("kvasir-seg", root))
        self.root = folder
        self.ids: list[str] = chosen
        h, w = self.size
        self.images = np.zeros((len(chosen), h, w, 3), dtype=np.uint8)
        self.masks = np.zeros((len(chosen), h, w), dtype=bool)
        for i, image_id in enumerate(tqdm(chosen, desc=f"Kvasir-SEG {split if ids is None else 'ids'}",
                                          unit="img", leave=False, disable=not progress)):
            self.images[i], self.masks[i] = _load_kvasir_pair(image_id, folder, (h, w))

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """The epoch that begins (called by :func:`unet_lib.train.fit`): a seeded transform draws item
        ``index`` of epoch ``epoch`` from ``default_rng([transform.seed, epoch, index])``."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.images[index], self.masks[index]
        if self.transform is not None:
            image, mask = _apply_transform(self.transform, image.copy(), mask.copy(), self.epoch, index)
        img_t, mask_t = _to_tensors(image, mask)
        assert mask_t is not None
        return img_t, mask_t

    def __repr__(self) -> str:
        return f"KvasirSEG(split={self.split!r}, n={len(self)}, size={self.size})"


def _load_kvasir_pair(image_id: str, folder: Path, size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Checked (image, mask) of one id, resized to ``size`` (None = original)."""
    image_path = folder / "images" / f"{image_id}.jpg"
    mask_path = folder / "masks" / f"{image_id}.jpg"
    if not image_path.is_file():
        raise UnknownIdError(f"unknown Kvasir-SEG image id {image_id!r}: expected the file {image_path}")
    if not mask_path.is_file():
        raise FileNotFoundError(f"missing mask {mask_path} for image {image_path}; "
                                f"re-download with `python data_scripts/download.py kvasir-seg`")
    ish, msh = _image_size(image_path), _image_size(mask_path)
    if ish != msh:
        raise ValueError(f"image and mask sizes differ: {image_path} is {ish[0]}x{ish[1]} (HxW) but "
                         f"{mask_path} is {msh[0]}x{msh[1]}; check both files with data_scripts/verify.py")
    if size is None:
        return load_image(image_path), load_mask(mask_path)
    # JPEG draft decoding at >= 4x the target, then an antialiased resize: faster than a full
    # decode for big images and within one grey level of it on average.
    image = load_image(image_path, draft=(4 * size[0], 4 * size[1]))
    return resize_image(image, size), resize_mask(load_mask(mask_path), size)


# --------------------------------------------------------------------------------------
# polyp-free crops (UNet 3+ classification-guided module)
# --------------------------------------------------------------------------------------
def pick_free_crops(mask: np.ndarray, boxes: Sequence[Sequence[int]], crop: int, n: int = 1,
                    rng: np.random.Generator | int | None = None, image: np.ndarray | None = None,
                    max_dark_fraction: float = 1.0, dark_level: int = 20) -> list[tuple[int, int]]:
    """Top-left corners of ``crop x crop`` windows that touch no polyp.

    A window is allowed when it overlaps no bounding box (inclusive corners) and no
    foreground pixel of ``mask``; optionally (``image`` given) when at most
    ``max_dark_fraction`` of its pixels are darker than ``dark_level`` (the black frame
    around endoscopy images is not tissue). Positions are drawn uniformly without
    replacement among all allowed windows (an integral image makes this exact).

    Args:
        mask: ``bool (H, W)`` polyp mask.
        boxes: ``(xmin, ymin, xmax, ymax)`` boxes.
        crop: window side in pixels.
        n: windows wanted.
        rng: generator or seed (default seed 0: reproducible).
        image: optional ``uint8 (H, W, 3)`` image for the darkness test.
        max_dark_fraction: largest allowed fraction of dark pixels.
        dark_level: grey value below which a pixel counts as dark.

    Returns:
        Up to ``n`` distinct ``(y, x)`` corners; empty when no window fits.

    Used in chapter 06.
    """
    mask = np.asarray(mask, dtype=bool)
    hgt, wid = mask.shape
    if crop > hgt or crop > wid or n <= 0:
        return []
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)
    forbidden = mask.copy()
    for xmin, ymin, xmax, ymax in boxes:
        forbidden[max(ymin, 0):max(ymax + 1, 0), max(xmin, 0):max(xmax + 1, 0)] = True

    def window_sums(a: np.ndarray) -> np.ndarray:
        ii = np.zeros((hgt + 1, wid + 1), dtype=np.int64)
        ii[1:, 1:] = a.astype(np.int64).cumsum(0).cumsum(1)
        return ii[crop:, crop:] - ii[:-crop, crop:] - ii[crop:, :-crop] + ii[:-crop, :-crop]

    ok = window_sums(forbidden) == 0
    if image is not None and max_dark_fraction < 1.0:
        grey = np.asarray(image, dtype=np.float32)
        grey = grey.mean(-1) if grey.ndim == 3 else grey
        ok &= window_sums(grey < dark_level) <= max_dark_fraction * crop * crop
    ys, xs = np.nonzero(ok)
    if ys.size == 0:
        return []
    pick = rng.choice(ys.size, size=min(n, ys.size), replace=False)
    return [(int(ys[i]), int(xs[i])) for i in pick]


def polyp_free_crops(split: str = "train", size: int = 96, crops_per_image: int = 1,
                     root: str | os.PathLike | None = None, rng: np.random.Generator | int | None = None,
                     crop: int = 128, ids: Sequence[str] | None = None,
                     limit: int | None = None, max_dark_fraction: float = 0.25, return_info: bool = False,
                     progress: bool = True) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Polyp-free image crops from Kvasir-SEG, for the classification-guided module.

    Kvasir-SEG has a polyp in every image, so negatives ("no organ/polyp here") for the
    UNet 3+ classification head are cut from the same images: ``crop x crop`` windows
    of the ORIGINAL-resolution image that overlap no box of ``kavsir_bboxes.json`` and no
    mask pixel, and are mostly tissue (at most ``max_dark_fraction`` black frame), then
    resized to ``size``. 128 px is about a fifth of a typical 622x530 image, so most
    images have room for such a window. Only ids of ``split`` are used, so training
    negatives never contain validation pixels. Images without any allowed window are
    skipped (listed in ``info["skipped"]``).

    Args:
        split: ``"train"`` or ``"val"`` (the official split).
        size: side of the returned crops.
        crops_per_image: windows per image (distinct positions, may overlap).
        root: the data folder.
        rng: generator or seed (default seed 0: reproducible).
        crop: window side in original pixels (default 128).
        ids: restrict to these ids; each must belong to ``split`` (ValueError otherwise).
        limit: use only the first ``limit`` ids.
        max_dark_fraction: see :func:`pick_free_crops`.
        return_info: also return ``{"ids", "corners", "skipped", "crop"}``: the source id and
            ``(y, x)`` corner of every crop, and the ids without a free window.
        progress: show the loading bar.

    Returns:
        ``uint8 (N, size, size, 3)`` crops, or ``(crops, info)`` with ``return_info``.

    Used in chapter 06.
    """
    split_ids = kvasir_split(split)
    if ids is not None:
        ids = _id_list(ids, "ids")
        allowed = set(split_ids)
        outside = [i for i in ids if i not in allowed]
        if outside:
            raise ValueError(f"id {outside[0]!r} is not in the Kvasir-SEG {split!r} split; polyp-free crops for "
                             f"{split!r} must come from {split!r} images only")
        split_ids = list(ids)
    if limit is not None:
        split_ids = split_ids[:limit]
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)
    folder = dataset_dir("kvasir-seg", root)
    boxes = kvasir_bboxes(root)
    crops: list[np.ndarray] = []
    info: dict[str, Any] = {"ids": [], "corners": [], "skipped": [], "crop": crop}
    for image_id in tqdm(split_ids, desc=f"polyp-free crops ({split})", unit="img", leave=False, disable=not progress):
        image, mask = _load_kvasir_pair(image_id, folder, None)
        corners = pick_free_crops(mask, boxes.get(image_id, []), crop, crops_per_image, rng,
                                  image=image, max_dark_fraction=max_dark_fraction)
        if not corners:
            info["skipped"].append(image_id)
        for y, x in corners:
            crops.append(resize_image(image[y:y + crop, x:x + crop], size))
            info["ids"].append(image_id)
            info["corners"].append((y, x))
    out = np.stack(crops) if crops else np.zeros((0, size, size, 3), dtype=np.uint8)
    return (out, info) if return_info else out
