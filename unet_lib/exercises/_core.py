"""The :class:`Feedback` every checker returns, and the few helpers every checker is built from.

The idiom, the same in every chapter module::

    @checker
    def check_something(fn):
        cases = {"a 4x4 example": (pred, target), ...}          # case name -> positional arguments
        mismatch = first_mismatch(fn, cases, reference, compare=number(), describe=_hint)
        if mismatch is not None:           # not `mismatch or ...`: a "not yet" Feedback is falsy
            return mismatch
        return correct("what the student has just shown")

* :func:`correct` and :func:`not_yet` are the only two ways to give a verdict.
* :func:`first_mismatch` calls the student's function on every case, reads each answer with an
  :class:`Answer` (:func:`number`, :func:`integer`, :func:`array`, :func:`tensor`, :func:`pair`,
  :func:`optional`) and returns a :func:`not_yet` for the first wrong one, or ``None``.
  An answer that cannot be compared (``None``, ``nan``, a wrong type, a tensor with several
  numbers where one is expected) gets a message naming the problem; a comparable but wrong
  answer gets the checker's ``describe`` hint, which therefore only ever sees well-typed values.
* A checker that calls the function itself (several steps, state carried between calls) reads the
  answer with :meth:`Answer.read`; an unusable answer raises :class:`BadAnswer`, which
  :func:`checker` turns into a :func:`not_yet`.
* :func:`close` is the one numerical comparison every checker uses (answers and hints alike): ``nan``
  is never close to anything, a wrong shape or type is never close, so no odd answer can pass.
* :func:`checker` also records every verdict for the grader (:mod:`unet_lib.exercises.verdicts`).

A reference answer is never ``nan``: ``nan`` from a student is always a mismatch. Infinities are
refused too unless an :class:`Answer` allows them (a distance map that starts at ``inf``).
"""
from __future__ import annotations

import dataclasses
import functools
import html
import math
import numbers
import operator
import os
import sysconfig
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import verdicts

__all__ = ["Feedback", "correct", "not_yet", "checker", "first_mismatch", "Mismatch", "BadAnswer", "Answer",
           "number", "integer", "array", "tensor", "scalar_tensor", "pair", "optional", "describe_value", "close",
           "real_number", "whole_number"]


@dataclass(frozen=True)
class Feedback:
    """The verdict of a checker: ``ok`` and a message (with a hint when not ok).

    ``name`` is the checker that gave it (set by :func:`checker`); ``raised`` is the type of the
    exception the student's code raised, if it did. Neither is part of equality.
    """

    ok: bool
    message: str
    name: str = field(default="", compare=False)
    raised: str = field(default="", compare=False)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def status(self) -> str:
        """``"correct"``, ``"not yet"``, or ``"error"`` (the student's code raised; a stub's
        ``NotImplementedError`` is "not yet"). The grader's column value."""
        return "correct" if self.ok else "error" if self.raised else "not yet"

    def __str__(self) -> str:
        return ("Correct! " if self.ok else "Not yet: ") + self.message

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour, mark = ("#1b7f3b", "&#10004; Correct!") if self.ok else ("#b35900", "&#9998; Not yet:")
        return (f'<div style="border-left:4px solid {colour};padding:4px 10px;margin:4px 0">'
                f'<b style="color:{colour}">{mark}</b> {html.escape(self.message)}</div>')


def correct(message: str) -> Feedback:
    """The answer is right; ``message`` says what the student has just shown."""
    return Feedback(True, message)


def not_yet(hint: str) -> Feedback:
    """The answer is not right yet; ``hint`` says what is wrong and how to fix it."""
    return Feedback(False, hint)


class BadAnswer(Exception):
    """An answer that cannot be compared with the reference (``None``, ``nan``, a wrong type or size).

    The exception's text is the whole message for the student; ``nan`` tells a ``nan`` apart.
    """

    def __init__(self, message: str, nan: bool = False):
        super().__init__(message)
        self.nan = nan


