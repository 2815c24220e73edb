"""Tests of unet_lib.classical on synthetic images whose right answer is known by construction,
against brute-force references, and (when ``UNET_BOOK_DATA`` is set) on real slices."""
from __future__ import annotations

import numpy as np
import pytest

from unet_lib import classical as C
from unet_lib import metrics


def _disk(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2


def _two_level(mask: np.ndarray, fg: float, bg: float, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.where(mask, fg, bg) + noise * rng.standard_normal(mask.shape)
    return np.clip(x, 0, 1)


# -- feature maps -----------------------------------------------------------------------------
def test_channels_of_pure_colours_match_textbook_values():
    red = np.zeros((2, 3, 3), np.uint8)
    red[..., 0] = 255
    c = C.channels(red)
    assert list(c) == list(C.CHANNELS)
    assert all(v.shape == (2, 3) and v.dtype == np.float64 for v in c.values())
    np.testing.assert_allclose(c["R"], 1.0)
    np.testing.assert_allclose(c["G"], 0.0)
    np.testing.assert_allclose(c["grey"], 0.2125)  # ITU-R 709 luma weight of red (rgb2gray)
    np.testing.assert_allclose(c["H"], 0.0)
    np.testing.assert_allclose(c["S"], 1.0)
    np.testing.assert_allclose(c["V"], 1.0)
    # sRGB red in CIELAB (D65): L* = 53.24, a* = 80.09, b* = 67.20
    np.testing.assert_allclose(c["L*"], 53.24 / 100, atol=2e-3)
    np.testing.assert_allclose(c["a*"], (80.09 + 128) / 255, atol=2e-3)
    np.testing.assert_allclose(c["b*"], (67.20 + 128) / 255, atol=2e-3)


def test_channel_of_grey_image_is_neutral_and_uint8_equals_float():
    g = np.full((4, 5), 100, np.uint8)  # greyscale (H, W) input becomes grey RGB
    np.testing.assert_allclose(C.channel(g, "grey"), 100 / 255)
    np.testing.assert_allclose(C.channel(g, "a*"), 128 / 255, atol=1e-4)
    np.testing.assert_allclose(C.channel(g, "S"), 0.0)
    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3)).astype(np.uint8)
    for name in C.CHANNELS:
        np.testing.assert_allclose(C.channel(rgb, name), C.channel(rgb / 255.0, name), atol=1e-12)
        assert 0 <= C.channel(rgb, name).min() and C.channel(rgb, name).max() <= 1


def test_channel_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown channel"):
        C.channel(np.zeros((2, 2, 3), np.uint8), "hue")
    with pytest.raises(ValueError, match="channels-last"):
        C.channel(np.zeros((3, 4, 5), np.uint8), "R")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        C.channel(np.full((2, 2, 3), 200.0), "R")


# -- thresholds ---------------------------------------------------------------------------------
def test_threshold_mask_polarities_are_complements():
    x = np.array([[0.1, 0.5], [0.5, 0.9]])
    np.testing.assert_array_equal(C.threshold_mask(x, 0.5, "above"), [[False, False], [False, True]])
    np.testing.assert_array_equal(C.threshold_mask(x, 0.5, "below"), [[True, True], [True, False]])
    with pytest.raises(ValueError, match="polarity"):
        C.threshold_mask(x, 0.5, "bright")
    with pytest.raises(ValueError, match="channel"):
        C.threshold_mask(np.zeros((2, 2, 3)), 0.5)


