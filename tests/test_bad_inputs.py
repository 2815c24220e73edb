"""The bad-input suite (issue 14): one case per bad input a careful user can give, grouped by category.

Every case either asserts the right result, or the named error: its type and the words that matter
(the file, the value or the shape, and the fix). Nothing may pass silently. The categories are the
test functions below (``test_data_folders``, ``test_downloads``, ...); ``tests/conftest.py`` prints how
many cases of each ran at the end of the session.

No case touches the network or the real datasets' folders: folders are built (or linked, read only)
under ``tmp_path``; the real DSB2018 subset is linked in where a case needs its 40 images and is
skipped without ``UNET_BOOK_DATA``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import sys
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unet_lib import augment, config, losses, metrics, results, train
from unet_lib import data as D
from unet_lib.checkpoints import CheckpointError
from unet_lib.models import UNet, UNet3Plus, UNetPlusPlus

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = os.environ.get("UNET_BOOK_DATA")
REAL_DSB = Path(DATA) / "dsb2018-nuclei-subset" if DATA else None
HAVE_DSB = REAL_DSB is not None and (REAL_DSB / "stage1_train").is_dir()


# --------------------------------------------------------------------------------------------------
# the harness: a case is (callable, expectation); the callable gets a Ctx
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Ctx:
    tmp: Path
    mp: pytest.MonkeyPatch

    # ---- fake datasets (small, built in tmp) ----------------------------------------------------
    def isbi(self) -> Path:
        """A fake ISBI 2012 folder with the official names (0..29.png), 16x16 slices; returns the root."""
        root = self.tmp / "data"
        folder = root / "isbi2012-em"
        rng = np.random.default_rng(0)
        for sub in ("train/image", "train/label", "test"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for i in range(30):
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(folder / f"train/image/{i}.png")
            Image.fromarray(((rng.random((16, 16)) > 0.3) * 255).astype(np.uint8)).save(folder / f"train/label/{i}.png")
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(folder / f"test/{i}.png")
        return root

    def kvasir(self, boxes: str | None = '{"a": {"bbox": [{"xmin": 1, "ymin": 2, "xmax": 10, "ymax": 12}]}}') -> Path:
        """A fake Kvasir-SEG folder with one id ``a`` (40x50 JPEG image and mask)."""
        root = self.tmp / "data"
        folder = root / "kvasir-seg"
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(exist_ok=True)
        rng = np.random.default_rng(1)
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / "images/a.jpg")
        mask = np.zeros((40, 50), np.uint8)
        mask[10:30, 10:35] = 255
        Image.fromarray(mask).save(folder / "masks/a.jpg")
        if boxes is not None:
            (folder / "kavsir_bboxes.json").write_text(boxes)
        return root

    def dsb(self) -> Path:
        """The real DSB2018 subset, its 40 image folders linked (read only) into a fresh root."""
        if not HAVE_DSB:
            pytest.skip("the real DSB2018 subset is needed: set UNET_BOOK_DATA")
        root = self.tmp / "data"
        base = root / "dsb2018-nuclei-subset" / "stage1_train"
        base.mkdir(parents=True)
        for image_id in D.dsb.dsb_ids(REAL_DSB.parent):
            (base / image_id).symlink_to(REAL_DSB / "stage1_train" / image_id, target_is_directory=True)
        for name in ("subset.tsv", "SOURCE.md"):
            if (REAL_DSB / name).is_file():
                (root / "dsb2018-nuclei-subset" / name).symlink_to(REAL_DSB / name)
        return root

    def own_copy(self, root: Path, image_id: str) -> Path:
        """Replace the link of one DSB image by a private copy (so it can be changed safely)."""
        import shutil

        link = root / "dsb2018-nuclei-subset" / "stage1_train" / image_id
        real = link.resolve()
        link.unlink()
        shutil.copytree(real, link)
        return link


def raises(exc: type[BaseException], *words: str):
    return ("raises", exc, words)


def warns(*words: str):
    return ("warns", UserWarning, words)


OK = ("ok", None, ())


def _run(fn: Callable[[Ctx], object], expect, tmp_path: Path, monkeypatch) -> None:
    kind, exc, words = expect
    ctx = Ctx(tmp_path, monkeypatch)
    if kind == "ok":
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)        # a correct result comes without a warning
            out = fn(ctx)
        assert out is None or out is True or (isinstance(out, np.bool_) and bool(out)), f"its own check failed: {out!r}"
        return
    if kind == "warns":
        with pytest.warns(exc) as record:
            fn(ctx)
        msg = " ".join(str(r.message) for r in record)
    else:
        with pytest.raises(exc) as info:
            fn(ctx)
        msg = str(info.value)
    missing = [w for w in words if w not in msg]
    assert not missing, f"the message lacks {missing}: {msg}"


def cases(*items):
    return [pytest.param(fn, expect, id=name) for name, fn, expect in items]


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def _write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()                                           # never write through a link to real data
    path.write_bytes(content)
    return path


# --------------------------------------------------------------------------------------------------
# data folders and files
# --------------------------------------------------------------------------------------------------
ISBI = "isbi2012-em"


def _isbi_then(change: Callable[[Path], object], call: Callable[[Path], object]):
    def case(c: Ctx):
        root = c.isbi()
        change(root / ISBI)
        return call(root)
    return case


def _stray_test_slice(f: Path):
    _png(f / "test/30.png", np.zeros((16, 16), np.uint8))


def _orphan_label(f: Path):
    _png(f / "train/label/30.png", np.zeros((16, 16), np.uint8))


def _mixed(f: Path):
    _png(f / "train/image/7.png", np.zeros((20, 16), np.uint8))


def _label_size(f: Path):
    _png(f / "train/label/3.png", np.zeros((16, 12), np.uint8))


def _kv(call: Callable[[Path], object], boxes: str | None = None, change: Callable[[Path], object] | None = None):
    def case(c: Ctx):
        root = c.kvasir() if boxes is None else c.kvasir(boxes)
        if change is not None:
            change(root / "kvasir-seg")
        return call(root)
    return case


def _kv_load(size=16, **kw):
    return lambda root: D.KvasirSEG(ids=kw.pop("ids", ["a"]), size=size, root=root, progress=False, **kw)


def _kv_shape(size, shape):
    return lambda root: D.KvasirSEG(ids=["a"], size=size, root=root, progress=False).images.shape == shape


def _dsb(change: Callable[[Ctx, Path], object], call: Callable[[Path], object]):
    def case(c: Ctx):
        root = c.dsb()
        change(c, root)
        return call(root)
    return case


_DSB_ID = "00ae65c1c6631ae6f2be1a449902976e6eb8483bf6b0740d00530220832c6d3e"


def _dsb_stray(c: Ctx, root: Path):
    _png(root / "dsb2018-nuclei-subset/stage1_train/stray/images/stray.png", np.zeros((8, 8, 3), np.uint8))


def _dsb_extra_mask(c: Ctx, root: Path):
    folder = c.own_copy(root, _DSB_ID)
    _png(folder / "masks/extra.png", np.zeros((8, 8), np.uint8))


def _dsb_drop_mask(c: Ctx, root: Path):
    folder = c.own_copy(root, _DSB_ID)
    sorted((folder / "masks").glob("*.png"))[0].unlink()


def _dsb_blank_mask(c: Ctx, root: Path):
    folder = c.own_copy(root, _DSB_ID)
    first = sorted((folder / "masks").glob("*.png"))[0]
    shape = np.asarray(Image.open(first)).shape[:2]
    _png(first, np.zeros(shape, np.uint8))


def _dsb_overlap(c: Ctx, root: Path):
    folder = c.own_copy(root, _DSB_ID)
    first, second = sorted((folder / "masks").glob("*.png"))[:2]
    _write(second, first.read_bytes())


def _dsb_drop_image(c: Ctx, root: Path):
    (root / "dsb2018-nuclei-subset/stage1_train" / _DSB_ID).unlink()


DATA_CASES = cases(
    # ISBI 2012: the loaders read the official slice list, verify/ensure name what else is there
    ("isbi-stray-test-30.png-not-loaded", _isbi_then(_stray_test_slice, lambda r: len(D.isbi_arrays("test", root=r)[0])
                                                     == 30), OK),
    ("isbi-stray-test-30.png-verify", _isbi_then(_stray_test_slice, lambda r: D.verify(ISBI, r, full=False)),
     raises(D.ExtraFilesError, "test/30.png", "move them out")),
    ("isbi-stray-test-30.png-ensure", _isbi_then(_stray_test_slice, lambda r: D.ensure(ISBI, r, progress=False)),
     raises(D.ExtraFilesError, "test/30.png")),
    ("isbi-orphaned-label-not-loaded", _isbi_then(_orphan_label, lambda r: len(D.isbi_arrays("train", root=r)[1])
                                                  == 30), OK),
    ("isbi-orphaned-label-verify", _isbi_then(_orphan_label, lambda r: D.verify(ISBI, r, full=False)),
     raises(D.ExtraFilesError, "train/label/30.png")),
    ("isbi-deleted-train-image", _isbi_then(lambda f: (f / "train/image/5.png").unlink(),
                                            lambda r: D.isbi_arrays("train", root=r)),
     raises(D.DatasetNotFoundError, "train/image/5.png", "1 of 30", "download.py isbi2012-em")),
    ("isbi-deleted-train-image-dataset", _isbi_then(lambda f: (f / "train/image/5.png").unlink(),
                                                    lambda r: D.ISBIEM("train", root=r)),
     raises(D.DatasetNotFoundError, "train/image/5.png")),
    ("isbi-deleted-label-leaves-image", _isbi_then(lambda f: (f / "train/label/3.png").unlink(),
                                                   lambda r: D.isbi_arrays("train", root=r)),
     raises(FileNotFoundError, "train/label/3.png", "download.py isbi2012-em")),
    ("isbi-deleted-test-slice", _isbi_then(lambda f: (f / "test/0.png").unlink(),
                                           lambda r: D.isbi_arrays("test", root=r)),
     raises(D.DatasetNotFoundError, "test/0.png")),
    ("isbi-mixed-sizes-before-np.stack", _isbi_then(_mixed, lambda r: D.isbi_arrays("train", root=r)),
     raises(ValueError, "train/image/7.png", "20x16", "16x16", "verify.py isbi2012-em")),
    ("isbi-mixed-sizes-two-indices", _isbi_then(_mixed, lambda r: D.isbi_arrays("train", [0, 7], root=r)),
     raises(ValueError, "7.png", "20x16")),
    ("isbi-mixed-sizes-dataset", _isbi_then(_mixed, lambda r: D.ISBIEM("train", root=r)),
     raises(ValueError, "7.png")),
    ("isbi-image-and-label-sizes-differ", _isbi_then(_label_size, lambda r: D.isbi_arrays("train", [3], root=r)),
     raises(ValueError, "3.png", "(16, 12)")),
    ("isbi-truncated-png", _isbi_then(lambda f: _write(f / "train/image/4.png", (f / "train/image/4.png").read_bytes()
                                                       [:30]), lambda r: D.isbi_arrays("train", [4], root=r)),
     raises(ValueError, "train/image/4.png", "corrupt", "download.py isbi2012-em")),
    ("isbi-empty-png", _isbi_then(lambda f: _write(f / "train/label/4.png", b""),
                                  lambda r: D.isbi_arrays("train", [4], root=r)),
     raises(ValueError, "train/label/4.png", "corrupt")),
    ("isbi-text-file-named-png", _isbi_then(lambda f: _write(f / "test/2.png", b"not an image"),
                                            lambda r: D.isbi_arrays("test", root=r)),
     raises(ValueError, "test/2.png", "not an image")),
    ("isbi-slice-31", _isbi_then(lambda f: None, lambda r: D.isbi_arrays("train", [31], root=r)),
     raises(D.UnknownIdError, "31.png", "0..29")),
    ("isbi-slice-minus-1", _isbi_then(lambda f: None, lambda r: D.isbi_arrays("train", [-1], root=r)),
     raises(D.UnknownIdError, "-1")),
    ("isbi-slice-3.5", _isbi_then(lambda f: None, lambda r: D.isbi_arrays("train", [3.5], root=r)),
     raises(D.UnknownIdError, "3.5", "whole numbers")),
    ("isbi-slice-True", _isbi_then(lambda f: None, lambda r: D.isbi_arrays("train", [True], root=r)),
     raises(D.UnknownIdError, "True")),
    ("isbi-indices-lone-string", _isbi_then(lambda f: None, lambda r: D.isbi_arrays("train", "12", root=r)),
     raises(TypeError, "'12'", "wrap")),
    ("isbi-index-digit-string", _isbi_then(lambda f: None, lambda r: len(D.isbi_arrays("train", ["3"], root=r)[0])
                                           == 1), OK),
    ("isbi-split-val", _isbi_then(lambda f: None, lambda r: D.isbi_arrays("val", root=r)),
     raises(ValueError, "'val'", "'test', 'train'")),
    ("isbi-folder-missing", lambda c: D.isbi_arrays("train", root=c.tmp / "nothing"),
     raises(D.DatasetNotFoundError, "isbi2012-em", "brainiac2.mit.edu", "UNET_BOOK_DATA")),
    ("isbi-folder-empty", lambda c: ((c.tmp / "d" / ISBI).mkdir(parents=True),
                                     D.isbi_arrays("train", root=c.tmp / "d")),
     raises(D.DatasetNotFoundError, "is empty", "download.py isbi2012-em")),
    ("isbi-no-test-slices", _isbi_then(lambda f: [p.unlink() for p in (f / "test").glob("*.png")],
                                       lambda r: D.isbi_arrays("test", root=r)),
     raises(D.DatasetNotFoundError, "no ISBI 2012 slices", "test")),
    # Kvasir-SEG
    ("kvasir-size-string-96", _kv(_kv_load('96')), raises(ValueError, "'96'", "without quotes")),
    ("kvasir-size-96.5", _kv(_kv_load(96.5)), raises(ValueError, "96.5")),
    ("kvasir-size-tuple-of-one", _kv(_kv_load((96,))), raises(ValueError, "(96,)")),
    ("kvasir-size-zero", _kv(_kv_load(0)), raises(ValueError, "positive")),
    ("kvasir-size-negative", _kv(_kv_load((-4, 16))), raises(ValueError, "positive")),
    ("kvasir-size-True", _kv(_kv_load(True)), raises(ValueError, "True")),
    ("kvasir-size-pair-with-string", _kv(_kv_load((16, "x"))), raises(ValueError, "'x'")),
    ("kvasir-size-numpy-int", _kv(_kv_shape(np.int64(16), (1, 16, 16, 3))), OK),
    ("kvasir-size-pair", _kv(_kv_shape((16, 24), (1, 16, 24, 3))), OK),
    ("kvasir-ids-lone-string", _kv(lambda r: D.KvasirSEG(ids="a", size=16, root=r, progress=False)),
     raises(TypeError, "wrap")),
    ("kvasir-limit-negative", _kv(_kv_load(limit=-1)), raises(ValueError, "limit", "-1")),
    ("kvasir-limit-float", _kv(_kv_load(limit=1.5)), raises(ValueError, "limit", "1.5")),
    ("kvasir-split-test", _kv(lambda r: D.KvasirSEG("test", size=16, root=r, progress=False)),
     raises(ValueError, "'test'", "'train', 'val'")),
    ("kvasir-unknown-id", _kv(_kv_load(ids=["zzz"])), raises(D.UnknownIdError, "zzz.jpg")),
    ("kvasir-paths-unknown-id", _kv(lambda r: D.kvasir_paths("zzz", r)), raises(D.UnknownIdError, "zzz.jpg")),
    ("kvasir-missing-mask", _kv(_kv_load(), change=lambda f: (f / "masks/a.jpg").unlink()),
     raises(FileNotFoundError, "masks/a.jpg", "download.py kvasir-seg")),
    ("kvasir-mask-size-differs", _kv(_kv_load(), change=lambda f: _png(f / "masks/a.jpg",
                                                                        np.zeros((10, 10), np.uint8))),
     raises(ValueError, "masks/a.jpg", "40x50", "10x10")),
    ("kvasir-corrupt-image", _kv(_kv_load(), change=lambda f: _write(f / "images/a.jpg", b"\xff\xd8garbage")),
     raises(ValueError, "images/a.jpg", "download.py kvasir-seg")),
    ("kvasir-no-images", _kv(_kv_load(), change=lambda f: (f / "images/a.jpg").unlink()),
     raises(D.DatasetNotFoundError, "no Kvasir-SEG images", "datasets.simula.no")),
    ("kvasir-bboxes-truncated", _kv(D.kvasir_bboxes, boxes='{"a": {"bbox": [{"xmin": 1'),
     raises(ValueError, "kavsir_bboxes.json", "truncated", "download.py kvasir-seg")),
    ("kvasir-bboxes-empty-file", _kv(D.kvasir_bboxes, boxes=""), raises(ValueError, "kavsir_bboxes.json", "truncated")),
    ("kvasir-bboxes-binary", _kv(D.kvasir_bboxes, change=lambda f: _write(f / "kavsir_bboxes.json", b"\xff\xfe\x00")),
     raises(ValueError, "kavsir_bboxes.json", "corrupt")),
    ("kvasir-bboxes-a-list", _kv(D.kvasir_bboxes, boxes="[1, 2]"), raises(ValueError, "official layout")),
    ("kvasir-bboxes-bad-value", _kv(D.kvasir_bboxes, boxes='{"a": {"bbox": [{"xmin": "x", "ymin": 1, "xmax": 2, '
                                                        '"ymax": 3}]}}'), raises(ValueError, "official layout", "'x'")),
    ("kvasir-bboxes-missing-key", _kv(D.kvasir_bboxes, boxes='{"a": {"bbox": [{"xmin": 1}]}}'),
     raises(ValueError, "official layout", "ymin")),
    ("kvasir-bboxes-inverted-box", _kv(D.kvasir_bboxes, boxes='{"a": {"bbox": [{"xmin": 9, "ymin": 1, "xmax": 2, '
                                                         '"ymax": 3}]}}'),
     raises(ValueError, "impossible box", "(9, 1, 2, 3)")),
    ("kvasir-bboxes-missing", _kv(D.kvasir_bboxes, change=lambda f: (f / "kavsir_bboxes.json").unlink()),
     raises(D.DatasetNotFoundError, "kavsir_bboxes.json")),
    ("kvasir-bboxes-ok", _kv(lambda r: D.kvasir_bboxes(r) == {"a": [(1, 2, 10, 12)]}), OK),
    # DSB2018: the shipped subset list, not the folder listing
    ("dsb-stray-folder-not-an-id", _dsb(_dsb_stray, lambda r: len(D.dsb_ids(r)) == 40 and "stray" not in D.dsb_ids(r)),
     OK),
    ("dsb-stray-folder-verify", _dsb(_dsb_stray, lambda r: D.verify("dsb2018-nuclei-subset", r, full=False)),
     raises(D.ExtraFilesError, "stray/images/stray.png", "move them out")),
    ("dsb-extra-mask-file", _dsb(_dsb_extra_mask, lambda r: D.load_dsb_instances(_DSB_ID, r)),
     raises(D.DatasetNotFoundError, "extra.png", "extra nucleus", "move it out")),
    ("dsb-missing-mask-file", _dsb(_dsb_drop_mask, lambda r: D.load_dsb_instances(_DSB_ID, r)),
     raises(D.DatasetNotFoundError, "missing", "download.py dsb2018-nuclei-subset")),
    ("dsb-blank-mask-file", _dsb(_dsb_blank_mask, lambda r: D.load_dsb_instances(_DSB_ID, r)),
     raises(ValueError, "is empty", "masks/")),
    ("dsb-overlapping-masks", _dsb(_dsb_overlap, lambda r: D.load_dsb_instances(_DSB_ID, r)),
     raises(ValueError, "overlap")),
    ("dsb-subset-image-missing", _dsb(_dsb_drop_image, D.dsb_ids),
     raises(D.DatasetNotFoundError, "1 of 40", _DSB_ID)),
    ("dsb-id-not-a-string", _dsb(lambda c, r: None, lambda r: D.load_dsb_instances(3, r)), raises(TypeError, "3")),
    ("dsb-unknown-id", _dsb(lambda c, r: None, lambda r: D.load_dsb_instances("nope", r)),
     raises(D.UnknownIdError, "'nope'", "nope.png")),
    ("dsb-ids-lone-string", _dsb(lambda c, r: None, lambda r: D.DSBNuclei(ids=_DSB_ID, root=r, progress=False)),
     raises(TypeError, "wrap")),
    ("dsb-folder-missing", lambda c: D.dsb_ids(c.tmp / "nothing"),
     raises(D.DatasetNotFoundError, "dsb2018-nuclei-subset", "bbbc.broadinstitute.org")),
    ("unknown-dataset-name", lambda c: D.verify("kvasir", c.tmp), raises(ValueError, "'kvasir'", "kvasir-seg")),
)


@pytest.mark.parametrize("fn, expect", DATA_CASES)
def test_data_folders_and_files(fn, expect, tmp_path, monkeypatch):
    _run(fn, expect, tmp_path, monkeypatch)


# --------------------------------------------------------------------------------------------------
# downloads and archives
# --------------------------------------------------------------------------------------------------
def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return path


def _tar(path: Path, members: list[tarfile.TarInfo], payload: dict[str, bytes] | None = None) -> Path:
    payload = payload or {}
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            content = payload.get(m.name)
            if content is not None:
                m.size = len(content)
            tf.addfile(m, io.BytesIO(content) if content is not None else None)
    return path


def _tinfo(name: str, kind=tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def _escape(member: str, links: dict[str, str] | None = None, tar: list[tarfile.TarInfo] | None = None):
    """Extract an archive holding one unsafe member; assert nothing at all was written (inside or out)."""
    def case(c: Ctx):
        target = c.tmp / "sandbox" / "target"
        target.mkdir(parents=True)
        if tar is not None:
            archive = _tar(c.tmp / "evil.tar.gz", [_tinfo("good.txt")] + tar, {"good.txt": b"ok"})
        else:
            archive = _zip(c.tmp / "evil.zip", {"good.txt": b"ok", **({member: b"owned"} if member else {})}, links)
        before = sorted(p.relative_to(c.tmp).as_posix() for p in c.tmp.rglob("*"))
        try:
            D.safe_extract(archive, target)
        finally:
            after = sorted(p.relative_to(c.tmp).as_posix() for p in c.tmp.rglob("*"))
            assert after == before, f"safe_extract wrote {set(after) - set(before)}"
            assert not Path("/tmp/owned_by_archive").exists()
    return case


def _fake_info(c: Ctx, files: dict[str, bytes], server: dict[str, bytes] | None = None, archive: Path | None = None,
               members=()) -> D.DatasetInfo:
    """A dataset of ``files`` served from a local folder (file:// URLs): the download machinery, offline."""
    srv = c.tmp / "server"
    for rel, content in (server if server is not None else files).items():
        _write(srv / rel, content)
    manifest = c.tmp / "fake.sha256"
    manifest.write_text("".join(f"{_sha(b)}  {rel}\n" for rel, b in files.items()))
    return D.DatasetInfo(name="fake", title="Fake", folder="fake", homepage="https://example.org/fake",
                         citation="-", terms="-", layout="files/...", manifest=str(manifest),
                         archive=archive.as_uri() if archive else None, archive_members=tuple(members),
                         file_urls=(("files/", srv.as_uri() + "/files/"),))


FILES = {"files/a.bin": b"A" * 1000, "files/b.bin": b"B" * 10}


def _tampered_download(c: Ctx):
    info = _fake_info(c, FILES, server={"files/a.bin": b"X" * 1000, "files/b.bin": b"B" * 10})
    try:
        D.download(info, c.tmp / "data", progress=False)
    finally:
        assert not (c.tmp / "data/fake/files/a.bin").exists()          # never under its final name
        assert not list((c.tmp / "data").rglob("*.part"))


def _archive_member_fails_checksum(c: Ctx):
    """A file extracted from an archive that fails its checksum never stays under its final name, and a
    later ensure does not call the folder fine."""
    files = {"images/1.jpg": b"good image"}
    archive = _zip(c.tmp / "release.zip", {"Top/images/1.jpg": b"changed image"})
    info = _fake_info(c, files, server={}, archive=archive, members=(("Top/images/", "images/"),))
    with pytest.raises(D.ChecksumError) as exc:
        D.download(info, c.tmp / "data", progress=False)
    assert "images/1.jpg" in str(exc.value) and "was not written" in str(exc.value)
    assert not (c.tmp / "data/fake/images/1.jpg").exists()
    assert not list((c.tmp / "data").rglob("*.extract"))
    with pytest.raises(D.ChecksumError):
        D.ensure(info, c.tmp / "data", progress=False)                  # tries again, fails again: not "fine"
    assert archive.read_bytes()                                         # the source archive is not harmed


def _corrupt_archive(c: Ctx):
    whole = _zip(c.tmp / "whole.zip", {"Top/images/1.jpg": os.urandom(50_000)}).read_bytes()
    archive = _write(c.tmp / "broken.zip", whole[:-30_000] + whole[-200:])      # the middle of the data is gone
    try:
        D.safe_extract(archive, c.tmp / "t")
    finally:
        assert not [p for p in (c.tmp / "t").rglob("*") if p.is_file()] if (c.tmp / "t").exists() else True


def _resume_bad_partial(c: Ctx):
    info = _fake_info(c, FILES)
    _write(c.tmp / "data/fake/files/a.bin.part", b"Z" * 2000)                  # bigger than the file, wrong bytes
    D.download(info, c.tmp / "data", progress=False)
    return (c.tmp / "data/fake/files/a.bin").read_bytes() == FILES["files/a.bin"]


def _user_files_kept(c: Ctx):
    """Download into a folder that holds the user's own notes beside the data: they are left alone."""
    info = _fake_info(c, FILES)
    _write(c.tmp / "data/fake/NOTES.md", b"mine")
    D.download(info, c.tmp / "data", progress=False)
    return (c.tmp / "data/fake/NOTES.md").read_bytes() == b"mine"


def _no_network(c: Ctx):
    def fail(url, offset=0, timeout=60.0):
        import urllib.error
        raise urllib.error.URLError("network disabled in this test")
    c.mp.setattr(D.fetch, "open_url", fail)
    info = dataclasses.replace(_fake_info(c, FILES), file_urls=(("files/", "https://example.org/files/"),))
    try:
        D.download(info, c.tmp / "data", progress=False)
    finally:
        assert not (c.tmp / "data/fake").exists()                       # no empty folders left behind


def _extra_files(c: Ctx, call: str):
    info = _fake_info(c, FILES)
    D.download(info, c.tmp / "data", progress=False)
    _write(c.tmp / "data/fake/files/mine.png", b"x")
    if call == "verify":
        D.verify(info, c.tmp / "data")
    else:
        D.ensure(info, c.tmp / "data", progress=False)


def _tampered_verify(c: Ctx):
    info = _fake_info(c, FILES)
    D.download(info, c.tmp / "data", progress=False)
    _write(c.tmp / "data/fake/files/b.bin", b"changed")
    D.verify(info, c.tmp / "data")


def _through_existing_link(c: Ctx):
    target = c.tmp / "target"
    target.mkdir()
    outside = c.tmp / "outside"
    outside.mkdir()
    (target / "images").symlink_to(outside, target_is_directory=True)
    archive = _zip(c.tmp / "a.zip", {"images/x.jpg": b"x"})
    try:
        D.safe_extract(archive, target)
    finally:
        assert not list(outside.iterdir())


DOWNLOAD_CASES = cases(
    ("zip-dotdot", _escape("../owned.txt"), raises(ValueError, "'../owned.txt'", "escapes")),
    ("zip-deep-dotdot", _escape("ok/../../owned.txt"), raises(ValueError, "escapes")),
    ("zip-absolute", _escape("/tmp/owned_by_archive"), raises(ValueError, "absolute")),
    ("zip-windows-drive", _escape("C:/owned.txt"), raises(ValueError, "absolute")),
    ("zip-backslash-dotdot", _escape("..\\owned.txt"), raises(ValueError, "escapes")),
    ("zip-backslash-absolute", _escape("\\owned.txt"), raises(ValueError, "absolute")),
    ("zip-symlink-outside", _escape("", links={"images/evil": "../../outside"}),
     raises(ValueError, "images/evil", "outside the target")),
    ("zip-symlink-inside", _escape("", links={"images/ln": "good.txt"}), raises(ValueError, "link", "regular files")),
    ("tar-symlink-outside", _escape("", tar=[_tinfo("evil", tarfile.SYMTYPE, "../../outside")]),
     raises(ValueError, "'evil'", "outside the target")),
    ("tar-symlink-absolute", _escape("", tar=[_tinfo("evil", tarfile.SYMTYPE, "/etc/passwd")]),
     raises(ValueError, "/etc/passwd", "outside the target")),
    ("tar-hardlink-outside", _escape("", tar=[_tinfo("hard", tarfile.LNKTYPE, "../../../etc/passwd")]),
     raises(ValueError, "'hard'", "outside")),
    ("tar-hardlink-inside", _escape("", tar=[_tinfo("hard", tarfile.LNKTYPE, "good.txt")]),
     raises(ValueError, "'hard'", "regular files")),
    ("tar-fifo", _escape("", tar=[_tinfo("pipe", tarfile.FIFOTYPE)]), raises(ValueError, "'pipe'", "not a regular")),
    ("tar-char-device", _escape("", tar=[_tinfo("dev", tarfile.CHRTYPE)]), raises(ValueError, "'dev'")),
    ("tar-dotdot", _escape("", tar=[_tinfo("../owned.txt")]), raises(ValueError, "escapes")),
    ("member-through-existing-link", _through_existing_link, raises(ValueError, "through an existing link")),
    ("dotdot-that-stays-inside", lambda c: [p.name for p in D.safe_extract(
        _zip(c.tmp / "ok.zip", {"a/../b.txt": b"b"}), c.tmp / "t")] == ["b.txt"], OK),
    ("not-an-archive", lambda c: D.safe_extract(_write(c.tmp / "x.zip", b"hello"), c.tmp / "t"),
     raises(ValueError, "not a zip or tar", "delete it")),
    ("truncated-archive", _corrupt_archive, raises(ValueError, "corrupt or truncated", "download it again")),
    ("member-fails-checksum-safe_extract", lambda c: D.safe_extract(
        _zip(c.tmp / "a.zip", {"x.txt": b"evil"}), c.tmp / "t", sha256={"x.txt": _sha(b"good")})
        or (c.tmp / "t/x.txt").exists(), raises(D.ChecksumError, "x.txt", "was not written")),
    ("member-fails-checksum-download-and-ensure", _archive_member_fails_checksum, OK),
    ("tampered-per-file-download", _tampered_download, raises(D.ChecksumError, "a.bin", "SHA-256")),
    ("bad-partial-download-restarts", _resume_bad_partial, OK),
    ("user-notes-beside-data-kept", _user_files_kept, OK),
    ("no-network", _no_network, raises(D.DatasetNotFoundError, "could not download", "example.org/fake", "by hand")),
    ("extra-file-verify", lambda c: _extra_files(c, "verify"), raises(D.ExtraFilesError, "files/mine.png")),
    ("extra-file-ensure", lambda c: _extra_files(c, "ensure"), raises(D.ExtraFilesError, "files/mine.png")),
    ("tampered-file-verify", _tampered_verify, raises(D.ChecksumError, "files/b.bin", "download.py fake")),
    ("verify-unknown-path", lambda c: D.verify(info := _fake_info(c, FILES),
                                               D.download(info, c.tmp / "d", progress=False).parent,
                                               paths=["files/zzz"]),
     raises(D.UnknownIdError, "files/zzz")),
)


@pytest.mark.parametrize("fn, expect", DOWNLOAD_CASES)
def test_downloads_and_archives(fn, expect, tmp_path, monkeypatch):
    _run(fn, expect, tmp_path, monkeypatch)


# --------------------------------------------------------------------------------------------------
# masks and targets
# --------------------------------------------------------------------------------------------------
LAB = np.random.default_rng(7).random((16, 16)) > 0.22        # about 78 % foreground, like an ISBI label


def _mask_file(array: np.ndarray, mode: str | None = None, suffix: str = ".png"):
    def case(c: Ctx):
        path = c.tmp / f"mask{suffix}"
        _png(path, array, mode)
        got = D.load_mask(path)
        return bool((got == LAB).all()) or f"loaded {got.mean():.0%} foreground, expected {LAB.mean():.0%}"
    return case


def _channel(k: int, channels: int = 3) -> np.ndarray:
    a = np.zeros((16, 16, channels), np.uint8)
    a[..., k] = LAB * 255
    return a


def _palette() -> Image.Image:
    img = Image.fromarray(LAB.astype(np.uint8), mode="L").convert("P")
    img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    return img


def _palette_case(c: Ctx):
    _palette().save(c.tmp / "p.png")
    return bool((D.load_mask(c.tmp / "p.png") == LAB).all())


def _jpeg_colour(k: int):
    def case(c: Ctx):
        a = np.zeros((32, 32, 3), np.uint8)
        a[8:24, 8:24, k] = 255
        _png(c.tmp / "m.jpg", a)
        return int(D.load_mask(c.tmp / "m.jpg").sum()) == 256
    return case


def _isbi_label_in(k: int):
    """An ISBI label saved in another channel loads as the same label (not 0 % foreground)."""
    def case(c: Ctx):
        root = c.isbi()
        label = root / ISBI / "train/label/3.png"
        expected = np.asarray(Image.open(label)) > 127
        a = np.zeros((16, 16, 4 if k == 3 else 3), np.uint8)
        a[..., k] = expected * 255
        if k == 3:
            a[..., :3] = 0
        _png(label, a)
        got = D.isbi_arrays("train", [3], root=root)[1][0]
        return bool((got == expected).all()) and got.mean() > 0.5
    return case


def _fit_targets(target, extra=None, model_classes=1, check_targets=True, val_target=None):
    def case(c: Ctx):
        images = torch.rand(4, 1, 16, 16)
        items = [images, target] + ([extra] if extra is not None else [])
        val = (DataLoader(TensorDataset(images, val_target), batch_size=2) if val_target is not None else None)
        loss = losses.weighted_cross_entropy if (extra is not None or model_classes > 1) else losses.bce_loss
        torch.manual_seed(0)
        h = train.fit(UNet(1, model_classes, features=2), DataLoader(TensorDataset(*items), batch_size=2), val,
                      loss_fn=loss, max_epochs=1, device="cpu", progress=False, check_targets=check_targets)
        return math_finite(h.train_loss[0])
    return case


def math_finite(x: float) -> bool:
    return bool(np.isfinite(x))


M = torch.zeros(2, 1, 8, 8)
M[:, :, :4] = 1
Z = torch.zeros(2, 1, 8, 8)
CLS = torch.zeros(2, 8, 8, dtype=torch.long)
CLS[:, :3] = 1


def _loss(fn, target, logits=None, *args, **kw):
    return lambda c: fn(Z if logits is None else logits, target, *args, **kw)


def _crops_targets(targets, *extras, **kw):
    images = [np.zeros(t.shape, np.uint8) for t in targets]
    return lambda c: D.RandomCrops(images, targets, *extras, **kw)


TARGET_CASES = cases(
    # mask files: 0/1, a colour channel, alpha, palette, 16 bit: loaded as drawn, or a warning
    ("png-mask-0-1", _mask_file(LAB.astype(np.uint8)), OK),
    ("png-mask-0-255", _mask_file(LAB.astype(np.uint8) * 255), OK),
    ("png-mask-red", _mask_file(_channel(0)), OK),
    ("png-mask-green", _mask_file(_channel(1)), OK),
    ("png-mask-blue", _mask_file(_channel(2)), OK),
    ("png-mask-alpha-only", _mask_file(_channel(3, 4)), OK),
    ("png-mask-LA", _mask_file(np.stack([LAB * 255, np.full((16, 16), 255)], -1).astype(np.uint8), "LA"), OK),
    ("png-mask-palette", _palette_case, OK),
    ("png-mask-1-bit", lambda c: (Image.fromarray(LAB).save(c.tmp / "b.png"),
                                  bool((D.load_mask(c.tmp / "b.png") == LAB).all()))[1], OK),
    ("png-mask-16-bit-0-65535", _mask_file((LAB * 65535).astype(np.uint16)), OK),
    ("png-mask-16-bit-0-1", _mask_file(LAB.astype(np.uint16)), OK),
    ("png-mask-none-above-threshold-warns", lambda c: D.load_mask(_png(c.tmp / "m.png", (LAB * 100).astype(np.uint8))),
     warns("m.png", "up to 100", "threshold=0")),
    ("png-mask-class-labels-0-2-warns", lambda c: D.load_mask(_png(c.tmp / "m.png", (LAB * 2).astype(np.uint8))),
     warns("m.png", "class labels")),
    ("png-mask-all-background-is-quiet", lambda c: not D.load_mask(_png(c.tmp / "m.png", np.zeros((8, 8), np.uint8)))
     .any(), OK),
    ("jpeg-mask-red", _jpeg_colour(0), OK),
    ("jpeg-mask-blue", _jpeg_colour(2), OK),
    ("isbi-label-in-red-channel", _isbi_label_in(0), OK),
    ("isbi-label-in-blue-channel", _isbi_label_in(2), OK),
    ("isbi-label-in-alpha-channel", _isbi_label_in(3), OK),
    ("isbi-label-stored-0-1", _isbi_then(lambda f: _png(f / "train/label/3.png", LAB.astype(np.uint8)),
                                         lambda r: bool((D.isbi_arrays("train", [3], root=r)[1][0] == LAB).all())), OK),
    # targets entering the losses
    ("bce-0-255-target", _loss(losses.bce_loss, M * 255), raises(ValueError, "0 to 255", "(mask > 127).float()")),
    ("bce-minus1-1-target", _loss(losses.bce_loss, M * 2 - 1), raises(ValueError, "-1 to 1", "(target > 0).float()")),
    ("bce-nan-target", _loss(losses.bce_loss, M * float("nan")), raises(ValueError, "NaN")),
    ("bce-bool-target", lambda c: bool(torch.isfinite(losses.bce_loss(Z, M.bool()))), OK),
    ("bce-uint8-0-1-target-equals-float", lambda c: bool(losses.bce_loss(Z, M.byte()) == losses.bce_loss(Z, M)), OK),
    ("soft-dice-target-2", _loss(losses.soft_dice_loss, M * 2), raises(ValueError, "0 to 2")),
    ("hybrid-0-255-target", _loss(losses.hybrid_loss, torch.zeros(1, 1, 16, 16) + 255, torch.zeros(1, 1, 16, 16)),
     raises(ValueError, "255", "(mask > 127).float()")),
    ("focal-minus1-1-target", _loss(losses.focal_loss, M * 2 - 1), raises(ValueError, "-1/1")),
    ("iou-0-255-target", _loss(losses.iou_loss, M * 255), raises(ValueError, "0/255")),
    ("ms-ssim-0-255-target", _loss(losses.ms_ssim_loss, M * 255), raises(ValueError, "0/255")),
    ("ce-class-5-for-2-classes", _loss(losses.weighted_cross_entropy, CLS * 5, torch.zeros(2, 2, 8, 8)),
     raises(ValueError, "0 to 5", "2 classes", "num_classes=6")),
    ("ce-negative-class", _loss(losses.weighted_cross_entropy, CLS - 1, torch.zeros(2, 2, 8, 8)),
     raises(ValueError, "-1", "0..1")),
    ("ce-fractional-class", _loss(losses.weighted_cross_entropy, CLS * 0.5, torch.zeros(2, 2, 8, 8)),
     raises(ValueError, "fractional", "nearest")),
    ("ce-negative-weights", _loss(losses.weighted_cross_entropy, CLS, torch.zeros(2, 2, 8, 8), -torch.ones(2, 8, 8)),
     raises(ValueError, "negative", "min -1", ">= 0")),
    ("ce-nan-weights", _loss(losses.weighted_cross_entropy, CLS, torch.zeros(2, 2, 8, 8),
                             torch.full((2, 8, 8), float("nan"))), raises(ValueError, "NaN")),
    ("ce-inf-weights", _loss(losses.weighted_cross_entropy, CLS, torch.zeros(2, 2, 8, 8),
                             torch.full((2, 8, 8), float("inf"))), raises(ValueError, "infinite")),
    ("cgm-label-2", lambda c: losses.unet3plus_loss((torch.zeros(2, 1, 16, 16), torch.zeros(2, 2)),
                                                    torch.zeros(2, 1, 16, 16), torch.tensor([2.0, 0.0])),
     raises(ValueError, "has_object", "0 to 2")),
    ("cgm-label-count", lambda c: losses.unet3plus_loss((torch.zeros(2, 1, 16, 16), torch.zeros(2, 2)),
                                                        torch.zeros(2, 1, 16, 16), torch.tensor([1.0, 0.0, 1.0])),
     raises(ValueError, "3 labels", "batch of 2")),
    ("cgm-label-missing", lambda c: losses.unet3plus_loss((torch.zeros(2, 1, 16, 16), torch.zeros(2, 2)),
                                                          torch.zeros(2, 1, 16, 16)), raises(ValueError, "has_object")),
    # targets entering fit (checked once per batch)
    ("fit-0-255-masks", _fit_targets((torch.rand(4, 1, 16, 16) > 0.5).float() * 255),
     raises(ValueError, "batch 0 of epoch 0", "0 to 255", "mask > 127")),
    ("fit-minus1-1-masks", _fit_targets((torch.rand(4, 1, 16, 16) > 0.5).float() * 2 - 1),
     raises(ValueError, "batch 0 of epoch 0", "-1/1")),
    ("fit-soft-masks", _fit_targets(torch.full((4, 1, 16, 16), 0.5)),
     raises(ValueError, "strictly between 0 and 1", "check_targets=False")),
    ("fit-soft-masks-allowed", _fit_targets(torch.full((4, 1, 16, 16), 0.5), check_targets=False), OK),
    ("fit-class-index-beyond-channels", _fit_targets(torch.full((4, 16, 16), 2, dtype=torch.long), model_classes=2),
     raises(ValueError, "batch 0 of epoch 0", "2 classes", "num_classes=3")),
    ("fit-negative-weight-map", _fit_targets(torch.zeros(4, 16, 16, dtype=torch.long), -torch.ones(4, 16, 16),
                                             model_classes=2),
     raises(ValueError, "extra item 0 of batch 0 of epoch 0", "negative")),
    ("fit-0-255-validation-masks", _fit_targets(torch.zeros(4, 1, 16, 16), val_target=torch.ones(4, 1, 16, 16) * 255),
     raises(ValueError, "validation target", "mask > 127")),
    # targets entering the datasets
    ("kvasir-transform-returns-0-255-mask", _kv(lambda r: D.KvasirSEG(
        ids=["a"], size=16, root=r, progress=False, transform=lambda i, m: (i, m.astype(np.uint8) * 255))[0]),
     raises(ValueError, "0 to 255", "mask > 127")),
    ("crops-float-mask-target", _crops_targets([np.zeros((8, 8), np.float32)]), raises(TypeError, "mask > 0.5")),
    ("crops-negative-class", _crops_targets([np.full((8, 8), -1, np.int64)]), raises(ValueError, "class index -1")),
    ("crops-mixed-mask-and-classes", _crops_targets([np.zeros((8, 8), bool), np.zeros((8, 8), np.int64)]),
     raises(TypeError, "target 1", "all as")),
    ("crops-negative-weight-map", _crops_targets([np.zeros((8, 8), bool)], [-np.ones((8, 8), np.float32)]),
     raises(ValueError, "per-pixel extra 0 of image 0", "negative")),
)


@pytest.mark.parametrize("fn, expect", TARGET_CASES)
def test_masks_and_targets(fn, expect, tmp_path, monkeypatch):
    _run(fn, expect, tmp_path, monkeypatch)


# --------------------------------------------------------------------------------------------------
# losses and shapes
# --------------------------------------------------------------------------------------------------
def _mc_dice_b1hw(c: Ctx):
    logits = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 3, (2, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    return bool(losses.soft_dice_loss(logits, target) == losses.soft_dice_loss(logits, target[:, 0]))


HEADS = [torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8)]

LOSS_CASES = cases(
    ("multiclass-soft-dice-B1HW-target", _mc_dice_b1hw, OK),
    ("multiclass-ce-B1HW-target", lambda c: bool(losses.weighted_cross_entropy(torch.zeros(2, 2, 8, 8), CLS[:, None])
                                                 == losses.weighted_cross_entropy(torch.zeros(2, 2, 8, 8), CLS)), OK),
    ("heads-list-to-bce", lambda c: losses.bce_loss(HEADS, M), raises(TypeError, "list of 2", "deep_supervision_loss")),
    ("heads-list-to-soft-dice", lambda c: losses.soft_dice_loss(HEADS, M), raises(TypeError, "deep_supervision_loss")),
    ("heads-list-to-hybrid", lambda c: losses.hybrid_loss(HEADS, M), raises(TypeError, "deep_supervision_loss")),
    ("seg-cls-pair-to-bce", lambda c: losses.bce_loss((Z, torch.zeros(2, 2)), M), raises(TypeError, "tuple of 2")),
    ("deep-supervision-empty-list", lambda c: losses.deep_supervision_loss([], M, losses.bce_loss),
     raises(ValueError, "empty list of heads", "deep_supervision=True")),
    ("deep-supervision-weights-count", lambda c: losses.deep_supervision_loss(HEADS, M, losses.bce_loss, [1.0]),
     raises(ValueError, "1 weights for 2 outputs")),
    ("deep-supervision-negative-weight", lambda c: losses.deep_supervision_loss(HEADS, M, losses.bce_loss, [1.0, -1.0]),
     raises(ValueError, ">= 0")),
    ("deep-supervision-dict", lambda c: losses.deep_supervision_loss({"a": Z}, M, losses.bce_loss),
     raises(TypeError, "dict")),
    ("deep-supervision-one-tensor", lambda c: bool(losses.deep_supervision_loss(Z, M, losses.bce_loss)
                                                   == losses.bce_loss(Z, M)), OK),
    ("deep-supervision-mean-of-heads", lambda c: bool(torch.isclose(
        losses.deep_supervision_loss(HEADS, M, losses.bce_loss),
        (losses.bce_loss(HEADS[0], M) + losses.bce_loss(HEADS[1], M)) / 2)), OK),
    ("logits-3d", lambda c: losses.bce_loss(torch.zeros(2, 8, 8), M), raises(ValueError, "(2, 8, 8)", "unsqueeze(1)")),
    ("logits-numpy", lambda c: losses.bce_loss(np.zeros((2, 1, 8, 8)), M), raises(TypeError, "ndarray")),
    ("bce-two-channel-logits", lambda c: losses.bce_loss(torch.zeros(2, 2, 8, 8), M),
     raises(ValueError, "(2, 2, 8, 8)", "num_classes=1")),
    ("bce-target-shape", lambda c: losses.bce_loss(Z, torch.zeros(2, 1, 9, 9)),
     raises(ValueError, "(2, 1, 9, 9)", "(2, 1, 8, 8)")),
    ("bce-target-numpy", lambda c: losses.bce_loss(Z, np.zeros((2, 1, 8, 8))), raises(TypeError, "ndarray")),
    ("bce-target-B-H-W-accepted", lambda c: bool(losses.bce_loss(Z, M[:, 0]) == losses.bce_loss(Z, M)), OK),
    ("multiclass-dice-onehot-target", lambda c: losses.soft_dice_loss(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)),
     raises(ValueError, "(2, 3, 8, 8)", "(B, H, W) = (2, 8, 8)")),
    ("ce-weight-shape", lambda c: losses.weighted_cross_entropy(torch.zeros(2, 2, 8, 8), CLS, torch.ones(2, 9, 9)),
     raises(ValueError, "(2, 9, 9)", "(2, 8, 8)")),
    ("ce-weight-numpy", lambda c: losses.weighted_cross_entropy(torch.zeros(2, 2, 8, 8), CLS, np.ones((2, 8, 8))),
     raises(TypeError, "ndarray", "torch.as_tensor")),
    ("soft-dice-smooth-negative", lambda c: losses.soft_dice_loss(Z, M, smooth=-1), raises(ValueError, "smooth")),
    ("focal-gamma-negative", lambda c: losses.focal_loss(Z, M, gamma=-1), raises(ValueError, "gamma", "-1")),
    ("focal-alpha-2", lambda c: losses.focal_loss(Z, M, alpha=2), raises(ValueError, "alpha", "2")),
    ("ssim-image-smaller-than-window", lambda c: losses.ssim(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)),
     raises(ValueError, "(4, 4)", "11x11")),
    ("ms-ssim-shapes-differ", lambda c: losses.ms_ssim(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 8, 8)),
     raises(ValueError, "(1, 1, 16, 16)", "(1, 1, 8, 8)")),
    ("ms-ssim-tiny-image-finite", lambda c: bool(torch.isfinite(losses.ms_ssim_loss(torch.zeros(1, 1, 5, 5),
                                                                                     torch.ones(1, 1, 5, 5)))), OK),
)


