"""Checkpoints of :func:`unet_lib.train.fit`: safe saving and loading, exact resume.

A ``last.pt`` holds everything the next epoch depends on, so that an interrupted and resumed
run equals the uninterrupted one bit for bit, with shuffling, augmentation and dropout on:

* the model, the optimiser, the learning-rate scheduler and the gradient scaler;
* the random states: Python's ``random``, NumPy's global generator, torch's CPU generator and
  every CUDA generator, the training loader's own generators (its ``generator=`` and its
  sampler's), and the state of every augmentation of the training dataset that keeps its own
  generator (:class:`unet_lib.augment.FlipRotate` and its siblings define ``state_dict``);
* the configuration that must match for the resumed run to be the same run: epochs, steps per
  epoch, batch size, learning rate, schedule, weight decay and gradient clipping.

:func:`check_resume` refuses a mismatch before anything is trained, naming ``last.pt``, the
setting and both values. :func:`load_checkpoint` loads with ``weights_only=True`` (no code in
the file ever runs) and turns a truncated, empty or foreign file into a :class:`CheckpointError`
that names the file and the way out.
"""
from __future__ import annotations

import os
import pickle
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "load_best", "load_weights", "random_state",
           "restore_random_state", "check_resume", "RESUME_KEYS"]

#: keys a ``last.pt`` written by :func:`unet_lib.train.fit` must hold to be resumed
RESUME_KEYS: tuple[str, ...] = ("model", "optimizer", "scheduler", "scaler", "epoch", "history")

_START_AFRESH = "pass resume=False (or another checkpoint_dir) to start afresh"


class CheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint that cannot be used: unreadable (truncated, empty, not a checkpoint, unsafe
    content) or not the kind of file expected (a ``best.pt`` where a ``last.pt`` belongs, another
    network's weights). The message names the file and the fix.

    Also a :class:`pickle.UnpicklingError` and a :class:`ValueError`, so either ``except`` catches it.
    """


def save_checkpoint(path: str | os.PathLike, **state) -> None:
    """Save a checkpoint atomically (write to ``.tmp``, then rename): an interruption never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code runs from the file).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: a folder where the file should be; a file that is truncated, empty, not a torch
            checkpoint, holds objects other than tensors, numbers, strings and containers (a pickled
            payload is refused, never run), or is not a dictionary.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file: move it away, or {_START_AFRESH}")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes; an interrupted copy?): delete it, or "
                              f"{_START_AFRESH}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"checkpoint {path} holds objects that are not plain tensors, numbers or strings, so it "
                              f"was not loaded (nothing in it ran): {str(e).splitlines()[0]}. Use checkpoints written "
                              f"by unet_lib.train.fit, or {_START_AFRESH}") from e
    except Exception as e:  # noqa: BLE001  (a foreign file makes torch.load fail in many ways: KeyError, ...)
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__} {first}"
                              f". The file is truncated, empty or not a torch checkpoint: delete it, or "
                              f"{_START_AFRESH}") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not the dictionary that "
                              f"save_checkpoint writes: {_START_AFRESH}")
    return state


def load_weights(model: nn.Module, state: Mapping[str, Any], path: str | os.PathLike) -> nn.Module:
    """``model.load_state_dict(state["model"])``, with an error that names the file when they do not fit."""
    if "model" not in state:
        raise CheckpointError(f"checkpoint {path} has no 'model' entry (it holds {sorted(state)}): it was not "
                              f"written by unet_lib.train.fit; {_START_AFRESH}")
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {path} holds the weights of another network than this "
                              f"{type(model).__name__} ({first} ...): build the same network as the run that "
                              f"wrote it, or {_START_AFRESH}") from e
    return model


def load_best(model: nn.Module, checkpoint_dir: str | os.PathLike) -> nn.Module:
    """Load ``best.pt`` from ``checkpoint_dir`` into ``model`` and return it.

    Raises:
        FileNotFoundError: no ``best.pt`` there; says why (``fit`` writes it only with a validation
            loader) and how to get the final weights from ``last.pt`` instead.
        CheckpointError: an unreadable ``best.pt``, or one of another network.
    """
    folder = Path(checkpoint_dir)
    path = folder / "best.pt"
    if not path.is_file():
        last = folder / "last.pt"
        fallback = (f"; {last} holds the final weights: load_weights(model, load_checkpoint('{last}'), '{last}')"
                    if last.is_file() else "")
        raise FileNotFoundError(f"no best.pt in {folder}: fit writes best.pt only when it is given a "
                                f"checkpoint_dir and a val_loader that scores images (the best validation "
                                f"Dice){fallback}")
    return load_weights(model, load_checkpoint(path), path)


