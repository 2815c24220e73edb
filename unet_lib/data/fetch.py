"""Checksums, verification and downloads: :func:`verify`, :func:`download`, :func:`ensure`, safe extraction."""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import stat
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO

from tqdm import tqdm

from .registry import (
    ChecksumError,
    DatasetInfo,
    DatasetNotFoundError,
    ExtraFilesError,
    UnknownIdError,
    _root,
    dataset_dir,
    get_info,
    instructions,
    manifest_path,
    read_manifest,
)

_CHUNK = 1 << 20  # 1 MiB read/write/hash chunks
_USER_AGENT = "unet-book-data/1.0 (+https://github.com; educational course book)"


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


#: suffixes of the download machinery's own temporary files (resumable ``.part`` downloads and so on)
_TEMP_SUFFIXES = (".part", ".extract", ".tmp")


def extra_files(name: str | DatasetInfo, root: str | os.PathLike | None = None) -> list[str]:
    """Files in a dataset's data folders that its manifest does not list, as sorted relative paths.

    The data folders are the top-level folders of the manifest's paths (``images/``, ``train/``,
    ``stage1_train/``, ...); notes at the top level (``README.md``, ``SOURCE.md``), hidden files and
    folders (``.downloads/``, ``.DS_Store``) and resumable partial downloads are not data and are not
    listed. Such stray files are never loaded (the loaders read the official file lists), but they
    mean the folder is not exactly the dataset.

    Used by :func:`verify`.
    """
    info = get_info(name)
    folder = _root(root) / info.folder
    manifest = read_manifest(info)
    tops = sorted({rel.split("/")[0] for rel in manifest if "/" in rel})
    extras = []
    for top in tops:
        base = folder / top
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            rel = path.relative_to(folder).as_posix()
            if (path.is_file() and rel not in manifest and not any(part.startswith(".") for part in rel.split("/"))
                    and not rel.endswith(_TEMP_SUFFIXES)):
                extras.append(rel)
    return sorted(extras)


def _check_extras(info: DatasetInfo, root: str | os.PathLike | None) -> None:
    folder = _root(root) / info.folder
    extras = extra_files(info, root)
    if extras:
        raise ExtraFilesError(
            f"dataset '{info.name}': {len(extras)} file(s) in {folder} are not part of the dataset (not in the "
            f"manifest {manifest_path(info)}), first {folder / extras[0]}\n{_listing(extras, folder)}\n"
            f"Fix: move them out of {folder} (keep your own images in another folder); the loaders ignore "
            f"them, but the folder is not the dataset the book's numbers were produced with.")


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
        paths: check only these manifest paths (default: all of them, and no file beyond them:
            see :func:`extra_files`).

    Returns:
        None; returns quietly when the folder is complete and intact.

    Raises:
        DatasetNotFoundError: the folder, or a listed file, is missing (names the file).
        ChecksumError: a file's content differs (names the first bad files and the fix).
        ExtraFilesError: (a ``ChecksumError``) data files the manifest does not list (names them).
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
    if paths is None:
        _check_extras(info, root)


# --------------------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------------------
class _FileResponse:
    """A tiny HTTP-like response for ``file://`` URLs that honours ``Range: bytes=N-``."""

    def __init__(self, path: Path, offset: int) -> None:
        self._f = open(path, "rb")  # noqa: SIM115  (closed by close() / __exit__)
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

    def __enter__(self) -> _FileResponse:  # noqa: PYI034  (typing.Self needs Python 3.11)
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


#: attempts per file for failures worth retrying (HTTP 429 and 5xx, timeouts, dropped connections)
RETRIES = 6
#: first wait between attempts in seconds; doubled after every failure (1, 2, 4, 8, 16 s), at most MAX_WAIT
BACKOFF_S, MAX_WAIT_S = 1.0, 60.0
_sleep = time.sleep          # tests replace it to count the waits without waiting
_TRANSIENT = (TimeoutError, ConnectionError, http.client.HTTPException)


