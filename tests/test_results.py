"""Tests for unet_lib.results: result files with provenance (DESIGN section 6.8)."""
from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
import torch

from unet_lib import results
from unet_lib.config import PROFILES
from unet_lib.results import KVASIR_DICE, Timer, git_commit, load_results, provenance, save_results

PROVENANCE_KEYS = {"profile", "device", "seed", "git_commit", "wall_time_s", "date"}


@pytest.fixture
def results_env(monkeypatch, tmp_path):
    monkeypatch.setenv("UNET_BOOK_RESULTS", str(tmp_path / "res"))
    monkeypatch.setenv("UNET_BOOK_PROFILE", "smoke")
    return tmp_path / "res"


def test_save_writes_notebook_profile_json_with_provenance(results_env):
    numbers = {"dice": 0.5, "per_image": np.array([0.25, 0.75]), "n": np.int64(3), "loss": torch.tensor(0.125),
               "params": 31_030_658}
    path = save_results("99_test", numbers, seed=7, wall_time_s=12.345)
    assert path == results_env.resolve() / "99_test.smoke.json"
    doc = json.loads(path.read_text())
    assert doc["notebook"] == "99_test"
    assert doc["numbers"] == {"dice": 0.5, "per_image": [0.25, 0.75], "n": 3, "loss": 0.125, "params": 31_030_658}
    prov = doc["provenance"]
    assert PROVENANCE_KEYS <= set(prov)
    assert prov["profile"] == "smoke" and prov["seed"] == 7 and prov["wall_time_s"] == 12.3
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", prov["date"])
    assert prov["device"] and prov["torch"] == torch.__version__
    # written atomically: no temporary file left behind
    assert sorted(p.name for p in results_env.iterdir()) == ["99_test.smoke.json"]


def test_headline_is_stored_under_one_key_with_its_metric(results_env):
    path = save_results("99_test", {"x": 1}, seed=0, wall_time_s=1.0, headline={"U-Net": np.float64(0.5), "FCN": 0.25},
                        metric=KVASIR_DICE)
    doc = json.loads(path.read_text())
    assert doc["headline"] == {"metric": KVASIR_DICE, "values": {"U-Net": 0.5, "FCN": 0.25}}
    assert json.loads(save_results("98_test", {}, seed=0, wall_time_s=0.0).read_text())["headline"] is None
    with pytest.raises(ValueError, match="needs its metric"):
        save_results("99_test", {}, seed=0, wall_time_s=0.0, headline={"U-Net": 0.5})


def test_load_round_trips(results_env):
    save_results("99_test", {"a": 1, "b": [1.5, 2.5], "c": {"nested": "x"}}, seed=None, wall_time_s=None)
    doc = load_results("99_test")
    assert doc["numbers"] == {"a": 1, "b": [1.5, 2.5], "c": {"nested": "x"}}
    assert doc["provenance"]["seed"] is None and doc["provenance"]["wall_time_s"] is None
    assert load_results("99_test", "smoke") == doc


def test_explicit_profile_names_the_file(results_env):
    path = save_results("99_test", {"x": 1}, seed=0, wall_time_s=1.0, p=PROFILES["cpu"])
    assert path.name == "99_test.cpu.json"
    assert load_results("99_test", "cpu")["provenance"]["profile"] == "cpu"
    with pytest.raises(FileNotFoundError):
        load_results("99_test")  # the active profile is smoke


def test_overwrite(results_env):
    save_results("99_test", {"x": 1}, seed=0, wall_time_s=1.0)
    save_results("99_test", {"x": 2}, seed=0, wall_time_s=1.0)
    assert load_results("99_test")["numbers"] == {"x": 2}


def test_missing_file_names_the_notebook(results_env):
    with pytest.raises(FileNotFoundError, match="03_unet_from_scratch") as err:
        load_results("03_unet_from_scratch")
    assert "UNET_BOOK_PROFILE=smoke" in str(err.value)


def test_unserialisable_value_raises(results_env):
    with pytest.raises(TypeError, match="object"):
        save_results("99_test", {"bad": object()}, seed=0, wall_time_s=0.0)


def test_git_commit_format():
    sha = git_commit()
    assert sha == "unknown" or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", sha)


def test_git_commit_outside_git(monkeypatch, tmp_path):
    monkeypatch.setattr(results, "repo_root", lambda: tmp_path)
    assert git_commit() == "unknown"


@pytest.mark.parametrize("direct_url, expected", [
    ('{"url": "https://github.com/u/b", "vcs_info": {"vcs": "git", "commit_id": "' + "ab" * 20 + '"}}', "ab" * 20),
    ('{"url": "file:///tmp/unet_lib-0.1.0-py3-none-any.whl", "archive_info": {}}', "unknown"),
    (None, "unknown")], ids=["git", "wheel", "index"])
def test_git_commit_of_a_pip_install_from_git(monkeypatch, tmp_path, direct_url, expected):
    # Colab: no checkout, unet_lib installed by the setup cell with pip from git+<url>; PEP 610 names the commit
    class Installed:
        def read_text(self, name):
            assert name == "direct_url.json"
            return direct_url

    monkeypatch.setattr(results, "repo_root", lambda: tmp_path)
    monkeypatch.setattr(results.importlib.metadata, "distribution", lambda name: Installed())
    assert git_commit() == expected


def test_provenance_cpu_device_names_threads():
    prov = provenance(seed=1, wall_time_s=None, p=PROFILES["smoke"], device="cpu")
    assert prov["profile"] == "smoke" and "CPU" in prov["device"] and "threads" in prov["device"]


def test_timer():
    with Timer() as t:
        time.sleep(0.02)
    assert 0.015 < t.seconds < 5