@pytest.mark.parametrize("fn, expect", LOSS_CASES)
def test_losses_and_shapes(fn, expect, tmp_path, monkeypatch):
    _run(fn, expect, tmp_path, monkeypatch)


# --------------------------------------------------------------------------------------------------
# training and checkpoints
# --------------------------------------------------------------------------------------------------
X = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
Y = (torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(1)) > 0.5).float()


def _loader(x=X, y=Y, bs=4, **kw):
    return DataLoader(TensorDataset(x, y), batch_size=bs, **kw)


def _fit(c: Ctx | None = None, loader=None, val=None, model=None, **kw):
    torch.manual_seed(0)
    kw.setdefault("loss_fn", losses.bce_loss)
    kw.setdefault("max_epochs", 1)
    kw.setdefault("device", "cpu")
    return train.fit(model or UNet(1, 1, features=2), _loader() if loader is None else loader, val,
                     progress=False, **kw)


def _fitting(**kw):
    return lambda c: _fit(c, **kw)


def _resume(first: dict, second: dict, corrupt: Callable[[Path], object] | None = None):
    """Train 1 of 2 epochs into a folder, (optionally spoil last.pt,) then resume with other settings."""
    def case(c: Ctx):
        folder = c.tmp / "ckpt"
        base = dict(checkpoint_dir=folder, max_epochs=2)
        state_path = folder / "last.pt"
        _fit(c, **{**base, **first, "max_epochs": first.get("max_epochs", 2)})
        state = train.load_checkpoint(state_path)
        state["epoch"], state["history"] = 0, {k: (v[:1] if isinstance(v, list) else v)
                                               for k, v in state["history"].items()}
        train.save_checkpoint(state_path, **state)
        if corrupt is not None:
            corrupt(state_path)
        calls = []
        loss = second.pop("loss_fn", losses.bce_loss)
        try:
            _fit(c, **{**base, **second}, loss_fn=lambda o, t: calls.append(1) or loss(o, t))
        finally:
            assert calls == [], "training started before the resume was refused"
    return case


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/unet_book_pwned_by_checkpoint",))


