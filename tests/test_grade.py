"""The student edition and the grader (unet_lib.exercises.student, unet_lib.exercises.grade).

The grading tests execute notebooks in fresh kernels: a tiny synthetic chapter-03 notebook (one solved
exercise, one broken cell, one deleted checker), and real chapters in the smoke profile, as instructor
notebooks (all Correct) and as their student edition (all Not yet). By default two real chapters are
graded; ``UNET_BOOK_GRADE_ALL=1`` grades all seven (CI grades all seven with the command line in .ci/run).
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from unet_lib.exercises import grade, student, verdicts

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REAL = NOTEBOOKS if os.environ.get("UNET_BOOK_GRADE_ALL") else [
    p for p in NOTEBOOKS if p.stem in ("02_fcn", "07_kvasir_experiments")]
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]" \
        "(https://colab.research.google.com/github/unet-book/unet-book/blob/main/notebooks/{name})"


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")        # the kernels inherit it: two cores, one kernel at a time


def _write(path: Path, cells: list) -> Path:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


SOLVED = '''def my_output_size(n):
    for _ in range(4):
        n -= 4
        if n <= 0 or n % 2:
            return None
        n //= 2
    n -= 4
    for _ in range(4):
        n = 2 * n - 4
    return n if n > 0 else None


ch03.check_output_size(my_output_size)'''


def _mixed(folder: Path) -> Path:
    """Chapter 03 as a student hands it in: a broken cell, then one solved exercise; the third checker deleted."""
    return _write(folder / "03_unet_from_scratch.ipynb", [
        new_markdown_cell("# 3. U-Net from scratch (a submission)"),
        new_code_cell("from unet_lib.exercises import ch03"),
        new_code_cell("def my_center_crop(x, height, width):\n    return x[..., :height, :width]\n\n\n"
                      "print(undefined_name)\nch03.check_center_crop(my_center_crop)"),      # raises NameError
        new_code_cell(SOLVED),
        new_code_cell("def my_double_conv_params(cin, cout, bn):\n    return 0\n"),          # its checker: deleted
    ])


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("alice")
    _mixed(folder)
    return grade.grade([folder], timeout=120)


def test_mixed_notebook_grades_as_such(mixed):
    (r,) = mixed
    assert r.notebook.endswith("/03_unet_from_scratch.ipynb") and r.chapters == ["03"]
    assert r.run == "errors" and "cell 2 NameError" in r.detail
    got = {e.name: e for e in r.exercises}
    assert list(got) == verdicts.exercises("03")
    assert got["check_output_size"].status == "correct"
    assert got["check_center_crop"].status == "error" and "NameError" in got["check_center_crop"].message
    assert got["check_double_conv_params"].status == "missing"
    assert r.correct == 1


def test_grades_csv_and_summary(mixed, tmp_path):
    grade.write_csv(mixed, tmp_path / "grades.csv")
    rows = list(csv.DictReader(open(tmp_path / "grades.csv", encoding="utf-8")))
    assert len(rows) == 1 and rows[0]["correct"] == "1" and rows[0]["total"] == "3"
    assert rows[0]["ch03.output_size"] == "Correct" and rows[0]["ch03.double_conv_params"] == "missing"
    assert rows[0]["ch03.center_crop"].startswith("error: cell 2 raised NameError")
    md = grade.summary(mixed, profile="smoke", timeout=120)
    assert "## Chapter 03" in md and "| output_size | center_crop | double_conv_params |" in md
    assert re.search(r"\| Correct \| error \| missing \| 1/3 \|", md)
    assert "| **pass rate** | | 100 % (1/1) | 0 % (0/1) | 0 % (0/1) | |" in md
    assert "center_crop: error: cell 2 raised NameError" in md
    assert grade._meets(mixed, "correct") and grade._meets(mixed, "not-yet")


def test_unreadable_and_timed_out_notebooks_get_a_status(tmp_path):
    (tmp_path / "03_broken.ipynb").write_text("{ this is not json")
    _write(tmp_path / "03_slow.ipynb", [
        new_code_cell("from unet_lib.exercises import ch03"),
        new_code_cell(SOLVED),
        new_code_cell("import time\ntime.sleep(60)"),
        new_code_cell("ch03.check_center_crop(lambda x, h, w: x)"),
    ])
    broken, slow = grade.grade([tmp_path / "03_broken.ipynb", tmp_path / "03_slow.ipynb"], timeout=8)
    assert broken.run == "failed" and "not a readable notebook" in broken.detail
    assert [e.status for e in broken.exercises] == ["not run"] * 3
    assert slow.run == "timeout" and slow.seconds < 40
    assert [e.status for e in slow.exercises] == ["correct", "not run", "missing"]


# -- the student edition ---------------------------------------------------------------------------------
def _chapter_like(tmp_path: Path) -> Path:
    stub = "def my_output_size(n):\n    raise NotImplementedError\n\n\nch03.check_output_size(my_output_size)"
    cells = [new_markdown_cell("# 3. U-Net\n\n" + BADGE.format(name="03_unet_from_scratch.ipynb")),
             new_code_cell("from unet_lib.exercises import ch03"),
             new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(572)", outputs=[nbformat.v4.new_output("stream", text="572\n")],
                           execution_count=3),
             new_code_cell(stub), new_code_cell(SOLVED, metadata={"tags": ["hide-cell"]}),
             new_code_cell("print('a hidden helper')", metadata={"tags": ["hide-cell"]})]
    for name in ("check_center_crop", "check_double_conv_params"):
        cells += [new_code_cell(f"ch03.{name}(lambda *a: 0)"), new_code_cell(f"ch03.{name}(lambda *a: 1)",
                                                                             metadata={"tags": ["solution"]})]
    return _write(tmp_path / "03_unet_from_scratch.ipynb", cells)


def test_student_notebook_drops_solutions_and_outputs_and_keeps_stubs(tmp_path):
    nb = nbformat.read(_chapter_like(tmp_path), as_version=4)
    out, edition = student.student_notebook(nb, "03_unet_from_scratch.ipynb")
    assert edition.removed == 3 and edition.badge is None
    assert edition.exercises == tuple(f"ch03.{n}" for n in verdicts.exercises("03"))
    sources = [c.source for c in out.cells]
    assert SOLVED not in sources and "print('a hidden helper')" in sources           # a hidden non-solution stays
    assert all(not c.outputs and c.execution_count is None for c in out.cells if c.cell_type == "code")
    assert "blob/main/notebooks/03_unet_from_scratch.ipynb" in out.cells[0].source   # no student_edition: unchanged
    assert len(nb.cells) == 10 and nb.cells[2].outputs                               # the original is untouched
    assert out.metadata["unet_book"]["edition"] == "student"


def test_student_badge_points_at_the_configured_copy(tmp_path):
    nb = nbformat.read(_chapter_like(tmp_path), as_version=4)
    config = {"repository": {"url": "https://github.com/unet-book/unet-book", "branch": "main"},
              "student_edition": {"folder": "student"}}
    out, edition = student.student_notebook(nb, "03_unet_from_scratch.ipynb", config)
    want = "https://colab.research.google.com/github/unet-book/unet-book/blob/main/student/03_unet_from_scratch.ipynb"
    assert edition.badge == want and f"({want})" in out.cells[0].source
    config["student_edition"] = {"repository": "https://github.com/course/unet-student", "branch": "spring"}
    _, edition = student.student_notebook(nb, "03_unet_from_scratch.ipynb", config)
    assert edition.badge == "https://colab.research.google.com/github/course/unet-student/blob/spring/" \
                            "03_unet_from_scratch.ipynb"
    with pytest.raises(ValueError, match="github.com"):
        student.badge_target({"student_edition": {"repository": "gitlab.com/x/y"}}, "a.ipynb")


def test_student_edition_refuses_to_lose_an_exercise(tmp_path):
    nb = nbformat.read(_chapter_like(tmp_path), as_version=4)
    nb.cells = [c for c in nb.cells if "check_center_crop(lambda *a: 0)" not in c.source]
    with pytest.raises(ValueError, match="no cell calls check_center_crop"):
        student.student_notebook(nb, "03_unet_from_scratch.ipynb")


def test_the_student_command_writes_every_chapter(tmp_path):
    assert student.main(["--out", str(tmp_path), "--config", str(ROOT / "_config.yml"), *map(str, NOTEBOOKS)]) == 0
    for path in NOTEBOOKS:
        nb = nbformat.read(tmp_path / path.name, as_version=4)
        assert not any(student.is_solution(c) for c in nb.cells)
        assert all(not c.outputs for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_calls_exactly_its_chapters_checkers(path):
    nb = nbformat.read(path, as_version=4)
    calls = {call for c in nb.cells if c.cell_type == "code" for call in student.checker_calls(c.source)}
    assert calls == {(path.stem[:2], n) for n in verdicts.exercises(path.stem[:2])}


# -- the real chapters -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem)
def test_instructor_notebook_grades_all_correct_and_its_student_edition_all_not_yet(path, tmp_path, data_root):
    student.build([path], tmp_path / "student", {})
    teacher, pupil = grade.grade([path, tmp_path / "student" / path.name], profile="smoke", timeout=300)
    assert teacher.run == "ok", teacher.run_text
    assert [e.status for e in teacher.exercises] == ["correct"] * len(verdicts.exercises(path.stem[:2]))
    assert pupil.run == "ok", pupil.run_text
    assert [e.status for e in pupil.exercises] == ["not yet"] * len(teacher.exercises)
    assert all("NotImplementedError" in e.message for e in pupil.exercises)
    assert not grade._meets([teacher], "correct") and not grade._meets([pupil], "not-yet")
