"""Turning what the user typed into datasets of items: the one discovery every command uses.

A source is a folder (images, or tar shards when it holds no image), one image file, one `.tar`
shard, or a `.txt`/`.csv` list of image paths. `discover`/`discover_many` make labelled datasets
of them (`extract`, `audit`, `study`); `collect_files` takes loose inputs as they come (`predict`).
"""

from __future__ import annotations

import os
from pathlib import Path

from deepfake_cli.data.items import LABEL_LAYOUTS, UNKNOWN, DatasetSpec, ImageItem, label_from_rel
from deepfake_cli.data.lists import is_list_file, read_list
from deepfake_cli.data.skips import shorten
from deepfake_cli.data.tars import scan_tar
from deepfake_cli.data.walk import IMAGE_EXTENSIONS, file_problem, is_image_file, is_tar_file, \
    require_regular_file, scan_folder
from deepfake_cli.errors import DeepfakeError

_KINDS = (f"an image ({', '.join(sorted(IMAGE_EXTENSIONS))}), a folder, a .tar shard, "
          "or a .txt/.csv list of image paths")


def parse_named_path(spec: str) -> tuple[str | None, str]:
    """`NAME=PATH` -> (NAME, PATH); a bare PATH -> (None, PATH). A PATH holding '=' keeps working."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        if name and not os.path.exists(spec) and "/" not in name:
            return name, path
    return None, spec


class _Found:
    """Items of one source with labels from their folders (UNKNOWN where none), plus what was left."""

    def __init__(self):
        self.items: list[ImageItem] = []
        self.skipped: list[dict] = []
        self.warnings: list[str] = []


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _folder_items(folder: Path, root: Path, forced: int | None = None) -> _Found:
    """Images below `folder` (or, when it holds none, its tar shards), `rel` relative to `root`."""
    found = _Found()
    scan = scan_folder(folder)
    prefix = _rel(folder, root)
    found.skipped = [{"path": s["path"] if prefix == "." else f"{prefix}/{s['path']}", "reason": s["reason"]}
                     for s in scan.skipped]
    if scan.images:
        for p in scan.images:
            rel = _rel(p, root)
            label = forced if forced is not None else label_from_rel(rel)
            found.items.append(ImageItem(p, rel, UNKNOWN if label is None else label))
        if scan.tars:
            found.warnings.append(f"ignored {len(scan.tars)} .tar file(s) among the images of {shorten(folder)}: give a "
                                  "folder holding only shards as its own dataset.")
        return found
    odd = 0
    for tar in scan.tars:
        try:
            shard = scan_tar(tar, _rel(tar, root))
        except DeepfakeError:
            found.skipped.append({"path": _rel(tar, root), "reason": "not an uncompressed tar file"})
            continue
        items = shard.items
        if forced is not None:
            items = [ImageItem(it.path, it.rel, forced, it.member) for it in items]
        found.items.extend(items)
        found.skipped.extend(shard.skipped)
        odd += shard.odd_cls
    if odd:
        found.warnings.append(f"{odd} .cls file(s) hold a value other than 0 (real) or 1 (fake): "
                              "their images are unlabelled.")
    return found


def _tar_file_items(path: Path, prefix: str | None = None) -> _Found:
    found = _Found()
    shard = scan_tar(path, prefix or path.name)
    found.items, found.skipped = shard.items, shard.skipped
    if shard.odd_cls:
        found.warnings.append(f"{shard.odd_cls} .cls file(s) hold a value other than 0 (real) or 1 (fake): "
                              "their images are unlabelled.")
    return found


def _keep_labelled(ds: DatasetSpec, allow_unlabelled: bool, shown: str, listed: bool = False) -> DatasetSpec:
    # A labelled layout leaves out its stray unlabelled images, as it always has, but says so.
    if ds.labelled:
        ds.skipped.extend({"path": it.rel, "reason": _unlabelled_reason(it, listed)}
                          for it in ds.items if it.label == UNKNOWN)
        ds.items = [it for it in ds.items if it.label != UNKNOWN]
    elif not allow_unlabelled and ds.items:
        raise DeepfakeError(f"{shorten(shown)} has no labelled image: label it with {LABEL_LAYOUTS}.")
    return ds


def _unlabelled_reason(it: ImageItem, listed: bool) -> str:
    where = ("no label cell and no label folder" if listed else "no .cls 0/1 and no label folder" if it.member
             else "outside the label folders")
    return f"unlabelled in a labelled dataset ({where})"


def _checked(ds: DatasetSpec) -> DatasetSpec:
    if not ds.items:
        why = ""
        if ds.skipped:
            s = ds.skipped[0]
            why = f"; skipped {len(ds.skipped)}, e.g. {shorten(s['path'])}: {shorten(s['reason'])}"
        raise DeepfakeError(f"no images found in dataset '{shorten(ds.name)}' ({shorten(ds.root)}){why}.")
    return ds


def _list_datasets(path: Path, name: str | None) -> list[DatasetSpec]:
    listed = read_list(path)
    default = name or path.stem
    by_name: dict[str, DatasetSpec] = {}
    for e in listed.entries:
        ds_name = e.dataset or default
        ds = by_name.setdefault(ds_name, DatasetSpec(ds_name, listed.root))
        ds.items.append(ImageItem(e.path, e.rel, e.label))
    datasets = list(by_name.values())
    datasets[0].skipped.extend(listed.skipped)
    return datasets


def discover_sources(spec: str, name: str | None = None, allow_unlabelled: bool = True) -> list[DatasetSpec]:
    """The datasets of one `[NAME=]PATH` spec: one, except for a .csv list with a `dataset` column
    (NAME then names the rows whose dataset cell is empty)."""
    given_name, path_str = parse_named_path(spec)
    given_name = given_name or name
    path = Path(path_str).expanduser()
    if not os.path.exists(path):
        raise DeepfakeError(f"dataset path does not exist: {shorten(path_str)}")
    if not path.is_dir():
        st = require_regular_file(path, path_str, _KINDS)
        if is_list_file(path):
            datasets = _list_datasets(path, given_name)
            return [_checked(_keep_labelled(ds, allow_unlabelled, path_str, listed=True)) for ds in datasets]
        if is_tar_file(path):
            found = _tar_file_items(path)
            ds = DatasetSpec(given_name or path.stem, path.resolve().parent, found.items, found.skipped, found.warnings)
            return [_checked(_keep_labelled(ds, allow_unlabelled, path_str))]
        if not is_image_file(path):
            raise DeepfakeError(f"not an image file (by extension): {shorten(path_str)}; a dataset is {_KINDS}.")
        ds = DatasetSpec(given_name or path.stem, path.parent)
        problem = file_problem(st)
        if problem:
            ds.skipped.append({"path": path.name, "reason": problem})
        else:
            ds.items.append(ImageItem(path, path.name, UNKNOWN))
        return [_checked(ds)]
    path = path.resolve()
    found = _folder_items(path, path)
    ds = DatasetSpec(given_name or path.name, path, found.items, found.skipped, found.warnings)
    return [_checked(_keep_labelled(ds, allow_unlabelled, path_str))]


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
        found = _folder_items(folder, root, forced=label)
        ds.items.extend(found.items)
        ds.skipped.extend(found.skipped)
        ds.warnings.extend(found.warnings)
    return _checked(ds)


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
        if not os.path.exists(p):
            raise DeepfakeError(f"no such file or folder: {shorten(spec)}")
        found = _loose_items(p)
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


def _loose_items(p: Path) -> _Found:
    """Items of one loose input with `rel` (and skipped paths) spelled from `p` as given."""
    if p.is_dir():
        found = _folder_items(p, p)
        found.items = [ImageItem(it.path, str(p / it.rel), it.label, it.member) for it in found.items]
        found.skipped = [{"path": str(p / s["path"]), "reason": s["reason"]} for s in found.skipped]
        return found
    st = require_regular_file(p, str(p), _KINDS)  # a FIFO named list.txt or x.png would block its reader
    if is_image_file(p):
        found = _Found()
        problem = file_problem(st)
        if problem:  # an image given by name is skipped as one in a folder is
            found.skipped = [{"path": str(p), "reason": problem}]
        else:
            found.items = [ImageItem(p, str(p), UNKNOWN)]
        return found
    if is_tar_file(p):
        return _tar_file_items(p, str(p))  # members spelled `<p>/<member>`, skipped ones too
    if is_list_file(p):
        listed = read_list(p)
        found = _Found()
        found.items = [ImageItem(e.path, str(e.path), e.label) for e in listed.entries]
        found.skipped = [{"path": str(listed.root / s["path"]), "reason": s["reason"]} for s in listed.skipped]
        return found
    raise DeepfakeError(f"not an image file: {shorten(p)}; give {_KINDS}.")
