"""Finding labelled images on disk and decoding them all to RGB the same way."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deepfake_cli.errors import DeepfakeError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
REAL, FAKE, UNKNOWN = 0, 1, -1
LABEL_NAMES = {REAL: "real", FAKE: "fake", UNKNOWN: "unknown"}
# Folder names that carry a label: the plain layout and the CNNDetection/UnivFD one.
LABEL_DIRS = {"real": REAL, "0_real": REAL, "fake": FAKE, "1_fake": FAKE}
# Anything larger is treated as a decompression bomb rather than decoded.
MAX_PIXELS = 12_000 * 12_000


class UnreadableImage(Exception):
    """A file that is not a decodable image; `reason` is a short human phrase."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageItem:
    path: Path
    rel: str
    label: int


@dataclass
class DatasetSpec:
    name: str
    root: Path
    items: list[ImageItem] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out = {"real": 0, "fake": 0, "unknown": 0}
        for it in self.items:
            out[LABEL_NAMES[it.label]] += 1
        return out


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def iter_image_files(folder: Path) -> list[Path]:
    """All image files below `folder`, recursively, any case of extension, in a stable order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in filenames:
            p = Path(dirpath) / fn
            if not fn.startswith(".") and is_image_file(p):
                found.append(p)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _label_from_parts(parts: tuple[str, ...]) -> int | None:
    # The nearest labelled folder wins, so `progan/airplane/0_real/x.png` is real.
    for part in reversed(parts):
        label = LABEL_DIRS.get(part.lower())
        if label is not None:
            return label
    return None


def _labelled_items(root: Path, files: list[Path], forced: int | None = None) -> list[ImageItem]:
    items = []
    for p in files:
        rel = p.relative_to(root).as_posix()
        label = forced if forced is not None else _label_from_parts(Path(rel).parts[:-1])
        if label is not None:
            items.append(ImageItem(p, rel, label))
    return items


def parse_named_path(spec: str) -> tuple[str | None, str]:
    """`NAME=PATH` -> (NAME, PATH); a bare PATH -> (None, PATH). A PATH holding '=' keeps working."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        if name and not os.path.exists(spec) and "/" not in name:
            return name, path
    return None, spec


def discover(spec: str | None = None, real: str | None = None, fake: str | None = None,
             name: str | None = None, allow_unlabelled: bool = True) -> DatasetSpec:
    """Resolve one dataset from `[NAME=]PATH` or from explicit `real`/`fake` folders.

    A folder holding `real/`, `fake/`, `0_real/` or `1_fake/` anywhere below it is labelled by the
    nearest such folder; a folder without any is unlabelled (label -1), as is a single image file.
    """
    if spec is None:
        if real is None and fake is None:
            raise DeepfakeError("give a dataset PATH, or --real DIR and/or --fake DIR.")
        items: list[ImageItem] = []
        roots = []
        for folder, label in ((real, REAL), (fake, FAKE)):
            if folder is None:
                continue
            p = _existing_dir(folder)
            roots.append(p)
            # Paths stay relative to the common parent so real and fake files cannot collide.
            items.extend(_labelled_items(p.parent, iter_image_files(p), forced=label))
        root = Path(os.path.commonpath([str(r.parent) for r in roots]))
        items = [ImageItem(it.path, it.path.relative_to(root).as_posix(), it.label) for it in items]
        ds_name = name or (roots[0].parent.name if len(roots) == 1 else root.name) or "dataset"
        return _checked(DatasetSpec(ds_name, root, items))

    given_name, path_str = parse_named_path(spec)
    path = Path(path_str).expanduser()
    if not path.exists():
        raise DeepfakeError(f"dataset path does not exist: {path_str}")
    if path.is_file():
        if not is_image_file(path):
            raise DeepfakeError(f"not an image file (by extension): {path_str}")
        return DatasetSpec(given_name or name or path.stem, path.parent, [ImageItem(path, path.name, UNKNOWN)])
    path = path.resolve()
    files = iter_image_files(path)
    labelled = _labelled_items(path, files)
    if labelled:
        items = labelled
    elif allow_unlabelled:
        items = [ImageItem(p, p.relative_to(path).as_posix(), UNKNOWN) for p in files]
    else:
        raise DeepfakeError(f"{path_str} has no real/ or fake/ (or 0_real/, 1_fake/) folders.")
    return _checked(DatasetSpec(given_name or name or path.name, path, items))


def _existing_dir(folder: str) -> Path:
    p = Path(folder).expanduser()
    if not p.is_dir():
        raise DeepfakeError(f"not a folder: {folder}")
    return p.resolve()


def _checked(ds: DatasetSpec) -> DatasetSpec:
    if not ds.items:
        raise DeepfakeError(f"no images found in dataset '{ds.name}' ({ds.root}).")
    return ds


def discover_many(specs: list[str], real: str | None = None, fake: str | None = None,
                  name: str | None = None) -> list[DatasetSpec]:
    """Datasets from several `[NAME=]PATH` specs plus an optional `--real/--fake` one; names are unique."""
    datasets = [discover(s) for s in specs]
    if real is not None or fake is not None:
        datasets.append(discover(None, real=real, fake=fake, name=name))
    elif name is not None and len(datasets) == 1:
        datasets[0].name = name
    seen = set()
    for ds in datasets:
        if ds.name in seen:
            raise DeepfakeError(f"two datasets are named '{ds.name}': name them with NAME=PATH.")
        seen.add(ds.name)
    if not datasets:
        raise DeepfakeError("no dataset given.")
    return datasets


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes) -> Image.Image:
    """Decode bytes to an 8-bit RGB image, the same way for every format and mode.

    EXIF orientation is applied; 16-bit and float images are scaled to 8 bits; transparency is
    composited onto white (what a viewer shows); CMYK, palette and grayscale are converted.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > MAX_PIXELS:
                raise UnreadableImage(f"decompression bomb ({img.width}x{img.height} pixels)")
            img.load()
    except UnreadableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnreadableImage("decompression bomb") from exc
    except UnidentifiedImageError as exc:
        raise UnreadableImage("not an image") from exc
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


def read_image(path: Path) -> tuple[Image.Image, str]:
    """Read a file once: (decoded RGB image, sha256 of its bytes). Raises UnreadableImage."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UnreadableImage(f"cannot read file ({exc.strerror or exc})") from exc
    digest = sha256_bytes(data)
    if not data:
        raise UnreadableImage("empty file")
    return decode_image(data), digest


def load_image(path) -> Image.Image:
    """Decode one image file to RGB (raises UnreadableImage)."""
    return read_image(Path(path))[0]


def find_duplicates(rows: list[tuple[str, str, str]]) -> list[list[str]]:
    """Groups of `dataset/path` that share a content hash, from (dataset, path, sha256) rows."""
    groups: dict[str, list[str]] = defaultdict(list)
    for dataset, path, digest in rows:
        groups[digest].append(f"{dataset}/{path}")
    return [sorted(v) for v in groups.values() if len(v) > 1]