def _retry_after(err: BaseException, attempt: int) -> float | None:
    """Seconds to wait before the next attempt when ``err`` is worth retrying, else ``None``.

    HTTP 429 (too many requests) and 5xx (a server's trouble), timeouts and dropped connections are
    retried with exponential backoff; a ``Retry-After`` header (seconds) is honoured up to
    :data:`MAX_WAIT_S`. Other errors (404, 403, a bad URL) are final.
    """
    if isinstance(err, urllib.error.HTTPError):
        if err.code != 429 and err.code < 500:
            return None
        header = err.headers.get("Retry-After") if err.headers is not None else None
        if header and header.strip().isdigit():
            return min(float(header), MAX_WAIT_S)
    else:
        cause = err.reason if isinstance(err, urllib.error.URLError) else err
        # a timeout or a connection cut midway may pass; no name resolution or a refused connection means no
        # network (or a wrong URL), which waiting does not fix
        if not isinstance(cause, _TRANSIENT) or isinstance(cause, ConnectionRefusedError):
            return None
    return min(BACKOFF_S * 2 ** attempt, MAX_WAIT_S)


def _fetch_into(url: str, part: Path, progress: bool, desc: str) -> None:
    """Append ``url``'s bytes to ``part``, resuming from its size (HTTP ``Range``); one attempt."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        resp = open_url(url, offset=offset)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # range not satisfiable: the .part is already complete
            return
        raise
    with resp:
        status = getattr(resp, "status", None) or getattr(resp, "code", None) or 200
        if offset and status != 206:  # server ignored the range: start over
            offset = 0
        length = resp.headers.get("Content-Length") if resp.headers is not None else None
        total = offset + int(length) if length else None
        with open(part, "ab" if offset else "wb") as f, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc, leave=False, disable=not progress) as bar:
            while chunk := resp.read(_CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
        if total is not None and part.stat().st_size < total:   # the connection ended early
            raise http.client.IncompleteRead(b"", total - part.stat().st_size)


def download_file(url: str, dest: str | os.PathLike, sha256: str | None = None, force: bool = False,
                  progress: bool = True, desc: str | None = None, retries: int = RETRIES) -> Path:
    """Download one URL to ``dest``: resumable, retried, checked, atomic.

    Bytes go to ``<dest>.part``; an existing ``.part`` is resumed with an HTTP ``Range``
    request (restarted from zero when the server ignores it). HTTP 429 and 5xx answers,
    timeouts and connections that end early are retried up to ``retries`` times with
    exponential backoff (:data:`BACKOFF_S` doubling, ``Retry-After`` honoured), each retry
    resuming where the last one stopped. When ``sha256`` is given the finished file is checked
    before ``os.replace`` moves it into place, so ``dest`` never holds a partial or corrupt file.

    Args:
        url: source URL (``https://`` or ``file://``).
        dest: destination file.
        sha256: expected SHA-256 hex digest, or ``None`` to skip the check.
        force: download even if ``dest`` already exists (and matches).
        progress: show a tqdm bar (bytes).
        desc: label of the bar (default: the file name).
        retries: attempts for failures worth retrying.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        ChecksumError: the downloaded bytes do not match ``sha256`` (the ``.part`` is deleted).
        urllib.error.URLError, OSError: network errors that are final, or still failing after
            ``retries`` attempts (not wrapped here).

    Used by :func:`download`.
    """
    dest = Path(dest)
    if dest.is_file() and not force and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if force and part.exists():
        part.unlink()
    for clean_try in range(2):  # a second, clean attempt when a resumed file turns out corrupt
        resumed = part.exists() and part.stat().st_size > 0
        for attempt in range(max(1, retries)):
            try:
                _fetch_into(url, part, progress, desc or dest.name)
                break
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                wait = _retry_after(e, attempt)
                if wait is None or attempt == max(1, retries) - 1:
                    raise
                _sleep(wait)
        if sha256 is not None:
            got = sha256_file(part)
            if got != sha256:
                part.unlink()
                if clean_try == 0 and resumed:
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
                 progress: bool = False, sha256: Mapping[str, str] | None = None) -> list[Path]:
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
        sha256: optional ``{destination path relative to target: SHA-256}``: only these files are
            extracted, each hashed as it is written and moved to its name only when it matches (so
            a file that fails its checksum never appears under its final name).

    Returns:
        The extracted files.

    Raises:
        ValueError: an unsafe member (the message names it), an unknown archive format, or a
            corrupt archive (a member that cannot be read; nothing partial is left behind).
        ChecksumError: an extracted file does not match ``sha256`` (it is deleted).

    Used by :func:`download` (Kvasir-SEG zip).
    """
    archive = Path(archive)
    target = Path(target).resolve()
    target.mkdir(parents=True, exist_ok=True)
    mapping = (list(members.items()) if isinstance(members, Mapping)
               else (list(members) if members is not None else None))

    if zipfile.is_zipfile(archive):
        handle: zipfile.ZipFile | tarfile.TarFile = zipfile.ZipFile(archive)
    elif tarfile.is_tarfile(archive):
        handle = tarfile.open(archive)  # noqa: SIM115  (closed by the `with handle:` below)
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
                link = (info.linkname if isinstance(info, tarfile.TarInfo)
                        else handle.read(info).decode("utf-8", "replace"))
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
            if dest is not None and sha256 is not None and not is_dir:
                if dest.relative_to(target).as_posix() not in sha256:
                    continue  # not a file of the dataset
            if dest is not None:
                plan.append((info, dest, is_dir))
        # every member passed the checks: only now write anything
        for info, dest, is_dir in tqdm(plan, desc=f"extract {archive.name}", unit="file", leave=False,
                                       disable=not progress):
            if is_dir:
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".extract")
            digest = hashlib.sha256()
            try:
                src: BinaryIO | None = (handle.open(info) if isinstance(handle, zipfile.ZipFile)
                                        else handle.extractfile(info))
                assert src is not None
                with src, open(tmp, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
            except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as e:
                tmp.unlink(missing_ok=True)
                raise ValueError(f"cannot extract {info.filename if isinstance(info, zipfile.ZipInfo) else info.name!r}"
                                 f" from {archive}: {e}; the archive is corrupt or truncated: delete it and download "
                                 "it again") from e
            rel = dest.relative_to(target).as_posix()
            if sha256 is not None and digest.hexdigest() != sha256[rel]:
                tmp.unlink(missing_ok=True)
                raise ChecksumError(f"{rel} extracted from {archive} has SHA-256 {digest.hexdigest()}, expected "
                                    f"{sha256[rel]}; it was not written to {dest}. The archive differs from the one "
                                    f"the manifest was made from: delete it and download again, or get the files "
                                    f"from the dataset's official page.")
            os.replace(tmp, dest)
            written.append(dest)
    return written


def _network_error(info: DatasetInfo, root: str | os.PathLike | None, url: str,
                   err: BaseException) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"could not download dataset '{info.name}' ({url}: {err}).\n"
        f"No network? Then get the files by hand.\n" + instructions(info, root))


