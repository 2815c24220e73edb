"""ISBI 2012 EM: :func:`isbi_arrays` and :class:`ISBIEM`."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .io import _apply_transform, _id_list, _side, _to_tensors, load_image, load_mask
from .registry import DatasetNotFoundError, UnknownIdError, dataset_dir, instructions, read_manifest

_DOWNLOAD = "python data_scripts/download.py isbi2012-em"


# --------------------------------------------------------------------------------------
# ISBI 2012 EM
# --------------------------------------------------------------------------------------
def _official_slices(split: str) -> list[int]:
    """Slice numbers of a split in the shipped manifest (0..29): the dataset, whatever else is in the folder."""
    prefix = "train/image/" if split == "train" else "test/"
    names = [rel[len(prefix):] for rel in read_manifest("isbi2012-em") if rel.startswith(prefix)]
    return sorted(int(n[:-4]) for n in names if n.endswith(".png") and n[:-4].isdigit())


def _slice_number(i) -> int:
    """A slice number: a whole number or a string of digits (``3``, ``"3"``), never ``3.5`` or ``True``."""
    if isinstance(i, str) and i.isdigit():
        return int(i)
    try:
        return _side(i)
    except (TypeError, ValueError, OverflowError):
        raise UnknownIdError(f"ISBI 2012 slice numbers are whole numbers (k of k.png), got {i!r}") from None


def _isbi_files(split: str, indices: Sequence[int] | None,
                folder: Path) -> tuple[list[int], list[Path], list[Path] | None]:
    if split not in ("train", "test"):
        raise ValueError(f"unknown ISBI 2012 split {split!r}; valid splits: ['test', 'train']")
    img_dir = folder / "train" / "image" if split == "train" else folder / "test"
    official = _official_slices(split)
    if indices is None:
        if not any(img_dir.glob("*.png")):
            raise DatasetNotFoundError(f"no ISBI 2012 slices in {img_dir}.\n"
                                       + instructions("isbi2012-em", folder.parent))
        missing = [img_dir / f"{i}.png" for i in official if not (img_dir / f"{i}.png").is_file()]
        if missing:
            raise DatasetNotFoundError(f"ISBI 2012 {split} slice {missing[0]} is missing ({len(missing)} of "
                                       f"{len(official)} slices missing): re-download with `{_DOWNLOAD}` (it "
                                       "fetches only missing files)")
        indices = official
    idx = [_slice_number(i) for i in _id_list(indices, "indices")]
    images = [img_dir / f"{i}.png" for i in idx]
    for i, p in zip(idx, images):
        if not p.is_file():
            known = f"slices {official[0]}..{official[-1]}" if official else "no slices"
            raise UnknownIdError(f"unknown ISBI 2012 {split} slice {i}: expected the file {p} (the dataset has "
                                 f"{known}; a missing official slice: re-download with `{_DOWNLOAD}`)")
    labels = None
    if split == "train":
        labels = [folder / "train" / "label" / f"{i}.png" for i in idx]
        for p, q in zip(images, labels):
            if not q.is_file():
                raise FileNotFoundError(f"missing label {q} for image {p}; re-download with `{_DOWNLOAD}`")
    return idx, images, labels


def _stack(arrays: list[np.ndarray], files: list[Path], what: str) -> np.ndarray:
    """Stack equally sized slices, or name the first file whose size differs."""
    for a, f in zip(arrays, files):
        if a.shape != arrays[0].shape:
            raise ValueError(f"ISBI 2012 {what} differ in size: {files[0]} is {arrays[0].shape[0]}x{arrays[0].shape[1]}"
                             f" but {f} is {a.shape[0]}x{a.shape[1]} (HxW); every slice is 512x512: check the files "
                             f"with `python data_scripts/verify.py isbi2012-em` and re-download the bad ones")
    return np.stack(arrays)


def isbi_arrays(split: str = "train", indices: Sequence[int] | None = None,
                root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """ISBI 2012 EM slices (and labels) as arrays.

    Args:
        split: ``"train"`` (30 labelled slices) or ``"test"`` (30 unlabelled slices).
        indices: slice numbers (``k`` of ``k.png``); default all, in numeric order.
        root: the data folder.

    Returns:
        ``(images, labels)``: images ``uint8 (N, 512, 512)``; labels ``bool (N, 512, 512)``
        with ``True`` = cell interior (white), ``False`` = membrane; ``None`` for ``"test"``.

    Raises:
        UnknownIdError: a slice that does not exist (names the expected file).

    Used in chapters 01, 03, 04.
    """
    folder = dataset_dir("isbi2012-em", root)
    _, images, labels = _isbi_files(split, indices, folder)
    loaded = [load_image(p, mode="L") for p in images]
    imgs = _stack(loaded, images, "slices") if images else np.zeros((0, 512, 512), np.uint8)
    if labels is None:
        return imgs, None
    masks = [load_mask(p) for p in labels]
    for p, q, a, b in zip(images, labels, loaded, masks):
        if a.shape != b.shape:
            raise ValueError(f"image and label sizes differ: {p} {a.shape} vs {q} {b.shape}")
    labs = _stack(masks, labels, "labels") if labels else np.zeros((0, 512, 512), bool)
    return imgs, labs


class ISBIEM(torch.utils.data.Dataset):
    """ISBI 2012 EM slices at full 512x512 resolution, kept in memory.

    Args:
        split: ``"train"`` (images + labels) or ``"test"`` (images only).
        indices: slice numbers; default all.
        root: the data folder.
        transform: ``(image uint8 (512, 512), label bool (512, 512)) -> (image, label)``;
            on ``"test"`` it receives an all-``False`` label that is discarded.

    Attributes:
        indices: slice numbers; images: ``uint8 (N, 512, 512)``; labels: ``bool (N, 512, 512)`` or None.

    Returns (``__getitem__``):
        train: ``(image, label)``: image ``float32 (1, 512, 512)`` in [0, 1], label
        ``float32 (1, 512, 512)`` with 1 = cell interior (white), 0 = membrane.
        test: the image tensor alone (the challenge's test labels were never released).

    Used in chapters 03, 04.
    """

    def __init__(self, split: str = "train", indices: Sequence[int] | None = None,
                 root: str | os.PathLike | None = None,
                 transform: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        folder = dataset_dir("isbi2012-em", root)
        self.split = split
        self.indices, _, _ = _isbi_files(split, indices, folder)
        self.images, self.labels = isbi_arrays(split, self.indices, root)
        self.transform = transform
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        """The epoch that begins (called by :func:`unet_lib.train.fit`): a seeded transform draws item
        ``index`` of epoch ``epoch`` from ``default_rng([transform.seed, epoch, index])``."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        label = self.labels[index] if self.labels is not None else None
        if self.transform is not None:
            image, out = _apply_transform(self.transform, image.copy(),
                                          label.copy() if label is not None else np.zeros(image.shape, bool),
                                          self.epoch, index)
            label = out if label is not None else None
        img_t, lab_t = _to_tensors(image, label)
        return img_t if lab_t is None else (img_t, lab_t)

    def __repr__(self) -> str:
        return f"ISBIEM(split={self.split!r}, n={len(self)})"
