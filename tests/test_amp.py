"""Mixed precision, rehearsed on the CPU: one real training step of every full-profile setup under autocast.

On CUDA ``train.fit`` trains with autocast (float16) by default. These tests run the same step on the
CPU under ``torch.autocast("cpu", dtype=torch.bfloat16)`` and, where the CPU has native float16
kernels, float16, so that an autocast-unsafe op, a float16 overflow in a sum, or a loss that turns
non-finite (the 2015 network has no normalisation) fails here and not in a student's Colab.

The setups are the chapters' own (``benchmarks.full_profile_cost.full_setups``: networks, widths,
deep supervision, CGM, losses of the ``full`` profile). The widths are the full profile's; only the
images are small (the smallest valid sizes: 64 px, 176 px where five-scale MS-SSIM needs it, a 188-px
tile for the valid-padding 2015 network) and the batch is 2, so that each step takes about a second on
two cores. Tolerances: the loss of the first step matches float32 within 2 % in bfloat16 (8 significant
bits) and 0.5 % in float16 (11 bits); the gradients point the same way (cosine > 0.8).
"""
from __future__ import annotations

import copy
import os

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.full_profile_cost import full_setups
from unet_lib import losses
from unet_lib.train import fit

LOSS_RTOL = {torch.bfloat16: 2e-2, torch.float16: 5e-3}
MIN_GRAD_COSINE = 0.8


def _small_size(setup) -> int:
    """The smallest image size at which the setup runs as in the full profile."""
    if setup.out_size != setup.size:               # valid padding: a 188-px tile gives a 4-px output
        return 188
    if getattr(setup.loss_fn, "keywords", {}).get("seg_loss") is losses.hybrid_loss:
        return 176                                 # five MS-SSIM scales need 176 px (11 px at 1/16)
    return 64                                      # four 2x2 poolings leave 4 px


def _distinct_setups():
    seen, out = set(), []
    for s in full_setups():
        if s.name not in seen:                     # chapters 05 and 07 share UNet++ DS, 02 and 07 FCN-8s
            seen.add(s.name)
            out.append(s)
    return out


SETUPS = _distinct_setups()


def _float16_reason() -> str | None:
    """Why float16 autocast is skipped on this CPU, or None to run it."""
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3))
    except RuntimeError as e:
        return f"this torch has no float16 CPU autocast ({e})"
    if os.environ.get("UNET_BOOK_FP16_CPU") == "1" or torch.cpu._is_amx_fp16_supported():
        return None
    return ("this CPU has no native float16 matrix units (AMX-FP16): float16 convolutions are emulated and one "
            "full-width step takes about a minute; set UNET_BOOK_FP16_CPU=1 to run them anyway (the float16 loss "
            "path is checked at full image size by test_losses_are_safe_in_float16)")


def _one_step(model, batch, setup, amp_dtype):
    """One real training step through ``train.fit`` (Adam, one-cycle, autocast as on CUDA); returns the loss."""
    torch.manual_seed(1)                           # the same dropout masks in every precision
    loader = DataLoader(TensorDataset(*batch), batch_size=len(batch[0]))
    history = fit(model, loader, loss_fn=setup.loss_fn, max_epochs=1, lr=1e-3, device="cpu",
                  amp=amp_dtype is not None, amp_dtype=amp_dtype, progress=False)
    return history.train_loss[0]


