"""The book's reference run: chapters executed in the ``full`` profile on one GPU, results kept with provenance.

The rendered book is built on a CPU; its chapters show this run's headline numbers beside their own
(:func:`unet_lib.report.provenance_box`), each labelled with device, date and commit. On a GPU machine::

    python notebooks/tools/reference_run.py                   # chapters 03 and 07, the full profile
    python notebooks/tools/reference_run.py 02 05 --timeout 3600
    git add unet_lib/reference_results && git commit          # the chapters then show the numbers

Every chapter runs as a student's Colab session would: its notebook executed top to bottom (nbclient,
from ``notebooks/``), with ``UNET_BOOK_PROFILE`` set and the result files written to a fresh folder;
``<notebook>.<profile>.json`` is checked (a headline, a provenance naming the device) and copied to
``--out`` (default ``unet_lib/reference_results/``, shipped with the package), with ``RUN.json``
beside it: the command, the GPU, the versions and each chapter's wall time.

Sizing: chapters 03 and 07 (the default) are estimated at 18.4 and 11.2 minutes on a T4 at 25 %
utilisation (``benchmarks/full_profile_cost.py``; book/setup.md), 30 minutes together. An H100 or H200 has
about 10 times a T4's dense half-precision throughput at these convolution sizes even at a lower
utilisation, which puts the two chapters together at about 3 to 5 minutes of GPU work, plus the CPU side
(data loading, evaluation, figures): the default is meant to fit 10 minutes there. These are estimates:
``RUN.json`` records what it took.

CI's rehearsal of the full profile is this script on a CPU (``make rehearsal``: every chapter, the
``rehearsal`` profile, results to ``_build/reference-rehearsal/``), so it cannot rot while no GPU is at hand. Without a
CUDA device ``--profile full`` refuses to run (a CPU would take hours, and its numbers are not the
reference); ``--allow-cpu`` overrides that for the rehearsal.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
DEFAULT_CHAPTERS = ("03", "07")


def chapter_notebooks(chapters: list[str]) -> list[Path]:
    """``03`` or ``03_unet_from_scratch`` -> the notebook; an unknown chapter is an error naming the choices."""
    found = []
    available = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if chapters == ["all"]:
        chapters = available
    for ch in chapters:
        matches = [name for name in available if name == ch or name.startswith(f"{ch}_")]
        if len(matches) != 1:
            raise SystemExit(f"reference_run: no single chapter {ch!r}; choose from {', '.join(available)}")
        found.append(NOTEBOOKS / f"{matches[0]}.ipynb")
    return found


def run_notebook(path: Path, profile: str, results: Path, timeout: int) -> float:
    """Execute one notebook from ``notebooks/`` with the profile and results folder set; its wall time (s)."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in ("UNET_BOOK_PROFILE", "UNET_BOOK_RESULTS")}
    os.environ.update(UNET_BOOK_PROFILE=profile, UNET_BOOK_RESULTS=str(results))
    try:
        t0 = time.perf_counter()
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
        return time.perf_counter() - t0
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def checked_result(results: Path, notebook: str, profile: str) -> dict:
    """The chapter's results file, refused when it lacks what the book shows (headline, provenance)."""
    path = results / f"{notebook}.{profile}.json"
    if not path.is_file():
        raise SystemExit(f"reference_run: {notebook} ran but wrote no {path.name} into {results}")
    doc = json.loads(path.read_text())
    prov, head = doc.get("provenance") or {}, doc.get("headline") or {}
    missing = [k for k in ("profile", "device", "git_commit", "date", "wall_time_s", "torch") if not prov.get(k)]
    if missing or prov.get("profile") != profile or not head.get("values"):
        raise SystemExit(f"reference_run: {path} lacks {missing or 'its headline or the right profile'}")
    return doc


def gpu_facts() -> dict:
    import torch

    facts = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
             "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                     gpu_count=torch.cuda.device_count())
    return facts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("chapters", nargs="*", default=list(DEFAULT_CHAPTERS),
                    help="chapter numbers, or all (default 03 07)")
    ap.add_argument("--profile", default="full", help="the profile to run (default full)")
    ap.add_argument("--out", type=Path, default=ROOT / "unet_lib" / "reference_results",
                    help="where the results files go (default unet_lib/reference_results)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    ap.add_argument("--allow-cpu", action="store_true", help="run without a GPU (CI's rehearsal of this script)")
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("reference_run: no CUDA GPU here. The reference run is the full profile on a GPU; on a CPU it "
              "would take hours and its numbers would not be the reference. Run it on a GPU machine (or pass "
              "--allow-cpu with --profile rehearsal to test the script).", file=sys.stderr)
        return 2
    notebooks = chapter_notebooks(args.chapters)
    args.out.mkdir(parents=True, exist_ok=True)
    run = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
           "profile": args.profile, "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           **gpu_facts(), "chapters": {}}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="unet-book-reference-") as tmp:
        for path in notebooks:
            print(f"{path.stem}: running in the {args.profile} profile ...", flush=True)
            try:
                seconds = run_notebook(path, args.profile, Path(tmp), args.timeout)
            except TimeoutError as e:
                # A cell past its timeout, once: seen in CI as a kernel that had finished its cell while the
                # client still waited for its reply (both idle). Run the chapter again in a fresh kernel; a
                # cell that is really too slow times out again and fails the run.
                print(f"{path.stem}: a cell ran past {args.timeout} s ({e}); running the chapter again once",
                      flush=True)
                seconds = run_notebook(path, args.profile, Path(tmp), args.timeout)
            doc = checked_result(Path(tmp), path.stem, args.profile)
            shutil.copyfile(Path(tmp) / f"{path.stem}.{args.profile}.json",
                            args.out / f"{path.stem}.{args.profile}.json")
            run["chapters"][path.stem] = {"wall_s": round(seconds, 1), "device": doc["provenance"]["device"],
                                          "headline": doc["headline"]["values"]}
            print(f"{path.stem}: {seconds / 60:.1f} min on {doc['provenance']['device']}; "
                  + ", ".join(f"{k} {v:.3f}" for k, v in doc["headline"]["values"].items()), flush=True)
    run["total_wall_s"] = round(time.perf_counter() - t_all, 1)
    (args.out / "RUN.json").write_text(json.dumps(run, indent=2) + "\n")
    print(f"{len(notebooks)} chapter(s) in {run['total_wall_s'] / 60:.1f} min; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
