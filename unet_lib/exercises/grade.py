"""The grader: run submitted notebooks, collect every checker's verdict, write a table.

Usage::

    python -m unet_lib.exercises.grade submissions/ [more notebooks or folders ...] \\
        [--profile smoke] [--timeout 1800] [--out grades/] [--executed grades/executed] [--expect correct]

Each notebook runs in its own fresh kernel (``nbclient``), in its own folder, with
``$UNET_BOOK_VERDICTS`` naming a file where every checker it calls appends its verdict
(:mod:`unet_lib.exercises.verdicts`): nothing printed is parsed. A cell that raises does not stop the
notebook (later exercises are still graded); a notebook that cannot be read, whose kernel dies, or that
runs past ``--timeout`` seconds gets that status and keeps the verdicts it reached. Each notebook's
exercises are its chapter's checkers (the ``NN_`` of its name, else the ``chNN`` it imports), so an
exercise whose checker cell was deleted shows as ``missing``.

Writes ``grades.csv`` (one row per notebook, one column per exercise: ``Correct``, ``Not yet: <hint>``,
``error: <hint>``, ``missing`` or ``not run``) and ``grades.md`` (a table per chapter with each
exercise's pass rate, then the hints). ``--expect correct`` / ``--expect not-yet`` exits with status 1
unless every notebook ran cleanly and every exercise has that verdict (CI uses both).

The grader trusts the notebook: code in it runs with the grader's rights and could fake a verdict. Grade
submissions on a machine (or in a container) you are happy to run students' code on.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import verdicts
from .student import checker_calls

__all__ = ["Exercise", "Graded", "grade_notebook", "grade", "write_csv", "summary", "main"]

_STATUS_WORD = {"correct": "Correct", "not yet": "Not yet", "error": "error", "missing": "missing",
                "not run": "not run"}


@dataclass(frozen=True)
class Exercise:
    """One exercise of one notebook: ``status`` is correct / not yet / error / missing / not run."""

    chapter: str
    name: str        # the checker, "check_otsu"
    status: str
    message: str = ""

    @property
    def column(self) -> str:
        """The table's column: ``"ch01.otsu"``."""
        return f"ch{self.chapter}.{self.name.removeprefix('check_')}"

    def cell(self, hint: bool = True) -> str:
        """``"Correct"``, ``"Not yet: <hint>"``, ``"error: <hint>"``, ``"missing"``, ``"not run"``."""
        word = _STATUS_WORD[self.status]
        return f"{word}: {self.message}" if hint and self.message and self.status in ("not yet", "error") else word


@dataclass
class Graded:
    """One notebook's grade: how the run went (``run``: ok / errors / timeout / failed) and its exercises."""

    notebook: str                      # as shown in the table
    path: Path
    run: str = "ok"
    detail: str = ""                   # the cells that raised, the timeout, why it failed
    seconds: float = 0.0
    chapters: list[str] = field(default_factory=list)
    exercises: list[Exercise] = field(default_factory=list)

    @property
    def correct(self) -> int:
        return sum(e.status == "correct" for e in self.exercises)

    @property
    def run_text(self) -> str:
        return f"{self.run} ({self.detail})" if self.detail else self.run


def _chapters(nb, path: Path) -> list[str]:
    """A notebook's chapters: the ``NN_`` of its file name, else every ``chNN`` its code imports or calls."""
    known = verdicts.chapters()
    match = re.match(r"(\d\d)[_\-. ]", path.name)
    if match and match.group(1) in known:
        return [match.group(1)]
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code") if nb is not None else ""
    found = re.findall(r"\bch(\d\d)\b", code)
    return [c for c in dict.fromkeys(found) if c in known]


def _errors(nb) -> dict[int, str]:
    """Cell index -> ``"NameError: name 'x' is not defined"`` for every cell whose output is an error."""
    out = {}
    for k, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if o.get("output_type") == "error":
                out[k] = f"{o.get('ename', 'Error')}: {str(o.get('evalue', ''))[:200]}"
    return out


def _exercises(nb, chapters: list[str], recorded: list[dict], errors: dict[int, str], finished: bool) -> list[Exercise]:
    last = {(v["chapter"], v["exercise"]): v for v in recorded}      # the notebook's final word on each
    out = []
    for chapter in chapters:
        for name in verdicts.exercises(chapter):
            verdict = last.get((chapter, name))
            if verdict is not None:
                out.append(Exercise(chapter, name, verdict["status"], str(verdict.get("message", ""))))
                continue
            cells = [k for k, c in enumerate(nb.cells) if c.cell_type == "code"
                     and (chapter, name) in checker_calls(c.source)] if nb is not None else []
            broken = [k for k in cells if k in errors]
            if broken:
                out.append(Exercise(chapter, name, "error", f"cell {broken[0]} raised {errors[broken[0]]} before the "
                                                             "checker could run"))
            elif not cells and nb is not None:
                out.append(Exercise(chapter, name, "missing", f"no cell calls ch{chapter}.{name} (the checker cell "
                                                              "was deleted or edited)"))
            else:
                why = "the notebook stopped before this cell" if not finished else "the checker cell did not run"
                out.append(Exercise(chapter, name, "not run", why))
    return out


