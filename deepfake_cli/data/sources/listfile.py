"""A `.txt`/`.csv` list of image paths (`data.lists` reads it): one dataset, or one per `dataset` cell.
Its items are plain files, read by the `image` entry."""

from __future__ import annotations

from pathlib import Path

from deepfake_cli.data.items import DatasetSpec, ImageItem
from deepfake_cli.data.lists import is_list_file, read_list
from deepfake_cli.data.sources import Found, Source, register_source
from deepfake_cli.data.sources._datasets import checked, keep_labelled


def _datasets(path: Path, shown: str, name: str | None, allow_unlabelled: bool, options: dict) -> list[DatasetSpec]:
    listed = read_list(path)
    default = name or path.stem
    by_name: dict[str, DatasetSpec] = {}
    for e in listed.entries:
        ds_name = e.dataset or default
        ds = by_name.setdefault(ds_name, DatasetSpec(ds_name, listed.root))
        ds.items.append(ImageItem(e.path, e.rel, e.label))
    datasets = list(by_name.values())
    datasets[0].skipped.extend(listed.skipped)
    return [checked(keep_labelled(ds, allow_unlabelled, shown, listed=True)) for ds in datasets]


def _loose(path: Path, options: dict) -> Found:
    listed = read_list(path)
    return Found([ImageItem(e.path, str(e.path), e.label) for e in listed.entries],
                 [{"path": str(listed.root / s["path"]), "reason": s["reason"]} for s in listed.skipped])


LIST = register_source(Source(
    name="list", description="a .txt/.csv list of image paths", matches=is_list_file, datasets=_datasets,
    loose=_loose, named=False))  # a .txt may be anybody's notes: its name does not say it is a list
