"""Checkers for the exercises of chapter 05 (UNet++: nested skips, deep supervision, pruning).

Usage::

    from unet_lib.exercises import ch05
    ch05.check_node_in_channels(my_node_in_channels)
    ch05.check_pruned_nodes(my_pruned_nodes)
    ch05.check_deep_supervision_loss(my_deep_supervision_loss)
    ch05.check_count_macs(my_count_macs)

Each checker calls the student's function on several cases, compares it with the
library's reference, and returns a :class:`~unet_lib.exercises.Feedback`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..losses import bce_dice_loss, bce_loss, soft_dice_loss
from ..measure import count_macs
from ..models.unet_plusplus import UNetPlusPlus, nested_nodes, unet_baseline
from ._core import (
    Answer,
    Feedback,
    Mismatch,
    checker,
    close,
    correct,
    first_mismatch,
    integer,
    not_yet,
    scalar_tensor,
    whole_number,
)

__all__ = ["check_node_in_channels", "check_pruned_nodes", "check_deep_supervision_loss", "check_count_macs"]


def _actual_in_channels(net: UNetPlusPlus, i: int, j: int) -> int:
    """Input channels of node X^{i,j}, read from the first conv of the built network."""
    return getattr(net, f"conv{i}_{j}")[0][0].in_channels


def _node_hint(m: Mismatch) -> str:
    i, j, features, _ = m.args
    if j == 0:
        return (f"X^{{{i},0}} is an encoder node: it reads the pooled X^{{{i - 1},0}} "
                f"(or the image when i = 0), so {m.want} channels, not {m.got!r}.")
    return (f"X^{{{i},{j}}} with features={features} reads {j} same-row maps "
            f"X^{{{i},0..{j - 1}}} and the up-sampled X^{{{i + 1},{j - 1}}}, "
            f"which the 2x2 transposed conv brings to features[{i}] channels: {m.want}, "
            f"not {m.got!r}.")


@checker
def check_node_in_channels(fn: Callable[[int, int, Sequence[int], int], int]) -> Feedback:
    """Exercise 1: ``fn(i, j, features, in_channels)`` returns the input channels of node ``X^{i,j}``.

    Checked on every node of three UNet++ networks against the channels of their first conv.
    """
    cases, expected = {}, []
    for features, in_channels in (((32, 64, 128, 256, 512), 1), ((8, 16, 32, 64, 128), 3), ((5, 7, 11, 13, 17), 2)):
        net = UNetPlusPlus(in_channels, 1, features=features, norm=None)
        for node in nested_nodes(4):
            cases[f"X^{{{node.i},{node.j}}} with features={features}, in_channels={in_channels}"] = (
                node.i, node.j, tuple(features), in_channels)
            expected.append(_actual_in_channels(net, node.i, node.j))
    mismatch = first_mismatch(fn, cases, expected, compare=integer(), describe=_node_hint)
    if mismatch is not None:
        return mismatch
    return correct("every node's input width matches the built networks: X^{i,j} reads (j + 1) * features[i] "
                   "channels, j skips plus one up-sampled map.")


def _read_nodes(got) -> set[tuple[int, int]]:
    if isinstance(got, (str, bytes)):
        raise TypeError
    nodes = set()
    for node in got:
        if isinstance(node, (str, bytes)):
            raise TypeError
        i, j = node
        nodes.add((whole_number(i), whole_number(j)))
    return nodes


_NODES = Answer("a collection of (i, j) pairs, e.g. [(0, 0), (1, 0), (0, 1)]", _read_nodes)


def _pruned_hint(m: Mismatch) -> str:
    depth = m.args[0]
    missing, extra = sorted(m.want - m.got), sorted(m.got - m.want)
    if missing:
        return (f"for depth {depth} you returned {len(m.got)} nodes but left out {missing}: follow the arrows back "
                f"from X^{{0,{depth}}}; every node it reads, directly or not, must be computed (hint: the condition "
                "is on i + j).")
    return (f"for depth {depth} you included {extra}, which head X^{{0,{depth}}} never reads: pruning keeps exactly "
            "the nodes with i + j <= depth.")


@checker
def check_pruned_nodes(fn: Callable[[int], object]) -> Feedback:
    """Exercise 2: ``fn(depth)`` returns the nodes ``(i, j)`` that head ``X^{0,depth}`` needs (any iterable)."""
    cases = {f"depth {depth}": (depth,) for depth in (1, 2, 3, 4)}
    mismatch = first_mismatch(fn, cases, lambda depth: {(n.i, n.j) for n in nested_nodes(depth)}, compare=_NODES,
                              describe=_pruned_hint)
    if mismatch is not None:
        return mismatch
    return correct("head X^{0,L} needs exactly the nodes with i + j <= L: 3, 6, 10 and 15 of them for L1..L4.")


def _deep_supervision_cases() -> dict[str, tuple[list[torch.Tensor], torch.Tensor, Callable]]:
    g = torch.Generator().manual_seed(5)
    cases = {}
    for heads, loss_fn in ((4, bce_dice_loss), (2, soft_dice_loss), (3, bce_loss)):
        outputs = [(torch.randn(2, 1, 8, 8, generator=g) * (k + 1)).requires_grad_() for k in range(heads)]
        target = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
        cases[f"{heads} heads and {loss_fn.__name__}"] = (outputs, target, loss_fn)
    return cases


def _deep_supervision_reference(outputs: list[torch.Tensor], target: torch.Tensor, loss_fn: Callable) -> float:
    with torch.no_grad():
        return float(sum(loss_fn(o, target) for o in outputs) / len(outputs))


def _deep_supervision_hint(m: Mismatch) -> str:
    outputs, target, loss_fn = m.args
    with torch.no_grad():
        of_mean = float(loss_fn(torch.stack(outputs).mean(0), target))
        total = float(sum(loss_fn(o, target) for o in outputs))
    if close(m.got, of_mean, 1e-6, 1e-5):
        return ("that is the loss of the *averaged* logits: the heads then share one signal. "
                "Compute loss_fn(head, target) for every head, then average those losses.")
    if close(m.got, total, 1e-6, 1e-5):
        return "that is the *sum* of the heads' losses: divide by the number of heads."
    return (f"with {m.name} the loss should be {m.want:.4f}, got {m.got:.4f}: "
            "average loss_fn(head, target) over the list of heads.")


@checker
def check_deep_supervision_loss(fn: Callable[[list[torch.Tensor], torch.Tensor, Callable], torch.Tensor]) -> Feedback:
    """Exercise 3: ``fn(outputs, target, loss_fn)``: the deep supervision loss of a list of heads' logits.

    It must apply ``loss_fn`` to every head separately and average (not average the logits first),
    keep the graph (so each head gets a gradient), and work for any number of heads.
    """
    cases = _deep_supervision_cases()
    answer = scalar_tensor(tol=1e-6, rel_tol=1e-5, what="one scalar tensor (the average of the heads' losses)")
    mismatch = first_mismatch(fn, cases, _deep_supervision_reference, compare=answer, describe=_deep_supervision_hint)
    if mismatch is not None:
        return mismatch
    for outputs, target, loss_fn in cases.values():   # the values are right: now the gradients
        for o in outputs:
            o.grad = None
        got = fn(outputs, target, loss_fn)
        answer.read(got)
        if not got.requires_grad:
            return not_yet("the loss has no gradient: do not call .item(), .detach() or use numpy inside.")
        got.reshape(()).backward()
        if any(o.grad is None or o.grad.abs().sum() == 0 for o in outputs):
            return not_yet("some heads get no gradient: every head's loss must enter the average.")
    return correct("each head gets its own loss and gradient, and the average keeps the scale of one loss.")


def _macs_hint(m: Mismatch) -> str:
    model, size = m.args
    if isinstance(model, nn.ConvTranspose2d):
        hint = ("a transposed conv multiplies every *input* value into out_channels * kh * kw outputs: "
                "inputs.numel() * out_channels * kh * kw.")
    elif size[0] > 1:
        hint = "count per image: divide the batch's MACs by the batch size."
    else:
        hint = ("a Conv2d costs output.numel() * in_channels * kh * kw (per image); register a forward "
                "hook on every Conv2d and ConvTranspose2d and add up what actually runs.")
    return f"for {m.name} expected {m.want:,} MACs, got {m.got!r}: {hint}"


@checker
def check_count_macs(fn: Callable[[nn.Module, tuple[int, int, int, int]], int]) -> Feedback:
    """Exercise 4: ``fn(model, input_size)`` counts the MACs of Conv2d and ConvTranspose2d layers per image.

    Checked against :func:`unet_lib.measure.count_macs` on single layers, a U-Net and
    pruned UNet++ networks (where only the modules that run may be counted).
    """
    torch.manual_seed(0)
    ds = UNetPlusPlus(3, 1, features=4, deep_supervision=True)
    cases = {
        "a 3x3 conv, 3 -> 8 channels, on 10x10": (nn.Conv2d(3, 8, 3, padding=1), (1, 3, 10, 10)),
        "a 2x2 stride-2 transposed conv, 8 -> 4 channels, on 5x5": (nn.ConvTranspose2d(8, 4, 2, stride=2),
                                                                    (1, 8, 5, 5)),
        "the same 3x3 conv on a batch of 2 (count per image)": (nn.Conv2d(3, 8, 3, padding=1), (2, 3, 10, 10)),
        "a U-Net with features 4 on 32x32": (unet_baseline(3, 1, features=4), (1, 3, 32, 32)),
        "UNet++ pruned to L2 (features 4, 32x32)": (ds.prune(2), (1, 3, 32, 32)),
        "UNet++ with deep supervision, all four heads (32x32)": (ds, (1, 3, 32, 32)),
    }
    mismatch = first_mismatch(fn, cases, count_macs, compare=integer(), describe=_macs_hint)
    if mismatch is not None:
        return mismatch
    return correct("your hook-based counter agrees with the library on convs, transposed convs, a U-Net "
                   "and pruned UNet++ networks.")