def _payload(path: Path):
    torch.save({"model": {}, "payload": _Evil()}, path)


class _Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = UNet(1, 1, features=2)

    def forward(self, x):
        out = self.net(x)
        return [out, out]


def _generator_items():
    def gen():
        yield X[:4], Y[:4]
    return gen()


TRAIN_CASES = cases(
    ("empty-train-loader", _fitting(loader=_loader(X[:0], Y[:0])),
     raises(ValueError, "train_loader yields no batches", "0 items", "wrong folder")),
    ("train-loader-drop-last-empty", _fitting(loader=_loader(X[:3], Y[:3], drop_last=True)),
     raises(ValueError, "3 items", "batch_size=4, drop_last=True")),
    ("empty-val-loader", _fitting(val=_loader(X[:0], Y[:0])),
     raises(ValueError, "val_loader yields no batches", "val_loader=None", "best.pt")),
    ("dataset-instead-of-loader", _fitting(loader=TensorDataset(X, Y)),
     raises(TypeError, "TensorDataset (a dataset)", "DataLoader(dataset")),
    ("loader-without-targets", _fitting(loader=DataLoader(TensorDataset(X), batch_size=4)),
     raises(TypeError, "(image, target, *extra)")),
    ("generator-without-length", _fitting(loader=_generator_items()), raises(TypeError, "no length", "map-style")),
    ("max-epochs-0", _fitting(max_epochs=0), raises(ValueError, "max_epochs", "0")),
    ("max-epochs-1.5", _fitting(max_epochs=1.5), raises(ValueError, "max_epochs", "1.5")),
    ("max-epochs-True", _fitting(max_epochs=True), raises(ValueError, "max_epochs", "True")),
    ("lr-nan", _fitting(lr=float("nan")), raises(ValueError, "lr", "nan")),
    ("lr-negative", _fitting(lr=-1e-3), raises(ValueError, "lr", "-0.001")),
    ("lr-string", _fitting(lr="1e-3"), raises(ValueError, "lr", "'1e-3'")),
    ("weight-decay-negative", _fitting(weight_decay=-1.0), raises(ValueError, "weight_decay")),
    ("schedule-cosine", _fitting(schedule="cosine"), raises(ValueError, "'cosine'", "'onecycle'")),
    ("grad-clip-0", _fitting(grad_clip=0), raises(ValueError, "grad_clip", "0")),
    ("checkpoint-dir-is-a-file", lambda c: _fit(c, checkpoint_dir=_write(c.tmp / "f", b"x")),
     raises(NotADirectoryError, "is a file")),
    ("device-gpu", _fitting(device="gpu"), raises(ValueError, "fit(device='gpu')", "'cuda'")),
    ("device-cuda-without-cuda", lambda c: (c.mp.setattr(torch.cuda, "is_available", lambda: False),
                                            _fit(c, device="cuda")), raises(ValueError, "fit(device='cuda')", "CUDA")),
    ("amp-dtype-float32", _fitting(amp_dtype=torch.float32), raises(ValueError, "amp_dtype", "float32")),
    ("loss-per-image-vector", _fitting(loss_fn=lambda o, t: (o - t).pow(2).mean((1, 2, 3))),
     raises(ValueError, "shape (4,)", "loss.mean()")),
    ("loss-python-float", _fitting(loss_fn=lambda o, t: float(losses.bce_loss(o, t).detach())),
     raises(TypeError, "returned a float", "not a tensor")),
    ("loss-detached", _fitting(loss_fn=lambda o, t: losses.bce_loss(o, t).detach()),
     raises(ValueError, "without a gradient")),
    ("loss-nan-from-nan-images", _fitting(loader=_loader(X * float("nan"))),
     raises(FloatingPointError, "batch 0 of epoch 0", "images hold NaN")),
    ("heads-without-output-fn", lambda c: _fit(c, model=_Pair(), val=_loader(),
                                               loss_fn=lambda o, t: losses.deep_supervision_loss(o, t,
                                                                                                 losses.bce_loss)),
     raises(TypeError, "output_fn=")),
    ("heads-to-single-map-loss", lambda c: _fit(c, model=_Pair()), raises(TypeError, "deep_supervision_loss")),
    ("batch-of-one-16px-batch-norm", _fitting(loader=_loader(bs=1)),
     raises(ValueError, "batch of one 16x16 image", "drop_last=True", "32x32")),
    ("resume-other-batch-size", _resume({}, {"loader": _loader(bs=2)}),
     raises(ValueError, "last.pt", "batch_size=4", "batch_size=2", "resume=False")),
    ("resume-other-lr", _resume({}, {"lr": 3e-3}), raises(ValueError, "last.pt", "lr=0.001", "lr=0.003")),
    ("resume-other-max-epochs", _resume({}, {"max_epochs": 5}), raises(ValueError, "max_epochs=2", "max_epochs=5")),
    ("resume-other-schedule", _resume({}, {"schedule": "constant"}),
     raises(ValueError, "schedule='onecycle'", "schedule='constant'")),
    ("resume-other-weight-decay", _resume({}, {"weight_decay": 1e-4}), raises(ValueError, "weight_decay=0.0001")),
    ("resume-other-grad-clip", _resume({}, {"grad_clip": 1.0}), raises(ValueError, "grad_clip=None", "grad_clip=1.0")),
    ("resume-loader-gains-a-generator", _resume({}, {"loader": _loader(shuffle=True, generator=torch.Generator())}),
     raises(CheckpointError, "last.pt", "generator", "resume=False")),
    ("resume-other-network", _resume({}, {"model": UNet(1, 1, features=3)}),
     raises(CheckpointError, "last.pt", "another network", "resume=False")),
    ("last.pt-truncated", _resume({}, {}, lambda p: _write(p, p.read_bytes()[:200])),
     raises(CheckpointError, "last.pt", "truncated", "resume=False")),
    ("last.pt-empty", _resume({}, {}, lambda p: _write(p, b"")), raises(CheckpointError, "last.pt", "empty",
                                                                        "resume=False")),
    ("last.pt-text-file", _resume({}, {}, lambda p: _write(p, b"epoch=3\n")),
     raises(CheckpointError, "last.pt", "not a torch checkpoint", "resume=False")),
    ("last.pt-a-list", _resume({}, {}, lambda p: torch.save([1, 2], p)),
     raises(CheckpointError, "last.pt", "list", "resume=False")),
    ("last.pt-bare-state-dict", _resume({}, {}, lambda p: torch.save(UNet(1, 1, features=2).state_dict(), p)),
     raises(CheckpointError, "last.pt", "lacks", "resume=False")),
    ("last.pt-is-a-best.pt", _resume({}, {}, lambda p: torch.save({"model": {}, "epoch": 0, "val_dice": 0.5}, p)),
     raises(CheckpointError, "last.pt", "best.pt", "resume=False")),
    ("last.pt-pickled-payload-never-runs", _resume({}, {}, _payload),
     raises(CheckpointError, "last.pt", "nothing in it ran", "resume=False")),
    ("last.pt-is-a-folder", _resume({}, {}, lambda p: (p.unlink(), p.mkdir())),
     raises(CheckpointError, "last.pt", "folder", "resume=False")),
    ("load-best-without-best.pt", lambda c: train.load_best(UNet(1, 1, features=2), c.tmp),
     raises(FileNotFoundError, "best.pt", "val_loader")),
    ("load-best-other-network", lambda c: (_fit(c, checkpoint_dir=c.tmp, val=_loader()),
                                           train.load_best(UNet(1, 1, features=3), c.tmp)),
     raises(CheckpointError, "best.pt", "another network")),
    ("seed-string", lambda c: train.seed_everything("0"), raises(ValueError, "'0'", "without quotes")),
    ("seed-negative", lambda c: train.seed_everything(-1), raises(ValueError, "-1", "2**32")),
    ("evaluate-nan-logits", lambda c: train.evaluate(nn.Conv2d(1, 1, 1).requires_grad_(False).apply(
        lambda m: nn.init.constant_(m.weight, float("nan")) if isinstance(m, nn.Conv2d) else None), _loader()),
     raises(ValueError, "NaN", "diverged")),
    ("masks-from-logits-threshold-1.5", lambda c: train.masks_from_logits(Z, 1.5), raises(ValueError, "1.5")),
    ("resume-finished-run-nothing-to-do", lambda c: (_fit(c, checkpoint_dir=c.tmp, max_epochs=1),
                                                     _fit(c, checkpoint_dir=c.tmp, max_epochs=1).epoch == [0])[1], OK),
)


