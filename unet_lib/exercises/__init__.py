"""Instant-feedback checkers for the book's exercises, one module per chapter.

Usage in a notebook::

    from unet_lib.exercises import ch03
    ch03.check_valid_sizes(my_function)

Every checker returns a :class:`Feedback` that shows as a green "Correct" or an
orange "Not yet" with a hint, and is truthy only when the answer is right.
"""
from ._core import Feedback, check, checker

__all__ = ["Feedback", "check", "checker"]