def grade_notebook(path: Path, *, shown: str | None = None, profile: str | None = None, timeout: float = 1800,
                   kernel_name: str | None = None, executed: Path | None = None) -> Graded:
    """Execute one notebook in a fresh kernel and grade it (never raises for a broken notebook).

    Args:
        path: the notebook.
        shown: its name in the tables (default: the file name).
        profile: ``UNET_BOOK_PROFILE`` for its kernel (default: the environment's).
        timeout: seconds for the whole notebook.
        kernel_name: the kernel (default: the notebook's own, else ``python3``).
        executed: a folder to write the executed notebook to (outputs and all), to return to the student.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    path = Path(path)
    graded = Graded(shown or path.name, path)
    start = time.monotonic()
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # not JSON, not a notebook, unreadable
        graded.run, graded.detail = "failed", f"not a readable notebook: {type(exc).__name__}: {str(exc)[:150]}"
        graded.chapters = _chapters(None, path)
        graded.exercises = _exercises(None, graded.chapters, [], {}, finished=False)
        return graded
    graded.chapters = _chapters(nb, path)
    finished = False
    with tempfile.TemporaryDirectory(prefix="unet-grade-") as tmp:
        record = Path(tmp) / "verdicts.jsonl"
        env = {**os.environ, verdicts.ENV: str(record), "UNET_BOOK_RESULTS": str(Path(tmp) / "results")}
        if profile:
            env["UNET_BOOK_PROFILE"] = profile
        deadline = start + timeout
        client = NotebookClient(
            nb, kernel_name=kernel_name or nb.metadata.get("kernelspec", {}).get("name") or "python3",
            allow_errors=True, timeout=int(timeout), timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
            resources={"metadata": {"path": str(path.parent.resolve())}})
        try:
            client.execute(env=env)
            finished = True
        except CellTimeoutError:
            graded.run, graded.detail = "timeout", f"stopped after {timeout:g} s"
        except DeadKernelError:
            graded.run, graded.detail = "failed", "the kernel died (out of memory, or the notebook exited it)"
        except Exception as exc:  # the kernel could not start, a broken cell format, ...
            graded.run, graded.detail = "failed", f"{type(exc).__name__}: {str(exc)[:150]}"
        recorded = verdicts.read(record)
    graded.seconds = time.monotonic() - start
    errors = _errors(nb)
    if finished and errors:
        graded.run = "errors"
        graded.detail = f"{len(errors)} cell{'s' if len(errors) > 1 else ''} raised: " + ", ".join(
            f"cell {k} {e.split(':')[0]}" for k, e in list(errors.items())[:5])
    graded.exercises = _exercises(nb, graded.chapters, recorded, errors, finished)
    if executed is not None:
        executed.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, executed / graded.notebook.replace("/", "__"))
    return graded


def _collect(items: list[Path]) -> list[tuple[Path, str]]:
    """Notebook paths and their names in the table: relative to a folder's parent, else as given."""
    out = []
    for item in items:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            out += [(p, p.relative_to(item.parent).as_posix()) for p in found]
        else:
            out.append((item, item.as_posix()))
    return out


def grade(items: list[Path], *, progress: bool = False, **options) -> list[Graded]:
    """Grade every notebook in ``items`` (notebooks or folders, searched recursively), one after another."""
    results = []
    for path, shown in _collect([Path(i) for i in items]):
        result = grade_notebook(path, shown=shown, **options)
        results.append(result)
        if progress:
            print(f"{shown}: {result.run_text}, {result.correct}/{len(result.exercises)} correct, "
                  f"{result.seconds:.0f} s", flush=True)
    return results


def _columns(results: list[Graded]) -> list[str]:
    chapters = sorted({c for r in results for c in r.chapters})
    return [Exercise(c, n, "").column for c in chapters for n in verdicts.exercises(c)]


