"""Tests for unet_lib.train: seeding, learning, checkpoints and resuming, evaluation, prediction.

Everything runs on tiny U-Nets (features 2-4) and 32x32 images on the CPU.
"""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unet_lib import metrics
from unet_lib.losses import bce_dice_loss, bce_loss, deep_supervision_loss
from unet_lib.models.unet import UNet
from unet_lib.train import (
    History,
    evaluate,
    fit,
    load_best,
    load_checkpoint,
    masks_from_logits,
    predict,
    probs_from_logits,
    save_checkpoint,
    seed_everything,
)

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def random_data(n=16, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=g)
    masks = (torch.rand(n, 1, size, size, generator=g) > 0.5).float()
    return images, masks


def squares(n, size=32, seed=0):
    """A learnable problem: the mask is a bright square on a dim noisy background."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, 1, size, size)).astype(np.float32) * 0.4
    masks = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        s = rng.integers(6, 14)
        r, c = rng.integers(0, size - s, 2)
        images[i, 0, r:r + s, c:c + s] += 0.6
        masks[i, 0, r:r + s, c:c + s] = 1
    return torch.from_numpy(images), torch.from_numpy(masks)


def loader(images, masks, batch_size=4, shuffle=False, seed=None):
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(TensorDataset(images, masks), batch_size=batch_size, shuffle=shuffle, generator=g)


def tiny_unet(features=2):
    return UNet(1, 1, features=features)


def run(seed=0, epochs=2, shuffle=True, **kw):
    seed_everything(seed)
    model = tiny_unet()
    images, masks = random_data()
    hist = fit(model, loader(images, masks, shuffle=shuffle), loader(images[:4], masks[:4]), loss_fn=bce_loss,
               max_epochs=epochs, lr=1e-2, device=CPU, progress=False, **kw)
    return model, hist


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- seeding
def test_seed_everything_makes_fits_identical():
    m1, h1 = run(seed=3)
    m2, h2 = run(seed=3)
    assert same_weights(m1, m2)
    assert h1.train_loss == h2.train_loss and h1.val_dice == h2.val_dice
    m3, h3 = run(seed=4)
    assert not same_weights(m1, m3) and h3.train_loss != h1.train_loss


def test_seed_everything_seeds_every_generator():
    import random
    seed_everything(5)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(5)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


# --------------------------------------------------------------------------- learning
def test_fit_learns_bright_squares():
    seed_everything(0)
    train_x, train_y = squares(32, seed=1)
    val_x, val_y = squares(8, seed=2)
    model = UNet(1, 1, features=8)
    # 8 batches x 5 epochs; every init seed 0..7 reaches a best Dice of 0.88-1.0 here (features=4 can get
    # stuck with all head weights negative, so it is not used)
    hist = fit(model, loader(train_x, train_y, 4, shuffle=True, seed=0), loader(val_x, val_y, 8),
               loss_fn=bce_dice_loss, max_epochs=5, lr=1e-2, device=CPU, progress=False)
    assert hist.epoch == list(range(5)) and len(hist.val_dice) == 5
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert hist.best_val_dice > 0.8 and hist.val_dice[-1] > 0.8, hist.val_dice
    assert hist.val_dice[0] < hist.best_val_dice
    assert hist.best_val_dice == max(hist.val_dice)
    assert hist.best_epoch == int(np.argmax(hist.val_dice))
    # the recorded validation Dice is the mean per-image Dice of evaluate() on the final model
    assert hist.val_dice[-1] == pytest.approx(evaluate(model, loader(val_x, val_y, 3))["dice"].mean())


def test_train_loss_is_the_mean_over_images():
    # lr = 0 keeps the weights fixed, so the epoch's training loss is the loss of one fixed model over all
    # images; 5 images in batches of 2, 2, 1 must be weighted by batch size (a plain mean of the 3 batch
    # losses would differ)
    torch.manual_seed(0)
    model = nn.Conv2d(1, 1, 3, padding=1)
    images, masks = random_data(5, 8)
    hist = fit(model, loader(images, masks, 2), loss_fn=bce_loss, max_epochs=1, lr=0.0, schedule="constant",
               device=CPU, progress=False)
    with torch.no_grad():
        expected = bce_loss(model(images), masks).item()
    assert hist.train_loss[0] == pytest.approx(expected, rel=1e-5)
    assert math.isnan(hist.val_dice[0]) and hist.best_epoch == -1


def test_constant_schedule_and_unknown_schedule():
    _, h = run(epochs=2, schedule="constant")
    assert h.lr == [1e-2, 1e-2]
    with pytest.raises(ValueError, match="onecycle"):
        run(epochs=1, schedule="cosine")


def test_onecycle_peaks_then_anneals():
    _, h = run(epochs=8, schedule="onecycle")       # 32 steps, 4 per epoch: warm-up over the first 30 %
    peak = int(np.argmax(h.lr))
    assert peak in (1, 2) and h.lr[0] < h.lr[peak] <= 1e-2
    assert h.lr[peak] == pytest.approx(1e-2, rel=0.05)
    assert all(a > b for a, b in zip(h.lr[peak:-1], h.lr[peak + 1:-1]))   # annealing (the last entry: see below)


def test_onecycle_ends_at_lr_over_1e4():
    _, h = run(epochs=2, schedule="onecycle")       # 2 epochs x 4 batches = 8 steps
    assert h.lr[-1] == pytest.approx(1e-2 / 1e4, rel=1e-6)     # the docstring: anneals to lr / 1e4


def test_non_finite_loss_raises():
    images, masks = random_data(4, 16)
    with pytest.raises(FloatingPointError, match="lower lr"):
        fit(tiny_unet(), loader(images, masks), loss_fn=lambda out, t: out.sum() * float("nan"), max_epochs=1,
            device=CPU, progress=False)


def test_history_round_trip():
    h = History(epoch=[0, 1], train_loss=[1.0, 0.5], val_dice=[0.1, 0.2], lr=[1e-3, 1e-4], seconds=[1.5, 2.0],
                best_epoch=1, best_val_dice=0.2)
    assert h.train_seconds == 3.5
    assert History.from_dict(h.to_dict()) == h


# --------------------------------------------------------------------------- checkpoints
class InterruptAt:
    """A loss that raises KeyboardInterrupt at its ``n``-th call (simulates a crash mid-training)."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def __call__(self, out, target):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return bce_loss(out, target)


