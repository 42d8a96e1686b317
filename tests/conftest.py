"""Shared fixtures: real images from ../shared/data, copied into small temporary datasets."""

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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared test data not found at {SHARED}")
    return SHARED


@pytest.fixture
def small_sets(tmp_path):
    """Two small labelled datasets of real images: BigGAN (PNG) and CIFAKE (JPEG), 6 per class."""
    a = copy_subset(shared_set("forensynths_biggan"), tmp_path / "biggan", 6)
    b = copy_subset(shared_set("cifake_sd14"), tmp_path / "cifake", 6)
    return a, b
