"""The runner seam: batches of items in; per batch, features, content hashes and skip reasons out.

A runner decides only *where* the reader and the mapper run (this process and its DataLoader
workers; Ray tasks and an actor pool; ...). It never writes files: shards, resume and the final
HDF5 file stay with the caller, so they behave the same under every engine. Results may come back
in any order; each carries its batch number and its own read/model seconds.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Iterator, NamedTuple, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deepfake_cli.data import ImageItem
from deepfake_cli.inference.device import resolve_workers
from deepfake_cli.inference.mapper import Mapper
from deepfake_cli.inference.reader import ImageReader, collate
from deepfake_cli.safety.locks import die_with_parent, release_inherited


class Batch(NamedTuple):
    """Batch `no` holds items `indices`; the same arguments always give the same batches (resume relies on it)."""

    no: int
    indices: list[int]


def plan_batches(n_items: int, batch_size: int) -> list[Batch]:
    return [Batch(k, list(range(s, min(n_items, s + batch_size))))
            for k, s in enumerate(range(0, n_items, batch_size))]


@dataclass
class InferenceJob:
    """What to run: the items, the reader that turns one into tensors and the mapper that embeds a batch.

    A runner that works out of process ships `reader` to its readers and rebuilds the model from
    `mapper.spec` (a `BackboneSpec`) on its own device.
    """

    items: Sequence[ImageItem]
    reader: ImageReader
    mapper: Mapper


@dataclass
class BatchResult:
    batch_no: int
    ok_indices: list[int]                   # item indices with a feature row, in row order
    sha256s: list[str]                      # one per ok index
    features: np.ndarray                    # (len(ok_indices), dim) float32
    failures: list[tuple[int, str, str]]    # (item index, sha256 or "", reason)
    seconds: dict = field(default_factory=dict)   # "read", "model": this batch's share


class Runner(Protocol):
    def run(self, job: InferenceJob, batches: Sequence[Batch]) -> Iterator[BatchResult]:
        """Yield one `BatchResult` per batch in `batches` (in any order)."""
        ...


class _ItemDataset(Dataset):
    def __init__(self, job: InferenceJob):
        self.items, self.reader = job.items, job.reader

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.reader.read(i, self.items[i])


def reader_worker_init(threads: int | None = 1):
    """A DataLoader `worker_init_fn` for reader processes forked by the calling thread (call it in the
    thread that iterates the loader). A reader never writes: it closes its copy of the output's lock and
    ends with the command even when the command is killed (-9), instead of reading on for seconds while
    holding the lock against the rerun. `threads`: torch threads per reader (None: torch's default)."""
    # the kernel's parent-death signal follows the forking thread: asked for only when that thread lasts
    # as long as the process
    return partial(_worker_init, parent=os.getpid(), threads=threads,
                   main_thread=threading.current_thread() is threading.main_thread())


def _worker_init(_, parent: int, main_thread: bool, threads: int | None):
    release_inherited()
    die_with_parent(parent, kernel=main_thread)
    if threads:  # each DataLoader worker decodes one image at a time; torch's pool would oversubscribe
        torch.set_num_threads(threads)


class LocalRunner:
    """In-process: a DataLoader (with `workers` reader processes) feeds the mapper, batches in order."""

    def __init__(self, workers: int | None = None):
        self.workers = resolve_workers(workers)

    def run(self, job: InferenceJob, batches: Sequence[Batch]) -> Iterator[BatchResult]:
        w = self.workers
        loader = DataLoader(_ItemDataset(job), batch_sampler=[b.indices for b in batches], num_workers=w,
                            collate_fn=collate, pin_memory=job.mapper.cuda,
                            worker_init_fn=reader_worker_init() if w else None, persistent_workers=False,
                            prefetch_factor=4 if w else None)
        it = iter(loader)
        for b in batches:
            t0 = time.perf_counter()
            read = next(it)
            t1 = time.perf_counter()
            feats = job.mapper(read.inputs)
            t2 = time.perf_counter()
            yield BatchResult(b.no, read.ok_indices, read.sha256s, feats, read.failures,
                              {"read": t1 - t0, "model": t2 - t1})
