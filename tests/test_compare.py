"""Tests for unet_lib.compare: deployment of deep-supervised networks, the training recipe, paired
differences and object-size strata, on hand-checkable cases and tiny networks."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from unet_lib import compare, losses, metrics
from unet_lib.checkpoints import CheckpointError
from unet_lib.data import RandomCrops
from unet_lib.measure import count_macs
from unet_lib.models import FCN, UNet, UNet3Plus, UNetPlusPlus, count_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


class Squares(Dataset):
    """Bright squares on a dim background, RGB uint8 arrays like KvasirSEG's cache, with a `transform`."""

    def __init__(self, n, size=32, seed=0):
        rng = np.random.default_rng(seed)
        self.images = (rng.random((n, size, size, 3)) * 100).astype(np.uint8)
        self.masks = np.zeros((n, size, size), bool)
        for i in range(n):
            s = rng.integers(8, 14)
            r, c = rng.integers(0, size - s, 2)
            self.images[i, r:r + s, c:c + s] += 150
            self.masks[i, r:r + s, c:c + s] = True
        self.transform = None

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image, mask = self.images[i], self.masks[i]
        if self.transform is not None:
            image, mask = self.transform(image.copy(), mask.copy())
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255
        return image, torch.from_numpy(np.ascontiguousarray(mask))[None].float()


def ds_loss(head_loss=losses.bce_dice_loss):
    return functools.partial(losses.deep_supervision_loss, loss_fn=head_loss)


# -- deployed ------------------------------------------------------------------------------------
def test_deployed_unetplusplus_is_the_deepest_head():
    net = UNetPlusPlus(3, 1, features=(4, 8, 16, 32, 64), deep_supervision=True).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(compare.deployed(net)(x), net(x)[-1])


def test_deployed_unet3plus_is_d1_shares_weights_and_skips_heads():
    net = UNet3Plus(3, 1, features=(4, 8, 16, 32, 64), deep_supervision=True).eval()
    single = compare.deployed(net)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(single(x), net(x)[0])
    assert net.deep_supervision, "the trained network must keep its heads"
    assert single.outconv1.weight is net.outconv1.weight
    assert count_macs(single, (1, 3, 32, 32)) < count_macs(net, (1, 3, 32, 32))


def test_deployed_unet3plus_with_cgm_is_the_gated_d1():
    net = UNet3Plus(3, 1, features=(4, 8, 16, 32, 64), deep_supervision=True, cgm=True).eval()
    single = compare.deployed(net)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        seg, _ = net(x)
        assert torch.equal(single(x), seg[0]), "d1, gated by the classifier in eval mode"
    assert net.deep_supervision and net.cgm, "the trained network keeps its heads and its classifier"


def test_deployed_leaves_single_output_networks_alone():
    for net in (UNet(3, 1, features=4), FCN(3, 1, "8s", features=2), UNetPlusPlus(3, 1, features=(4, 8, 16, 32, 64))):
        assert compare.deployed(net) is net


# -- train_contender -----------------------------------------------------------------------------
def test_train_contender_learns_and_scores_the_deployed_network():
    train, val = Squares(24, seed=0), Squares(8, seed=1)
    val_loader = DataLoader(val, batch_size=4)
    c = compare.Contender("UNet++ (DS)", lambda: UNetPlusPlus(3, 1, features=(4, 8, 16, 32, 64), deep_supervision=True),
                          ds_loss(), lambda outs: outs[-1])
    run = compare.train_contender(c, train, val_loader, max_epochs=6, lr=1e-2, batch_size=4, seed=0, device="cpu")
    assert run.name == "UNet++ (DS)" and run.seed == 0
    assert set(run.scores) == {"dice", "iou", "precision", "recall"} and run.scores["dice"].shape == (8,)
    assert run.scores["dice"].mean() > 0.5, "a tiny UNet++ learns bright squares in six epochs"
    assert len(run.history.val_dice) == 6
    assert run.history.val_dice[-1] == pytest.approx(run.scores["dice"].mean())
    # parameters of the trained network (all four heads), MACs of the deployed one (head L4 only)
    assert run.params == count_parameters(c.build())
    assert run.macs == count_macs(run.deployed, (1, 3, 32, 32)) < count_macs(run.model, (1, 3, 32, 32))
    with torch.no_grad():
        assert run.deployed(val[0][0][None]).shape == (1, 1, 32, 32)
        assert len(run.model(val[0][0][None])) == 4, "Run.model is the network as trained, all four heads"
    assert run.deployed.depth == 4 and run.model.deep_supervision
    assert isinstance(train.transform, compare.augment.FlipRotate)


def test_train_contender_is_reproducible_and_seed_dependent():
    train, val = Squares(8, seed=0), Squares(4, seed=1)
    loader = DataLoader(val, batch_size=4)
    c = compare.Contender("U-Net", lambda: UNet(3, 1, features=2), losses.bce_dice_loss)
    runs = [compare.train_contender(c, train, loader, max_epochs=1, lr=1e-2, batch_size=4, seed=s, device="cpu")
            for s in (0, 0, 1)]
    w = [next(r.model.parameters()).detach() for r in runs]
    assert torch.equal(w[0], w[1])
    assert not torch.equal(w[0], w[2])


