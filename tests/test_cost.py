"""The estimators of benchmarks/full_profile_cost.py on tiny models, against hand-computed numbers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks.full_profile_cost import (
    CHANNELS_LAST_CHAPTERS,
    GIB,
    StepCost,
    full_setups,
    peak_bytes,
    step_cost,
    t4_minutes,
)
from unet_lib import config, losses
from unet_lib.models import UNet


def _sum_loss(output, target):
    return output.float().mean()


def test_flops_of_one_convolution_match_the_hand_count():
    c_in, c_out, k, h, w = 3, 8, 3, 16, 20
    batch = (torch.rand(1, c_in, h, w), torch.zeros(1, c_out, h, w))
    cost = step_cost(lambda: nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), batch, _sum_loss)
    forward = 2 * c_in * c_out * k * k * h * w                  # a multiply and an add per weight and pixel
    assert cost.forward_flops == forward
    # backward: the weight gradient only (the image needs none), as many FLOPs as the forward pass
    assert cost.flops == 2 * forward
    assert cost.param_bytes == 4 * c_in * c_out * k * k
    assert cost.batch_bytes == 4 * (c_in + c_out) * h * w


def test_memory_estimate_is_positive_and_smaller_with_amp():
    batch = (torch.rand(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float())
    build = lambda: UNet(3, 1, features=4)  # noqa: E731
    fp32 = step_cost(build, batch, losses.bce_dice_loss)
    amp = step_cost(build, batch, losses.bce_dice_loss, torch.float16)
    assert fp32.saved_bytes > 0 and fp32.largest_bytes > 0
    assert 0 < peak_bytes(amp) < peak_bytes(fp32)
    assert amp.saved_bytes < fp32.saved_bytes
    assert amp.flops == fp32.flops                               # precision changes bytes, not FLOPs
    # the first convolution's output (4 channels, 32 x 32, batch 2, float32) is saved for backward
    assert fp32.largest_bytes >= 2 * 4 * 32 * 32 * 4


def test_peak_formula_and_t4_minutes():
    cost = StepCost(flops=0, forward_flops=0, param_bytes=10, batch_bytes=5, saved_bytes=100, largest_bytes=20)
    assert peak_bytes(cost) == 4 * 10 + 5 + 100 + 2 * 20
    # 0.25 x 65 TFLOP/s for one minute
    assert t4_minutes(0.25 * 65e12 * 60, "amp") == pytest.approx(1.0)
    assert t4_minutes(0.25 * 8.1e12 * 60, "fp32") == pytest.approx(1.0)


def test_full_setups_follow_the_profile():
    setups = full_setups()
    p = config.PROFILES["full"]
    assert {s.chapter for s in setups} == {"02", "03", "04", "05", "06", "07"}
    assert len(setups) == 20        # 4 + 2 + 3 (chapter 04: DSB, EM with and without elastic) + 3 + 4 + 4
    unet03 = next(s for s in setups if s.chapter == "03" and "BN" in s.name)
    assert (unet03.size, unet03.batch, unet03.steps) == (p.image_size, p.batch_size, p.max_epochs * 55)  # 880 / 16
    em = next(s for s in setups if "2015" in s.name)
    assert (em.size, em.out_size, em.batch) == (572, 388, 1)
    assert GIB == 2 ** 30


def test_the_chapters_train_channels_last_where_the_benchmarks_say():
    import nbformat

    from unet_lib.config import repo_root

    for path in sorted((repo_root() / "notebooks").glob("0[2-7]_*.ipynb")):
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        uses = "channels_last=True" in code
        assert uses == (path.name[:2] in CHANNELS_LAST_CHAPTERS), \
            f"{path.name}: channels_last={uses} disagrees with CHANNELS_LAST_CHAPTERS"
        if uses:
            assert code.count("channels_last=True") == code.count("compare.train_contender("), path.name
    assert all(s.channels_last == (s.chapter in CHANNELS_LAST_CHAPTERS) for s in full_setups())
