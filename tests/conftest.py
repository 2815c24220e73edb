"""Shared pytest fixtures for the unet_lib tests (keep this file small and generic)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

# Import the checkout's unet_lib even when it is not pip-installed (``pip install -e .`` makes this a no-op).
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import matplotlib

matplotlib.use("Agg")  # no windows, no display needed: figures are only built and closed

import pytest


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real datasets' folder from ``$UNET_BOOK_DATA``; tests that need it skip when it is unset."""
    root = os.environ.get("UNET_BOOK_DATA")
    if not root:
        pytest.skip("UNET_BOOK_DATA is not set: point it at the datasets' folder to run the real-data tests")
    path = Path(root).expanduser()
    if not path.is_dir():
        pytest.skip(f"UNET_BOOK_DATA={root} is not a folder")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks run faster on one thread (and do not fight other processes for the cores).

    Use it in a test module with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
