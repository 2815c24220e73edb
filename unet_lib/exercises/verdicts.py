"""Where the checkers leave their verdicts for the grader, and which exercises each chapter has.

Every checker (through :func:`unet_lib.exercises.checker`) calls :func:`record` with its
:class:`~unet_lib.exercises.Feedback`. When ``$UNET_BOOK_VERDICTS`` names a file, the verdict is
appended to it as one JSON line::

    {"chapter": "01", "exercise": "check_otsu", "status": "not yet", "message": "...", "time": 1764806400.0}

``status`` is ``"correct"``, ``"not yet"`` or ``"error"`` (the student's code raised). Without the
variable nothing is written: a student working in Colab never sees a file appear. The grader
(:mod:`unet_lib.exercises.grade`) sets the variable for each notebook's kernel and reads the file back
with :func:`read`, so no printed text is ever parsed.

The exercises a chapter has are the ``check_*`` functions its module ``unet_lib.exercises.chNN``
exports (:func:`exercises`); a submitted notebook that lacks one of them has lost that exercise.
"""
from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import time
from pathlib import Path
from typing import Any

__all__ = ["ENV", "record", "read", "chapter_of", "chapters", "exercises"]

ENV = "UNET_BOOK_VERDICTS"
"""The environment variable naming the verdicts file (JSON lines, appended)."""


def chapter_of(module: str) -> str:
    """``"unet_lib.exercises.ch01"`` -> ``"01"``; a module outside the chapters keeps its last name."""
    last = module.rsplit(".", 1)[-1]
    match = re.fullmatch(r"ch(\d\d)", last)
    return match.group(1) if match else last


def record(feedback: Any, module: str) -> None:
    """Append ``feedback`` (a :class:`~unet_lib.exercises.Feedback`) to ``$UNET_BOOK_VERDICTS``, if set.

    Args:
        feedback: the checker's verdict; its ``name`` is the exercise (the checker's function name).
        module: the checker's module, e.g. ``"unet_lib.exercises.ch03"`` (gives the chapter).

    A file that cannot be written is skipped: recording must never break a student's checker.
    """
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({"chapter": chapter_of(module), "exercise": feedback.name, "status": feedback.status,
                       "message": feedback.message, "time": time.time()})
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError:
        pass


def read(path: str | os.PathLike) -> list[dict]:
    """The verdicts recorded in ``path``, oldest first (``[]`` if there is no file); broken lines are skipped."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and {"chapter", "exercise", "status"} <= set(entry):
            out.append(entry)
    return out


def chapters() -> list[str]:
    """The chapters that have checkers: ``["01", "02", ...]`` (the ``chNN`` modules of this package)."""
    names = (m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]))
    return sorted(chapter_of(n) for n in names if re.fullmatch(r"ch\d\d", n))


def exercises(chapter: str) -> list[str]:
    """The exercises of a chapter, in the book's order: the ``check_*`` names in ``chNN.__all__``.

    Example: ``exercises("03")`` -> ``["check_output_size", "check_center_crop", "check_double_conv_params"]``.
    """
    if chapter not in chapters():
        raise ValueError(f"no checkers for chapter {chapter!r}; the chapters are {', '.join(chapters())}")
    module = importlib.import_module(f"{__package__}.ch{chapter}")
    return [name for name in module.__all__ if name.startswith("check_")]
