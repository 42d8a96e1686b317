"""The public benchmark layouts, recognised by their folder names, each made into the datasets its paper uses.

A folder given as a dataset is first offered to these, in order; the first that recognises it turns it into
several datasets (one per generator), and a folder none recognises is one dataset as before. Each layout
is one `Layout` entry (`register_layout`), so a new benchmark is one entry plus its test:

* `forensynths`: the CNNDetection / ForenSynths test set, `<generator>/<category>/0_real|1_fake` or
  `<generator>/0_real|1_fake`: one dataset per generator; the category stays the first part of each
  image's path (the `path` column), so results can be split by it.
* `univfd-diffusion`: UnivFD's `diffusion_datasets`: real pools `laion/0_real` and `imagenet/0_real` beside
  fake-only generator folders (`<generator>/1_fake`); each generator is paired with the pool its paper
  pairs it with (`guided` with ImageNet, LDM / GLIDE / DALL-E with LAION).
* `synthbuster`: one folder of RAISE reals beside one folder of images per generator, no label folders:
  each generator is fake-only and paired with the RAISE pool.
* `genimage`: GenImage's `<generator>/{train,val}/{ai,nature}`: one dataset per generator and split
  (`<generator>-train`, `<generator>-val`), so the split the benchmark defines is kept.

A fake-only dataset records its pool (`DatasetSpec.reals_pool`); extract keeps the pairing in the feature
file (`meta["reals_pools"]`) and eval scores such a set's fakes against that pool's reals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from deepfake_cli.data.items import FAKE, REAL, DatasetSpec

REAL_DIRS, FAKE_DIRS = {"0_real"}, {"1_fake"}
# LSUN's 20 classes: the categories of ForenSynths' ProGAN sets. Folders with these names below a root are
# categories of one generator, not generators.
LSUN_CATEGORIES = {"airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
                   "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"}
# UnivFD's pairing of its diffusion sets with real pools (its dataset_paths.py); others get LAION.
UNIVFD_POOLS = {"guided": "imagenet"}
UNIVFD_REAL_POOLS = ("laion", "imagenet")
GENIMAGE_SPLITS = ("train", "val")


@dataclass(frozen=True)
class Layout:
    name: str
    description: str
    recognise: Callable[[Path], bool]
    datasets: Callable[[Path, str | None], list[DatasetSpec]]   # (root, given name) -> datasets


LAYOUTS: dict[str, Layout] = {}


def register_layout(layout: Layout) -> Layout:
    LAYOUTS[layout.name] = layout
    return layout


def list_layouts() -> list[dict]:
    return [{"name": lay.name, "description": lay.description} for lay in LAYOUTS.values()]


def recognise(root: Path) -> Layout | None:
    """The layout a folder is in, or None (a plain dataset folder)."""
    if not root.is_dir():
        return None
    return next((lay for lay in LAYOUTS.values() if lay.recognise(root)), None)


def _dirs(p: Path) -> list[Path]:
    try:
        return sorted(c for c in p.iterdir() if c.is_dir() and not c.name.startswith("."))
    except OSError:
        return []


def _names(p: Path) -> set[str]:
    return {c.name.lower() for c in _dirs(p)}


def _has_images(p: Path) -> bool:
    from deepfake_cli.data.walk import is_image_file

    try:
        return any(c.is_file() and is_image_file(c.name) for c in p.iterdir())
    except OSError:
        return False


def _named(given: str | None, name: str) -> str:
    return f"{given}-{name}" if given else name


def _spec(name: str, folder: Path, forced: int | None = None, pool: str | None = None, layout: str = "") -> DatasetSpec:
    from deepfake_cli.data.sources._datasets import checked
    from deepfake_cli.data.sources.folder import folder_items

    found = folder_items(folder, folder, forced=forced)
    ds = DatasetSpec(name, folder.resolve(), found.items, found.skipped, found.warnings)
    ds.reals_pool, ds.layout = pool, layout
    return checked(ds)


# --- ForenSynths test: <generator>/[<category>/]0_real|1_fake -------------------------------------------

def _both(p: Path) -> bool:
    names = _names(p)
    return bool(names & REAL_DIRS) and bool(names & FAKE_DIRS)


def _is_generator(p: Path) -> bool:
    """A ForenSynths generator folder: 0_real and 1_fake in it, or in each of its category folders."""
    cats = _dirs(p)
    return _both(p) or (bool(cats) and all(_both(c) for c in cats))


def _forensynths_recognise(root: Path) -> bool:
    children = _dirs(root)
    if len(children) < 2 or _names(root) & (REAL_DIRS | FAKE_DIRS):
        return False
    if {c.name.lower() for c in children} <= LSUN_CATEGORIES:
        return False  # one generator's categories (ProGAN's training layout): one dataset
    return all(_is_generator(c) for c in children)


def _forensynths(root: Path, given: str | None) -> list[DatasetSpec]:
    return [_spec(_named(given, c.name), c, layout="forensynths") for c in _dirs(root)]


# --- UnivFD diffusion_datasets: laion/0_real, imagenet/0_real, <generator>/1_fake ------------------------

def _univfd_recognise(root: Path) -> bool:
    children = {c.name.lower(): c for c in _dirs(root)}
    pools = [n for n in UNIVFD_REAL_POOLS if n in children and "0_real" in _names(children[n])]
    fakes = [c for n, c in children.items() if n not in UNIVFD_REAL_POOLS and _names(c) == FAKE_DIRS]
    return bool(pools) and bool(fakes)


def _univfd(root: Path, given: str | None) -> list[DatasetSpec]:
    children = {c.name.lower(): c for c in _dirs(root)}
    pools = [n for n in UNIVFD_REAL_POOLS if n in children and "0_real" in _names(children[n])]
    out = [_spec(_named(given, children[n].name), children[n], layout="univfd-diffusion") for n in pools]
    for n, c in children.items():
        if n in UNIVFD_REAL_POOLS or _names(c) != FAKE_DIRS:
            continue
        want = UNIVFD_POOLS.get(n, "laion")
        pool = want if want in pools else pools[0]
        out.append(_spec(_named(given, c.name), c, pool=_named(given, children[pool].name), layout="univfd-diffusion"))
    return out


# --- Synthbuster: RAISE/ beside one folder per generator ---------------------------------------------------

def _raise_dir(root: Path) -> Path | None:
    return next((c for c in _dirs(root) if c.name.lower().startswith("raise")), None)


def _synthbuster_recognise(root: Path) -> bool:
    reals = _raise_dir(root)
    if reals is None or not _has_images(reals):
        return False
    others = [c for c in _dirs(root) if c != reals]
    return bool(others) and all(_has_images(c) and not _names(c) for c in others)


def _synthbuster(root: Path, given: str | None) -> list[DatasetSpec]:
    reals = _raise_dir(root)
    pool = _named(given, reals.name)
    return [_spec(pool, reals, forced=REAL, layout="synthbuster")] + [
        _spec(_named(given, c.name), c, forced=FAKE, pool=pool, layout="synthbuster") for c in _dirs(root) if c != reals]


# --- GenImage: <generator>/{train,val}/{ai,nature} ---------------------------------------------------------

def _genimage_generator(p: Path) -> bool:
    splits = [c for c in _dirs(p) if c.name.lower() in GENIMAGE_SPLITS]
    return bool(splits) and all(_names(s) & {"ai", "nature"} for s in splits)


def _genimage_recognise(root: Path) -> bool:
    return _genimage_generator(root) or (bool(_dirs(root)) and all(_genimage_generator(c) for c in _dirs(root)))


def _genimage(root: Path, given: str | None) -> list[DatasetSpec]:
    generators = [root] if _genimage_generator(root) else _dirs(root)
    out = []
    for g in generators:
        base = given if (given and g == root) else _named(given, g.name)
        for split in _dirs(g):
            if split.name.lower() in GENIMAGE_SPLITS:
                out.append(_spec(f"{base}-{split.name.lower()}", split, layout="genimage"))
    return out


register_layout(Layout("genimage", "GenImage: <generator>/{train,val}/{ai,nature}; one dataset per generator and split",
                       _genimage_recognise, _genimage))
register_layout(Layout("univfd-diffusion", "UnivFD diffusion_datasets: laion/ and imagenet/ real pools beside "
                       "fake-only <generator>/1_fake folders, paired as the paper pairs them", _univfd_recognise, _univfd))
register_layout(Layout("synthbuster", "Synthbuster: RAISE/ reals beside one folder per generator (fake-only, paired "
                       "with RAISE)", _synthbuster_recognise, _synthbuster))
register_layout(Layout("forensynths", "ForenSynths / CNNDetection test: <generator>/[<category>/]0_real|1_fake; one "
                       "dataset per generator", _forensynths_recognise, _forensynths))


def describe(datasets: list[DatasetSpec]) -> list[dict]:
    """What discovery recognised, for `deepfake datasets`: per dataset its layout, counts, pool and groups
    (ForenSynths categories: the first folder of each path when there are several)."""
    out = []
    for ds in datasets:
        groups: dict[str, int] = {}
        if getattr(ds, "layout", "") == "forensynths":
            for it in ds.items:
                first = it.rel.split("/", 1)[0]
                if first.lower() not in REAL_DIRS | FAKE_DIRS:
                    groups[first] = groups.get(first, 0) + 1
        c = ds.counts
        out.append({"dataset": ds.name, "layout": getattr(ds, "layout", "") or "folder", "root": str(ds.root),
                    "real": c["real"], "fake": c["fake"], "unlabelled": c["unknown"],
                    "reals_pool": getattr(ds, "reals_pool", None), "categories": groups})
    return out
