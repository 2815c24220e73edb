"""DSB2018 nuclei subset: :func:`dsb_ids`, :func:`load_dsb_instances` and :class:`DSBNuclei`."""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from .io import _to_tensors, load_image, load_mask
from .registry import DatasetNotFoundError, UnknownIdError, dataset_dir, instructions


# --------------------------------------------------------------------------------------
# DSB2018 nuclei
# --------------------------------------------------------------------------------------
def dsb_ids(root: str | os.PathLike | None = None) -> list[str]:
    """Sorted ImageIds of the DSB2018 subset (folders of ``stage1_train/`` with an image).

    Args:
        root: the data folder.

    Returns:
        The ids, sorted.

    Used in chapter 04.
    """
    base = dataset_dir("dsb2018-nuclei-subset", root) / "stage1_train"
    ids = sorted(p.name for p in base.iterdir() if (p / "images" / f"{p.name}.png").is_file()) if base.is_dir() else []
    if not ids:
        raise DatasetNotFoundError(f"no DSB2018 images in {base}.\n" + instructions("dsb2018-nuclei-subset", root))
    return ids


def load_dsb_instances(image_id: str, root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One DSB2018 image and its instance label image built from the per-nucleus masks.

    Mask files are taken in sorted file-name order; the k-th becomes label k.

    Args:
        image_id: the ImageId (folder name under ``stage1_train/``).
        root: the data folder.

    Returns:
        ``(image, instances)``: image ``uint8 (H, W, 3)`` (alpha dropped); instances
        ``int32 (H, W)`` with 0 = background and 1..N = nuclei (N = number of mask files).

    Raises:
        UnknownIdError: no such image (names the expected file).
        ValueError: two masks overlap (names both files) or a mask's size differs.

    Used in chapter 04 (border weight map).
    """
    base = dataset_dir("dsb2018-nuclei-subset", root) / "stage1_train" / image_id
    image_path = base / "images" / f"{image_id}.png"
    if not image_path.is_file():
        raise UnknownIdError(f"unknown DSB2018 image id {image_id!r}: expected the file {image_path}")
    image = load_image(image_path)
    mask_files = sorted((base / "masks").glob("*.png"))
    instances = np.zeros(image.shape[:2], dtype=np.int32)
    for k, f in enumerate(mask_files, start=1):
        m = load_mask(f)
        if m.shape != instances.shape:
            raise ValueError(f"mask {f} is {m.shape} but its image {image_path} is {instances.shape[:2]}")
        clash = instances[m]
        if clash.any():
            other = mask_files[int(clash[clash > 0][0]) - 1]
            raise ValueError(f"masks overlap: {other} and {f} share pixels (instance masks must be disjoint)")
        instances[m] = k
    return image, instances


class DSBNuclei(torch.utils.data.Dataset):
    """DSB2018 nuclei images with instance labels, at native size, kept in memory.

    Args:
        ids: ImageIds; default all (:func:`dsb_ids`).
        root: the data folder.
        limit: keep only the first ``limit`` ids.
        progress: show the loading bar.

    Attributes:
        ids; images: list of ``uint8 (H, W, 3)``; instances: list of ``int32 (H, W)``.

    Returns (``__getitem__``):
        ``(image float32 (3, H, W) in [0, 1], instances int64 (H, W))`` with 0 = background,
        1..N = nuclei. Sizes vary between images (crop or resize with :func:`resize_mask`).

    Used in chapter 04.
    """

    def __init__(self, ids: Sequence[str] | None = None, root: str | os.PathLike | None = None,
                 limit: int | None = None, progress: bool = True) -> None:
        chosen = list(ids) if ids is not None else dsb_ids(root)
        if limit is not None:
            chosen = chosen[:limit]
        self.ids: list[str] = chosen
        self.images: list[np.ndarray] = []
        self.instances: list[np.ndarray] = []
        for image_id in tqdm(chosen, desc="DSB2018 nuclei", unit="img", leave=False, disable=not progress):
            image, inst = load_dsb_instances(image_id, root)
            self.images.append(image)
            self.instances.append(inst)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        img_t, _ = _to_tensors(self.images[index], None)
        return img_t, torch.from_numpy(self.instances[index].astype(np.int64))

    def __repr__(self) -> str:
        return f"DSBNuclei(n={len(self)})"