def _remove_empty(*folders: Path) -> None:
    """Remove folders that a failed download left empty (deepest first), so a later
    :func:`dataset_dir` reports the dataset as missing rather than incomplete."""
    for f in folders:
        with contextlib.suppress(OSError):
            f.rmdir()  # only succeeds when empty


#: a dataset whose archive files also have their own URLs fetches up to this many missing files one by one
FEW_FILES = 50


def _from_archive(info: DatasetInfo, folder: Path, root: str | os.PathLike | None, files: Mapping[str, str], *,
                  force: bool, progress: bool, keep_archive: bool) -> None:
    """Download ``info.archive`` (one request, resumable, retried) and extract the manifest's ``files`` from it.

    An archive that cannot be extracted (truncated, corrupt) or whose files fail their checksums (a mismatched
    or changed archive) is deleted and fetched once more from scratch; a second failure is raised with its
    cause. A file that fails its checksum is never written under its final name (:func:`safe_extract`).
    """
    assert info.archive is not None
    fname = PurePosixPath(urllib.parse.urlparse(info.archive).path).name or f"{info.name}.archive"
    dest = folder / ".downloads" / fname
    for attempt in range(2):
        try:
            arc = download_file(info.archive, dest, sha256=info.archive_sha256, force=force or attempt > 0,
                                progress=progress, desc=f"{info.name} {fname}")
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            _remove_empty(folder / ".downloads", folder)
            raise _network_error(info, root, info.archive, e) from e
        try:
            safe_extract(arc, folder, members=info.archive_members, progress=progress, sha256=files)
            break
        except (ChecksumError, ValueError) as e:
            arc.unlink(missing_ok=True)          # a corrupt or changed archive is never used again
            if attempt == 1:
                _remove_empty(arc.parent)
                raise type(e)(f"{e}\n(the archive {info.archive} was downloaded twice and failed both times: "
                              f"the source may have changed; get the files by hand)\n"
                              + instructions(info, root)) from e
            if progress:
                print(f"{info.name}: the archive could not be used ({str(e).splitlines()[0][:160]}); "
                      "downloading it again", file=sys.stderr)
    if not keep_archive:
        arc.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            arc.parent.rmdir()


