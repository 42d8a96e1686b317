"""The overlay PNG of an evidence map: the image under a diverging colour map (red: evidence for fake, blue:
for real, scaled to the map's largest magnitude), greyed where the model never saw the pixel (NaN)."""

from __future__ import annotations

import numpy as np
from PIL import Image

ALPHA = 0.55     # the colour's share where the map is strongest
COLORMAP = "RdBu_r"


def overlay(img: Image.Image, evidence: np.ndarray, alpha: float = ALPHA) -> Image.Image:
    """RGB image of the file's size: the map over the image; |value| sets the colour's opacity."""
    from matplotlib import colormaps  # matplotlib is a dependency; imported when an overlay is drawn

    base = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
    m = np.asarray(evidence, dtype=np.float64)
    if m.shape != base.shape[:2]:
        raise ValueError(f"map {m.shape} does not match the image {base.shape[:2]}")
    seen = np.isfinite(m)
    scale = float(np.abs(m[seen]).max()) if seen.any() else 0.0
    z = np.where(seen, m / scale if scale > 0 else 0.0, 0.0)
    colour = colormaps[COLORMAP]((z + 1) / 2)[..., :3]
    weight = (alpha * np.abs(z))[..., None]
    out = base * (1 - weight) + colour * weight
    grey = base.mean(axis=2, keepdims=True) * 0.5 + 0.25  # never seen: washed-out grey, so it reads as "no data"
    out = np.where(seen[..., None], out, grey)
    return Image.fromarray(np.uint8(np.clip(out * 255 + 0.5, 0, 255)))
