"""DSB2018 nuclei subset: :func:`dsb_ids`, :func:`load_dsb_instances` and :class:`DSBNuclei`."""
from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from .io import _check_limit, _id_list, _to_tensors, load_image, load_mask
from .registry import MANIFEST_DIR, DatasetNotFoundError, UnknownIdError, dataset_dir, instructions, read_manifest

_NAME = "dsb2018-nuclei-subset"
_FIX = f"re-download with `python data_scripts/download.py {_NAME}` (check with data_scripts/verify.py {_NAME})"


@functools.lru_cache(maxsize=1)
def _subset() -> tuple[str, ...]:
    """The 40 ImageIds of the shipped ``subset.tsv``, sorted."""
    lines = (MANIFEST_DIR / f"{_NAME}-subset.tsv").read_text(encoding="utf-8").splitlines()
    return tuple(sorted(line.split("\t")[0] for line in lines[1:] if line.strip()))


@functools.lru_cache(maxsize=1)
def _subset_masks() -> dict[str, frozenset[str]]:
    """``{image id: names of its mask files}`` from the shipped manifest."""
    masks: dict[str, set[str]] = {}
    for rel in read_manifest(_NAME):
        parts = rel.split("/")
        if len(parts) == 4 and parts[0] == "stage1_train" and parts[2] == "masks":
            masks.setdefault(parts[1], set()).add(parts[3])
    return {k: frozenset(v) for k, v in masks.items()}


# --------------------------------------------------------------------------------------
# DSB2018 nuclei
# --------------------------------------------------------------------------------------
def dsb_ids(root: str | os.PathLike | None = None) -> list[str]:
    """Sorted ImageIds of the DSB2018 subset: the 40 of the shipped ``subset.tsv``, each checked to have its image.

    Other folders under ``stage1_train/`` are not part of the subset and are not listed
    (``data.verify`` names them).

    Args:
        root: the data folder.

    Returns:
        The ids, sorted.

    Raises:
        DatasetNotFoundError: no ``stage1_train/`` folder, or an id of the subset without its image
            (names the file).

    Used in chapter 04.
    """
    base = dataset_dir(_NAME, root) / "stage1_train"
    if not base.is_dir() or not any(base.iterdir()):
        raise DatasetNotFoundError(f"no DSB2018 images in {base}.\n" + instructions(_NAME, root))
    ids = list(_subset())
    missing = [base / i / "images" / f"{i}.png" for i in ids if not (base / i / "images" / f"{i}.png").is_file()]
    if missing:
        raise DatasetNotFoundError(f"the DSB2018 subset is incomplete: {len(missing)} of {len(ids)} images are "
                                   f"missing, first {missing[0]}: {_FIX}")
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
        DatasetNotFoundError: an image of the subset whose mask files are not exactly those of the
            manifest (names the first missing or extra file), or an image without any mask file.
        ValueError: two masks overlap (names both files), a mask's size differs, or a mask is empty.

    Used in chapter 04 (border weight map).
    """
    if not isinstance(image_id, str):
        raise TypeError(f"image_id must be a string (a folder name under stage1_train/), got {image_id!r}")
    base = dataset_dir(_NAME, root) / "stage1_train" / image_id
    image_path = base / "images" / f"{image_id}.png"
    if not image_path.is_file():
        raise UnknownIdError(f"unknown DSB2018 image id {image_id!r}: expected the file {image_path}")
    image = load_image(image_path)
    mask_files = sorted((base / "masks").glob("*.png"))
    expected = _subset_masks().get(image_id)
    if expected is not None:
        found = {f.name for f in mask_files}
        if found != expected:
            gone, extra = sorted(expected - found), sorted(found - expected)
            detail = (f"{len(gone)} mask file(s) missing, first {base / 'masks' / gone[0]}" if gone else
                      f"{len(extra)} mask file(s) not in the dataset, first {base / 'masks' / extra[0]} (it would "
                      "become an extra nucleus): move it out")
            raise DatasetNotFoundError(f"DSB2018 image {image_id}: {detail}; {_FIX}")
    if not mask_files:
        raise DatasetNotFoundError(f"DSB2018 image {image_id} has no mask files in {base / 'masks'}: every image "
                                   f"needs one binary PNG per nucleus; {_FIX}")
    instances = np.zeros(image.shape[:2], dtype=np.int32)
    for k, f in enumerate(mask_files, start=1):
        m = load_mask(f)
        if m.shape != instances.shape:
            raise ValueError(f"mask {f} is {m.shape} but its image {image_path} is {instances.shape[:2]}")
        if not m.any():
            raise ValueError(f"mask {f} is empty (no pixel above the threshold): a nucleus mask must draw one "
                             f"nucleus; delete the file, or {_FIX}")
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
        chosen = _id_list(ids, "ids") if ids is not None else dsb_ids(root)
        _check_limit(limit)
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
