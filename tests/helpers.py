"""Helpers shared by several test files (fixtures live in conftest.py): cheap image statistics, an odd-sized
photo, and the registry-derived lists the parametrized tests run over, so a new classifier, reducer or
backbone is tested without editing a list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def pixel_stats(path: Path) -> np.ndarray:
    """13 cheap statistics of a 96x96 centre crop at native resolution: colour, high-pass residual, 8x8 blockiness."""
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    h, w, _ = a.shape
    c = a[max(0, h // 2 - 48): h // 2 + 48, max(0, w // 2 - 48): w // 2 + 48]
    r = c[1:-1, 1:-1] - (c[:-2, 1:-1] + c[2:, 1:-1] + c[1:-1, :-2] + c[1:-1, 2:]) / 4
    dx = np.abs(np.diff(c.mean(2), axis=1))
    return np.concatenate([c.mean((0, 1)), c.std((0, 1)), np.abs(r).mean((0, 1)), r.std((0, 1)),
                           [dx[:, 7::8].mean() / (dx.mean() + 1e-6)]])


def odd_jpeg(src: Path, path: Path) -> Image.Image:
    """The photo `src` as a non-square JPEG of odd size (333x251), as cameras and scrapers deliver them."""
    Image.open(src).convert("RGB").resize((333, 251), Image.BICUBIC).save(path, quality=87)
    return Image.open(path).convert("RGB")


# --- the registries, as the parametrized tests see them ----------------------------------------------

def classifier_names(opt_in: bool = False) -> list[str]:
    """Registered classifiers in registry order: those `all` trains (default), or the opt-in ones (they
    apply only to some features: fusion to joined backbones, zero-shot to CLIP features)."""
    from deepfake_cli.classifiers import CLASSIFIERS

    return [e.name for e in CLASSIFIERS.entries() if ("opt_in" in e.capabilities) == opt_in]


def capability_kwargs(entry, seed: int = 0) -> dict:
    """What a caller passes an entry for its capabilities in a test: the seed, and the CPU as device."""
    return {**({"random_state": seed} if "random_state" in entry.capabilities else {}),
            **({"device": "cpu"} if "device" in entry.capabilities else {})}


# --- a small study ------------------------------------------------------------------------------------

def small_study_config(path: Path, datasets: dict[str, str], test_transforms: str = '["none"]',
                       reducers: str = '["none"]', classifiers: str = '["lda"]', extra_grid: str = "") -> Path:
    """The study config the study, report and escaping tests run: lowlevel features of a few images per
    dataset, 30% held out, cross-dataset rows; `datasets` maps a name to its TOML value (already quoted)."""
    lines = "\n".join(f"{name} = {value}" for name, value in datasets.items())
    path.write_text(f"""
[study]
seed = 0
test_size = 0.3
cross_dataset = true
device = "cpu"
batch_size = 8

[datasets]
{lines}

[grid]
backbones = ["lowlevel"]
train_transforms = ["none"]
test_transforms = {test_transforms}
reducers = {reducers}
classifiers = {classifiers}
{extra_grid}
""")
    return path
