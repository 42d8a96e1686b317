"""The reader: an image item -> its content hash and the backbone's input tensor(s), or a skip reason.

Reading (a file, or a tar member by seek + read), hashing, decoding, aligning, the seeded transform
and the backbone's resize and crop (`Mapper.reader_preprocess`: uint8 where the backbone's
preprocessing splits, the mapper normalising on its device) happen here and nowhere else, so every
runner (in-process DataLoader, Ray tasks, a test's thread) and both `extract` and `predict` feed the
model the same tensors. A reader holds no open files and no model state, so it can be shipped to
worker processes or remote tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

from torch.utils.data._utils.collate import default_collate

from deepfake_cli.data import ImageItem, UnreadableImage, read_item
from deepfake_cli.inference.memory import MemoryImage
from deepfake_cli.data.transforms import Transform, align_image


@dataclass(frozen=True)
class ReaderConfig:
    """What happens to the decoded image before the backbone's own preprocessing."""

    transform: Transform                  # seeded per image content: same image, same result
    align: tuple[int, int] | None = None  # (SIZE, QUALITY) from `--align`, or None

    @property
    def align_text(self) -> str | None:
        """The form recorded in a feature file's `preprocessing.align`."""
        return None if self.align is None else f"{self.align[0]}:{self.align[1]}"


class Decoded(NamedTuple):
    """One item read: `inputs` is None when it failed, then `reason` says why (sha256 may be known)."""

    index: int
    inputs: Any
    sha256: str
    reason: str


class ReadBatch(NamedTuple):
    """One batch read. A NamedTuple so a DataLoader pins the tensors in it (it recurses into tuples)."""

    ok_indices: list[int]
    sha256s: list[str]
    inputs: Any                               # default_collate of the ok items' inputs; None if none
    failures: list[tuple[int, str, str]]      # (item index, sha256 or "", reason)


class ImageReader:
    """Item -> `Decoded`; a batch of items -> `ReadBatch`."""

    def __init__(self, preprocess: Callable, config: ReaderConfig):
        self.preprocess, self.config = preprocess, config

    def read(self, index: int, item: ImageItem) -> Decoded:
        try:
            # a file, or a tar member by seek + read; an image held in memory (the Python API) as it is
            img, digest = item.read() if isinstance(item, MemoryImage) else read_item(item)
        except UnreadableImage as exc:
            return Decoded(index, None, "", exc.reason)
        try:
            img = align_image(img, self.config.align)
            img = self.config.transform(img, digest)
            return Decoded(index, self.preprocess(img), digest, "")
        except UnreadableImage as exc:  # a resize over the budget (data.check_resize), refused before it ran
            return Decoded(index, None, digest, exc.reason)
        except Exception as exc:  # a pathological image must not end a long run
            return Decoded(index, None, digest, f"failed in preprocessing ({type(exc).__name__}: {exc})")

    def read_batch(self, items: Sequence[ImageItem], indices: Sequence[int]) -> ReadBatch:
        return collate([self.read(i, items[i]) for i in indices])


def collate(rows: Sequence[Decoded]) -> ReadBatch:
    """Stack the readable items' inputs; list the others as failures (in item order)."""
    ok = [r for r in rows if r.inputs is not None]
    bad = [(r.index, r.sha256, r.reason) for r in rows if r.inputs is None]
    inputs = default_collate([r.inputs for r in ok]) if ok else None
    return ReadBatch([r.index for r in ok], [r.sha256 for r in ok], inputs, bad)