def test_interrupted_fit_resumes_and_equals_an_uninterrupted_run(tmp_path):
    # A fixed data order; shuffling, augmentation and dropout: see the test after this one's neighbours,
    # test_interrupted_run_with_shuffle_augmentation_and_dropout_resumes_bit_identically.
    images, masks = random_data(16, 32)
    train, val = loader(images, masks, 4), loader(images[:4], masks[:4], 4)  # 4 batches per epoch
    kw = dict(max_epochs=4, lr=1e-2, device=CPU, progress=False)

    seed_everything(0)
    reference = tiny_unet()
    ref_hist = fit(reference, train, val, loss_fn=bce_loss, **kw)

    seed_everything(0)
    interrupted = tiny_unet()
    crash = InterruptAt(2 * 4 + 1)                   # first batch of the third epoch (epoch index 2)
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, train, val, loss_fn=crash, checkpoint_dir=tmp_path, **kw)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1 and state["max_epochs"] == 4 and state["history"]["epoch"] == [0, 1]

    seed_everything(123)                              # a different init: the checkpoint must overwrite it
    resumed = tiny_unet()
    calls = []
    hist = fit(resumed, train, val, loss_fn=lambda o, t: calls.append(1) or bce_loss(o, t), checkpoint_dir=tmp_path,
               **kw)
    assert len(calls) == 2 * 4                        # only epochs 2 and 3 were trained
    assert hist.epoch == [0, 1, 2, 3]
    assert same_weights(resumed, reference)
    assert hist.train_loss == ref_hist.train_loss and hist.val_dice == ref_hist.val_dice and hist.lr == ref_hist.lr
    assert (hist.best_epoch, hist.best_val_dice) == (ref_hist.best_epoch, ref_hist.best_val_dice)
    assert len(hist.seconds) == 4

    # a finished run resumes to "nothing left to do"
    again = fit(tiny_unet(), train, val, loss_fn=crash, checkpoint_dir=tmp_path, **kw)
    assert again.epoch == [0, 1, 2, 3]


def test_resume_with_other_max_epochs_raises(tmp_path):
    run(epochs=1, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="max_epochs=1"):
        run(epochs=3, checkpoint_dir=tmp_path)
    # resume=False starts afresh in the same folder
    _, h = run(epochs=2, checkpoint_dir=tmp_path, resume=False)
    assert h.epoch == [0, 1]
    assert load_checkpoint(tmp_path / "last.pt")["max_epochs"] == 2


