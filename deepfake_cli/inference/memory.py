"""Images already in memory (PIL images, numpy arrays, torch tensors) as items the reader takes.

`ImageReader.read` reads an `ImageItem` from its file (bytes -> hash -> decode) and a `MemoryImage`
from memory; everything after that (align, the seeded transform, the backbone's resize, crop and
normalisation, the mapper, the runner) is the same code, so an image held in memory gives exactly the
features its file gives, when the pixels are the same.

Conventions (the public API documents them, `deepfake_cli.api`):

* a PIL image is decoded as a file is: EXIF orientation applied, then `data.to_rgb` (16-bit scaled,
  transparency composited on white, palette / CMYK / grayscale converted);
* `bytes` (or bytearray, memoryview) are an encoded image file (PNG, JPEG, ...), decoded by the reader
  exactly as the file is (`data.read_bytes`), hashed as the file's bytes;
* a numpy array is H x W x 3 (RGB), H x W (grayscale) or H x W x 4 (RGBA), uint8 or float in [0, 1];
  a 4-d array is a batch (N x H x W x C);
* a torch tensor is C x H x W or a batch N x C x H x W (C = 1 or 3), uint8 or float in [0, 1] (what
  `torchvision.transforms.ToTensor` gives); floats are brought to 8 bits as round(x * 255), since every
  image the pipeline reads is 8-bit RGB.

What is not an image of these kinds (None, another type, a bool or int64 array, an empty 0 x 0 image, a
closed PIL image) is a `DeepfakeError` naming the input. An image that is one but that the readers'
size rule refuses (`data.check_pixels`: too many pixels, aspect ratio over the limit; checked on its
shape before any copy of its pixels), or whose bytes do not decode, keeps its place and is skipped with
the reason, as the same image in a file would be.

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

from deepfake_cli.data import UNKNOWN, ImageItem, collect_files, to_rgb
from deepfake_cli.data.decode import UnreadableImage, check_pixels, corrupt_reason, read_bytes, sha256_bytes
from deepfake_cli.errors import DeepfakeError

ACCEPTED = ("paths, folders, encoded image bytes, PIL images, numpy arrays (H x W x 3 uint8) or torch tensors "
            "(N x C x H x W)")
ENCODED = (bytes, bytearray, memoryview)


@dataclass(frozen=True, eq=False)
class MemoryImage:
    """One image held in memory: `rgb` (H, W, 3) uint8 pixels, or `data` (the encoded bytes of an image
    file, decoded when read), or neither and `refused` (why it is not read); the name results give it
    and its content hash."""

    rgb: np.ndarray | None
    rel: str
    sha256: str = ""
    label: int = UNKNOWN
    member: None = None
    path: None = field(default=None, repr=False)
    data: bytes | None = field(default=None, repr=False)
    refused: str = ""

    def __post_init__(self):
        if not self.sha256 and self.rgb is not None:
            object.__setattr__(self, "sha256", pixels_sha256(self.rgb))
        elif not self.sha256 and self.data:
            object.__setattr__(self, "sha256", sha256_bytes(self.data))

    def read(self) -> tuple[Image.Image, str]:
        """(RGB PIL image, content hash), as `data.read_item` gives for a file; raises UnreadableImage."""
        if self.data is not None:
            return read_bytes(self.data)
        if self.rgb is None:
            raise UnreadableImage(self.refused)
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


# ------------------------------------------------------------------ checks on shape and type, before any copy

def _check_dtype(dtype: Any, what: str) -> None:
    """uint8 or a float type (numpy or torch); anything else, bool included, is refused."""
    name = str(dtype).removeprefix("torch.")
    floating = dtype.is_floating_point if hasattr(dtype, "is_floating_point") else np.issubdtype(dtype, np.floating)
    if name == "uint8" or floating:
        return
    hint = " (a bool mask is not an image: pass e.g. mask.astype(np.uint8) * 255)" if name == "bool" else ""
    raise DeepfakeError(f"{what} has dtype {name}; pass uint8 (0-255) or float in [0, 1]{hint}.")


def _check_not_empty(width: int, height: int, what: str) -> None:
    if width < 1 or height < 1:
        raise DeepfakeError(f"{what} is empty ({width}x{height} pixels); an image has at least 1x1 pixels.")


def _refusal(width: int, height: int) -> str:
    """"" when the readers' size rule (`data.check_pixels`) lets a width x height image through, else why not."""
    try:
        check_pixels(width, height)
    except UnreadableImage as exc:
        return exc.reason
    return ""


def _array_size(shape: tuple, what: str) -> tuple[int, int]:
    """(width, height) of an H x W, H x W x 1, H x W x 3 or H x W x 4 array; other shapes are refused."""
    if len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4)):
        _check_not_empty(int(shape[1]), int(shape[0]), what)
        return int(shape[1]), int(shape[0])
    raise DeepfakeError(f"{what} has shape {tuple(shape)}; an image array is H x W x 3 (RGB), H x W "
                        "(grayscale) or H x W x 4 (RGBA), and a batch N x H x W x 3.")


# ---------------------------------------------------------------------------------------- conversions

