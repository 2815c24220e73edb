"""Training and evaluation loops shared by every chapter.

``fit`` trains any of the book's models with Adam and a one-cycle learning-rate
schedule, evaluates the per-image validation Dice after every epoch, keeps the
best checkpoint, and resumes after an interruption exactly (:mod:`unet_lib.checkpoints`).
Batches are tuples ``(image, target, *extra)``; the loss is called as
``loss_fn(output, target, *extra)`` so that a weight map (chapter 04) or a classification
label (chapter 06) rides along. Every batch is checked cheaply (one min/max per tensor) before
the loss sees it: binary targets hold 0 and 1, class targets hold indices the network has
channels for, extras (weight maps, labels) are finite and >= 0.
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
from .checkpoints import (
    CheckpointError,
    check_resume,
    load_best,
    load_checkpoint,
    load_weights,
    random_state,
    restore_random_state,
    save_checkpoint,
)
from .checks import check_binary_target, check_class_target, check_weights
from .models.blocks import center_crop

__all__ = ["seed_everything", "History", "set_epoch", "fit", "evaluate", "predict", "probs_from_logits",
           "masks_from_logits", "check_target", "save_checkpoint", "load_checkpoint", "load_best", "CheckpointError"]


def seed_everything(seed: int = 0, deterministic: bool = False) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA).

    Args:
        seed: the seed.
        deterministic: also ask cuDNN for deterministic kernels (slower on GPU).

    Raises:
        ValueError: a seed that is not a whole number in 0 .. 2**32 - 1 (NumPy's range).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 32:
        raise ValueError(f"seed must be a whole number from 0 to 2**32 - 1, got {seed!r}"
                         + (f": pass {seed.strip()} without quotes" if isinstance(seed, str) else ""))
    seed = int(seed)
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
    """Boolean foreground masks ``(B, H, W)`` (threshold on the sigmoid, or argmax == 1 for softmax).

    Raises:
        ValueError: a threshold outside (0, 1), or NaN logits (a diverged network: NaN would count as background).
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold is a probability in (0, 1), got {threshold}")
    if logits.is_floating_point() and bool(torch.isnan(logits).any()):
        raise ValueError(f"{int(torch.isnan(logits).sum())} of {logits.numel()} logits are NaN (shape "
                         f"{tuple(logits.shape)}): the network diverged or its input held NaN; NaN would be "
                         "scored as background")
    if logits.shape[1] == 1:
        return logits[:, 0] > math.log(threshold / (1 - threshold))
    return logits.argmax(1) == 1


def _default_output(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    raise TypeError("the model returned several outputs (deep supervision or a classifier): pass "
                    "output_fn=... to say which one is the segmentation, e.g. output_fn=lambda out: out[-1]")


def _first_tensor(output):
    """The first tensor of a model's output (the first head of a list, the segmentation of a pair)."""
    while isinstance(output, (list, tuple)) and output:
        output = output[0]
    return output if torch.is_tensor(output) else None


def check_target(target: torch.Tensor, num_classes: int, what: str = "target") -> None:
    """Check a training or validation target against a network with ``num_classes`` output channels.

    One channel (sigmoid): the mask must hold only 0 and 1. Several channels (softmax): class indices
    ``0..num_classes-1``. One ``aminmax`` per batch (and one comparison for float masks).

    Raises:
        TypeError: the target is not a tensor.
        ValueError: other values; names them and the fix (e.g. a 0/255 mask: ``mask > 127``).
    """
    if not torch.is_tensor(target):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(target).__name__}: batches are (image, target, ...)")
    if num_classes == 1:
        check_binary_target(target, what, exact=True)
    else:
        check_class_target(target, num_classes, what)


