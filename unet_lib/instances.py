"""Instances: training targets from instance masks, and instance-level evaluation (chapter 04).

A semantic U-Net predicts one foreground mask. To get *objects* (nuclei, cells)
from it we take the connected components of the predicted foreground; touching
objects come out separate only if the network has learnt to leave a thin line of
background between them. So the training target must contain that line:

* :func:`touching_borders` finds the object pixels that touch a *different* object;
* :func:`separate_touching` removes them, leaving a background ridge between touching
  objects (isolated object borders stay untouched);
* :func:`label_instances` turns a predicted foreground mask back into objects;
* :func:`match_instances` matches predicted and true objects one-to-one at IoU >= 0.5 and
  reports precision, recall and F1 over objects (the counting behind the DSB2018 and
  cell-tracking scores), plus how many true objects were merged into one prediction.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = ["touching_borders", "separate_touching", "touching_labels", "label_instances", "iou_matrix",
           "InstanceScores", "match_instances", "f1_from_iou"]


def _labels(instances: np.ndarray, name: str = "instances") -> np.ndarray:
    a = np.asarray(instances)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a label image (H, W), got shape {a.shape}")
    if a.dtype == bool:
        raise ValueError(f"{name} is a boolean mask, not instance labels: label it first with label_instances(mask)")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer labels (0 = background), got dtype {a.dtype}")
    if a.size and a.min() < 0:
        raise ValueError(f"{name} must be >= 0 (0 = background, 1..N = objects)")
    return a


def _footprint(width: int) -> np.ndarray:
    if width < 1:
        raise ValueError(f"width must be >= 1 pixel, got {width}")
    return np.ones((2 * width + 1, 2 * width + 1), dtype=bool)


def touching_borders(instances: np.ndarray, width: int = 1) -> np.ndarray:
    """Object pixels that have a pixel of a *different* object within ``width`` (chessboard distance).

    Args:
        instances: ``int (H, W)``, 0 = background, 1..N = objects.
        width: half-size of the square neighbourhood; with ``width=1`` two objects that share an
            edge each lose one pixel row there, so a 2-px background ridge separates them.

    Returns:
        ``bool (H, W)``: the pixels to turn into background.
    """
    inst = _labels(instances)
    fp = _footprint(width)
    lab = inst.astype(np.int64)
    big = int(lab.max(initial=0)) + 1       # stands in for "no object" (avoid int64 max: filters overflow on it)
    hi = ndimage.maximum_filter(lab, footprint=fp, mode="nearest")              # largest label around
    # smallest object label around
    lo = ndimage.minimum_filter(np.where(lab > 0, lab, big), footprint=fp, mode="nearest")
    return (lab > 0) & ((hi != lab) | (lo != lab))


def separate_touching(instances: np.ndarray, width: int = 1) -> np.ndarray:
    """Instance labels with the borders between touching objects set to background.

    The semantic training target is ``separate_touching(instances) > 0``: its connected
    components are the objects (slightly smaller where they touch), and the background ridge
    between them is where :func:`unet_lib.weights.border_weight_map` puts its large weights.

    Args:
        instances: ``int (H, W)``.
        width: see :func:`touching_borders`.

    Returns:
        Labels of the same dtype and shape.
    """
    inst = _labels(instances)
    return np.where(touching_borders(inst, width), 0, inst).astype(inst.dtype)


def touching_labels(instances: np.ndarray, distance: int = 2) -> np.ndarray:
    """Sorted labels of the objects that come within ``distance`` pixels (chessboard) of another object.

    These are the objects a model can only get right if it separates them from a neighbour.
    """
    inst = _labels(instances)
    near = touching_borders(inst, width=distance)
    return np.unique(inst[near])


def label_instances(mask: np.ndarray, min_size: int = 0, expand: int = 0, connectivity: int = 1) -> np.ndarray:
    """Objects from a foreground mask: its connected components.

    Args:
        mask: ``(H, W)`` bool (or 0/1) predicted foreground.
        min_size: drop components with fewer pixels (specks of noise).
        expand: grow every object by this many pixels into the background without letting two
            objects overlap (:func:`skimage.segmentation.expand_labels`); undoes the shrinkage of
            training on :func:`separate_touching` targets. 0 = off.
        connectivity: 1 = 4-neighbours (a one-pixel diagonal line still separates), 2 = 8-neighbours.

    Returns:
        ``int32 (H, W)``: 0 = background, 1..N = objects (consecutive).
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {m.shape}")
    structure = ndimage.generate_binary_structure(2, connectivity)
    labels, n = ndimage.label(m > 0, structure=structure)
    if min_size > 0 and n:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= min_size
        keep[0] = False
        new = np.zeros(len(sizes), dtype=np.int32)
        new[keep] = np.arange(1, int(keep.sum()) + 1)
        labels = new[labels]
    if expand > 0:
        from skimage.segmentation import expand_labels

        labels = expand_labels(labels, distance=expand)
    return labels.astype(np.int32)


