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


_BAD_INPUTS = "test_bad_inputs.py::test_"


def pytest_terminal_summary(terminalreporter) -> None:
    """After a run that included tests/test_bad_inputs.py: how many bad-input cases ran per category."""
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if _BAD_INPUTS not in nodeid or "[" not in nodeid or (outcome == "passed" and report.when != "call"):
                continue
            category = nodeid.split(_BAD_INPUTS, 1)[1].split("[", 1)[0].replace("_", " ")
            row = counts.setdefault(category, {"passed": 0, "failed": 0, "skipped": 0, "error": 0})
            row[outcome] += 1
    if not counts:
        return
    terminalreporter.section("bad-input suite: cases per category")
    terminalreporter.write_line(f"{'category':<26} {'cases':>5} {'passed':>6} {'failed':>6} {'skipped':>7}")
    for category, row in counts.items():
        total = sum(row.values())
        terminalreporter.write_line(f"{category:<26} {total:>5} {row['passed']:>6} "
                                    f"{row['failed'] + row['error']:>6} {row['skipped']:>7}")
    totals = {k: sum(r[k] for r in counts.values()) for k in ("passed", "failed", "skipped", "error")}
    terminalreporter.write_line(f"{'all':<26} {sum(totals.values()):>5} {totals['passed']:>6} "
                                f"{totals['failed'] + totals['error']:>6} {totals['skipped']:>7}")
