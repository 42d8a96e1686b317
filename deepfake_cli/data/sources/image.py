"""One image file: an unlabelled dataset of one, or one of predict's inputs; also the reader of every plain
file (folder images, listed images)."""

from __future__ import annotations

import os
from pathlib import Path

from deepfake_cli.data.decode import UnreadableImage
from deepfake_cli.data.items import UNKNOWN, DatasetSpec, ImageItem
from deepfake_cli.data.sources import Found, Source, register_source
from deepfake_cli.data.sources._datasets import checked
from deepfake_cli.data.walk import IMAGE_EXTENSIONS, file_problem, is_image_file


def _one(path: Path, rel: str) -> Found:
    """The image, or (a FIFO, a file larger than any image) its skipped row: judged by its stat."""
    found = Found()
    problem = file_problem(os.stat(path))
    if problem:  # an image given by name is skipped as one in a folder is
        found.skipped.append({"path": rel, "reason": problem})
    else:
        found.items.append(ImageItem(path, rel, UNKNOWN))
    return found


def _datasets(path: Path, shown: str, name: str | None, allow_unlabelled: bool, options: dict) -> list[DatasetSpec]:
    found = _one(path, path.name)
    return [checked(DatasetSpec(name or path.stem, path.parent, found.items, found.skipped))]


def _read(item: ImageItem) -> bytes:
    try:
        return Path(item.path).read_bytes()
    except OSError as exc:
        raise UnreadableImage(f"cannot read file ({exc.strerror or exc})") from exc


def _header(item: ImageItem) -> tuple:
    return item.path, os.path.getsize(item.path)  # the header alone is parsed: no need to read the file


IMAGE = register_source(Source(
    name="image", description=f"an image ({', '.join(sorted(IMAGE_EXTENSIONS))})", matches=is_image_file,
    datasets=_datasets, loose=lambda path, options: _one(path, str(path)), read=_read, header=_header))
