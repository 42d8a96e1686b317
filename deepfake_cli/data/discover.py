"""Turning what the user typed into datasets of items: the one discovery every command uses.

A source is a folder (images, or shard files when it holds no image), one image file, one `.tar`
shard, a `.txt`/`.csv` list of image paths, or a `.parquet` file: each kind is an entry of
`data.sources`, which this module dispatches to. `discover`/`discover_many` make labelled datasets
of them (`extract`, `audit`, `study`); `collect_files` takes loose inputs as they come (`predict`).
"""

from __future__ import annotations

import os
from pathlib import Path

from deepfake_cli.data import sources
from deepfake_cli.data.items import LABEL_LAYOUTS, DatasetSpec, ImageItem
from deepfake_cli.data.skips import shorten
from deepfake_cli.data.sources._datasets import checked
from deepfake_cli.data.sources.folder import folder_items
from deepfake_cli.data.walk import is_image_file, require_regular_file
from deepfake_cli.errors import DeepfakeError


def parse_named_path(spec: str) -> tuple[str | None, str]:
    """`NAME=PATH` -> (NAME, PATH); a bare PATH -> (None, PATH). A PATH holding '=' keeps working, and so
    does one with `?key=value` options (`x.parquet?label=y` names nothing)."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        if name and not os.path.exists(spec) and "/" not in name and "?" not in name:
            return name, path
    return None, spec


def _entry(path: Path, shown: str, unknown: str) -> sources.Source:
    """The source kind of an existing input; a FIFO, socket or device (opening one would block) or a file of
    no kind (`unknown`, formatted with `shown` and `kinds`) is one error."""
    if not path.is_dir():
        require_regular_file(path, shown, sources.kinds_text())
    entry = sources.source_for(path)
    if entry is None:
        raise DeepfakeError(unknown.format(shown=shorten(shown), kinds=sources.kinds_text()))
    return entry


def discover_sources(spec: str, name: str | None = None, allow_unlabelled: bool = True) -> list[DatasetSpec]:
    """The datasets of one `[NAME=]PATH[?options]` spec: one, except for a .csv list with a `dataset` column
    (NAME then names the rows whose dataset cell is empty). The kind of PATH picks its `sources` entry."""
    given_name, path_text = parse_named_path(spec)
    path_str, options = sources.split_options(path_text)
    path = Path(path_str).expanduser()
    if not os.path.exists(path):
        raise DeepfakeError(f"dataset path does not exist: {shorten(path_str)}")
    entry = _entry(path, path_str, "not an image file (by extension): {shown}; a dataset is {kinds}.")
    sources.check_options(entry, options, path_text)
    return entry.datasets(path, path_str, given_name or name, allow_unlabelled, options)


def discover(spec: str | None = None, real: str | None = None, fake: str | None = None,
             name: str | None = None, allow_unlabelled: bool = True) -> DatasetSpec:
    """Resolve one dataset from `[NAME=]PATH` or from explicit `real`/`fake` folders.

    A folder holding `real/`, `fake/` (or `0_real/`, `1_fake/`, `nature/`, `ai/`) anywhere below it
    is labelled by the nearest such folder; a folder without any is unlabelled (label -1), as is a
    single image file. See `discover_sources` for tar shards and lists.
    """
    if spec is None:
        return _real_fake(real, fake, name)
    datasets = discover_sources(spec, name=name, allow_unlabelled=allow_unlabelled)
    if len(datasets) > 1:
        raise DeepfakeError(f"{shorten(spec)} holds {len(datasets)} datasets (its 'dataset' column); give it where "
                            "several datasets are accepted.")
    return datasets[0]


def _real_fake(real: str | None, fake: str | None, name: str | None) -> DatasetSpec:
    from deepfake_cli.data.items import FAKE, REAL

    if real is None and fake is None:
        raise DeepfakeError("give a dataset PATH, or --real DIR and/or --fake DIR.")
    folders = [(_existing_dir(f), label) for f, label in ((real, REAL), (fake, FAKE)) if f is not None]
    # Paths stay relative to the common parent so real and fake files cannot collide.
    root = Path(os.path.commonpath([str(p.parent) for p, _ in folders]))
    ds = DatasetSpec(name or (folders[0][0].parent.name if len(folders) == 1 else root.name) or "dataset", root)
    for folder, label in folders:
        found = folder_items(folder, root, forced=label)
        ds.items.extend(found.items)
        ds.skipped.extend(found.skipped)
        ds.warnings.extend(found.warnings)
    return checked(ds)


def _existing_dir(folder: str) -> Path:
    p = Path(folder).expanduser()
    if not p.is_dir():
        raise DeepfakeError(f"not a folder: {folder}")
    return p.resolve()


def discover_many(specs: list[str], real: str | None = None, fake: str | None = None,
                  name: str | None = None, require_labels: bool = False) -> list[DatasetSpec]:
    """Datasets from several `[NAME=]PATH` specs plus an optional `--real/--fake` one; names are unique.

    With `require_labels`, a dataset without any labelled image gets a warning (in its `warnings`)
    that names the accepted layouts, for commands whose result means nothing without labels.
    """
    datasets = [ds for s in specs for ds in discover_sources(s)]
    if real is not None or fake is not None:
        datasets.append(discover(None, real=real, fake=fake, name=name))
    elif name is not None and len(datasets) == 1:
        datasets[0].name = name
    seen = set()
    for ds in datasets:
        if ds.name in seen:
            raise DeepfakeError(f"two datasets are named '{ds.name}': name them with NAME=PATH.")
        seen.add(ds.name)
        if require_labels and not ds.labelled:
            ds.warnings.append(f"dataset '{ds.name}' has no labelled image (all {len(ds.items)} unlabelled): "
                               f"label it with {LABEL_LAYOUTS}.")
    if not datasets:
        raise DeepfakeError("no dataset given.")
    return datasets


def collect_files(paths) -> tuple[list[ImageItem], list[dict]]:
    """Loose inputs for prediction: image files, folders (recursively), .tar shards and lists.

    Returns (items, skipped) in input order, each image once. An item's `rel` is its path as found
    (`<tar path>/<member>` for a shard member); its label is what the source says, else unknown.
    `skipped` holds {path, reason} for loops, unreadable folders and the like. A missing path, a
    file that is none of the above, and an input holding no image are errors.
    """
    items: list[ImageItem] = []
    skipped: list[dict] = []
    seen: set = set()
    for spec in paths:
        p = Path(spec)
        found = _loose_items(spec)
        skipped.extend(found.skipped)
        if not found.items and not (is_image_file(p) and found.skipped):  # an image named is skipped, as read
            why = (f"; skipped {shorten(found.skipped[0]['path'])}: {shorten(found.skipped[0]['reason'])}"
                   if found.skipped else "")
            raise DeepfakeError(f"no image found in {shorten(spec)}{why}.")
        for it in found.items:
            real = os.path.realpath(it.path)
            key = real if it.member is None else (real, it.member.name)
            if key not in seen:
                seen.add(key)
                items.append(it)
    return items, skipped


def _loose_items(spec) -> sources.Found:
    """Items of one loose input with `rel` (and skipped paths) spelled from the path as given."""
    path_text, options = sources.split_options(str(spec))
    p = Path(path_text)
    if not os.path.exists(p):
        raise DeepfakeError(f"no such file or folder: {shorten(spec)}")
    entry = _entry(p, str(p), "not an image file: {shown}; give {kinds}.")
    sources.check_options(entry, options, str(spec))
    return entry.loose(p, options)
