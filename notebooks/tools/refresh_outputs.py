"""Store the expected outputs of a notebook's checked cells, and strip every other output.

Notebooks are committed without outputs, except cells marked ``# NBVAL_CHECK_OUTPUT``
whose output nbval compares (DESIGN section 6). After editing a notebook run::

    python notebooks/tools/refresh_outputs.py notebooks/03_unet_from_scratch.ipynb

It executes the notebook in the ``smoke`` profile (from the ``notebooks/`` folder, as
nbval does), keeps the outputs of checked cells, and clears the rest. ``--strip-only``
clears outputs without executing (checked cells keep what they have).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat

MARK = "NBVAL_CHECK_OUTPUT"


def strip(nb: nbformat.NotebookNode, keep_checked: bool = True) -> nbformat.NotebookNode:
    """Clear outputs and counters, except the outputs of checked cells."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        checked = MARK in cell.source
        if not (checked and keep_checked):
            cell.outputs = []
        else:  # keep stdout/results, drop stderr noise (warnings, progress bars)
            cell.outputs = [o for o in cell.outputs
                            if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
        # nbval compares only reference cells that have an execution count (and fails "Unrun reference
        # cell has outputs" otherwise), so checked cells with outputs keep one
        cell.execution_count = (cell.execution_count or 1) if (checked and keep_checked and cell.outputs) else None
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--strip-only", action="store_true", help="do not execute; only clear unchecked outputs")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = ap.parse_args(argv)
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        if not args.strip_only:
            from nbclient import NotebookClient

            os.environ["UNET_BOOK_PROFILE"] = "smoke"
            NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent.resolve())}}).execute()
        nbformat.write(strip(nb), path)
        print(f"refreshed {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
