#!/usr/bin/env python
"""Check a dataset folder against the SHA-256 manifest that ships with unet_lib.

    python data_scripts/verify.py kvasir-seg [--root DIR] [--quick]
    python data_scripts/verify.py all

Exit status 0 when every file is present and intact, 1 otherwise (the message names the
first missing or bad files and how to fix them). ``--quick`` only checks that files exist.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from unet_lib.data import DATASETS, ChecksumError, DatasetNotFoundError, dataset_dir, read_manifest, verify  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=[*DATASETS, "all"], help="dataset to check, or 'all'")
    parser.add_argument("--root", type=Path, default=None,
                        help="data folder that holds the dataset folders (default: $UNET_BOOK_DATA or ./data)")
    parser.add_argument("--quick", action="store_true", help="only check that every file exists (no hashing)")
    args = parser.parse_args(argv)

    names = list(DATASETS) if args.name == "all" else [args.name]
    status = 0
    for name in names:
        start = time.perf_counter()
        try:
            verify(name, root=args.root, full=not args.quick)
        except (DatasetNotFoundError, ChecksumError) as e:
            print(f"[{name}] FAILED\n{e}\n", file=sys.stderr)
            status = 1
            continue
        n = len(read_manifest(name))
        what = "present" if args.quick else "present and intact (sha256)"
        print(f"[{name}] ok: {n} files {what} in {dataset_dir(name, args.root)} "
              f"({time.perf_counter() - start:.1f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