def test_train_contender_needs_a_transform_attribute():
    data = torch.utils.data.TensorDataset(torch.zeros(4, 3, 32, 32), torch.zeros(4, 1, 32, 32))
    c = compare.Contender("U-Net", lambda: UNet(3, 1, features=2), losses.bce_dice_loss)
    with pytest.raises(TypeError, match="transform=None"):
        compare.train_contender(c, data, DataLoader(data), max_epochs=1, lr=1e-3, batch_size=2)


def test_train_contender_takes_a_dataset_that_augments_itself_extras_and_drop_last():
    # chapter 06: (image, mask, has_object) items, the label rides to the loss; chapter 04: no validation
    squares = Squares(10, seed=0)
    crops = RandomCrops(squares.images, squares.masks, squares.masks.reshape(10, -1).any(1),
                                     transform=compare.augment.FlipRotate(), seed=0)
    seen = []

    def loss_fn(output, target, has_object):
        seen.append((len(target), has_object.shape))
        return losses.bce_dice_loss(output, target)

    c = compare.Contender("U-Net", lambda: UNet(3, 1, features=2), loss_fn)
    run = compare.train_contender(c, crops, None, max_epochs=2, lr=1e-2, batch_size=4, seed=0, device="cpu",
                                  transform=None, drop_last=True)
    assert [n for n, _ in seen] == [4, 4, 4, 4], "10 items in batches of 4, the incomplete batch dropped, 2 epochs"
    assert seen[0][1] == (4,)
    assert run.scores == {} and len(run.history.train_loss) == 2
    assert run.macs == count_macs(run.model, (1, 3, 32, 32))


def test_train_contender_resumes_from_its_checkpoint_folder(tmp_path):
    train, val = Squares(8, seed=0), Squares(4, seed=1)
    loader = DataLoader(val, batch_size=4)
    c = compare.Contender("U-Net", lambda: UNet(3, 1, features=2), losses.bce_dice_loss)
    first = compare.train_contender(c, train, loader, max_epochs=2, lr=1e-2, batch_size=4, seed=0, device="cpu",
                                    checkpoint_dir=tmp_path)
    assert (tmp_path / "last.pt").exists() and (tmp_path / "best.pt").exists()
    again = compare.train_contender(c, train, loader, max_epochs=2, lr=1e-2, batch_size=4, seed=0, device="cpu",
                                    checkpoint_dir=tmp_path)          # finished: nothing left to train
    assert again.history.to_dict() == first.history.to_dict()
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(first.scores["dice"], again.scores["dice"])


class Disconnect:
    """The recipe's loss until its ``n``-th call, which raises KeyboardInterrupt (a Colab runtime that goes away)."""

    def __init__(self, n, loss_fn=losses.bce_dice_loss):
        self.n, self.calls, self.loss_fn = n, 0, loss_fn

    def __call__(self, output, target):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt("runtime disconnected")
        return self.loss_fn(output, target)


