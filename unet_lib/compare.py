"""Comparing segmenters on one split under one training budget (chapter 07).

* :class:`Contender` names a network of the comparison: how to build it, its loss, and
  which of its outputs is the prediction.
* :func:`train_contender` trains one with the book's recipe (seeded; flips and quarter
  turns; Adam with a one-cycle schedule) and scores the final weights on every
  validation image; the :class:`Run` it returns holds the network *as deployed*
  (:func:`deployed`: one logit map, extra deep-supervision heads not computed).
* :func:`paired_difference` compares two methods on the *same* images, with a bootstrap
  interval of the mean per-image difference.
* :func:`object_fraction` and :func:`size_strata` say how much of each image the object
  covers and sort images into small / medium / large strata.

Nothing here prints; the notebooks make the tables and figures.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import augment, metrics
from .models import UNet3Plus, UNetPlusPlus, count_parameters
from .models.unet_plusplus import count_macs
from .train import History, evaluate, fit, seed_everything

__all__ = ["Contender", "Run", "deployed", "train_contender", "paired_difference", "object_fraction",
           "size_strata", "SIZE_EDGES"]

#: object fractions that separate "small", "medium" and "large" objects (share of the image's pixels)
SIZE_EDGES: tuple[float, float] = (0.05, 0.20)


@dataclass(frozen=True)
class Contender:
    """One network of a comparison.

    Args:
        name: the name in tables and figures, e.g. ``"UNet++ (DS)"``.
        build: makes a fresh, untrained network (called after seeding, so that the
            initial weights depend on the seed only).
        loss_fn: ``loss_fn(output, target) -> scalar``, applied to the network's raw output
            (a list of heads for deep supervision).
        output_fn: maps the raw output to the segmentation logits used for validation
            during training (``None``: the output is already one logit map).
    """

    name: str
    build: Callable[[], nn.Module]
    loss_fn: Callable[..., torch.Tensor]
    output_fn: Callable | None = None


@dataclass
class Run:
    """A trained contender and its scores on the validation images.

    Attributes:
        name: the contender's name.
        model: the network as deployed (:func:`deployed`): ``model(x)`` returns one logit map.
        history: the training :class:`~unet_lib.train.History` (train time, validation Dice per epoch).
        scores: per-image ``{"dice", "iou", "precision", "recall"}`` arrays, in the loader's order.
        params: trainable parameters of the network as trained (heads included).
        macs: multiply-accumulates of the deployed network for one validation image (convolutions only).
        seed: the seed of the run.
    """

    name: str
    model: nn.Module
    history: History
    scores: dict[str, np.ndarray]
    params: int
    macs: int
    seed: int


def deployed(model: nn.Module) -> nn.Module:
    """The network as it is used at inference: one logit map, no unused heads.

    A deeply supervised UNet++ is cut to its deepest head (``model.prune(depth)``, chapter 05);
    a deeply supervised UNet 3+ returns only ``d1`` (a shallow copy that shares the weights and
    skips the heads ``d2..d5``, chapter 06). Other networks are returned as they are.
    Latency and MACs measured on the result are those of the prediction actually used.
    """
    if isinstance(model, UNetPlusPlus) and model.deep_supervision:
        return model.prune(model.depth)
    if isinstance(model, UNet3Plus) and model.deep_supervision:
        if model.cgm:
            raise ValueError("deployed() does not handle a UNet 3+ with a CGM: its output also holds the "
                             "classification logits; evaluate it with an output_fn instead")
        single = copy.copy(model)           # shares parameters and submodules with `model`
        single.deep_supervision = False     # forward returns d1 only and skips the other heads
        return single
    return model


def train_contender(contender: Contender, train_set: Dataset, val_loader: DataLoader, *, max_epochs: int,
                    lr: float, batch_size: int, seed: int = 0, device: torch.device | str | None = None,
                    num_workers: int = 0) -> Run:
    """Train one contender with the book's recipe and score its final weights per validation image.

    Every contender of a comparison gets the same recipe and the same randomness: the seed is set
    before the network is built, the training images come in the same order
    (a seeded ``DataLoader``), and ``train_set.transform`` is set to a fresh
    :class:`~unet_lib.augment.FlipRotate` with the same seed (random flips and quarter turns).
    Optimiser: Adam with a one-cycle schedule peaking at ``lr`` (:func:`unet_lib.train.fit`).

    Args:
        contender: the network to train.
        train_set: a dataset with a ``transform`` attribute (e.g. :class:`unet_lib.data.KvasirSEG`).
        val_loader: validation batches ``(image, mask)``; also scored after every epoch.
        max_epochs, lr, batch_size: the training budget, the same for every contender.
        seed: seeds the weights, the batch order and the augmentation.
        device: where to train (default :func:`unet_lib.config.device`).
        num_workers: DataLoader worker processes.

    Returns:
        The :class:`Run`.

    Chapter 07.
    """
    if not hasattr(train_set, "transform"):
        raise TypeError(f"train_set must have a 'transform' attribute for the augmentation, got {type(train_set).__name__}")
    seed_everything(seed)
    model = contender.build()
    train_set.transform = augment.FlipRotate(seed)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(seed))
    history = fit(model, loader, val_loader, loss_fn=contender.loss_fn, max_epochs=max_epochs, lr=lr,
                  schedule="onecycle", device=device, output_fn=contender.output_fn, progress=False)
    net = deployed(model)
    scores = evaluate(net, val_loader)
    image = next(iter(val_loader))[0][:1]                   # (1, C, H, W): MACs at the validation size
    macs = count_macs(net, tuple(image.shape))
    return Run(contender.name, net, history, scores, count_parameters(model), macs, seed)


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                      **summarize_kwargs) -> dict[str, float]:
    """Mean per-image difference ``a - b`` of two methods scored on the same images, with a bootstrap interval.

    Pairing removes the spread between easy and hard images, which both methods share: two
    methods whose own intervals overlap can still differ clearly image by image.

    Args:
        a, b: per-image scores of two methods, in the same image order.
        **summarize_kwargs: passed to :func:`unet_lib.metrics.summarize` (``n_boot``, ``seed``, ``ci``).

    Returns:
        :func:`~unet_lib.metrics.summarize` of the differences: ``{"mean", "std", "ci_low", "ci_high", "n"}``.

    Raises:
        ValueError: the two arrays have different lengths (not scored on the same images).
    """
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired scores need one value per image for both methods, got {a.size} and {b.size} "
                         "values: score both on the same images, in the same order")
    return metrics.summarize(a - b, **summarize_kwargs)


def object_fraction(masks) -> np.ndarray:
    """Share of each image's pixels that belong to the object.

    Args:
        masks: binary masks ``(B, H, W)`` or ``(B, 1, H, W)`` (numpy or torch; values > 0.5 count).

    Returns:
        ``(B,)`` float array in [0, 1].
    """
    c = metrics.confusion(masks, masks)      # a mask against itself: TP = object pixels, TN = the rest
    return (c.tp / (c.tp + c.tn)).double().numpy()


def size_strata(fractions: Sequence[float] | np.ndarray, edges: Sequence[float] = SIZE_EDGES) -> list[str]:
    """Sort images into ``"small"``, ``"medium"`` and ``"large"`` by their object fraction.

    An image with ``fraction < edges[0]`` is small, with ``edges[0] <= fraction < edges[1]`` medium,
    and large otherwise.

    Args:
        fractions: per-image object fractions (:func:`object_fraction`).
        edges: two increasing fractions (default :data:`SIZE_EDGES`: 5 % and 20 % of the image).

    Returns:
        One label per image.
    """
    lo, hi = (float(e) for e in edges)
    if not 0 <= lo < hi <= 1:
        raise ValueError(f"edges must be two increasing fractions in [0, 1], got {tuple(edges)}")
    f = np.asarray(fractions, dtype=float).ravel()
    return ["small" if v < lo else "medium" if v < hi else "large" for v in f]
