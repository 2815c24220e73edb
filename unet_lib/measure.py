"""Measuring networks: parameters, convolutional layers, multiply-accumulates (MACs), latency.

Chapters 02-07 compare architectures by these numbers. Every function takes any
``nn.Module``; none of them knows the architectures of :mod:`unet_lib.models`
(which re-exports them), so this module only needs torch.

* :func:`count_parameters`: what a network stores (the 2015 U-Net: 31,030,658);
* :func:`count_conv_layers`: the paper's "23 convolutional layers";
* :func:`count_macs`: what one forward pass computes, counted on the layers that actually run;
* :func:`latency_ratios`: the forward time of several networks, relative to one of them;
* :func:`time_ratios`: the same for any steps (a training step with one loss or another).
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import torch
from torch import nn

__all__ = ["count_parameters", "count_conv_layers", "count_macs", "latency_ratios", "time_ratios"]


def count_parameters(model, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_conv_layers(model) -> int:
    """Number of convolutional layers (Conv2d and ConvTranspose2d), as the 2015 paper counts them."""
    return sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())


@torch.no_grad()
def count_macs(model: nn.Module, input_size: Sequence[int] | torch.Tensor, per_image: bool = True,
               **forward_kwargs) -> int:
    """Multiply-accumulates of the convolutions in one forward pass, counted with forward hooks.

    ``Conv2d``: every output value costs ``in_channels / groups * kh * kw`` MACs.
    ``ConvTranspose2d``: every *input* value is multiplied into ``out_channels / groups * kh * kw``
    outputs. Biases, norms, activations, pooling and concatenation are not counted (they are small).
    Only modules that actually run are counted, so a pruned forward counts fewer.

    Args:
        model: any network.
        input_size: ``(B, C, H, W)`` (a zero tensor is made on the model's device) or an input tensor.
        per_image: divide by the batch size.
        **forward_kwargs: passed to ``model(x, ...)``, e.g. ``depth=2``.

    Returns:
        The number of MACs (an int).
    """
    param = next(model.parameters(), None)
    x = input_size if torch.is_tensor(input_size) else torch.zeros(
        *input_size, device=param.device if param is not None else "cpu")
    total = 0

    def hook(module: nn.Module, inputs, output) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):
            total += inputs[0].numel() * (module.out_channels // module.groups) * k
        else:
            total += output.numel() * (module.in_channels // module.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    was_training = model.training
    try:
        model.eval()
        model(x, **forward_kwargs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total // x.shape[0] if per_image else total


def time_ratios(steps: dict[str, Callable[[], object]], device: torch.device | str = "cpu",
                baseline: str | None = None, repeats: int = 10, warmup: int = 2) -> dict[str, dict[str, float]]:
    """Median time of several steps (callables) measured in one interleaved run, on ``device``.

    The steps take turns (round-robin) so that a slow moment of a shared machine hits them all
    alike. On CUDA the device is synchronised before and after every call, so the time is the
    GPU's work and not only the launch of its kernels.

    Args:
        steps: name -> a callable doing the work once (e.g. a forward and backward pass).
        device: where the steps run (synchronised when it is a CUDA device).
        baseline: the name whose time is 1.0 (default: the last step).
        repeats: timed rounds; warmup: untimed rounds first.

    Returns:
        name -> ``{"seconds": median seconds per call, "ratio": seconds / baseline seconds}``.

    Used by :func:`latency_ratios` and chapter 06 (the step time of the hybrid loss).
    """
    if not steps:
        raise ValueError("give at least one step to time")
    baseline = baseline if baseline is not None else list(steps)[-1]
    if baseline not in steps:
        raise ValueError(f"baseline {baseline!r} is not one of {list(steps)}")
    cuda = torch.device(device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(warmup + repeats):
        for name, step in steps.items():
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(t) for name, t in times.items()}
    return {name: {"seconds": s, "ratio": s / med[baseline]} for name, s in med.items()}


@torch.no_grad()
def latency_ratios(models: dict[str, nn.Module], x: torch.Tensor, baseline: str | None = None,
                   repeats: int = 10, warmup: int = 2) -> dict[str, dict[str, float]]:
    """Median forward time of several models on the same input, measured in one interleaved run.

    The models take turns (round-robin) so that a slow moment of a shared machine hits them all
    alike; the ratio to the ``baseline`` is what to compare across machines, not the seconds.

    Args:
        models: name -> model (put in eval mode for the measurement).
        x: the input batch.
        baseline: the name whose time is 1.0 (default: the last model).
        repeats: timed rounds; warmup: untimed rounds first.

    Returns:
        name -> ``{"seconds": median seconds per forward, "ratio": seconds / baseline seconds}``.
    """
    if not models:
        raise ValueError("give at least one model to time")
    states = {name: m.training for name, m in models.items()}
    for m in models.values():
        m.eval()
    try:
        return time_ratios({name: (lambda m=m: m(x)) for name, m in models.items()}, x.device, baseline,
                           repeats, warmup)
    finally:
        for name, m in models.items():
            m.train(states[name])
