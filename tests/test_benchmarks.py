"""The two benchmarks behind the cpu profile's choices (issue #15) run, on the smoke profile's sizes, and the
budget chooser never looks at the validation images."""
from __future__ import annotations

import re

import pytest

from benchmarks import choose_recipe, train_throughput
from unet_lib.data import kvasir_split

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_tuning_split_holds_out_a_fifth_of_the_training_images_and_nothing_else():
    train, held = choose_recipe.tuning_split()
    official = kvasir_split("train")
    assert (len(train), len(held)) == (704, 176)
    assert not set(train) & set(held) and set(train) | set(held) == set(official)
    assert not (set(train) | set(held)) & set(kvasir_split("val")), "the validation images choose nothing"
    assert choose_recipe.tuning_split() == (train, held)                 # seeded: the same split every time


def test_choose_recipe_prints_the_held_out_dice_per_budget(data_root, monkeypatch, capsys):
    monkeypatch.setenv("UNET_BOOK_DATA", str(data_root))
    assert choose_recipe.main(["--chapter", "03", "--epochs", "1,2", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "704 training images, 176 held out" in out
    rows = re.findall(r"^\| U-Net \| (\d) \| (0\.\d{3}) \((0\.\d{3})-(0\.\d{3})\) \| \d+ \|$", out, re.M)
    assert [r[0] for r in rows] == ["1", "2"]
    assert all(float(lo) <= float(mean) <= float(hi) for _, mean, lo, hi in rows)


def test_train_throughput_reports_ratios_before_and_after(capsys):
    assert train_throughput.main(["--profile", "smoke", "--chapter", "07", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 07 |")]
    assert len(rows) == 4                                               # FCN-8s, U-Net, UNet++ DS, UNet 3+ DS
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[4] == "channels_last"                                # chapter 07 trains channels-last
        before, after = (float(x) for x in cells[7].split(" -> "))
        assert before > 0 and after > 0 and float(cells[8]) > 0
    assert re.search(r"float32: \d+ GFLOP/s", out)
