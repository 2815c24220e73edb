"""Tests for unet_lib.exercises._core: the Feedback object and the checker decorator."""
from __future__ import annotations

import dataclasses
import inspect

import pytest

from unet_lib.exercises import Feedback, check, checker


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


def test_check():
    assert check(True, "right", "hint") == Feedback(True, "right")
    assert check(False, "right", "hint") == Feedback(False, "hint")
    assert check(1 == 1.0, "r", "h").ok is True
    assert check(0, "r", "h").ok is False


def _reference(x):
    return 2 * x


@checker
def check_double(fn):
    """Checks a doubling function."""
    return check(all(fn(x) == _reference(x) for x in (0, 1, 5)), "doubles", "multiply by 2")


def test_checker_passes_results_through():
    assert check_double(lambda x: x + x) == Feedback(True, "doubles")
    assert check_double(lambda x: x + 1) == Feedback(False, "multiply by 2")
    assert check_double.__name__ == "check_double" and check_double.__doc__ == "Checks a doubling function."


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