def _quantize(arr: np.ndarray, what: str) -> np.ndarray:
    """uint8 as is; float in [0, 1] -> round(x * 255); anything else refused."""
    if arr.dtype == np.uint8:
        return arr
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
    """One H x W, H x W x 1, H x W x 3 or H x W x 4 array (shape checked) -> (H, W, 3) uint8 RGB."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return np.ascontiguousarray(np.repeat(_quantize(arr, what)[:, :, None], 3, axis=2))
    arr = _quantize(arr, what)
    if arr.shape[2] == 4:
        return np.asarray(to_rgb(Image.fromarray(np.ascontiguousarray(arr), "RGBA")))
    return np.ascontiguousarray(arr)


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """A PIL image (size checked, pixels loaded) -> (H, W, 3) uint8, decoded as a file is (EXIF
    orientation, then `to_rgb`)."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 -- as data.decode_image: a broken EXIF block keeps the image
        pass
    return np.asarray(to_rgb(img))


# ----------------------------------------------------------------------------- one input -> items

def _array_image(arr: np.ndarray, name: str, what: str) -> MemoryImage:
    width, height = _array_size(arr.shape, what)
    _check_dtype(arr.dtype, what)
    reason = _refusal(width, height)
    return MemoryImage(None, name, refused=reason) if reason else MemoryImage(_hwc_to_rgb(arr, what), name)


def _tensor_image(t: Any, shape: tuple, name: str, what: str) -> MemoryImage:
    """One C x H x W tensor (`shape`: the whole input's, for messages)."""
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise DeepfakeError(f"{what} has shape {shape}; a tensor image is C x H x W and a batch N x C x H x W, "
                            "with C = 3 (RGB) or 1, uint8 or float in [0, 1].")
    width, height = int(t.shape[2]), int(t.shape[1])
    _check_not_empty(width, height, what)
    _check_dtype(t.dtype, what)
    reason = _refusal(width, height)
    if reason:
        return MemoryImage(None, name, refused=reason)
    arr = t.detach().cpu()
    if arr.is_floating_point():
        arr = arr.float()
    return MemoryImage(_hwc_to_rgb(arr.numpy().transpose(1, 2, 0), what), name)


def _pil_image(img: Image.Image, name: str, what: str) -> MemoryImage:
    width, height = img.size
    _check_not_empty(width, height, what)
    reason = _refusal(width, height)
    if reason:  # before load(): a lazily opened file's pixels are not decoded
        return MemoryImage(None, name, refused=reason)
    try:
        img.load()
    except (ValueError, AssertionError) as exc:
        # close() leaves "Operation on closed image"; a `with Image.open(...)` block left unloaded, no file
        if isinstance(exc, AssertionError) or "closed" in str(exc):
            raise DeepfakeError(f"{what} is a closed PIL image, its pixels gone (closed, or used after its "
                                "`with Image.open(...)` block without being loaded); pass it open, or "
                                "`img.copy()` it before closing.") from None
        return MemoryImage(None, name, refused=corrupt_reason(exc))
    except (OSError, SyntaxError, EOFError) as exc:  # a lazily opened file that does not decode: as the file
        return MemoryImage(None, name, refused=corrupt_reason(exc))
    return MemoryImage(pil_to_rgb(img), name)


def memory_images(x: Any, i: int) -> list[MemoryImage]:
    """The in-memory input at position `i` of `images` -> its images, named `<image I>` (`<image I.J>` for
    image J of a batch). Refused in one line when it is no image of the accepted kinds."""
    what = f"image {i}"
    if isinstance(x, ENCODED):
        return [MemoryImage(None, f"<image {i}>", data=bytes(x))]
    if isinstance(x, Image.Image):
        return [_pil_image(x, f"<image {i}>", what)]
    if _is_tensor(x):
        shape = tuple(x.shape)
        if x.dim() == 4:
            return [_tensor_image(t, shape, f"<image {i}.{j}>", f"{what}[{j}]") for j, t in enumerate(x)]
        return [_tensor_image(x, shape, f"<image {i}>", what)]
    if isinstance(x, np.ndarray):
        if x.ndim == 4:
            return [_array_image(a, f"<image {i}.{j}>", f"{what}[{j}]") for j, a in enumerate(x)]
        return [_array_image(x, f"<image {i}>", what)]
    raise DeepfakeError(f"{what} is a {type(x).__name__}; pass {ACCEPTED}.")


def as_inputs(images: Any) -> list:
    """`images` as a list: one path, image, batch or encoded file becomes a list of one; None is refused."""
    if images is None:
        raise DeepfakeError(f"No images given (None); pass {ACCEPTED}, or a list of them.")
    if is_path(images) or isinstance(images, (Image.Image, np.ndarray, ImageItem, MemoryImage, *ENCODED)) \
            or _is_tensor(images):
        return [images]
    if isinstance(images, Iterable):
        return list(images)
    return [images]


def collect_images(images: Any) -> tuple[list, list[dict]]:
    """Any mix of paths, folders, lists, tar shards, encoded bytes, PIL images, arrays and tensors ->
    (items, skipped).

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

    for i, x in enumerate(as_inputs(images)):
        if is_path(x):
            run.append(x)
            continue
        flush()
        if isinstance(x, (ImageItem, MemoryImage)):
            items.append(x)
            continue
        items.extend(memory_images(x, i))
    flush()
    return items, skipped