@pytest.mark.parametrize("fn, expect", TRAIN_CASES)
def test_training_and_checkpoints(fn, expect, tmp_path, monkeypatch):
    _run(fn, expect, tmp_path, monkeypatch)
    assert not Path("/tmp/unet_book_pwned_by_checkpoint").exists()


# --------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------
def _env(c: Ctx, **values: str) -> None:
    for k, v in values.items():
        c.mp.setenv(k, v)


def _device_env(value: str, cuda: bool | None = None, count: int = 1):
    def case(c: Ctx):
        _env(c, UNET_BOOK_DEVICE=value)
        if cuda is not None:
            c.mp.setattr(torch.cuda, "is_available", lambda: cuda)
            c.mp.setattr(torch.cuda, "device_count", lambda: count)
        return config.device()
    return case


def _mps_env(c: Ctx):
    _env(c, UNET_BOOK_DEVICE="mps")
    c.mp.setattr(torch.backends.mps, "is_available", lambda: False)
    return config.device()


def _save(numbers, **kw):
    def case(c: Ctx):
        _env(c, UNET_BOOK_RESULTS=str(c.tmp / "results"), UNET_BOOK_PROFILE="smoke")
        path = results.save_results("00_case", numbers, seed=0, wall_time_s=1.0, **kw)
        text = path.read_text()
        doc = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
        return doc
    return case


