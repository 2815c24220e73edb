"""Tests for unet_lib.viz: overlay colours are exact, figures build without error."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from unet_lib import viz
from unet_lib.tiling import plan_tiles
from unet_lib.train import History
from unet_lib.viz import (
    GT_COLOUR,
    PRED_COLOUR,
    draw_tiles,
    overlay,
    plot_history,
    show_grid,
    show_overlays,
    to_numpy_image,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _scene():
    rng = np.random.default_rng(0)
    image = rng.random((20, 24)).astype(np.float32)
    mask = np.zeros((20, 24), bool)
    mask[5:15, 4:12] = True           # a 10x8 ground-truth rectangle
    pred = np.zeros((20, 24), bool)
    pred[8:12, 16:22] = True          # a prediction away from it
    return image, mask, pred


def test_overlay_colours():
    image, mask, pred = _scene()
    out = overlay(image, mask, pred, alpha=0.45)
    assert out.shape == (20, 24, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    # ground-truth outline (1 pixel wide for a 24-pixel image): exactly green
    outline = np.zeros_like(mask)
    outline[5, 4:12] = outline[14, 4:12] = outline[5:15, 4] = outline[5:15, 11] = True
    np.testing.assert_allclose(out[outline], np.broadcast_to(GT_COLOUR, (outline.sum(), 3)), atol=1e-6)
    # inside the outline: the image, untouched
    inner = mask & ~outline
    np.testing.assert_allclose(out[inner], np.repeat(image[inner][:, None], 3, 1), atol=1e-6)
    # prediction: tinted towards magenta by alpha
    expected = 0.55 * np.repeat(image[pred][:, None], 3, 1) + 0.45 * PRED_COLOUR
    np.testing.assert_allclose(out[pred], expected, atol=1e-6)
    # everything else: the grey image repeated in R, G and B
    rest = ~mask & ~pred
    np.testing.assert_allclose(out[rest], np.repeat(image[rest][:, None], 3, 1), atol=1e-6)


def test_overlay_does_not_modify_input_and_accepts_tensors():
    image, mask, pred = _scene()
    rgb = np.stack([image, image * 0.5, image * 0.25], -1)
    before = rgb.copy()
    out = overlay(rgb, mask, pred)
    np.testing.assert_array_equal(rgb, before)
    out_t = overlay(torch.from_numpy(rgb).permute(2, 0, 1), torch.from_numpy(mask).float()[None],
                    torch.from_numpy(pred))
    np.testing.assert_allclose(out_t, out, atol=1e-6)
    # no masks: just the picture
    np.testing.assert_allclose(overlay(rgb), rgb, atol=1e-6)


def test_overlay_outline_thickens_for_large_images():
    mask = np.zeros((400, 400), bool)
    mask[100:300, 100:300] = True
    out = overlay(np.zeros((400, 400)), mask)
    green = np.all(np.isclose(out, GT_COLOUR, atol=1e-6), -1)
    assert green[100:102, 150].all() and not green[102, 150]   # width round(400 / 200) = 2


def test_to_numpy_image():
    u8 = np.full((4, 5, 3), 255, np.uint8)
    assert to_numpy_image(u8).max() == 1.0 and to_numpy_image(u8).shape == (4, 5, 3)
    assert to_numpy_image(torch.ones(3, 4, 5)).shape == (4, 5, 3)
    assert to_numpy_image(torch.ones(1, 4, 5)).shape == (4, 5)
    assert to_numpy_image(np.array([[-1.0, 2.0]])).tolist() == [[0.0, 1.0]]


def test_show_grid_and_overlays():
    image, mask, pred = _scene()
    fig = show_grid([image] * 5, titles=[f"t{i}" for i in range(5)], ncols=4, suptitle="grid (smoke profile)")
    assert isinstance(fig, Figure) and len(fig.axes) == 8
    assert [ax.get_title() for ax in fig.axes[:5]] == ["t0", "t1", "t2", "t3", "t4"]
    fig2 = show_overlays([image, image], [mask, mask], [pred, pred], titles=["a", "b"])
    assert isinstance(fig2, Figure) and len(fig2.axes) == 2


def test_plot_history():
    h = History(epoch=[0, 1, 2], train_loss=[1.0, 0.5, 0.25], val_dice=[0.2, 0.5, 0.7], lr=[1e-3] * 3,
                seconds=[1.0] * 3)
    fig = plot_history(h, title="one run")
    assert isinstance(fig, Figure)
    fig = plot_history({"U-Net": h, "FCN": h})
    ax1, ax2 = fig.axes
    assert len(ax1.lines) == 2 and len(ax2.lines) == 2
    np.testing.assert_array_equal(ax1.lines[0].get_xdata(), [1, 2, 3])   # epochs shown from 1
    np.testing.assert_array_equal(ax2.lines[0].get_ydata(), [0.2, 0.5, 0.7])


def test_draw_tiles():
    plan = plan_tiles(40, 50, tile=20, margin=92)
    fig = draw_tiles(np.random.default_rng(0).random((40, 50)), plan, title="tiles")
    assert isinstance(fig, Figure)
    # one dotted image frame + a solid and a dashed box per tile
    assert len(fig.axes[0].patches) == 1 + 2 * len(plan.boxes)
    fig = draw_tiles(torch.rand(3, 40, 50), plan, max_boxes=2)
    assert len(fig.axes[0].patches) == 1 + 2 * 2


def test_viz_has_no_prints():
    import inspect
    assert "print(" not in inspect.getsource(viz)