def _overlaps(pred: np.ndarray, true: np.ndarray):
    """Intersections ``(P, T)``, areas ``(P,)`` and ``(T,)``, and the sorted label ids."""
    p, t = _labels(pred, "pred"), _labels(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and true {t.shape} label images differ in shape")
    p, t = p.ravel(), t.ravel()
    pred_ids, true_ids = np.unique(p[p > 0]), np.unique(t[t > 0])
    # index 0 = background, 1..P / 1..T = objects
    pi = np.where(p > 0, np.searchsorted(pred_ids, p) + 1, 0)
    ti = np.where(t > 0, np.searchsorted(true_ids, t) + 1, 0)
    n_p, n_t = len(pred_ids) + 1, len(true_ids) + 1
    inter = np.bincount(pi * n_t + ti, minlength=n_p * n_t).reshape(n_p, n_t)[1:, 1:].astype(np.float64)
    area_p = np.bincount(pi, minlength=n_p)[1:].astype(np.float64)
    area_t = np.bincount(ti, minlength=n_t)[1:].astype(np.float64)
    return inter, area_p, area_t, pred_ids, true_ids


def iou_matrix(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every predicted object with every true object.

    Args:
        pred, true: ``int (H, W)`` label images of the same shape.

    Returns:
        ``(iou, pred_ids, true_ids)``: ``iou`` is ``float64 (P, T)`` for the ``P`` predicted and
        ``T`` true labels (sorted, background excluded) listed in ``pred_ids`` and ``true_ids``.
    """
    inter, area_p, area_t, pred_ids, true_ids = _overlaps(pred, true)
    union = area_p[:, None] + area_t[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou, pred_ids, true_ids


@dataclass(frozen=True)
class InstanceScores:
    """Object-level counts and scores of one image (or summed over images with ``+``).

    ``tp``: true objects matched one-to-one by a predicted object with IoU >= threshold;
    ``fp``: unmatched predictions; ``fn``: unmatched true objects; ``merged``: true objects that
    lie mostly (> 50 % of their pixels) inside a prediction that also holds most of another
    true object (the failure the border weights are meant to prevent); ``matched_iou`` and
    ``matched_true``: the IoU and the true label of every matched pair.
    """

    tp: int
    fp: int
    fn: int
    merged: int = 0
    matched_iou: tuple = field(default=(), repr=False)
    matched_true: tuple = field(default=(), repr=False)

    @property
    def precision(self) -> float:
        """``tp / (tp + fp)``; 1.0 when nothing was predicted and nothing was there."""
        d = self.tp + self.fp
        return self.tp / d if d else (1.0 if self.fn == 0 else 0.0)

    @property
    def recall(self) -> float:
        """``tp / (tp + fn)``; 1.0 when there was nothing to find."""
        d = self.tp + self.fn
        return self.tp / d if d else (1.0 if self.fp == 0 else 0.0)

    @property
    def f1(self) -> float:
        """``2 tp / (2 tp + fp + fn)``; 1.0 when both images are empty."""
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 1.0

    @property
    def mean_matched_iou(self) -> float:
        """Mean IoU of the matched pairs (segmentation quality of the objects that were found)."""
        return float(np.mean(self.matched_iou)) if self.matched_iou else float("nan")

    def __add__(self, other: "InstanceScores") -> "InstanceScores":
        return InstanceScores(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn,
                              self.merged + other.merged, tuple(self.matched_iou) + tuple(other.matched_iou),
                              tuple(self.matched_true) + tuple(other.matched_true))

    def as_dict(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "merged": self.merged, "precision": self.precision,
                "recall": self.recall, "f1": self.f1, "mean_matched_iou": self.mean_matched_iou}


def _greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one pairs ``(pred_index, true_index)`` with IoU >= threshold, highest IoU first.

    For ``threshold > 0.5`` a pair above the threshold is unique anyway (two objects cannot both
    overlap a third by more than half), so greedy equals optimal matching; at exactly 0.5 ties are
    broken by IoU order.
    """
    rows, cols = np.nonzero(iou >= threshold)
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_p, used_t, pairs = set(), set(), []
    for k in order:
        i, j = int(rows[k]), int(cols[k])
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            pairs.append((i, j))
    return pairs


def f1_from_iou(iou: np.ndarray, threshold: float = 0.5) -> float:
    """Object F1 ``2 TP / (2 TP + FP + FN)`` from a ``(P, T)`` IoU matrix (one-to-one matching)."""
    iou = np.asarray(iou, dtype=np.float64)
    if iou.ndim != 2:
        raise ValueError(f"iou must be a (P, T) matrix, got shape {iou.shape}")
    tp = len(_greedy_match(iou, threshold))
    p, t = iou.shape
    d = p + t
    return 2 * tp / d if d else 1.0


def match_instances(pred: np.ndarray, true: np.ndarray, threshold: float = 0.5) -> InstanceScores:
    """Match predicted to true objects one-to-one at IoU >= ``threshold`` and count.

    Args:
        pred: ``int (H, W)`` predicted objects (e.g. :func:`label_instances` of the predicted mask).
        true: ``int (H, W)`` true objects (the instance masks, *not* the ridge-separated target).
        threshold: IoU needed for a match (0.5: the usual choice, and the smallest that makes
            matches unique).

    Returns:
        :class:`InstanceScores` (``.precision``, ``.recall``, ``.f1``, ``.merged``).
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    inter, area_p, area_t, pred_ids, true_ids = _overlaps(pred, true)
    union = area_p[:, None] + area_t[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    pairs = _greedy_match(iou, threshold)
    tp = len(pairs)
    mostly_inside = inter > 0.5 * area_t[None, :]     # (P, T): true object j lies mostly inside prediction i
    holds = mostly_inside.sum(1)                       # how many true objects each prediction holds
    merged = int(holds[holds >= 2].sum())
    return InstanceScores(tp=tp, fp=len(pred_ids) - tp, fn=len(true_ids) - tp, merged=merged,
                          matched_iou=tuple(float(iou[i, j]) for i, j in pairs),
                          matched_true=tuple(int(true_ids[j]) for _, j in pairs))