def _target_mask(target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Foreground mask ``(B, H, W)`` from a target, centre-cropped to the logits' size (valid padding).

    With one logit channel the target is a 0/1 mask; with several it holds class indices and class 1
    is the foreground (as in :func:`masks_from_logits`).
    """
    check_target(target, like.shape[1], "validation target")
    t = target[:, 0] if target.ndim == 4 else target
    if t.shape[-2:] != like.shape[-2:]:
        t = center_crop(t, like.shape[-2], like.shape[-1])
    return t > 0.5 if like.shape[1] == 1 else t == 1


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
        images, target = _unpack(batch, "evaluate")[:2]
        logits = output_fn(model(images.to(device))).float().cpu()
        pred, true = masks_from_logits(logits, threshold), _target_mask(target, logits)
        for name in scores:
            scores[name].append(getattr(metrics, name)(pred, true).numpy())
    model.train(was_training)
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in scores.items()}


def _unpack(batch, who: str) -> list:
    """``[image, target, *extra]`` of one batch, or an error that says what the loader yields instead."""
    if torch.is_tensor(batch) or not isinstance(batch, (list, tuple)) or len(batch) < 2:
        kind = f"a tensor of shape {tuple(batch.shape)}" if torch.is_tensor(batch) else type(batch).__name__
        raise TypeError(f"{who} needs batches (image, target, *extra), but the loader yields {kind}: a dataset "
                        "without targets (e.g. ISBIEM('test'))? give it one that returns (image, mask)")
    if not torch.is_tensor(batch[0]):
        raise TypeError(f"{who}: the images of a batch must be a tensor, got {type(batch[0]).__name__}")
    return list(batch)


def _check_loader(loader, name: str) -> int:
    """Number of batches of a loader; refuses a Dataset passed for a loader and a loader without batches."""
    if isinstance(loader, torch.utils.data.Dataset):
        raise TypeError(f"{name} is a {type(loader).__name__} (a dataset), not a loader: pass "
                        f"DataLoader(dataset, batch_size=...)")
    try:
        n = len(loader)
    except TypeError:
        raise TypeError(f"{name} has no length ({type(loader).__name__}): fit needs the number of batches per "
                        "epoch for its schedule; use a DataLoader over a map-style Dataset") from None
    if n == 0:
        ds = getattr(loader, "dataset", None)
        size = f"its dataset holds {len(ds)} items" if ds is not None and hasattr(ds, "__len__") else "it is empty"
        extra = (f", batch_size={loader.batch_size}, drop_last=True" if getattr(loader, "drop_last", False) else "")
        fix = ("pass val_loader=None to train without validation (then no best.pt is written)" if name == "val_loader"
               else "check the dataset (a wrong folder, split or limit?)")
        raise ValueError(f"{name} yields no batches ({size}{extra}): {fix}")
    return n


def _check_batch(output, target: torch.Tensor, extra: list, epoch: int, step: int) -> None:
    """The vectorised per-batch checks of :func:`fit` (targets against the network's classes, extras >= 0)."""
    where = f"batch {step} of epoch {epoch}"
    logits = _first_tensor(output)
    num_classes = logits.shape[1] if logits is not None and logits.ndim == 4 else None
    if num_classes is not None:
        check_target(target, num_classes, f"the target of {where}")
    for k, e in enumerate(extra):
        if torch.is_tensor(e) and e.numel():
            check_weights(e, f"extra item {k} of {where} (a weight map or image label)")


def _check_loss(loss, loss_fn, step: int, epoch: int) -> None:
    """The loss must be a scalar float tensor that carries a gradient, or a named error."""
    name = getattr(loss_fn, "__name__", type(loss_fn).__name__)
    where = f"loss_fn {name} at batch {step} of epoch {epoch}"
    if not torch.is_tensor(loss):
        raise TypeError(f"{where} returned a {type(loss).__name__}, not a tensor: return the loss as a torch "
                        "scalar computed from the model's output (a .item() or float() cuts it off the graph)")
    if loss.numel() != 1:
        raise ValueError(f"{where} returned a tensor of shape {tuple(loss.shape)}, not one number: reduce it, e.g. "
                         "loss.mean() (a per-image or per-pixel loss needs its mean)")
    if not loss.requires_grad:
        raise ValueError(f"{where} returned a {loss.dtype} scalar without a gradient: compute it from the model's "
                         "output with torch operations (no .item(), .detach(), numpy or torch.no_grad())")


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


def _check_settings(max_epochs, lr, weight_decay, schedule, grad_clip) -> None:
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, (int, np.integer)) or max_epochs < 1:
        raise ValueError(f"max_epochs must be a positive int, got {max_epochs!r}")
    for name, value in (("lr", lr), ("weight_decay", weight_decay)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if schedule not in ("onecycle", "constant"):
        raise ValueError(f"unknown schedule {schedule!r}: use 'onecycle' or 'constant'")
    if grad_clip is not None and not (isinstance(grad_clip, (int, float)) and grad_clip > 0):
        raise ValueError(f"grad_clip must be a positive number or None, got {grad_clip!r}")


def _set_sampler_epoch(loader, epoch: int) -> None:
    """``sampler.set_epoch(epoch)`` for samplers that shuffle per epoch (``DistributedSampler``)."""
    for sampler in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)


def _amp_dtype(device: torch.device, amp_dtype: torch.dtype | None) -> torch.dtype:
    """The autocast dtype of :func:`fit`: float16 on CUDA, bfloat16 elsewhere, unless one is given."""
    if amp_dtype is None:
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    if amp_dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"amp_dtype must be torch.float16 or torch.bfloat16, got {amp_dtype!r}")
    return amp_dtype


