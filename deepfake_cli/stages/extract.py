"""The `extract` stage: image datasets -> backbone features -> one HDF5 file (created, resumed or appended to).

The work is the inference core's (`deepfake_cli.inference`): a reader (read, hash, decode, align,
transform, preprocess), a mapper (the backbone forward), a runner that decides where those two run,
and the shard store that makes a run resumable and merges it into the file. This module decides
what the file says (its metadata), which datasets still have to be added, and reports progress
through the `progress` / `on_start` callbacks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from deepfake_cli import __version__
from deepfake_cli.data import DatasetSpec, discover_many
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.features import APPEND_KEYS, describe, matching_options, mismatch, read_meta
from deepfake_cli.inference.device import resolve_device
from deepfake_cli.inference.mapper import BackboneSpec, Mapper
from deepfake_cli.inference.reader import ImageReader, ReaderConfig
from deepfake_cli.inference.runner import InferenceJob, LocalRunner, Runner, plan_batches
from deepfake_cli.inference.shards import Merged, ShardStore, merge, run_signature
from deepfake_cli.store.outputs import Target, dataset_inputs, writes
from deepfake_cli.store.recovery import check_extract_space, check_merge_space, isolated, prepare_extract_output, \
    remove_orphaned_temporaries, run_meta
from deepfake_cli.data.transforms import Transform, normalize_transform, parse_align


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
    warnings: list = field(default_factory=list)   # what discovery wants the user to hear, one sentence each
    resumed_batches: int = 0
    n_processed: int = 0  # images read and run through the model by this call (not resumed ones)
    seconds: dict = field(default_factory=lambda: {"read": 0.0, "model": 0.0, "write": 0.0, "total": 0.0})
    device: str = "cpu"

    @property
    def images_per_second(self) -> float:
        return self.n_processed / self.seconds["total"] if self.seconds["total"] > 0 else 0.0


# what it writes and reads (the output guards, `store.outputs.writes`)

def extract_targets(a: dict) -> list[Target]:
    return [Target(a["out"], "features")]


@writes(extract_targets, dataset_inputs)  # never over an input or a foreign file; one writer per output
def extract(inputs: list[str], backbone: str, out: str, transform: str = "none", batch_size: int = 32,
            workers: int | None = None, device: str = "auto", weights: str | None = None,
            layers: str = "last", seed: int = 0, real: str | None = None, fake: str | None = None,
            name: str | None = None, align: str | None = None, dtype: str = "float32",
            overwrite: bool = False, pretrained: bool = True, progress: Callable | None = None,
            on_start: Callable | None = None, runner: Runner | None = None,
            warn: Callable | None = None) -> ExtractSummary:
    """Extract features of one or more datasets into `out` (created, resumed or appended to).

    `progress(done, total)` is called after each batch; `on_start(total, resumed)` once before;
    `warn(sentence)` once per discovery warning (also kept in `summary.warnings`), before any work.
    `runner` decides where reading and the model run (default: `LocalRunner(workers)`); a runner
    with `remote = True` builds the model itself, so this process builds it on the CPU (metadata only).
    """
    t_start = time.perf_counter()
    if batch_size < 1:
        raise DeepfakeError("--batch-size must be at least 1.")
    if dtype not in ("float32", "float16"):
        raise DeepfakeError("--dtype must be float32 or float16.")
    reader_cfg = ReaderConfig(Transform(normalize_transform(transform), seed), parse_align(align))
    out_p, store = Path(out), ShardStore.beside(out)
    datasets = discover_many(list(inputs), real=real, fake=fake, name=name, require_labels=True)
    prepare_extract_output(out_p, store.folder, datasets, overwrite)  # litter of killed runs; --overwrite's rule
    runner = runner or LocalRunner(workers)
    remote = getattr(runner, "remote", False)
    dev = resolve_device("cpu" if remote else device)
    mapper = Mapper.from_spec(BackboneSpec(backbone, weights, layers, pretrained), dev)
    meta = _feature_meta(mapper.backbone, reader_cfg, dtype)
    summary = ExtractSummary(out=out_p, device=getattr(runner, "device_text", str(dev)) if remote else str(dev))
    for ds in datasets:
        for line in ds.warnings:
            summary.warnings.append(line)
            if warn:
                warn(line)
    # --overwrite: the old file stays until the new one is renamed over it
    existing, datasets = (None, datasets) if overwrite else _datasets_to_add(out_p, meta, datasets, summary)
    if datasets:
        job = InferenceJob([it for ds in datasets for it in ds.items],
                           ImageReader(mapper.reader_preprocess, reader_cfg), mapper)
        batches = plan_batches(len(job.items), batch_size)
        # room for the shards still to write and the merged file, before anything is written
        check_extract_space(out_p, meta, batches, store.finished() if store.folder.is_dir() else set(), existing)
        done = store.begin(run_signature(meta, datasets, batch_size), run_meta(meta, datasets))
        _run(runner, job, batches, done, store, summary, progress, on_start)
        t0 = time.perf_counter()
        check_merge_space(out_p, meta, batches, existing)
        # in a child process: a disk filling up under HDF5 must not take this process (and its lock) down
        _record(summary, isolated(merge, out_p, store, meta, datasets, batches, existing, what=out_p,
                                  cleanup=lambda: remove_orphaned_temporaries(out_p)))
        summary.seconds["write"] += time.perf_counter() - t0
    summary.seconds["total"] = time.perf_counter() - t_start
    return summary


def _feature_meta(backbone, reader_cfg: ReaderConfig, dtype: str) -> dict:
    """What the file says about how its features were made (the run signature hashes part of it)."""
    preprocessing = dict(backbone.preprocessing, align=reader_cfg.align_text)
    meta = {
        "backbone": backbone.name, "dim": int(backbone.dim), "layers": backbone.layers,
        "weights_id": backbone.weights_id, "preprocessing": preprocessing,
        "transform": reader_cfg.transform.spec, "seed": reader_cfg.transform.seed, "dtype": dtype,
        "tool_version": __version__,
    }
    if hasattr(backbone, "members"):  # a combination: which columns each backbone gave (`features.feature_members`)
        meta["members"] = [{"backbone": m.name, "dim": int(m.dim), "layers": m.layers} for m in backbone.members]
    return meta


def _datasets_to_add(out: Path, meta: dict, datasets: list[DatasetSpec],
                     summary: ExtractSummary) -> tuple[dict | None, list[DatasetSpec]]:
    """(existing file's meta or None, the datasets not yet in it); refuse a file made another way."""
    if not out.exists():
        return None, datasets
    existing = read_meta(out)
    diff = mismatch(existing, meta, APPEND_KEYS)
    if diff:
        fix = matching_options(existing, meta, diff)
        raise DeepfakeError(
            f"{out} was made with {describe(existing, diff, meta)}, this extraction has {describe(meta, diff, existing)}; "
            "one file holds features made one way: "
            + (f"to add to it, extract with {fix} (or write to another --out)." if fix else "write to another --out."))
    roots = existing.get("roots", {})
    for ds in datasets:
        if ds.name in roots:
            if roots[ds.name] != str(ds.root):
                raise DeepfakeError(
                    f"{out} already has a dataset named '{ds.name}' from {roots[ds.name]}; "
                    "name this one differently with NAME=PATH.")
            summary.already_present.append(ds.name)
    return existing, [ds for ds in datasets if ds.name not in roots]


def _run(runner: Runner, job: InferenceJob, batches, done: set[int], store: ShardStore, summary: ExtractSummary,
         progress: Callable | None, on_start: Callable | None) -> None:
    """Run the batches not in `done` and store each as a shard; count and time them in `summary`."""
    total = len(job.items)
    n_done = sum(len(b.indices) for b in batches if b.no in done)
    summary.resumed_batches = len(done)
    if on_start:
        on_start(total, n_done)
    seconds = summary.seconds
    for result in runner.run(job, [b for b in batches if b.no not in done]):
        t0 = time.perf_counter()
        store.write(result)
        seconds["write"] += time.perf_counter() - t0
        for part in ("read", "model"):
            seconds[part] += result.seconds.get(part, 0.0)
        n = len(result.ok_indices) + len(result.failures)
        n_done += n
        summary.n_processed += n
        if progress:
            progress(n_done, total)


def _record(summary: ExtractSummary, merged: Merged) -> None:
    summary.n_written = merged.n_written
    summary.datasets = merged.counts
    summary.skipped = merged.skipped
    summary.n_skipped = len(merged.skipped)
    summary.duplicates = merged.duplicates
    summary.n_duplicates = sum(len(g) - 1 for g in merged.duplicates)
