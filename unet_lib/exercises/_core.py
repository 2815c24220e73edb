"""The :class:`Feedback` object every checker returns, and helpers to build checkers."""
from __future__ import annotations

import functools
import html
import traceback
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Feedback:
    """The verdict of a checker: ``ok`` and a message (with a hint when not ok)."""

    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return ("Correct! " if self.ok else "Not yet: ") + self.message

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour, mark = ("#1b7f3b", "&#10004; Correct!") if self.ok else ("#b35900", "&#9998; Not yet:")
        return (f'<div style="border-left:4px solid {colour};padding:4px 10px;margin:4px 0">'
                f'<b style="color:{colour}">{mark}</b> {html.escape(self.message)}</div>')


def check(condition: bool, ok_message: str, hint: str) -> Feedback:
    """``Feedback(True, ok_message)`` if ``condition`` else ``Feedback(False, hint)``."""
    return Feedback(bool(condition), ok_message if condition else hint)


def checker(fn: Callable[..., Feedback]) -> Callable[..., Feedback]:
    """Decorator: an exception raised while checking a student's answer becomes friendly feedback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> Feedback:
        try:
            return fn(*args, **kwargs)
        except NotImplementedError:
            return Feedback(False, "the answer still raises NotImplementedError: replace it with your code.")
        except Exception as exc:  # a student's bug must not end in a traceback wall
            last = traceback.extract_tb(exc.__traceback__)[-1]
            return Feedback(False, f"your code raised {type(exc).__name__}: {exc} (line {last.lineno}). "
                                   "Fix it and run the checker again.")

    return wrapper
