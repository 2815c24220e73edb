"""Tests of UNet++ (chapter 05): structure, parameter counts of the reference code, deep supervision, pruning."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from unet_lib import losses
from unet_lib.measure import count_macs, count_parameters
from unet_lib.models import UNet, UNetPlusPlus
from unet_lib.models.unet_plusplus import Node, nested_nodes, unet_baseline


def small(**kw) -> UNetPlusPlus:
    torch.manual_seed(0)
    kw.setdefault("features", 4)
    return UNetPlusPlus(3, 1, **kw)


# -- the paper's numbers ------------------------------------------------------------------------
def test_parameter_count_of_the_reference_nest_net():
    """MrGiovanni/UNetPlusPlus model.py, Nest_Net: 'Total params: 9,041,601'."""
    assert count_parameters(UNetPlusPlus(1, 1, norm=None)) == 9_041_601


def test_parameter_count_of_the_reference_u_net():
    """MrGiovanni/UNetPlusPlus model.py, U_Net: 'Total params: 7,759,521'."""
    assert count_parameters(unet_baseline(1, 1, norm=None)) == 7_759_521
    assert count_parameters(UNet(1, 1, features=32, norm=None)) == 7_759_521


def test_parameter_count_by_hand():
    """Sum the paper's units by hand: 3x3 convs (+bias), 2x2 transposed convs, 1x1 heads."""
    f, c_in = [32, 64, 128, 256, 512], 1

    def unit(cin, cout):  # two 3x3 conv + bias
        return (9 * cin * cout + cout) + (9 * cout * cout + cout)

    total = 0
    for i in range(5):
        total += unit(c_in if i == 0 else f[i - 1], f[i])                 # X^{i,0}
        for j in range(1, 5 - i):
            total += 4 * f[i + 1] * f[i] + f[i]                          # U(X^{i+1,j-1}) -> f[i] channels
            total += unit((j + 1) * f[i], f[i])                          # X^{i,j} on j skips + the up-sampled
    total += f[0] + 1                                                     # the 1x1 head with sigmoid
    assert total == 9_041_601
    # deep supervision adds three more heads of f[0] + 1 parameters each
    assert count_parameters(UNetPlusPlus(1, 1, norm=None, deep_supervision=True)) == total + 3 * 33


def test_modules_carry_the_papers_names():
    net = UNetPlusPlus(1, 1, features=4)
    names = {n for n, _ in net.named_children()}
    expected = {f"conv{n.i}_{n.j}" for n in nested_nodes(4)} | {f"up{n.i}_{n.j}" for n in nested_nodes(4) if n.j}
    assert expected | {"pool", "head4"} == names
    assert len(nested_nodes(4)) == 15 and len([n for n in nested_nodes(4) if n.j]) == 10
    # X^{i,j} reads j same-row maps and one up-sampled map, each features[i] wide
    assert net.conv0_4[0][0].in_channels == 5 * 4 and net.conv1_3[0][0].in_channels == 4 * 8
    assert net.up2_2.up.in_channels == 32 and net.up2_2.up.out_channels == 16


def test_nodes_list_the_papers_inputs():
    nodes = {(n.i, n.j): n for n in nested_nodes(4)}
    assert nodes[(0, 3)].inputs == ((0, 0), (0, 1), (0, 2), (1, 2))
    assert nodes[(3, 0)].inputs == ((2, 0),) and nodes[(0, 0)].inputs == ()
    assert nodes[(2, 2)] == Node(2, 2, ((2, 0), (2, 1)), (3, 1), None)
    for depth in range(1, 5):
        got = {(n.i, n.j) for n in nested_nodes(depth)}
        assert got == {(i, j) for i in range(5) for j in range(5) if i + j <= depth}
    seen: set = set()
    for n in nested_nodes(4):            # computation order: every input before its reader
        assert set(n.inputs) <= seen
        seen.add((n.i, n.j))


def test_forward_computes_exactly_the_listed_nodes():
    """The node list (drawn in the notebook) and the unrolled forward cannot drift apart."""
    net = small(deep_supervision=True)
    for depth in range(1, 5):
        called: list[str] = []
        handles = [getattr(net, f"conv{n.i}_{n.j}").register_forward_hook(
            lambda m, i, o, name=f"x{n.i}_{n.j}": called.append(name)) for n in nested_nodes(4)]
        net(torch.zeros(1, 3, 32, 32), depth=depth)
        for h in handles:
            h.remove()
        assert called == [n.name for n in net.nodes(depth)]


# -- shapes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(16, 16), (25, 25), (33, 47), (96, 96), (17, 31)])
def test_output_shape_for_odd_sizes(size):
    net = small()
    out = net(torch.zeros(2, 3, *size))
    assert out.shape == (2, 1, *size)