def test_a_disconnect_after_an_epoch_resumes_to_the_uninterrupted_numbers(tmp_path):
    # What a chapter does in Colab with USE_DRIVE: the training cell dies after its first epoch, the cell
    # is run again with the same checkpoint folder (config.checkpoint_dir), and the run ends with exactly
    # the scores, history and weights of a run that never stopped: shuffled batches, flips/quarter turns.
    train, val = Squares(16, seed=0), Squares(6, seed=1)
    loader = DataLoader(val, batch_size=3)
    build = functools.partial(UNet, 3, 1, features=2)
    kw = dict(max_epochs=3, lr=1e-2, batch_size=4, seed=0, device="cpu")       # 4 batches per epoch
    uninterrupted = compare.train_contender(compare.Contender("U-Net", build, losses.bce_dice_loss), train, loader,
                                            **kw)
    disconnect = Disconnect(4 + 2)                                  # the second batch of the second epoch
    with pytest.raises(KeyboardInterrupt):
        compare.train_contender(compare.Contender("U-Net", build, disconnect), train, loader, checkpoint_dir=tmp_path,
                                **kw)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 0   # one finished epoch survived
    counted = Disconnect(0)                                         # never fires; counts the batches trained
    resumed = compare.train_contender(compare.Contender("U-Net", build, counted), train, loader,
                                      checkpoint_dir=tmp_path, **kw)
    assert counted.calls == 2 * 4                                   # only epochs 1 and 2 were trained again
    np.testing.assert_array_equal(resumed.scores["dice"], uninterrupted.scores["dice"])
    assert resumed.history.train_loss == uninterrupted.history.train_loss
    assert resumed.history.val_dice == uninterrupted.history.val_dice
    for a, b in zip(uninterrupted.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_checkpoint_of_another_network_is_refused_not_resumed(tmp_path):
    train, val = Squares(8, seed=0), Squares(4, seed=1)
    loader = DataLoader(val, batch_size=4)
    kw = dict(max_epochs=2, lr=1e-2, batch_size=4, seed=0, device="cpu", checkpoint_dir=tmp_path)
    compare.train_contender(compare.Contender("U-Net", lambda: UNet(3, 1, features=2), losses.bce_dice_loss),
                            train, loader, **kw)
    wider = compare.Contender("U-Net", lambda: UNet(3, 1, features=4), losses.bce_dice_loss)
    with pytest.raises(CheckpointError, match=r"another network \(UNet with [\d,]+ parameters, not UNet with "
                                              r"[\d,]+ parameters\).*resume=False") as exc:
        compare.train_contender(wider, train, loader, **kw)
    assert str(tmp_path / "last.pt") in str(exc.value)
    fcn = compare.Contender("FCN-8s", lambda: FCN(3, 1, variant="8s", features=2), losses.bce_dice_loss)
    with pytest.raises(CheckpointError, match=r"another network \(UNet with [\d,]+ parameters, not FCN with"):
        compare.train_contender(fcn, train, loader, **kw)


def test_dice_by_size_averages_each_stratum():
    dice = [0.1, 0.3, 0.5, 0.9]
    fractions = [0.01, 0.03, 0.10, 0.50]          # small, small, medium, large
    assert compare.dice_by_size(dice, fractions) == pytest.approx({"small": 0.2, "medium": 0.5, "large": 0.9})
    assert compare.dice_by_size([0.4], [0.5]) == {"large": 0.4}, "an empty stratum is left out"
    with pytest.raises(ValueError, match="one Dice per image"):
        compare.dice_by_size([0.1, 0.2], [0.5])


# -- paired differences ----------------------------------------------------------------------------
def test_paired_difference_of_a_constant_shift_is_exact():
    b = np.linspace(0, 0.8, 50)
    d = compare.paired_difference(b + 0.1, b)
    assert d["mean"] == pytest.approx(0.1) and d["ci_low"] == pytest.approx(0.1) and d["ci_high"] == pytest.approx(0.1)
    assert d["n"] == 50


def test_paired_interval_is_much_narrower_than_the_unpaired_intervals():
    rng = np.random.default_rng(0)
    b = rng.random(120)                                   # images of very different difficulty
    a = b + 0.02 + 0.01 * rng.standard_normal(120)        # a slightly, consistently better method
    d = compare.paired_difference(a, b)
    sa, sb = metrics.summarize(a), metrics.summarize(b)
    assert d["ci_low"] > 0, "pairing detects the consistent gain"
    assert sa["ci_low"] < sb["ci_high"], "while the two methods' own intervals overlap"
    assert d["ci_high"] - d["ci_low"] < 0.1 * (sa["ci_high"] - sa["ci_low"])


def test_paired_difference_needs_the_same_images():
    with pytest.raises(ValueError, match="same images"):
        compare.paired_difference([0.1, 0.2], [0.1, 0.2, 0.3])


# -- object size -----------------------------------------------------------------------------------
def test_object_fraction_by_hand_and_for_every_layout():
    masks = np.zeros((3, 10, 10), bool)
    masks[0, :5] = True          # half the image
    masks[1, 0, 0] = True        # one pixel
    np.testing.assert_allclose(compare.object_fraction(masks), [0.5, 0.01, 0.0])
    np.testing.assert_allclose(compare.object_fraction(torch.from_numpy(masks)[:, None].float()), [0.5, 0.01, 0.0])
    np.testing.assert_allclose(compare.object_fraction(masks[0]), [0.5])
    with pytest.raises(ValueError, match="binary"):
        compare.object_fraction(np.full((1, 4, 4), 0.3))


def test_size_strata_edges_belong_to_the_upper_stratum():
    assert compare.size_strata([0.0, 0.049, 0.05, 0.199, 0.2, 1.0]) == \
        ["small", "small", "medium", "medium", "large", "large"]
    assert compare.size_strata([0.3], edges=(0.4, 0.6)) == ["small"]
    for bad in ((0.2, 0.05), (0.1, 0.1), (-0.1, 0.5), (0.1, 1.5)):
        with pytest.raises(ValueError, match="increasing"):
            compare.size_strata([0.1], edges=bad)


def test_train_contender_pins_batches_for_a_cuda_device_only(monkeypatch):
    """non_blocking copies to a GPU overlap only from pinned memory: the recipe's loader pins for CUDA."""
    made = []

    class Stop(Exception):
        pass

    def recording_loader(*args, **kwargs):
        made.append(kwargs["pin_memory"])
        raise Stop

    monkeypatch.setattr(compare, "DataLoader", recording_loader)
    crops = RandomCrops(np.zeros((2, 8, 8), np.float32), np.zeros((2, 8, 8), bool), seed=0)
    unet = compare.Contender("U-Net", lambda: UNet(1, 1, features=2), losses.bce_dice_loss)
    for device in ("cpu", "cuda"):
        monkeypatch.setattr(compare, "checked_device", lambda spec, source: torch.device(spec))
        with pytest.raises(Stop):
            compare.train_contender(unet, crops, max_epochs=1, lr=1e-3, batch_size=2, device=device, transform=None)
    assert made == [False, True]
