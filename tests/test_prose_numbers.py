"""No measured number is typed into a chapter's prose (issue #16).

Measured numbers reach the page from the run that the reader sees: a code cell composes the sentence or
table with :mod:`unet_lib.report` and shows it as markdown. A markdown cell may still quote a decimal
number that no run can change (a paper's figure, a fixed setting such as the 0.5 decision threshold):
each such number is listed in the notebook's metadata, ``metadata["unet_book"]["literal_numbers"]``,
with the reason. A reason starting with "literature" needs a ``{footcite}`` in the same paragraph.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: fixed settings every chapter may name without listing them
COMMON = {"0.5": "the decision threshold on probabilities"}
DECIMAL = re.compile(r"(?<![\w.\-/])[+\-−]?\d+\.\d+(?!\w|\.\d)")


def prose(markdown: str) -> str:
    """The text of a markdown cell without math, code, links' targets and HTML attributes."""
    text = re.sub(r"\$\$.*?\$\$", " ", markdown, flags=re.S)
    text = re.sub(r"\$[^$\n]*\$", " ", text)
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return re.sub(r"<[^>]*>", " ", text)


def decimals(paragraph: str) -> list[str]:
    return [m.lstrip("+-−") for m in DECIMAL.findall(prose(paragraph))]


def test_prose_filter_keeps_numbers_and_drops_math_and_code():
    assert decimals("Dice 0.726 [0.682, 0.768], threshold `0.35`, $p = 0.5$, v1.2.3, 2.5 %") == \
        ["0.726", "0.682", "0.768", "2.5"]
    assert decimals("it ends below 0.004.") == ["0.004"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_markdown_quotes_no_measured_number(path):
    nb = nbformat.read(path, as_version=4)
    literal = {**COMMON, **nb.metadata.get("unet_book", {}).get("literal_numbers", {})}
    typed, uncited = [], []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for paragraph in re.split(r"\n\s*\n", cell.source):
            for number in decimals(paragraph):
                if number not in literal:
                    typed.append(f"cell {index}: {number} in {paragraph.strip()[:80]!r}")
                elif literal[number].startswith("literature") and "{footcite}" not in paragraph:
                    uncited.append(f"cell {index}: {number} ({literal[number]}) needs a {{footcite}} beside it")
    assert not typed, (f"{path.name}: measured numbers typed into markdown (compose them from the run with "
                       "unet_lib.report in a code cell, or list a fixed number with its reason in "
                       "metadata.unet_book.literal_numbers):\n" + "\n".join(typed))
    assert not uncited, f"{path.name}:\n" + "\n".join(uncited)