def test_best_checkpoint_and_load_best(tmp_path):
    model, hist = run(epochs=3, checkpoint_dir=tmp_path)
    assert (tmp_path / "best.pt").exists() and (tmp_path / "last.pt").exists()
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == hist.best_epoch and best["val_dice"] == hist.best_val_dice
    fresh = load_best(tiny_unet(), tmp_path)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in best["model"].items())
    if hist.best_epoch == 2:
        assert same_weights(fresh, model)
    assert not list(tmp_path.glob("*.tmp"))           # atomic writes leave nothing behind


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_load_checkpoint_refuses_arbitrary_objects(tmp_path, capsys):
    path = tmp_path / "best.pt"
    torch.save({"model": {}, "payload": _Evil()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out
    # plain tensors, numbers, strings and dicts load fine
    save_checkpoint(tmp_path / "ok.pt", model={"w": torch.ones(2)}, epoch=3, note="x", history={"a": [1.0]})
    ok = load_checkpoint(tmp_path / "ok.pt")
    assert ok["epoch"] == 3 and torch.equal(ok["model"]["w"], torch.ones(2)) and ok["history"] == {"a": [1.0]}


# --------------------------------------------------------------------------- evaluation and prediction
class CroppingThreshold(nn.Module):
    """A stand-in for a valid-padding network: logits = (image - 0.5) with a 3-pixel border cut off."""

    def __init__(self, border=3, outputs=1):
        super().__init__()
        self.zero = nn.Parameter(torch.zeros(()))
        self.border, self.outputs = border, outputs

    def forward(self, x):
        b = self.border
        logits = (x[:, :1, b:-b, b:-b] - 0.5) * 10 + self.zero
        return logits if self.outputs == 1 else [logits * 0.1, logits]


def test_evaluate_crops_targets_to_valid_logits():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 1, 20, 17, generator=g)
    masks = (images > 0.5).float()                     # the full-size target
    scores = evaluate(CroppingThreshold(), loader(images, masks, 2))
    assert set(scores) == {"dice", "iou", "precision", "recall"}
    assert all(v.shape == (5,) for v in scores.values())
    # only a centre crop lines the target up with the logits; any other crop would score below 1
    np.testing.assert_array_equal(scores["dice"], np.ones(5))
    np.testing.assert_array_equal(scores["iou"], np.ones(5))


def test_evaluate_matches_metrics():
    seed_everything(0)
    model = tiny_unet()
    images, masks = random_data(6, 32)
    scores = evaluate(model, loader(images, masks, 4))
    with torch.no_grad():
        model.eval()
        pred = model(images)[:, 0] > 0
    np.testing.assert_allclose(scores["dice"], metrics.dice(pred, masks[:, 0]).numpy())
    np.testing.assert_allclose(scores["recall"], metrics.recall(pred, masks[:, 0]).numpy())
    model.train()
    evaluate(model, loader(images, masks, 4))
    assert model.training                              # the caller's mode is restored


def test_list_outputs_need_output_fn():
    images = torch.rand(4, 1, 20, 20)
    masks = (images > 0.5).float()
    model = CroppingThreshold(outputs=2)
    with pytest.raises(TypeError, match="output_fn"):
        evaluate(model, loader(images, masks))
    assert evaluate(model, loader(images, masks), output_fn=lambda out: out[-1])["dice"].tolist() == [1.0] * 4
    with pytest.raises(TypeError, match="output_fn"):
        predict(model, images)


def test_fit_with_deep_supervision_and_output_fn():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 1)

        def forward(self, x):
            return [self.a(x), self.b(x)]

    seed_everything(0)
    images, masks = random_data(4, 8)
    hist = fit(TwoHeads(), loader(images, masks), loader(images, masks), max_epochs=1, device=CPU, progress=False,
               loss_fn=lambda outs, t: deep_supervision_loss(outs, t, bce_loss), output_fn=lambda outs: outs[-1])
    assert len(hist.val_dice) == 1 and 0 <= hist.val_dice[0] <= 1