def _saved_as(numbers, expected):
    def case(c: Ctx):
        doc = _save(numbers)(c)
        return doc["numbers"] == expected or f"stored {doc['numbers']}"
    return case


CONFIG_CASES = cases(
    ("device-cuda-without-cuda", _device_env("cuda", cuda=False),
     raises(ValueError, "UNET_BOOK_DEVICE=cuda", "no usable CUDA", "unset UNET_BOOK_DEVICE")),
    ("device-cuda-index-beyond-count", _device_env("cuda:7", cuda=True, count=1),
     raises(ValueError, "UNET_BOOK_DEVICE=cuda:7", "GPU 7", "1")),
    ("device-gpu", _device_env("gpu"), raises(ValueError, "UNET_BOOK_DEVICE=gpu", "not a device", "'cuda'")),
    ("device-mps-off-a-mac", _mps_env, raises(ValueError, "UNET_BOOK_DEVICE=mps", "MPS")),
    ("device-meta", _device_env("meta"), raises(ValueError, "UNET_BOOK_DEVICE=meta", "'cpu'")),
    ("device-spaces-and-capitals", lambda c: _device_env(" CPU ")(c) == torch.device("cpu"), OK),
    ("device-empty-uses-default", lambda c: isinstance(_device_env("")(c), torch.device), OK),
    ("data-dir-is-a-file", lambda c: (_env(c, UNET_BOOK_DATA=str(_write(c.tmp / "f", b"x"))), config.data_dir()),
     raises(NotADirectoryError, "UNET_BOOK_DATA=", "points at the file", "not a folder")),
    ("data-dir-is-a-file-ensure", lambda c: (_env(c, UNET_BOOK_DATA=str(_write(c.tmp / "f", b"x"))),
                                             D.ensure("isbi2012-em", progress=False)),
     raises(NotADirectoryError, "UNET_BOOK_DATA=")),
    ("data-dir-missing", lambda c: (_env(c, UNET_BOOK_DATA=str(c.tmp / "nowhere")), D.dataset_dir("kvasir-seg")),
     raises(D.DatasetNotFoundError, "nowhere/kvasir-seg", "does not exist", "UNET_BOOK_DATA")),
    ("data-dir-tilde", lambda c: (_env(c, UNET_BOOK_DATA="~/x", HOME=str(c.tmp)), config.data_dir() == c.tmp / "x")[1],
     OK),
    ("results-dir-is-a-file", lambda c: (_env(c, UNET_BOOK_RESULTS=str(_write(c.tmp / "f", b"x"))),
                                         results.save_results("x", {}, seed=0, wall_time_s=0)),
     raises(NotADirectoryError, "UNET_BOOK_RESULTS=")),
    ("checkpoints-dir-is-a-file", lambda c: (_env(c, UNET_BOOK_CHECKPOINTS=str(_write(c.tmp / "f", b"x"))),
                                             config.checkpoint_dir("02_fcn", "FCN-8s")),
     raises(NotADirectoryError, "UNET_BOOK_CHECKPOINTS=", "points at the file")),
    ("checkpoints-run-without-a-name", lambda c: (_env(c, UNET_BOOK_CHECKPOINTS=str(c.tmp)),
                                                  config.checkpoint_dir("02_fcn", "()")),
     raises(ValueError, "run '()'", "empty folder name")),
    ("use-drive-outside-colab", lambda c: (c.mp.setitem(sys.modules, "google.colab", None), config.use_drive()),
     raises(RuntimeError, "needs Google Colab", "USE_DRIVE", "UNET_BOOK_DATA")),
    ("profile-unknown", lambda c: (_env(c, UNET_BOOK_PROFILE="fast"), config.profile()),
     raises(ValueError, "'fast'", "UNET_BOOK_PROFILE", "smoke")),
    ("profile-spaces-and-capitals", lambda c: (_env(c, UNET_BOOK_PROFILE=" Smoke "), config.profile().name == "smoke")
     [1], OK),
    ("profile-replace-unknown-field", lambda c: config.replace(config.profile("smoke"), epochs=3),
     raises(TypeError, "epochs")),
    ("results-nan-is-null", _saved_as({"a": float("nan"), "b": [1.0, float("inf")]}, {"a": None, "b": [1.0, None]}),
     OK),
    ("results-numpy-nan-is-null", _saved_as({"a": np.float64("nan"), "b": np.array([0.5, np.nan], np.float32)},
                                            {"a": None, "b": [0.5, None]}), OK),
    ("results-tensor-nan-is-null", _saved_as({"a": torch.tensor([float("nan"), 2.0])}, {"a": [None, 2.0]}), OK),
    ("results-numpy-ints", _saved_as({"n": np.int64(3), "ok": np.bool_(True)}, {"n": 3, "ok": True}), OK),
    ("results-headline-nan", _save({}, headline={"U-Net": float("nan")}, metric="Dice"),
     raises(ValueError, "'U-Net'", "nan", "numbers")),
    ("results-headline-string", _save({}, headline={"U-Net": "0.7x"}, metric="Dice"),
     raises(ValueError, "'U-Net'", "'0.7x'", "not a number")),
    ("results-headline-without-metric", _save({}, headline={"U-Net": 0.7}), raises(ValueError, "metric=")),
    ("results-tuple-key", _save({(1, 2): 3.0}), raises(TypeError, "(1, 2)", "JSON keys are strings")),
    ("results-set", _save({"ids": {"a", "b"}}), raises(TypeError, "['ids']", "sorted(")),
    ("results-object", _save({"model": nn.Linear(1, 1)}), raises(TypeError, "Linear")),
    ("load-results-missing", lambda c: (_env(c, UNET_BOOK_RESULTS=str(c.tmp)), results.load_results("03_x", "cpu")),
     raises(FileNotFoundError, "03_x.cpu.json", "UNET_BOOK_PROFILE=cpu")),
    ("load-results-truncated", lambda c: (_env(c, UNET_BOOK_RESULTS=str(c.tmp)),
                                          _write(c.tmp / "03_x.cpu.json", b'{"n'),
                                          results.load_results("03_x", "cpu")),
     raises(ValueError, "03_x.cpu.json", "truncated", "notebooks/03_x.ipynb")),
)


