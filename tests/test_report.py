"""unet_lib.report: the sentences and tables that quote a chapter's measured numbers."""
import time

import numpy as np
import pytest
import torch

from unet_lib import config, report


def test_ci_formats_mean_and_interval():
    s = {"mean": 0.7264, "ci_low": 0.68209, "ci_high": 0.7681, "std": 0.1, "n": 120}
    assert report.ci(s) == "0.726 [0.682, 0.768]"
    assert report.ci(s, digits=2) == "0.73 [0.68, 0.77]"
    assert report.signed_ci({"mean": 0.069, "ci_low": -0.0164, "ci_high": 0.105}) == "+0.069 [-0.016, +0.105]"
    with pytest.raises(KeyError, match="metrics.summarize"):
        report.ci({"mean": 0.5})


@pytest.mark.parametrize("shift, word", [(0.2, "ahead"), (-0.2, "behind"), (0.0, "within noise")])
def test_difference_says_what_the_interval_says(shift, word):
    rng = np.random.default_rng(0)
    b = rng.uniform(0.2, 0.8, 100)
    a = b + shift + 0.01 * rng.standard_normal(100) if shift else b + 0.05 * rng.standard_normal(100)
    text = report.difference(a, b, "A", "B")
    assert word in text and "(paired, per image)" in text
    if word == "ahead":
        assert text.startswith("A is ahead of B by +0.")
    if word == "behind":
        assert text.startswith("A is behind B by -0.")
    if word == "within noise":
        assert "includes zero" in text and "A - B = " in text


def test_verdict_edges():
    assert report.verdict({"ci_low": 0.001, "ci_high": 0.2}) == "ahead"
    assert report.verdict({"ci_low": -0.2, "ci_high": -0.001}) == "behind"
    assert report.verdict({"ci_low": 0.0, "ci_high": 0.2}) == "within noise"


def test_table_is_markdown_and_checks_row_length():
    text = report.table(["model", "Dice"], [["U-Net", "0.700"], ["FCN-8s", "0.650"]])
    assert text.splitlines() == ["| model | Dice |", "|---|---|", "| U-Net | 0.700 |", "| FCN-8s | 0.650 |"]
    with pytest.raises(ValueError, match="2 cells"):
        report.table(["model", "Dice"], [["U-Net"]])


def test_run_facts_names_profile_device_and_time():
    p = config.profile("smoke")
    text = report.run_facts(p, torch.device("cpu"), time.perf_counter() - 90)
    assert text.startswith("`smoke` profile, cpu (") and "1.5 min so far" in text and text.endswith("UTC")


def test_show_prints_outside_ipython(capsys):
    report.show("**bold** 0.5")
    assert capsys.readouterr().out == "**bold** 0.5\n"


def _saved(tmp_path, monkeypatch, name="09_demo", headline=None):
    from unet_lib import config, results
    monkeypatch.setenv("UNET_BOOK_RESULTS", str(tmp_path / "results"))
    p = config.PROFILES["smoke"]
    results.save_results(name, {"x": 1}, seed=3, wall_time_s=90.0, p=p, device="cpu",
                         headline=headline if headline is not None else {"U-Net": 0.5}, metric="Dice")
    return p


def test_provenance_box_states_the_run_and_that_no_reference_exists(tmp_path, monkeypatch):
    p = _saved(tmp_path, monkeypatch)
    monkeypatch.setattr(report, "REFERENCE_DIR", tmp_path / "none")
    box = report.provenance_box("09_demo", p)
    html = box._repr_html_()
    assert "How this page was made" in html and "profile smoke" in html and "seed 3" in html
    assert "wall time 1.5 min" in html and "U-Net" in html and "0.500" in html
    assert "none recorded yet" in html and "reference (full)" not in html
    assert "profile smoke" in repr(box)


def test_provenance_box_puts_the_reference_run_beside_this_one(tmp_path, monkeypatch):
    import json
    p = _saved(tmp_path, monkeypatch, headline={"U-Net": 0.5, "FCN-8s": 0.4})
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    prov = {"profile": "full", "device": "NVIDIA H200", "seed": 0, "git_commit": "abcdef0123456789",
            "wall_time_s": 600.0, "torch": "2.13.0", "python": "3.11", "date": "2026-12-04 05:00 UTC"}
    (ref_dir / "09_demo.full.json").write_text(json.dumps(
        {"notebook": "09_demo", "headline": {"metric": "Dice", "values": {"U-Net": 0.81}}, "numbers": {},
         "provenance": prov}))
    monkeypatch.setattr(report, "REFERENCE_DIR", ref_dir)
    html = report.provenance_box("09_demo", p)._repr_html_()
    assert "reference (full)" in html and "0.810" in html and "NVIDIA H200" in html and "abcdef0123" in html
    assert "—" in html                     # FCN-8s has no reference number: shown as missing, not as 0


def test_provenance_box_without_results_names_the_notebook_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("UNET_BOOK_RESULTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="09_missing"):
        report.provenance_box("09_missing")
