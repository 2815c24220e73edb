"""Headline numbers with their provenance, one JSON file per notebook and profile (DESIGN section 6.8).

``save_results("03_unet_from_scratch", {...}, seed=0, wall_time_s=...)`` writes
``results/03_unet_from_scratch.<profile>.json``; the book, the experiments chapter
and anyone checking a claim read the same file.
"""
from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import torch

from .config import Profile, repo_root, results_dir
from .config import profile as active_profile

__all__ = ["provenance", "save_results", "load_results", "git_commit", "device_name", "Timer", "KVASIR_DICE"]

#: the headline metric of the Kvasir-SEG chapters (chapter 07's cross-chapter table shows it)
KVASIR_DICE = "Kvasir-SEG validation Dice (mean per image)"


def git_commit() -> str:
    """The commit that made this run: the checkout's (``+dirty`` if its tree has changes); for a package
    installed with pip from a git URL (Colab), the commit pip installed (its ``direct_url.json``, PEP 610);
    else ``"unknown"``."""
    root = repo_root()
    if not (root / "_config.yml").exists():
        return installed_commit()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not sha:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def installed_commit() -> str:
    """The commit that pip installed ``unet_lib`` from (``pip install "unet_lib @ git+<url>"``), or ``"unknown"``
    (installed from a folder, a wheel or an index)."""
    try:
        text = importlib.metadata.distribution("unet_lib").read_text("direct_url.json")
        commit = json.loads(text)["vcs_info"]["commit_id"] if text else None
    except (importlib.metadata.PackageNotFoundError, KeyError, TypeError, ValueError):
        commit = None
    return commit if isinstance(commit, str) and commit else "unknown"


def device_name(device: torch.device | str | None = None) -> str:
    """A human-readable device: the GPU's name, or the CPU with its thread count."""
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    cpu = platform.processor() or platform.machine()
    return f"CPU ({cpu}, {torch.get_num_threads()} threads, {os.cpu_count()} cores)"


def provenance(seed: int | None, wall_time_s: float | None, p: Profile | None = None,
               device: torch.device | str | None = None) -> dict:
    """Where a number came from: profile, device, seed, git commit, wall time, versions, date."""
    p = p or active_profile()
    return {"profile": p.name, "device": device_name(device), "seed": seed, "git_commit": git_commit(),
            "wall_time_s": None if wall_time_s is None else round(float(wall_time_s), 1),
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def save_results(notebook: str, numbers: dict, *, seed: int | None, wall_time_s: float | None,
                 headline: Mapping[str, float] | None = None, metric: str | None = None,
                 p: Profile | None = None, device: torch.device | str | None = None) -> Path:
    """Write ``{"notebook", "headline", "numbers", "provenance"}`` to ``results/<notebook>.<profile>.json``.

    Args:
        notebook: the notebook's name without ``.ipynb``.
        numbers: everything the chapter measured (any JSON-able nesting; numpy arrays and tensors become
            lists, NaN and infinities become ``null``, so the file is strict JSON).
        seed, wall_time_s: for the provenance.
        headline: the chapter's headline numbers, ``{label: value}`` (e.g. ``{"U-Net": 0.726}``), stored
            as ``{"metric": metric, "values": headline}`` under the one key ``"headline"`` that every
            chapter uses, so that chapter 07's cross-chapter table reads them without a branch per chapter.
        metric: what the headline values are, e.g. :data:`KVASIR_DICE`.
        p, device: the profile and device of the run (default: the active ones).

    Returns:
        The path written.

    Raises:
        ValueError: a headline without its metric, or a headline value that is not a finite number.
        TypeError: something JSON cannot hold (a set, an object, a tuple key); names where it is.
        NotADirectoryError: ``UNET_BOOK_RESULTS`` points at a file.
    """
    p = p or active_profile()
    out = results_dir() / f"{notebook}.{p.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if headline is not None and not metric:
        raise ValueError("a headline needs its metric, e.g. metric=results.KVASIR_DICE")
    values = None
    if headline is not None:
        values = {}
        for k, v in headline.items():
            try:
                values[str(k)] = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"headline value {k!r} is {v!r} ({type(v).__name__}), not a number: pass the "
                                 "measured float, e.g. headline={'U-Net': summary['mean']}") from None
            if not math.isfinite(values[str(k)]):
                raise ValueError(f"headline value {k!r} is {values[str(k)]}: a headline is a measured number (a NaN "
                                 "comes from an empty validation set or a diverged run); fix the run, or leave the "
                                 "label out of the headline and keep it in numbers (stored as null)")
    doc = {"notebook": notebook, "headline": None if values is None else {"metric": metric, "values": values},
           "numbers": numbers, "provenance": provenance(seed, wall_time_s, p, device)}
    text = json.dumps(_plain(doc, "the results"), indent=2, allow_nan=False) + "\n"   # strict JSON: NaN -> null
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return out


def load_results(notebook: str, profile_name: str | None = None) -> dict:
    """Read a results file written by :func:`save_results`."""
    name = profile_name or active_profile().name
    path = results_dir() / f"{notebook}.{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no results at {path}: run notebooks/{notebook}.ipynb with UNET_BOOK_PROFILE={name}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the results file {path}: {e}; it is truncated or was edited by hand: delete "
                         f"it and run notebooks/{notebook}.ipynb with UNET_BOOK_PROFILE={name} again") from e


def _plain(x, where: str = "numbers"):
    """``x`` as plain JSON values: arrays and tensors as lists, numpy scalars as numbers, NaN and
    infinities as ``None`` (JSON has no NaN; ``null`` reads back as "not measured").

    Raises:
        TypeError: a value or key JSON cannot hold (names where it is).
    """
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):   # numpy arrays and scalars, tensors
        x = x.tolist()
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        out = {}
        for k, v in x.items():
            if isinstance(k, bool) or not isinstance(k, (str, int, float)):
                raise TypeError(f"cannot store the key {k!r} ({type(k).__name__}) of {where} in a results file: "
                                f"JSON keys are strings; use e.g. {str(k)!r} or '-'.join(...)")
            out[str(k)] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(x, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(x)]
    raise TypeError(f"cannot store {where} = {type(x).__name__} in a results file: use numbers, strings, lists "
                    f"and dicts (a set? use sorted(...))")


class Timer:
    """``with Timer() as t: ...; t.seconds`` — wall time of a block."""

    def __enter__(self):
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False
