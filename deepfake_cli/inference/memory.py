"""Images already in memory (PIL images, numpy arrays, torch tensors) as items the reader takes.

`ImageReader.read` reads an `ImageItem` from its file (bytes -> hash -> decode) and a `MemoryImage`
from memory; everything after that (align, the seeded transform, the backbone's resize, crop and
normalisation, the mapper, the runner) is the same code, so an image held in memory gives exactly the
features its file gives, when the pixels are the same.

Conventions (the public API documents them, `deepfake_cli.api`):

* a PIL image is decoded as a file is: EXIF orientation applied, then `data.to_rgb` (16-bit scaled,
  transparency composited on white, palette / CMYK / grayscale converted);
* a numpy array is H x W x 3 (RGB), H x W (grayscale) or H x W x 4 (RGBA), uint8 or float in [0, 1];
  a 4-d array is a batch (N x H x W x C);
* a torch tensor is C x H x W or a batch N x C x H x W (C = 1 or 3), uint8 or float in [0, 1] (what
  `torchvision.transforms.ToTensor` gives); floats are brought to 8 bits as round(x * 255), since every
  image the pipeline reads is 8-bit RGB.

The content hash of an in-memory image is `sha256(b"deepfake-cli:rgb8:H:W\\n" + RGB bytes)`: the pixels,
not a file's bytes, so it differs from the hash of the file the image came from. Random transforms
(`blur`, `jitter`) are seeded by this hash, so under them an in-memory image draws other random numbers
than its file does; with `none`, `jpeg:Q`, `resize:S` and `--align` the features are identical.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from PIL import Image, ImageOps

from deepfake_cli.data import UNKNOWN, ImageItem, check_pixels, collect_files, to_rgb
from deepfake_cli.errors import DeepfakeError


@dataclass(frozen=True, eq=False)
class MemoryImage:
    """One decoded image held in memory: `rgb` (H, W, 3) uint8, the name results give it and its hash."""

    rgb: np.ndarray
    rel: str
    sha256: str = ""
    label: int = UNKNOWN
    member: None = None
    path: None = field(default=None, repr=False)

    def __post_init__(self):
        if not self.sha256:
            object.__setattr__(self, "sha256", pixels_sha256(self.rgb))

    def read(self) -> tuple[Image.Image, str]:
        """(RGB PIL image, content hash), as `data.read_item` gives for a file."""
        h, w = self.rgb.shape[:2]
        check_pixels(w, h)
        return Image.fromarray(self.rgb, "RGB"), self.sha256


def pixels_sha256(rgb: np.ndarray) -> str:
    """The content hash of an in-memory RGB image (its shape and pixels; not a file hash)."""
    h, w = rgb.shape[:2]
    digest = hashlib.sha256(f"deepfake-cli:rgb8:{h}:{w}\n".encode())
    digest.update(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "dim")


def _quantize(arr: np.ndarray, what: str) -> np.ndarray:
    """uint8 as is; bool as 0/255; float in [0, 1] -> round(x * 255); anything else refused."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if arr.size and not np.isfinite(arr).all():
            raise DeepfakeError(f"{what} holds NaN or infinite values.")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo < 0 or hi > 1:
            raise DeepfakeError(f"{what} is float with values in [{lo:.3g}, {hi:.3g}]; float images must be in "
                                "[0, 1] (pass images before any normalisation, or uint8 values 0-255).")
        return np.rint(arr * 255.0).astype(np.uint8)
    raise DeepfakeError(f"{what} has dtype {arr.dtype}; pass uint8 (0-255) or float in [0, 1].")


