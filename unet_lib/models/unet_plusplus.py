"""UNet++ (Zhou, Rahman Siddiquee, Tajbakhsh & Liang, DLMIA 2018), chapter 05.

UNet++ replaces U-Net's plain skip connections by *nested, dense skip pathways*:
node ``X^{i,j}`` (``i`` = down-sampling level, ``j`` = position along the skip
pathway) is a two-conv unit ``H`` applied to the concatenation of every earlier
node of its row and the up-sampled node below-left of it (the paper's eq. 1)::

    x^{i,j} = H(x^{i-1,j} pooled)                                   if j = 0
    x^{i,j} = H([x^{i,0}, ..., x^{i,j-1}, U(x^{i+1,j-1})])          if j > 0

The top row ``X^{0,1} .. X^{0,4}`` ends in full-resolution maps; *deep supervision*
puts a 1x1 head on each of them and trains them all. Head ``L`` only needs the
nodes with ``i + j <= L``, so at inference the network can be *pruned* to UNet++
L1..L4: smaller and faster, trading accuracy for speed (the paper's Fig. 1c and 4).

``UNetPlusPlus(1, 1, norm=None)`` is the network of the authors' reference code
(``Nest_Net`` in MrGiovanni/UNetPlusPlus): 9,041,601 parameters; the U-Net built the
same way (:func:`unet_baseline`) has 7,759,521. (The reference code uses ELU and
dropout; neither has parameters, so the counts agree.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .blocks import DoubleConv, Norm, Up, UpConv, check_batch_norm, check_input, check_positive_ints, match_size
from .unet import UNet

__all__ = ["UNetPlusPlus", "Node", "nested_nodes", "unet_baseline", "MAX_DEPTH"]

MAX_DEPTH = 4  # four down-sampling steps: X^{0,0} .. X^{4,0}, heads X^{0,1} .. X^{0,4}


@dataclass(frozen=True)
class Node:
    """One node ``X^{i,j}`` of the nested grid and where its inputs come from.

    Attributes:
        i: down-sampling level (0 = full resolution).
        j: position along the skip pathway (0 = the encoder, the backbone).
        skips: the same-row nodes ``(i, 0) .. (i, j-1)`` that are concatenated in (dense skips).
        below: ``(i+1, j-1)``, the node that is up-sampled and concatenated in (``None`` for ``j = 0``).
        above: ``(i-1, 0)``, the node that is max-pooled into an encoder node (``None`` unless ``j = 0, i > 0``).
    """

    i: int
    j: int
    skips: tuple[tuple[int, int], ...]
    below: tuple[int, int] | None
    above: tuple[int, int] | None

    @property
    def name(self) -> str:
        """The tensor's name in :meth:`UNetPlusPlus.forward`, e.g. ``"x0_1"``."""
        return f"x{self.i}_{self.j}"

    @property
    def level(self) -> int:
        """The smallest pruned depth L that computes this node (``i + j``; encoder nodes count by ``i``)."""
        return max(1, self.i + self.j)

    @property
    def inputs(self) -> tuple[tuple[int, int], ...]:
        """Every node this one reads: pooled ``above``, or the ``skips`` and the up-sampled ``below``."""
        if self.j == 0:
            return (self.above,) if self.above is not None else ()
        return self.skips + (self.below,)


def nested_nodes(depth: int = MAX_DEPTH) -> list[Node]:
    """The nodes of UNet++ L``depth`` in the order :meth:`UNetPlusPlus.forward` computes them.

    Node ``X^{i,j}`` exists when ``i + j <= depth``; column by column of the paper's figure
    (``X^{1,0}``, then the anti-diagonal that ends in ``X^{0,1}``, ...), so every input is
    computed before it is read.

    Args:
        depth: 1..4 (the pruned network UNet++ L1..L4).

    Returns:
        A list of :class:`Node`, ``(depth + 1)(depth + 2) / 2`` of them (15 for L4).
    """
    _check_depth(depth)
    nodes = [Node(0, 0, (), None, None)]
    for d in range(1, depth + 1):              # the diagonal that ends in head X^{0,d}
        nodes.append(Node(d, 0, (), None, (d - 1, 0)))
        for j in range(1, d + 1):
            i = d - j
            nodes.append(Node(i, j, tuple((i, k) for k in range(j)), (i + 1, j - 1), None))
    return nodes


