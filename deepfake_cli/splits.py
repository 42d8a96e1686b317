"""Seeded splits of a feature file: stratified by label and grouped by content hash, so identical bytes
never sit on both sides of a split. `train` uses them to hold out a test part of each dataset and a
validation part of the rest; `study` uses the same split so its reducers never see held-out images.
"""

from __future__ import annotations

import zlib

import numpy as np

from deepfake_cli.features import FeatureSet


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