@pytest.mark.parametrize("fn, expect", CONFIG_CASES)
def test_configuration(fn, expect, tmp_path, monkeypatch):
    monkeypatch.delenv("UNET_BOOK_DEVICE", raising=False)
    _run(fn, expect, tmp_path, monkeypatch)


# --------------------------------------------------------------------------------------------------
# augmentation
# --------------------------------------------------------------------------------------------------
IMG = np.random.default_rng(3).random((16, 16)).astype(np.float32)
MASK = np.random.default_rng(4).random((16, 16)) > 0.5


def _crops_float_kept(c: Ctx):
    x = D.RandomCrops([IMG], [MASK])[0][0]
    return bool(torch.allclose(x[0], torch.from_numpy(IMG)))          # not divided by 255 a second time


def _crops_uint8_scaled(c: Ctx):
    img = (IMG * 255).astype(np.uint8)
    x = D.RandomCrops([img], [MASK])[0][0]
    return bool(torch.allclose(x[0], torch.from_numpy(img.astype(np.float32) / 255)))


def _photometric_range(dtype):
    def case(c: Ctx):
        img = (IMG * 255).astype(np.uint8) if dtype == np.uint8 else IMG
        out = augment.photometric(img, np.random.default_rng(0), brightness=0.5, contrast=0.5, gamma=0.5)
        hi = 255 if dtype == np.uint8 else 1.0
        return out.dtype == img.dtype and out.shape == img.shape and 0 <= out.min() and out.max() <= hi
    return case


