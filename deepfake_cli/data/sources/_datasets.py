"""Shared by the source entries: a Found made a dataset, labelled layouts kept labelled, empty ones refused."""

from __future__ import annotations

from pathlib import Path

from deepfake_cli.data.items import LABEL_LAYOUTS, UNKNOWN, DatasetSpec, ImageItem
from deepfake_cli.data.skips import shorten
from deepfake_cli.data.sources import item_source
from deepfake_cli.errors import DeepfakeError


def keep_labelled(ds: DatasetSpec, allow_unlabelled: bool, shown: str, listed: bool = False) -> DatasetSpec:
    # A labelled layout leaves out its stray unlabelled images, as it always has, but says so.
    if ds.labelled:
        ds.skipped.extend({"path": it.rel, "reason": unlabelled_reason(it, listed)}
                          for it in ds.items if it.label == UNKNOWN)
        ds.items = [it for it in ds.items if it.label != UNKNOWN]
    elif not allow_unlabelled and ds.items:
        raise DeepfakeError(f"{shorten(shown)} has no labelled image: label it with {LABEL_LAYOUTS}.")
    return ds


def unlabelled_reason(it: ImageItem, listed: bool) -> str:
    where = ("no label cell and no label folder" if listed else item_source(it).no_label if it.member
             else "outside the label folders")
    return f"unlabelled in a labelled dataset ({where})"


def checked(ds: DatasetSpec) -> DatasetSpec:
    if not ds.items:
        why = ""
        if ds.skipped:
            s = ds.skipped[0]
            why = f"; skipped {len(ds.skipped)}, e.g. {shorten(s['path'])}: {shorten(s['reason'])}"
        raise DeepfakeError(f"no images found in dataset '{shorten(ds.name)}' ({shorten(ds.root)}){why}.")
    return ds


def noted(found, note: str):
    """`found` with the entry's warning about its odd labels (`Found.odd`) added, when there are any."""
    if found.odd and note:
        found.warnings.append(note.format(n=found.odd))
    return found


def shard_datasets(entry, path: Path, shown: str, name: str | None, allow_unlabelled: bool,
                   options: dict) -> list[DatasetSpec]:
    """The one dataset of a shard file given by itself (a .tar, a .parquet), rooted at its folder."""
    found = noted(entry.scan(path, path.name, options), entry.odd_note)
    ds = DatasetSpec(name or path.stem, path.resolve().parent, found.items, found.skipped, found.warnings)
    return [checked(keep_labelled(ds, allow_unlabelled, shown))]


def shard_loose(entry, path: Path, options: dict):
    """A shard file among predict's inputs: members spelled `<path>/<member>`, skipped ones too."""
    return noted(entry.scan(path, str(path), options), entry.odd_note)
