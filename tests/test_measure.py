"""Tests of unet_lib.measure: parameters, conv layers, MACs and latency, on numbers checkable by hand."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from unet_lib import measure, models
from unet_lib.measure import count_conv_layers, count_macs, count_parameters, latency_ratios
from unet_lib.models import UNet
from unet_lib.models.unet_plusplus import unet_baseline

pytestmark = pytest.mark.usefixtures("one_thread")


def test_models_re_exports_the_measuring_functions():
    for name in measure.__all__:
        assert getattr(models, name) is getattr(measure, name)
        assert name in models.__all__


def test_measure_needs_only_torch_and_the_standard_library():
    # unet_lib.models imports unet_lib.measure: measure importing models (or any of unet_lib) would be a cycle
    tree = ast.parse(Path(measure.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.level == 0}
    assert not any(isinstance(node, ast.ImportFrom) and node.level > 0 for node in ast.walk(tree))
    assert imported <= {"__future__", "statistics", "time", "typing", "torch"}


# -- parameters -----------------------------------------------------------------------------------
def test_count_parameters_by_hand():
    assert count_parameters(nn.Conv2d(3, 8, 3)) == 3 * 8 * 9 + 8 == 224
    assert count_parameters(nn.Conv2d(3, 8, 3, bias=False)) == 216
    assert count_parameters(nn.ConvTranspose2d(8, 4, 2, stride=2)) == 8 * 4 * 2 * 2 + 4 == 132
    assert count_parameters(nn.Conv2d(4, 4, 3, groups=2)) == 2 * (2 * 2 * 9) + 4 == 76
    bn = nn.BatchNorm2d(8)                      # weight and bias; the running statistics are buffers
    assert count_parameters(bn) == count_parameters(bn, trainable_only=False) == 16


def test_count_parameters_trainable_only():
    model = UNet(1, 2, features=2, norm=None)
    total = count_parameters(model)
    for p in model.enc1.parameters():
        p.requires_grad_(False)
    frozen = sum(p.numel() for p in model.enc1.parameters())
    assert frozen > 0
    assert count_parameters(model) == total - frozen
    assert count_parameters(model, trainable_only=False) == total


# -- conv layers ----------------------------------------------------------------------------------
def test_count_conv_layers_counts_conv_and_transposed_conv_only():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.ConvTranspose2d(2, 2, 2, stride=2),
                        nn.Flatten(), nn.Linear(8, 1))
    assert count_conv_layers(net) == 2


def test_paper_unet_has_23_conv_layers():
    # Ronneberger et al. 2015: "In total the network has 23 convolutional layers":
    # 9 stages x 2 convs (3x3) + 4 up-convs (2x2) + the final 1x1 conv
    with torch.device("meta"):                  # no memory, no initialisation cost
        paper_unet = UNet(1, 2, padding="valid", norm=None)
    assert count_conv_layers(paper_unet) == 9 * 2 + 4 + 1 == 23


# -- MACs -----------------------------------------------------------------------------------------
def test_count_macs_of_single_layers_by_hand():
    conv = nn.Conv2d(3, 8, 3, padding=1)        # 10x10x8 outputs, each 3 * 3x3 multiply-adds
    assert count_macs(conv, (1, 3, 10, 10)) == 3 * 8 * 9 * 100 == 21_600
    assert count_macs(conv, (2, 3, 10, 10)) == 21_600                      # per image
    assert count_macs(conv, (2, 3, 10, 10), per_image=False) == 43_200
    assert count_macs(nn.Conv2d(3, 8, 3), (1, 3, 10, 10)) == 3 * 8 * 9 * 64  # unpadded: 8x8 outputs
    assert count_macs(nn.Conv2d(3, 8, 3, stride=2, padding=1), (1, 3, 10, 10)) == 3 * 8 * 9 * 25
    # a 2x2 stride-2 up-convolution: every input value goes into 2x2 outputs of each of the 4 channels;
    # the same count seen from the output: 10x10x4 outputs, each one tap per input channel
    tconv = nn.ConvTranspose2d(8, 4, 2, stride=2)
    assert count_macs(tconv, (1, 8, 5, 5)) == 5 * 5 * 8 * 4 * 4 == 10 * 10 * 4 * 8 == 3_200
    # groups: a 3x3 conv with groups=2 reads in_channels / 2 = 1 channel per output
    seq = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1, groups=2))
    assert count_macs(seq, (1, 1, 4, 4)) == 16 * 2 * 1 + 16 * 2 * 1 * 9


def test_count_macs_of_unet_baseline_by_hand():
    f, s = [4, 8, 16, 32, 64], 32
    expected = 0
    for i in range(5):
        side = s // 2 ** i
        cin = 3 if i == 0 else f[i - 1]
        expected += side * side * f[i] * (cin + f[i]) * 9                        # encoder unit
        if i < 4:
            expected += (side // 2) ** 2 * f[i + 1] * f[i] * 4                  # up-conv from below
            expected += side * side * f[i] * (2 * f[i] + f[i]) * 9                # decoder unit
    expected += s * s * 4                                                         # head
    assert count_macs(unet_baseline(3, 1, features=4), (1, 3, s, s)) == expected


def test_count_macs_of_the_2015_unet_by_hand():
    # the paper's Fig. 1, size by size; on the meta device the forward pass computes nothing
    with torch.device("meta"):
        paper_unet = UNet(1, 2, padding="valid", norm=None)
    widths, side, expected = [1, 64, 128, 256, 512, 1024], 572, 0
    for i in range(5):                          # contracting path: two unpadded 3x3 convs, then a 2x2 max-pool
        cin, cout = widths[i], widths[i + 1]
        expected += (side - 2) ** 2 * cout * cin * 9 + (side - 4) ** 2 * cout * cout * 9
        side = (side - 4) // 2 if i < 4 else side - 4
    assert side == 28
    for i in range(4, 0, -1):                   # expanding path: 2x2 up-conv, two 3x3 convs on the concatenation
        cin, cout = widths[i + 1], widths[i]
        expected += side ** 2 * cin * cout * 4
        side *= 2
        expected += (side - 2) ** 2 * cout * 2 * cout * 9 + (side - 4) ** 2 * cout * cout * 9
        side -= 4
    assert side == 388
    expected += 388 ** 2 * 64 * 2               # the 1x1 head
    assert count_macs(paper_unet, (1, 1, 572, 572)) == expected == 150_428_424_448  # 150 GMACs per tile


class _TwoBranches(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, both: bool = True):
        return self.a(x) + self.b(x) if both else self.a(x)


def test_count_macs_counts_only_what_runs_and_leaves_the_model_as_it_was():
    net = _TwoBranches().train()
    assert count_macs(net, (1, 1, 4, 4)) == 16 + 16 * 9
    assert count_macs(net, (1, 1, 4, 4), both=False) == 16                # forward keyword arguments
    assert count_macs(net, torch.zeros(2, 1, 4, 4)) == 16 + 16 * 9         # a tensor instead of a size
    assert net.training                                                  # measured in eval mode, restored
    assert not net.a._forward_hooks and not net.b._forward_hooks        # the hooks are removed


# -- latency --------------------------------------------------------------------------------------
def test_latency_ratios_shape_only():
    nets = {"a": nn.Identity(), "b": nn.Conv2d(1, 1, 1)}
    out = latency_ratios(nets, torch.zeros(1, 1, 4, 4), repeats=2, warmup=0)
    assert set(out) == {"a", "b"} and out["b"]["ratio"] == 1.0 and out["a"]["seconds"] >= 0


def test_latency_ratios_baseline_modes_and_errors():
    nets = {"a": nn.Conv2d(1, 1, 1).train(), "b": nn.Conv2d(1, 1, 1).eval()}
    out = latency_ratios(nets, torch.zeros(1, 1, 4, 4), baseline="a", repeats=1, warmup=1)
    assert out["a"]["ratio"] == 1.0
    torch.testing.assert_close(out["b"]["ratio"], out["b"]["seconds"] / out["a"]["seconds"])
    assert nets["a"].training and not nets["b"].training                 # each model's mode is restored
    with pytest.raises(ValueError, match="at least one"):
        latency_ratios({}, torch.zeros(1))
    with pytest.raises(ValueError, match="baseline 'c'"):
        latency_ratios(nets, torch.zeros(1, 1, 4, 4), baseline="c")


def test_time_ratios_interleave_and_synchronise_cuda(monkeypatch):
    """Every call is bracketed by a CUDA synchronisation on a CUDA device (the GPU's time, not the launch's), and
    the steps take turns: calls alternate a, b, a, b."""
    from unet_lib.measure import time_ratios

    calls, syncs = [], []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: syncs.append(len(calls)))
    out = time_ratios({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, "cuda", baseline="b",
                      repeats=2, warmup=1)
    assert calls == ["a", "b"] * 3 and len(syncs) == 2 * len(calls)
    assert out["b"]["ratio"] == 1.0 and set(out["a"]) == {"seconds", "ratio"}
    syncs.clear()
    time_ratios({"a": lambda: None}, "cpu", repeats=1, warmup=0)
    assert syncs == []                                       # nothing to wait for on the CPU
    with pytest.raises(ValueError, match="baseline 'c'"):
        time_ratios({"a": lambda: None}, baseline="c")


def test_time_ratios_keep_gradients_for_training_steps():
    from unet_lib.measure import time_ratios

    w = torch.ones(3, requires_grad=True)
    time_ratios({"step": lambda: (w * 2).sum().backward()}, repeats=1, warmup=0)
    assert torch.equal(w.grad, torch.full((3,), 2.0))
