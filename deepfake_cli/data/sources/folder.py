"""A folder: its images, recursively (labelled by the nearest label folder), or, when it holds none, the
shard files below it (each read by its own entry: `.tar`, `.parquet`). The walk is `data.walk`'s."""

from __future__ import annotations

from pathlib import Path

from deepfake_cli.data.items import UNKNOWN, DatasetSpec, ImageItem, label_from_rel
from deepfake_cli.data.skips import shorten
from deepfake_cli.data.sources import SOURCES, Found, Source, UnreadableSource, is_shard_file, register_source, \
    shard_source
from deepfake_cli.data.sources._datasets import checked, keep_labelled
from deepfake_cli.data.walk import scan_folder


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def folder_items(folder: Path, root: Path, forced: int | None = None, options: dict | None = None) -> Found:
    """Images below `folder` (or, when it holds none, its shard files), `rel` relative to `root`;
    `forced`: the label of every item (`--real DIR`, `--fake DIR`)."""
    found = Found()
    scan = scan_folder(folder, is_shard_file)
    prefix = _rel(folder, root)
    found.skipped = [{"path": s["path"] if prefix == "." else f"{prefix}/{s['path']}", "reason": s["reason"]}
                     for s in scan.skipped]
    if scan.images:
        for p in scan.images:
            rel = _rel(p, root)
            label = forced if forced is not None else label_from_rel(rel)
            found.items.append(ImageItem(p, rel, UNKNOWN if label is None else label))
        for entry in _kinds(scan.shards):
            n = sum(shard_source(s) is entry for s in scan.shards)
            found.warnings.append(f"ignored {n} {entry.short} file(s) among the images of {shorten(folder)}: give a "
                                  "folder holding only shards as its own dataset.")
        return found
    odd: dict[str, int] = {}
    for shard in scan.shards:
        entry = shard_source(shard)
        try:
            got = entry.scan(shard, _rel(shard, root), options or {})
        except UnreadableSource:
            found.skipped.append({"path": _rel(shard, root), "reason": entry.unreadable})
            continue
        items = got.items
        if forced is not None:
            items = [ImageItem(it.path, it.rel, forced, it.member) for it in items]
        found.items.extend(items)
        found.skipped.extend(got.skipped)
        found.warnings.extend(got.warnings)
        odd[entry.name] = odd.get(entry.name, 0) + got.odd
    found.warnings.extend(SOURCES[k].odd_note.format(n=n) for k, n in odd.items() if n and SOURCES[k].odd_note)
    return found


def _kinds(shards: list[Path]) -> list[Source]:
    return list(dict.fromkeys(shard_source(s) for s in shards))


def _datasets(path: Path, shown: str, name: str | None, allow_unlabelled: bool, options: dict) -> list[DatasetSpec]:
    from deepfake_cli.data.layouts import recognise

    layout = recognise(path)
    if layout is not None:  # a public benchmark's layout: the datasets its paper uses (one per generator)
        return layout.datasets(path, name)
    path = path.resolve()
    found = folder_items(path, path, options=options)
    ds = DatasetSpec(name or path.name, path, found.items, found.skipped, found.warnings)
    return [checked(keep_labelled(ds, allow_unlabelled, shown))]


def _loose(path: Path, options: dict) -> Found:
    found = folder_items(path, path, options=options)
    found.items = [ImageItem(it.path, str(path / it.rel), it.label, it.member) for it in found.items]
    found.skipped = [{"path": str(path / s["path"]), "reason": s["reason"]} for s in found.skipped]
    return found


FOLDER = register_source(Source(name="folder", description="a folder", matches=lambda path: True, folder=True,
                                datasets=_datasets, loose=_loose))
