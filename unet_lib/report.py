"""Measured prose: the sentences and tables in which a chapter quotes its own numbers.

A chapter never types a measured number into a markdown cell: a rebuild, another profile or a change
to the recipe would make it stale. Instead a code cell (tagged ``remove-input`` in the book) composes
the text from the run's variables and shows it with :func:`show`, so the page, Colab and Jupyter all
read the numbers of the run above them. Claims that depend on the outcome come from :func:`difference`,
which says "ahead", "behind" or "within noise" from a paired bootstrap interval instead of assuming
a winner.

    report.show(f"In this run ({report.run_facts(p, device, T0)}) FCN-8s reached "
                f"{report.ci(summary['FCN-8s'])} Dice; {report.difference(d8, d32, 'FCN-8s', 'FCN-32s')}.")
"""
from __future__ import annotations

import html
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from .compare import paired_difference
from .config import Profile
from .results import load_results

__all__ = ["ci", "signed_ci", "difference", "verdict", "table", "run_facts", "show", "provenance_box",
           "reference_results", "REFERENCE_DIR"]


def _fmt(x: float, digits: int, signed: bool = False) -> str:
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def ci(summary: Mapping[str, float], digits: int = 3, signed: bool = False) -> str:
    """``"0.726 [0.682, 0.768]"``: a mean with its interval, from :func:`unet_lib.metrics.summarize`."""
    for key in ("mean", "ci_low", "ci_high"):
        if key not in summary:
            raise KeyError(f"ci() needs a summary with 'mean', 'ci_low' and 'ci_high' (metrics.summarize), "
                           f"got keys {sorted(summary)}")
    m, lo, hi = (_fmt(summary[k], digits, signed) for k in ("mean", "ci_low", "ci_high"))
    return f"{m} [{lo}, {hi}]"


def signed_ci(summary: Mapping[str, float], digits: int = 3) -> str:
    """``"+0.069 [+0.034, +0.105]"``: a difference with its interval."""
    return ci(summary, digits, signed=True)


def verdict(summary: Mapping[str, float]) -> str:
    """``"ahead"`` if the interval of ``a - b`` lies above 0, ``"behind"`` if below, else ``"within noise"``."""
    if summary["ci_low"] > 0:
        return "ahead"
    if summary["ci_high"] < 0:
        return "behind"
    return "within noise"


def difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, name_a: str, name_b: str, *,
               metric: str = "Dice", digits: int = 3, **summarize_kwargs) -> str:
    """A sentence that compares two methods scored on the same images, true for any outcome.

    Args:
        a, b: per-image scores of the two methods, same images in the same order.
        name_a, name_b: how the text names them.
        metric: the score's name in the sentence.
        digits: decimals of the numbers.
        **summarize_kwargs: passed to :func:`unet_lib.compare.paired_difference` (``n_boot``, ``seed``, ``ci``).

    Returns:
        e.g. ``"FCN-8s is ahead of FCN-32s by +0.140 [+0.107, +0.172] Dice (paired, per image)"``, or
        ``"FCN-8s and FCN-16s are within noise of each other: FCN-8s - FCN-16s = +0.004 [-0.016, +0.026]
        Dice (paired, per image), an interval that includes zero"``.
    """
    d = paired_difference(a, b, **summarize_kwargs)
    numbers = f"{signed_ci(d, digits)} {metric} (paired, per image)"
    v = verdict(d)
    if v == "within noise":
        return (f"{name_a} and {name_b} are within noise of each other: {name_a} - {name_b} = {numbers}, "
                "an interval that includes zero")
    return f"{name_a} is {'ahead of' if v == 'ahead' else 'behind'} {name_b} by {numbers}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; each cell is shown with ``str`` (format numbers before passing them)."""
    if any(len(r) != len(header) for r in rows):
        bad = next(r for r in rows if len(r) != len(header))
        raise ValueError(f"every row needs {len(header)} cells like the header {list(header)}, got {list(bad)}")
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def run_facts(p: Profile, device: torch.device | str, t0: float | None = None) -> str:
    """Where the numbers came from: ``"`cpu` profile, cpu (2 threads), 3.5 min, 2026-12-03 23:40 UTC"``.

    Args:
        p: the active profile.
        device: the device the chapter ran on.
        t0: the chapter's ``time.perf_counter()`` at its start; the elapsed time is stated when given.
    """
    device = torch.device(device)
    n = torch.get_num_threads()
    where = f"{device.type} ({n} thread{'s' if n != 1 else ''})" if device.type == "cpu" else str(device)
    parts = [f"`{p.name}` profile", where]
    if t0 is not None:
        parts.append(f"{(time.perf_counter() - t0) / 60:.1f} min so far")
    parts.append(datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    return ", ".join(parts)


def show(text: str) -> None:
    """Display ``text`` as markdown (rendered in the book, Jupyter and Colab); prints it outside IPython."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython ships with the requirements
        print(text)
        return
    if get_ipython() is None:
        print(text)
    else:
        display(Markdown(text))


#: full-profile results of a reference GPU run, shipped with the package (``<notebook>.full.json``, written
#: by :func:`unet_lib.results.save_results` on the GPU and copied here with their provenance)
REFERENCE_DIR = Path(__file__).resolve().parent / "reference_results"


def reference_results(notebook: str, profile_name: str = "full") -> dict | None:
    """The recorded reference run of ``notebook`` in ``profile_name`` (a GPU run), or ``None`` if none is."""
    path = REFERENCE_DIR / f"{notebook}.{profile_name}.json"
    return json.loads(path.read_text()) if path.exists() else None


class _Box:
    """An HTML box (rendered on the static page, in Jupyter and in Colab), with a plain-text fallback."""

    def __init__(self, html_text: str, text: str):
        self.html, self.text = html_text, text

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text


def _facts(prov: Mapping) -> str:
    minutes = prov.get("wall_time_s")
    wall = "?" if minutes is None else f"{minutes / 60:.1f} min"
    commit = str(prov.get("git_commit", "unknown"))
    short = commit[:10] + ("+dirty" if commit.endswith("+dirty") else "") if commit != "unknown" else commit
    return (f"profile {prov.get('profile')}, {prov.get('device')}, seed {prov.get('seed')}, commit {short}, "
            f"{prov.get('date')}, wall time {wall} (torch {prov.get('torch')}, Python {prov.get('python')})")


def provenance_box(notebook: str, p: Profile | None = None, reference_profile: str = "full") -> _Box:
    """The box that ends a chapter: how this page's numbers were made, and the reference run beside them.

    Reads the chapter's results file (:func:`unet_lib.results.save_results`, so call it after that) for the
    profile, device, threads, seed, commit, date and wall time of this run, and the reference run of
    ``reference_profile`` recorded in :data:`REFERENCE_DIR` (the `full` profile on a GPU), if any: its
    headline numbers are shown beside this run's, each labelled with its own provenance.
    """
    doc = load_results(notebook, p.name if p is not None else None)
    ref = reference_results(notebook, reference_profile)
    prov = doc["provenance"]
    head = doc.get("headline") or {"metric": "", "values": {}}
    this_name = f"this run ({prov.get('profile')})"
    lines = [f"This page: {_facts(prov)}."]
    rows = []
    ref_values = (ref or {}).get("headline", {}) or {}
    ref_values = ref_values.get("values", {}) if ref_values else {}
    show_ref = ref is not None and prov.get("profile") != reference_profile
    for label, value in head["values"].items():
        r = ref_values.get(label)
        rows.append([label, f"{value:.3f}"] + ([("—" if r is None else f"{r:.3f}")] if show_ref else []))
    if show_ref:
        lines.append(f"Reference run: {_facts(ref['provenance'])}.")
    elif ref is None and prov.get("profile") != reference_profile:
        lines.append(f"Reference run in the `{reference_profile}` profile: none recorded yet (it needs a GPU; "
                     f"see the book's setup page).")
    header = ["", this_name] + ([f"reference ({reference_profile})"] if show_ref else [])
    cell = "padding:2px 8px;border-bottom:1px solid #ddd"
    trs = "".join("<tr>" + "".join(f'<td style="{cell}">{html.escape(str(c))}</td>' for c in r) + "</tr>"
                  for r in rows)
    ths = "".join(f'<th style="{cell};text-align:left">{html.escape(h)}</th>' for h in header)
    table_html = (f'<p style="margin:4px 0">{html.escape(head["metric"])}:</p>'
                  f'<table style="border-collapse:collapse"><tr>{ths}</tr>{trs}</table>') if rows else ""
    body = "".join(f'<p style="margin:4px 0">{html.escape(x)}</p>' for x in lines)
    box = ('<div class="admonition note unet-provenance" style="border-left:4px solid #6c8ebf;'
           'padding:6px 12px;background:#f5f8fc;margin:1em 0">'
           '<p class="admonition-title" style="font-weight:bold;margin:2px 0">How this page was made</p>'
           f"{body}{table_html}</div>")
    text = "How this page was made\n" + "\n".join(lines)
    if rows:
        text += "\n" + head["metric"] + ":\n" + "\n".join("  " + " | ".join(r) for r in rows)
    return _Box(box, text)
