"""Tests for unet_lib.models.unet and unet_lib.models.blocks (the counting helpers: tests/test_measure.py).

The structural facts come from the 2015 paper (Ronneberger et al., Fig. 1) and DESIGN section 3;
the parameter counts are recomputed here by hand, layer by layer, as an independent reference.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from unet_lib.measure import count_conv_layers, count_parameters
from unet_lib.models.blocks import (
    ConvBlock,
    DoubleConv,
    UpConv,
    center_crop,
    check_input,
    conv3x3,
    match_size,
    nearest_multiples,
)
from unet_lib.models.unet import UNet, nearest_valid_input_sizes, valid_input_size, valid_output_size


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks run faster on one thread; returns the usual thread count for the one big forward pass."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield threads
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- reference counts
def _conv(k: int, cin: int, cout: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def reference_unet_parameters(in_channels: int, num_classes: int, f: int = 64, batch_norm: bool = False) -> int:
    """Parameters of the U-Net counted layer by layer from the paper's Fig. 1 (independent of the model code).

    Each 3x3 conv: 9*cin*cout weights + cout biases (no bias but 2*cout BN parameters with batch norm);
    each 2x2 up-convolution: 4*cin*cout + cout; the 1x1 head: cin*num_classes + num_classes.
    """
    widths = [f, 2 * f, 4 * f, 8 * f, 16 * f]

    def conv3(cin, cout):
        return _conv(3, cin, cout, bias=not batch_norm) + (2 * cout if batch_norm else 0)

    total, cin = 0, in_channels
    for w in widths:                                     # contracting path + bottleneck: 10 convs
        total += conv3(cin, w) + conv3(w, w)
        cin = w
    for w in reversed(widths[:-1]):                      # expanding path: 4 up-convs + 8 convs
        total += _conv(2, 2 * w, w)                      # up-conv halves the channels
        total += conv3(2 * w, w) + conv3(w, w)           # after concatenation: 2w channels in
    total += _conv(1, widths[0], num_classes)            # 1x1 head
    return total


def test_reference_count_is_the_design_number():
    # guard for the hand count itself: DESIGN section 3 gives these two numbers
    assert reference_unet_parameters(1, 2) == 31_030_658
    assert reference_unet_parameters(3, 2, batch_norm=True) == 31_037_698


# --------------------------------------------------------------------------- the 2015 network
@pytest.fixture(scope="module")
def paper_unet():
    torch.manual_seed(0)
    return UNet(1, 2, padding="valid", norm=None).eval()


def test_paper_unet_parameter_count(paper_unet):
    assert count_parameters(paper_unet) == 31_030_658
    assert count_parameters(paper_unet) == reference_unet_parameters(1, 2)


def test_paper_unet_maps_572_to_388(paper_unet, one_thread):
    torch.set_num_threads(one_thread)   # the only big computation of the test suite (a few seconds)
    try:
        with torch.no_grad():
            out = paper_unet(torch.zeros(1, 1, 572, 572))
    finally:
        torch.set_num_threads(1)
    assert out.shape == (1, 2, 388, 388)
    assert paper_unet.margin == 92 and paper_unet.output_size(572) == 388


def test_padded_batchnorm_unet_parameter_count():
    model = UNet(3, 2)  # padding="same", norm="batch"
    assert count_parameters(model) == 31_037_698
    assert count_parameters(model) == reference_unet_parameters(3, 2, batch_norm=True)
    assert count_conv_layers(model) == 23
    # running means/variances are buffers, not parameters
    assert count_parameters(model, trainable_only=False) == 31_037_698


@pytest.mark.parametrize("features", [2, 4, 8])
@pytest.mark.parametrize("norm", [None, "batch"])
def test_parameter_count_matches_reference_for_other_widths(features, norm):
    model = UNet(1, 3, features=features, padding="valid", norm=norm)
    assert count_parameters(model) == reference_unet_parameters(1, 3, features, batch_norm=norm == "batch")


# --------------------------------------------------------------------------- sizes
def test_valid_output_size_matches_independent_formula():
    # independent formula: the valid inputs are exactly s = 16k + 124 with k >= 4, and then o = s - 184
    for s in range(1, 1200):
        expected = s - 184 if (s - 124) % 16 == 0 and s >= 188 else None
        if expected is None:
            with pytest.raises(ValueError):
                valid_output_size(s)
        else:
            assert valid_output_size(s) == expected, s


def test_smallest_valid_input_really_works():
    # 188 is the smallest input: the bottleneck sees 4x4 after its two convs and the output is 4x4
    model = UNet(1, 1, features=2, padding="valid", norm=None).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 188, 204)).shape == (1, 1, 4, 20)


@pytest.mark.parametrize("size, below, above", [(500, 492, 508), (573, 572, 588), (200, 188, 204), (190, 188, 204)])
def test_invalid_size_error_names_nearest_valid_input_sizes(size, below, above):
    assert nearest_valid_input_sizes(size) == (below, above)
    with pytest.raises(ValueError, match=f"{below} or {above}"):
        valid_output_size(size)
    model = UNet(1, 2, features=2, padding="valid", norm=None)
    with pytest.raises(ValueError, match=f"{below} or {above}"):
        model(torch.zeros(1, 1, size, 572))


def test_nearest_valid_input_sizes_brackets_the_size_with_valid_inputs():
    valid = {s for s in range(1, 900) if (s - 124) % 16 == 0 and s >= 188}   # the independent formula
    for size in range(1, 800):
        lo, hi = nearest_valid_input_sizes(size)
        assert lo in valid and hi in valid, size
        if size in valid:
            assert lo == hi == size
        elif size < 188:
            assert lo == hi == 188
        else:
            assert lo < size < hi and not any(lo < s < hi for s in valid), size


def test_valid_size_error_is_exactly_the_books_text():
    # chapter 03 prints this message under NBVAL_CHECK_OUTPUT: changing it breaks the notebook
    with pytest.raises(ValueError) as err:
        UNet(1, 2, features=2, padding="valid", norm=None)(torch.zeros(1, 1, 500, 500))
    assert str(err.value) == ("input size 500 does not fit the valid-padding U-Net: use 492 or 508 "
                              "(valid inputs are 16k+124, from 188), or padding='same'")


def test_valid_size_error_of_a_non_square_input_names_the_side_and_the_shape():
    model = UNet(1, 2, features=2, padding="valid", norm=None)
    with pytest.raises(ValueError, match=r"input width 500 \(of shape \(1, 1, 572, 500\)\).*492 or 508"):
        model(torch.zeros(1, 1, 572, 500))
    with pytest.raises(ValueError, match=r"too small.*at least 188.*use 188 \("):
        model(torch.zeros(1, 1, 572, 100))


@pytest.mark.parametrize("size", [0, 1, 100, 124, 140, 156, 172])
def test_too_small_valid_sizes_raise(size):
    with pytest.raises(ValueError, match="188"):
        valid_output_size(size)


def test_valid_input_size():
    assert valid_input_size(388) == 572
    assert valid_input_size(4) == 188
    for out in (4, 20, 116, 388):
        assert valid_output_size(valid_input_size(out)) == out
    with pytest.raises(ValueError, match="388 or 404"):
        valid_input_size(390)
    with pytest.raises(ValueError):
        valid_input_size(3)


@pytest.mark.parametrize("height, width", [(17, 33), (101, 77), (64, 65), (16, 16), (31, 16)])
def test_same_padding_keeps_odd_sizes(height, width):
    torch.manual_seed(0)
    model = UNet(3, 2, features=4).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, height, width))
    assert out.shape == (2, 2, height, width)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("height, width", [(15, 32), (32, 8)])
def test_same_padding_too_small_raises(height, width):
    model = UNet(1, 1, features=4).eval()
    with pytest.raises(ValueError, match="too small"):
        model(torch.zeros(1, 1, height, width))


def test_wrong_channels_raise():
    model = UNet(3, 1, features=4)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\), got \(1, 1, 32, 32\).*in_channels=1"):
        model(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        model(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match=r"permute\(0, 3, 1, 2\)"):
        model(torch.zeros(1, 32, 32, 3))


def test_bilinear_up():
    model = UNet(1, 2, features=4, up="bilinear").eval()
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 37, 21)).shape == (1, 2, 37, 21)
    valid = UNet(1, 2, features=2, padding="valid", norm=None, up="bilinear").eval()
    with torch.no_grad():
        assert valid(torch.zeros(1, 1, 204, 188)).shape == (1, 2, 20, 4)
    # bilinear + 1x1 conv has cin*cout + cout parameters where the up-conv has 4*cin*cout + cout
    f = 4
    saved = sum(3 * (2 * w) * w for w in (f, 2 * f, 4 * f, 8 * f))
    assert count_parameters(UNet(1, 2, f, up="transpose")) - count_parameters(model) == saved


def test_unknown_options_raise():
    with pytest.raises(ValueError, match="same"):
        UNet(1, 2, padding="full")
    with pytest.raises(ValueError, match="batch"):
        UNet(1, 2, norm="group")
    with pytest.raises(ValueError, match="bilinear"):
        UNet(1, 2, up="nearest")


def test_gradients_reach_the_first_layer():
    torch.manual_seed(0)
    model = UNet(1, 1, features=2)
    model(torch.randn(2, 1, 32, 32)).sum().backward()
    assert model.enc1[0][0].weight.grad is not None
    assert model.enc1[0][0].weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- blocks
def test_center_crop_of_arange():
    x = torch.arange(36).reshape(6, 6)
    assert torch.equal(center_crop(x, 2, 2), torch.tensor([[14, 15], [20, 21]]))
    assert torch.equal(center_crop(x, 6, 6), x)
    # odd margins: 5 -> 2 leaves 3 rows, 1 on top and 2 below
    y = torch.arange(25).reshape(1, 1, 5, 5)
    assert torch.equal(center_crop(y, 2, 3)[0, 0], torch.tensor([[6, 7, 8], [11, 12, 13]]))
    with pytest.raises(ValueError, match="larger"):
        center_crop(x, 7, 2)


def test_center_crop_like_the_paper():
    # the paper crops the 64x64 map of the 4th stage to 56x56: 4 pixels off each side
    x = torch.arange(64 * 64).reshape(1, 1, 64, 64)
    assert torch.equal(center_crop(x, 56, 56), x[..., 4:60, 4:60])


def test_match_size_pads_with_zeros():
    x = torch.ones(1, 1, 2, 2)
    out = match_size(x, torch.empty(1, 7, 3, 5))
    assert out.shape == (1, 1, 3, 5)
    # dh = 1 -> 0 rows above, 1 below; dw = 3 -> 1 column left, 2 right
    expected = torch.tensor([[0., 1., 1., 0., 0.],
                             [0., 1., 1., 0., 0.],
                             [0., 0., 0., 0., 0.]])
    assert torch.equal(out[0, 0], expected)


def test_match_size_crops_and_keeps():
    x = torch.arange(16.).reshape(1, 1, 4, 4)
    assert torch.equal(match_size(x, torch.empty(1, 1, 2, 2)), x[..., 1:3, 1:3])
    assert match_size(x, torch.empty(2, 3, 4, 4)) is x


def test_match_size_mixed_pad_and_crop():
    x = torch.ones(1, 1, 3, 5)
    out = match_size(x, torch.empty(1, 1, 4, 4))
    assert out.shape == (1, 1, 4, 4)


def test_conv_block_bias_only_without_norm():
    normed = ConvBlock(3, 8, norm="batch")
    assert normed[0].bias is None and isinstance(normed[1], nn.BatchNorm2d)
    inst = ConvBlock(3, 8, norm="instance")
    assert inst[0].bias is None and isinstance(inst[1], nn.InstanceNorm2d)
    plain = ConvBlock(3, 8, norm=None)
    assert plain[0].bias is not None and plain[0].bias.shape == (8,)
    assert isinstance(plain[1], nn.Identity)
    assert sum(p.numel() for p in plain.parameters()) == 9 * 3 * 8 + 8
    assert sum(p.numel() for p in normed.parameters()) == 9 * 3 * 8 + 2 * 8


def test_conv_block_output_is_relu():
    torch.manual_seed(0)
    out = ConvBlock(1, 4, norm=None)(torch.randn(1, 1, 8, 8))
    assert (out >= 0).all() and (out == 0).any()


@pytest.mark.parametrize("padding, shrink", [("same", 0), ("valid", 2)])
def test_conv3x3_sizes(padding, shrink):
    assert conv3x3(2, 3, padding)(torch.zeros(1, 2, 9, 12)).shape == (1, 3, 9 - shrink, 12 - shrink)


def test_double_conv():
    block = DoubleConv(3, 8, padding="valid", norm=None, mid_channels=5)
    assert block[0][0].out_channels == 5 and block[1][0].in_channels == 5
    assert block(torch.zeros(1, 3, 20, 13)).shape == (1, 8, 16, 9)  # two valid convs: 4 pixels in all


@pytest.mark.parametrize("up", ["transpose", "bilinear"])
def test_upconv_doubles_size(up):
    assert UpConv(8, 4, up)(torch.zeros(2, 8, 5, 7)).shape == (2, 4, 10, 14)


def test_paper_init_has_the_papers_standard_deviation():
    from unet_lib.models.blocks import paper_init_

    torch.manual_seed(0)
    model = paper_init_(UNet(1, 2, features=64, padding="valid", norm=None))
    conv = model.enc2[0][0]                      # 3x3 conv reading 64 channels: N = 9 * 64 = 576
    assert conv.weight.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.01)
    assert torch.count_nonzero(conv.bias) == 0
    up = model.up1.up                            # 2x2 up-conv reading 128 channels: N = 128
    assert up.weight.std().item() == pytest.approx((2 / 128) ** 0.5, rel=0.02)


def test_dropout_changes_training_outputs_not_parameters():
    plain, dropped = UNet(1, 2, features=4, padding="valid", norm=None), UNet(1, 2, 4, "valid", None, dropout=0.5)
    assert count_parameters(plain) == count_parameters(dropped)
    dropped.load_state_dict(plain.state_dict())
    x = torch.rand(1, 1, 188, 188)
    plain.eval(), dropped.eval()
    assert torch.equal(plain(x), dropped(x))     # inference: dropout is off
    dropped.train()
    assert not torch.equal(plain(x), dropped(x))
    with pytest.raises(ValueError, match="dropout"):
        UNet(1, 2, dropout=1.0)


# --------------------------------------------------------------------------- the shared input check
def test_nearest_multiples():
    assert nearest_multiples(100) == (96, 112)
    assert nearest_multiples(96) == (96, 96)
    assert nearest_multiples(5) == (16, 16)                  # never below one multiple
    assert nearest_multiples(30, 8) == (24, 32)
    for size in range(1, 300):                               # brute force: the multiples of 16 around size
        lo, hi = nearest_multiples(size, 16)
        assert lo % 16 == 0 and hi % 16 == 0 and lo >= 16
        assert (lo == hi == size) if size % 16 == 0 else (lo == hi == 16 if size < 16 else lo < size < hi == lo + 16)
    with pytest.raises(ValueError, match="positive"):
        nearest_multiples(10, 0)


def test_check_input_accepts_what_fits():
    check_input(torch.zeros(2, 3, 32, 48), 3, model="net", multiple=16, min_size=16)
    check_input(torch.zeros(1, 1, 188, 572), 1, model="net", multiple=16, offset=124, min_size=188)
    check_input(torch.zeros(1, 1, 1, 1), 1, model="net")


def test_check_input_names_the_shape_and_the_fix():
    x = torch.zeros(1, 3, 32, 30)
    with pytest.raises(ValueError, match=r"input width 30 \(of shape \(1, 3, 32, 30\)\) does not fit net: "
                                         r"resize or pad to 16 or 32 \(sides must be multiples of 16: two poolings\)"):
        check_input(x, 3, model="net", multiple=16, reason="two poolings")
    with pytest.raises(ValueError, match=r"input size 8 is too small for net: two poolings need sides of at least "
                                         r"16 pixels; resize or pad to 16 \("):
        check_input(torch.zeros(1, 3, 8, 8), 3, model="net", multiple=16, min_size=16, reason="two poolings")
    with pytest.raises(ValueError, match="at least 4 pixels; resize or pad to at least 4 pixels"):
        check_input(torch.zeros(1, 3, 3, 8), 3, model="net", min_size=4)
    with pytest.raises(ValueError, match="use it like this"):
        check_input(x, 3, model="net", multiple=16, suggest=lambda side: "use it like this")
    with pytest.raises(ValueError, match=r"the form 124 \+ 16k, at least 188"):
        check_input(torch.zeros(1, 1, 200, 188), 1, model="net", multiple=16, offset=124, min_size=188)


def test_check_input_recognises_the_usual_slips():
    with pytest.raises(ValueError, match=r"net expects input of shape \(B, 3, H, W\), got \(3, 32, 32\).*unsqueeze"):
        check_input(torch.zeros(3, 32, 32), 3, model="net")
    with pytest.raises(ValueError, match=r"\(H, W, C\).*permute\(2, 0, 1\)"):
        check_input(torch.zeros(32, 32, 3), 3, model="net")
    with pytest.raises(ValueError, match=r"x\[None, None\]"):
        check_input(torch.zeros(32, 32), 1, model="net")
    with pytest.raises(ValueError, match=r"channels last.*permute\(0, 3, 1, 2\)"):
        check_input(torch.zeros(2, 32, 32, 3), 3, model="net")
    with pytest.raises(ValueError, match=r"in_channels=3 and got 1 channel "):
        check_input(torch.zeros(2, 1, 32, 32), 3, model="net")
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_input([[0.0]], 1, model="net")


def test_width_matching_gives_fcn8s_parameters_at_tensor_core_widths():
    """Chapter 02: exact below width 16 (cpu profile: 10 for FCN-8s of width 8), a multiple of 8 above (40, not 41)."""
    from unet_lib.models import FCN
    from unet_lib.models.unet import width_matching

    with torch.device("meta"):
        fcn = {f: count_parameters(FCN(3, 1, "8s", features=f)) for f in (8, 32)}
        assert width_matching(fcn[8]) == 10
        assert width_matching(fcn[32], multiple=1) == 41          # the exact match
        assert width_matching(fcn[32]) == 40
        assert abs(count_parameters(UNet(3, 1, features=40)) / fcn[32] - 1) < 0.05
        with pytest.raises(ValueError, match="parameters"):
            width_matching(0)
