"""Features for loose image files, exactly as `extract` computes them, without a feature file.

Used by `predict` (and by anything in Python that wants vectors for a few images): the same reader,
mapper and runner as extraction, with no shards and no resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from deepfake_cli.data import ImageItem
from deepfake_cli.inference.device import resolve_device
from deepfake_cli.inference.mapper import BackboneSpec, Mapper
from deepfake_cli.inference.reader import ImageReader, ReaderConfig
from deepfake_cli.inference.runner import InferenceJob, LocalRunner, Runner, plan_batches
from deepfake_cli.transforms import Transform, parse_align


@dataclass
class Embedded:
    """One batch: the readable files with their hashes and feature rows, and the files skipped (path, reason)."""

    paths: list[Path]
    sha256s: list[str]
    features: np.ndarray
    skipped: list[tuple[Path, str]]


def embed(backbone, paths: Iterable, transform: str = "none", seed: int = 0, align: str | None = None,
          batch_size: int = 32, device: str = "auto", workers: int | None = None, runner: Runner | None = None,
          spec: BackboneSpec | None = None) -> Iterator[Embedded]:
    """Yield an `Embedded` per batch, in the order the runner delivers them (LocalRunner: input order).

    `backbone` is a built backbone; `spec` (how it was built) lets a runner rebuild it elsewhere.
    """
    paths = [Path(p) for p in paths]
    items = [ImageItem(p, p.name, -1) for p in paths]
    reader = ImageReader(backbone.preprocess, ReaderConfig(Transform(transform, seed), parse_align(align)))
    job = InferenceJob(items, reader, Mapper(backbone, resolve_device(device), spec))
    runner = runner if runner is not None else LocalRunner(workers)
    for r in runner.run(job, plan_batches(len(items), batch_size)):
        yield Embedded([paths[i] for i in r.ok_indices], r.sha256s, r.features,
                       [(paths[i], reason) for i, _sha, reason in r.failures])