def _flip_follows(c: Ctx):
    """An (H, W, 3) image and its (H, W) mask move together under all 8 symmetries."""
    rgb = np.stack([IMG, IMG, IMG], -1)
    for seed in range(16):
        image, mask = augment.flip_rotate(rgb, IMG > 0.5, rng=np.random.default_rng(seed))
        if not np.array_equal(mask, image[..., 0] > 0.5):
            return False
    return True


def _state_round_trip(c: Ctx):
    t = augment.FlipRotate(seed=3)
    t(IMG, MASK)
    saved = t.state_dict()
    a = [t(IMG, MASK)[0] for _ in range(3)]
    t.load_state_dict(saved)
    b = [t(IMG, MASK)[0] for _ in range(3)]
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def _bad_compose(image, mask):
    return image


AUG_CASES = cases(
    ("crops-float-image-not-divided-again", _crops_float_kept, OK),
    ("crops-uint8-image-scaled-once", _crops_uint8_scaled, OK),
    ("crops-float-image-0-255", lambda c: D.RandomCrops([IMG * 255], [MASK]),
     raises(ValueError, "image 0", "to 254", "divide a 0-255 image by 255")),
    ("crops-nan-image", lambda c: D.RandomCrops([IMG * np.nan], [MASK]), raises(ValueError, "image 0", "nan")),
    ("crops-int32-image", lambda c: D.RandomCrops([IMG.astype(np.int32)], [MASK]), raises(TypeError, "int32")),
    ("crops-crop-bigger-than-image", lambda c: D.RandomCrops([IMG], [MASK], crop=32),
     raises(ValueError, "16x16", "smaller than the crop 32")),
    ("crops-targets-count", lambda c: D.RandomCrops([IMG, IMG], [MASK]), raises(ValueError, "2 images but 1 targets")),
    ("crops-margin-without-crop", lambda c: D.RandomCrops([IMG], [MASK], margin=4), raises(ValueError, "margin")),
    ("crops-target-shape", lambda c: D.RandomCrops([IMG], [MASK[:8]]), raises(ValueError, "(16, 16)", "(8, 16)")),
    ("crops-weight-shape", lambda c: D.RandomCrops([IMG], [MASK], [np.ones((8, 8))]), raises(ValueError, "(8, 8)")),
    ("crops-label-before-weights", lambda c: D.RandomCrops([IMG], [MASK], [1.0], [np.ones((16, 16))]),
     raises(ValueError, "before the per-image values")),
    ("crops-no-images", lambda c: D.RandomCrops([], []), raises(ValueError, "at least one image")),
    ("photometric-float-0-255", lambda c: augment.photometric(IMG * 255, np.random.default_rng(0)),
     raises(ValueError, "[0, 1]", "to 254", "divide a 0-255 image by 255")),
    ("photometric-nan-image", lambda c: augment.photometric(IMG * np.nan, np.random.default_rng(0)),
     raises(ValueError, "nan")),
    ("photometric-int16-image", lambda c: augment.photometric(IMG.astype(np.int16)), raises(TypeError, "int16")),
    ("photometric-contrast-1", lambda c: augment.photometric(IMG, contrast=1.0), raises(ValueError, "contrast=1.0")),
    ("photometric-brightness-negative", lambda c: augment.photometric(IMG, brightness=-0.1),
     raises(ValueError, "brightness=-0.1")),
    ("photometric-uint8-stays-uint8", _photometric_range(np.uint8), OK),
    ("photometric-float-stays-in-0-1", _photometric_range(np.float32), OK),
    ("photometric-float-rounding-above-1", lambda c: augment.photometric(np.minimum(IMG + 1e-7, 1 + 1e-7)).max() <= 1,
     OK),
    ("flip-rotate-mask-other-shape", lambda c: augment.flip_rotate(IMG, np.zeros((8, 8), bool)),
     raises(ValueError, "(8, 8)", "(16, 16)", "resize_mask")),
    ("flip-rotate-transposed-mask", lambda c: augment.flip_rotate(IMG[:, :12], MASK[:12, :]),
     raises(ValueError, "(12, 16)", "(16, 12)")),
    ("flip-rotate-weight-other-shape", lambda c: augment.flip_rotate(IMG, MASK, np.ones((16, 8))),
     raises(ValueError, "array 2", "(16, 8)")),
    ("flip-rotate-1d-image", lambda c: augment.flip_rotate(IMG[0], MASK[0]), raises(ValueError, "(16,)")),
    ("flip-rotate-class-mask-other-shape", lambda c: augment.FlipRotate(0)(IMG, np.zeros((16, 15), np.int64)),
     raises(ValueError, "(16, 15)")),
    ("flip-rotate-rgb-and-mask-move-together", _flip_follows, OK),
    ("rotate-mask-other-shape", lambda c: augment.rotate(IMG, np.zeros((8, 8)), angle=10),
     raises(ValueError, "(8, 8)")),
    ("random-rotate-mask-other-shape", lambda c: augment.RandomRotate(seed=0)(IMG, np.zeros((8, 8))),
     raises(ValueError, "(8, 8)")),
    ("elastic-mask-other-shape", lambda c: augment.elastic_deform(IMG, np.zeros((8, 8))), raises(ValueError, "(8, 8)")),
    ("elastic-p-2", lambda c: augment.ElasticDeform(p=2), raises(ValueError, "p", "2")),
    ("displacement-grid-1", lambda c: augment.random_displacement_field((16, 16), grid=1), raises(ValueError, "grid")),
    ("displacement-sigma-negative", lambda c: augment.random_displacement_field((16, 16), sigma=-1),
     raises(ValueError, "sigma")),
    ("displacement-window-outside", lambda c: augment.random_displacement_field((16, 16), window=(10, 0, 10, 10)),
     raises(ValueError, "(10, 0, 10, 10)", "(16, 16)")),
    ("warp-field-mismatch", lambda c: augment.warp(IMG, np.zeros((2, 8, 8))),
     raises(ValueError, "(16, 16)", "(2, 8, 8)")),
    ("elastic-mask-stays-binary", lambda c: set(np.unique(augment.elastic_deform(
        IMG, MASK.astype(np.uint8), rng=np.random.default_rng(0))[1])) <= {0, 1}, OK),
    ("compose-transform-returns-one-array", lambda c: augment.Compose([_bad_compose])(IMG, MASK),
     raises(TypeError, "returned ndarray", "one array for each")),
    ("kvasir-transform-returns-float-0-255", _kv(lambda r: D.KvasirSEG(
        ids=["a"], size=16, root=r, progress=False, transform=lambda i, m: (i.astype(np.float32), m))[0]),
     raises(ValueError, "[0, 1]", "divide by 255 once")),
    ("kvasir-transform-returns-one-array", _kv(lambda r: D.KvasirSEG(
        ids=["a"], size=16, root=r, progress=False, transform=lambda i, m: i)[0]),
     raises(TypeError, "must return (image, mask)")),
    ("transform-state-round-trip", _state_round_trip, OK),
)