def test_extra_batch_items_reach_the_loss():
    images, masks = random_data(4, 8)
    weights = torch.full((4, 8, 8), 2.0)
    seen = []

    def loss(out, target, weight):
        seen.append(weight.shape)
        return bce_loss(out, target) * weight.mean() / 2

    fit(nn.Conv2d(1, 1, 1), DataLoader(TensorDataset(images, masks, weights), batch_size=2), loss_fn=loss,
        max_epochs=1, device=CPU, progress=False)
    assert seen == [(2, 8, 8), (2, 8, 8)]


def test_predict_batches_and_restores_mode():
    seed_everything(0)
    model = tiny_unet()
    model.train()
    images = torch.rand(5, 1, 32, 32)
    out = predict(model, images, batch_size=2)
    assert out.shape == (5, 1, 32, 32) and out.device.type == "cpu"
    assert model.training                              # mode restored
    model.eval()
    with torch.no_grad():
        assert torch.allclose(out, model(images), atol=1e-5)   # eval mode was used (batch norm running stats)


def test_probs_and_masks_from_logits():
    one = torch.tensor([[[[0.0, 2.0, -1.0, math.log(4.0)]]]])         # (1, 1, 1, 4)
    assert torch.allclose(probs_from_logits(one), torch.sigmoid(one[:, 0]))
    assert masks_from_logits(one).tolist() == [[[False, True, False, True]]]
    # threshold 0.8 is logit ln 4: strictly above it counts
    assert masks_from_logits(one, threshold=0.8).tolist() == [[[False, True, False, False]]]
    two = torch.tensor([[[[0.0, 1.0]], [[1.0, 0.0]]]])                # (1, 2, 1, 2): class 1 wins at pixel 0
    assert torch.allclose(probs_from_logits(two), two.softmax(1)[:, 1])
    assert masks_from_logits(two).tolist() == [[[True, False]]]
    three = torch.tensor([[[[0.0]], [[1.0]], [[2.0]]]])              # class 2 wins: not foreground class 1
    assert masks_from_logits(three).tolist() == [[[False]]]


# --------------------------------------------------------------------------- exact resume with randomness on
class _AugmentedSquares(torch.utils.data.Dataset):
    """Images and masks augmented on every read by a transform that draws from its own generator
    (random flips, 90-degree turns and small rotations of :mod:`unet_lib.augment`)."""

    def __init__(self, images, masks, transform):
        self.images, self.masks, self.transform = images.numpy(), masks.numpy(), transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image, mask = self.transform(self.images[i, 0], self.masks[i, 0] > 0.5)   # no rng: the own generator
        return torch.from_numpy(image.copy())[None].float(), torch.from_numpy(mask.copy())[None].float()


class _DropoutUNet(nn.Module):
    """A tiny U-Net with dropout after its stem (dropout draws from torch's global generator)."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout2d(0.3)
        self.net = UNet(1, 1, features=2, dropout=0.3)

    def forward(self, x):
        return self.net(self.drop(x))


class _CrashAt:
    """bce_loss that raises at its ``n``-th call (a crash in the middle of an epoch)."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def __call__(self, out, target):
        self.calls += 1
        if self.calls == self.n:
            raise RuntimeError("simulated crash")
        return bce_loss(out, target)


def _random_run(tmp_path, own_generator: bool, crash_at=None, reset_seed=None):
    from unet_lib import augment

    images, masks = squares(12, 32, seed=3)
    transform = augment.Compose([augment.FlipRotate(seed=11), augment.RandomRotate(20.0, seed=12, order=1)])
    dataset = _AugmentedSquares(images, masks, transform)
    g = torch.Generator().manual_seed(5) if own_generator else None
    train_loader = DataLoader(dataset, batch_size=4, shuffle=True, generator=g)    # 3 batches per epoch
    val_loader = DataLoader(TensorDataset(images[:4], masks[:4]), batch_size=4)
    if reset_seed is not None:
        seed_everything(reset_seed)
    model = _DropoutUNet()
    loss = _CrashAt(crash_at) if crash_at else bce_loss
    return model, fit(model, train_loader, val_loader, loss_fn=loss, max_epochs=4, lr=1e-2, device=CPU,
                      progress=False, checkpoint_dir=tmp_path)


