"""Profiles, paths and devices: the one place the book's sizes and folders come from.

Every notebook reads its sizes from :func:`profile`, its data folder from
:func:`data_dir` and writes its headline numbers under :func:`results_dir`.
Nothing here has side effects on import.

Environment variables
---------------------
``UNET_BOOK_PROFILE``  ``smoke`` | ``cpu`` | ``full`` | ``rehearsal`` (default: ``full`` with CUDA, else ``cpu``)
``UNET_BOOK_DATA``     folder that holds the datasets (default ``./data``)
``UNET_BOOK_RESULTS``  folder for ``<notebook>.<profile>.json`` result files (default ``./results``)
``UNET_BOOK_CHECKPOINTS``  folder for training checkpoints (default: none, trainings are not checkpointed);
                       with it set, every training of the book resumes from its last finished epoch
``UNET_BOOK_DEVICE``   force a device, e.g. ``cpu`` or ``cuda:1``
``UNET_BOOK_DRIVE_MOUNT``  where :func:`use_drive` mounts Google Drive (default ``/content/drive``)

In Colab, :func:`use_drive` (``USE_DRIVE = True`` in a chapter's first cell) points the data, results
and checkpoint folders into Google Drive, so that they outlive the runtime.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["Profile", "PROFILES", "profile", "setup", "data_dir", "results_dir", "checkpoint_dir", "use_drive",
           "device", "checked_device", "repo_root"]


@dataclass(frozen=True)
class Profile:
    """One of the book's three sizes (DESIGN section 4).

    A chapter that needs something bigger or smaller than the shared sizes derives
    it from these fields (for example ``2 * p.max_epochs``) so that one knob still
    controls every notebook.
    """

    name: str
    #: side of the square Kvasir-SEG images fed to the networks (pixels)
    image_size: int
    #: base width of the networks (channels of the first stage; the papers use 64 or 32)
    features: int
    #: training epochs over the training set for the main experiment of a chapter
    max_epochs: int
    #: mini-batch size
    batch_size: int
    #: peak learning rate of the one-cycle schedule (Adam)
    lr: float
    #: number of training images used (None = the whole official training split)
    train_limit: int | None
    #: number of validation images used (None = the whole official validation split)
    val_limit: int | None
    #: output tile of the valid-padding U-Net on ISBI 2012 EM (388 in the paper; must be 16k+4)
    em_tile: int
    #: base width of the valid-padding U-Net trained on EM slices
    em_features: int
    #: training steps (mini-batches) for EM experiments
    em_steps: int
    #: independent seeds for experiments that report a spread
    seeds: int
    #: DataLoader worker processes
    num_workers: int


PROFILES: dict[str, Profile] = {
    # CI: proves every cell runs; numbers are meaningless and labelled as such.
    "smoke": Profile(name="smoke", image_size=32, features=4, max_epochs=1, batch_size=4, lr=3e-3,
                     train_limit=8, val_limit=4, em_tile=20, em_features=4, em_steps=2, seeds=1,
                     num_workers=0),
    # A laptop CPU (2 cores): real, honestly labelled results within minutes.
    "cpu": Profile(name="cpu", image_size=96, features=16, max_epochs=12, batch_size=16, lr=3e-3,
                   train_limit=None, val_limit=None, em_tile=116, em_features=8, em_steps=120, seeds=2,
                   num_workers=0),
    # A Colab GPU: the papers' widths, larger images, longer training.
    "full": Profile(name="full", image_size=256, features=64, max_epochs=60, batch_size=16, lr=1e-3,
                    train_limit=None, val_limit=None, em_tile=388, em_features=64, em_steps=3000, seeds=3,
                    num_workers=2),
}
# CI's rehearsal of `full` on a CPU: the full profile's image sizes, widths, tiles, loss paths and
# DataLoader workers, with training capped at a couple of steps (4 images, batch 2, one epoch) and
# 4 validation images (the fewest the chapters need, as in smoke), so that a full-profile path that
# breaks fails in CI and not in a student's Colab.
# Its numbers mean nothing. The only field smaller than in `full` besides the caps: the batch (2, not 16).
PROFILES["rehearsal"] = dataclasses.replace(PROFILES["full"], name="rehearsal", max_epochs=1, batch_size=2,
                                            train_limit=4, val_limit=4, em_steps=2, seeds=1)


def profile(name: str | None = None) -> Profile:
    """Return the active profile.

    Args:
        name: ``"smoke"``, ``"cpu"``, ``"full"`` or ``"rehearsal"``; default ``$UNET_BOOK_PROFILE``,
            else ``"full"`` when CUDA is available and ``"cpu"`` otherwise.

    Returns:
        The frozen :class:`Profile`.
    """
    name = name or os.environ.get("UNET_BOOK_PROFILE") or ("full" if torch.cuda.is_available() else "cpu")
    key = name.strip().lower()
    if key not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: set UNET_BOOK_PROFILE to one of {sorted(PROFILES)}")
    return PROFILES[key]


def repo_root() -> Path:
    """The repository (or installed package's parent) folder."""
    return Path(__file__).resolve().parent.parent


def _base() -> Path:
    """The repository root in a checkout (notebooks run from ``notebooks/``), else the working folder."""
    root = repo_root()
    return root if (root / "_config.yml").exists() else Path.cwd()


def _folder(variable: str, default: Path, what: str) -> Path:
    """``$variable`` (or ``default``) as a resolved path that is a folder or does not exist yet.

    Raises:
        NotADirectoryError: the path is a file; names the variable and the fix.
    """
    value = os.environ.get(variable)
    path = Path(value or default).expanduser().resolve()
    if path.exists() and not path.is_dir():
        source = f"{variable}={value}" if value else f"the default {what} folder"
        raise NotADirectoryError(f"{source} points at the file {path}, not a folder: set {variable} to the folder "
                                 f"that holds the {what} (or unset it to use {default})")
    return path


def data_dir() -> Path:
    """Folder that holds the datasets: ``$UNET_BOOK_DATA``, else ``data/`` in the repository
    (or in the working folder when ``unet_lib`` is installed from PyPI/git, as in Colab).

    Raises:
        NotADirectoryError: it names a file (says which variable to change).
    """
    return _folder("UNET_BOOK_DATA", _base() / "data", "datasets")


def results_dir() -> Path:
    """Folder for result files: ``$UNET_BOOK_RESULTS``, else ``results/`` beside ``data/``.

    Raises:
        NotADirectoryError: it names a file (says which variable to change).
    """
    return _folder("UNET_BOOK_RESULTS", _base() / "results", "results")


def checkpoint_dir(notebook: str, run: str, profile_name: str | None = None) -> Path | None:
    """Folder for one training's checkpoints, or ``None`` (no checkpoints) when ``$UNET_BOOK_CHECKPOINTS`` is unset.

    ``$UNET_BOOK_CHECKPOINTS/<notebook>/<profile>/<run>``: one folder per training, so that a rerun of the
    chapter after a disconnect resumes each of its trainings (:func:`unet_lib.train.fit`) and a run of another
    profile never meets this one's checkpoints.

    Args:
        notebook: the chapter, e.g. ``"03_unet_from_scratch"``.
        run: the training within it, e.g. ``"U-Net"`` or ``"seed 2, elastic"``; characters other than
            letters, digits, ``.``, ``+`` and ``-`` become ``_`` in the folder name.
        profile_name: default the active profile (``$UNET_BOOK_PROFILE``).

    Raises:
        ValueError: an empty ``notebook`` or ``run``.
        NotADirectoryError: ``$UNET_BOOK_CHECKPOINTS`` names a file.
    """
    if not os.environ.get("UNET_BOOK_CHECKPOINTS"):
        return None
    parts = []
    for what, value in (("notebook", notebook), ("run", run)):
        slug = re.sub(r"[^A-Za-z0-9.+-]+", "_", str(value)).strip("_.")
        if not slug:
            raise ValueError(f"checkpoint_dir: {what} {value!r} gives an empty folder name; name it with letters or "
                             "digits")
        parts.append(slug)
    base = _folder("UNET_BOOK_CHECKPOINTS", _base() / "checkpoints", "checkpoints")
    return base / parts[0] / profile(profile_name).name / parts[1]


def use_drive(folder: str = "unet-book", mount_point: str | None = None) -> Path:
    """Mount Google Drive in Colab and keep the book's data, results and checkpoints there.

    Sets ``UNET_BOOK_DATA``, ``UNET_BOOK_RESULTS`` and ``UNET_BOOK_CHECKPOINTS`` to ``data/``, ``results/``
    and ``checkpoints/`` under ``MyDrive/<folder>``: the next chapter finds the datasets, chapter 07 finds
    the other chapters' results, and a training interrupted by a disconnect resumes when its cell is run
    again. Call it before :func:`setup` (the chapters' first cell does, when ``USE_DRIVE = True``).

    Args:
        folder: the folder in ``MyDrive``.
        mount_point: where to mount Drive; default ``$UNET_BOOK_DRIVE_MOUNT``, else ``/content/drive``.

    Returns:
        ``MyDrive/<folder>``.

    Raises:
        RuntimeError: not in Colab (no ``google.colab``), or Drive did not mount; says what to set instead.
    """
    mount = Path(mount_point or os.environ.get("UNET_BOOK_DRIVE_MOUNT") or "/content/drive")
    try:
        from google.colab import drive
    except ImportError:
        raise RuntimeError("USE_DRIVE = True needs Google Colab (google.colab.drive is not importable here): "
                           "set it to False, and outside Colab point UNET_BOOK_DATA, UNET_BOOK_RESULTS and "
                           "UNET_BOOK_CHECKPOINTS at folders of your choice") from None
    drive.mount(str(mount))
    mine = mount / "MyDrive"
    if not mine.is_dir():
        raise RuntimeError(f"Google Drive did not mount at {mount} ({mine} does not exist): run the cell again and "
                           "allow access, or set USE_DRIVE = False to keep everything in this runtime")
    base = mine / folder
    for variable, sub in (("UNET_BOOK_DATA", "data"), ("UNET_BOOK_RESULTS", "results"),
                          ("UNET_BOOK_CHECKPOINTS", "checkpoints")):
        (base / sub).mkdir(parents=True, exist_ok=True)
        os.environ[variable] = str(base / sub)
    print(f"Google Drive: data, results and checkpoints in {base}")
    return base


def checked_device(spec: str | torch.device, source: str = "device") -> torch.device:
    """``spec`` as a :class:`torch.device` that this machine has, or an error naming ``source`` and the fix.

    Args:
        spec: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` (case and spaces ignored) or a device.
        source: where the value came from, for the message (e.g. ``"UNET_BOOK_DEVICE=cuda"``).

    Raises:
        ValueError: not a device name, or a device this machine does not have (CUDA without a GPU or
            without a CUDA build of PyTorch, a GPU index beyond the count, MPS off a Mac).
    """
    if isinstance(spec, torch.device):
        dev = spec
    else:
        if not isinstance(spec, str):
            raise TypeError(f"{source}: a device is a string such as 'cpu' or 'cuda', got {type(spec).__name__}")
        try:
            dev = torch.device(spec.strip().lower())
        except RuntimeError:
            raise ValueError(f"{source}: {spec!r} is not a device; use 'cpu', 'cuda', 'cuda:<index>' or "
                             "'mps'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{source} asks for CUDA, but this machine has no usable CUDA GPU (torch "
                             f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}): use 'cpu'"
                             + (", or unset UNET_BOOK_DEVICE" if "UNET_BOOK_DEVICE" in source else ""))
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{source} asks for GPU {dev.index}, but this machine has "
                             f"{torch.cuda.device_count()} (cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise ValueError(f"{source} asks for Apple MPS, which this machine does not have: use 'cpu'")
    elif dev.type != "cpu":
        raise ValueError(f"{source}: the book runs on 'cpu', 'cuda' or 'mps', not {dev.type!r}")
    return dev


