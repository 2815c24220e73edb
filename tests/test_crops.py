"""Tests for unet_lib.data.RandomCrops: shapes and dtypes, per-item seeding (independent of reading order,
DataLoader workers and resumption), mirrored margins, extras, deformation windows and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader

from unet_lib import augment
from unet_lib.data import RandomCrops
from unet_lib.train import set_epoch


def images_and_labels(n=3, h=20, w=24):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    return images, images[..., 0] > 127


def test_shapes_dtypes_and_scaling():
    images, masks = images_and_labels()
    x, y = RandomCrops(images, masks, crop=8, length=4, seed=0)[0]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.shape == (1, 8, 8) and y.dtype == torch.float32, "boolean targets are masks (1, h, w) for BCE"
    x, y = RandomCrops(images, masks.astype(np.int64), crop=8, margin=3, seed=0)[1]
    assert x.shape == (3, 14, 14) and y.shape == (8, 8) and y.dtype == torch.int64, "integer targets: class indices"
    grey = RandomCrops(images[..., 0].astype(np.float32) / 255, masks, seed=0)[0][0]
    assert grey.shape == (1, 20, 24), "whole images (crop=None), a channel axis added to grey images"


def test_the_target_is_the_centre_of_the_input_window():
    # the image's first channel is the label: the target must equal the input's centre, margin removed
    images, masks = images_and_labels()
    crops = RandomCrops(images, masks, crop=6, margin=4, length=20, transform=augment.FlipRotate(), seed=1)
    for k in range(len(crops)):
        x, y = crops[k]
        assert torch.equal((x[0, 4:-4, 4:-4] * 255).round() > 127, y[0] > 0.5)


def test_margin_is_mirrored_context_at_the_border():
    image = np.arange(30, dtype=np.uint8).reshape(5, 6)
    crops = RandomCrops([image], [image > 10], crop=5, margin=2, length=8, seed=0)
    expected = np.pad(image, 2, mode="reflect").astype(np.float32) / 255
    windows = {tuple(crops[k][0][0, 0, :2].tolist()) for k in range(8)}
    starts = {tuple(expected[0, left:left + 2].tolist()) for left in (0, 1)}
    assert windows <= starts, "every window is cut from the reflect-padded image"


def test_items_do_not_depend_on_reading_order_or_workers_but_on_the_epoch():
    images, masks = images_and_labels()
    crops = RandomCrops(images, masks, crop=8, length=6, transform=augment.FlipRotate(), seed=3)
    forward = [crops[k][0] for k in range(6)]
    backward = [crops[k][0] for k in reversed(range(6))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forward, backward))
    with_workers = torch.cat([x for x, _ in DataLoader(crops, batch_size=2, num_workers=2)])
    assert torch.equal(with_workers, torch.stack(forward)), "two workers read the same items as one process"
    crops.set_epoch(1)
    assert not all(torch.equal(crops[k][0], forward[k]) for k in range(6)), "another epoch, other crops"
    crops.set_epoch(0)
    assert all(torch.equal(crops[k][0], forward[k]) for k in range(6)), "epoch 0 again: the same crops (resume)"
    other_seed = RandomCrops(images, masks, crop=8, length=6, transform=augment.FlipRotate(), seed=4)
    assert not all(torch.equal(other_seed[k][0], forward[k]) for k in range(6))


def test_set_epoch_reaches_datasets_inside_a_concat_dataset():
    images, masks = images_and_labels()
    a, b = RandomCrops(images, masks, seed=0), RandomCrops(images, masks, seed=1)
    set_epoch(ConcatDataset([a, b]), 5)
    assert a.epoch == b.epoch == 5
    set_epoch(torch.utils.data.TensorDataset(torch.zeros(2)), 1)   # no set_epoch: left alone


def test_extras_per_pixel_and_per_image():
    images, masks = images_and_labels(n=2)
    weights = [np.full(masks.shape[1:], 2.0 + i) for i in range(2)]
    crops = RandomCrops(images, masks, weights, [0.0, 1.0], seed=0)
    x, y, w, label = crops[1]
    assert w.shape == (20, 24) and torch.all(w == 3.0) and label.item() == 1.0 and label.dtype == torch.float32
    with pytest.raises(ValueError, match="per-pixel extras .* before the per-image"):
        RandomCrops(images, masks, [0.0, 1.0], weights)
    with pytest.raises(ValueError, match="extra 0 has 1 entries for 2 images"):
        RandomCrops(images, masks, [0.0])


def test_deform_sees_the_whole_image_and_returns_the_window():
    images, masks = images_and_labels(n=1)
    calls = []

    def deform(image, target, *, rng, window):
        calls.append((image.shape, window))
        top, left, h, w = window
        return image[top:top + h, left:left + w], target[top:top + h, left:left + w]

    plain = RandomCrops(images, masks, crop=8, margin=1, seed=0)
    hooked = RandomCrops(images, masks, crop=8, margin=1, seed=0, deform=deform)
    assert torch.equal(plain[0][0], hooked[0][0])
    assert calls[0][0] == (22, 26, 3) and calls[0][1][2:] == (10, 10), "padded image, window with its margin"
    elastic = RandomCrops(images, masks, crop=8, seed=0, deform=lambda *a, **k: augment.elastic_deform(*a, **k))
    assert elastic[0][0].shape == (3, 8, 8)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"crop": 30}, ValueError, r"image 0 is 20x24, smaller than the crop 30"),
    ({"margin": 2}, ValueError, "margin needs a crop size"),
])
def test_bad_settings_are_named(kwargs, error, match):
    images, masks = images_and_labels()
    with pytest.raises(error, match=match):
        RandomCrops(images, masks, **kwargs)


def test_bad_inputs_are_named():
    images, masks = images_and_labels()
    with pytest.raises(ValueError, match="got 3 images but 2 targets"):
        RandomCrops(images, masks[:2])
    with pytest.raises(ValueError, match=r"image 1: image \(20, 24, 3\), target \(20, 23\)"):
        RandomCrops(list(images), [masks[0], masks[1][:, :-1], masks[2]])
    with pytest.raises(TypeError, match="boolean masks or integer class indices"):
        RandomCrops(images, masks.astype(np.float32))
    with pytest.raises(ValueError, match="at least one image"):
        RandomCrops([], [])
    with pytest.raises(IndexError, match="out of range for 3 crops"):
        RandomCrops(images, masks)[3]


def test_elastic_crops_in_two_workers_are_the_one_process_stream_and_change_every_epoch():
    """Chapter 04 deforms in DataLoader workers (full profile): 0, 1 or 2 workers give the same crops, epoch after
    epoch (as fit reads them: set_epoch, then a shuffled pass), every epoch new ones, and no two workers alike."""
    import functools

    rng = np.random.default_rng(0)
    slices = rng.random((2, 40, 40)).astype(np.float32)
    labels = (slices > 0.5).astype(np.int64)
    deform = functools.partial(augment.elastic_deform, grid=3, sigma=4.0)

    def stream(workers):
        crops = RandomCrops(slices, labels, crop=16, length=8, deform=deform, transform=augment.FlipRotate(), seed=2)
        loader = DataLoader(crops, batch_size=2, shuffle=True, num_workers=workers,
                            generator=torch.Generator().manual_seed(2))
        epochs = []
        for epoch in range(2):
            set_epoch(crops, epoch)
            epochs.append(torch.cat([x for x, _ in loader]))
        return epochs

    one_process, one_worker, two_workers = stream(0), stream(1), stream(2)
    for epoch in range(2):
        assert torch.equal(two_workers[epoch], one_process[epoch]) and torch.equal(one_worker[epoch],
                                                                                   one_process[epoch])
    first, second = ({tuple(row.tolist()) for row in e.flatten(1)} for e in two_workers)
    assert len(first) == len(two_workers[0]), "the two workers do not repeat each other's crops"
    assert not first & second, "a new epoch deforms anew: no crop of epoch 0 comes back in epoch 1"
