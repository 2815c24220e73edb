"""Downloads on a real network, emulated: every source served from local ``file://`` files through the one
function that opens URLs, with HTTP 429 bursts, server errors, timeouts, connections cut midway and a
truncated or mismatched archive injected. Each test counts the requests it took.

The DSB2018 subset (5,967 images and masks) comes from its repository's archive at the pinned commit: one
request instead of 5,967 (checked on the real manifest, with an archive built from ``$UNET_BOOK_DATA``).
"""
from __future__ import annotations

import dataclasses
import email.message
import hashlib
import io
import os
import urllib.error
import zipfile
from pathlib import Path

import pytest

from unet_lib import data as D
from unet_lib.data import fetch

DATA = os.environ.get("UNET_BOOK_DATA")
DSB = Path(DATA or "/nonexistent") / "dsb2018-nuclei-subset"


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _http_error(url: str, code: int, retry_after: str | None = None) -> urllib.error.HTTPError:
    headers = email.message.Message()
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return urllib.error.HTTPError(url, code, {429: "Too Many Requests", 503: "Service Unavailable",
                                              404: "Not Found"}.get(code, "error"), headers, io.BytesIO())


class Network:
    """``fetch.open_url`` with faults: ``faults`` is a list of what the next requests meet, in order
    (an ``int`` HTTP status, ``"timeout"``, ``"cut"`` = the connection ends after half the bytes with a
    correct Content-Length, ``"truncated"`` = half the bytes and no Content-Length); then the real file."""

    def __init__(self, monkeypatch, faults=()):
        self.faults, self.requests, self.waits = list(faults), [], []
        self._open = fetch.open_url
        monkeypatch.setattr(fetch, "open_url", self)
        monkeypatch.setattr(fetch, "_sleep", self.waits.append)

    def __call__(self, url, offset=0, timeout=60.0):
        self.requests.append((Path(url).name, offset))
        fault = self.faults.pop(0) if self.faults else None
        if isinstance(fault, int):
            raise _http_error(url, fault, "3" if fault == 429 and len(self.requests) == 1 else None)
        if fault == "timeout":
            raise urllib.error.URLError(TimeoutError("timed out"))
        resp = self._open(url, offset=offset, timeout=timeout)
        if fault in ("cut", "truncated"):
            body = resp.read()
            resp.close()
            return _Partial(body[: len(body) // 2], declared=None if fault == "truncated" else len(body), offset=offset)
        return resp

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.requests if n == name)


class _Partial:
    def __init__(self, body: bytes, declared: int | None, offset: int):
        self._f = io.BytesIO(body)
        self.status = 206 if offset else 200
        self.headers = {} if declared is None else {"Content-Length": str(declared)}

    def read(self, n=-1):
        return self._f.read(n)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def _per_file_dataset(tmp_path, monkeypatch, files: dict[str, bytes]) -> D.DatasetInfo:
    src = tmp_path / "server"
    for rel, content in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(content)
    manifest = tmp_path / "net.sha256"
    manifest.write_text("".join(f"{_sha(c)}  {rel}\n" for rel, c in files.items()))
    info = D.DatasetInfo(name="net", title="Net", folder="net", homepage="https://example.org/net/", citation="-",
                         terms="-", layout="files", manifest=str(manifest), file_urls=(("", src.as_uri() + "/"),))
    monkeypatch.setitem(D.DATASETS, "net", info)
    return info


def _archive_dataset(tmp_path, monkeypatch, files: dict[str, bytes], archive_bytes: dict[str, bytes] | None = None,
                     per_file: bool = True) -> D.DatasetInfo:
    """A dataset like DSB2018's registry entry: an archive (top folder repo-<commit>/) and per-file URLs."""
    info = _per_file_dataset(tmp_path, monkeypatch, files)
    archive = tmp_path / "server" / "repo.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for rel, content in (archive_bytes or files).items():
            z.writestr(f"repo-abc123/{rel}", content)
    info = dataclasses.replace(info, archive=archive.as_uri(), archive_members=(("repo-abc123/", ""),),
                               file_urls=info.file_urls if per_file else ())
    monkeypatch.setitem(D.DATASETS, "net", info)
    return info


FILES = {f"stage1_train/{k}/images/{k}.png": bytes([k]) * (200 + k) for k in range(60)}


def test_a_429_burst_is_waited_out_with_exponential_backoff(tmp_path, monkeypatch):
    files = {"a.bin": b"a" * 100, "b.bin": b"b" * 50}
    _per_file_dataset(tmp_path, monkeypatch, files)
    net = Network(monkeypatch, [429, 429, 429, 429])
    folder = D.download("net", root=tmp_path / "data", progress=False, workers=1)
    assert {rel: (folder / rel).read_bytes() for rel in files} == files
    assert net.waits == [3.0, 2.0, 4.0, 8.0], "Retry-After: 3 honoured, then 1 s doubling (attempt 1, 2, 3)"
    assert len(net.requests) == 6, "4 refused + 1 per file"


def test_server_errors_timeouts_and_cut_connections_are_retried_and_resumed(tmp_path, monkeypatch):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(10_000))
    net = Network(monkeypatch, [503, "timeout", "cut"])
    dest = fetch.download_file(src.as_uri(), tmp_path / "out" / "big.bin", sha256=_sha(src.read_bytes()),
                               progress=False)
    assert dest.read_bytes() == src.read_bytes()
    assert net.requests == [("big.bin", 0)] * 3 + [("big.bin", 5_000)], "the cut one resumed from its 5,000 bytes"
    assert net.waits == [1.0, 2.0, 4.0]