def _check_depth(depth: int) -> int:
    if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be an integer 1..{MAX_DEPTH} (UNet++ L1..L4), got {depth!r}")
    return depth


def _widths(features: int | Sequence[int], depth: int) -> tuple[int, ...]:
    if isinstance(features, int):
        widths = tuple(features * 2 ** i for i in range(MAX_DEPTH + 1))
    else:
        widths = tuple(int(f) for f in features)
    if len(widths) < depth + 1 or any(f < 1 for f in widths):
        raise ValueError(f"features must give {depth + 1} positive widths (one per level 0..{depth}), e.g. "
                         f"(32, 64, 128, 256, 512) or an int f for (f, 2f, 4f, 8f, 16f); got {features!r}")
    return widths[:depth + 1]


class UNetPlusPlus(nn.Module):
    """UNet++: U-Net with nested, dense skip pathways, deep supervision and pruning.

    Args:
        in_channels: image channels (3 for RGB endoscopy, 1 in the paper's setting).
        num_classes: output channels (1 with a sigmoid for binary masks).
        features: width of each level ``0..4`` (the paper: 32, 64, 128, 256, 512), or an int ``f``
            for ``(f, 2f, 4f, 8f, 16f)``.
        deep_supervision: put a 1x1 head on every top node ``X^{0,1}..X^{0,depth}`` and return the
            list of their logits (shallowest first); otherwise one head on ``X^{0,depth}``.
        norm: ``"batch"`` (default), ``"instance"`` or ``None`` (the paper's reference code has none).
        up: ``"transpose"`` (2x2 transposed conv to the target level's width, the paper) or ``"bilinear"``.
        depth: how many levels are built, 1..4: ``depth=L`` builds UNet++ L\\ :sup:`L` from scratch
            (nodes with ``i + j <= L``). Use :meth:`prune` to cut a trained network instead.

    Shape:
        ``(B, in_channels, H, W) -> (B, num_classes, H, W)`` logits, or a list of ``depth`` such
        tensors with deep supervision. Any ``H, W >= 2**depth`` works (odd sizes are zero-padded
        after up-sampling, as in :class:`~unet_lib.models.UNet`).

    Example:
        >>> from unet_lib.models import count_parameters
        >>> count_parameters(UNetPlusPlus(1, 1, norm=None))  # the paper's setting
        9041601
        >>> net = UNetPlusPlus(3, 1, features=8, deep_supervision=True)
        >>> [o.shape[-1] for o in net(torch.zeros(2, 3, 37, 37))]
        [37, 37, 37, 37]
        >>> net.prune(2)(torch.zeros(2, 3, 37, 37)).shape  # UNet++ L2: nodes with i + j <= 2 only
        torch.Size([2, 1, 37, 37])

    The modules carry the paper's names: ``conv{i}_{j}`` is the unit ``H`` of node ``X^{i,j}``,
    ``up{i}_{j}`` up-samples ``X^{i+1,j-1}`` for it, ``head{L}`` is the 1x1 conv on ``X^{0,L}``.
    Chapter 05 of the book.
    """

    def __init__(self, in_channels: int, num_classes: int, features: int | Sequence[int] = (32, 64, 128, 256, 512),
                 deep_supervision: bool = False, norm: Norm = "batch", up: Up = "transpose", depth: int = MAX_DEPTH):
        super().__init__()
        _check_depth(depth)
        check_positive_ints("UNetPlusPlus", in_channels=in_channels, num_classes=num_classes)
        f = _widths(features, depth)
        self.in_channels, self.num_classes, self.features = in_channels, num_classes, f
        self.deep_supervision, self.norm, self.up_mode, self.depth = bool(deep_supervision), norm, up, depth
        self.pool = nn.MaxPool2d(2)
        for node in nested_nodes(depth):
            i, j = node.i, node.j
            if j == 0:                                   # backbone: X^{i,0} = H(pool(X^{i-1,0}))
                in_ch = in_channels if i == 0 else f[i - 1]
            else:                                        # j same-row skips + the up-sampled node below
                in_ch = j * f[i] + f[i]
                self.add_module(f"up{i}_{j}", UpConv(f[i + 1], f[i], up))
            self.add_module(f"conv{i}_{j}", DoubleConv(in_ch, f[i], "same", norm))
        for level in (range(1, depth + 1) if self.deep_supervision else [depth]):
            self.add_module(f"head{level}", nn.Conv2d(f[0], num_classes, kernel_size=1))

    # -- structure -----------------------------------------------------------
    def nodes(self, depth: int | None = None) -> list[Node]:
        """The nodes this network computes (for ``depth`` if given), in computation order."""
        return nested_nodes(self.depth if depth is None else self._check_target(depth))

    @property
    def heads(self) -> list[int]:
        """The depths L whose head ``X^{0,L}`` exists (1..depth with deep supervision, else [depth])."""
        return [level for level in range(1, self.depth + 1) if hasattr(self, f"head{level}")]

    def _check_target(self, depth: int) -> int:
        _check_depth(depth)
        if depth > self.depth:
            raise ValueError(f"this network is UNet++ L{self.depth}: it has no head at depth {depth}")
        if depth not in self.heads:
            raise ValueError(f"no head on X^{{0,{depth}}}: pruning to L{depth} needs the heads that deep "
                             f"supervision trains; build the model with deep_supervision=True")
        return depth

    def prune(self, depth: int) -> "UNetPlusPlus":
        """UNet++ L``depth`` cut from this network: only the nodes with ``i + j <= depth`` and head ``depth``.

        The result is a *view*: it shares its modules (and so its parameters) with this network,
        so it needs no extra memory and gives exactly ``self(x)[depth - 1]`` (deep supervision on).
        It has fewer parameters and does fewer multiply-accumulates: that is the point of pruning.
        Use ``copy.deepcopy`` for an independent copy; its ``state_dict`` loads into
        ``UNetPlusPlus(..., depth=depth)`` built from scratch.

        Args:
            depth: 1..4; must be a head of this network (all of 1..4 need ``deep_supervision=True``).

        Returns:
            A :class:`UNetPlusPlus` with ``depth=depth`` and ``deep_supervision=False``.
        """
        self._check_target(depth)
        pruned = UNetPlusPlus.__new__(UNetPlusPlus)
        nn.Module.__init__(pruned)
        pruned.in_channels, pruned.num_classes = self.in_channels, self.num_classes
        pruned.features, pruned.norm, pruned.up_mode = self.features[:depth + 1], self.norm, self.up_mode
        pruned.deep_supervision, pruned.depth = False, depth
        pruned.pool = self.pool
        for node in nested_nodes(depth):
            if node.j > 0:
                pruned.add_module(f"up{node.i}_{node.j}", getattr(self, f"up{node.i}_{node.j}"))
            pruned.add_module(f"conv{node.i}_{node.j}", getattr(self, f"conv{node.i}_{node.j}"))
        pruned.add_module(f"head{depth}", getattr(self, f"head{depth}"))
        pruned.train(self.training)
        return pruned

    # -- forward -------------------------------------------------------------
    @staticmethod
    def _cat(*skips: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """The dense skip: ``[x^{i,0}, ..., x^{i,j-1}, U(x^{i+1,j-1})]`` (odd sizes: pad the up-sampled map)."""
        return torch.cat([*skips, match_size(up, skips[0])], dim=1)

    def forward(self, x: torch.Tensor, depth: int | None = None) -> torch.Tensor | list[torch.Tensor]:
        """Logits of head ``depth`` (computing only the nodes it needs), or of every head.

        Args:
            x: ``(B, in_channels, H, W)`` images.
            depth: 1..4 to run the pruned network UNet++ L``depth`` (needs that head); ``None``:
                the whole network.

        Returns:
            ``depth`` given, or no deep supervision: logits ``(B, num_classes, H, W)``.
            Deep supervision and ``depth=None``: the list of the heads' logits, X^{0,1} first.
        """
        L = self.depth if depth is None else self._check_target(depth)
        check_input(x, self.in_channels, model=f"UNet++ L{L}", min_size=2 ** L, reason=f"{L} 2x2 poolings",
                    dtype=self.conv0_0[0][0].weight.dtype)
        check_batch_norm(self, x, L, model=f"UNet++ L{L}")
        # shapes below for f = 32..512, 96x96
        x0_0 = self.conv0_0(x)                                       # (B, 32, H, W)
        x1_0 = self.conv1_0(self.pool(x0_0))                         # (B, 64, H/2, W/2)
        x0_1 = self.conv0_1(self._cat(x0_0, up=self.up0_1(x1_0)))    # (B, 32, H, W)       head L1
        top = [x0_1]
        if L >= 2:
            x2_0 = self.conv2_0(self.pool(x1_0))                                   # (B, 128, H/4, W/4)
            x1_1 = self.conv1_1(self._cat(x1_0, up=self.up1_1(x2_0)))              # (B, 64, H/2, W/2)
            x0_2 = self.conv0_2(self._cat(x0_0, x0_1, up=self.up0_2(x1_1)))        # (B, 32, H, W)   head L2
            top.append(x0_2)
        if L >= 3:
            x3_0 = self.conv3_0(self.pool(x2_0))                                   # (B, 256, H/8, W/8)
            x2_1 = self.conv2_1(self._cat(x2_0, up=self.up2_1(x3_0)))              # (B, 128, H/4, W/4)
            x1_2 = self.conv1_2(self._cat(x1_0, x1_1, up=self.up1_2(x2_1)))        # (B, 64, H/2, W/2)
            x0_3 = self.conv0_3(self._cat(x0_0, x0_1, x0_2, up=self.up0_3(x1_2)))  # (B, 32, H, W)   head L3
            top.append(x0_3)
        if L >= 4:
            x4_0 = self.conv4_0(self.pool(x3_0))                                   # (B, 512, H/16, W/16)
            x3_1 = self.conv3_1(self._cat(x3_0, up=self.up3_1(x4_0)))              # (B, 256, H/8, W/8)
            x2_2 = self.conv2_2(self._cat(x2_0, x2_1, up=self.up2_2(x3_1)))        # (B, 128, H/4, W/4)
            x1_3 = self.conv1_3(self._cat(x1_0, x1_1, x1_2, up=self.up1_3(x2_2)))  # (B, 64, H/2, W/2)
            x0_4 = self.conv0_4(self._cat(x0_0, x0_1, x0_2, x0_3, up=self.up0_4(x1_3)))  # (B, 32, H, W) head L4
            top.append(x0_4)
        if depth is None and self.deep_supervision:
            return [getattr(self, f"head{level}")(x0_j) for level, x0_j in enumerate(top, start=1)]
        return getattr(self, f"head{L}")(top[L - 1])                 # (B, num_classes, H, W) logits

    def extra_repr(self) -> str:
        return (f"L{self.depth}, features={self.features}, deep_supervision={self.deep_supervision}, "
                f"heads={self.heads}")


def unet_baseline(in_channels: int, num_classes: int, features: int | Sequence[int] = (32, 64, 128, 256, 512),
                  norm: Norm = "batch", up: Up = "transpose") -> UNet:
    """The U-Net built the same way as :class:`UNetPlusPlus` (same widths, units, up-sampling, head).

    ``unet_baseline(1, 1, norm=None)`` has 7,759,521 parameters, the ``U_Net`` of the UNet++
    authors' reference code. It is :class:`~unet_lib.models.UNet` with ``padding="same"``,
    whose widths double from level to level, so ``features`` must do so too.

    Args:
        in_channels, num_classes, norm, up: as for :class:`UNetPlusPlus`.
        features: ``(f, 2f, 4f, 8f, 16f)`` or the int ``f``.

    Returns:
        A :class:`~unet_lib.models.UNet`.
    """
    f = _widths(features, MAX_DEPTH)
    if any(f[k] != f[0] * 2 ** k for k in range(len(f))):
        raise ValueError(f"the U-Net baseline needs doubling widths (f, 2f, 4f, 8f, 16f), got {f}")
    return UNet(in_channels, num_classes, features=f[0], padding="same", norm=norm, up=up)
