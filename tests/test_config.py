"""Tests for unet_lib.config: profiles, environment overrides, paths and devices."""
from __future__ import annotations

import dataclasses
import os
import sys

import pytest
import torch

from unet_lib import config
from unet_lib.config import PROFILES, data_dir, profile, repo_root, results_dir
from unet_lib.models.unet import valid_input_size, valid_output_size


@pytest.fixture
def no_env(monkeypatch):
    for var in ("UNET_BOOK_PROFILE", "UNET_BOOK_DATA", "UNET_BOOK_RESULTS", "UNET_BOOK_CHECKPOINTS",
                "UNET_BOOK_DEVICE"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.mark.parametrize("cuda, expected", [(True, "full"), (False, "cpu")])
def test_default_profile_follows_the_hardware(no_env, cuda, expected):
    no_env.setattr(torch.cuda, "is_available", lambda: cuda)
    assert profile().name == expected


@pytest.mark.parametrize("value", ["smoke", "SMOKE", " smoke "])
def test_env_override(no_env, value):
    no_env.setattr(torch.cuda, "is_available", lambda: True)
    no_env.setenv("UNET_BOOK_PROFILE", value)
    assert profile() is PROFILES["smoke"]


def test_explicit_name_beats_env(no_env):
    no_env.setenv("UNET_BOOK_PROFILE", "smoke")
    assert profile("full").name == "full"


def test_unknown_profile_lists_valid_names(no_env):
    with pytest.raises(ValueError, match=r"\['cpu', 'full', 'rehearsal', 'smoke'\]"):
        profile("gpu")
    no_env.setenv("UNET_BOOK_PROFILE", "tiny")
    with pytest.raises(ValueError, match="tiny"):
        profile()


def test_profiles_have_their_names_and_the_documented_values():
    for name, p in PROFILES.items():
        assert p.name == name
    s, c, f = PROFILES["smoke"], PROFILES["cpu"], PROFILES["full"]
    assert (s.image_size, c.image_size, f.image_size) == (32, 96, 256)
    assert (s.features, c.features, f.features) == (4, 16, 64)
    assert (s.max_epochs, c.max_epochs, f.max_epochs) == (1, 12, 60)
    assert s.train_limit == 8 and s.val_limit == 4 and c.train_limit is None and f.val_limit is None


@pytest.mark.parametrize("field", ["image_size", "features", "max_epochs", "em_tile", "em_features", "em_steps"])
def test_smoke_smaller_than_cpu_smaller_than_full(field):
    s, c, f = (getattr(PROFILES[n], field) for n in ("smoke", "cpu", "full"))
    assert s < c < f


def test_image_sizes_fit_the_padded_unet():
    for p in PROFILES.values():
        assert p.image_size >= 16 and p.image_size % 16 == 0, p.name


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_em_tile_is_a_valid_output_size(name):
    tile = PROFILES[name].em_tile
    assert (tile - 4) % 16 == 0
    assert valid_output_size(valid_input_size(tile)) == tile


def test_profile_is_frozen_and_replace_copies():
    p = PROFILES["cpu"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.max_epochs = 3
    q = config.replace(p, max_epochs=3)
    assert q.max_epochs == 3 and p.max_epochs == 12 and q.image_size == p.image_size


def test_data_and_results_dirs_honour_env(no_env, tmp_path):
    no_env.setenv("UNET_BOOK_DATA", str(tmp_path / "d"))
    no_env.setenv("UNET_BOOK_RESULTS", str(tmp_path / "r"))
    assert data_dir() == (tmp_path / "d").resolve()
    assert results_dir() == (tmp_path / "r").resolve()


def test_default_dirs_in_a_checkout(no_env):
    root = repo_root()
    assert (root / "unet_lib" / "config.py").exists()
    if (root / "_config.yml").exists():
        assert data_dir() == (root / "data").resolve()
        assert results_dir() == (root / "results").resolve()


def test_default_dirs_follow_the_working_folder_outside_a_checkout(no_env, tmp_path):
    no_env.setattr(config, "repo_root", lambda: tmp_path / "site-packages")
    no_env.chdir(tmp_path)
    assert data_dir() == (tmp_path / "data").resolve()
    assert results_dir() == (tmp_path / "results").resolve()


def test_device(no_env):
    no_env.setenv("UNET_BOOK_DEVICE", "cpu")
    assert config.device() == torch.device("cpu")
    no_env.delenv("UNET_BOOK_DEVICE")
    no_env.setattr(torch.cuda, "is_available", lambda: True)
    assert config.device().type == "cuda"
    no_env.setattr(torch.cuda, "is_available", lambda: False)
    assert config.device().type in ("cpu", "mps")



def test_setup_seeds_picks_profile_and_device_and_says_so(monkeypatch, capsys):
    monkeypatch.setenv("UNET_BOOK_PROFILE", "smoke")
    monkeypatch.setenv("UNET_BOOK_DEVICE", "cpu")
    p, dev = config.setup(3)
    first = torch.rand(2)
    line = capsys.readouterr().out.strip()
    assert p is PROFILES["smoke"] and dev == torch.device("cpu")
    assert line.startswith("profile smoke: 32 px images, width 4, 1 epochs") and line.endswith("| seed 3")
    assert "device cpu (" in line and "threads)" in line and "\n" not in line, "one standard line"
    config.setup(3)
    assert torch.equal(torch.rand(2), first), "seeded: the same seed gives the same random numbers"


def test_rehearsal_is_full_with_training_capped():
    import dataclasses

    f, r = PROFILES["full"], PROFILES["rehearsal"]
    capped = {"name", "max_epochs", "batch_size", "train_limit", "val_limit", "em_steps", "seeds"}
    for field in dataclasses.fields(f):
        if field.name not in capped:
            assert getattr(r, field.name) == getattr(f, field.name), f"rehearsal must keep full's {field.name}"
    assert (r.max_epochs, r.batch_size, r.train_limit, r.val_limit, r.em_steps, r.seeds) == (1, 2, 4, 4, 2, 1)


def test_setup_turns_on_cudnn_benchmark_for_a_cuda_device_only(no_env, monkeypatch, capsys):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    config.setup(0, "smoke")
    assert torch.backends.cudnn.benchmark is False, "no GPU: nothing to tune"
    monkeypatch.setattr(config, "device", lambda: torch.device("cuda"))
    config.setup(0, "smoke")
    assert torch.backends.cudnn.benchmark is True and "cudnn.benchmark" in capsys.readouterr().out


# -- checkpoints and Google Drive (Colab) ---------------------------------------------------------
def test_no_checkpoint_folder_unless_one_is_asked_for(no_env):
    no_env.delenv("UNET_BOOK_CHECKPOINTS", raising=False)
    assert config.checkpoint_dir("03_unet_from_scratch", "U-Net") is None


def test_checkpoint_folder_per_notebook_profile_and_run(no_env, tmp_path):
    no_env.setenv("UNET_BOOK_CHECKPOINTS", str(tmp_path / "ckpt"))
    no_env.setenv("UNET_BOOK_PROFILE", "smoke")
    folder = config.checkpoint_dir("04_weighted_loss_elastic_aug", "seed 2, elastic (EM)")
    assert folder == (tmp_path / "ckpt" / "04_weighted_loss_elastic_aug" / "smoke" / "seed_2_elastic_EM").resolve()
    assert config.checkpoint_dir("07_kvasir_experiments", "UNet++ (DS)", "cpu").parts[-2:] == ("cpu", "UNet++_DS")
    assert not folder.exists()                         # fit creates it when it writes the first checkpoint
    with pytest.raises(ValueError, match="run '  '"):
        config.checkpoint_dir("02_fcn", "  ")
    (tmp_path / "file").write_text("x")
    no_env.setenv("UNET_BOOK_CHECKPOINTS", str(tmp_path / "file"))
    with pytest.raises(NotADirectoryError, match="UNET_BOOK_CHECKPOINTS"):
        config.checkpoint_dir("02_fcn", "FCN-8s")


@pytest.fixture
def colab(monkeypatch, tmp_path):
    """A stand-in ``google.colab`` whose ``drive.mount`` records the call and creates ``MyDrive``."""
    import types

    mounted = []

    def mount(mountpoint, **kwargs):
        mounted.append(mountpoint)
        (tmp_path / "drive" / "MyDrive").mkdir(parents=True, exist_ok=True)

    google, colab_module = types.ModuleType("google"), types.ModuleType("google.colab")
    colab_module.drive = types.SimpleNamespace(mount=mount)
    google.colab = colab_module
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab_module)
    for var in ("UNET_BOOK_DATA", "UNET_BOOK_RESULTS", "UNET_BOOK_CHECKPOINTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("UNET_BOOK_DRIVE_MOUNT", str(tmp_path / "drive"))
    return mounted


def test_use_drive_puts_data_results_and_checkpoints_in_drive(colab, tmp_path, capsys):
    base = config.use_drive()
    assert colab == [str(tmp_path / "drive")]
    assert base == tmp_path / "drive" / "MyDrive" / "unet-book"
    assert config.data_dir() == (base / "data").resolve() and config.results_dir() == (base / "results").resolve()
    assert config.checkpoint_dir("02_fcn", "FCN-8s", "smoke") == (base / "checkpoints" / "02_fcn" / "smoke" /
                                                                  "FCN-8s").resolve()
    assert all((base / sub).is_dir() for sub in ("data", "results", "checkpoints"))
    assert str(base) in capsys.readouterr().out


def test_use_drive_outside_colab_or_unmounted_says_what_to_do(colab, monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules["google.colab"].drive, "mount", lambda mountpoint, **kw: None)
    with pytest.raises(RuntimeError, match="did not mount.*USE_DRIVE = False"):
        config.use_drive()
    monkeypatch.setitem(sys.modules, "google.colab", None)          # import fails, as outside Colab
    with pytest.raises(RuntimeError, match="needs Google Colab.*UNET_BOOK_DATA"):
        config.use_drive()
    assert "UNET_BOOK_DATA" not in os.environ
