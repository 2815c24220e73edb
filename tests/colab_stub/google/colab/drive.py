"""A stand-in for ``google.colab.drive``: ``mount`` makes ``<mountpoint>/MyDrive`` a link to the folder named
by ``$COLAB_STUB_DRIVE``, which plays the student's Google Drive (it outlives the "runtime")."""
import os
from pathlib import Path


def mount(mountpoint: str, force_remount: bool = False, timeout_ms: int = 120000, readonly: bool = False) -> None:
    store = Path(os.environ["COLAB_STUB_DRIVE"])
    point = Path(mountpoint)
    point.mkdir(parents=True, exist_ok=True)
    if not (point / "MyDrive").exists():
        (point / "MyDrive").symlink_to(store, target_is_directory=True)
    print(f"Mounted at {mountpoint}")
