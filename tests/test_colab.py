"""Colab, emulated: a chapter alone in an empty folder, in a fresh Python environment with no checkout on its
path, whose setup cell installs ``unet_lib`` with pip from a ``git+file://`` URL of this repository and keeps
its data, results and checkpoints in a stand-in Google Drive (``tests/colab_stub``).

What it proves (issue #13): the setup cell installs and imports the package and prints its version; everything
the package needs at run time ships inside it; ``USE_DRIVE = True`` puts results and checkpoints in Drive; a
second runtime on the same Drive resumes every training instead of repeating it and ends with the same numbers;
and an install that fails stops at the setup cell with a message that names the URL, ``_config.yml`` and what to
do instead, not with a ``ModuleNotFoundError`` one cell later.

The fresh environment is a new venv whose dependencies (torch, numpy, Jupyter ...) come from this checkout's
``.venv`` through a ``.pth`` file pointing at a view of its ``site-packages`` without ``unet_lib`` (no
download, no second copy of torch). pip installs the committed ``HEAD`` of this repository, as Colab installs
the pushed ``main``: commit before running this test locally.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
STUB = Path(__file__).resolve().parent / "colab_stub"
NOTEBOOK = ROOT / "notebooks" / "02_fcn.ipynb"
OWN = ("unet_lib", "__editable__", "__editable___unet_lib")   # this checkout's editable install: not in the view

RUNNER = r"""
import json, sys
import nbclient, nbformat
path, out = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
failed = None
try:
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
except nbclient.exceptions.CellExecutionError as e:
    failed = {"cell": next(i for i, c in enumerate(nb.cells) if any(o.get("output_type") == "error"
                                                                     for o in c.get("outputs", []))),
              "error": str(e)}
