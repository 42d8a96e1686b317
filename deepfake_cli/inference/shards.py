"""The writer side of extraction: one shard file per batch, the run signature, resume, the final merge.

Shards make a run resumable: batch k always holds the same images (`plan_batches`), a finished
batch is a shard renamed into place complete, and a rerun with the same signature skips the shards
it has. When all are there they are merged (after the rows of an existing file, when appending) into
a temporary HDF5 file renamed over the output. Only the driver touches these files, whatever runner
computed the batches.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from deepfake_cli.data import LABEL_NAMES, DatasetSpec, find_duplicates
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.features import APPEND_KEYS, FeatureFileWriter, iter_rows
from deepfake_cli.safety.fileio import atomic_write_text
from deepfake_cli.inference.runner import Batch, BatchResult
from deepfake_cli.safety.atomic import atomic_path
from deepfake_cli.safety.digest import json_sha256


def run_signature(meta: dict, datasets: Sequence[DatasetSpec], batch_size: int) -> str:
    """Identity of a run: what the file will say (APPEND_KEYS), the batching and every item, in order."""
    h = json_sha256({k: meta.get(k) for k in APPEND_KEYS})
    h.update(str(batch_size).encode())
    for ds in datasets:
        h.update(f"{ds.name}\0{ds.root}\0".encode())
        for it in ds.items:
            h.update(f"{it.rel}\0{it.label}\0".encode())
    return h.hexdigest()


class ShardStore:
    """The `<out>.parts/` folder: `run.json` (signature + meta) and `batch_NNNNNN.npz` per finished batch."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.dtype = "float32"  # the run's stored precision, set by `begin`

    @classmethod
    def beside(cls, out: str | Path) -> "ShardStore":
        out = Path(out)
        return cls(out.with_name(out.name + ".parts"))

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def begin(self, signature: str, meta: dict) -> set[int]:
        """Start or resume the run with `signature`; return the numbers of the batches already done."""
        self.dtype = meta["dtype"]
        self.folder.mkdir(parents=True, exist_ok=True)
        sig_file = self.folder / "run.json"
        if sig_file.exists():
            if json.loads(sig_file.read_text()).get("signature") != signature:
                raise DeepfakeError(
                    f"an unfinished extraction with other arguments exists in {self.folder}; rerun it with the "
                    "same arguments to finish it, or pass --overwrite to start again.")
        else:
            atomic_write_text(sig_file, json.dumps({"signature": signature, "meta": meta}))
        return self.finished()

    def finished(self) -> set[int]:
        return {int(p.stem.split("_")[1]) for p in self.folder.glob("batch_*.npz")}

    def _path(self, batch_no: int) -> Path:
        return self.folder / f"batch_{batch_no:06d}.npz"

    def write(self, result: BatchResult) -> None:
        # a hidden temporary name that `finished` never matches, renamed once complete
        with atomic_path(self._path(result.batch_no)) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, idx=np.asarray(result.ok_indices, dtype=np.int64),
                     sha=np.asarray(result.sha256s, dtype="S64"), X=result.features.astype(self.dtype),
                     bad=np.asarray(json.dumps([(int(i), s, r) for i, s, r in result.failures])))

    def read(self, batch_no: int) -> BatchResult:
        with np.load(self._path(batch_no)) as z:
            return BatchResult(batch_no, z["idx"].tolist(), [s.decode() for s in z["sha"]], z["X"],
                               [tuple(b) for b in json.loads(str(z["bad"]))])


@dataclass
class Merged:
    """What the merge added: rows written, per-dataset label counts, new skip rows, all duplicate groups."""

    n_written: int = 0
    counts: dict = field(default_factory=dict)     # dataset -> {"real": n, "fake": n, "unknown": n}
    skipped: list = field(default_factory=list)    # {"dataset", "path", "reason"}: discovery's, then the reader's
    duplicates: list = field(default_factory=list)


def merge(out: Path, store: ShardStore, meta: dict, datasets: Sequence[DatasetSpec], batches: Sequence[Batch],
          existing: dict | None) -> Merged:
    """Write `out` from an existing file's rows (when appending) and every shard; then drop the shards."""
    roots = dict(existing.get("roots", {})) if existing else {}
    roots.update((ds.name, str(ds.root)) for ds in datasets)
    meta = dict(meta, roots=roots, created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    # fake-only sets of a benchmark layout and the real pool each is scored against (data.layouts)
    pools = dict(existing.get("reals_pools", {})) if existing else {}
    pools.update((ds.name, ds.reals_pool) for ds in datasets if getattr(ds, "reals_pool", None))
    if pools:
        meta["reals_pools"] = pools
    items = [(ds.name, it) for ds in datasets for it in ds.items]
    skipped = list(existing["skipped"]) if existing else []
    hashes: list[tuple[str, str, str]] = []
    merged = Merged()
    # what discovery could not use (unreadable folders, loops, bad tar members, ...) comes first
    merged.skipped = [{"dataset": ds.name, **entry} for ds in datasets for entry in ds.skipped]
    with FeatureFileWriter(out, meta, meta["dim"], dtype=meta["dtype"]) as writer:
        if existing:
            for X, y, ds, path, sha in iter_rows(out):
                writer.append(X, y, ds, path, sha)
                hashes.extend(zip(ds.tolist(), path.tolist(), sha.tolist()))
        for b in batches:
            _append_shard(writer, store.read(b.no), items, hashes, merged)
        skipped.extend(merged.skipped)
        merged.duplicates = find_duplicates(hashes)
        writer.close(skipped=skipped, duplicates=merged.duplicates)
    store.discard()
    return merged


def _append_shard(writer: FeatureFileWriter, shard: BatchResult, items, hashes: list, merged: Merged) -> None:
    rows = [items[i] for i in shard.ok_indices]
    names, rels = [n for n, _ in rows], [it.rel for _, it in rows]
    writer.append(shard.features, [it.label for _, it in rows], names, rels, shard.sha256s)
    hashes.extend(zip(names, rels, shard.sha256s))
    for i, _sha, reason in shard.failures:
        name, it = items[i]
        merged.skipped.append({"dataset": name, "path": it.rel, "reason": reason})
    for name, it in rows:
        c = merged.counts.setdefault(name, {"real": 0, "fake": 0, "unknown": 0})
        c[LABEL_NAMES[it.label]] += 1
    merged.n_written += len(rows)
