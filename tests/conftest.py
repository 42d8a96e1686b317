"""Shared fixtures: real images shipped in examples/data, copied into small temporary datasets.

Tests use `example_set` (always present in a clone). The few tests that truly need the larger sets
in ../shared/data (or $DEEPFAKE_SHARED_DATA) call `shared_set` and carry `@pytest.mark.shared_data`;
they are skipped where those sets are absent.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# At most 2 threads; under pytest-xdist the cores are shared among the workers, and OpenMP pools
# (scikit-learn's histogram boosting) too, set before anything loads them: no oversubscription.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, (os.cpu_count() or 1) // _WORKERS))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))

import torch  # noqa: E402  (after OMP_NUM_THREADS)

torch.set_num_threads(_THREADS)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DEEPFAKE_SHARED_DATA", REPO.parent / "shared" / "data"))
EXAMPLES = REPO / "examples" / "data"


EXAMPLE_SETS = ("cifake_sd14", "forensynths_biggan", "forensynths_stylegan")


def example_set(name: str) -> Path:
    """One of the labelled sets shipped in examples/data (20 real + 20 fake, or 24 + 24 for CIFAKE)."""
    if name not in EXAMPLE_SETS:
        raise ValueError(f"{name} is not shipped in examples/data; choose from {EXAMPLE_SETS}")
    return EXAMPLES / name


def shared_set(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"shared test data not found at {path}")
    return path


def copy_subset(src: Path, dst: Path, n: int, classes=("real", "fake")) -> Path:
    """Copy the first `n` images of each class of a shared set into `dst/<class>/`."""
    for cls in classes:
        (dst / cls).mkdir(parents=True, exist_ok=True)
        for p in sorted((src / cls).iterdir())[:n]:
            shutil.copy(p, dst / cls / p.name)
    return dst


def assert_same_features(a_path, b_path, exact: bool = True):
    """Two feature files hold the same rows in the same order and the same metadata (but the creation
    time); `exact=False`: features equal up to float rounding (another process, another thread count)."""
    import numpy as np

    from deepfake_cli.store.features import read_features

    a, b = read_features(a_path), read_features(b_path)
    for col in ("y", "dataset", "path", "sha256"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))
    if exact:
        np.testing.assert_array_equal(a.X, b.X)
    else:
        np.testing.assert_allclose(a.X, b.X, rtol=1e-4, atol=1e-5)
    ma, mb = dict(a.meta), dict(b.meta)
    ma.pop("created"), mb.pop("created")
    assert ma == mb
    return a


# An xdist worker starts with COLUMNS=80 and LINES=24 in its environment (GNU readline sets them when it is
# imported), which would wrap the CLI's output at 80 columns in the workers only: a worker takes the
# controller's values instead.
_TERMINAL_VARS = ("COLUMNS", "LINES")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):  # xdist, in the controller
    node.workerinput["terminal_vars"] = {k: os.environ.get(k) for k in _TERMINAL_VARS}


def pytest_configure(config):
    for key, value in getattr(config, "workerinput", {}).get("terminal_vars", {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def pytest_collection_modifyitems(config, items):
    """Files with slow tests first (order kept within a file): under `--dist worksteal` they start at once
    at the front of a worker's queue, where no idle worker steals them (it steals from the tail), so the
    README commands, which build on one another, stay together and no long file starts last."""
    slow_files = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    chain = "tests/test_readme_examples.py"  # the longest chain of tests that build on one another: first
    items.sort(key=lambda item: (item.nodeid.split("::")[0] != chain, item.nodeid.split("::")[0] not in slow_files))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared test data not found at {SHARED}")
    return SHARED


@pytest.fixture
def small_sets(tmp_path):
    """Two small labelled datasets of real images: BigGAN (PNG) and CIFAKE (JPEG), 6 per class."""
    a = copy_subset(example_set("forensynths_biggan"), tmp_path / "biggan", 6)
    b = copy_subset(example_set("cifake_sd14"), tmp_path / "cifake", 6)
    return a, b


# --- backbones (tests/test_backbones.py, tests/test_backbones_hub.py) ------------------------------

def _first(folder: Path, n: int = 1) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())[:n]


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    """Real and generated images of different sizes and formats, as PIL images (read-only: a test that
    changes one works on a copy)."""
    from PIL import Image

    from tests.helpers import odd_jpeg

    paths = {
        "biggan_real": _first(example_set("forensynths_biggan") / "real")[0],  # 248x248 PNG
        "biggan_fake": _first(example_set("forensynths_biggan") / "fake")[0],
        "cifake_fake": _first(example_set("cifake_sd14") / "fake")[0],  # 32x32 JPEG
    }
    out = {k: Image.open(p).convert("RGB") for k, p in paths.items()}
    out["odd_jpeg"] = odd_jpeg(_first(example_set("forensynths_stylegan") / "real")[0],
                               tmp_path_factory.mktemp("img") / "odd.jpg")
    return out


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests: the machine is shared, and ViT-B runs stay predictable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def clean_weights_env(monkeypatch, tmp_path):
    """No user env var leaks into a test; caches point at empty folders unless a test says otherwise."""
    for v in [v for v in os.environ if v.startswith("DEEPFAKE_WEIGHTS_")] + ["HF_HUB_CACHE", "DEEPFAKE_OFFLINE"]:
        monkeypatch.delenv(v, raising=False)
    for v in ("TORCH_HOME", "HF_HOME", "XDG_CACHE_HOME", "HOME"):
        monkeypatch.setenv(v, str(tmp_path / "cache" / v.lower()))


# --- features extracted once per session (per xdist worker) ----------------------------------------
# Read-only: a test that writes to one of these files or folders copies it into its own tmp_path first.

def _lowlevel(images: Path, out: Path) -> Path:
    from deepfake_cli.stages.extract import extract

    extract([str(images)], backbone="lowlevel", out=str(out), device="cpu", workers=0)
    return out


@pytest.fixture(scope="session")
def cifake_lowlevel(tmp_path_factory) -> dict:
    """All 48 CIFAKE examples (24 real, 24 Stable Diffusion) copied to `cifake/`, and their `lowlevel`
    features (dataset `cifake`)."""
    root = tmp_path_factory.mktemp("cifake_lowlevel")
    images = copy_subset(example_set("cifake_sd14"), root / "cifake", 24)
    return {"images": images, "features": _lowlevel(images, root / "ll.h5")}


@pytest.fixture(scope="session")
def biggan6_lowlevel(tmp_path_factory) -> dict:
    """6 real + 6 BigGAN examples copied to `biggan/`, and their `lowlevel` features (dataset `biggan`)."""
    root = tmp_path_factory.mktemp("biggan6_lowlevel")
    images = copy_subset(example_set("forensynths_biggan"), root / "biggan", 6)
    return {"images": images, "features": _lowlevel(images, root / "ll.h5")}


@pytest.fixture(scope="session")
def cifake8_lda(tmp_path_factory) -> dict:
    """The cheapest real model: a `lowlevel` LDA trained on 8 + 8 CIFAKE examples (a quarter held out),
    and its feature file."""
    from deepfake_cli.stages.train import train

    root = tmp_path_factory.mktemp("cifake8_lda")
    feats = _lowlevel(copy_subset(example_set("cifake_sd14"), root / "cifake", 8), root / "f.h5")
    return {"model": train(str(feats), "lda", str(root / "lda.model"), test_size=0.25)[0].path, "features": feats}