def _otsu_brute_force(x: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Between-class variance w0 w1 (mu0 - mu1)^2 of every cut (independent of scikit-image)."""
    v = x.ravel()
    out = []
    for t in candidates:
        lo, hi = v[v <= t], v[v > t]
        if lo.size == 0 or hi.size == 0:
            out.append(0.0)
            continue
        w0, w1 = lo.size / v.size, hi.size / v.size
        out.append(w0 * w1 * (lo.mean() - hi.mean()) ** 2)
    return np.array(out)


@pytest.mark.parametrize("shape", [(31, 40), (64, 64), (17, 53)])
def test_otsu_recovers_a_bright_disk_and_maximises_between_class_variance(shape):
    h, w = shape
    gt = _disk(h, w, h / 2, w / 3, min(h, w) / 4)
    x = _two_level(gt, 0.75, 0.25, noise=0.03, seed=h)  # classes never overlap
    t = C.otsu_threshold(x)
    assert 0.35 < t < 0.65
    # scikit-image returns a bin centre, so a pixel in the threshold's own bin may land on either side
    assert (C.otsu_mask(x, "above") != gt).sum() <= 2
    np.testing.assert_array_equal(C.otsu_mask(x, "below"), ~C.otsu_mask(x, "above"))
    # Otsu's criterion: no cut separates the pixels with a clearly larger between-class variance
    grid = np.linspace(0, 1, 201)
    var = _otsu_brute_force(x, grid)
    assert _otsu_brute_force(x, np.array([t]))[0] >= var.max() * 0.99


def test_otsu_on_skewed_histogram_matches_brute_force():
    x = np.concatenate([np.full(900, 0.2), np.full(100, 0.6), np.full(50, 0.9)]).reshape(30, 35)
    t = C.otsu_threshold(x)
    grid = np.unique(x)[:-1]
    best = grid[np.argmax(_otsu_brute_force(x, grid))]  # a cut between 0.2 and 0.6
    assert best == 0.2 and 0.2 <= t < 0.6


def test_otsu_constant_image():
    x = np.full((5, 5), 0.3)
    with pytest.raises(ValueError, match="constant"):
        C.otsu_threshold(x)
    assert not C.otsu_mask(x, "above").any()
    assert C.otsu_mask(x, "below").all()


def test_multi_otsu_separates_three_levels():
    h, w = 60, 90
    x = np.full((h, w), 0.1)
    x[:, 30:60] = 0.5
    x[:, 60:] = 0.9
    x = x + 0.02 * np.random.default_rng(1).standard_normal(x.shape)
    dark, mid, bright = (np.zeros((h, w), bool) for _ in range(3))
    dark[:, :30], mid[:, 30:60], bright[:, 60:] = True, True, True
    np.testing.assert_array_equal(C.multi_otsu_mask(x, 3, keep=-1), bright)
    np.testing.assert_array_equal(C.multi_otsu_mask(x, 3, keep=2), bright)
    np.testing.assert_array_equal(C.multi_otsu_mask(x, 3, keep=0), dark)
    np.testing.assert_array_equal(C.multi_otsu_mask(x, 3, keep=(1, 2)), mid | bright)
    with pytest.raises(ValueError, match="out of range"):
        C.multi_otsu_mask(x, 3, keep=3)
    with pytest.raises(ValueError, match="classes"):
        C.multi_otsu_mask(x, 1)
    with pytest.raises(ValueError, match="distinct"):
        C.multi_otsu_mask(np.array([[0.0, 1.0]]), 3)


# -- clean-up -----------------------------------------------------------------------------------
def test_largest_component_keeps_the_biggest_square():
    m = np.zeros((20, 20), bool)
    m[1:4, 1:4] = True      # 9 px
    m[8:14, 8:14] = True    # 36 px
    m[17, 17] = True        # 1 px
    out = C.largest_component(m)
    assert out.sum() == 36 and out[8:14, 8:14].all()
    assert not C.largest_component(np.zeros((4, 4), bool)).any()
    diag = np.eye(4, dtype=bool)  # one component with 8-connectivity, four with 4-connectivity
    assert C.largest_component(diag, connectivity=2).sum() == 4
    assert C.largest_component(diag, connectivity=1).sum() == 1


def test_clean_mask_removes_specks_fills_holes_and_keeps_one_object():
    gt = _disk(64, 64, 32, 32, 14)
    m = gt.copy()
    m[30:33, 30:33] = False                      # a hole
    rng = np.random.default_rng(0)
    specks = rng.random(m.shape) < 0.01          # salt noise
    m = m | specks
    opened = C.clean_mask(m, opening=2)
    assert not (opened & ~_disk(64, 64, 32, 32, 15)).any()  # no speck survives outside the disk
    filled = C.clean_mask(m, opening=2, fill_holes=True)
    assert filled[30:33, 30:33].all()
    assert metrics.dice(filled, gt).item() > 0.98
    two = gt | _disk(64, 64, 5, 5, 3)
    assert C.clean_mask(two, largest=True).sum() == gt.sum()
    assert C.clean_mask(two, min_size=gt.sum()).sum() == gt.sum()
    assert C.clean_mask(two, min_size=10).sum() == two.sum()
    # closing bridges a 1-px gap between two bars but does not glue them to the border
    bars = np.zeros((20, 20), bool)
    bars[5:15, 3:9] = True
    bars[5:15, 10:16] = True
    closed = C.clean_mask(bars, closing=1)
    assert closed[6:14, 9].all() and not closed[:, 0].any() and closed.sum() < bars.sum() + 10
    np.testing.assert_array_equal(C.clean_mask(m), m)  # no options: unchanged
    with pytest.raises(ValueError, match="binary"):
        C.clean_mask(np.full((3, 3), 2))


def test_specular_highlights_finds_white_not_bright_red():
    img = np.zeros((4, 4, 3), np.uint8)
    img[..., 0] = 230                 # bright saturated red: not a highlight
    img[0, 0] = (250, 250, 250)       # white
    img[1, 1] = (240, 235, 230)       # nearly white
    img[2, 2] = (120, 120, 120)       # grey, too dark
    hl = C.specular_highlights(img)
    assert hl[0, 0] and hl[1, 1] and hl.sum() == 2


# -- oracle searches ----------------------------------------------------------------------------
@pytest.mark.parametrize("polarity", ["above", "below"])
def test_dice_curve_equals_brute_force_metrics_dice(polarity):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 11, (23, 31)) / 10.0   # ties with thresholds on purpose
    target = rng.random((23, 31)) < 0.3
    thresholds = np.linspace(0, 1, 21)
    curve = C.dice_curve(x, target, thresholds, polarity)
    ref = [metrics.dice(C.threshold_mask(x, t, polarity), target).item() for t in thresholds]
    np.testing.assert_allclose(curve, ref, atol=1e-12)
    default = C.dice_curve(x, target, polarity=polarity)
    assert default.shape == C.DEFAULT_THRESHOLDS.shape


def test_dice_curve_edge_cases():
    x = np.array([[0.2, 0.8]])
    empty = np.zeros((1, 2), bool)
    # empty target: the empty prediction (t >= 0.8, above) scores 1.0, anything else 0.0
    np.testing.assert_allclose(C.dice_curve(x, empty, [0.1, 0.5, 0.9]), [0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="shape"):
        C.dice_curve(x, np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="increasing"):
        C.dice_curve(x, empty, [0.5, 0.1])


def test_oracle_finds_perfect_threshold_and_polarity():
    gt = _disk(40, 50, 20, 25, 9)
    bright = _two_level(gt, 0.7, 0.3, noise=0.03)
    t, pol, d = C.oracle_threshold(bright, gt)
    assert pol == "above" and d == 1.0 and bright[~gt].max() <= t < bright[gt].min()
    dark = _two_level(gt, 0.3, 0.7, noise=0.03)
    t, pol, d = C.oracle_threshold(dark, gt)
    assert pol == "below" and d == 1.0 and dark[gt].max() <= t < dark[~gt].min()
    # forcing the wrong polarity cannot be perfect
    assert C.oracle_threshold(dark, gt, polarity="above")[2] < 0.6
    # the oracle is never beaten by Otsu
    noisy = _two_level(gt, 0.6, 0.4, noise=0.15, seed=5)
    otsu_d = metrics.dice(C.otsu_mask(noisy), gt).item()
    assert C.oracle_threshold(noisy, gt)[2] >= otsu_d - 1e-12


def test_best_global_threshold_on_images_with_different_contrast():
    gts = [_disk(30, 30, 15, 15, 6), _disk(20, 44, 10, 30, 5)]
    # object levels 0.6 and 0.8, backgrounds 0.2 and 0.5: every t in [0.5, 0.6) separates both
    xs = [_two_level(gts[0], 0.6, 0.2), _two_level(gts[1], 0.8, 0.5)]
    t, pol, d = C.best_global_threshold(xs, gts)
    assert pol == "above" and d == 1.0 and 0.5 <= t < 0.6
    # a grid that only allows 0.3 or 0.7 cannot separate both: mean Dice < 1
    t, pol, d = C.best_global_threshold(xs, gts, thresholds=[0.3, 0.7], polarity="above")
    ref = max(np.mean([metrics.dice(x > s, g).item() for x, g in zip(xs, gts)]) for s in (0.3, 0.7))
    assert d == pytest.approx(ref) and d < 1
    with pytest.raises(ValueError, match="same"):
        C.best_global_threshold(xs, gts[:1])


def test_score_masks_by_hand():
    target = np.zeros((4, 4), bool)
    target[:2, :2] = True                         # 4 px
    pred = np.zeros((4, 4), bool)
    pred[:2, 1:3] = True                          # 4 px, 2 overlap
    small_t = np.ones((2, 3), bool)
    s = C.score_masks([pred, small_t], [target, small_t])
    np.testing.assert_allclose(s["dice"], [2 * 2 / (4 + 4), 1.0])
    np.testing.assert_allclose(s["iou"], [2 / 6, 1.0])


# -- real data (skipped without UNET_BOOK_DATA) -------------------------------------------------
def test_otsu_on_isbi_membranes(data_root):
    from unet_lib import data

    images, labels = data.isbi_arrays("train", indices=[0], root=data_root)
    x, membrane = C.channel(images[0], "grey"), ~labels[0]
    d_otsu = metrics.dice(C.otsu_mask(x, "below"), membrane).item()
    d_wrong = metrics.dice(C.otsu_mask(x, "above"), membrane).item()
    _, pol, d_oracle = C.oracle_threshold(x, membrane)
    assert 0.5 < d_otsu < 0.7 and d_wrong < 0.2       # membranes are the dark class
    assert pol == "below" and d_oracle >= d_otsu - 1e-9


def test_kvasir_image_thresholds(data_root):
    from unet_lib import data

    image_id = data.kvasir_split("val")[0]
    ip, mp = data.kvasir_paths(image_id, root=data_root)
    image = data.resize_image(data.load_image(ip), 128)
    mask = data.resize_mask(data.load_mask(mp), 128)
    c = C.channels(image)
    best = max(C.oracle_threshold(x, mask)[2] for x in c.values())
    for x in c.values():
        assert metrics.dice(C.otsu_mask(x), mask).item() <= best + 1e-9


def test_fast_rank_equals_searchsorted_on_even_and_uneven_grids():
    from unet_lib.classical import _rank

    rng = np.random.default_rng(0)
    grid = C.DEFAULT_THRESHOLDS
    values = np.concatenate([rng.random(20000), np.round(rng.random(5000) * 255) / 255, grid, [-0.5, 1.5]])
    np.testing.assert_array_equal(_rank(values, grid), np.searchsorted(grid, values, side="left"))
    uneven = np.array([0.0, 0.1, 0.5, 0.55, 0.9])
    np.testing.assert_array_equal(_rank(values, uneven), np.searchsorted(uneven, values, side="left"))


def test_multi_otsu_labels_order_classes_by_brightness():
    x = np.repeat(np.array([[0.2, 0.5, 0.8]]), 4, axis=0) + np.linspace(0, 0.01, 4)[:, None]
    lab = C.multi_otsu_labels(x, 3)
    np.testing.assert_array_equal(lab, np.repeat(np.array([[0, 1, 2]]), 4, axis=0))