# --------------------------------------------------------------------------------------------------
# random states
# --------------------------------------------------------------------------------------------------
def _loader_generators(loader) -> list[torch.Generator]:
    """The loader's own generators (its ``generator=`` and its samplers'), each once."""
    found: list[torch.Generator] = []
    candidates = [getattr(loader, "generator", None), getattr(getattr(loader, "sampler", None), "generator", None)]
    batch_sampler = getattr(loader, "batch_sampler", None)
    candidates.append(getattr(getattr(batch_sampler, "sampler", None), "generator", None))
    for g in candidates:
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found


def _datasets(dataset) -> Iterator:
    """``dataset`` and the datasets inside it (``ConcatDataset``, ``Subset``), depth first."""
    if dataset is None:
        return
    yield dataset
    for inner in getattr(dataset, "datasets", ()):
        yield from _datasets(inner)
    if hasattr(dataset, "dataset") and hasattr(dataset, "indices"):
        yield from _datasets(dataset.dataset)


def _stateful_transforms(loader) -> list:
    """Augmentations of the loader's dataset that keep their own generator (``state_dict``/``load_state_dict``)."""
    out = []
    for ds in _datasets(getattr(loader, "dataset", None)):
        for name in ("transform", "deform"):
            t = getattr(ds, name, None)
            if callable(getattr(t, "state_dict", None)) and callable(getattr(t, "load_state_dict", None)) \
                    and all(t is not o for o in out):
                out.append(t)
    return out


def random_state(loader=None) -> dict:
    """Every random state the next epoch of training depends on (see the module docstring)."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {"bit_generator": np_state["bit_generator"], "pos": int(np_state["state"]["pos"]),
                  "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": [g.get_state() for g in _loader_generators(loader)],
        "transforms": [t.state_dict() for t in _stateful_transforms(loader)],
    }
    return state


def restore_random_state(state: Mapping[str, Any], loader=None, path: str | os.PathLike = "last.pt") -> None:
    """Put back the random states saved by :func:`random_state` (the training loader must be built alike).

    Raises:
        CheckpointError: the loader or its dataset's augmentations are not those of the saved run.
    """
    random.setstate(_as_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": int(n["pos"])},
                         "has_gauss": int(n["has_gauss"]), "gauss": float(n["gauss"])})
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    generators, transforms = _loader_generators(loader), _stateful_transforms(loader)
    if len(generators) != len(state["loader"]):
        raise CheckpointError(f"{path} was written with a training loader that has {len(state['loader'])} own "
                              f"generator(s), this one has {len(generators)}: build the loader as before "
                              f"(generator=torch.Generator().manual_seed(seed)), or {_START_AFRESH}")
    if len(transforms) != len(state["transforms"]):
        raise CheckpointError(f"{path} was written with {len(state['transforms'])} seeded augmentation(s) on the "
                              f"training dataset, this one has {len(transforms)}: set the same transform, or "
                              f"{_START_AFRESH}")
    for g, s in zip(generators, state["loader"]):
        g.set_state(s)
    for t, s in zip(transforms, state["transforms"]):
        t.load_state_dict(s)


def _as_tuples(x):
    """Python's ``random`` state as tuples again (a round trip may turn tuples into lists)."""
    return tuple(_as_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


# --------------------------------------------------------------------------------------------------
# resume
# --------------------------------------------------------------------------------------------------
def check_resume(path: str | os.PathLike, state: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Refuse to resume ``state`` (read from ``path``) under another ``config`` than the one it was written with.

    Args:
        path: the ``last.pt`` (for the messages).
        state: its contents.
        config: the settings of the run about to start, ``{name: value}``.

    Raises:
        CheckpointError: ``state`` lacks what resuming needs (e.g. a ``best.pt`` copied to ``last.pt``), or
            it was written for another network (``config["network"]``, ``config["parameters"]``).
        ValueError: a setting differs; names the file, the setting and both values.
    """
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path} cannot be resumed: it lacks {missing} (a best.pt or a bare state_dict saved "
                              f"as last.pt?); {_START_AFRESH}")
    saved = dict(state.get("config") or {})
    if "max_epochs" in state:
        saved.setdefault("max_epochs", state["max_epochs"])
    network = [k for k in ("network", "parameters") if k in saved and k in config and saved[k] != config[k]]
    if network:
        def described(c):
            return f"{c.get('network', 'a network')} with {c['parameters']:,} parameters" if "parameters" in c \
                else str(c.get("network"))
        raise CheckpointError(f"{path} belongs to another network ({described(saved)}, not {described(config)}): "
                              f"build the same network to resume it, or {_START_AFRESH}")
    # the settings a user chooses first (batch_size before the steps per epoch it implies)
    order = sorted(config, key=lambda k: (k == "steps_per_epoch", list(config).index(k)))
    differ = [name for name in order if name in saved and not _same(saved[name], config[name])]
    if differ:
        was = ", ".join(f"{n}={saved[n]!r}" for n in differ)
        now = ", ".join(f"{n}={config[n]!r}" for n in differ)
        raise ValueError(f"{path} belongs to a run with {was}, not {now}: pass the same "
                         f"{' and '.join(differ)} to resume it, or {_START_AFRESH}")


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    return a == b

