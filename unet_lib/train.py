"""Training and evaluation loops shared by every chapter.

``fit`` trains any of the book's models with Adam and a one-cycle learning-rate
schedule, evaluates the per-image validation Dice after every epoch, keeps the
best checkpoint, and resumes after an interruption. Batches are tuples
``(image, target, *extra)``; the loss is called as ``loss_fn(output, target, *extra)``
so that a weight map (chapter 04) or a classification label (chapter 06) rides along.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import metrics
from .models.blocks import center_crop

__all__ = ["seed_everything", "History", "set_epoch", "fit", "evaluate", "predict", "probs_from_logits", "masks_from_logits",
           "save_checkpoint", "load_checkpoint", "load_best"]


def seed_everything(seed: int = 0, deterministic: bool = False) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA).

    Args:
        seed: the seed.
        deterministic: also ask cuDNN for deterministic kernels (slower on GPU).
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


@dataclass
class History:
    """What happened in each epoch of :func:`fit` (one entry per epoch)."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_dice: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_dice: float = float("nan")

    @property
    def train_seconds(self) -> float:
        """Total training time over all epochs (including validation)."""
        return float(sum(self.seconds))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**d)


def probs_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Foreground probability ``(B, H, W)``: sigmoid of one channel, or softmax channel 1 of ``C >= 2``."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return logits.softmax(1)[:, 1]


def masks_from_logits(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Boolean foreground masks ``(B, H, W)`` (threshold on the sigmoid, or argmax == 1 for softmax)."""
    if logits.shape[1] == 1:
        return logits[:, 0] > math.log(threshold / (1 - threshold))
    return logits.argmax(1) == 1


def _default_output(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    raise TypeError("the model returned several outputs (deep supervision or a classifier): pass "
                    "output_fn=... to say which one is the segmentation, e.g. output_fn=lambda out: out[-1]")


def _target_mask(target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Foreground mask ``(B, H, W)`` from a target, centre-cropped to the logits' size (valid padding)."""
    t = target[:, 0] if target.ndim == 4 else target
    if t.shape[-2:] != like.shape[-2:]:
        t = center_crop(t, like.shape[-2], like.shape[-1])
    return t > 0.5


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device: torch.device | str | None = None,
            batch_size: int = 16, output_fn: Callable | None = None) -> torch.Tensor:
    """Logits for a stack of images, in eval mode and in mini-batches; returned on the CPU.

    Shape: ``(N, C, H, W) -> (N, num_classes, H', W')``.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    output_fn = output_fn or _default_output
    was_training = model.training
    model.eval()
    out = [output_fn(model(images[i:i + batch_size].to(device))).float().cpu()
           for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device | str | None = None,
             output_fn: Callable | None = None, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Per-image Dice, IoU, precision and recall over a data loader.

    Returns:
        ``{"dice", "iou", "precision", "recall"}``, each a float array with one value per image,
        in the loader's order.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    output_fn = output_fn or _default_output
    was_training = model.training
    model.eval()
    scores: dict[str, list] = {"dice": [], "iou": [], "precision": [], "recall": []}
    for batch in loader:
        images, target = batch[0].to(device), batch[1]
        logits = output_fn(model(images)).float().cpu()
        pred, true = masks_from_logits(logits, threshold), _target_mask(target, logits)
        for name in scores:
            scores[name].append(getattr(metrics, name)(pred, true).numpy())
    model.train(was_training)
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in scores.items()}


def save_checkpoint(path: str | Path, **state) -> None:
    """Save a checkpoint atomically (write to ``.tmp``, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code runs from the file)."""
    return torch.load(Path(path), map_location=map_location, weights_only=True)


def load_best(model: nn.Module, checkpoint_dir: str | Path) -> nn.Module:
    """Load ``best.pt`` from ``checkpoint_dir`` into ``model`` and return it."""
    model.load_state_dict(load_checkpoint(Path(checkpoint_dir) / "best.pt")["model"])
    return model


def set_epoch(dataset, epoch: int) -> None:
    """Tell a dataset (and the datasets inside a ``ConcatDataset`` or ``Subset``) which epoch begins.

    Datasets that draw each item from its own generator, seeded by ``(seed, epoch, index)``
    (:class:`unet_lib.data.RandomCrops`), define ``set_epoch``; others are left alone. With it, an
    item never depends on the order items are read, on the number of DataLoader workers, or on
    whether training was resumed.
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    for inner in getattr(dataset, "datasets", ()):      # ConcatDataset
        set_epoch(inner, epoch)
    if hasattr(dataset, "dataset") and hasattr(dataset, "indices"):   # Subset
        set_epoch(dataset.dataset, epoch)


