"""The `extract` stage: images -> backbone features -> one HDF5 file.

Shaped like clip-retrieval's inference pipeline: a *reader* (a DataLoader that reads, hashes,
decodes, aligns, transforms and preprocesses), a *mapper* (the backbone forward) and a *writer*
(one shard file per batch), driven by a runner that times each part per batch. Shards make the run
resumable: batch k always holds the same images, a finished batch is an atomically renamed file,
and a rerun with the same arguments skips the shards it has. When all are there they are merged
(with the rows of an existing file when appending) into a temporary file renamed over the output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

from deepfake_cli import __version__
from deepfake_cli.backbones import create_backbone
from deepfake_cli.data import LABEL_NAMES, DatasetSpec, ImageItem, UnreadableImage, discover_many, \
    find_duplicates, read_image
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.features import APPEND_KEYS, FeatureFileWriter, describe, iter_rows, mismatch, read_meta
from deepfake_cli.fileio import atomic_write_text
from deepfake_cli.transforms import Transform, align_image, normalize_transform, parse_align


@dataclass
class ExtractSummary:
    out: Path
    n_written: int = 0
    n_skipped: int = 0
    n_duplicates: int = 0
    datasets: dict = field(default_factory=dict)   # name -> {"real": n, "fake": n, "unknown": n}
    skipped: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)
    already_present: list = field(default_factory=list)
    resumed_batches: int = 0
    n_processed: int = 0  # images read and run through the model by this call (not resumed ones)
    seconds: dict = field(default_factory=lambda: {"read": 0.0, "model": 0.0, "write": 0.0, "total": 0.0})
    device: str = "cpu"

    @property
    def images_per_second(self) -> float:
        return self.n_processed / self.seconds["total"] if self.seconds["total"] > 0 else 0.0


def resolve_device(device: str = "auto") -> torch.device:
    device = (device or "auto").lower()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeepfakeError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto.")
    if device != "cpu" and not device.startswith("cuda"):
        raise DeepfakeError(f"unknown --device '{device}': use auto, cpu or cuda.")
    return torch.device(device)


def resolve_workers(workers: int | None) -> int:
    if workers is not None and workers >= 0:
        return workers
    # Decoding overlaps the forward pass best in a separate process, but on a 2-core machine a
    # worker only steals the model's threads.
    cpus = os.cpu_count() or 1
    return 0 if cpus <= 2 else min(8, cpus // 2)


class _ImageDataset(Dataset):
    """Reader: item index -> (index, preprocessed tensor(s) or None, sha256, failure reason)."""

    def __init__(self, items: list[ImageItem], preprocess: Callable, transform: Transform, align):
        self.items, self.preprocess, self.transform, self.align = items, preprocess, transform, align

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path = self.items[i].path
        try:
            img, digest = read_image(path)
        except UnreadableImage as exc:
            return i, None, "", exc.reason
        try:
            img = align_image(img, self.align)
            img = self.transform(img, digest)
            return i, self.preprocess(img), digest, ""
        except Exception as exc:  # a pathological image must not end a long run
            return i, None, digest, f"failed in preprocessing ({type(exc).__name__}: {exc})"


def _collate(rows):
    ok = [r for r in rows if r[1] is not None]
    bad = [(r[0], r[2], r[3]) for r in rows if r[1] is None]
    batch = default_collate([r[1] for r in ok]) if ok else None
    return [r[0] for r in ok], [r[2] for r in ok], batch, bad


def _to_device(batch, device, non_blocking):
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device, non_blocking) for b in batch)
    return batch.to(device, non_blocking=non_blocking)


def _worker_init(_):
    torch.set_num_threads(1)


def run_batches(backbone, items: list[ImageItem], batches: list[list[int]], transform: Transform,
                align, device: torch.device, workers: int, timings: dict | None = None) -> Iterator:
    """Runner: yield (batch_no, ok_indices, sha256s, features ndarray, failures) per batch.

    `batches` lists the item indices of each batch to run (finished ones already left out).
    """
    ds = _ImageDataset(items, backbone.preprocess, transform, align)
    cuda = device.type == "cuda"
    if cuda:  # fixed input sizes: let cuDNN pick its fastest kernels once
        torch.backends.cudnn.benchmark = True
    loader = DataLoader(ds, batch_sampler=[b for _, b in batches], num_workers=workers,
                        collate_fn=_collate, pin_memory=cuda, worker_init_fn=_worker_init if workers else None,
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    timings = timings if timings is not None else {"read": 0.0, "model": 0.0}
    it = iter(loader)
    for batch_no, _ in batches:
        t0 = time.perf_counter()
        ok_idx, shas, batch, bad = next(it)
        t1 = time.perf_counter()
        if batch is not None:
            with torch.inference_mode():
                x = _to_device(batch, device, non_blocking=cuda)
                if cuda:
                    with torch.autocast("cuda", dtype=torch.float16):
                        feats = backbone(x)
                else:
                    feats = backbone(x)
                feats = feats.float().cpu().numpy()
        else:
            feats = np.zeros((0, backbone.dim), dtype=np.float32)
        t2 = time.perf_counter()
        timings["read"] = timings.get("read", 0.0) + (t1 - t0)
        timings["model"] = timings.get("model", 0.0) + (t2 - t1)
        yield batch_no, ok_idx, shas, feats, bad


def embed_images(backbone, paths, transform: str = "none", seed: int = 0, align: str | None = None,
                 batch_size: int = 32, device: str = "auto", workers: int | None = None):
    """Features for loose image files, exactly as `extract` computes them (used by `predict`).

    Yields ("batch", (paths, sha256s, features)) per batch and ("skipped", (path, reason)) per
    unreadable file, in input order.
    """
    dev = resolve_device(device)
    paths = [Path(p) for p in paths]
    items = [ImageItem(p, p.name, -1) for p in paths]
    batches = [(k, list(range(s, min(len(items), s + batch_size)))) for k, s in
               enumerate(range(0, len(items), batch_size))]
    for _, ok_idx, shas, feats, bad in run_batches(backbone, items, batches, Transform(transform, seed),
                                                   parse_align(align), dev, resolve_workers(workers)):
        for i, _sha, reason in bad:
            yield "skipped", (paths[i], reason)
        if ok_idx:
            yield "batch", ([paths[i] for i in ok_idx], shas, feats)


def _preprocessing(backbone, align) -> dict:
    pre = dict(backbone.preprocessing)
    pre["align"] = None if align is None else f"{align[0]}:{align[1]}"
    return pre


def _signature(meta: dict, datasets: list[DatasetSpec], batch_size: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({k: meta.get(k) for k in APPEND_KEYS}, sort_keys=True).encode())
    h.update(str(batch_size).encode())
    for ds in datasets:
        h.update(f"{ds.name}\0{ds.root}\0".encode())
        for it in ds.items:
            h.update(f"{it.rel}\0{it.label}\0".encode())
    return h.hexdigest()


def extract(inputs: list[str], backbone: str, out: str, transform: str = "none", batch_size: int = 32,
            workers: int | None = None, device: str = "auto", weights: str | None = None,
            layers: str = "last", seed: int = 0, real: str | None = None, fake: str | None = None,
            name: str | None = None, align: str | None = None, dtype: str = "float32",
            overwrite: bool = False, pretrained: bool = True, progress: Callable | None = None,
            on_start: Callable | None = None) -> ExtractSummary:
    """Extract features of one or more datasets into `out` (created, resumed or appended to).

    `progress(done, total)` is called after each batch; `on_start(total, resumed)` once before.
    """
    t_start = time.perf_counter()
    if batch_size < 1:
        raise DeepfakeError("--batch-size must be at least 1.")
    if dtype not in ("float32", "float16"):
        raise DeepfakeError("--dtype must be float32 or float16.")
    transform = normalize_transform(transform)
    align_t = parse_align(align)
    out_p = Path(out)
    parts_dir = out_p.with_name(out_p.name + ".parts")
    if overwrite:
        shutil.rmtree(parts_dir, ignore_errors=True)
        out_p.unlink(missing_ok=True)
    datasets = discover_many(list(inputs), real=real, fake=fake, name=name)
    dev = resolve_device(device)
    model = create_backbone(backbone, weights=weights, device=str(dev), layers=layers, pretrained=pretrained)
    meta = {
        "backbone": model.name, "dim": int(model.dim), "layers": model.layers, "weights_id": model.weights_id,
        "preprocessing": _preprocessing(model, align_t), "transform": transform, "seed": int(seed),
        "dtype": dtype, "tool_version": __version__,
    }
    summary = ExtractSummary(out=out_p, device=str(dev))

    existing = None
    if out_p.exists():
        existing = read_meta(out_p)
        diff = mismatch(existing, meta, APPEND_KEYS)
        if diff:
            raise DeepfakeError(
                f"{out} was made with {describe(existing, diff)}, this extraction has {describe(meta, diff)}; "
                "one file holds one backbone and transform: write to another --out.")
        in_file = set(existing.get("roots", {}))
        for ds in datasets:
            if ds.name in in_file:
                if existing["roots"][ds.name] != str(ds.root):
                    raise DeepfakeError(
                        f"{out} already has a dataset named '{ds.name}' from {existing['roots'][ds.name]}; "
                        "name this one differently with NAME=PATH.")
                summary.already_present.append(ds.name)
        datasets = [ds for ds in datasets if ds.name not in in_file]
        if not datasets:
            summary.seconds["total"] = time.perf_counter() - t_start
            return summary

    items = [it for ds in datasets for it in ds.items]
    owner = [ds.name for ds in datasets for _ in ds.items]
    batches = [(k, list(range(s, min(len(items), s + batch_size)))) for k, s in
               enumerate(range(0, len(items), batch_size))]
    sig = _signature(meta, datasets, batch_size)
    parts_dir.mkdir(parents=True, exist_ok=True)
    sig_file = parts_dir / "run.json"
    if sig_file.exists():
        if json.loads(sig_file.read_text()).get("signature") != sig:
            raise DeepfakeError(
                f"an unfinished extraction with other arguments exists in {parts_dir}; rerun it with the "
                "same arguments to finish it, or pass --overwrite to start again.")
    else:
        atomic_write_text(sig_file, json.dumps({"signature": sig, "meta": meta}))
    done = {int(p.stem.split("_")[1]) for p in parts_dir.glob("batch_*.npz")}
    todo = [b for b in batches if b[0] not in done]
    summary.resumed_batches = len(done)
    if on_start:
        on_start(len(items), sum(len(b) for k, b in batches if k in done))

    timings = summary.seconds
    n_done = sum(len(b) for k, b in batches if k in done)
    for batch_no, ok_idx, shas, feats, bad in run_batches(model, items, todo, Transform(transform, seed),
                                                          align_t, dev, resolve_workers(workers), timings):
        t0 = time.perf_counter()
        _save_shard(parts_dir / f"batch_{batch_no:06d}.npz", ok_idx, shas, feats.astype(dtype),
                    [(i, s, r) for i, s, r in bad])
        timings["write"] += time.perf_counter() - t0
        n_done += len(ok_idx) + len(bad)
        summary.n_processed += len(ok_idx) + len(bad)
        if progress:
            progress(n_done, len(items))

    t0 = time.perf_counter()
    _finalize(out_p, parts_dir, meta, datasets, items, owner, batches, existing, summary, dtype)
    timings["write"] += time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    return summary


def _save_shard(path: Path, ok_idx, shas, feats, bad) -> None:
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, idx=np.asarray(ok_idx, dtype=np.int64), sha=np.asarray(shas, dtype="S64"), X=feats,
             bad=np.asarray(json.dumps(bad)))
    os.replace(tmp, path)


def _finalize(out_p, parts_dir, meta, datasets, items, owner, batches, existing, summary, dtype) -> None:
    roots = dict(existing.get("roots", {})) if existing else {}
    roots.update((ds.name, str(ds.root)) for ds in datasets)
    meta = dict(meta, roots=roots, created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    skipped = list(existing["skipped"]) if existing else []
    hashes: list[tuple[str, str, str]] = []
    with FeatureFileWriter(out_p, meta, meta["dim"], dtype=dtype) as writer:
        if existing:
            for X, y, ds, path, sha in iter_rows(out_p):
                writer.append(X, y, ds, path, sha)
                hashes.extend(zip(ds.tolist(), path.tolist(), sha.tolist()))
        for k, _ in batches:
            with np.load(parts_dir / f"batch_{k:06d}.npz") as z:
                idx, X = z["idx"], z["X"]
                shas = [s.decode() for s in z["sha"]]
                bad = json.loads(str(z["bad"]))
            names = [owner[i] for i in idx]
            rels = [items[i].rel for i in idx]
            writer.append(X, [items[i].label for i in idx], names, rels, shas)
            hashes.extend(zip(names, rels, shas))
            for i, _sha, reason in bad:
                skipped.append({"dataset": owner[i], "path": items[i].rel, "reason": reason})
                summary.skipped.append(skipped[-1])
            for i in idx:
                c = summary.datasets.setdefault(owner[i], {"real": 0, "fake": 0, "unknown": 0})
                c[LABEL_NAMES[items[i].label]] += 1
            summary.n_written += len(idx)
        duplicates = find_duplicates(hashes)
        summary.duplicates = duplicates
        summary.n_duplicates = sum(len(g) - 1 for g in duplicates)
        summary.n_skipped = len(summary.skipped)
        writer.close(skipped=skipped, duplicates=duplicates)
    shutil.rmtree(parts_dir, ignore_errors=True)
