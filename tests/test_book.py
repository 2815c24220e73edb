"""The book's wiring: table of contents, configuration and notebook anatomy (DESIGN sections 6 and 7)."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MARK = "NBVAL_CHECK_OUTPUT"


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part.get("chapters", [])]
    return files


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def test_every_toc_entry_exists():
    for entry in _toc_files():
        matches = [p for p in (ROOT / (entry + ext) for ext in (".md", ".ipynb")) if p.exists()]
        assert matches, f"_toc.yml lists {entry!r}, but neither {entry}.md nor {entry}.ipynb exists"


def test_every_chapter_notebook_is_in_the_toc_in_reading_order():
    listed = [f for f in _toc_files() if f.startswith("notebooks/")]
    assert listed == [f"notebooks/{p.stem}" for p in NOTEBOOKS], "chapters must appear in _toc.yml in numeric order"
    assert len(NOTEBOOKS) >= 6


def test_book_fails_on_a_cell_error_and_has_a_bibliography():
    cfg = _config()
    assert cfg["execute"]["execute_notebooks"] == "force"
    assert cfg["execute"]["allow_errors"] is False
    assert cfg["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    assert (ROOT / cfg["bibtex_bibfiles"][0]).exists()
    # tables printed with display(Markdown(...)) need a renderer that knows tables (commonmark does not)
    assert cfg["sphinx"]["config"]["nb_render_markdown_format"] == "myst"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_cells_name_the_configured_repository(path):
    url = _config()["repository"]["url"].rstrip("/")
    slug = url.removeprefix("https://github.com/")
    nb = nbformat.read(path, as_version=4)
    badge = f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{path.name}"
    assert badge in nb.cells[0].source, f"{path.name}: the Colab badge must point to {badge}"
    install = [c.source for c in nb.cells if c.cell_type == "code" and "google.colab" in c.source]
    assert install and f"git+{url}" in install[0], f"{path.name}: the Colab setup cell must install from {url}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_committed_without_outputs_except_checked_cells(path):
    nb = nbformat.read(path, as_version=4)
    checked = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if MARK in cell.source:
            checked += 1
            assert cell.outputs, f"{path.name} cell {i}: checked cell without a stored expected output " \
                                 "(run notebooks/tools/refresh_outputs.py)"
        else:
            assert not cell.outputs, f"{path.name} cell {i}: outputs must be stripped " \
                                     "(python notebooks/tools/refresh_outputs.py --strip-only ...)"
    assert checked >= 2, f"{path.name}: deterministic facts belong in '# {MARK}' cells"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_anatomy(path):
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert re.search(r"^## Summary", text, re.M), f"{path.name}: no '## Summary' section"
    assert re.search(r"^## Exercises", text, re.M), f"{path.name}: no '## Exercises' section"
    assert "{footbibliography}" in text and "{footcite}" in text, (
        f"{path.name}: cite the papers ({{footcite}}) and list them ({{footbibliography}})")
    chapter = path.stem[:2]
    checks = set(re.findall(rf"ch{chapter}\.(check_\w+)\(", code))
    assert len(checks) >= 3, f"{path.name}: at least three exercises with checkers from unet_lib.exercises.ch{chapter}"
    solutions = [c for c in nb.cells if "hide-cell" in c.metadata.get("tags", [])]
    assert len(solutions) >= 3, f"{path.name}: each exercise needs a hidden, executed solution (tag 'hide-cell')"
    assert f'save_results("{path.stem}"' in code, (
        f"{path.name}: headline numbers must go to results/{path.stem}.<profile>.json")
    assert "data.ensure(" in code, f"{path.name}: the setup must fetch (or find) its datasets with data.ensure"
    # one skeleton: the setup helper, one timer name, one headline key, the one recipe
    assert "p, device = config.setup(SEED)" in code, f"{path.name}: the setup cell calls config.setup(SEED)"
    assert re.search(r"^T0 = time\.perf_counter\(\)", code, re.M), f"{path.name}: the notebook's timer is T0"
    assert re.search(rf'save_results\("{path.stem}".{{0,300}}?headline=', code, re.S), \
        f"{path.name}: save the headline numbers with save_results(..., headline=..., metric=...)"
    for repeated in ("seed_everything(", "fit(", "DataLoader(train", "torch.utils.data.Dataset)", "(Dataset):"):
        assert repeated not in code, (f"{path.name}: '{repeated}' repeats the training recipe or a crop dataset; "
                                      "use compare.train_contender and data.RandomCrops")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_settings_are_uppercase_constants(path):
    nb = nbformat.read(path, as_version=4)
    settings = [c.source for c in nb.cells
                if c.cell_type == "code" and re.search(r"^# -*\s*settings", c.source, re.I | re.M)]
    assert len(settings) == 1, f"{path.name}: one settings cell, starting with a '# Settings' comment"
    for line in settings[0].splitlines():
        target = re.match(r"^([A-Za-z_][\w, ]*?)\s*=(?!=)", line)
        if target:
            for name in target.group(1).split(","):
                assert name.strip().isupper(), f"{path.name}: setting {name.strip()!r} should be an UPPERCASE constant"


def test_one_global_bibliography_so_no_citation_is_duplicated():
    """Chapters cite with {footcite} and list their own {footbibliography}; the one {bibliography}
    (book/bibliography.md, :all:) holds every key once. A second {bibliography} would duplicate keys."""
    pages = [p for p in ROOT.glob("book/*.md")] + NOTEBOOKS
    with_bib = [p.name for p in pages if "```{bibliography}" in p.read_text()]
    assert with_bib == ["bibliography.md"], with_bib
