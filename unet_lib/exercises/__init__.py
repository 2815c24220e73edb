"""Instant-feedback checkers for the book's exercises, one module per chapter.

Usage in a notebook::

    from unet_lib.exercises import ch03
    ch03.check_output_size(my_output_size)

Every checker returns a :class:`Feedback` that shows as a green "Correct" or an
orange "Not yet" with a hint, and is truthy only when the answer is right.
Checkers are built from the helpers of :mod:`unet_lib.exercises._core`:
:func:`correct` / :func:`not_yet` for the verdict and :func:`first_mismatch` for the case loop.
"""
from ._core import BadAnswer, Feedback, checker, correct, first_mismatch, not_yet

__all__ = ["Feedback", "correct", "not_yet", "checker", "first_mismatch", "BadAnswer"]
