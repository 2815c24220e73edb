"""Tests of unet_lib.models.fcn (chapter 02): sizes, bilinear upsampling, skip branches, counts, alignment."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unet_lib.models import FCN, count_parameters
from unet_lib.models.fcn import (
    BilinearUpsample,
    bilinear_kernel,
    crop,
    receptive_field,
    receptive_field_table,
    vgg16_layers,
)

VARIANTS = ("32s", "16s", "8s")


# -- sizes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", [(1, 1), (7, 9), (31, 33), (33, 31), (96, 96), (97, 75), (101, 64)])
def test_output_size_equals_input_size(variant, size):
    model = FCN(3, 2, variant, features=2).eval()
    out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 2, *size)


def test_output_size_in_training_mode_with_a_batch():
    model = FCN(3, 1, "8s", features=2).train()
    assert model(torch.randn(2, 3, 45, 77)).shape == (2, 1, 45, 77)


# -- bilinear upsampling ---------------------------------------------------------------------
def test_bilinear_kernel_by_hand():
    one_d = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(bilinear_kernel(2), torch.outer(one_d, one_d))
    # an odd factor: side 5, centred triangle 1 - |i - 2| / 3
    one_d = torch.tensor([1, 2, 3, 2, 1]) / 3
    assert torch.allclose(bilinear_kernel(3), torch.outer(one_d, one_d))
    assert bilinear_kernel(8).shape == (16, 16) and bilinear_kernel(32).shape == (64, 64)


def test_2x_upsampling_by_hand_1d():
    # a 1x2 map [a, b] upsampled 2x: kernel [.25, .75, .75, .25], stride 2, crop offset 1
    a, b = 2.0, 10.0
    up = BilinearUpsample(1, 2, learnable=False)
    out = crop(up(torch.tensor([[[[a, b]]]])), (2, 4), up.offset)[0, 0]
    expected_row = torch.tensor([0.75 * a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, 0.75 * b])
    # rows are scaled by the vertical kernel too: 1 input row -> weights .75, .75 in the 2 cropped rows
    assert torch.allclose(out, 0.75 * expected_row.expand(2, 4))


@pytest.mark.parametrize("factor", [2, 8, 16, 32])
@pytest.mark.parametrize("learnable", [True, False])
@pytest.mark.parametrize("size", [(5, 7), (6, 3)])
def test_upsampling_at_init_is_bilinear_interpolation(factor, learnable, size):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *size)
    up = BilinearUpsample(3, factor, learnable=learnable)
    h, w = size[0] * factor, size[1] * factor
    ours = crop(up(x), (h, w), up.offset)
    reference = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    o = factor // 2  # the borders differ: interpolate repeats the edge, the transposed conv fades to zero
    assert torch.allclose(ours[..., o:-o, o:-o], reference[..., o:-o, o:-o], atol=1e-5)
    assert not torch.allclose(ours, reference, atol=1e-3)


def test_a_wrong_crop_offset_breaks_the_match():
    x = torch.randn(1, 1, 6, 6)
    up = BilinearUpsample(1, 8, learnable=False)
    reference = F.interpolate(x, scale_factor=8, mode="bilinear", align_corners=False)[..., 4:-4, 4:-4]
    assert not torch.allclose(crop(up(x), (48, 48), 0)[..., 4:-4, 4:-4], reference, atol=1e-3)


def test_learnable_upsampling_is_a_trained_parameter_and_final_one_is_fixed():
    model = FCN(3, 3, "8s", features=2)
    names = dict(model.named_parameters())
    assert "upscore2.weight" in names and names["upscore2.weight"].requires_grad
    assert not any(n.startswith("upscore.") for n in names)   # the final upsampling is a buffer
    w = model.upscore2.weight                                  # (3, 3, 4, 4): class c -> class c only
    assert torch.allclose(w[0, 0], bilinear_kernel(2)) and torch.all(w[0, 1] == 0)
    assert "upscore.weight" not in model.state_dict()          # nothing to store: it is always bilinear


def test_bilinear_upsample_rejects_odd_factors():
    with pytest.raises(ValueError, match="even"):
        BilinearUpsample(1, 3)


def test_crop_checks_its_bounds():
    with pytest.raises(ValueError, match="cannot crop"):
        crop(torch.zeros(1, 1, 10, 10), (8, 8), 3)


# -- skip branches and parameter counts ---------------------------------------------------
def _names(model):
    return {n for n, _ in model.named_parameters()}


@pytest.mark.parametrize("features,num_classes", [(4, 1), (8, 21)])
def test_16s_and_8s_add_only_the_skip_branches(features, num_classes):
    n32, n16, n8 = (_names(FCN(3, num_classes, v, features=features)) for v in VARIANTS)
    assert n32 < n16 < n8
    assert n16 - n32 == {"score_pool4.weight", "score_pool4.bias", "upscore2.weight"}
    assert n8 - n16 == {"score_pool3.weight", "score_pool3.bias", "upscore_pool4.weight"}
    c32, c16, c8 = (count_parameters(FCN(3, num_classes, v, features=features)) for v in VARIANTS)
    k = num_classes
    assert c16 - c32 == (8 * features * k + k) + k * k * 16   # score_pool4 + upscore2 (4x4, no bias)
    assert c8 - c16 == (4 * features * k + k) + k * k * 16    # score_pool3 + upscore_pool4


def _meta(*args, **kwargs) -> FCN:
    """Build a (large) model on the meta device: shapes only, no memory, no time."""
    with torch.device("meta"):
        return FCN(*args, **kwargs)


def test_parameter_counts_of_the_paper():
    # VGG16 convolutions: torchvision's vgg16().features has 14,714,688 parameters
    m = _meta(3, 21, "32s", fc_kernel=7, norm=None)
    backbone = sum(count_parameters(getattr(m, f"conv{i}")) for i in range(1, 6))
    assert backbone == 14_714_688
    # FCN-VGG16 with 7x7 fc6 and 21 classes: Long et al. 2015, Table 1, "134M"
    assert count_parameters(m) == 134_346_581
    assert count_parameters(_meta(3, 21, "16s", fc_kernel=7, norm=None)) == 134_364_410
    assert count_parameters(_meta(3, 21, "8s", fc_kernel=7, norm=None)) == 134_376_863


@pytest.mark.parametrize("variant,features,expected", [
    ("32s", 64, 50_390_977), ("16s", 64, 50_391_506), ("8s", 64, 50_391_779),   # defaults, 1 class
    ("32s", 16, 3_155_185), ("16s", 16, 3_155_330), ("8s", 16, 3_155_411),      # the cpu profile's width
])
def test_parameter_counts_of_the_book_models(variant, features, expected):
    assert count_parameters(_meta(3, 1, variant, features=features)) == expected


def test_fc6_kernel_3_saves_the_expected_weights():
    p7 = count_parameters(_meta(3, 21, "32s", fc_kernel=7, norm=None))
    p3 = count_parameters(_meta(3, 21, "32s", fc_kernel=3, norm=None))
    assert p7 - p3 == 512 * 4096 * (49 - 9)


# -- initialisation and training -------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_score_layers_start_at_zero(variant):
    model = FCN(3, 2, variant, features=2).eval()
    for name in ("score_fr", "score_pool4", "score_pool3"):
        layer = getattr(model, name, None)
        if layer is not None:
            assert torch.all(layer.weight == 0) and torch.all(layer.bias == 0)
    assert torch.all(model(torch.randn(1, 3, 40, 40)) == 0)


def test_skip_branches_receive_gradients():
    torch.manual_seed(0)
    model = FCN(3, 1, "8s", features=2)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    for name in ("score_pool4.weight", "score_pool3.weight", "score_fr.weight"):
        assert dict(model.named_parameters())[name].grad.abs().sum() > 0


# -- alignment: a left-right symmetric network must give left-right symmetric answers ---------------
def _symmetrise(model: nn.Module) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                w = torch.randn_like(m.weight) * 0.3
                m.weight.copy_(w + w.flip(-1))
                if m.bias is not None:
                    m.bias.normal_(0, 0.1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_is_aligned_with_the_input(variant):
    """With mirror-symmetric kernels, flipping the input must flip the output exactly; an upsampled map
    cropped at the wrong offset is shifted and breaks this (the width is a multiple of 32, so that
    every pooling is symmetric too)."""
    model = FCN(3, 1, variant, features=2, dropout=0.0).eval()
    _symmetrise(model)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out, out_flipped = model(x), model(x.flip(-1))
    assert out.abs().mean() > 1e-3
    assert torch.allclose(out_flipped, out.flip(-1), atol=1e-4 * out.abs().max().item())


def test_alignment_check_detects_a_wrong_offset():
    model = FCN(3, 1, "32s", features=2, dropout=0.0).eval()
    _symmetrise(model)
    model.upscore.offset = 0   # crop at the top-left corner instead of the overhang
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert not torch.allclose(model(x.flip(-1)), model(x).flip(-1), atol=1e-3)


# -- receptive field ----------------------------------------------------------------------------
def test_receptive_field_by_hand():
    assert receptive_field([]) == (1, 1)
    assert receptive_field([(3, 1), (3, 1)]) == (5, 1)
    assert receptive_field([(3, 1), (2, 2), (3, 1)]) == (8, 2)
    assert receptive_field([(7, 2), (3, 2)]) == (11, 4)


def test_receptive_field_of_vgg16():
    table = {r["layer"]: (r["receptive_field"], r["output_stride"]) for r in receptive_field_table(fc_kernel=7)}
    assert table["pool3"] == (44, 8) and table["pool4"] == (100, 16) and table["pool5"] == (212, 32)
    assert table["fc6"] == (404, 32) and table["fc7"] == (404, 32)
    assert {r["layer"]: r["receptive_field"] for r in receptive_field_table()}["fc7"] == 276
    assert len([n for n, k, s in vgg16_layers() if n.startswith("conv")]) == 13


# -- bad input --------------------------------------------------------------------------------
def test_bad_arguments_fail_with_a_fix():
    with pytest.raises(ValueError, match="32s"):
        FCN(3, 1, "4s")
    with pytest.raises(ValueError, match="odd"):
        FCN(3, 1, fc_kernel=4)
    with pytest.raises(ValueError, match="features"):
        FCN(3, 1, features=0)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        FCN(3, 1, features=2)(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"input height 0 \(of shape \(1, 3, 0, 5\)\) is too small for FCN-8s.*empty"):
        FCN(3, 1, features=2)(torch.zeros(1, 3, 0, 5))
