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
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

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

    from deepfake_cli.features import read_features

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
