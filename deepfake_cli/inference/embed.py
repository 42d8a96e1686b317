"""Features for loose images, exactly as `extract` computes them, without a feature file.

Used by `predict` (and by anything in Python that wants vectors for a few images): the same reader,
mapper and runner as extraction, with no shards and no resume. Inputs are `ImageItem`s (plain files
or tar members, as `data.collect_files` finds them) or plain paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from deepfake_cli.data import UNKNOWN, ImageItem
from deepfake_cli.inference.device import resolve_device
from deepfake_cli.inference.mapper import BackboneSpec, Mapper
from deepfake_cli.inference.memory import MemoryImage
from deepfake_cli.inference.reader import ImageReader, ReaderConfig
from deepfake_cli.inference.runner import InferenceJob, LocalRunner, Runner, plan_batches
from deepfake_cli.data.transforms import Transform, parse_align


@dataclass
class Embedded:
    """One batch: the readable items (their positions in the input, hashes and feature rows, in row
    order) and the items skipped as (position, reason)."""

    indices: list[int]
    items: list[ImageItem]
    sha256s: list[str]
    features: np.ndarray
    skipped: list[tuple[int, str]]


def as_items(inputs: Iterable) -> list[ImageItem]:
    """ImageItems (and in-memory `MemoryImage`s) as given; a plain path becomes an item whose `rel` is the
    path as written."""
    return [x if isinstance(x, (ImageItem, MemoryImage)) else ImageItem(Path(x), str(x), UNKNOWN) for x in inputs]


def embed(backbone, inputs: Iterable, transform: str = "none", seed: int = 0, align: str | None = None,
          batch_size: int = 32, device: str = "auto", workers: int | None = None, runner: Runner | None = None,
          spec: BackboneSpec | None = None) -> Iterator[Embedded]:
    """Yield an `Embedded` per batch, in the order the runner delivers them (LocalRunner: input order).

    `backbone` is a built backbone; `spec` (how it was built) lets a runner rebuild it elsewhere.
    """
    items = as_items(inputs)
    mapper = Mapper(backbone, backbone.device if getattr(runner, "remote", False) else resolve_device(device), spec)
    reader = ImageReader(mapper.reader_preprocess, ReaderConfig(Transform(transform, seed), parse_align(align)))
    job = InferenceJob(items, reader, mapper)
    runner = runner if runner is not None else LocalRunner(workers)
    for r in runner.run(job, plan_batches(len(items), batch_size)):
        yield Embedded(list(r.ok_indices), [items[i] for i in r.ok_indices], r.sha256s, r.features,
                       [(i, reason) for i, _sha, reason in r.failures])
