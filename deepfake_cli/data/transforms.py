"""Named, reproducibly seeded image transforms applied before the backbone, and `--align`.

Randomness is drawn from a generator seeded by (seed, image content hash), so a transform gives the
same result for the same image whatever the batch, order, worker count or resume point.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from deepfake_cli.data.decode import check_resize, shorter_side_size
from deepfake_cli.errors import DeepfakeError

DEFAULT_P = 0.5  # the study applied blur / jitter with probability 0.5
BLUR_SIGMA = (0.1, 3.0)
JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}
TRANSFORM_HELP = ("none | blur | jitter | blur+jitter (optionally @P, default P=0.5, e.g. blur@1.0) | "
                  "jpeg:Q | resize:S | scale:F (downscale by F, 0<F<1) | blur:SIGMA (fixed Gaussian blur); "
                  "steps join with '+'")

# The laundering sweep (`study` `laundering = true`; issue 19): what sharing and re-posting do to an image, by
# severity. Each is one test transform; a chain mimics a social platform (downscale, then JPEG).
LAUNDERING = {
    "jpeg": ["jpeg:95", "jpeg:85", "jpeg:75", "jpeg:65", "jpeg:50"],
    "downscale": ["scale:0.75", "scale:0.5", "scale:0.25"],
    "blur": ["blur:1", "blur:2", "blur:3"],
    "resize+jpeg": ["scale:0.75+jpeg:85", "scale:0.5+jpeg:75", "scale:0.25+jpeg:65"],
}


def laundering_family(spec: str) -> tuple[str, int] | None:
    """(family, severity rank from 1, mildest first) of a laundering transform, for the report's curves:
    `jpeg:75` -> ("jpeg", 3), `scale:0.5` -> ("downscale", 2); "none" -> ("none", 0); None for any other."""
    if spec == "none":
        return "none", 0
    for family, specs in LAUNDERING.items():
        if spec in specs:
            return family, specs.index(spec) + 1
    return None


def _rng(seed: int, digest: str, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, int(digest, 16), step])


@dataclass(frozen=True)
class Step:
    kind: str  # blur | jitter | jpeg | resize | scale | sigma (blur:SIGMA)
    p: float = 1.0
    value: float = 0

    def apply(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        if rng.random() >= self.p:
            return img
        if self.kind == "blur":
            return img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(*BLUR_SIGMA))))
        if self.kind == "jitter":
            import torchvision.transforms.functional as TF  # here, not at the top: `--help` stays torch-free

            b = rng.uniform(1 - JITTER["brightness"], 1 + JITTER["brightness"])
            c = rng.uniform(1 - JITTER["contrast"], 1 + JITTER["contrast"])
            s = rng.uniform(1 - JITTER["saturation"], 1 + JITTER["saturation"])
            h = rng.uniform(-JITTER["hue"], JITTER["hue"])
            for i in rng.permutation(4):  # random order, as torchvision's ColorJitter
                if i == 0:
                    img = TF.adjust_brightness(img, b)
                elif i == 1:
                    img = TF.adjust_contrast(img, c)
                elif i == 2:
                    img = TF.adjust_saturation(img, s)
                else:
                    img = TF.adjust_hue(img, h)
            return img
        if self.kind == "sigma":
            return img.filter(ImageFilter.GaussianBlur(radius=float(self.value)))
        if self.kind == "scale":
            w, h = img.size
            return img.resize((max(1, round(w * self.value)), max(1, round(h * self.value))), Image.Resampling.BICUBIC,
                              reducing_gap=None)
        if self.kind == "jpeg":
            return jpeg_roundtrip(img, self.value)
        if self.kind == "resize":
            return resize_shorter(img, self.value)
        raise AssertionError(self.kind)


class Transform:
    """A parsed transform spec; call it with (image, content hash)."""

    def __init__(self, spec: str = "none", seed: int = 0):
        self.spec = normalize_transform(spec)
        self.seed = int(seed)
        self.steps = _parse(self.spec)

    def __call__(self, img: Image.Image, digest: str) -> Image.Image:
        for i, step in enumerate(self.steps):
            img = step.apply(img, _rng(self.seed, digest, i))
        return img

    @property
    def is_identity(self) -> bool:
        return not self.steps

    def __repr__(self) -> str:
        return f"Transform({self.spec!r}, seed={self.seed})"


def _parse(spec: str) -> list[Step]:
    if spec == "none":
        return []
    steps = []
    for part in spec.split("+"):
        name, _, p = part.partition("@")
        if name in ("blur", "jitter"):
            steps.append(Step(name, float(p) if p else DEFAULT_P))
        elif name.startswith(("jpeg:", "resize:")):
            kind, _, value = name.partition(":")
            steps.append(Step(kind, 1.0, int(value)))
        elif name.startswith("scale:"):
            steps.append(Step("scale", 1.0, float(name[6:])))
        elif name.startswith("blur:"):  # a fixed sigma, always applied (the laundering sweep's blur)
            steps.append(Step("sigma", 1.0, float(name[5:])))
    return steps


def normalize_transform(spec: str | None) -> str:
    """Validate a spec and return its canonical text (recorded in files, used in cache keys)."""
    spec = (spec or "none").strip().lower().replace(" ", "")
    if spec in ("", "none"):
        return "none"
    parts = []
    for part in spec.split("+"):
        name, at, p = part.partition("@")
        if name in ("blur", "jitter"):
            try:
                prob = float(p) if at else DEFAULT_P
            except ValueError:
                raise DeepfakeError(f"bad probability in transform '{part}': use e.g. blur@0.5.") from None
            if not 0.0 <= prob <= 1.0:
                raise DeepfakeError(f"transform probability must be in 0..1, got '{part}'.")
            parts.append(f"{name}@{prob:g}")
            continue
        kind, colon, value = name.partition(":")
        if kind in ("scale", "blur") and colon and not at:
            try:
                f = float(value)
            except ValueError:
                f = -1.0
            if kind == "scale" and 0.0 < f < 1.0 or kind == "blur" and 0.0 < f <= 50.0:
                parts.append(f"{kind}:{f:g}")
                continue
            raise DeepfakeError(f"bad value in transform '{part}': scale:F takes 0<F<1, blur:SIGMA takes 0<SIGMA<=50.")
        if kind in ("jpeg", "resize") and colon and not at:
            try:
                v = int(value)
            except ValueError:
                v = -1
            if kind == "jpeg" and 1 <= v <= 100 or kind == "resize" and 8 <= v <= 8192:
                parts.append(f"{kind}:{v}")
                continue
            raise DeepfakeError(f"bad value in transform '{part}': jpeg:Q takes 1..100, resize:S takes 8..8192.")
        raise DeepfakeError(f"unknown transform '{part}'; expected {TRANSFORM_HELP}.")
    return "+".join(parts)


def jpeg_roundtrip(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out.convert("RGB")


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """The shorter side to `size` (bicubic); raises data.UnreadableImage past the resize budget."""
    w, h = img.size
    new = shorter_side_size(w, h, size)
    check_resize(w, h, *new)
    return img.resize(new, Image.Resampling.BICUBIC, reducing_gap=None)


def parse_align(spec: str | None) -> tuple[int, int] | None:
    """`SIZE:QUALITY` -> (size, quality); None / 'none' -> None."""
    if spec is None or str(spec).lower() in ("", "none"):
        return None
    size, _, quality = str(spec).partition(":")
    try:
        s, q = int(size), int(quality or 95)
    except ValueError:
        raise DeepfakeError(f"bad --align '{spec}': use SIZE:QUALITY, e.g. 256:90.") from None
    if not (8 <= s <= 8192 and 1 <= q <= 100):
        raise DeepfakeError(f"bad --align '{spec}': SIZE in 8..8192, QUALITY in 1..100.")
    return s, q


def align_image(img: Image.Image, align: tuple[int, int] | None) -> Image.Image:
    """Bring every image to one size and one encoding so file format and size stop being cues.

    Shorter side resized to SIZE, centre-cropped to SIZE x SIZE, then JPEG-encoded at QUALITY and
    decoded: real JPEGs and fake PNGs end up with the same pixel grid and the same compression.
    """
    if align is None:
        return img
    size, quality = align
    img = resize_shorter(img, size)
    left = (img.width - size) // 2
    top = (img.height - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return jpeg_roundtrip(img, quality)
