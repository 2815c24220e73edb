#!/usr/bin/env python
"""Download a dataset of the book from its official home and verify it.

    python data_scripts/download.py kvasir-seg [--root DIR] [--force]
    python data_scripts/download.py all

Idempotent and resumable: files already present with the right SHA-256 are kept, partial
downloads (``*.part``) are resumed. Without network it explains where to get the files and
where to put them. The data folder is ``--root``, else ``$UNET_BOOK_DATA``, else ``./data``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from unet_lib.data import DATASETS, ChecksumError, DatasetNotFoundError, download  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=[*DATASETS, "all"], help="dataset to download, or 'all'")
    parser.add_argument("--root", type=Path, default=None,
                        help="data folder that holds the dataset folders (default: $UNET_BOOK_DATA or ./data)")
    parser.add_argument("--force", action="store_true", help="download every file again")
    parser.add_argument("--keep-archive", action="store_true", help="keep downloaded archives in <folder>/.downloads/")
    parser.add_argument("--workers", type=int, default=8, help="parallel per-file downloads (default 8)")
    args = parser.parse_args(argv)

    names = list(DATASETS) if args.name == "all" else [args.name]
    status = 0
    for name in names:
        try:
            folder = download(name, root=args.root, force=args.force, workers=args.workers,
                              keep_archive=args.keep_archive)
        except (DatasetNotFoundError, ChecksumError) as e:
            print(f"[{name}] FAILED\n{e}\n", file=sys.stderr)
            status = 1
            continue
        info = DATASETS[name]
        print(f"[{name}] ok: {folder}  (verified against unet_lib/manifests/{info.manifest})")
        print(f"    terms: {info.terms}\n    cite:  {info.citation}")
    return status


if __name__ == "__main__":
    sys.exit(main())