def _hwc_to_rgb(arr: np.ndarray, what: str) -> np.ndarray:
    """One H x W, H x W x 1, H x W x 3 or H x W x 4 array -> (H, W, 3) uint8 RGB."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return np.ascontiguousarray(np.repeat(_quantize(arr, what)[:, :, None], 3, axis=2))
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise DeepfakeError(f"{what} has shape {tuple(arr.shape)}; an image array is H x W x 3 (RGB), H x W "
                            "(grayscale) or H x W x 4 (RGBA), and a batch N x H x W x 3.")
    arr = _quantize(arr, what)
    if arr.shape[2] == 4:
        return np.asarray(to_rgb(Image.fromarray(np.ascontiguousarray(arr), "RGBA")))
    return np.ascontiguousarray(arr)


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """A PIL image -> (H, W, 3) uint8, decoded as a file is (EXIF orientation, then `to_rgb`)."""
    check_pixels(img.width, img.height)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 -- as data.decode_image: a broken EXIF block keeps the image
        pass
    return np.asarray(to_rgb(img))


def tensor_images(t: Any, what: str) -> list[np.ndarray]:
    """A C x H x W tensor or an N x C x H x W batch -> list of (H, W, 3) uint8 arrays."""
    arr = t.detach().cpu()
    if arr.dim() == 3:
        arr = arr.unsqueeze(0)
    if arr.dim() != 4 or arr.shape[1] not in (1, 3):
        raise DeepfakeError(f"{what} has shape {tuple(arr.shape)}; a tensor image is C x H x W and a batch "
                            "N x C x H x W, with C = 3 (RGB) or 1, uint8 or float in [0, 1].")
    if arr.is_floating_point():
        arr = arr.float()
    arr = arr.numpy().transpose(0, 2, 3, 1)
    return [_hwc_to_rgb(a, f"{what}[{i}]" if len(arr) > 1 else what) for i, a in enumerate(arr)]


def as_rgb_list(x: Any, what: str = "image") -> list[np.ndarray]:
    """One in-memory image or batch -> list of (H, W, 3) uint8 arrays."""
    if isinstance(x, Image.Image):
        return [pil_to_rgb(x)]
    if _is_tensor(x):
        return tensor_images(x, what)
    if isinstance(x, np.ndarray):
        if x.ndim == 4:
            return [_hwc_to_rgb(a, f"{what}[{i}]") for i, a in enumerate(x)]
        return [_hwc_to_rgb(x, what)]
    raise DeepfakeError(f"{what} is a {type(x).__name__}; pass paths, folders, PIL images, numpy arrays "
                        "(H x W x 3 uint8) or torch tensors (N x C x H x W).")


def _as_list(images: Any) -> list:
    if images is None:
        return []
    if is_path(images) or isinstance(images, (Image.Image, np.ndarray, ImageItem, MemoryImage)) or _is_tensor(images):
        return [images]
    if isinstance(images, Iterable):
        return list(images)
    return [images]


def collect_images(images: Any) -> tuple[list, list[dict]]:
    """Any mix of paths, folders, lists, tar shards, PIL images, arrays and tensors -> (items, skipped).

    Paths go through `data.collect_files` (folders searched, each file once, a missing path or an input
    holding no image an error); in-memory images become `MemoryImage`s named `<image I>` (I: their
    position in `images`, `<image I.J>` for image J of a batch). Order is kept.
    """
    items: list = []
    skipped: list[dict] = []
    run: list = []

    def flush():
        if run:
            found, bad = collect_files(list(run))
            items.extend(found)
            skipped.extend(bad)
            run.clear()

    for i, x in enumerate(_as_list(images)):
        if is_path(x):
            run.append(x)
            continue
        flush()
        if isinstance(x, (ImageItem, MemoryImage)):
            items.append(x)
            continue
        arrays = as_rgb_list(x, f"image {i}")
        batch = len(arrays) > 1 or (isinstance(x, np.ndarray) and x.ndim == 4) or (_is_tensor(x) and x.dim() == 4)
        for j, rgb in enumerate(arrays):
            items.append(MemoryImage(rgb, f"<image {i}.{j}>" if batch else f"<image {i}>"))
    flush()
    return items, skipped