@pytest.mark.parametrize("up", ["transpose", "bilinear"])
@pytest.mark.parametrize("norm", ["batch", "instance", None])
def test_options(norm, up):
    net = small(norm=norm, up=up, deep_supervision=True)
    outs = net(torch.randn(2, 3, 37, 35))
    assert [o.shape for o in outs] == [torch.Size([2, 1, 37, 35])] * 4
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert has_bn == (norm == "batch")


def test_list_of_four_outputs_only_with_deep_supervision():
    x = torch.randn(2, 3, 32, 32)
    plain = small()
    assert isinstance(plain(x), torch.Tensor) and plain.heads == [4]
    ds = small(deep_supervision=True)
    outs = ds(x)
    assert isinstance(outs, list) and len(outs) == 4 and ds.heads == [1, 2, 3, 4]
    assert all(o.shape == (2, 1, 32, 32) for o in outs)
    assert not torch.allclose(outs[0], outs[3])


def test_int_features_and_narrow_depth():
    net = UNetPlusPlus(3, 2, features=8, depth=2)
    assert net.features == (8, 16, 32) and net.heads == [2]
    assert net(torch.zeros(1, 3, 8, 8)).shape == (1, 2, 8, 8)


def test_bad_input_says_how_to_fix_it():
    net = small()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="at least 16"):
        net(torch.zeros(1, 3, 12, 32))
    with pytest.raises(ValueError, match="deep_supervision=True"):
        net.prune(2)
    with pytest.raises(ValueError, match="1..4"):
        small(deep_supervision=True).prune(5)
    with pytest.raises(ValueError, match="widths"):
        UNetPlusPlus(3, 1, features=(8, 16, 32))
    with pytest.raises(ValueError, match="doubling"):
        unet_baseline(3, 1, features=(8, 16, 24, 32, 40))


# -- deep supervision -------------------------------------------------------------------------------
def test_deep_supervision_loss_is_the_mean_of_the_heads_losses():
    net = small(deep_supervision=True)
    x, y = torch.randn(2, 3, 16, 16), (torch.rand(2, 1, 16, 16) > 0.5).float()
    outs = net(x)
    loss = losses.deep_supervision_loss(outs, y, losses.bce_dice_loss)
    by_hand = sum(losses.bce_dice_loss(o, y) for o in outs) / 4
    assert torch.allclose(loss, by_hand)
    assert not torch.allclose(loss, losses.bce_dice_loss(torch.stack(outs).mean(0), y))
    loss.backward()                       # every head gets a gradient
    assert all(getattr(net, f"head{L}").weight.grad.abs().sum() > 0 for L in range(1, 5))


# -- pruning ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_pruned_network_equals_head_of_the_full_network(depth):
    net = small(deep_supervision=True).eval()
    x = torch.randn(2, 3, 29, 35)
    with torch.no_grad():
        full = net(x)[depth - 1]
        pruned = net.prune(depth)
        assert torch.equal(pruned(x), full)
        assert torch.equal(net(x, depth=depth), full)


def test_pruned_network_is_smaller_and_does_less_work():
    net = UNetPlusPlus(1, 1, norm=None, deep_supervision=True)
    params = [count_parameters(net.prune(L)) for L in range(1, 5)]
    macs = [count_macs(net.prune(L), (1, 1, 32, 32)) for L in range(1, 5)]
    assert params == sorted(params) and len(set(params)) == 4
    assert macs == sorted(macs) and len(set(macs)) == 4
    assert params[3] == 9_041_601                                # L4 = the full network, one head
    assert macs == [count_macs(net, (1, 1, 32, 32), depth=L) for L in range(1, 5)]
    # L1 keeps X^{0,0}, X^{1,0}, X^{0,1}: two units, one up-conv, one head
    assert params[0] == (9 * 32 + 32 + 9 * 32 * 32 + 32) + (9 * 32 * 64 + 64 + 9 * 64 * 64 + 64) \
        + (4 * 64 * 32 + 32) + (9 * 64 * 32 + 32 + 9 * 32 * 32 + 32) + 33


def test_prune_is_a_view_that_shares_weights():
    net = small(deep_supervision=True)
    p2 = net.prune(2)
    assert p2.conv0_1 is net.conv0_1 and not hasattr(p2, "conv3_0") and p2.heads == [2]
    own = UNetPlusPlus(3, 1, features=4, depth=2)
    own.load_state_dict(copy.deepcopy(p2).state_dict())          # same keys as L2 built from scratch
    x = torch.randn(1, 3, 16, 16)
    own.eval(), net.eval()
    with torch.no_grad():
        assert torch.equal(own(x), net(x)[1])