@pytest.mark.parametrize("fn, expect", AUG_CASES)
def test_augmentation(fn, expect, tmp_path, monkeypatch):
    _run(fn, expect, tmp_path, monkeypatch)


# --------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------
P = torch.tensor([[[0.9, 0.2], [0.7, 0.1]]])
T1 = torch.tensor([[[1, 0], [1, 0]]])
NAN = torch.tensor([[[float("nan"), 0.2], [0.7, 0.1]]])

METRIC_CASES = cases(
    ("binarize-nan-probabilities", lambda c: metrics.binarize(NAN), raises(ValueError, "1 of 4", "NaN", "diverged")),
    ("binarize-logits", lambda c: metrics.binarize(torch.tensor([-3.0, 0.2, 4.0])),
     raises(ValueError, "-3 to 4", "torch.sigmoid(logits)")),
    ("binarize-infinite", lambda c: metrics.binarize(torch.tensor([float("inf")])), raises(ValueError, "inf")),
    ("binarize-threshold-2", lambda c: metrics.binarize(P, threshold=2), raises(ValueError, "threshold", "2")),
    ("binarize-ok", lambda c: metrics.binarize(P).tolist() == [[[True, False], [True, False]]], OK),
    ("dice-nan-prediction", lambda c: metrics.dice(NAN, T1), raises(ValueError, "prediction holds NaN")),
    ("iou-nan-prediction", lambda c: metrics.iou(NAN, T1), raises(ValueError, "NaN")),
    ("precision-nan-prediction", lambda c: metrics.precision(NAN, T1), raises(ValueError, "NaN")),
    ("recall-nan-prediction", lambda c: metrics.recall(NAN, T1), raises(ValueError, "NaN")),
    ("pooled-dice-nan-prediction", lambda c: metrics.pooled_dice(NAN, T1), raises(ValueError, "NaN")),
    ("dice-nan-target", lambda c: metrics.dice(T1, NAN), raises(ValueError, "target holds NaN")),
    ("dice-probabilities-as-prediction", lambda c: metrics.dice(P, T1),
     raises(ValueError, "not binary", "metrics.binarize(probs)")),
    ("dice-0-255-target", lambda c: metrics.dice(T1, T1 * 255), raises(ValueError, "0 to 255", "mask > 127")),
    ("dice-shapes-differ", lambda c: metrics.dice(T1, torch.zeros(1, 3, 2)),
     raises(ValueError, "(1, 2, 2)", "(1, 3, 2)")),
    ("dice-two-class-channels", lambda c: metrics.dice(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)),
     raises(ValueError, "(1, 2, 4, 4)", "argmax")),
    ("dice-1d-mask", lambda c: metrics.dice(torch.zeros(4), torch.zeros(4)), raises(ValueError, "(4,)")),
    ("dice-both-empty-is-1", lambda c: metrics.dice(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)).item() == 1.0, OK),
    ("dice-numpy-bool", lambda c: abs(metrics.dice(np.array([[1, 1], [0, 0]], bool), np.array([[1, 0], [0, 0]], bool))
                                      .item() - 2 / 3) < 1e-12, OK),
    ("summarize-nan", lambda c: metrics.summarize([0.5, float("nan"), 0.7]), raises(ValueError, "1 of 3", "index 1")),
    ("summarize-empty", lambda c: metrics.summarize([]), raises(ValueError, "no values")),
    ("summarize-n-boot-0", lambda c: metrics.summarize([0.5, 0.6], n_boot=0), raises(ValueError, "n_boot")),
    ("summarize-ci-95", lambda c: metrics.summarize([0.5, 0.6], ci=95), raises(ValueError, "ci", "0.95")),
    ("masks-from-nan-logits", lambda c: train.masks_from_logits(torch.full((1, 1, 2, 2), float("nan"))),
     raises(ValueError, "4 of 4 logits are NaN")),
)


@pytest.mark.parametrize("fn, expect", METRIC_CASES)
def test_metrics(fn, expect, tmp_path, monkeypatch):
    _run(fn, expect, tmp_path, monkeypatch)


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------
NET = UNet(1, 1, features=2)


def _net(x, model=None):
    return lambda c: (model or NET)(x)


MODEL_CASES = cases(
    ("uint8-batch", _net(torch.zeros(2, 1, 32, 32, dtype=torch.uint8)),
     raises(TypeError, "torch.uint8", "x.float() / 255")),
    ("float64-batch", _net(torch.zeros(2, 1, 32, 32, dtype=torch.float64)),
     raises(TypeError, "torch.float64", "x.to(torch.float32)")),
    ("int64-batch", _net(torch.zeros(2, 1, 32, 32, dtype=torch.int64)), raises(TypeError, "torch.int64", "x.float()")),
    ("numpy-batch", _net(np.zeros((2, 1, 32, 32), np.float32)), raises(TypeError, "ndarray")),
    ("no-batch-dimension", _net(torch.zeros(1, 32, 32)), raises(ValueError, "(1, 32, 32)", "unsqueeze(0)")),
    ("channels-last", _net(torch.zeros(2, 32, 32, 1)), raises(ValueError, "(2, 32, 32, 1)", "permute(0, 3, 1, 2)")),
    ("rgb-into-grey-network", _net(torch.zeros(2, 3, 32, 32)), raises(ValueError, "(B, 1, H, W)", "(2, 3, 32, 32)")),
    ("unet-too-small", _net(torch.zeros(2, 1, 8, 8)), raises(ValueError, "8", "at least 16")),
    ("unet-batch-of-one-30px", _net(torch.zeros(1, 1, 30, 30)),
     raises(ValueError, "batch of one 30x30", "model.eval()")),
    ("unet-batch-of-one-eval-ok", lambda c: NET.eval()(torch.zeros(1, 1, 30, 30)).shape == (1, 1, 30, 30), OK),
    ("unet-odd-size-ok", lambda c: NET(torch.zeros(2, 1, 37, 45)).shape == (2, 1, 37, 45), OK),
    ("valid-unet-size-100", _net(torch.zeros(1, 1, 100, 100), UNet(1, 1, features=2, padding="valid")),
     raises(ValueError, "100", "124")),
    ("unet3plus-size-30", _net(torch.zeros(2, 3, 30, 30), UNet3Plus(3, 1, features=(2, 2, 2, 2, 2))),
     raises(ValueError, "30", "16 or 32")),
    ("unet3plus-batch-of-one-16px", _net(torch.zeros(1, 3, 16, 16), UNet3Plus(3, 1, features=(2, 2, 2, 2, 2))),
     raises(ValueError, "batch of one 16x16")),
    ("unetpp-too-small", _net(torch.zeros(2, 3, 8, 8), UNetPlusPlus(3, 1, features=2)), raises(ValueError, "8")),
    ("unet-features-0", lambda c: UNet(1, 1, features=0), raises(ValueError, "features", "0")),
    ("unet-num-classes-0", lambda c: UNet(1, 0), raises(ValueError, "num_classes", "0")),
    ("unet-dropout-1", lambda c: UNet(1, 1, dropout=1.0), raises(ValueError, "dropout", "1.0")),
    ("unet-padding-full", lambda c: UNet(1, 1, padding="full"), raises(ValueError, "'full'", "'same'", "'valid'")),
    ("predict-uint8", lambda c: train.predict(NET, torch.zeros(2, 1, 32, 32, dtype=torch.uint8)),
     raises(TypeError, "x.float() / 255")),
)


@pytest.mark.parametrize("fn, expect", MODEL_CASES)
def test_models(fn, expect, tmp_path, monkeypatch):
    NET.train()
    _run(fn, expect, tmp_path, monkeypatch)


CATEGORIES = {"data folders and files": DATA_CASES, "downloads and archives": DOWNLOAD_CASES,
              "masks and targets": TARGET_CASES, "losses and shapes": LOSS_CASES,
              "training and checkpoints": TRAIN_CASES, "configuration": CONFIG_CASES, "augmentation": AUG_CASES,
              "metrics": METRIC_CASES, "models": MODEL_CASES}


def test_the_suite_covers_every_category():
    for name, group in CATEGORIES.items():
        ids = [p.id for p in group]
        assert len(ids) == len(set(ids)), f"{name}: duplicate case ids"
        assert len(ids) >= 15, f"{name}: only {len(ids)} cases"
