"""Tests for unet_lib.exercises._core: the Feedback object, the checker decorator and the case loop."""
from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import torch

from unet_lib.exercises import Feedback, checker, correct, first_mismatch, not_yet
from unet_lib.exercises._core import Mismatch, array, integer, number, optional, pair, scalar_tensor, tensor


def test_feedback_truthiness_and_text():
    ok, no = Feedback(True, "the size is right"), Feedback(False, "use 388")
    assert ok and not no
    assert str(ok) == "Correct! the size is right"
    assert str(no) == "Not yet: use 388"
    assert repr(no) == str(no)


def test_feedback_html():
    ok, no = Feedback(True, "fine"), Feedback(False, "x < 3 & <b>bold</b>")
    assert "Correct!" in ok._repr_html_() and "Not yet" not in ok._repr_html_()
    html = no._repr_html_()
    assert "Not yet" in html
    # the message is escaped: a student's value cannot inject markup
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html and "&amp;" in html
    assert ok._repr_html_() != no._repr_html_()


def test_feedback_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Feedback(True, "x").ok = False


def test_correct_and_not_yet():
    assert correct("right") == Feedback(True, "right") and correct("right")
    assert not_yet("hint") == Feedback(False, "hint") and not not_yet("hint")
    assert str(correct("right")) == "Correct! right" and str(not_yet("hint")) == "Not yet: hint"


def _reference(x):
    return 2 * x


@checker
def check_double(fn):
    """Checks a doubling function."""
    return correct("doubles") if all(fn(x) == _reference(x) for x in (0, 1, 5)) else not_yet("multiply by 2")


def test_checker_passes_results_through():
    assert check_double(lambda x: x + x) == Feedback(True, "doubles")
    assert check_double(lambda x: x + 1) == Feedback(False, "multiply by 2")
    assert check_double.__name__ == "check_double" and check_double.__doc__ == "Checks a doubling function."


def test_feedback_carries_the_checker_name_outside_equality():
    fb = check_double(lambda x: x + x)
    assert fb.name == "check_double" and fb == Feedback(True, "doubles")
    assert check_double(lambda x: 1 / 0).name == "check_double"
    assert Feedback(True, "x").name == ""


def test_checker_turns_not_implemented_into_feedback():
    def stub(x):
        raise NotImplementedError

    fb = check_double(stub)
    assert isinstance(fb, Feedback) and not fb
    assert "NotImplementedError" in fb.message and "replace" in fb.message


def test_checker_turns_other_exceptions_into_feedback_with_line():
    def buggy(x):
        return x / 0  # the failing line

    line = inspect.getsourcelines(buggy)[1] + 1
    fb = check_double(buggy)
    assert isinstance(fb, Feedback) and not fb
    assert "ZeroDivisionError" in fb.message and "division by zero" in fb.message
    assert f"line {line}" in fb.message
    assert "run the checker again" in fb.message


def test_checker_does_not_swallow_keyboard_interrupt():
    @checker
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()


# -- first_mismatch: the case loop ----------------------------------------------------------------
CASES = {"x=1": (1.0,), "x=2.5": (2.5,), "x=0": (0.0,)}


@checker
def check_half(fn):
    """A checker written in the book's idiom."""
    mismatch = first_mismatch(fn, CASES, lambda x: x / 2, describe=lambda m: f"for {m.name} halve: {m.want:.2f}")
    if mismatch is not None:
        return mismatch
    return correct("halves")


def test_first_mismatch_accepts_numbers_of_every_kind():
    for right in (lambda x: x / 2, lambda x: np.float32(x / 2), lambda x: torch.tensor(x / 2),
                  lambda x: np.array([x / 2]), lambda x: torch.tensor([[x / 2]], requires_grad=True)):
        assert check_half(right) == Feedback(True, "halves")


def test_first_mismatch_names_the_first_wrong_case_with_the_checkers_hint():
    fb = check_half(lambda x: x / 2 if x != 2.5 else 1.0)
    assert fb == Feedback(False, "for x=2.5 halve: 1.25")


@pytest.mark.parametrize("answer, problem", [
    (None, "returned None; it should return a float. Is a `return` missing?"),
    (float("nan"), "returned nan (not a number); it should return a float"),
    (np.float32("nan"), "returned nan (not a number)"),
    (torch.tensor(float("nan")), "returned nan (not a number)"),
    ("0.5", "returned a str ('0.5'); it should return a float"),
    (True, "returned a bool (True); it should return a float"),
    ([0.5], "returned a list [0.5]; it should return a float"),
    (np.zeros(2), "returned a numpy array of shape (2,); it should return a float"),
    (torch.zeros(2, 3), "returned a tensor of shape (2, 3); it should return a float"),
    ({"a": 1}, "returned a dict with the keys ['a']; it should return a float"),
])
def test_unusable_answers_are_not_yet_with_the_problem_named(answer, problem):
    fb = check_half(lambda x: answer)
    assert isinstance(fb, Feedback) and not fb
    assert fb.message.startswith("for x=1 your function ") and problem in fb.message
    assert "Correct" not in str(fb) and "raised" not in fb.message     # never a crash inside the checker


