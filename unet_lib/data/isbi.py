"""ISBI 2012 EM: :func:`isbi_arrays` and :class:`ISBIEM`."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .io import _to_tensors, load_image, load_mask
from .registry import DatasetNotFoundError, UnknownIdError, dataset_dir, instructions


# --------------------------------------------------------------------------------------
# ISBI 2012 EM
# --------------------------------------------------------------------------------------
def _isbi_files(split: str, indices: Sequence[int] | None,
                folder: Path) -> tuple[list[int], list[Path], list[Path] | None]:
    if split not in ("train", "test"):
        raise ValueError(f"unknown ISBI 2012 split {split!r}; valid splits: ['test', 'train']")
    img_dir = folder / "train" / "image" if split == "train" else folder / "test"
    if indices is None:
        found = sorted(int(p.stem) for p in img_dir.glob("*.png") if p.stem.isdigit())
        if not found:
            raise DatasetNotFoundError(f"no ISBI 2012 slices in {img_dir}.\n"
                                       + instructions("isbi2012-em", folder.parent))
        indices = found
    idx = [int(i) for i in indices]
    images = [img_dir / f"{i}.png" for i in idx]
    for i, p in zip(idx, images):
        if not p.is_file():
            raise UnknownIdError(f"unknown ISBI 2012 {split} slice {i}: expected the file {p}")
    labels = None
    if split == "train":
        labels = [folder / "train" / "label" / f"{i}.png" for i in idx]
        for p, q in zip(images, labels):
            if not q.is_file():
                raise FileNotFoundError(f"missing label {q} for image {p}; "
                                        f"re-download with `python data_scripts/download.py isbi2012-em`")
    return idx, images, labels


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
    imgs = np.stack([load_image(p, mode="L") for p in images]) if images else np.zeros((0, 512, 512), np.uint8)
    if labels is None:
        return imgs, None
    labs = np.stack([load_mask(p) for p in labels]) if labels else np.zeros((0, 512, 512), bool)
    for p, q, a, b in zip(images, labels, imgs, labs):
        if a.shape != b.shape:
            raise ValueError(f"image and label sizes differ: {p} {a.shape} vs {q} {b.shape}")
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

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        label = self.labels[index] if self.labels is not None else None
        if self.transform is not None:
            image, out = self.transform(image.copy(),
                                        label.copy() if label is not None else np.zeros(image.shape, bool))
            label = out if label is not None else None
        img_t, lab_t = _to_tensors(image, label)
        return img_t if lab_t is None else (img_t, lab_t)

    def __repr__(self) -> str:
        return f"ISBIEM(split={self.split!r}, n={len(self)})"