def write_csv(results: list[Graded], path: Path) -> None:
    """``grades.csv``: notebook, chapter, run, seconds, correct, total, then one column per exercise."""
    columns = _columns(results)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["notebook", "chapter", "run", "seconds", "correct", "total", *columns])
        for r in results:
            cells = {e.column: e.cell() for e in r.exercises}
            w.writerow([r.notebook, " ".join(r.chapters), r.run_text, f"{r.seconds:.1f}", r.correct,
                        len(r.exercises), *(cells.get(c, "") for c in columns)])


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary(results: list[Graded], *, profile: str | None = None, timeout: float | None = None) -> str:
    """``grades.md``: per chapter a table (a row per notebook, a column per exercise), pass rates, then the hints."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# Grades: {len(results)} notebook{'s' if len(results) != 1 else ''}", "",
             f"Graded {when}, profile `{profile or os.environ.get('UNET_BOOK_PROFILE') or 'default'}`"
             + (f", timeout {timeout:g} s per notebook" if timeout else "")
             + ". Each verdict is the last one the exercise's checker gave in the notebook.", ""]
    groups: dict[str, list[Graded]] = {}
    for r in results:
        groups.setdefault(" + ".join(r.chapters) or "none", []).append(r)
    for key in sorted(groups):
        rows = groups[key]
        columns = [Exercise(c, n, "") for c in rows[0].chapters for n in verdicts.exercises(c)]
        names = [e.column.split(".", 1)[1] for e in columns]
        title = "no exercises found" if key == "none" else f"Chapter {key}"
        lines += [f"## {title}", "", "| notebook | run | " + " | ".join(names) + " | correct |",
                  "|---|---|" + "---|" * len(names) + "---|"]
        for r in rows:
            cells = {e.column: e.cell(hint=False) for e in r.exercises}
            lines.append(f"| {_md(r.notebook)} | {_md(r.run_text)}, {r.seconds:.0f} s | "
                         + " | ".join(cells.get(c.column, "") for c in columns) + f" | {r.correct}/{len(columns)} |")
        rates = []
        for c in columns:
            passed = sum(any(e.column == c.column and e.status == "correct" for e in r.exercises) for r in rows)
            rates.append(f"{100 * passed / len(rows):.0f} % ({passed}/{len(rows)})")
        if columns:
            lines.append("| **pass rate** | | " + " | ".join(rates) + " | |")
        hints = []
        for r in rows:
            by_message: dict[str, list[str]] = {}
            for e in r.exercises:
                if e.status != "correct":
                    by_message.setdefault(e.cell(), []).append(e.column.split(".", 1)[1])
            hints += [f"- `{r.notebook}` · {', '.join(names)}: {_md(text)}" for text, names in by_message.items()]
        lines += ["", "Hints:", "", *hints, ""] if hints else [""]
    return "\n".join(lines)


def _meets(results: list[Graded], expect: str) -> list[str]:
    """Why the results do not meet ``--expect`` (empty when they do)."""
    want = {"correct": "correct", "not-yet": "not yet"}[expect]
    problems = []
    for r in results:
        if r.run != "ok":
            problems.append(f"{r.notebook}: {r.run_text}")
        if not r.exercises:
            problems.append(f"{r.notebook}: no exercises found")
        problems += [f"{r.notebook} {e.column}: {e.cell()}" for e in r.exercises if e.status != want]
    return problems


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(prog="python -m unet_lib.exercises.grade",
                                     description="Run submitted notebooks and tabulate their checkers' verdicts.")
    parser.add_argument("items", nargs="+", type=Path, metavar="NOTEBOOK_OR_FOLDER")
    parser.add_argument("--profile", choices=("smoke", "cpu", "full"), help="UNET_BOOK_PROFILE for the notebooks")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per notebook (default 1800)")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for grades.csv and grades.md")
    parser.add_argument("--executed", type=Path, help="also write each executed notebook into this folder")
    parser.add_argument("--kernel", help="kernel name (default: each notebook's own)")
    parser.add_argument("--expect", choices=("correct", "not-yet"),
                        help="exit 1 unless every notebook runs cleanly and every exercise has this verdict")
    args = parser.parse_args(argv)
    missing = [str(i) for i in args.items if not i.exists()]
    if missing:
        parser.error(f"not found: {', '.join(missing)}")
    results = grade(args.items, progress=True, profile=args.profile, timeout=args.timeout, kernel_name=args.kernel,
                    executed=args.executed)
    if not results:
        parser.error("no notebooks found")
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(results, args.out / "grades.csv")
    (args.out / "grades.md").write_text(summary(results, profile=args.profile, timeout=args.timeout), encoding="utf-8")
    print(f"wrote {args.out / 'grades.csv'} and {args.out / 'grades.md'}")
    if args.expect:
        problems = _meets(results, args.expect)
        for p in problems[:40]:
            print(f"expected {args.expect}: {p}", file=sys.stderr)
        if problems:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
