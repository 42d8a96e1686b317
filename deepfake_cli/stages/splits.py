"""Seeded splits of a feature file: stratified by label and grouped by content hash, so identical bytes
never sit on both sides of a split. `train` uses them to hold out a test part of each dataset and a
validation part of the rest (`train_val_split`, which `finetune` shares so both hold out the same
images); `study` uses the same held-out split so its reducers never see held-out images.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.features import FeatureSet


def split_groups(sha256, y, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of rows picked for the smaller side of a split, stratified by y, grouped by sha256.

    Each class keeps round(fraction * groups) of its distinct contents (at least one, and never all,
    when it has two or more). Contents carrying both labels are never picked (they stay on the big side).
    """
    sha256 = np.asarray(sha256)
    y = np.asarray(y)
    picked = np.zeros(len(y), dtype=bool)
    if fraction <= 0:
        return picked
    label_of: dict[str, set] = {}
    for s, lab in zip(sha256.tolist(), y.tolist()):
        label_of.setdefault(s, set()).add(lab)
    chosen: set[str] = set()
    for lab in sorted(set(y.tolist())):
        groups = sorted(s for s, labs in label_of.items() if labs == {lab})
        if len(groups) < 2:
            continue
        k = min(len(groups) - 1, max(1, int(round(fraction * len(groups)))))
        chosen.update(groups[i] for i in rng.permutation(len(groups))[:k])
    picked[np.isin(sha256, list(chosen))] = True
    return picked


def heldout_split(fs: FeatureSet, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_mask, test_mask) over the labelled rows of `fs`; see the module docstring."""
    labelled = fs.y >= 0
    test = np.zeros(len(fs.y), dtype=bool)
    for name in fs.datasets:
        rows = np.flatnonzero(labelled & (fs.dataset == name))
        # one generator per dataset, so adding a dataset never changes another's split
        rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
        test[rows[split_groups(fs.sha256[rows], fs.y[rows], test_size, rng)]] = True
    held_hashes = set(fs.sha256[test].tolist())
    train = labelled & ~test & ~np.isin(fs.sha256, list(held_hashes))
    return train, test


@dataclass
class TrainSplit:
    tr_idx: np.ndarray     # the training part (fit + validation)
    fit_idx: np.ndarray    # what the model is fitted on
    val_idx: np.ndarray    # chooses the threshold (and, for `finetune`, the best epoch)
    test_mask: np.ndarray  # held out for `eval`


def train_val_split(fs: FeatureSet, test_size: float, val_size: float, seed: int,
                    datasets: list[str] | None = None, stage: str = "Training") -> TrainSplit:
    """The held-out, training, validation and fit parts of `fs`, as `train` and `finetune` split it.

    `heldout_split` holds out the test part; a seeded `val_size` of the rest (rng [seed, 1]) is the
    validation part; the fit part is the rest minus every content in validation. With `datasets`, both
    the training part and the fit part must hold real and fake images, else a DeepfakeError that begins
    with `stage` and names the datasets.
    """
    train_mask, test_mask = heldout_split(fs, test_size, seed)
    if datasets is not None:
        check_classes(fs.y[train_mask], datasets, stage)
    tr_idx = np.flatnonzero(train_mask)
    val_rng = np.random.default_rng([int(seed), 1])
    val_local = split_groups(fs.sha256[tr_idx], fs.y[tr_idx], val_size, val_rng)
    # contents in validation leave the fit part entirely (duplicates may sit in other datasets)
    val_hashes = set(fs.sha256[tr_idx[val_local]].tolist())
    fit_idx = tr_idx[~np.isin(fs.sha256[tr_idx], list(val_hashes))]
    if datasets is not None:
        check_classes(fs.y[fit_idx], datasets, stage)
    return TrainSplit(tr_idx, fit_idx, tr_idx[val_local], test_mask)


def check_classes(y: np.ndarray, datasets: list[str], stage: str = "Training") -> None:
    """DeepfakeError unless the labels `y` of a training part hold both real (0) and fake (1) images."""
    n_real, n_fake = int((y == 0).sum()), int((y == 1).sum())
    if n_real == 0 or n_fake == 0:
        raise DeepfakeError(f"{stage} needs labelled real and fake images; datasets {', '.join(datasets)} have "
                            f"{n_real} real and {n_fake} fake for training.")
