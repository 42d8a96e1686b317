"""A generated set with a planted shortcut: textured real images, and fakes that differ from them only by a
small bright marker (a random place in each fake, or one fixed corner), so a detector trained on it can only
rest on the marker, and its evidence map can be checked against where the marker is.

Used by the evidence-map tests (tests/test_explain.py) and the shortcut audit (the corner variant).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive), in the image's own pixels


def textured(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A varied natural-looking texture (uint8 HxWx3): a few random colour gratings over a smooth colour
    field, plus fine noise; no two images share a palette, so no global colour tells the classes apart."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 170, size=3).astype(np.float32)
    img = np.broadcast_to(base, (height, width, 3)).copy()
    for _ in range(int(rng.integers(2, 5))):
        theta, freq, phase = rng.uniform(0, np.pi), rng.uniform(0.03, 0.35), rng.uniform(0, 2 * np.pi)
        wave = np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)
        img += wave[..., None] * rng.uniform(-30, 30, size=3).astype(np.float32)
    # a smooth low-frequency blob field: large-scale structure as in photos
    coarse = rng.normal(0, 25, size=(4, 4, 3)).astype(np.float32)
    img += np.asarray(Image.fromarray(np.uint8(np.clip(coarse + 128, 0, 255))).resize((width, height), Image.BICUBIC),
                      dtype=np.float32) - 128
    img += rng.normal(0, 6, size=img.shape).astype(np.float32)
    # keep the texture below the marker's brightness: the marker is the one saturated patch
    return np.uint8(np.clip(img, 0, 215))


def plant_marker(img: np.ndarray, box: Box) -> None:
    """A small bright marker in place: white with a yellow cross, saturated, unlike anything in the texture."""
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = 255
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    t = max(1, (y1 - y0) // 6)
    img[cy - t:cy + t, x0:x1, 2] = 0
    img[y0:y1, cx - t:cx + t, 2] = 0


def make_marker_set(root: Path | str, n_real: int, n_fake: int, *, corner: bool = False, seed: int = 0,
                    size: int | tuple[int, int] = 128, marker: float = 1 / 8, fmt: str = "png",
                    ) -> list[tuple[Path, Box | None]]:
    """Write `n_real` textured images to `root/real/` and `n_fake` to `root/fake/`, each fake with one bright
    square marker of side `marker` x the shorter side; returns [(path, marker box or None)], reals first.

    The marker sits at a random place in each fake (inside the centre 86% of the image, so a 224-of-256 centre
    crop, the CNN backbones' view, never cuts it), or with `corner=True` in the same top-left corner of
    every fake (a watermark-like shortcut). `size`: side, or (width, height). Deterministic given `seed`.
    """
    root = Path(root)
    width, height = (size, size) if isinstance(size, int) else size
    side = max(4, round(marker * min(width, height)))
    rng = np.random.default_rng(seed)
    out: list[tuple[Path, Box | None]] = []
    for cls, n in (("real", n_real), ("fake", n_fake)):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = textured(rng, width, height)
            box: Box | None = None
            if cls == "fake":
                if corner:
                    mx, my = round(0.08 * width), round(0.08 * height)
                    x0, y0 = mx, my
                else:
                    mx, my = int(np.ceil(0.07 * width)), int(np.ceil(0.07 * height))
                    x0 = int(rng.integers(mx, width - mx - side + 1))
                    y0 = int(rng.integers(my, height - my - side + 1))
                box = (x0, y0, x0 + side, y0 + side)
                plant_marker(img, box)
            path = root / cls / f"{cls}_{i:03d}.{fmt}"
            Image.fromarray(img).save(path)
            out.append((path, box))
    return out