def checker(fn: Callable[..., Feedback]) -> Callable[..., Feedback]:
    """Decorator: an exception raised while checking a student's answer becomes friendly feedback.

    An argument that is not a function (``check_otsu(my_otsu(image))``) is "not yet" before anything
    runs. A :class:`BadAnswer` becomes its message; any other exception names its type, text and the
    line of the *student's* code that raised it (never a line inside ``unet_lib`` or a library). The
    returned :class:`Feedback` carries the checker's name, and is recorded for the grader when
    ``$UNET_BOOK_VERDICTS`` names a file (:func:`unet_lib.exercises.verdicts.record`).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> Feedback:
        not_callable = [a for a in (*args, *kwargs.values()) if _a_result(a)]
        if not_callable:
            feedback = not_yet(f"the checker got {describe_value(not_callable[0])}, not a function: pass the "
                               f"function itself, e.g. {fn.__name__}(my_function), without calling it.")
        else:
            try:
                feedback = fn(*args, **kwargs)
            except BadAnswer as exc:
                feedback = not_yet(str(exc))
            except NotImplementedError:
                feedback = not_yet("the answer still raises NotImplementedError: replace it with your code.")
            except Exception as exc:  # a student's bug must not end in a traceback wall
                feedback = _crash(exc)
        feedback = dataclasses.replace(feedback, name=feedback.name or fn.__name__)
        verdicts.record(feedback, fn.__module__)
        return feedback

    return wrapper


def _a_result(value: Any) -> bool:
    """Whether a checker's argument is a value (the function's result) where the function itself belongs."""
    return value is None or isinstance(value, (numbers.Number, np.generic, np.ndarray, torch.Tensor, str, bytes,
                                               list, tuple, set, frozenset, Mapping))


_PACKAGE = str(Path(__file__).resolve().parent.parent) + os.sep
_LIBRARIES = tuple(sorted({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}))


def _in_library(filename: str) -> bool:
    """Whether a traceback frame is inside unet_lib, the standard library or an installed package."""
    if filename.startswith("<frozen") or filename.startswith(_PACKAGE):
        return True
    return filename.startswith(_LIBRARIES) and "ipykernel_" not in filename


def _crash(exc: Exception) -> Feedback:
    """The feedback for an exception: at the student's deepest line, or a checker that could not read the answer."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _in_library(f.filename)]
    text = f"{type(exc).__name__}: {_short(str(exc), 200)}" if str(exc) else type(exc).__name__
    if not frames:      # raised inside the library: the answer had a form the checker did not expect
        return Feedback(False, f"what your function returned could not be checked ({text}). Compare its type and "
                               "shape with the exercise's description.", raised=type(exc).__name__)
    where = frames[-1]
    cell = "ipykernel_" in where.filename or where.filename.startswith("<")
    place = f"line {where.lineno}" if cell else f"line {where.lineno} of {where.filename.rsplit('/', 1)[-1]}"
    return Feedback(False, f"your code raised {text} ({place}). Fix it and run the checker again.",
                    raised=type(exc).__name__)


# ---------------------------------------------------------------------------------------- reading answers
def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def describe_value(value: Any) -> str:
    """What a function returned, in a few words: ``"None"``, ``"a str ('0.5')"``, ``"a tensor of shape (2,)"``."""
    if value is None:
        return "None"
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return "nan (not a number)"
    if isinstance(value, (float, np.floating)) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, np.generic):
        return f"a numpy {type(value).__name__} ({_short(repr(value.item()))})"
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}" if value.ndim else f"a tensor ({_short(repr(value.item()))})"
    if isinstance(value, np.ndarray):
        if value.ndim:
            return f"a numpy array of shape {value.shape}"
        return f"a 0-d numpy array ({_short(repr(value.item()))})"
    if isinstance(value, (list, tuple)):
        kind = type(value).__name__
        if len(value) > 4:
            return f"a {kind} of {len(value)} items"
        items = ", ".join(repr(v) if v is None or isinstance(v, (numbers.Number, str)) else describe_value(v)
                          for v in value)
        return _short(f"a list [{items}]" if kind == "list" else f"a {kind} ({items})", 120)
    if isinstance(value, Mapping):
        return f"a {type(value).__name__} with the keys {_short(repr(sorted(map(str, value))))}"
    kind = type(value).__name__
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind} ({_short(repr(value))})"


