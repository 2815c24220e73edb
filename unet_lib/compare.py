"""The book's training recipe, and comparing segmenters on one split under one budget (chapters 02-07).

* :class:`Contender` names a network of the comparison: how to build it, its loss, and
  which of its outputs is the prediction.
* :func:`train_contender` is the book's one training recipe (seeded; flips and quarter
  turns; Adam with a one-cycle schedule; checkpoints with resume) and scores the final
  weights on every validation image; the :class:`Run` it returns holds the network as
  trained, and :attr:`Run.deployed` the network as used for prediction (:func:`deployed`:
  one logit map, extra deep-supervision heads not computed).
* :func:`paired_difference` compares two methods on the *same* images, with a bootstrap
  interval of the mean per-image difference.
* :func:`object_fraction`, :func:`size_strata` and :func:`dice_by_size` say how much of each
  image the object covers, sort images into small / medium / large strata and score each.

Nothing here prints; the notebooks make the tables and figures.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import augment, metrics
from .config import checked_device
from .config import device as default_device
from .measure import count_macs
from .models import UNet3Plus, UNetPlusPlus, count_parameters
from .train import History, evaluate, fit, seed_everything

__all__ = ["Contender", "Run", "deployed", "train_contender", "FLIP_ROTATE", "paired_difference",
           "object_fraction", "size_strata", "dice_by_size", "SIZE_EDGES"]

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


#: ``transform=`` default of :func:`train_contender`: a fresh :class:`~unet_lib.augment.FlipRotate`
#: seeded with the run's seed
FLIP_ROTATE = "flip_rotate"


@dataclass
class Run:
    """A trained contender and its scores on the validation images.

    Attributes:
        name: the contender's name.
        model: the network as trained (deep-supervision heads and classifier included), e.g. for
            chapter 05's pruning; :attr:`deployed` is the network as used for prediction.
        history: the training :class:`~unet_lib.train.History` (train time, validation Dice per epoch).
        scores: per-image ``{"dice", "iou", "precision", "recall"}`` arrays of the final weights, in the
            validation loader's order (empty without a validation loader).
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

    @property
    def deployed(self) -> nn.Module:
        """The trained network as deployed (:func:`deployed`): ``run.deployed(x)`` is one logit map."""
        return deployed(self.model)


