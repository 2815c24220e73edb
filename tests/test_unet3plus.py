"""UNet 3+ (chapter 06): parameter count, full-scale wiring, deep supervision, the CGM gate."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unet_lib import losses, models, train
from unet_lib.losses import unet3plus_loss
from unet_lib.models.blocks import nearest_multiples
from unet_lib.models.unet3plus import GATE_LOGIT, UNet3Plus, cgm_decision, gate_logits

NARROW = (4, 8, 16, 32, 64)


def _authors_parameter_count(in_channels: int = 3, num_classes: int = 1, f=(64, 128, 256, 512, 1024)) -> int:
    """Parameters of ZJUGiveLab/UNet-Version models/UNet_3Plus.py (UNet_3Plus), counted by hand from its layers.

    Encoder: unetConv2 blocks (conv with bias + BN + ReLU, twice); decoder: for each stage five
    3x3 convs (with bias) to 64 channels + BN, one 320 -> 320 fusion conv (with bias) + BN; head: 3x3 conv.
    """
    conv = lambda i, o, k=3: i * o * k * k + o  # noqa: E731 (weights + bias)
    bn = lambda c: 2 * c  # noqa: E731
    cat, up = f[0], 5 * f[0]
    n = sum(conv(i, o) + bn(o) + conv(o, o) + bn(o) for i, o in zip((in_channels,) + tuple(f[:-1]), f))
    stage_sources = ((f[0], f[1], f[2], f[3], f[4]), (f[0], f[1], f[2], up, f[4]),
                     (f[0], f[1], up, up, f[4]), (f[0], up, up, up, f[4]))
    for sources in stage_sources:
        n += sum(conv(s, cat) + bn(cat) for s in sources) + conv(up, up) + bn(up)
    return n + conv(up, num_classes)


def test_parameter_count_matches_paper_and_authors_code():
    ours = models.count_parameters(UNet3Plus(3, 1))
    assert ours == 26_965_249
    authors = _authors_parameter_count()
    assert authors == 26_971_777
    # the only difference: the authors' convs before a batch norm have a (redundant) bias
    biases_before_bn = 2 * sum((64, 128, 256, 512, 1024)) + 4 * (5 * 64 + 320)
    assert authors - ours == biases_before_bn == 6_528
    assert round(ours / 1e6, 2) == round(authors / 1e6, 2) == 26.97  # UNet 3+ paper, Table 1


def test_heads_and_cgm_parameters():
    base = models.count_parameters(UNet3Plus(3, 1))
    assert models.count_parameters(UNet3Plus(3, 1, deep_supervision=True)) - base == 3 * (320 * 9 + 1) + 1024 * 9 + 1
    assert models.count_parameters(UNet3Plus(3, 1, cgm=True)) - base == 1024 * 2 + 2


def test_fewer_parameters_than_unet_and_unetplusplus():
    n3 = models.count_parameters(UNet3Plus(3, 1))
    assert n3 < models.count_parameters(models.UNet(3, 1, features=64))
    if hasattr(models, "UNetPlusPlus"):
        assert n3 < models.count_parameters(models.UNetPlusPlus(3, 1, features=(64, 128, 256, 512, 1024)))


def test_paper_shapes_on_meta_device():
    with torch.device("meta"):
        net = UNet3Plus(3, 1, deep_supervision=True, cgm=True)
        seg, cls_logits = net(torch.empty(2, 3, 320, 320))
    assert [tuple(d.shape) for d in seg] == [(2, 1, 320, 320)] * 5
    assert tuple(cls_logits.shape) == (2, 2)


@pytest.mark.parametrize("size", [16, 32, 48, 96])
def test_single_output_full_resolution(size):
    net = UNet3Plus(3, 2, features=NARROW)
    assert net(torch.rand(2, 3, size, size)).shape == (2, 2, size, size)


def test_rectangular_input():
    net = UNet3Plus(1, 1, features=NARROW, deep_supervision=True)
    out = net(torch.rand(1, 1, 32, 64))
    assert [tuple(d.shape) for d in out] == [(1, 1, 32, 64)] * 5


def test_deep_supervision_five_full_resolution_outputs_finest_first():
    torch.manual_seed(0)
    net = UNet3Plus(3, 1, features=NARROW, deep_supervision=True).eval()
    x = torch.rand(2, 3, 48, 48)
    seen = {}
    hooks = [getattr(net, f"outconv{i}").register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(i, o))
             for i in range(1, 6)]
    out = net(x)
    for h in hooks:
        h.remove()
    assert isinstance(out, list) and len(out) == 5
    assert all(d.shape == (2, 1, 48, 48) for d in out)
    assert seen[1].shape[-1] == 48 and seen[5].shape[-1] == 3           # d1 at H, d5 at H/16 before upsampling
    for i, d in enumerate(out, start=1):                                 # d1, d2, ..., d5 in this order
        expected = seen[i] if i == 1 else F.interpolate(seen[i], scale_factor=2 ** (i - 1), mode="bilinear",
                                                        align_corners=False)
        torch.testing.assert_close(d, expected)
    # the deep-supervision model's d1 is the plain model's output (same weights)
    plain = UNet3Plus(3, 1, features=NARROW).eval()
    plain.load_state_dict(net.state_dict(), strict=False)
    torch.testing.assert_close(plain(x), out[0])


def _reference_forward(net: UNet3Plus, x: torch.Tensor) -> torch.Tensor:
    """An independent, loop-based full-scale decoder: stage i reads h1..h_{i-1} pooled, h_i, hd_{i+1}..hd5 upsampled."""
    h = {1: net.conv1(x)}
    for i in range(2, 6):
        h[i] = getattr(net, f"conv{i}")(F.max_pool2d(h[i - 1], 2))
    hd = {5: h[5]}
    for i in (4, 3, 2, 1):
        parts = []
        for j in range(1, 6):
            if j < i:
                parts.append(getattr(net, f"h{j}_pt_hd{i}")(F.max_pool2d(h[j], 2 ** (i - j))))
            elif j == i:
                parts.append(getattr(net, f"h{i}_cat_hd{i}")(h[i]))
            else:
                up = F.interpolate(hd[j], scale_factor=2 ** (j - i), mode="bilinear", align_corners=False)
                parts.append(getattr(net, f"hd{j}_ut_hd{i}")(up))
        assert all(p.shape[1] == net.cat_channels for p in parts)
        hd[i] = getattr(net, f"conv{i}d")(torch.cat(parts, 1))
        assert hd[i].shape[1] == 5 * net.cat_channels
    return net.outconv1(hd[1])


def test_forward_equals_loop_based_full_scale_reference():
    torch.manual_seed(1)
    net = UNet3Plus(3, 1, features=(5, 6, 7, 8, 9)).eval()
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(net(x), _reference_forward(net, x))


def test_cat_and_decoder_channels():
    net = UNet3Plus(3, 1, features=(8, 16, 32, 64, 128), deep_supervision=True)
    assert net.cat_channels == 8 and net.up_channels == 40
    assert net.conv4d[0].in_channels == 40 and net.hd4_ut_hd1[0].in_channels == 40
    assert net.hd5_ut_hd1[0].in_channels == 128 and net.outconv5.in_channels == 128


@pytest.mark.parametrize("size", [30, 50, 100])
def test_bad_size_names_valid_sizes(size):
    lo, hi = nearest_multiples(size, 16)
    with pytest.raises(ValueError, match=f"input size {size} does not fit UNet 3\\+: resize or pad to {lo} or {hi} "
                                         r"\(sides must be multiples of 16: four 2x2 poolings"):
        UNet3Plus(3, 1, features=NARROW)(torch.rand(1, 3, size, size))


def test_too_small_size_says_so():
    with pytest.raises(ValueError, match=r"input width 8 \(of shape \(1, 3, 32, 8\)\) is too small for UNet 3\+.*16"):
        UNet3Plus(3, 1, features=NARROW)(torch.rand(1, 3, 32, 8))


def test_bad_channels_and_features():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        UNet3Plus(3, 1, features=NARROW)(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="five"):
        UNet3Plus(3, 1, features=(4, 8, 16))


# -- the classification-guided module ------------------------------------------------------
def _cgm_net(says_polyp: bool, deep_supervision: bool = False) -> UNet3Plus:
    torch.manual_seed(0)
    net = UNet3Plus(3, 1, features=NARROW, deep_supervision=deep_supervision, cgm=True)
    conv = net.cls[1]
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([-5.0, 5.0] if says_polyp else [5.0, -5.0]))
    return net.eval()


@pytest.mark.parametrize("deep_supervision", [False, True])
def test_cgm_gate_turns_empty_image_into_all_zero_mask(deep_supervision):
    x = torch.rand(2, 3, 32, 32)
    net = _cgm_net(says_polyp=False, deep_supervision=deep_supervision)
    seg, cls_logits = net(x)
    assert not cgm_decision(cls_logits).any()
    heads = seg if deep_supervision else [seg]
    for d in heads:
        probs = train.probs_from_logits(d)
        assert torch.equal(probs, torch.zeros_like(probs))                 # probability exactly 0, not 0.5
        assert not train.masks_from_logits(d).any()                        # all-zero mask
        assert torch.isfinite(d).all()
        assert torch.isfinite(losses.hybrid_loss(d, torch.ones_like(d)))    # a loss on gated logits stays finite
    # the authors' gate multiplies the logits by the 0/1 decision: sigmoid(0) = 0.5 everywhere
    net.gate = False
    ungated, _ = net(x)
    authors = (ungated[0] if deep_supervision else ungated) * 0.0
    assert torch.allclose(torch.sigmoid(authors), torch.full_like(authors, 0.5))


def test_cgm_gate_keeps_images_with_polyp_and_is_off_in_training():
    x = torch.rand(2, 3, 32, 32)
    net = _cgm_net(says_polyp=True)
    gated, _ = net(x)
    net.gate = False
    ungated, _ = net(x)
    torch.testing.assert_close(gated, ungated)
    net = _cgm_net(says_polyp=False).train()
    seg, _ = net(x)
    assert (seg > GATE_LOGIT / 2).all()                                    # training: no gate


def test_gate_logits_per_image():
    logits = torch.randn(3, 1, 4, 4)
    cls_logits = torch.tensor([[0.0, 1.0], [2.0, -1.0], [0.3, 0.2]])       # polyp, empty, empty
    out = gate_logits(logits, cls_logits)
    torch.testing.assert_close(out[0], logits[0])
    assert (out[1:] == GATE_LOGIT).all() and (torch.sigmoid(out[1:]) == 0).all()
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        gate_logits(logits, torch.zeros(3, 1))


def test_unet3plus_loss_adds_bce_of_the_cgm_and_trains_it():
    torch.manual_seed(0)
    net = UNet3Plus(3, 1, features=NARROW, deep_supervision=True, cgm=True).train()
    x, mask = torch.rand(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float()
    has = torch.tensor([1.0, 0.0])
    out = net(x)
    loss = unet3plus_loss(out, mask, has, seg_loss=losses.bce_dice_loss)
    seg, cls_logits = out
    expected = losses.deep_supervision_loss(seg, mask, losses.bce_dice_loss) + F.binary_cross_entropy_with_logits(
        cls_logits, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert net.cls[1].weight.grad is not None and net.cls[1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="has_object"):
        unet3plus_loss(out, mask)
    plain = UNet3Plus(3, 1, features=NARROW)(x)
    torch.testing.assert_close(unet3plus_loss(plain, mask), losses.hybrid_loss(plain, mask))