def device() -> torch.device:
    """``$UNET_BOOK_DEVICE`` if set, else CUDA, then Apple MPS, then CPU.

    Raises:
        ValueError: ``UNET_BOOK_DEVICE`` names no device, or one this machine does not have (e.g.
            ``cuda`` without a GPU); the message names the variable.
    """
    forced = os.environ.get("UNET_BOOK_DEVICE")
    if forced and forced.strip():
        return checked_device(forced, f"UNET_BOOK_DEVICE={forced}")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def replace(p: Profile, **changes) -> Profile:
    """A copy of ``p`` with some fields changed (for exercises and experiments)."""
    return dataclasses.replace(p, **changes)


def setup(seed: int = 0, name: str | None = None) -> tuple[Profile, torch.device]:
    """The first cell of every chapter: seed everything, choose the profile and the device, say so.

    Prints one standard line, e.g.
    ``profile cpu: 96 px images, width 16, 12 epochs, batch 16, lr 0.003 | device cpu (2 threads) | seed 0``.

    Args:
        seed: seeds Python, NumPy and PyTorch (:func:`unet_lib.train.seed_everything`).
        name: a profile name; default ``$UNET_BOOK_PROFILE`` (see :func:`profile`).

    On CUDA it also turns on ``torch.backends.cudnn.benchmark`` (the chapters train on batches of one
    fixed size, so the one-off kernel search pays back at once; results stay seeded, not bit-exact).

    Returns:
        ``(profile, device)``.
    """
    from .train import seed_everything  # train imports the models; config stays light to import

    p = profile(name)
    seed_everything(seed)
    dev = device()
    if dev.type == "cuda":
        # every chapter trains on fixed-size batches: cuDNN times its kernels once per shape and keeps the fastest
        torch.backends.cudnn.benchmark = True
    threads = f" ({torch.get_num_threads()} threads)" if dev.type == "cpu" else " (cudnn.benchmark)"
    print(f"profile {p.name}: {p.image_size} px images, width {p.features}, {p.max_epochs} epochs, "
          f"batch {p.batch_size}, lr {p.lr} | device {dev}{threads} | seed {seed}")
    return p, dev
