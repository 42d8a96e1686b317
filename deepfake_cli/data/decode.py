"""Reading an item's bytes and decoding them all to RGB the same way, under one bomb rule."""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deepfake_cli.data.items import ImageItem

# The one pixel limit for every reader (extract, predict, audit). It is Pillow's own default
# warning threshold, which extract already enforced by turning that warning into an error, so the
# images skipped as bombs stay the same.
MAX_PIXELS = 89_478_485


class UnreadableImage(Exception):
    """A file that is not a decodable image; `reason` is a short human phrase."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_pixels(width: int, height: int) -> None:
    """The bomb rule: raise UnreadableImage when an image declares more than MAX_PIXELS pixels."""
    if width * height > MAX_PIXELS:
        raise UnreadableImage(f"decompression bomb ({width}x{height} pixels, limit {MAX_PIXELS})")


def open_image(fp) -> Image.Image:
    """Open an image (header only, pixels not decoded) and apply the bomb rule.

    Pillow's own bomb checks are silenced here: they would warn or raise at other sizes than ours,
    and a warning printed in the middle of a table tells the user nothing.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(fp)
        except Image.DecompressionBombError as exc:  # far over our limit too (2x Pillow's)
            raise UnreadableImage(f"decompression bomb (over {MAX_PIXELS} pixels)") from exc
        except UnidentifiedImageError as exc:
            raise UnreadableImage("not an image") from exc
    try:
        check_pixels(img.width, img.height)
    except UnreadableImage:
        img.close()
        raise
    return img


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes) -> Image.Image:
    """Decode bytes to an 8-bit RGB image, the same way for every format and mode.

    EXIF orientation is applied; 16-bit and float images are scaled to 8 bits; transparency is
    composited onto white (what a viewer shows); CMYK, palette and grayscale are converted.
    """
    try:
        img = open_image(io.BytesIO(data))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
    except UnreadableImage:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UnreadableImage(f"truncated or corrupt ({msg})") from exc
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not lose an otherwise good image
        pass
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        if mode == "F":
            top = max(float(arr.max()), 1.0) if arr.max() > 1.0 else 1.0
        arr = np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return img
    return img.convert("RGB")


def item_bytes(item: ImageItem) -> bytes:
    """The item's encoded bytes: the whole file, or its member's span of the tar (seek + read)."""
    try:
        if item.member is None:
            return Path(item.path).read_bytes()
        with open(item.path, "rb") as fh:
            fh.seek(item.member.offset)
            data = fh.read(item.member.size)
    except OSError as exc:
        raise UnreadableImage(f"cannot read file ({exc.strerror or exc})") from exc
    if len(data) != item.member.size:
        raise UnreadableImage("truncated tar member (the shard is shorter than its header says)")
    return data


def read_item(item: ImageItem) -> tuple[Image.Image, str]:
    """Read an item once: (decoded RGB image, sha256 of its bytes). Raises UnreadableImage."""
    data = item_bytes(item)
    digest = sha256_bytes(data)
    if not data:
        raise UnreadableImage("empty file")
    return decode_image(data), digest


def read_image(path) -> tuple[Image.Image, str]:
    """Read a plain file once: (decoded RGB image, sha256 of its bytes). Raises UnreadableImage."""
    return read_item(ImageItem(Path(path), Path(path).name, -1))


def load_image(path) -> Image.Image:
    """Decode one image file to RGB (raises UnreadableImage)."""
    return read_image(path)[0]
