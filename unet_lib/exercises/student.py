"""The student edition: every chapter notebook without its solutions and without outputs.

``make student`` runs ``python -m unet_lib.exercises.student``, which writes ``_build/student/<chapter>.ipynb``
for every ``notebooks/NN_*.ipynb``:

* a **solution cell** is removed: a code cell tagged ``solution``, or tagged ``hide-cell`` and calling a
  checker (``chNN.check_...(``), which is how every chapter writes its hidden, executed solutions;
* every other cell is kept, the exercise stubs and their checker cells included, with its outputs and
  execution counts cleared (the ``# NBVAL_CHECK_OUTPUT`` cells' stored outputs too);
* the Colab badge points at the student copy when ``_config.yml`` says where it is published::

      student_edition:
        repository: https://github.com/unet-book/unet-book-student   # default: repository.url
        branch: main                                                 # default: repository.branch
        folder: ""                                                   # the notebooks' folder there

  Without a ``student_edition`` section the badges keep pointing at the instructor notebooks.

Each exercise of the chapter (:func:`unet_lib.exercises.verdicts.exercises`) must keep a cell that calls
its checker, or the build fails: a student edition that silently lost an exercise would be graded
"missing" for every student. Run in the smoke profile, a student notebook runs to its end with every
checker saying "Not yet" (CI checks it with :mod:`unet_lib.exercises.grade`).
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import verdicts

__all__ = ["is_solution", "checker_calls", "student_notebook", "badge_target", "build", "main"]

_CALL = re.compile(r"\bch(\d\d)\.(check_\w+)\s*\(")
_BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"']+?\.ipynb")


def checker_calls(source: str) -> list[tuple[str, str]]:
    """The checkers a cell calls, as ``(chapter, name)``.

    Example: ``checker_calls("ch03.check_center_crop(f)")`` -> ``[("03", "check_center_crop")]``.
    """
    return [(m.group(1), m.group(2)) for m in _CALL.finditer(source)]


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def is_solution(cell: Any) -> bool:
    """Whether a notebook cell is an exercise's solution (tagged ``solution``, or ``hide-cell`` calling a checker)."""
    if cell.get("cell_type") != "code":
        return False
    tags = _tags(cell)
    return "solution" in tags or "hide-cell" in tags and bool(checker_calls(cell.get("source", "")))


def badge_target(config: dict, name: str) -> str | None:
    """The Colab URL of student notebook ``name`` from ``_config.yml``'s ``student_edition``, or ``None``.

    Example: with ``repository: https://github.com/o/r-student``, ``branch: main``, ``folder: ""``,
    ``badge_target(cfg, "02_fcn.ipynb")`` is
    ``https://colab.research.google.com/github/o/r-student/blob/main/02_fcn.ipynb``.
    """
    edition = config.get("student_edition")
    if not edition:
        return None
    repo = config.get("repository") or {}
    url = str(edition.get("repository") or repo.get("url") or "").rstrip("/")
    if not url.startswith("https://github.com/"):
        raise ValueError(f"student_edition.repository must be a https://github.com/<owner>/<name> url, got {url!r}")
    slug = url.removeprefix("https://github.com/").removesuffix(".git")
    branch = edition.get("branch") or repo.get("branch") or "main"
    folder = str(edition.get("folder") or "").strip("/")
    path = f"{folder}/{name}" if folder else name
    launch = str((config.get("launch_buttons") or {}).get("colab_url") or "https://colab.research.google.com")
    return f"{launch.rstrip('/')}/github/{slug}/blob/{branch}/{path}"


@dataclass(frozen=True)
class Edition:
    """What :func:`student_notebook` did to one notebook."""

    removed: int                 # solution cells removed
    exercises: tuple[str, ...]   # checkers still called by the kept cells, "ch01.check_otsu", in order
    badge: str | None            # the badge's new target, None if unchanged


def student_notebook(nb: Any, name: str, config: dict | None = None) -> tuple[Any, Edition]:
    """A student copy of notebook ``nb`` (an ``nbformat`` node, left unchanged) and what was done.

    Raises:
        ValueError: an exercise of the chapter has no stub cell calling its checker once the solutions
            are gone (the stub was tagged like a solution, or deleted).
    """
    out = copy.deepcopy(nb)
    kept, removed = [], 0
    for cell in out.cells:
        if is_solution(cell):
            removed += 1
            continue
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
            cell.get("metadata", {}).pop("execution", None)
        kept.append(cell)
    out.cells = kept
    called = [f"ch{c}.{n}" for cell in kept if cell.get("cell_type") == "code" for c, n in checker_calls(cell.source)]
    chapter = name[:2]
    if chapter in verdicts.chapters():
        lost = [n for n in verdicts.exercises(chapter) if f"ch{chapter}.{n}" not in called]
        if lost:
            raise ValueError(f"{name}: no cell calls {', '.join(lost)} once the solutions are removed; each exercise "
                             "needs a stub cell (not tagged hide-cell/solution) that calls its checker")
    target = badge_target(config or {}, name)
    if target is not None:
        for cell in out.cells:
            if cell.get("cell_type") == "markdown" and _BADGE.search(cell.source):
                cell.source = _BADGE.sub(target, cell.source)
                break
        else:
            target = None
    out.metadata.setdefault("unet_book", {})["edition"] = "student"
    return out, Edition(removed, tuple(dict.fromkeys(called)), target)


def _load_config(path: Path) -> dict:
    if not path.exists():
        return {}
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def build(notebooks: list[Path], out: Path, config: dict) -> list[tuple[Path, Edition]]:
    """Write the student edition of ``notebooks`` into ``out``; returns each written path and its :class:`Edition`."""
    import nbformat

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        student, edition = student_notebook(nb, path.name, config)
        if edition.removed == 0:
            raise ValueError(f"{path}: no solution cell found (tag 'hide-cell' on a cell that calls a checker)")
        target = out / path.name
        nbformat.write(student, target)
        written.append((target, edition))
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m unet_lib.exercises.student [NOTEBOOK ...] [--out DIR] [--config _config.yml]``."""
    parser = argparse.ArgumentParser(prog="python -m unet_lib.exercises.student", description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/[0-9][0-9]_*.ipynb")
    parser.add_argument("--out", type=Path, default=Path("_build/student"), help="default: _build/student")
    parser.add_argument("--config", type=Path, default=Path("_config.yml"), help="default: _config.yml")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(Path("notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        parser.error("no notebooks given and none found in notebooks/")
    config = _load_config(args.config)
    try:
        written = build(notebooks, args.out, config)
    except ValueError as exc:
        print(f"student edition: {exc}", file=sys.stderr)
        return 1
    for target, edition in written:
        badge = f"badge -> {edition.badge}" if edition.badge else "badge unchanged"
        print(f"{target}: {edition.removed} solutions removed, {len(edition.exercises)} exercises kept, {badge}")
    if not config.get("student_edition"):
        print("note: _config.yml has no student_edition section, so the Colab badges still open the instructor "
              "notebooks (see book/instructors.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
