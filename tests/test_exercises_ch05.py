"""The chapter 05 checkers accept the reference answers and reject typical mistakes."""
import torch
from torch import nn

from unet_lib import losses
from unet_lib.exercises import ch05
from unet_lib.measure import count_macs
from unet_lib.models.unet_plusplus import nested_nodes


def not_implemented(*args):
    raise NotImplementedError


# -- exercise 1: input channels of X^{i,j} ------------------------------------------------------
def test_node_in_channels_checker():
    def right(i, j, features, in_channels):
        if j == 0:
            return in_channels if i == 0 else features[i - 1]
        return (j + 1) * features[i]

    def up_keeps_its_width(i, j, features, in_channels):  # forgets that the up-conv halves the channels
        return right(i, j, features, in_channels) if j == 0 else j * features[i] + features[i + 1]

    def only_previous_node(i, j, features, in_channels):  # U-Net thinking: one skip only
        return right(i, j, features, in_channels) if j == 0 else 2 * features[i]

    assert ch05.check_node_in_channels(right)
    for wrong in (up_keeps_its_width, only_previous_node, not_implemented, lambda i, j, f, c: (j + 1) * f[i]):
        fb = ch05.check_node_in_channels(wrong)
        assert not fb and fb.message


# -- exercise 2: nodes of the pruned network ------------------------------------------------------
def test_pruned_nodes_checker():
    assert ch05.check_pruned_nodes(lambda L: [(n.i, n.j) for n in nested_nodes(L)])
    assert ch05.check_pruned_nodes(lambda L: {(i, j) for i in range(5) for j in range(5) if i + j <= L})
    assert not ch05.check_pruned_nodes(lambda L: {(i, j) for i in range(5) for j in range(5) if i + j < L})
    assert not ch05.check_pruned_nodes(lambda L: {(i, j) for i in range(L + 1) for j in range(L + 1)})
    assert not ch05.check_pruned_nodes(lambda L: [(0, j) for j in range(L + 1)])
    assert not ch05.check_pruned_nodes(not_implemented)


# -- exercise 3: deep supervision loss ------------------------------------------------------------
def test_deep_supervision_loss_checker():
    assert ch05.check_deep_supervision_loss(lambda outs, t, fn: losses.deep_supervision_loss(outs, t, fn))
    assert ch05.check_deep_supervision_loss(lambda outs, t, fn: torch.stack([fn(o, t) for o in outs]).mean())
    wrong = [
        lambda outs, t, fn: fn(torch.stack(outs).mean(0), t),                  # loss of the averaged logits
        lambda outs, t, fn: sum(fn(o, t) for o in outs),                        # sum, not mean
        lambda outs, t, fn: fn(outs[-1], t),                                    # only the last head
        lambda outs, t, fn: torch.tensor(sum(fn(o, t).item() for o in outs) / len(outs)),  # no gradient
        lambda outs, t, fn: sum(fn(o, t) for o in outs) / 4,                    # assumes four heads
        not_implemented,
    ]
    for fn in wrong:
        fb = ch05.check_deep_supervision_loss(fn)
        assert not fb and fb.message


# -- exercise 4: MAC counter ----------------------------------------------------------------------
def test_count_macs_checker():
    assert ch05.check_count_macs(lambda model, size: count_macs(model, size))

    def conv_only(model, size):  # forgets ConvTranspose2d
        total = 0

        def hook(m, i, o):
            nonlocal total
            total += o.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1] // size[0]

        hs = [m.register_forward_hook(hook) for m in model.modules() if type(m) is nn.Conv2d]
        model(torch.zeros(size))
        for h in hs:
            h.remove()
        return total

    def transposed_like_conv(model, size):  # counts a transposed conv as output.numel() * in * kh * kw
        total = 0

        def hook(m, i, o):
            nonlocal total
            total += o.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1] // size[0]

        hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        model(torch.zeros(size))
        for h in hs:
            h.remove()
        return total

    def per_batch(model, size):
        return count_macs(model, size, per_image=False)

    for wrong in (conv_only, transposed_like_conv, per_batch, not_implemented):
        fb = ch05.check_count_macs(wrong)
        assert not fb and fb.message


def test_wrong_types_are_named():
    fb = ch05.check_deep_supervision_loss(lambda outs, t, fn: [fn(o, t) for o in outs])
    assert not fb and "returned a list [a tensor (" in fb.message and "scalar tensor" in fb.message
    fb = ch05.check_pruned_nodes(lambda depth: depth)
    assert not fb and "returned an int (1)" in fb.message and "(i, j) pairs" in fb.message
    fb = ch05.check_count_macs(lambda model, size: float(count_macs(model, size)) + 0.5)
    assert not fb and "whole number" in fb.message