def test_first_mismatch_options():
    cases = {"a": (1, 2), "b": (3, 4)}
    add = lambda a, b: a + b  # noqa: E731
    assert first_mismatch(add, cases, [3, 7], compare=integer()) is None              # expected values, in order
    fb = first_mismatch(add, cases, [3, 8], compare=integer())
    assert fb == Feedback(False, "for b expected 8, got 7.")                           # the default message
    fb = first_mismatch(lambda a, b: float("nan"), cases, add, nan_hint="Mind 0 / 0.", who="your sum")
    assert fb.message.startswith("for a your sum returned nan") and fb.message.endswith(" Mind 0 / 0.")
    assert first_mismatch(lambda a, b: None, cases, add, nan_hint="Mind 0 / 0.").message.count("Mind") == 0
    with pytest.raises(ValueError):
        first_mismatch(add, cases, [3])


def test_first_mismatch_hands_describe_a_read_answer_and_copies_of_the_arguments():
    seen = []

    def describe(m: Mismatch) -> str:
        seen.append(m)
        return "wrong"

    x = np.arange(4.0)

    def vandal(a):
        a[:] = 0                            # the student's function modifies its input
        return a.tolist()                   # and returns a list: read as an array

    assert first_mismatch(vandal, {"x": (x,)}, lambda a: a * 2, compare=array(), describe=describe) == not_yet("wrong")
    (m,) = seen
    assert m.name == "x" and m.args[0] is x and x.tolist() == [0, 1, 2, 3]
    assert isinstance(m.got, np.ndarray) and m.got.tolist() == [0, 0, 0, 0] and m.want.tolist() == [0, 2, 4, 6]


def test_a_wrong_type_never_reaches_the_checkers_format_strings():
    # describe formats with :.4f; None or a string must not turn into "unsupported format string ..."
    @checker
    def check_format(fn):
        mismatch = first_mismatch(fn, {"x=1": (1.0,)}, lambda x: x, describe=lambda m: f"got {m.got:.4f}")
        return mismatch if mismatch is not None else correct("ok")

    for answer in (None, "1", [1.0, 2.0], object()):
        fb = check_format(lambda x: answer)
        assert not fb and "format" not in fb.message and "raised" not in fb.message


@checker
def check_int(fn, answer=None):
    """Reads one answer directly, as a multi-step checker does: a BadAnswer becomes "not yet"."""
    (answer or integer()).read(fn())
    return correct("read")


def test_answers_read_and_compare():
    assert number().read(np.int64(3)) == 3.0 and number().same(0.1 + 0.2, 0.3) and not number().same(0.3, 0.31)
    assert number(tol=0, rel_tol=1e-3).same(1000.5, 1000) and number().same(float("inf"), float("inf"))
    assert integer().read(31030658.0) == 31030658 and integer().read(torch.tensor(7)) == 7
    assert "returned a float (17829.5); it should return an int (a whole number)" in check_int(lambda: 17829.5).message
    assert array().read([[1, 2], [3, 4]]).shape == (2, 2) and not array().same(np.zeros(3), np.zeros((3, 1)))
    assert array(exact=True).same(np.array([np.inf, 1.0]), np.array([np.inf, 1.0]))
    assert "shape (3, 1)" in array().explain(np.zeros(3), np.zeros((3, 1)))
    assert "returned a list [None, 1.0]; it should return an array" in check_int(lambda: [None, 1.0], array()).message
    assert tensor().same(torch.ones(2), torch.ones(2, dtype=torch.float64))
    assert not tensor().same(torch.ones(2), torch.ones(3))
    assert pair(integer(), integer()).read(np.array([3, 4])) == (3, 4)
    assert optional(integer()).read(None) is None and optional(integer()).same(None, None)
    assert not optional(integer()).same(3, None) and not optional(integer()).same(None, 3)
    assert scalar_tensor().read(torch.tensor([0.5])) == 0.5
    assert "scalar tensor" in check_int(lambda: 0.5, scalar_tensor()).message