@pytest.mark.parametrize("own_generator", [True, False], ids=["loader-generator", "global-rng"])
def test_interrupted_run_with_shuffle_augmentation_and_dropout_resumes_bit_identically(tmp_path, own_generator):
    seed_everything(0)
    reference, ref_hist = _random_run(tmp_path / "reference", own_generator)

    seed_everything(0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _random_run(tmp_path / "run", own_generator, crash_at=2 * 3 + 2)   # second batch of epoch 2
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1

    # a new process: every generator in another state, the transforms and the loader built afresh
    seed_everything(987)
    np.random.seed(4321)
    resumed, hist = _random_run(tmp_path / "run", own_generator, reset_seed=55)

    assert hist.epoch == [0, 1, 2, 3]
    ref_state, state = reference.state_dict(), resumed.state_dict()
    assert ref_state.keys() == state.keys()
    assert all(torch.equal(ref_state[k], state[k]) for k in ref_state)
    for name in ("epoch", "train_loss", "val_dice", "lr", "best_epoch", "best_val_dice"):
        assert getattr(hist, name) == getattr(ref_hist, name), name
    # the run really was random: without restoring the states the epochs would differ
    assert len(set(ref_hist.train_loss)) == 4


def _settings_run(tmp_path, batch_size=4, lr=1e-2, calls=None):
    images, masks = random_data(8, 32)
    calls = [] if calls is None else calls
    seed_everything(0)
    return fit(tiny_unet(), loader(images, masks, batch_size), loss_fn=lambda o, t: calls.append(1) or bce_loss(o, t),
               max_epochs=3, lr=lr, device=CPU, progress=False, checkpoint_dir=tmp_path)


@pytest.mark.parametrize("change, was, now", [({"batch_size": 2}, "batch_size=4", "batch_size=2"),
                                              ({"lr": 3e-3}, "lr=0.01", "lr=0.003")], ids=["batch_size", "lr"])
def test_resume_refuses_other_batch_size_or_lr_before_training(tmp_path, change, was, now):
    _settings_run(tmp_path)
    last = tmp_path / "last.pt"
    state = load_checkpoint(last)
    state["epoch"], state["history"]["epoch"] = 0, [0]      # as if interrupted after the first epoch
    save_checkpoint(last, **state)
    calls = []
    with pytest.raises(ValueError) as exc:
        _settings_run(tmp_path, calls=calls, **change)
    msg = str(exc.value)
    assert str(last) in msg and was in msg and now in msg and "resume=False" in msg
    assert calls == []                                       # refused before a single batch was trained


@pytest.mark.parametrize("content", ["truncated", "empty", "text", "list", "state_dict", "best.pt"])
def test_unreadable_or_foreign_last_pt_is_a_checkpoint_error(tmp_path, content):
    from unet_lib.checkpoints import CheckpointError

    _settings_run(tmp_path)
    last = tmp_path / "last.pt"
    good = last.read_bytes()
    if content == "truncated":
        last.write_bytes(good[: len(good) // 2])
    elif content == "empty":
        last.write_bytes(b"")
    elif content == "text":
        last.write_text("epoch=3\n")
    elif content == "list":
        torch.save([1, 2, 3], last)
    elif content == "state_dict":
        torch.save(tiny_unet().state_dict(), last)
    else:
        torch.save({"model": tiny_unet().state_dict(), "epoch": 1, "val_dice": 0.5}, last)
    with pytest.raises(CheckpointError) as exc:
        _settings_run(tmp_path)
    assert str(last) in str(exc.value) and "resume=False" in str(exc.value)
    # resume=False starts afresh in the same folder and overwrites the bad file
    images, masks = random_data(8, 32)
    h = fit(tiny_unet(), loader(images, masks, 4), loss_fn=bce_loss, max_epochs=1, lr=1e-2, device=CPU,
            progress=False, checkpoint_dir=tmp_path, resume=False)
    assert h.epoch == [0] and load_checkpoint(last)["epoch"] == 0


def test_channels_last_trains_the_same_network_in_another_layout():
    # a speed setting: the same steps on the same batches, the weights laid out channels-last (float
    # rounding may differ in the last bits: the convolutions sum in another order)
    images, masks = random_data(8, 32)
    runs = {}
    for layout in (False, True):
        seed_everything(0)
        model = tiny_unet()
        runs[layout] = (model, fit(model, loader(images, masks, 4), loss_fn=bce_loss, max_epochs=2, lr=1e-2,
                                   device=CPU, progress=False, channels_last=layout))
    (plain, h_plain), (last, h_last) = runs[False], runs[True]
    conv = next(m for m in last.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    np.testing.assert_allclose(h_last.train_loss, h_plain.train_loss, rtol=1e-4)
    for a, b in zip(plain.state_dict().values(), last.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)