def fit(model: nn.Module, train_loader, val_loader=None, *, loss_fn: Callable[..., torch.Tensor],
        max_epochs: int, lr: float = 1e-3, weight_decay: float = 0.0, schedule: str = "onecycle",
        device: torch.device | str | None = None, checkpoint_dir: str | Path | None = None,
        resume: bool = True, amp: bool | None = None, output_fn: Callable | None = None,
        grad_clip: float | None = None, progress: bool = True) -> History:
    """Train ``model`` and return its :class:`History`.

    Args:
        model: any ``nn.Module``; it is moved to ``device``.
        train_loader: yields ``(image, target, *extra)`` batches.
        val_loader: same form; after every epoch the mean per-image validation Dice is recorded.
        loss_fn: ``loss_fn(model_output, target, *extra) -> scalar``.
        max_epochs: number of epochs.
        lr: peak learning rate (Adam). ``schedule="onecycle"`` warms up for 30 % of the steps and
            anneals (cosine) to ``lr / 1e4``; ``"constant"`` keeps ``lr``.
        weight_decay: Adam's L2 penalty.
        device: default :func:`unet_lib.config.device`.
        checkpoint_dir: if given, ``last.pt`` is written after every epoch and ``best.pt`` whenever
            the validation Dice improves; with ``resume=True`` a ``last.pt`` found there is loaded
            and training continues from the next epoch (so an interrupted run picks up where it stopped).
        amp: mixed precision; default on for CUDA, off elsewhere.
        output_fn: maps the model's output to the segmentation logits used for validation
            (needed when the model returns several outputs).
        grad_clip: clip the gradient norm to this value.
        progress: show a tqdm progress bar.

    Returns:
        The :class:`History` (also stored in the checkpoints).
    """
    from .config import device as default_device

    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    amp = (device.type == "cuda") if amp is None else amp
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max(1, max_epochs * len(train_loader))
    if schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.3,
                                                        div_factor=25.0, final_div_factor=400.0)
    elif schedule == "constant":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    else:
        raise ValueError(f"unknown schedule {schedule!r}: use 'onecycle' or 'constant'")
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    history, start = History(), 0

    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_dir is not None and resume and (ckpt_dir / "last.pt").exists():
        state = load_checkpoint(ckpt_dir / "last.pt", map_location=device)
        if int(state.get("max_epochs", max_epochs)) != max_epochs:
            raise ValueError(f"{ckpt_dir / 'last.pt'} belongs to a run with max_epochs={state['max_epochs']}, "
                             f"not {max_epochs}: pass the same max_epochs to resume it, resume=False or "
                             "another checkpoint_dir to start afresh")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history = History.from_dict(state["history"])
        start = int(state["epoch"]) + 1

    bar = tqdm(range(start, max_epochs), desc="epochs", disable=not progress, leave=False,
               initial=start, total=max_epochs)
    for epoch in bar:
        t0 = time.perf_counter()
        set_epoch(getattr(train_loader, "dataset", None), epoch)
        model.train()
        running, seen, last_lr = 0.0, 0, optimizer.param_groups[0]["lr"]
        for batch in train_loader:
            images, target, *extra = [b.to(device, non_blocking=True) if torch.is_tensor(b) else b for b in batch]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, enabled=amp):
                loss = loss_fn(model(images), target, *extra)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}: lower lr or check the data")
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
            last_lr = optimizer.param_groups[0]["lr"]  # the rate this step used
            scheduler.step()
            running += loss.item() * len(images)
            seen += len(images)
        val_dice = float("nan")
        if val_loader is not None:
            val_dice = float(evaluate(model, val_loader, device, output_fn)["dice"].mean())
        history.epoch.append(epoch)
        history.train_loss.append(running / max(seen, 1))
        history.val_dice.append(val_dice)
        history.lr.append(last_lr)
        history.seconds.append(time.perf_counter() - t0)
        improved = not math.isnan(val_dice) and (math.isnan(history.best_val_dice) or val_dice > history.best_val_dice)
        if improved:
            history.best_epoch, history.best_val_dice = epoch, val_dice
        bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}", val_dice=f"{val_dice:.4f}")
        if ckpt_dir is not None:
            if improved:
                save_checkpoint(ckpt_dir / "best.pt", model=model.state_dict(), epoch=epoch, val_dice=val_dice)
            save_checkpoint(ckpt_dir / "last.pt", model=model.state_dict(), optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), scaler=scaler.state_dict(), epoch=epoch,
                            max_epochs=max_epochs, history=history.to_dict())
    bar.close()
    return history
