"""Tests of the joint augmentations (unet_lib.augment): flips, rotations, photometric, elastic deformation."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from unet_lib.augment import (
    Compose,
    ElasticDeform,
    FlipRotate,
    Photometric,
    RandomRotate,
    elastic_deform,
    flip_rotate,
    photometric,
    random_displacement_field,
    rotate,
)


def disc_mask(shape=(64, 80), r=18):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2.5) ** 2 <= r * r


# ------------------------------------------------------------------------------------ flips, photometric
def test_flip_rotate_moves_every_array_alike():
    rng = np.random.default_rng(0)
    image = rng.random((12, 12, 3))
    mask, weight = image[..., 0] > 0.5, image[..., 1] * 10
    for seed in range(8):
        out_image, out_mask, out_weight = flip_rotate(image, mask, weight, rng=np.random.default_rng(seed))
        np.testing.assert_array_equal(out_mask, out_image[..., 0] > 0.5)
        np.testing.assert_allclose(out_weight, out_image[..., 1] * 10)


def test_photometric_touches_the_image_only():
    image = np.random.default_rng(1).integers(0, 256, (10, 10), dtype=np.uint8)
    mask = image > 100
    out_image, out_mask = Photometric(seed=0)(image, mask)
    assert out_mask is mask and out_image.dtype == np.uint8 and not np.array_equal(out_image, image)
    x = photometric(image.astype(np.float32) / 255, np.random.default_rng(0))
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1


def test_compose_runs_in_order():
    image, mask = np.arange(16.0).reshape(4, 4), np.eye(4, dtype=bool)
    a = Compose([FlipRotate(0), FlipRotate(1)])(image, mask)
    r0, r1 = np.random.default_rng(0), np.random.default_rng(1)
    b = flip_rotate(*flip_rotate(image, mask, rng=r0), rng=r1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------------------------- the field
def test_field_passes_through_the_grid_and_has_sigma_at_the_nodes():
    shape, grid, sigma = (33, 41), 3, 10.0
    nodes_y, nodes_x = [0, 16, 32], [0, 20, 40]                  # (H-1)/(grid-1) = 16, (W-1)/(grid-1) = 20
    at_nodes = []
    for seed in range(600):
        f = random_displacement_field(shape, grid, sigma, np.random.default_rng(seed))
        at_nodes.append(f[:, nodes_y][:, :, nodes_x])          # (2, 3, 3)
    at_nodes = np.stack(at_nodes)
    assert abs(at_nodes.mean()) < 0.3
    assert at_nodes.std() == pytest.approx(sigma, rel=0.05)
    # each node and component is drawn independently
    flat = at_nodes.reshape(len(at_nodes), -1)
    corr = np.corrcoef(flat.T) - np.eye(flat.shape[1])
    assert np.abs(corr).max() < 0.2


@pytest.mark.parametrize("grid", [2, 3, 5])
def test_field_is_determined_by_grid_x_grid_values(grid):
    # every field is a linear function of grid*grid node values per component: the stack has that rank
    fields = np.stack([random_displacement_field((29, 37), grid, 10.0, np.random.default_rng(s))[0].ravel()
                       for s in range(60)])
    assert np.linalg.matrix_rank(fields, tol=1e-6) == grid * grid


def test_field_is_smooth_and_scales_with_sigma():
    f = random_displacement_field((128, 128), 3, 10.0, np.random.default_rng(3))
    f2 = random_displacement_field((128, 128), 3, 20.0, np.random.default_rng(3))
    np.testing.assert_allclose(f2, 2 * f)                        # same draws, twice the sigma
    assert np.abs(np.diff(f, axis=1)).max() < 2.0                # neighbours move almost alike
    assert np.all(random_displacement_field((8, 8), 3, 0.0) == 0)


def test_same_seed_same_field():
    a = random_displacement_field((20, 30), rng=np.random.default_rng(7))
    b = random_displacement_field((20, 30), rng=np.random.default_rng(7))
    c = random_displacement_field((20, 30), rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# ------------------------------------------------------------------------------------- deformation
def test_image_and_mask_stay_aligned():
    mask = disc_mask()
    image = mask.astype(np.float64)                              # an image that equals the mask
    for seed in range(5):
        img_nn, m = elastic_deform(image, mask, rng=np.random.default_rng(seed), order=0)
        np.testing.assert_array_equal(img_nn > 0.5, m)           # same field, same sampling: identical
        img_cubic, m2 = elastic_deform(image, mask, rng=np.random.default_rng(seed))
        np.testing.assert_array_equal(m, m2)
        differ = (img_cubic > 0.5) != m
        assert differ.mean() < 0.01                               # cubic vs nearest: only at the edge ...
        edge = m ^ ndimage.binary_erosion(m)
        edge |= ~m & ndimage.binary_dilation(m)
        assert np.all(edge[differ])                               # ... never more than one pixel off
        assert not np.array_equal(m, mask)                        # and it did move


def test_mask_stays_binary_and_labels_stay_labels():
    mask = disc_mask()
    labels = np.where(mask, 3, 0).astype(np.int32)
    labels[:10, :10] = 7
    u8 = mask.astype(np.uint8)
    image = np.random.default_rng(0).integers(0, 256, mask.shape, dtype=np.uint8)
    out = elastic_deform(image, mask, u8, labels, rng=np.random.default_rng(1), sigma=15.0)
    assert [o.dtype for o in out] == [np.uint8, np.bool_, np.uint8, np.int32]
    assert set(np.unique(out[2]).tolist()) <= {0, 1}
    assert set(np.unique(out[3]).tolist()) <= {0, 3, 7}
    assert [o.shape for o in out] == [mask.shape] * 4


def test_weight_map_moves_with_the_mask():
    mask = disc_mask()
    weight = np.where(mask, 2.5, 0.5).astype(np.float32)
    _, m, w = elastic_deform(mask.astype(np.float32), mask, weight, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(w, np.where(m, 2.5, 0.5).astype(np.float32))


def test_same_seed_same_result_and_rgb_images():
    image = np.random.default_rng(0).random((40, 50, 3)).astype(np.float32)
    mask = image[..., 0] > 0.5
    a = elastic_deform(image, mask, rng=np.random.default_rng(4))
    b = elastic_deform(image, mask, rng=np.random.default_rng(4))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert a[0].shape == (40, 50, 3) and a[0].dtype == np.float32
    assert image.min() <= a[0].min() and a[0].max() <= image.max()   # no cubic overshoot outside the range
    # the three channels move together (same field)
    f = random_displacement_field((40, 50), rng=np.random.default_rng(4))
    yy, xx = np.mgrid[:40, :50]
    g = ndimage.map_coordinates(image[..., 1].astype(np.float64), [yy + f[0], xx + f[1]], order=3, mode="reflect")
    np.testing.assert_allclose(a[0][..., 1], np.clip(g, image.min(), image.max()), atol=1e-6)


def test_zero_sigma_is_the_identity():
    image = np.random.default_rng(0).integers(0, 256, (30, 31), dtype=np.uint8)
    mask = image > 90
    out_image, out_mask = elastic_deform(image, mask, sigma=0.0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_mask, mask)


def test_elastic_deform_class():
    image, mask = np.random.default_rng(0).random((24, 24)), disc_mask((24, 24), 6)
    t1, t2 = ElasticDeform(seed=3), ElasticDeform(seed=3)
    for _ in range(2):
        for x, y in zip(t1(image, mask), t2(image, mask)):
            np.testing.assert_array_equal(x, y)
    same = ElasticDeform(seed=0, p=0.0)(image, mask)
    assert same[0] is image and same[1] is mask


def test_bad_arguments():
    with pytest.raises(ValueError, match="grid"):
        random_displacement_field((10, 10), grid=1)
    with pytest.raises(ValueError, match="share"):
        elastic_deform(np.zeros((10, 10)), np.zeros((10, 11), bool))


# ------------------------------------------------------------------------------------- rotations
def test_rotate_by_90_matches_rot90_and_keeps_alignment():
    image = np.random.default_rng(0).random((21, 21))
    mask = image > 0.5
    r_image, r_mask = rotate(image, mask, angle=90)
    np.testing.assert_allclose(r_image, np.rot90(image), atol=1e-9)
    np.testing.assert_array_equal(r_mask, np.rot90(mask))
    _, a = rotate(mask.astype(float), mask, angle=33)
    b, _ = rotate(mask.astype(float), mask, angle=33, order=0)
    np.testing.assert_array_equal(b > 0.5, a)
    out = RandomRotate(30, seed=1)(image, mask)
    assert out[1].dtype == bool and out[0].shape == image.shape


def test_window_equals_deform_then_crop():
    image = np.random.default_rng(0).integers(0, 256, (70, 90), dtype=np.uint8)
    mask = image > 128
    full = elastic_deform(image, mask, rng=np.random.default_rng(5))
    win = elastic_deform(image, mask, rng=np.random.default_rng(5), window=(10, 20, 32, 48))
    for f, w in zip(full, win):
        assert w.shape == (32, 48)
        np.testing.assert_array_equal(w, f[10:42, 20:68])
    with pytest.raises(ValueError, match="window"):
        random_displacement_field((70, 90), window=(50, 0, 32, 32))