def test_checker_turns_bad_answers_into_not_yet():
    assert check_int(lambda: 3) == Feedback(True, "read")
    fb = check_int(lambda: None)
    assert not fb and fb.message == "your function returned None; it should return an int (a whole number). " \
                                    "Is a `return` missing?"
    assert "nan" in check_int(lambda: float("nan")).message


# -- close: the one comparison; status; what a crash shows ------------------------------------------------
def test_close_is_never_fooled():
    from unet_lib.exercises._core import close

    assert close(0.1 + 0.2, 0.3, 1e-9) and close(3, 3) and not close(3, 4) and close(10**18 + 1, 10**18 + 1)
    assert close(np.array([1.0, np.inf]), [1.0, np.inf]) and close(torch.ones(2, 2), np.ones((2, 2)))
    assert close(1000.5, 1000, 0, 1e-3) and not close(1000.5, 1000, 0, 1e-4)
    for got in (float("nan"), None, "0.3", True, [0.3, 0.3], {"a": 0.3}, np.array([np.nan]), torch.tensor([0.3, 0.3]),
                object(), float("inf")):
        assert not close(got, 0.3, tol=1.0), got
    assert not close(np.zeros(3), np.zeros((3, 1))) and not close(0.3, float("nan"), tol=1.0)


def test_status_and_raised():
    assert check_double(lambda x: 2 * x).status == "correct"
    assert check_double(lambda x: x).status == "not yet"
    fb = check_double(lambda x: 1 / 0)
    assert fb.status == "error" and fb.raised == "ZeroDivisionError"

    def stub(x):
        raise NotImplementedError

    assert check_double(stub).status == "not yet" and check_double(stub).raised == ""


def test_a_value_instead_of_a_function_is_named():
    fb = check_half(0.5)                                       # check_x(my_x(...)) instead of check_x(my_x)
    assert not fb and "not a function" in fb.message and "check_half(my_function)" in fb.message
    assert "raised" not in fb.message


def test_a_crash_names_the_students_line_never_one_inside_unet_lib():
    from unet_lib import metrics

    def calls_the_library_badly(x):
        return metrics.dice(np.zeros((2, 3)), np.zeros((4, 5)))     # raises inside unet_lib.metrics

    line = inspect.getsourcelines(calls_the_library_badly)[1] + 1
    fb = check_half(calls_the_library_badly)
    assert not fb and f"line {line} of test_exercises_core.py" in fb.message and fb.raised


def test_a_checker_that_cannot_read_an_odd_answer_does_not_blame_a_line(monkeypatch):
    from unet_lib.exercises import _core

    @checker
    def check_fragile(fn):
        return correct("ok") if fn() + 1 == 2 else not_yet("no")     # the checker itself fails on a str

    # as if this checker were library code: no frame of the student's is left to point at
    monkeypatch.setattr(_core, "_in_library", lambda filename: True)
    fb = check_fragile(lambda: "1")
    assert not fb and "could not be checked" in fb.message and "line" not in fb.message and fb.raised == "TypeError"


def test_verdicts_are_recorded_only_when_asked(tmp_path, monkeypatch):
    from unet_lib.exercises import ch03, verdicts

    path = tmp_path / "verdicts.jsonl"
    monkeypatch.delenv(verdicts.ENV, raising=False)
    ch03.check_double_conv_params(lambda *a: 0)
    assert not path.exists()
    monkeypatch.setenv(verdicts.ENV, str(path))
    ch03.check_double_conv_params(lambda *a: 0)
    ch03.check_output_size(lambda n: 1 / 0)
    check_double(lambda x: 2 * x)
    path.open("a").write("not json\n")                       # a broken line is skipped, not fatal
    got = verdicts.read(path)
    assert [(v["chapter"], v["exercise"], v["status"]) for v in got] == [
        ("03", "check_double_conv_params", "not yet"), ("03", "check_output_size", "error"),
        ("test_exercises_core", "check_double", "correct")]
    assert "ZeroDivisionError" in got[1]["message"]
    monkeypatch.setenv(verdicts.ENV, str(tmp_path / "missing-folder" / "v.jsonl"))
    assert not ch03.check_double_conv_params(lambda *a: 0)    # an unwritable file never breaks a checker
    assert verdicts.read(tmp_path / "nothing.jsonl") == []


def test_the_registry_lists_every_chapters_exercises():
    from unet_lib.exercises import verdicts

    assert verdicts.chapters() == ["01", "02", "03", "04", "05", "06", "07"]
    assert verdicts.exercises("03") == ["check_output_size", "check_center_crop", "check_double_conv_params"]
    assert all(len(verdicts.exercises(c)) >= 3 for c in verdicts.chapters())
    with pytest.raises(ValueError, match="no checkers for chapter"):
        verdicts.exercises("99")