def test_a_missing_file_and_a_refused_connection_fail_at_once(tmp_path, monkeypatch):
    src = tmp_path / "x.bin"
    src.write_bytes(b"x")
    net = Network(monkeypatch, [404])
    with pytest.raises(urllib.error.HTTPError):
        fetch.download_file(src.as_uri(), tmp_path / "out" / "x.bin", progress=False)
    assert len(net.requests) == 1 and net.waits == [], "a 404 does not get better by waiting"
    assert fetch._retry_after(urllib.error.URLError(ConnectionRefusedError()), 0) is None
    assert fetch._retry_after(urllib.error.URLError(OSError("Name or service not known")), 0) is None


def test_retries_give_up_after_the_last_attempt(tmp_path, monkeypatch):
    src = tmp_path / "x.bin"
    src.write_bytes(b"x")
    net = Network(monkeypatch, [429] * fetch.RETRIES)
    with pytest.raises(urllib.error.HTTPError, match="Too Many"):
        fetch.download_file(src.as_uri(), tmp_path / "out" / "x.bin", progress=False)
    assert len(net.requests) == fetch.RETRIES and not (tmp_path / "out" / "x.bin").exists()


def test_a_truncated_archive_is_deleted_and_fetched_again_once(tmp_path, monkeypatch, capsys):
    _archive_dataset(tmp_path, monkeypatch, FILES)
    net = Network(monkeypatch, ["truncated"])
    folder = D.download("net", root=tmp_path / "data", progress=True)
    assert all((folder / rel).read_bytes() == content for rel, content in FILES.items())
    assert net.count("repo.zip") == 2 and len(net.requests) == 2, "the archive twice, no file one by one"
    assert "downloading it again" in capsys.readouterr().err
    assert not (folder / ".downloads").exists()


def test_a_mismatched_archive_fails_after_one_refetch_and_leaves_no_file_under_its_name(tmp_path, monkeypatch):
    changed = dict(FILES)
    changed[next(iter(FILES))] = b"not the manifest's bytes"
    _archive_dataset(tmp_path, monkeypatch, FILES, archive_bytes=changed, per_file=False)
    net = Network(monkeypatch)
    with pytest.raises(D.ChecksumError, match="downloaded twice and failed both times") as err:
        D.download("net", root=tmp_path / "data", progress=False)
    assert "Get Net from its official page" in str(err.value)
    assert net.count("repo.zip") == 2
    assert not (tmp_path / "data" / "net" / next(iter(FILES))).exists()
    assert not list((tmp_path / "data").rglob("*.zip*")), "the bad archive is not kept for the next try"


def test_a_few_missing_files_come_one_by_one_not_in_the_whole_archive(tmp_path, monkeypatch):
    _archive_dataset(tmp_path, monkeypatch, FILES)
    Network(monkeypatch)
    folder = D.download("net", root=tmp_path / "data", progress=False)
    lost = sorted(FILES)[:3]
    for rel in lost:
        (folder / rel).unlink()
    net = Network(monkeypatch)
    D.download("net", root=tmp_path / "data", progress=False)
    assert sorted(name for name, _ in net.requests) == sorted(Path(rel).name for rel in lost)


@pytest.mark.skipif(not (DSB / "subset.tsv").is_file(), reason="the real DSB2018 subset is needed: set UNET_BOOK_DATA")
def test_the_dsb2018_subset_takes_one_archive_request_not_5967(tmp_path, monkeypatch):
    """The registry's real entry and manifest; the archive laid out as GitHub's for the pinned commit, built
    from the real files plus a file of the repository that is not in the subset (it is not extracted)."""
    info = D.DATASETS["dsb2018-nuclei-subset"]
    prefix = info.archive_members[0][0]
    assert prefix == f"kaggle-dsbowl-2018-dataset-fixes-{info.archive.rsplit('/', 1)[1]}/stage1_train/"
    archive = tmp_path / "server" / "2b0c5dd.zip"
    archive.parent.mkdir()
    manifest = D.read_manifest(info)
    with zipfile.ZipFile(archive, "w") as z:
        for rel in manifest:
            if rel.startswith("stage1_train/"):
                z.write(DSB / rel, prefix + rel[len("stage1_train/"):])
        z.writestr(prefix + "not-in-the-subset/images/x.png", b"other image")
    monkeypatch.setitem(D.DATASETS, info.name, dataclasses.replace(info, archive=archive.as_uri()))
    net = Network(monkeypatch, [429, 429])
    folder = D.download(info.name, root=tmp_path / "data", progress=False)
    assert net.count(archive.name) == 3 and len(net.requests) == 4, "2 refused + the archive + subset.tsv"
    assert len([p for p in folder.rglob("*") if p.is_file()]) == len(manifest) == 5968
    D.verify(info.name, root=tmp_path / "data")
