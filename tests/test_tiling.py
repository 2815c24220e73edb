"""Tests for unet_lib.tiling: overlap-tile prediction is exactly the whole-image prediction.

A tiny valid-padding U-Net runs in double precision; predict_tiled/predict_whole return float32
logits, so "exactly" (atol 1e-10) means the same float32 numbers.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_lib.models.unet import UNet, valid_output_size
from unet_lib.tiling import mirror_pad, plan_tiles, predict_tiled, predict_whole

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def valid_net():
    torch.manual_seed(0)
    return UNet(1, 2, features=2, padding="valid", norm=None).double().eval()


def _image(h, w, seed=0, channels=1):
    return torch.rand(channels, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# (height, width, tile): an image smaller than one tile, non-square images, odd sizes, several tiles per side
CASES = [(11, 13, 20), (37, 53, 20), (45, 23, 36), (64, 64, 20), (50, 71, 52), (20, 20, 20), (33, 90, 36)]


@pytest.mark.parametrize("height, width, tile", CASES)
def test_tiled_equals_whole(valid_net, height, width, tile):
    image = _image(height, width, seed=height * width)
    tiled = predict_tiled(valid_net, image, tile=tile, batch_size=3)
    whole = predict_whole(valid_net, image, tile=tile)
    assert tiled.shape == whole.shape == (1, 2, height, width)
    plan = plan_tiles(height, width, tile, valid_net.margin)
    if len(plan.boxes) > 1:
        assert not torch.equal(tiled[..., :1, :1], tiled[..., -1:, -1:])  # a real, non-constant output
    assert torch.allclose(tiled.double(), whole.double(), atol=1e-10, rtol=0)


def test_tiled_result_does_not_depend_on_batch_size(valid_net):
    image = _image(40, 57, seed=1)
    a = predict_tiled(valid_net, image, tile=20, batch_size=1)
    b = predict_tiled(valid_net, image[None], tile=20, batch_size=64)
    assert torch.equal(a, b)


def test_whole_equals_network_on_independently_mirrored_image(valid_net):
    # Independent reference for the padding: numpy's reflect mode, margin 92 on the top/left and
    # 92 + (extent - size) on the bottom/right, extent = tile + a multiple of 16 covering the image.
    h, w, tile = 30, 25, 20
    ext_h, ext_w = 20 + 16, 20 + 16          # 30 and 25 both need one more 16-pixel step beyond 20
    image = _image(h, w, seed=2)
    padded = np.pad(image[0].numpy(), ((92, 92 + ext_h - h), (92, 92 + ext_w - w)), mode="reflect")
    with torch.no_grad():
        expected = valid_net(torch.from_numpy(padded)[None, None])[..., :h, :w].float()  # both return float32
    assert torch.allclose(predict_whole(valid_net, image, tile=tile), expected, atol=1e-6, rtol=0)
    assert torch.allclose(predict_tiled(valid_net, image, tile=tile), expected, atol=1e-6, rtol=0)


def test_paper_tile_default_and_restores_mode(valid_net):
    valid_net.train()
    try:
        out = predict_tiled(valid_net, _image(24, 30, seed=3))   # default tile: 388, the paper's
        assert out.shape == (1, 2, 24, 30)
        assert valid_net.training
    finally:
        valid_net.eval()


def test_rgb_image():
    torch.manual_seed(1)
    net = UNet(3, 1, features=2, padding="valid", norm=None).double().eval()
    image = _image(29, 41, seed=4, channels=3)
    assert torch.allclose(predict_tiled(net, image, tile=20), predict_whole(net, image, tile=20), atol=1e-10)


@pytest.mark.parametrize("tile", [19, 21, 388 + 8, 3])
def test_impossible_tile_raises(valid_net, tile):
    with pytest.raises(ValueError, match="does not fit|too small"):
        predict_tiled(valid_net, _image(30, 30), tile=tile)


def test_bad_image_shape_raises(valid_net):
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        predict_tiled(valid_net, torch.zeros(2, 1, 30, 30, dtype=torch.float64), tile=20)


# --------------------------------------------------------------------------- plans
@pytest.mark.parametrize("height, width, tile", CASES + [(500, 700, 388), (1, 1, 20), (17, 200, 116)])
def test_plan_covers_every_pixel_on_the_16_grid(height, width, tile):
    plan = plan_tiles(height, width, tile, margin=92)
    covered = np.zeros((plan.out_height, plan.out_width), int)
    for t, l, b, r in plan.boxes:
        assert 0 <= t and 0 <= l and b <= plan.out_height and r <= plan.out_width
        assert b - t == tile and r - l == tile
        covered[t:b, l:r] += 1
    assert (covered >= 1).all()
    assert plan.out_height >= height and plan.out_width >= width
    # tile offsets on multiples of 16: every tile sees the same max-pool grid
    assert all(o % 16 == 0 for o in plan.rows + plan.cols)
    # the padded output extent is what the network can produce in one piece: tile + 16k
    assert (plan.out_height - tile) % 16 == 0 and (plan.out_width - tile) % 16 == 0
    assert plan.out_height - height < 16 or plan.out_height == tile
    # the input of the whole padded image is a valid input size
    assert valid_output_size(plan.out_height + 2 * 92) == plan.out_height


def test_plan_paper_example():
    # a 512x512 ISBI slice with 388 tiles: extent 388 + 16 * 8 = 516, tiles at 0 and 128 on each axis
    plan = plan_tiles(512, 512, 388, 92)
    assert (plan.out_height, plan.out_width) == (516, 516)
    assert plan.rows == plan.cols == (0, 128)
    assert plan.boxes[0] == (0, 0, 388, 388) and len(plan.boxes) == 4


def test_plan_rejects_bad_arguments():
    with pytest.raises(ValueError):
        plan_tiles(10, 10, 0, 92)
    with pytest.raises(ValueError):
        plan_tiles(10, 10, 20, -1)


def test_tile_smaller_than_16_keeps_the_grid_or_raises(valid_net):
    image = _image(11, 13, seed=5)
    try:
        plan = plan_tiles(11, 13, 4, valid_net.margin)
    except ValueError:
        return  # refusing such a tile is fine too
    assert all(o % 16 == 0 for o in plan.rows + plan.cols)
    assert torch.allclose(predict_tiled(valid_net, image, tile=4), predict_whole(valid_net, image, tile=4),
                          atol=1e-10)


# --------------------------------------------------------------------------- mirror padding
@pytest.mark.parametrize("h, w, pads", [(5, 4, (2, 3, 1, 0)), (5, 4, (13, 17, 9, 30)), (2, 3, (7, 1, 5, 11)),
                                        (6, 6, (0, 0, 0, 0)), (3, 8, (2, 2, 20, 1))])
def test_mirror_pad_equals_numpy_reflect(h, w, pads):
    top, bottom, left, right = pads
    x = np.random.default_rng(h * w).random((2, 3, h, w))
    expected = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode="reflect")
    got = mirror_pad(torch.from_numpy(x), top, bottom, left, right)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got.numpy(), expected)


def test_mirror_pad_hand_example():
    x = torch.tensor([[[[1.0, 2.0, 3.0]]]])
    assert mirror_pad(x, 0, 0, 2, 4)[0, 0, 0].tolist() == [3, 2, 1, 2, 3, 2, 1, 2, 3]


def test_mirror_pad_needs_two_pixels():
    with pytest.raises(ValueError, match="at least 2 pixels"):
        mirror_pad(torch.zeros(1, 1, 1, 1), 1, 1, 1, 1)