class _GatedSegmentation(nn.Module):
    """A UNet 3+ with a CGM, returning only its (gated in eval mode) segmentation logits."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


def deployed(model: nn.Module) -> nn.Module:
    """The network as it is used at inference: one logit map, no unused heads.

    A deeply supervised UNet++ is cut to its deepest head (``model.prune(depth)``, chapter 05);
    a deeply supervised UNet 3+ returns only ``d1`` (a shallow copy that shares the weights and
    skips the heads ``d2..d5``, chapter 06); a UNet 3+ with a CGM returns its segmentation, gated
    by the classifier in eval mode. Other networks are returned as they are.
    Latency and MACs measured on the result are those of the prediction actually used.
    """
    if isinstance(model, UNetPlusPlus) and model.deep_supervision:
        return model.prune(model.depth)
    if isinstance(model, UNet3Plus) and (model.deep_supervision or model.cgm):
        single = copy.copy(model)           # shares parameters and submodules with `model`
        single.deep_supervision = False     # forward computes d1 only and skips the other heads
        return _GatedSegmentation(single) if model.cgm else single
    return model


def train_contender(contender: Contender, train_set: Dataset, val_loader: DataLoader | None = None, *,
                    max_epochs: int, lr: float, batch_size: int, seed: int = 0,
                    device: torch.device | str | None = None, num_workers: int = 0,
                    transform: Callable | str | None = FLIP_ROTATE, drop_last: bool = False,
                    checkpoint_dir: str | Path | None = None, resume: bool = True, progress: bool = False,
                    channels_last: bool = False) -> Run:
    """Train one network with the book's recipe and score its final weights per validation image.

    This is the one training recipe of the book: every chapter that trains a network calls it, so a
    change to the recipe touches this function only. Every run gets the same randomness for the
    same seed: the seed is set before the network is built (the initial weights depend on the seed
    only), the training items come in a seeded order, and the augmentation is seeded too.
    Optimiser: Adam with a one-cycle schedule peaking at ``lr`` (:func:`unet_lib.train.fit`).

    Args:
        contender: the network to train (how to build it, its loss, which output is the segmentation).
        train_set: yields ``(image, target, *extra)``; extras (a weight map, an image-level label)
            are passed to the loss as ``loss_fn(output, target, *extra)``.
        val_loader: validation batches ``(image, mask)``, scored after every epoch and at the end;
            ``None`` trains without validation (``Run.scores`` is then empty).
        max_epochs, lr, batch_size: the training budget.
        seed: seeds the weights, the batch order and the augmentation.
        device: where to train (default :func:`unet_lib.config.device`).
        num_workers: DataLoader worker processes (batches are pinned in memory for a CUDA device).
        transform: :data:`FLIP_ROTATE` (default) sets ``train_set.transform`` to a fresh
            :class:`~unet_lib.augment.FlipRotate` seeded with ``seed`` (random flips and quarter turns);
            a callable is set as ``train_set.transform`` as it is; ``None`` leaves the dataset as it
            is (it augments itself, e.g. :class:`unet_lib.data.RandomCrops` seeded per item).
        drop_last: drop the last incomplete batch (batch norm on a batch of one image is unstable).
        checkpoint_dir: write ``last.pt`` after every epoch and ``best.pt`` at the best validation
            Dice; with ``resume=True`` a run interrupted there continues from its last finished epoch.
        resume: see ``checkpoint_dir``.
        progress: show a progress bar over the epochs.
        channels_last: train in the channels-last memory format, a speed setting that leaves the
            recipe as it is (:func:`unet_lib.train.fit`).

    Returns:
        The :class:`Run`.

    Chapters 02-07.
    """
    if transform is not None:
        if not hasattr(train_set, "transform"):
            raise TypeError(f"train_set ({type(train_set).__name__}) has no 'transform' attribute to set the "
                            "augmentation on: pass transform=None if it augments itself")
        train_set.transform = augment.FlipRotate(seed) if transform == FLIP_ROTATE else transform
    device = checked_device(device, f"train_contender(device={device!r})") if device is not None else default_device()
    seed_everything(seed)
    model = contender.build()
    # pinned (page-locked) batches let fit's non_blocking copies to a GPU overlap with its work
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                        drop_last=drop_last, generator=torch.Generator().manual_seed(seed),
                        pin_memory=device.type == "cuda")
    history = fit(model, loader, val_loader, loss_fn=contender.loss_fn, max_epochs=max_epochs, lr=lr,
                  schedule="onecycle", device=device, output_fn=contender.output_fn, checkpoint_dir=checkpoint_dir,
                  resume=resume, progress=progress, channels_last=channels_last)
    net = deployed(model)
    scores = evaluate(net, val_loader) if val_loader is not None else {}
    image = next(iter(val_loader if val_loader is not None else loader))[0][:1]   # (1, C, H, W)
    macs = count_macs(net, tuple(image.shape))
    return Run(contender.name, model, history, scores, count_parameters(model), macs, seed)


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
    if not ((f >= 0) & (f <= 1)).all():
        raise ValueError(f"object fractions must lie in [0, 1], got {f[~((f >= 0) & (f <= 1))][0]} "
                         "(see object_fraction)")
    return ["small" if v < lo else "medium" if v < hi else "large" for v in f]


def dice_by_size(dice: Sequence[float] | np.ndarray, fractions: Sequence[float] | np.ndarray,
                 edges: Sequence[float] = SIZE_EDGES) -> dict[str, float]:
    """Mean per-image Dice of the images with small, medium and large objects (:func:`size_strata`).

    Args:
        dice: per-image Dice.
        fractions: per-image object fractions (:func:`object_fraction`), in the same order.
        edges: the strata edges (default :data:`SIZE_EDGES`).

    Returns:
        ``{"small": ..., "medium": ..., "large": ...}``; a stratum without images is left out.

    Raises:
        ValueError: ``dice`` and ``fractions`` have different lengths.

    Chapter 07.
    """
    d = np.asarray(dice, dtype=float).ravel()
    labels = np.array(size_strata(fractions, edges))
    if d.shape != labels.shape:
        raise ValueError(f"one Dice per image and one fraction per image are needed, got {d.size} and {labels.size}")
    return {s: float(d[labels == s].mean()) for s in ("small", "medium", "large") if (labels == s).any()}
