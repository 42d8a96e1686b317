"""Occlusion: the map for any model (kNN, forests, kernel SVMs, reducers, several layers, joined backbones).

A square patch, filled with the normalised mean (zeros after the backbone's normalisation: the average
input, no edge of its own), slides over the model's S x S input frame on a grid: patch = ceil(S / grid),
stride = patch // 2, the last row and column flush with the frame's edge. Each occluded copy goes through
the backbone and the whole model; a pixel's value is the mean, over the patches covering it, of
p_fake(original) - p_fake(occluded): > 0 where hiding it lowers p_fake (evidence for fake). Cost: one
forward pass per patch position, `passes(S, grid)` per image ((2 grid - 1)^2 for a frame the patch
divides: 169 at grid 7), batched.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

DEFAULT_GRID = 7


def positions(size: int, grid: int) -> tuple[int, list[int]]:
    """(patch side, the patch's top/left offsets along one axis)."""
    patch = max(1, math.ceil(size / max(1, int(grid))))
    stride = max(1, patch // 2)
    starts = list(range(0, max(size - patch, 0) + 1, stride))
    if starts[-1] + patch < size:
        starts.append(size - patch)
    return patch, starts


def passes(size: int, grid: int) -> int:
    """Forward passes per image: one per patch position."""
    return len(positions(size, grid)[1]) ** 2


def occlusion_maps(x: torch.Tensor, p0: np.ndarray, p_fake_of: Callable[[torch.Tensor], np.ndarray],
                   grid: int = DEFAULT_GRID, batch_size: int = 32) -> np.ndarray:
    """(B, S, S) float64 maps for a batch `x` (B, C, S, S, normalised) whose p_fake is `p0`;
    `p_fake_of(batch)` gives the model's p_fake of a batch of inputs."""
    b, _, h, w = x.shape
    patch_h, rows = positions(h, grid)
    patch_w, cols = positions(w, grid)
    boxes = [(r, c) for r in rows for c in cols]
    out = np.zeros((b, h, w), dtype=np.float64)
    count = np.zeros((h, w), dtype=np.float64)
    for r, c in boxes:
        count[r:r + patch_h, c:c + patch_w] += 1
    for i in range(b):
        acc = np.zeros((h, w), dtype=np.float64)
        for start in range(0, len(boxes), batch_size):
            chunk = boxes[start:start + batch_size]
            occluded = x[i:i + 1].repeat(len(chunk), 1, 1, 1)
            for k, (r, c) in enumerate(chunk):
                occluded[k, :, r:r + patch_h, c:c + patch_w] = 0  # the normalised mean
            drop = float(p0[i]) - np.asarray(p_fake_of(occluded), dtype=np.float64)
            for (r, c), d in zip(chunk, drop):
                acc[r:r + patch_h, c:c + patch_w] += d
        out[i] = acc / np.maximum(count, 1)
    return out
