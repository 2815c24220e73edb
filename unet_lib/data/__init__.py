"""Datasets of the book: registry, download, verification, safe extraction, image I/O and Datasets.

Three public datasets are used (DESIGN section 5):

========================  =====================  ==========================================
key                       chapters               what
========================  =====================  ==========================================
``"kvasir-seg"``          01, 02, 03, 05, 06, 07 1000 colonoscopy images + polyp masks (JPEG),
                                                 the authors' 880/120 train/val split
``"isbi2012-em"``         01, 03, 04             30 + 30 EM slices (512x512) + 30 binary labels
``"dsb2018-nuclei-subset"`` 04                   40 DSB2018 images with per-nucleus masks
========================  =====================  ==========================================

Where the data lives: ``$UNET_BOOK_DATA/<folder>`` (see :func:`unet_lib.config.data_dir`).
Every file of every dataset is listed with its SHA-256 in a manifest shipped with the
package (``unet_lib/manifests/<name>.sha256``), so :func:`verify` can prove that a folder
holds the exact files the book's numbers were produced with.

* :func:`dataset_dir` only *finds* a dataset; when it is missing the error says where to
  get it and where to put it. Dataset classes never download.
* :func:`download` fetches from the datasets' official homes (resumable, verified,
  idempotent, safe extraction); :func:`ensure` = use the folder if present, else download.
* :func:`load_image`, :func:`load_mask`, :func:`resize_image`, :func:`resize_mask` handle the
  format pitfalls: Kvasir-SEG masks are JPEG (threshold at 127, resize with nearest
  neighbour only), DSB2018 images are RGBA.

Nothing here runs on import: no I/O, no network, no printing (progress bars only).

The package is split by concern; every public name is re-exported here, so
``from unet_lib import data; data.KvasirSEG(...)`` works as before:

* :mod:`unet_lib.data.registry`: :class:`DatasetInfo`, :data:`DATASETS`, the errors, manifests, :func:`dataset_dir`.
* :mod:`unet_lib.data.fetch`: checksums, :func:`verify`, :func:`download`, :func:`ensure`, safe extraction.
* :mod:`unet_lib.data.io`: image loading and resizing.
* :mod:`unet_lib.data.kvasir`, :mod:`unet_lib.data.isbi`, :mod:`unet_lib.data.dsb`: one module per dataset.
* :mod:`unet_lib.data.crops`: :class:`RandomCrops`, the one seeded dataset of training crops (chapters 03, 04, 06).

Adding a dataset = one :class:`DatasetInfo` entry in :data:`DATASETS` (registry) plus one
module with its loaders; download and verification are driven by the entry alone.
"""
from __future__ import annotations

from .crops import RandomCrops
from .dsb import DSBNuclei, dsb_ids, load_dsb_instances
from .fetch import (
    download,
    download_file,
    ensure,
    extra_files,
    open_url,
    safe_extract,
    sha256_file,
    verify,
)
from .io import load_image, load_mask, resize_image, resize_mask
from .isbi import ISBIEM, isbi_arrays
from .kvasir import (
    KvasirSEG,
    kvasir_bboxes,
    kvasir_paths,
    kvasir_split,
    pick_free_crops,
    polyp_free_crops,
)
from .registry import (
    DATASETS,
    ChecksumError,
    DatasetInfo,
    DatasetNotFoundError,
    ExtraFilesError,
    UnknownIdError,
    dataset_dir,
    get_info,
    instructions,
    manifest_path,
    read_manifest,
)
from .registry import MANIFEST_DIR as MANIFEST_DIR  # public, not in __all__

__all__ = [
    "DATASETS",
    "ISBIEM",
    "ChecksumError",
    "DSBNuclei",
    "DatasetInfo",
    "DatasetNotFoundError",
    "ExtraFilesError",
    "KvasirSEG",
    "RandomCrops",
    "UnknownIdError",
    "dataset_dir",
    "download",
    "download_file",
    "dsb_ids",
    "ensure",
    "extra_files",
    "get_info",
    "instructions",
    "isbi_arrays",
    "kvasir_bboxes",
    "kvasir_paths",
    "kvasir_split",
    "load_dsb_instances",
    "load_image",
    "load_mask",
    "manifest_path",
    "open_url",
    "pick_free_crops",
    "polyp_free_crops",
    "read_manifest",
    "resize_image",
    "resize_mask",
    "safe_extract",
    "sha256_file",
    "verify",
]