def _contains(value: Any, test: Callable[[np.ndarray], np.ndarray], depth: int = 0) -> bool:
    """Whether ``test`` (``np.isnan`` or ``np.isinf``) holds for a number anywhere in ``value``."""
    if isinstance(value, (float, np.floating)):
        return bool(test(value))
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "fc" and bool(test(value).any())
    if isinstance(value, torch.Tensor):
        return ((value.is_floating_point() or value.is_complex())
                and bool(test(value.detach().cpu().double().numpy()).any()))
    if depth < 4 and isinstance(value, (list, tuple, set, frozenset)):
        return any(_contains(v, test, depth + 1) for v in value)
    if depth < 4 and isinstance(value, Mapping):
        return any(_contains(v, test, depth + 1) for v in value.values())
    return False


def _contains_nan(value: Any) -> bool:
    return _contains(value, np.isnan)


def _one_number(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    if isinstance(value, np.ndarray):
        return value.size == 1
    return isinstance(value, numbers.Number)


class Answer:
    """How to read one kind of answer, and when it equals the reference.

    Args:
        what: the expected kind, for messages: ``"a float"``, ``"a pair (best_threshold, best_dice)"``.
        read: converts the raw answer (a float from a tensor, an array from a list, ...); a
            ``TypeError``, ``ValueError`` or ``IndexError`` it raises means "not the right kind".
        same: ``same(read_answer, reference) -> bool``.
        explain: ``explain(read_answer, reference) -> str``, the default text of a mismatch.
        allow_none: ``None`` is a legitimate answer (see :func:`optional`).
        allow_nan: ``nan`` is read like any value (and is then never the same as the reference).
        allow_inf: infinities are read like any value (the reference may hold them); otherwise an
            answer with ``inf`` or ``-inf`` anywhere in it is refused with a message that says so.
    """

    def __init__(self, what: str, read: Callable[[Any], Any], same: Callable[[Any, Any], bool] = operator.eq,
                 explain: Callable[[Any, Any], str] | None = None, *, allow_none: bool = False,
                 allow_nan: bool = False, allow_inf: bool = False):
        self.what, self._read, self._same, self._explain = what, read, same, explain
        self.allow_none, self.allow_nan, self.allow_inf = allow_none, allow_nan, allow_inf

    def _flags(self) -> dict[str, bool]:
        return {"allow_none": self.allow_none, "allow_nan": self.allow_nan, "allow_inf": self.allow_inf}

    def read(self, got: Any, who: str = "your function") -> Any:
        """The answer converted, or :class:`BadAnswer` naming what is wrong with it."""
        if got is None and not self.allow_none:
            raise BadAnswer(f"{who} returned None; it should return {self.what}. Is a `return` missing?")
        if not self.allow_nan and _contains_nan(got):
            returned = "nan (not a number)" if _one_number(got) else f"{describe_value(got)} with nan in it"
            raise BadAnswer(f"{who} returned {returned}; it should return {self.what}. nan comes from a 0 / 0 "
                            "(or inf - inf) somewhere.", nan=True)
        if not self.allow_inf and _contains(got, np.isinf):
            returned = describe_value(got) if _one_number(got) else f"{describe_value(got)} with inf in it"
            raise BadAnswer(f"{who} returned {returned}; it should return {self.what}, and a finite one. inf "
                            "comes from a division by 0 (or the log of 0) somewhere.")
        try:
            return self._read(got)
        except (TypeError, ValueError, IndexError, KeyError, AttributeError, OverflowError, RuntimeError):
            raise BadAnswer(f"{who} returned {describe_value(got)}; it should return {self.what}.") from None

    def same(self, got: Any, want: Any) -> bool:
        """Whether a read answer equals the reference."""
        return bool(self._same(got, want))

    def explain(self, got: Any, want: Any) -> str:
        """A default description of a mismatch, ``"expected 0.6667, got 0.5"``."""
        return self._explain(got, want) if self._explain else f"expected {want!r}, got {got!r}"

    def judged_by(self, same: Callable[[Any, Any], bool], what: str | None = None) -> Answer:
        """The same reading with another test of "right", e.g. "reaches the best between-class variance"."""
        return Answer(what or self.what, self._read, same, None, **self._flags())


def _read_float(got: Any) -> float:
    if isinstance(got, torch.Tensor):
        if got.dtype == torch.bool or got.is_complex():
            raise TypeError
        got = got.detach().cpu().double().numpy()
    if isinstance(got, np.ndarray):
        if got.size != 1 or got.dtype.kind not in "iuf":
            raise ValueError
        got = got.reshape(()).item()
    if isinstance(got, (bool, np.bool_)) or not isinstance(got, numbers.Real):
        raise TypeError
    return float(got)


def _read_int(got: Any) -> int:
    if isinstance(got, numbers.Integral) and not isinstance(got, (bool, np.bool_)):
        return int(got)
    v = _read_float(got)
    if not v.is_integer():
        raise ValueError
    return int(v)


def _as_float_array(value: Any) -> np.ndarray:
    """Numbers as a float64 array, or ``TypeError`` for anything that is not numbers (None, str, bool, dict)."""
    if value is None or isinstance(value, (bool, np.bool_, str, bytes, Mapping)):
        raise TypeError
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError
        return value.detach().cpu().double().numpy()
    a = np.asarray(value)
    if a.dtype.kind not in "iuf":
        raise TypeError
    return a.astype(np.float64)


def close(got: Any, want: Any, tol: float = 0.0, rel_tol: float = 0.0) -> bool:
    """Whether ``got`` equals ``want`` within ``|got - want| <= tol + rel_tol * |want|``, element by element.

    The one numerical comparison of the checkers (:func:`number`, :func:`array`, :func:`tensor` and
    every hint use it). Numbers, numpy arrays, tensors and nested lists are compared as float64 arrays,
    two Python ints exactly. It is never true for ``nan`` (anywhere, in either), for different shapes,
    or for something that is not numbers (``None``, a string, a bool, a dict): a comparison that cannot
    be made is a mismatch, never a pass. Equal infinities are equal.

    Example: ``close(0.1 + 0.2, 0.3, tol=1e-9)`` is True; ``close(float("nan"), 0.3, tol=1.0)`` is False.
    """
    if type(got) is int and type(want) is int:
        return abs(got - want) <= tol + rel_tol * abs(want)
    try:
        g, w = _as_float_array(got), _as_float_array(want)
    except (TypeError, ValueError):
        return False
    if g.shape != w.shape or np.isnan(g).any() or np.isnan(w).any():
        return False
    with np.errstate(invalid="ignore", over="ignore"):
        return bool(((g == w) | (np.abs(g - w) <= tol + rel_tol * np.abs(w))).all())


def real_number(value: Any) -> float:
    """``value`` as a float if it is one real number (a Python/numpy number, a one-element tensor or array).

    Raises ``TypeError`` / ``ValueError`` otherwise: a string, a bool or ``None`` is not a number here.
    For the readers of custom answers (:class:`Answer`), where ``float(value)`` would accept ``"0.5"``.
    """
    return _read_float(value)


def whole_number(value: Any) -> int:
    """``value`` as an int if it is a whole number (``3``, ``3.0``, ``np.int64(3)``, ``torch.tensor(3)``).

    Raises ``TypeError`` / ``ValueError`` otherwise, where ``int(value)`` would turn ``2.7`` into 2
    and ``"3"`` into 3.
    """
    return _read_int(value)


def number(tol: float = 1e-9, rel_tol: float = 0.0) -> Answer:
    """One finite number: a Python or numpy number, or a tensor/array holding exactly one.

    Equal when ``|got - want| <= tol + rel_tol * |want|`` (:func:`close`).
    """
    return Answer("a float", _read_float, lambda got, want: close(got, want, tol, rel_tol),
                  lambda got, want: f"expected {want:.6g}, got {got:.6g}")


def integer() -> Answer:
    """A whole number (an ``int``, or a float/tensor holding a whole number); equal when equal."""
    return Answer("an int (a whole number)", _read_int, close, lambda got, want: f"expected {want:,}, got {got:,}")


def _explain_arrays(got: np.ndarray, want: np.ndarray) -> str:
    if got.shape != want.shape:
        return f"expected shape {want.shape}, got shape {got.shape}"
    with np.errstate(invalid="ignore"):
        worst = np.nanmax(np.abs(got - want)) if got.size else 0.0
    return f"right shape {want.shape}, but values differ (by up to {worst:.3g})"


def array(tol: float = 1e-6, exact: bool = False, allow_inf: bool = False) -> Answer:
    """An array of numbers (a numpy array, a tensor or a nested list, at least 1-D), read as float64.

    Equal when the shapes match and the values are equal (``exact``) or close with
    ``rtol = atol = tol`` (:func:`close`, as ``np.allclose``). A wrong shape is a mismatch (``describe``
    sees it), not a crash; a single number or a bool is not an array. ``allow_inf``: the reference
    itself may hold infinities (a distance map that starts at ``inf``).
    """
    def read(got: Any) -> np.ndarray:
        if isinstance(got, torch.Tensor):
            if got.is_complex() or got.dtype == torch.bool:
                raise TypeError
            got = got.detach().cpu().double().numpy()
        if isinstance(got, (str, bytes, Mapping)) or not isinstance(got, (np.ndarray, list, tuple)):
            raise TypeError
        a = np.asarray(got, dtype=np.float64)
        if a.ndim == 0:
            raise TypeError             # one number where an array is asked for
        if not isinstance(got, np.ndarray) and np.isnan(a).any():
            raise ValueError            # a None inside a list: numpy reads it as nan
        return a

    def same(got: np.ndarray, want: Any) -> bool:
        return close(got, want) if exact else close(got, want, tol, tol)

    return Answer("an array of numbers", read, same, lambda got, want: _explain_arrays(got, np.asarray(want, float)),
                  allow_inf=allow_inf)


def tensor(tol: float = 1e-6, exact: bool = False, allow_inf: bool = False) -> Answer:
    """A ``torch.Tensor`` (returned as it is). Equal when shapes match and values are equal / close (:func:`close`)."""
    def read(got: Any) -> torch.Tensor:
        if not isinstance(got, torch.Tensor) or got.is_complex():
            raise TypeError
        return got

    def same(got: torch.Tensor, want: torch.Tensor) -> bool:
        return close(got, want) if exact else close(got, want, tol, tol)

    def explain(got: torch.Tensor, want: torch.Tensor) -> str:
        return _explain_arrays(got.detach().cpu().double().numpy(), want.detach().cpu().double().numpy())

    return Answer("a torch.Tensor", read, same, explain, allow_inf=allow_inf)


def scalar_tensor(tol: float = 1e-9, rel_tol: float = 0.0, what: str | None = None) -> Answer:
    """A tensor holding one number (a loss: ``loss.mean()``), read as a float and compared as :func:`number`."""
    def read(got: Any) -> float:
        if not isinstance(got, torch.Tensor):
            raise TypeError
        return _read_float(got)

    as_number = number(tol, rel_tol)
    return Answer(what or "a scalar tensor (one number), e.g. loss.mean()", read, as_number.same, as_number.explain)


def pair(first: Answer, second: Answer, what: str | None = None) -> Answer:
    """Two answers in a tuple, list, or a 1-D array/tensor of length 2; equal when both parts are.

    ``nan`` or ``inf`` are accepted only where both parts accept them.
    """
    def read(got: Any) -> tuple:
        if isinstance(got, (torch.Tensor, np.ndarray)):
            if got.ndim != 1:
                raise ValueError
            got = list(got)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise TypeError
        return first._read(got[0]), second._read(got[1])

    def same(got: tuple, want: Sequence) -> bool:
        return first.same(got[0], want[0]) and second.same(got[1], want[1])

    return Answer(what or f"a pair ({first.what}, {second.what})", read, same,
                  allow_nan=first.allow_nan and second.allow_nan, allow_inf=first.allow_inf and second.allow_inf)


def optional(answer: Answer) -> Answer:
    """``answer`` or ``None``, where ``None`` is a legitimate answer (e.g. "this size does not fit")."""
    def read(got: Any) -> Any:
        return None if got is None else answer._read(got)

    def same(got: Any, want: Any) -> bool:
        return got is None and want is None or got is not None and want is not None and answer.same(got, want)

    return Answer(f"{answer.what} or None", read, same, allow_none=True, allow_nan=answer.allow_nan,
                  allow_inf=answer.allow_inf)


# ---------------------------------------------------------------------------------------- the case loop
@dataclass(frozen=True)
class Mismatch:
    """A well-typed but wrong answer, handed to a checker's ``describe`` to phrase the hint."""

    name: str        # the case, as it reads after "for": "both masks empty"
    args: tuple      # the arguments the student's function was called with
    got: Any         # the answer, read by the checker's Answer (a float, an int, an array, ...)
    want: Any        # the reference answer


def _fresh(value: Any) -> Any:
    """A copy the student's function may modify without changing the case (tensors needing a gradient stay)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, torch.Tensor):
        return value if value.requires_grad else value.clone()
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_fresh(v) for v in value)
    return value


def first_mismatch(fn: Callable[..., Any], cases: Mapping[str, tuple], expected: Callable[..., Any] | Sequence, *,
                   compare: Answer | None = None, describe: Callable[[Mismatch], str] | None = None,
                   nan_hint: str = "", who: str = "your function") -> Feedback | None:
    """Call the student's ``fn`` on every case and return a "not yet" for the first wrong answer.

    Args:
        fn: the student's function.
        cases: case name -> tuple of positional arguments; the name reads after "for" in a message.
            The function gets copies of array and tensor arguments.
        expected: the reference, called with the same arguments, or the expected answers in the
            order of ``cases``.
        compare: how to read and compare the answers (default :func:`number`).
        describe: ``describe(mismatch) -> hint`` for a well-typed but wrong answer (default:
            ``"for <case> expected ..., got ..."``).
        nan_hint: added to the message when the answer is ``nan`` (the usual cause in this exercise).
        who: the subject of messages, e.g. ``"your Dice function"``.

    Returns:
        :func:`not_yet` for the first mismatch, ``None`` when every case is right.
    """
    compare = compare or number()
    wants = None if callable(expected) else list(expected)
    if wants is not None and len(wants) != len(cases):
        raise ValueError(f"{len(cases)} cases but {len(wants)} expected answers")
    for k, (name, args) in enumerate(cases.items()):
        want = expected(*args) if wants is None else wants[k]
        try:
            got = compare.read(fn(*_fresh(args)), who)
        except BadAnswer as exc:
            extra = f" {nan_hint}" if exc.nan and nan_hint else ""
            return not_yet(f"for {name} {exc}{extra}")
        if not compare.same(got, want):
            mismatch = Mismatch(name, args, got, want)
            return not_yet(describe(mismatch) if describe else f"for {name} {compare.explain(got, want)}.")
    return None
