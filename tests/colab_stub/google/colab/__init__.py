"""A stand-in for Colab's ``google.colab`` package (tests/test_colab.py): only what the book uses, ``drive``."""
from . import drive  # noqa: F401