def fit(model: nn.Module, train_loader, val_loader=None, *, loss_fn: Callable[..., torch.Tensor],
        max_epochs: int, lr: float = 1e-3, weight_decay: float = 0.0, schedule: str = "onecycle",
        device: torch.device | str | None = None, checkpoint_dir: str | Path | None = None,
        resume: bool = True, amp: bool | None = None, output_fn: Callable | None = None,
        grad_clip: float | None = None, progress: bool = True, check_targets: bool = True,
        amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> History:
    """Train ``model`` and return its :class:`History`.

    Args:
        model: any ``nn.Module``; it is moved to ``device``.
        train_loader: yields ``(image, target, *extra)`` batches; must have a length (batches per epoch).
        val_loader: same form; after every epoch the mean per-image validation Dice is recorded.
        loss_fn: ``loss_fn(model_output, target, *extra) -> scalar``.
        max_epochs: number of epochs.
        lr: peak learning rate (Adam). ``schedule="onecycle"`` warms up for 30 % of the steps and
            anneals (cosine) to ``lr / 1e4``; ``"constant"`` keeps ``lr``.
        weight_decay: Adam's L2 penalty.
        device: default :func:`unet_lib.config.device`.
        checkpoint_dir: if given, ``last.pt`` is written after every epoch and ``best.pt`` whenever
            the validation Dice improves; with ``resume=True`` a ``last.pt`` found there is loaded
            and training continues from the next epoch, exactly as if it had not stopped (model,
            optimiser, scheduler, scaler and every random state are restored, see
            :mod:`unet_lib.checkpoints`). Resuming with another network (its class or parameter count)
            or other settings (epochs, batches per epoch, batch size, lr, schedule, weight
            decay, gradient clipping) is refused before training.
        amp: mixed precision; default on for CUDA, off elsewhere.
        amp_dtype: the autocast dtype when ``amp`` is on: ``torch.float16`` or ``torch.bfloat16``; default
            float16 on CUDA, bfloat16 elsewhere (CPU autocast). Gradients are scaled (``GradScaler``)
            only for float16 on CUDA; bfloat16 has float32's range and needs no scaling.
        output_fn: maps the model's output to the segmentation logits used for validation
            (needed when the model returns several outputs).
        grad_clip: clip the gradient norm to this value.
        progress: show a tqdm progress bar.
        check_targets: check every batch (one min/max per tensor): with one output channel the
            target holds only 0 and 1, with several it holds class indices the network has channels
            for, and every extra tensor (weight map, image label) is finite and >= 0. ``False``
            allows soft targets.
        channels_last: train in the channels-last memory format (the model's weights and every 4-D
            image batch): the same computation, laid out so that some networks run faster (measured on
            2 CPU cores: 0.5-0.9 of the step time for UNet 3+, the 2015 U-Net and U-Net at width 16, but
            about 1.1 for FCN and U-Net at width 8-10; ``benchmarks/train_throughput.py``).

    Returns:
        The :class:`History` (also stored in the checkpoints).

    Raises:
        ValueError: bad settings, an empty loader, a target or weight outside its range (names the
            batch, the values and the fix), or a ``last.pt`` written under other settings.
        CheckpointError: an unreadable or foreign ``last.pt`` (names the file; ``resume=False`` starts afresh).
        FloatingPointError: the loss became NaN or infinite.
    """
    from .config import checked_device
    from .config import device as default_device

    _check_settings(max_epochs, lr, weight_decay, schedule, grad_clip)
    steps_per_epoch = _check_loader(train_loader, "train_loader")
    if val_loader is not None:
        _check_loader(val_loader, "val_loader")
    device = checked_device(device, f"fit(device={device!r})") if device is not None else default_device()
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    amp = (device.type == "cuda") if amp is None else amp
    amp_dtype = _amp_dtype(device, amp_dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max_epochs * steps_per_epoch
    if schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.3,
                                                        div_factor=25.0, final_div_factor=400.0)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and amp_dtype == torch.float16 and device.type == "cuda")
    history, start = History(), 0
    # what the run trains and how: a last.pt written for another network or budget is refused
    config = {"network": type(model).__name__, "parameters": sum(t.numel() for t in model.parameters()),
              "max_epochs": int(max_epochs), "steps_per_epoch": steps_per_epoch,
              "batch_size": getattr(train_loader, "batch_size", None), "lr": float(lr), "schedule": schedule,
              "weight_decay": float(weight_decay), "grad_clip": grad_clip}

    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_dir is not None and ckpt_dir.exists() and not ckpt_dir.is_dir():
        raise NotADirectoryError(f"checkpoint_dir {ckpt_dir} is a file, not a folder: pass a folder for last.pt and "
                                 "best.pt")
    last = ckpt_dir / "last.pt" if ckpt_dir is not None else None
    if last is not None and resume and last.exists():
        state = load_checkpoint(last, map_location=device)
        check_resume(last, state, config)
        load_weights(model, state, last)
        try:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError, RuntimeError) as e:
            raise CheckpointError(f"{last}: its optimiser or scheduler state does not fit this run ({e}); pass "
                                  "resume=False (or another checkpoint_dir) to start afresh") from e
        if scaler.is_enabled() and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        history = History.from_dict(state["history"])
        start = int(state["epoch"]) + 1
        print(f"resumed from {last}: {start} of {max_epochs} epochs were done"
              + ("" if start < max_epochs else ", nothing left to train"))
        if "random_state" in state:
            restore_random_state(state["random_state"], train_loader, last)

    bar = tqdm(range(start, max_epochs), desc="epochs", disable=not progress, leave=False,
               initial=start, total=max_epochs)
    for epoch in bar:
        t0 = time.perf_counter()
        set_epoch(getattr(train_loader, "dataset", None), epoch)
        _set_sampler_epoch(train_loader, epoch)
        model.train()
        running, seen, last_lr = 0.0, 0, optimizer.param_groups[0]["lr"]
        for step, batch in enumerate(train_loader):
            images, target, *extra = [b.to(device, non_blocking=True) if torch.is_tensor(b) else b
                                      for b in _unpack(batch, "fit")]
            if channels_last and images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                output = model(images)
                if check_targets:
                    _check_batch(output, target, extra, epoch, step)
                loss = loss_fn(output, target, *extra)
            _check_loss(loss, loss_fn, step, epoch)
            if not torch.isfinite(loss):
                cause = ("its images hold NaN or infinite values: check the data"
                         if images.is_floating_point() and not bool(torch.isfinite(images).all())
                         else "lower lr or check the data")
                raise FloatingPointError(f"loss became {loss.item()} at batch {step} of epoch {epoch}: {cause}")
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
        if seen == 0:
            raise ValueError(f"train_loader yielded no batches in epoch {epoch} although its length is "
                             f"{steps_per_epoch}: check the dataset")
        val_dice = float("nan")
        if val_loader is not None:
            dice = evaluate(model, val_loader, device, output_fn)["dice"]
            if dice.size == 0:
                raise ValueError("val_loader yielded no images to score: pass val_loader=None to train without "
                                 "validation (then no best.pt is written)")
            val_dice = float(dice.mean())
        history.epoch.append(epoch)
        history.train_loss.append(running / seen)
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
            save_checkpoint(last, model=model.state_dict(), optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), scaler=scaler.state_dict(), epoch=epoch,
                            max_epochs=max_epochs, config=config, history=history.to_dict(),
                            random_state=random_state(train_loader))
    bar.close()
    return history