def download(name: str | DatasetInfo, root: str | os.PathLike | None = None, force: bool = False,
             progress: bool = True, workers: int = 8, keep_archive: bool = False) -> Path:
    """Download a dataset from its official home into ``root/<folder>`` and verify it.

    Idempotent: files already present with the right SHA-256 are kept, so a folder that
    already holds the verified dataset is used as it is, without any network access.
    Only missing or corrupt files are fetched: an archive (Kvasir-SEG's zip, the DSB2018 repository at
    its pinned commit) in one request when one of its files is needed (up to :data:`FEW_FILES` files that
    also have their own URLs are fetched one by one instead), per-file sources one by one (``workers`` in
    parallel). Every download is resumable (``.part`` + HTTP ``Range``), retried with backoff on HTTP 429,
    5xx and timeouts (:func:`download_file`) and atomic; an archive that turns out corrupt or mismatched
    is deleted and fetched again once.

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
        _check_extras(info, root)
        return folder
    folder.mkdir(parents=True, exist_ok=True)

    archived = [p for p in needed if info.from_archive(p)]
    one_by_one = [p for p in needed if not info.from_archive(p)]
    if archived and len(archived) <= FEW_FILES and all(map(info.has_file_url, archived)):
        one_by_one, archived = needed, []      # a few files with their own URLs: not the whole archive again
    if archived:
        _from_archive(info, folder, root, {p: manifest[p] for p in archived},
                      force=force, progress=progress, keep_archive=keep_archive)

    jobs = info.file_downloads(one_by_one, include_archived=True)
    if jobs:
        def fetch(job: tuple[str, str]) -> Path:
            return download_file(job[0], folder / job[1], sha256=manifest[job[1]], force=force, progress=False)

        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool, tqdm(
                total=len(jobs), desc=f"{info.name} files", unit="file", leave=False, disable=not progress) as bar:
            futures = [pool.submit(fetch, job) for job in jobs]
            for job, fut in zip(jobs, futures):
                try:
                    fut.result()
                except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                    pool.shutdown(wait=True, cancel_futures=True)
                    _remove_empty(*sorted({(folder / j[1]).parent for j in jobs}, key=lambda p: -len(p.parts)), folder)
                    raise _network_error(info, root, job[0], e) from e
                bar.update(1)
    verify(info, root, full=True, paths=needed)
    _check_extras(info, root)
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