def _grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("setup", SETUPS, ids=[f"{s.chapter}-{s.name}" for s in SETUPS])
def test_training_step_under_autocast(setup, amp_dtype):
    if amp_dtype is torch.float16 and (reason := _float16_reason()):
        pytest.skip(reason)
    batch = setup.make_batch(batch=2, size=_small_size(setup))
    torch.manual_seed(0)
    reference = setup.build()
    mixed = copy.deepcopy(reference)
    loss32 = _one_step(reference, batch, setup, None)
    loss = _one_step(mixed, batch, setup, amp_dtype)
    g32, g = _grads(reference), _grads(mixed)
    assert torch.isfinite(torch.tensor(loss)), f"{setup.name}: loss {loss} under {amp_dtype}"
    assert torch.isfinite(g).all(), f"{setup.name}: {int((~torch.isfinite(g)).sum())} non-finite gradients"
    assert all(torch.isfinite(p).all() for p in mixed.parameters()), f"{setup.name}: weights non-finite after Adam"
    assert loss == pytest.approx(loss32, rel=LOSS_RTOL[amp_dtype]), f"{setup.name}: {amp_dtype} vs float32"
    cosine = torch.nn.functional.cosine_similarity(g, g32, dim=0).item()
    assert cosine > MIN_GRAD_COSINE, f"{setup.name}: gradient cosine {cosine:.3f} to float32"


def test_losses_are_safe_in_float16():
    # full image size (256 px: a float16 sum over 65,536 pixels overflows at 65,504), float16 logits as a
    # CUDA network returns them under autocast, every loss the chapters train with
    reason = _float16_reason()
    if reason and reason.startswith("this torch"):
        pytest.skip(reason)
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(4, 1, 256, 256, generator=g) > 0.2).float()
    classes, weight = mask[:, 0].long(), 1 + 9 * torch.rand(4, 256, 256, generator=g)
    has_object = torch.tensor([1.0, 1.0, 0.0, 1.0])
    one = lambda: (8 * torch.randn(4, 1, 256, 256, generator=g)).half().requires_grad_()  # noqa: E731
    cases = {
        "bce_dice": (losses.bce_dice_loss, one(), mask),
        "weighted_cross_entropy": (losses.weighted_cross_entropy,
                                   (8 * torch.randn(4, 2, 256, 256, generator=g)).half().requires_grad_(), classes,
                                   weight),
        "hybrid, 5 heads + CGM": (losses.unet3plus_loss, ([one() for _ in range(5)],
                                                          torch.randn(4, 2, generator=g).half().requires_grad_()),
                                  mask, has_object),
    }
    for name, (fn, logits, *rest) in cases.items():
        with torch.autocast("cpu", dtype=torch.float16):
            value = fn(logits, *rest)
        value.backward()
        leaves = logits[0] + [logits[1]] if isinstance(logits, tuple) else [logits]
        reference = fn(_to_float(logits), *rest)
        assert torch.isfinite(value), name
        assert all(torch.isfinite(t.grad).all() for t in leaves), name
        assert value.item() == pytest.approx(reference.item(), rel=1e-3), name


def _to_float(logits):
    if isinstance(logits, tuple):
        return [t.detach().float() for t in logits[0]], logits[1].detach().float()
    return logits.detach().float()


def _dtype_seen(amp, amp_dtype):
    seen = []

    def loss_fn(logits, target):
        seen.append(logits.dtype)
        return losses.bce_loss(logits, target)

    model = torch.nn.Conv2d(3, 1, 3, padding=1)
    loader = DataLoader(TensorDataset(torch.rand(2, 3, 8, 8), torch.ones(2, 1, 8, 8)), batch_size=2)
    fit(model, loader, loss_fn=loss_fn, max_epochs=1, device="cpu", amp=amp, amp_dtype=amp_dtype, progress=False)
    return seen[0]


def test_fit_amp_dtype_default_and_choice():
    assert _dtype_seen(None, None) == torch.float32          # CPU: autocast off by default
    assert _dtype_seen(True, None) == torch.bfloat16         # CPU autocast: bfloat16 by default
    assert _dtype_seen(True, torch.bfloat16) == torch.bfloat16
    assert _dtype_seen(False, torch.bfloat16) == torch.float32
    if not (_float16_reason() or "").startswith("this torch"):
        assert _dtype_seen(True, torch.float16) == torch.float16
    with pytest.raises(ValueError, match="amp_dtype"):
        _dtype_seen(True, torch.float32)
