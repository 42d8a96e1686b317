"""Reading an item's bytes and decoding them all to RGB the same way, under one size rule (pixels, aspect
ratio; `check_pixels`, from the header) and one resize budget (`check_resize`, before every resize)."""

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
# The longest side may be at most MAX_ASPECT times the shortest. Resizing the shorter side up to a
# backbone's input multiplies the longer one, so a 140-byte 20000x1 PNG became a 256 x 5,120,000 image
# (6 GB). 50:1 is far past real photos, panoramas (360-degree ones are 2:1, stitched ones rarely 12:1)
# and web banners (about 11:1); at 50:1 the centre crop a backbone sees is 2% of the image anyway, and
# the largest built-in resize (518) makes 518 x 25,900 pixels (40 MB) of it.
MAX_ASPECT = 50
# The most pixels one resize may make (`--align`, `resize:S`, a backbone's or fine-tuning's own resize):
# no more than a decoded image may hold, so no resize needs more memory than decoding already may.
MAX_RESIZED_PIXELS = MAX_PIXELS
# The largest encoded image (a file or a tar member) read at all: an uncompressed 8-bit RGBA image at
# the pixel limit, plus 1 MiB of headers and metadata (359 MB). Discovery refuses bigger ones by their
# size alone, so a 1 GB member is never read into memory just to learn it is no image.
MAX_IMAGE_BYTES = 4 * MAX_PIXELS + (1 << 20)


class UnreadableImage(Exception):
    """A file that is not a decodable image; `reason` is a short human phrase."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_pixels(width: int, height: int) -> None:
    """The size rule on an image's declared size, before its pixels exist: raise UnreadableImage for an
    empty image, more than MAX_PIXELS pixels (a bomb) or an aspect ratio over MAX_ASPECT:1."""
    if width < 1 or height < 1:
        raise UnreadableImage(f"empty image ({width}x{height} pixels)")
    if width * height > MAX_PIXELS:
        raise UnreadableImage(f"decompression bomb ({width}x{height} pixels, limit {MAX_PIXELS})")
    longer, shorter = max(width, height), min(width, height)
    if longer > MAX_ASPECT * shorter:
        ratio = f"{longer / shorter:.1f}".removesuffix(".0")
        raise UnreadableImage(f"aspect ratio {ratio}:1 over the limit {MAX_ASPECT}:1 ({width}x{height} pixels)")


def shorter_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after scaling the shorter side to `size`, the aspect ratio kept."""
    scale = size / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def check_resize(width: int, height: int, new_width: int, new_height: int) -> None:
    """The resize budget, called before every resize allocates its output: raise UnreadableImage when
    width x height would become more than MAX_RESIZED_PIXELS pixels."""
    if new_width * new_height > MAX_RESIZED_PIXELS:
        raise UnreadableImage(f"resizing {width}x{height} to {new_width}x{new_height} pixels is over the limit of "
                              f"{MAX_RESIZED_PIXELS} pixels per resized image")


def check_shorter_resize(width: int, height: int, size: int) -> None:
    """The resize budget for scaling the shorter side of a width x height image to `size`."""
    check_resize(width, height, *shorter_side_size(width, height, size))


def open_image(fp) -> Image.Image:
    """Open an image (header only, pixels not decoded) and apply the size rule (`check_pixels`).

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
        raise UnreadableImage(corrupt_reason(exc)) from exc
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not lose an otherwise good image
        pass
    return to_rgb(img)


def corrupt_reason(exc: BaseException) -> str:
    """The skip reason of an image whose pixels failed to decode (the first line of Pillow's error)."""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"truncated or corrupt ({msg})"


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
    """The item's encoded bytes, read by its source's entry (`data.sources`): the whole file, its member's
    span of a tar (seek + read), its row of a Parquet file. Raises UnreadableImage."""
    from deepfake_cli.data.sources import read_bytes  # the entries import this module

    return read_bytes(item)


def read_item(item: ImageItem) -> tuple[Image.Image, str]:
    """Read an item once: (decoded RGB image, sha256 of its bytes). Raises UnreadableImage."""
    return read_bytes(item_bytes(item))


def read_bytes(data: bytes) -> tuple[Image.Image, str]:
    """Encoded image bytes (a file's, or given in memory) -> (decoded RGB image, sha256 of the bytes)."""
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