nbformat.write(nb, out)
print(json.dumps({"failed": failed}))
"""


def _git_head() -> str | None:
    if shutil.which("git") is None:
        return None
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """A fresh venv (the Colab runtime's Python) and the environment a Colab kernel would see."""
    if _git_head() is None:
        pytest.skip("the Colab emulation installs from git+file:// of this repository: not a git checkout here")
    base = tmp_path_factory.mktemp("colab")
    site = Path(sysconfig.get_paths()["purelib"])
    view = base / "deps"                       # this checkout's site-packages, minus unet_lib itself
    view.mkdir()
    for entry in site.iterdir():
        if not entry.name.startswith(OWN):
            (view / entry.name).symlink_to(entry)
    venv = base / "venv"
    # without a pip of its own: `python -m pip` is the view's, a current pip as Colab has (the one that
    # ensurepip bundles with Python 3.11 rejects a "name @ git+file:///..." requirement)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    venv_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                    check=True, capture_output=True, text=True).stdout.strip())
    (venv_site / "zz_book_dependencies.pth").write_text(f"{view}\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UNET_BOOK_", "PYTHON", "VIRTUAL_ENV", "JUPYTER", "IPYTHON", "PIP_"))}
    env.update({
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(STUB),                       # google.colab, imported at start as in Colab
        "JUPYTER_PATH": str(base / "jupyter"), "JUPYTER_DATA_DIR": str(base / "jupyter"),
        "JUPYTER_CONFIG_DIR": str(base / "jupyter-config"), "IPYTHONDIR": str(base / "ipython"),
        "PIP_NO_BUILD_ISOLATION": "0",                 # pip's spelling of --no-build-isolation: setuptools is in view
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "UNET_BOOK_PROFILE": "smoke", "OMP_NUM_THREADS": "1",
        "UNET_BOOK_DRIVE_MOUNT": str(base / "content" / "drive"),
        "UNET_BOOK_INSTALL": f"unet_lib @ git+file://{ROOT}",
    })
    done = subprocess.run([str(python), "-c", "import unet_lib"], cwd=base, env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "No module named 'unet_lib'" in done.stderr, \
        "the fresh environment must not see this checkout's unet_lib before the setup cell installs it"
    return {"base": base, "python": python, "env": env, "site": venv_site}


def run_alone(colab, name: str, *, use_drive: bool, env: dict | None = None) -> tuple[nbformat.NotebookNode, dict]:
    """Chapter 02, alone in an empty folder, executed by the fresh venv's kernel; returns it and its failure."""
    folder = colab["base"] / name
    folder.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert "USE_DRIVE = False" in nb.cells[1].source
    nb.cells[1].source = nb.cells[1].source.replace("USE_DRIVE = False", f"USE_DRIVE = {use_drive}")
    nbformat.write(nb, folder / NOTEBOOK.name)
    (folder / "runner.py").write_text(RUNNER)
    done = subprocess.run([str(colab["python"]), "runner.py", NOTEBOOK.name, "executed.ipynb"], cwd=folder,
                          env={**colab["env"], **(env or {})}, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    return nbformat.read(folder / "executed.ipynb", as_version=4), json.loads(done.stdout.strip().splitlines()[-1])


def text_of(cell) -> str:
    return "".join(o.get("text", "") + "".join(o.get("traceback", [])) + str(o.get("data", {}).get("text/plain", ""))
                   for o in cell.get("outputs", []))


def test_a_failing_install_stops_at_the_setup_cell_and_says_why(colab):
    url = "unet_lib @ git+file:///nonexistent/unet-book"
    nb, outcome = run_alone(colab, "no-install", use_drive=False, env={"UNET_BOOK_INSTALL": url})
    assert outcome["failed"] and outcome["failed"]["cell"] == 1, outcome
    message = outcome["failed"]["error"]
    print(message[-1500:])                             # shown with pytest -s: the student's view of it
    assert f"pip could not install the book's library from {url!r}" in message
    assert "_config.yml (repository: url)" in message and "UNET_BOOK_INSTALL" in message and ".whl" in message
    assert "ModuleNotFoundError" not in message
    committed = nbformat.read(NOTEBOOK, as_version=4)
    assert [c.get("outputs") for c in nb.cells[2:]] == [c.get("outputs") for c in committed.cells[2:]], \
        "nothing ran after the setup cell"


def test_chapter_alone_in_colab_with_drive_installs_persists_and_resumes(colab, data_root):
    drive = colab["base"] / "drive-store"              # the student's Google Drive, with the datasets in it
    (drive / "unet-book").mkdir(parents=True)
    (drive / "unet-book" / "data").symlink_to(data_root, target_is_directory=True)
    env = {"COLAB_STUB_DRIVE": str(drive)}

    nb, outcome = run_alone(colab, "runtime-1", use_drive=True, env=env)
    assert outcome["failed"] is None, outcome["failed"] and outcome["failed"]["error"][-3000:]
    setup = text_of(nb.cells[1])
    assert "Mounted at" in setup and "Google Drive: data, results and checkpoints in" in setup
    assert f"unet_lib 0.1.0, installed from unet_lib @ git+file://{ROOT}" in setup, setup
    assert (colab["site"] / "unet_lib" / "manifests").is_dir(), "pip installed a copy (with its data files)"
    results = drive / "unet-book" / "results" / "02_fcn.smoke.json"
    assert results.exists(), "the results went to Drive"
    first = json.loads(results.read_text())
    assert first["provenance"]["git_commit"] == _git_head(), "the results name the commit pip installed"
    checkpoints = drive / "unet-book" / "checkpoints" / "02_fcn" / "smoke"
    trainings = sorted(last.parent.name for last in checkpoints.glob("*/last.pt"))
    assert trainings == sorted(["FCN-32s", "FCN-16s", "FCN-8s", "U-Net"]), trainings
    assert not list(colab["base"].glob("runtime-1/results")), "nothing was written beside the notebook"

    # the runtime is gone; a new one on the same Drive finds the data, and every training is resumed, not redone
    nb, outcome = run_alone(colab, "runtime-2", use_drive=True, env=env)
    assert outcome["failed"] is None, outcome["failed"] and outcome["failed"]["error"][-3000:]
    resumed = "\n".join(text_of(c) for c in nb.cells)
    assert resumed.count("nothing left to train") == len(trainings), resumed[-3000:]
    second = json.loads(results.read_text())
    assert second["numbers"] == first["numbers"] and second["headline"] == first["headline"]
