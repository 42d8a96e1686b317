"""What discovery produces: labels, one image item, one dataset."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REAL, FAKE, UNKNOWN = 0, 1, -1
LABEL_NAMES = {REAL: "real", FAKE: "fake", UNKNOWN: "unknown"}
# Folder names that carry a label: the plain layout, the CNNDetection/UnivFD one and GenImage's.
LABEL_DIRS = {"real": REAL, "0_real": REAL, "nature": REAL, "fake": FAKE, "1_fake": FAKE, "ai": FAKE}
# Said wherever a dataset turns out to have no label, so the user learns every accepted layout.
LABEL_LAYOUTS = ("real/ and fake/ folders (or 0_real/ and 1_fake/, or GenImage's nature/ and ai/) anywhere "
                 "below the dataset folder, a 'label' column (real/fake/0/1) in a .csv list, or .cls files "
                 "(0 real, 1 fake) in tar shards")


@dataclass(frozen=True)
class TarMember:
    """Where an image's bytes lie inside an uncompressed tar: read by seek(offset) + read(size)."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class ImageItem:
    """One image to read. `path` is the file, or the file holding it when `member` is set.

    `member` says where the bytes lie inside that file (a `TarMember`; a Parquet row): its type picks the
    `data.sources` entry that reads it; every member has a `name`, unique within its file.
    `rel` names the item uniquely within its dataset (relative to the dataset root; for a tar member
    `<shard>.tar/<member>`, for a Parquet row `<file>.parquet/<row>`); it is what feature files store as
    the item's path.
    """

    path: Path
    rel: str
    label: int
    member: Any = None


@dataclass
class DatasetSpec:
    """One dataset: its items plus what discovery could not use (`skipped`: {path, reason}, paths
    relative to `root`) and what the user should hear about it (`warnings`: sentences)."""

    name: str
    root: Path
    items: list[ImageItem] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reals_pool: str | None = None   # a fake-only set: the dataset whose reals it is scored against (data.layouts)
    layout: str = ""                # the benchmark layout it came from ("" for a plain folder)

    @property
    def counts(self) -> dict[str, int]:
        out = {"real": 0, "fake": 0, "unknown": 0}
        for it in self.items:
            out[LABEL_NAMES[it.label]] += 1
        return out

    @property
    def labelled(self) -> bool:
        return any(it.label != UNKNOWN for it in self.items)


def label_from_parts(parts) -> int | None:
    """The label of the nearest labelled folder, so `progan/airplane/0_real/x.png` is real."""
    for part in reversed(tuple(parts)):
        label = LABEL_DIRS.get(part.lower())
        if label is not None:
            return label
    return None


def label_from_rel(rel: str) -> int | None:
    """Label from the folders of a `/`-separated relative path (its last part is the file)."""
    return label_from_parts(rel.split("/")[:-1])


def find_duplicates(rows: list[tuple[str, str, str]]) -> list[list[str]]:
    """Groups of `dataset/path` that share a content hash, from (dataset, path, sha256) rows."""
    groups: dict[str, list[str]] = defaultdict(list)
    for dataset, path, digest in rows:
        groups[digest].append(f"{dataset}/{path}")
    return [sorted(v) for v in groups.values() if len(v) > 1]
